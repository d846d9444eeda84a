"""Producer: records in, Kafka v2 batches out through shared-memory rings to each
partition's leader; delivery reports back.

    from odradek.client import Producer
    with Producer({"acks": "all", "linger.ms": 5}) as p:
        p.produce("orders", b"paid", key=b"order-17",
                  on_delivery=lambda err, rec: print(err or f"at offset {rec.offset}"))
        p.flush()

Theory of operation
- produce() encodes the record into the open batch of its partition (client/records
  BatchBuilder) under one lock. A batch is sealed (built, CRC'd, written into the
  partition's produce ring, one copy) when it reaches batch.size, when linger.ms has
  passed since its first record, or on flush().
- Partitions: the one given; else murmur2(key) % partitions, exactly Kafka's default
  partitioner; keyless records stick to one partition until its batch is sealed (KIP-480).
- Per partition the producer creates a produce ring, a completion ring, and shares one
  doorbell of its own; OpenProducer hands all three to the broker, which attaches them to
  the partition's leader worker (and to its successor if that worker dies: the rings
  outlive it, and the idempotence check turns a re-taken entry into a duplicate with its
  original offset). The leader's answer carries its doorbell, which our ring rings on
  each commit.
- A background thread (the sender) sleeps on our doorbell, reads completions, seals
  batches whose linger.ms ran out, and queues delivery reports; poll() and flush() run
  the on_delivery callbacks in the caller's thread, as confluent-kafka does. The sender
  never waits for the lock produce() holds, so completions flow even while produce()
  blocks on a full ring (max.block.ms).
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

from odradek.client import _config as cfg
from odradek.client._liveness import LIVENESS_CHECK_S, Liveness, connect_again
from odradek.client.admin import resolve_socket
from odradek.client.errors import (InvalidConfig, LeaderNotAvailable, MessageTooLarge, OdradekError,
                                   RequestTimedOut, RingFull, error_for_code)
from odradek.client.message import Record
from odradek.client.partitioner import StickyPartitioner, partition_for_key
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol import raise_for_error
from odradek.client.records import MAX_SEQUENCE, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, BatchBuilder
from odradek.client.shm import Doorbell, Ring

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
_TAG_MOD = 1 << 32
_time_ns = time.time_ns
_BATCH_OVERHEAD = 61 + 8    # the v2 batch header, and the ring entry's
_RETRY_S = 0.05


def _as_bytes(value, what):
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, str or None, not {type(value).__name__}")


def _headers(headers):
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), _as_bytes(v, "a header value")) for k, v in items]


def _completion_error(link, code):
    """The error of a batch the leader refused: a completion carries only the code, so
    the message is what the code means, and where."""
    cls = error_for_code(code)
    return cls(f"{link.topic}-{link.partition}: {cls.__doc__.rstrip('.').lower()} "
               f"(the partition leader refused the batch)")


class _Link:
    """One partition: our rings to its leader, the open batch, batches in flight."""
    __slots__ = ("topic", "partition", "requests", "completions", "builder", "pending",
                 "deadline", "next_seq", "next_tag", "inflight", "ring_fds", "limit")

    def __init__(self, topic, partition, requests, completions, max_batch_bytes, ring_fds):
        self.topic, self.partition = topic, partition
        self.requests, self.completions = requests, completions
        self.ring_fds = ring_fds   # kept open: a restarted broker is given the same rings
        # the largest batch: max.message.bytes of the topic, or what the ring takes
        self.limit = min(requests.max_payload, max_batch_bytes or requests.max_payload)
        self.builder = None
        self.pending = []        # (on_delivery, key, value, headers, timestamp) of the open batch
        self.deadline = None     # linger deadline of the open batch (monotonic s)
        self.next_seq = 0
        self.next_tag = 0
        self.inflight = {}       # tag -> pending list of a sealed batch


class Producer:
    def __init__(self, config=None):
        self.config = c = cfg.parse_config(config, _SCHEMA, "producer")
        ring_bytes = c["produce.ring.bytes"]
        if ring_bytes & (ring_bytes - 1) or ring_bytes < 1 << 16:
            raise InvalidConfig(f"produce.ring.bytes={ring_bytes} must be a power of two >= 65536")
        self._acks = c["acks"]
        self._linger_s = c["linger.ms"] / 1000
        self._batch_size = c["batch.size"]
        self._max_block_s = c["max.block.ms"] / 1000
        self._compression = c["compression.type"]
        self._socket_path = resolve_socket(c["socket"])
        self._client = ControlClient(self._socket_path)
        self._client_lock = threading.Lock()   # the control connection: produce() and the sender
        self._liveness = Liveness()
        self._pid, self._epoch = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if c["enable.idempotence"]:
            res, _ = self._client.call(m.InitProducerIdRequest())
            self._pid, self._epoch = res.producer_id, res.producer_epoch
        self._doorbell, self._doorbell_fd = Doorbell.create()
        self._leader_doorbells = []
        self._links = {}          # (topic, partition) -> _Link
        self._partition_counts = {}
        self._sticky = StickyPartitioner()
        self._lock = threading.Lock()          # produce side: builders, links, the control client
        self._reports = deque()                # (on_delivery, err, Record) ready for poll()
        self._reported = threading.Condition()
        self._undelivered = 0                  # produced, not yet reported
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="odradek-producer-sender", daemon=True)
        self._sender.start()

    # == producing ==================================================================
    def produce(self, topic, value=None, key=None, headers=None, partition=None, timestamp=None,
                on_delivery=None):
        """Queue one record. Returns at once, unless the partition's ring is full (then it
        blocks up to max.block.ms and raises RingFull). The outcome reaches
        on_delivery(err, record) from poll() or flush()."""
        # The hot path (~3 us a record on the dev box, half of it the BatchBuilder):
        # exact bytes and no headers skip every conversion.
        if self._closed:
            raise RuntimeError("produce() on a closed Producer")
        if value is not None and type(value) is not bytes:
            value = _as_bytes(value, "value")
        if key is not None and type(key) is not bytes:
            key = _as_bytes(key, "key")
        headers = _headers(headers) if headers else ()
        if timestamp is None:
            timestamp = _time_ns() // 1_000_000
        # what the record adds to a batch, at most (record framing is <= 21 bytes, and
        # each header <= 10 more than its bytes)
        need = 21 + (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if headers:
            need += sum(14 + len(k) + (len(v) if v is not None else 0) for k, v in headers)
        with self._lock:
            sticky = False
            if partition is None or partition < 0:
                count = self._partition_count(topic)
                if key is not None:
                    partition = partition_for_key(key, count)
                else:
                    partition = self._sticky.partition(topic, count)
                    sticky = True
            link = self._links.get((topic, partition)) or self._open_link(topic, partition)
            if need + _BATCH_OVERHEAD > link.limit:
                raise MessageTooLarge(f"a record of about {need} bytes is too large for {topic}-{partition}: "
                                      f"a batch may have {link.limit} bytes (max.message.bytes, or half the ring)")
            builder = link.builder
            # Make room before the record joins a batch, so that a RingFull (after
            # max.block.ms) or MessageTooLarge leaves nothing of it queued.
            if builder is not None and builder.estimated_size() + need > self._batch_size:
                self._seal_or_refuse(link)
                if sticky:   # the sticky batch is full: this record starts the next partition's
                    partition = self._sticky.new_batch(topic, self._partition_counts[topic], partition)
                    link = self._links.get((topic, partition)) or self._open_link(topic, partition)
                    if link.builder is not None and link.builder.estimated_size() + need > self._batch_size:
                        self._seal_or_refuse(link)
                builder = link.builder
            if builder is None:
                if need + _BATCH_OVERHEAD >= self._batch_size or not self._linger_s:
                    # sent as soon as it holds this record: the ring must take it now
                    if not link.requests.wait_for_space(need + _BATCH_OVERHEAD, self._max_block_s):
                        raise RingFull(f"the ring to {topic}-{partition} stayed full for "
                                       f"{self._max_block_s:.1f} s (max.block.ms): the broker is not "
                                       f"keeping up or is down")
                builder = link.builder = self._new_builder(link)
                link.deadline = time.monotonic() + self._linger_s
                if self._linger_s:
                    self._doorbell.ring()   # the sender learns of the new deadline
            builder.append(timestamp, key, value, headers)
            link.pending.append((on_delivery, key, value, headers, timestamp))
            self._undelivered += 1
            # The record is queued now: a full ring leaves its batch open (the sender seals
            # it when there is room; the next produce() to it waits for that first).
            if (builder.estimated_size() >= self._batch_size or not self._linger_s) and \
                    self._seal(link, 0) and sticky:
                self._sticky.new_batch(topic, self._partition_counts[topic], partition)

    def _new_builder(self, link):
        return BatchBuilder(compression=self._compression, producer_id=self._pid, producer_epoch=self._epoch,
                            base_sequence=link.next_seq if self._pid >= 0 else NO_SEQUENCE)

    def _partition_count(self, topic):
        count = self._partition_counts.get(topic)
        if count is None:
            with self._client_lock:
                res, _ = self._client.call(m.MetadataRequest(topics=[topic]))
            (t,) = res.topics
            raise_for_error(t.error_code, t.error_message)
            count = self._partition_counts[topic] = len(t.partitions)
        return count

    def _open_link(self, topic, partition):
        """Create the rings for a partition and attach them to its leader (retrying while
        the partition has no leader, up to max.block.ms)."""
        ring_bytes = self.config["produce.ring.bytes"]
        requests, req_fd = Ring.create(ring_bytes)
        completions, comp_fd = Ring.create(max(ring_bytes // 2, 1 << 16))
        try:
            with self._client_lock:
                max_batch_bytes, leader = self._attach(topic, partition, (req_fd, comp_fd),
                                                       time.monotonic() + self._max_block_s)
        except BaseException:
            requests.close()
            completions.close()
            os.close(req_fd)
            os.close(comp_fd)
            raise
        requests.set_doorbell(leader)
        link = _Link(topic, partition, requests, completions, max_batch_bytes, (req_fd, comp_fd))
        self._links[(topic, partition)] = link
        return link

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

    def _seal_or_refuse(self, link):
        if not self._seal(link, self._max_block_s):
            raise RingFull(f"the ring to {link.topic}-{link.partition} stayed full for "
                           f"{self._max_block_s:.1f} s (max.block.ms): the broker is not keeping up "
                           f"or is down")

    def _seal(self, link, timeout):
        """Write the open batch into the ring (called with the lock held), waiting up to
        `timeout` s for room. Returns False if the ring stayed full: the batch stays open."""
        builder = link.builder
        data = builder.build()
        size = len(data)
        if size > link.limit:
            self._fail_batch(link, MessageTooLarge(
                f"a batch of {size} bytes for {link.topic}-{link.partition} exceeds {link.limit} bytes; "
                f"make records smaller"))
            return True
        tag = link.next_tag
        link.inflight[tag] = link.pending
        try:
            link.requests.write(data, tag, timeout)
        except RingFull:
            del link.inflight[tag]
            return False
        count = len(builder)
        link.next_tag = (tag + 1) % _TAG_MOD
        if self._pid >= 0:
            link.next_seq = (link.next_seq + count) & MAX_SEQUENCE
        link.builder, link.pending, link.deadline = None, [], None
        if self._acks == 0:
            self._report(link, link.inflight.pop(tag), -1, None)
        return True

    def _fail_undelivered(self):
        with self._lock:
            for link in self._links.values():
                where = f"{link.topic}-{link.partition}"
                for pending in link.inflight.values():
                    self._report(link, pending, -1, RequestTimedOut(
                        f"the producer closed before {where}'s leader acknowledged the record "
                        f"(close timeout); it was in the ring, so the leader may still write it"))
                link.inflight.clear()
                if link.pending:
                    self._fail_batch(link, RequestTimedOut(
                        f"the producer closed before the record was sent to {where} (close "
                        f"timeout; the ring stayed full); it was not written"))

    def _fail_batch(self, link, error):
        pending = link.pending
        link.builder, link.pending, link.deadline = None, [], None
        self._report(link, pending, -1, error)

    # == delivery reports ============================================================
    def _report(self, link, pending, base_offset, error):
        items = []
        for i, (callback, key, value, headers, ts) in enumerate(pending):
            if callback is not None:
                offset = -1 if base_offset < 0 else base_offset + i
                items.append((callback, error, Record(link.topic, link.partition, offset, key, value,
                                                      list(headers), ts)))
        with self._reported:
            self._reports.extend(items)
            self._undelivered -= len(pending)
            self._reported.notify_all()

    def _send_loop(self):
        doorbell = self._doorbell
        while not self._closed:
            seen = doorbell.value
            self._take_completions()
            timeout = self._linger_due()
            self._check_broker()
            doorbell.wait(seen, min(timeout, LIVENESS_CHECK_S))

    def _take_completions(self):
        """Queue a delivery report for every batch the leaders have acknowledged."""
        for link in list(self._links.values()):
            for _ in range(1 << 16):    # bounded: the ring holds fewer completions
                c = link.completions.read_completion()
                if c is None:
                    break
                pending = link.inflight.pop(c.tag, None)
                if pending is None:
                    log.warning("completion for unknown tag %d on %s-%d", c.tag, link.topic, link.partition)
                    continue
                error = _completion_error(link, c.error_code) if c.error_code else None
                self._report(link, pending, c.base_offset, error)

    def _linger_due(self):
        """Seal batches whose linger.ms ran out; returns seconds until the next is due."""
        if not self._lock.acquire(blocking=False):
            return 0.0005      # produce() holds it: completions first, linger a moment later
        try:
            now = time.monotonic()
            nearest = None
            for link in self._links.values():
                if link.deadline is None:
                    continue
                if link.deadline <= now:
                    if not self._seal(link, 0):
                        nearest = 0.001    # ring full: try again shortly
                        continue
                    count = self._partition_counts.get(link.topic)
                    if count:   # keyless records move on to another partition (KIP-480)
                        self._sticky.new_batch(link.topic, count, link.partition)
                else:
                    left = link.deadline - now
                    nearest = left if nearest is None else min(nearest, left)
            return nearest if nearest is not None else 1.0
        finally:
            self._lock.release()

    def poll(self, timeout=0):
        """Run delivery callbacks that are due; wait up to `timeout` seconds (None:
        forever) for one if none is. Returns how many ran."""
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
        stuck broker makes that count non-zero, never an exception. A batch whose ring
        stays full stays open, and the sender hands it over when there is room."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            for link in self._links.values():
                if link.builder is not None:
                    left = self._max_block_s if deadline is None else max(0.0, deadline - time.monotonic())
                    self._seal(link, left)
        for _ in range(10_000_000):   # bounded by the deadline or by delivery
            self.poll(0)
            if self._undelivered == 0:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with self._reported:
                self._reported.wait_for(lambda: self._reports or self._undelivered == 0,
                                        0.1 if left is None else min(0.1, left))
        self.poll(0)
        return self._undelivered

    def __len__(self):
        return self._undelivered

    # == lifetime ====================================================================
    def close(self, timeout=None):
        """Flush (up to `timeout` s; None: until every record is delivered, as Kafka's
        close() waits), then detach from every partition and free the rings. Each record
        still undelivered then gets its on_delivery callback, run here, with
        RequestTimedOut (REQUEST_TIMED_OUT) saying whether it reached the broker's ring
        (then a leader may still write it) or never left this process."""
        if self._closed:
            return
        left = self.flush(timeout)
        self._closed = True
        self._doorbell.ring()
        self._sender.join(5)
        if left and not self._sender.is_alive():
            self._take_completions()     # acknowledged since flush() looked
            self._fail_undelivered()
        self.poll(0)
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
