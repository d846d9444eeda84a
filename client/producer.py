"""Producer: records in, Kafka v2 batches out through shared-memory rings to each
partition's leader; delivery reports back.

    from odradek.client import Producer
    with Producer({"acks": "all", "linger.ms": 5}) as p:
        p.produce("orders", b"paid", key=b"order-17",
                  on_delivery=lambda err, rec: print(err or f"at offset {rec.offset}"))
        p.flush()

Theory of operation
- produce() is one C call (odradek._hotpath.Accumulator, daemon/c_ext/hp_producer.c):
  argument checks, the partition, the record encoded straight into the open batch, which
  lives in a reservation of the partition's produce ring, and the seal (header, CRC-32C,
  commit) when the batch reaches batch.size or linger.ms is 0. What it cannot do comes
  back here as a code (_produce_slow): learn a topic's partition count, open a
  partition's rings, wait for ring space (max.block.ms), refuse a record too large.
  compression.type=gzip batches are built in Python instead (client/_producer_gzip.py).
- Partitions: the one given; else murmur2(key) % partitions, exactly Kafka's default
  partitioner; keyless records stick to one partition until its batch is sealed (KIP-480).
- Per partition the producer creates a produce ring, a completion ring, and shares one
  doorbell of its own; OpenProducer hands all three to the broker, which attaches them to
  the partition's leader worker (and to its successor if that worker dies: the rings
  outlive it, and the idempotence check turns a re-taken entry into a duplicate with its
  original offset). The leader's answer carries its doorbell, which each commit rings.
  produce() does this on a partition's first record (milliseconds, which the records
  produced meanwhile wait); attach(topic) does it beforehand.
- A background thread (the sender) sleeps on our doorbell, reads completions, seals
  batches whose linger.ms ran out, and queues delivery reports; poll() and flush() run
  the on_delivery callbacks in the caller's thread, as confluent-kafka does. A batch
  holds its ring space from its first record, so sealing never waits; produce() waits
  (max.block.ms, GIL released) only for the space of a new batch.
- Idempotence (enable.idempotence, the default): InitProducerId gives a producer id and
  epoch; each batch carries them and its first sequence number.
- A stuck broker (its ring stays full): produce() blocks up to max.block.ms, then
  raises RingFull and queues nothing of the record; flush(timeout) returns how many
  records are still undelivered; close(timeout) runs the callback of each of them with
  RequestTimedOut. None of them raises for it.
"""
import logging
import os
import threading
import time
from collections import deque

from odradek._hotpath import (PRODUCE_FULL, PRODUCE_NEED_COUNT, PRODUCE_NEED_LINK, Accumulator)
from odradek.client import _config as cfg
from odradek.client._liveness import LIVENESS_CHECK_S, Liveness, connect_again
from odradek.client._producer_gzip import GzipAccumulator
from odradek.client.admin import resolve_socket
from odradek.client.errors import (InvalidConfig, LeaderNotAvailable, MessageTooLarge, OdradekError,
                                   RequestTimedOut, RingFull, UnknownTopicOrPartition,
                                   error_for_code)
from odradek.client.message import Record
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol import raise_for_error
from odradek.client.records import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm._lib import ffi

__all__ = ["Producer"]

log = logging.getLogger(__name__)

_SCHEMA = {
    "socket": (str, None),
    "acks": (cfg.acks, -1),
    "linger.ms": (cfg.non_negative_int, 5),
    "batch.size": (cfg.positive_int, 16384),
    "enable.idempotence": (cfg.boolean, True),
    "max.block.ms": (cfg.non_negative_int, 60_000),
    "client.id": (str, "odradek-producer"),
    "compression.type": (cfg.one_of("none", "gzip"), "none"),
    "produce.ring.bytes": (cfg.positive_int, 4 << 20),
}
_RETRY_S = 0.05
_SLOW_TURNS = 1_000_000   # bounds _produce_slow's loop; the deadline ends it first


def _address(cdata):
    return int(ffi.cast("uintptr_t", cdata))


def _completion_error(link, code):
    """The error of a batch the leader refused: a completion carries only the code, so
    the message is what the code means, and where."""
    cls = error_for_code(code)
    return cls(f"{link.topic}-{link.partition}: {cls.__doc__.rstrip('.').lower()} "
               f"(the partition leader refused the batch)")


def _ring_full(topic, partition, max_block_s):
    return RingFull(f"the ring to {topic}-{partition} stayed full for {max_block_s:.1f} s "
                    f"(max.block.ms): the broker is not keeping up or is down")


class _Link:
    """One partition: our rings to its leader. Its open batch and batches in flight are
    the accumulator's, under `id`."""
    __slots__ = ("topic", "partition", "requests", "completions", "ring_fds", "id")

    def __init__(self, topic, partition, requests, completions, ring_fds):
        self.topic, self.partition = topic, partition
        self.requests, self.completions = requests, completions
        self.ring_fds = ring_fds   # kept open: a restarted broker is given the same rings
        self.id = None


class Producer:
    def __init__(self, config=None):
        self.config = c = cfg.parse_config(config, _SCHEMA, "producer")
        ring_bytes = c["produce.ring.bytes"]
        if ring_bytes & (ring_bytes - 1) or ring_bytes < 1 << 16:
            raise InvalidConfig(f"produce.ring.bytes={ring_bytes} must be a power of two >= 65536")
        self._acks = c["acks"]
        self._max_block_s = c["max.block.ms"] / 1000
        self._socket_path = resolve_socket(c["socket"])
        self._client = ControlClient(self._socket_path)
        self._client_lock = threading.Lock()   # the control connection, and opening links
        self._liveness = Liveness()
        self._pid, self._epoch = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if c["enable.idempotence"]:
            res, _ = self._client.call(m.InitProducerIdRequest())
            self._pid, self._epoch = res.producer_id, res.producer_epoch
        self._doorbell, self._doorbell_fd = Doorbell.create()
        self._leader_doorbells = []
        self._links = {}          # (topic, partition) -> _Link
        self._link_list = []      # by accumulator link id
        accumulator = GzipAccumulator if c["compression.type"] == "gzip" else Accumulator
        self._acc = accumulator(c["batch.size"], c["linger.ms"], self._acks, self._pid, self._epoch,
                                _address(self._doorbell._ptr), self._doorbell)
        self._reports = deque()                # (on_delivery, err, Record) ready for poll()
        self._reported = threading.Condition()
        self._settled = 0                      # records reported (delivered or failed)
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="odradek-producer-sender", daemon=True)
        self._sender.start()

    # == producing ==================================================================
    def produce(self, topic, value=None, key=None, headers=None, partition=None, timestamp=None,
                on_delivery=None):
        """Queue one record. Returns at once, unless the partition's ring is full (then it
        blocks up to max.block.ms and raises RingFull). The outcome reaches
        on_delivery(err, record) from poll() or flush()."""
        res = self._acc.produce(topic, value, key, headers, partition, timestamp, on_delivery)
        if res is not None:
            self._produce_slow(res, topic, value, key, headers, partition, timestamp, on_delivery)

    def attach(self, topic, partitions=None):
        """Attach to `topic`'s partitions now (all of them, or the ids in `partitions`),
        before the first record: learn the partition count and create and hand over each
        partition's rings, which produce() otherwise does on its first record for that
        partition (a control round trip to the broker and its leader worker: milliseconds,
        during which the records produced meanwhile wait). After it, produce() to those
        partitions makes no control call. The warm-up Kafka users do with the Java
        producer's partitionsFor(topic), carried through to the partition leaders.
        Idempotent; returns the partitions attached, in order. Raises
        UnknownTopicOrPartition for a topic or partition id that does not exist, and
        LeaderNotAvailable if a partition has no leader within max.block.ms."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        if partitions is not None:
            partitions = list(partitions)
            if not all(type(p) is int for p in partitions):
                raise TypeError("partitions must be ints (partition ids)")
        if self._closed:
            raise RuntimeError("the producer is closed")
        count = self._partition_count(topic)
        wanted = range(count) if partitions is None else sorted(set(partitions))
        bad = [p for p in wanted if not 0 <= p < count]
        if bad:
            raise UnknownTopicOrPartition(f"{topic} has {count} partitions (0..{count - 1}), "
                                          f"not {bad[0]}")
        self._acc.set_partition_count(topic, count)
        for partition in wanted:
            self._open_link(topic, partition)
        return list(wanted)

    def _produce_slow(self, res, *args):
        """What the accumulator's one call could not do, then the call again: learn the
        partition count, open the partition's rings, wait for ring space (up to
        max.block.ms, then RingFull), or refuse a record too large. Nothing of the
        record is queued unless the call finally returns None."""
        topic = args[0]
        deadline = None
        for _ in range(_SLOW_TURNS):
            code, partition, nbytes, limit = res
            if code == PRODUCE_NEED_COUNT:
                self._acc.set_partition_count(topic, self._partition_count(topic))
            elif code == PRODUCE_NEED_LINK:
                self._open_link(topic, partition)
            elif code == PRODUCE_FULL:
                if deadline is None:
                    deadline = time.monotonic() + self._max_block_s
                if not self._wait_space(self._links[(topic, partition)], nbytes, deadline):
                    raise _ring_full(topic, partition, self._max_block_s)
            else:
                raise MessageTooLarge(f"a record of {nbytes} bytes (as a batch) is too large for "
                                      f"{topic}-{partition}: a batch may have {limit} bytes "
                                      f"(max.message.bytes, or half the ring)")
            res = self._acc.produce(*args)
            if res is None:
                return
        raise _ring_full(topic, res[1], self._max_block_s)

    def _wait_space(self, link, nbytes, deadline):
        for _ in range(_SLOW_TURNS):   # each wait is <= 50 ms: signal handlers run between
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._acc.wait_space(link.id, nbytes, left):
                return True
        return False

    def _partition_count(self, topic):
        with self._client_lock:
            res, _ = self._client.call(m.MetadataRequest(topics=[topic]))
        (t,) = res.topics
        raise_for_error(t.error_code, t.error_message)
        return len(t.partitions)

    def _open_link(self, topic, partition):
        """Create the rings for a partition and attach them to its leader (retrying while
        the partition has no leader, up to max.block.ms)."""
        ring_bytes = self.config["produce.ring.bytes"]
        with self._client_lock:
            if (topic, partition) in self._links:   # another thread opened it meanwhile
                return
            requests, req_fd = Ring.create(ring_bytes)
            completions, comp_fd = Ring.create(max(ring_bytes // 2, 1 << 16))
            try:
                max_batch_bytes, leader = self._attach(topic, partition, (req_fd, comp_fd),
                                                       time.monotonic() + self._max_block_s)
            except BaseException:
                requests.close()
                completions.close()
                os.close(req_fd)
                os.close(comp_fd)
                raise
            requests.set_doorbell(leader)
            link = _Link(topic, partition, requests, completions, (req_fd, comp_fd))
            # the largest batch: max.message.bytes of the topic, or what the ring takes
            limit = min(requests.max_payload, max_batch_bytes or requests.max_payload)
            link.id = self._acc.add_link(topic, partition, _address(requests._r), requests, limit)
            self._link_list.append(link)
            self._links[(topic, partition)] = link

    def _attach(self, topic, partition, ring_fds, deadline):
        """OpenProducer for our rings (with the control lock held); returns the topic's
        max batch size and the leader's doorbell. Retries while it has no leader."""
        for _ in range(100_000):   # bounded by the deadline
            try:
                res, fds = self._client.call(
                    m.OpenProducerRequest(topic=topic, partition=partition, acks=self._acks,
                                          producer_id=self._pid, producer_epoch=self._epoch),
                    [*ring_fds, self._doorbell_fd])
                break
            except LeaderNotAvailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_RETRY_S)
        try:
            leader = Doorbell.attach(fds[0], shared=True)   # every producer of it can write it
        finally:
            for fd in fds:
                os.close(fd)
        # kept until close(): a ring being committed on another thread may still ring
        # the previous one after a reconnect switched it
        self._leader_doorbells.append(leader)
        return res.max_batch_bytes, leader

    def _check_broker(self):
        """From the sender, twice a second at most: if the broker went away (a restart,
        a crash), connect again and give its partition leaders the same rings. What was
        committed in them and not yet acknowledged is taken by the new leaders; the
        idempotence check turns any batch already written into a duplicate."""
        now = time.monotonic()
        if not self._liveness.due(now) or not self._client_lock.acquire(blocking=False):
            return
        try:
            if self._liveness.broker_gone(self._client, now):
                self._reconnect()
        finally:
            self._client_lock.release()

    def _reconnect(self):
        deadline = time.monotonic() + self._max_block_s
        client = connect_again(self._socket_path, deadline, _RETRY_S * 4, give_up=lambda: self._closed)
        if client is None:
            log.warning("producer: the broker at %s did not come back within max.block.ms", self._socket_path)
            return
        self._client.close()
        self._client = client
        log.info("producer: reconnected to the broker at %s; re-attaching %d partitions",
                 self._socket_path, len(self._links))
        for link in list(self._links.values()):
            try:
                _, leader = self._attach(link.topic, link.partition, link.ring_fds, deadline)
            except OdradekError as e:
                log.warning("producer: re-attaching %s-%d failed: %s", link.topic, link.partition, e)
                continue
            link.requests.set_doorbell(leader)
            leader.ring()    # take what waited in the ring meanwhile

    def _fail_undelivered(self):
        """close(): every record not acknowledged gets RequestTimedOut, saying whether it
        reached the ring (a leader may still write it) or never left this process."""
        for link in self._link_list:
            where = f"{link.topic}-{link.partition}"
            for count, pending in self._acc.take_sealed(link.id):
                self._report(link, count, pending, -1, RequestTimedOut(
                    f"the producer closed before {where}'s leader acknowledged the record "
                    f"(close timeout); it was in the ring, so the leader may still write it"))
            for count, pending in self._acc.take_open(link.id):
                self._report(link, count, pending, -1, RequestTimedOut(
                    f"the producer closed before the record was sent to {where} (close "
                    f"timeout; the ring stayed full); it was not written"))

    # == delivery reports ============================================================
    def _report(self, link, count, pending, base_offset, error):
        """Queue the delivery reports of a batch of `count` records; `pending` holds, per
        record, None or what its on_delivery report needs (None: no record has one)."""
        items = []
        if pending is not None:
            for i, p in enumerate(pending):
                if p is not None:
                    callback, key, value, headers, ts = p
                    offset = -1 if base_offset < 0 else base_offset + i
                    items.append((callback, error, Record(link.topic, link.partition, offset, key, value,
                                                          list(headers), ts)))
        with self._reported:
            self._reports.extend(items)
            self._settled += count
            self._reported.notify_all()

    def _send_loop(self):
        doorbell = self._doorbell
        while not self._closed:
            seen = doorbell.value
            self._take_completions()
            timeout = self._acc.seal_due(LIVENESS_CHECK_S)   # batches whose linger.ms ran out
            self._check_broker()
            doorbell.wait(seen, timeout)

    def _take_completions(self):
        """Queue a delivery report for every batch the leaders have acknowledged (with
        acks=0: every batch sealed)."""
        for link in list(self._link_list):
            if self._acks == 0:
                for count, pending in self._acc.take_sealed(link.id):
                    self._report(link, count, pending, -1, None)
                continue
            for _ in range(1 << 16):    # bounded: the ring holds fewer completions
                c = link.completions.read_completion()
                if c is None:
                    break
                done = self._acc.complete(link.id, c.tag)
                if done is None:
                    log.warning("completion for unknown tag %d on %s-%d", c.tag, link.topic, link.partition)
                    continue
                error = _completion_error(link, c.error_code) if c.error_code else None
                self._report(link, *done, c.base_offset, error)

    def poll(self, timeout=0):
        """Run delivery callbacks that are due; wait up to `timeout` seconds (None:
        forever) for one if none is. Returns how many ran."""
        if not self._reports and timeout == 0:
            return 0
        with self._reported:
            if not self._reports and timeout != 0:
                self._reported.wait_for(lambda: self._reports, timeout)
            items = list(self._reports)
            self._reports.clear()
        for callback, err, record in items:
            callback(err, record)
        return len(items)

    def flush(self, timeout=None):
        """Send every open batch and wait until every record is delivered (or failed),
        running callbacks, for up to `timeout` seconds (None: until then). Returns how
        many records are still undelivered (0: all), as confluent-kafka's flush does; a
        stuck broker makes that count non-zero, never an exception. (A gzip batch whose
        ring stays full stays open, and the sender hands it over when there is room.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._acc.seal_all()
        self._doorbell.ring()   # the sender retries what could not be sealed
        for _ in range(10_000_000):   # bounded by the deadline or by delivery
            self.poll(0)
            if len(self) == 0:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with self._reported:
                self._reported.wait_for(lambda: self._reports or len(self) == 0,
                                        0.1 if left is None else min(0.1, left))
        self.poll(0)
        return len(self)

    def __len__(self):
        """Records produced and not yet reported (delivered or failed)."""
        return self._acc.queued - self._settled

    # == lifetime ====================================================================
    def close(self, timeout=None):
        """Flush (up to `timeout` s; None: until every record is delivered, as Kafka's
        close() waits), then detach from every partition and free the rings. Each record
        still undelivered then gets its on_delivery callback, run here, with
        RequestTimedOut (REQUEST_TIMED_OUT) saying whether it reached the broker's ring
        (then a leader may still write it) or never left this process; unless the sender
        thread is still reconnecting 5 s later (then their outcomes are not reported, and
        the rings stay mapped until the process exits)."""
        if self._closed:
            return
        left = self.flush(timeout)
        self._closed = True
        self._acc.close()         # no produce() from here on, none waits in a ring
        self._doorbell.ring()
        self._sender.join(5)
        if not self._sender.is_alive():
            if left:
                self._take_completions()     # acknowledged since flush() looked
            self._fail_undelivered()
        self.poll(0)
        if self._sender.is_alive():
            # still inside a reconnect (up to max.block.ms), where it may yet seal into a
            # ring or ring a doorbell: unmapping them under it would crash the process.
            # They stay mapped (and the connection open) until the process ends.
            log.warning("producer: closed while the sender thread was still reconnecting; its rings stay "
                        "mapped until the process exits")
            return
        self._client.close()      # the broker detaches our rings from the leaders
        for link in self._links.values():
            link.requests.close()
            link.completions.close()
            for fd in link.ring_fds:
                os.close(fd)
        for leader in self._leader_doorbells:
            leader.close()
        self._doorbell.close()
        os.close(self._doorbell_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_closed", True) is False:
            try:
                self.close(timeout=0)
            except Exception:
                pass
