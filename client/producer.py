"""Producer: records in, Kafka v2 batches out through shared-memory rings to each
partition's leader; delivery reports back.

    from odradek.client import Producer
    with Producer({"acks": "all", "linger.ms": 5}) as p:
        p.produce("orders", b"paid", key=b"order-17",
                  on_delivery=lambda err, rec: print(err or f"at offset {rec.offset()}"))
        p.flush()

Theory of operation
- produce() is one C call (odradek._hotpath.Accumulator, daemon/c_ext/hp_producer.c;
  each Producer's produce is the accumulator's bind_produce, no Python frame per record):
  argument checks, the partition, the record encoded straight into the open batch, which
  lives in a reservation of the partition's produce ring, and the seal (header, CRC-32C,
  commit) when the batch reaches batch.size or linger.ms is 0. What it cannot do comes
  back here as a code (_produce_slow): learn a topic's partition count, open a
  partition's rings, wait for ring space (max.block.ms), refuse a record too large.
  Compressed batches (compression.type gzip, snappy, lz4 or zstd) are built in Python
  instead (client/_producer_compressed.py).
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
  the on_delivery callbacks in the caller's thread, as confluent-kafka does. Its rounds
  are at least _ROUND_GAP_S apart while no flush() waits: between two it sleeps on a
  timer, not on the doorbell, so that a leader completing a batch every few tens of
  microseconds wakes it (a futex wake, which the leader pays) once per gap, not once
  per batch; a delivery callback may come that much later. A batch
  holds its ring space from its first record, so sealing never waits; produce() waits
  (max.block.ms, GIL released) only for the space of a new batch.
- Idempotence (enable.idempotence, the default): InitProducerId gives a producer id and
  epoch; each batch carries them and its first sequence number.
- Transactions (transactional.id; KIP-98, confluent-kafka's API): init_transactions,
  begin_transaction, produce..., send_offsets_to_transaction, commit_transaction,
  abort_transaction. The state machine and the error classification are
  client/txn_manager.py (sans-IO); this file performs its actions. A partition joins the
  transaction (AddPartitionsToTxn) synchronously, from produce(), on its first record in
  each transaction: the accumulator gates every link on a flag (txn_add), so the record
  that meets a closed gate takes the slow path, which adds the partition and opens the
  gate; every later record of that partition and transaction is the one C call again.
  Why not the sender, as Kafka's Java producer does it: a batch here is sealed straight
  into the ring, which the leader reads at once, so nothing could hold a batch back until
  its partition is added. The cost is one control round trip per partition per
  transaction: 0.6 ms on the dev VM (the coordinator writes __transaction_state first),
  next to ~0.8 ms for the commit's EndTxn and ~1.5 ms until the previous transaction's
  markers are written, which the first AddPartitionsToTxn of the next one waits for
  (CONCURRENT_TRANSACTIONS, retried); the Java producer's sender-side add costs a batch
  the same round trip before it is sent (perf/transactions_perf.py). When the
  transaction ends (or fails) every gate closes (txn_clear), so a record produced
  outside a transaction is refused with IllegalState and never reaches a ring.
- A stuck broker (its ring stays full): produce() blocks up to max.block.ms, then
  raises RingFull and queues nothing of the record; flush(timeout) returns how many
  records are still undelivered; close(timeout) runs the callback of each of them with
  REQUEST_TIMED_OUT. None of them raises for it.
- on_delivery(err, record), confluent-kafka's: err is None, or a KafkaError (the same
  object as record.error()); err.exception is the OdradekError behind it.
"""
import logging
import os
import threading
import time
from collections import deque

from odradek._hotpath import (PRODUCE_FULL, PRODUCE_NEED_COUNT, PRODUCE_NEED_LINK, PRODUCE_NEED_TXN, Accumulator)
from odradek.client import _config as cfg
from odradek.client._liveness import LIVENESS_CHECK_S, Liveness, connect_again
from odradek.client._producer_compressed import compressed_accumulator
from odradek.client.admin import resolve_socket
from odradek.client.errors import (IllegalState, InvalidConfig, KafkaException, LeaderNotAvailable, MessageTooLarge,
                                   OdradekError, RequestTimedOut, RingFull, ShmCorrupt, TransactionAborted,
                                   UnknownTopicOrPartition, error_for_code)
from odradek.client.message import TIMESTAMP_CREATE_TIME, FailedDelivery, GroupMetadata, Record, TopicPartition
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol import raise_for_error
from odradek.client.records import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from odradek.client.records.compression import LEVEL_CONFIGS
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm._lib import ffi
from odradek.client.txn_manager import Done, Flush, Purge, Request, TxnManager, TxnState, Wait

__all__ = ["Producer", "attach_rings"]

log = logging.getLogger(__name__)

_SCHEMA = {
    "socket": (str, None),
    "acks": (cfg.acks, -1),
    "linger.ms": (cfg.non_negative_int, 5),
    "batch.size": (cfg.positive_int, 16384),
    "enable.idempotence": (cfg.boolean, True),
    "max.block.ms": (cfg.non_negative_int, 60_000),
    "client.id": (str, "odradek-producer"),
    "compression.type": (cfg.one_of("none", "gzip", "snappy", "lz4", "zstd"), "none"),
    **LEVEL_CONFIGS,   # compression.gzip.level, compression.lz4.level, compression.zstd.level
    "produce.ring.bytes": (cfg.positive_int, 4 << 20),
    "transactional.id": (str, None),
    "transaction.timeout.ms": (cfg.positive_int, 60_000),
    # librdkafka's name for the Java client's key hashing (murmur2), odradek's only one: a
    # confluent-kafka program that sets it to agree with Java clients runs unchanged
    "partitioner": (cfg.one_of("murmur2_random"), "murmur2_random"),
}
_TXN_TURNS = 1_000_000    # bounds a transactional operation's steps; its deadline ends it first
_RETRY_S = 0.05
_SLOW_TURNS = 1_000_000   # bounds _produce_slow's loop; the deadline ends it first
_ROUND_GAP_S = 0.0005     # the sender's rounds at most this often (the module doc)


def _address(cdata):
    return int(ffi.cast("uintptr_t", cdata))


def _completion_error(link, code):
    """The error of a batch the leader refused: a completion carries only the code, so
    the message is what the code means, and where."""
    cls = error_for_code(code)
    return cls(f"{link.topic}-{link.partition}: {cls.__doc__.rstrip('.').lower()} "
               f"(the partition leader refused the batch)")


def _transactional_config(c, given):
    """transactional.id implies enable.idempotence=true and acks=all, as in Kafka; either
    given explicitly otherwise is refused."""
    if not c["transactional.id"]:
        if "transactional.id" in given:
            raise InvalidConfig("producer config transactional.id must not be empty")
        return
    if "enable.idempotence" in given and not c["enable.idempotence"]:
        raise InvalidConfig("transactional.id needs enable.idempotence=true (a transactional producer is "
                            "idempotent); remove enable.idempotence=false")
    if "acks" in given and c["acks"] != -1:
        raise InvalidConfig(f"transactional.id needs acks=all (-1), not acks={given['acks']}; remove it or set "
                            f"acks=all")
    c["enable.idempotence"], c["acks"] = True, -1


def _ring_full(topic, partition, max_block_s):
    return RingFull(f"the ring to {topic}-{partition} stayed full for {max_block_s:.1f} s "
                    f"(max.block.ms): the broker is not keeping up or is down")


def attach_rings(client, topic, partition, acks, producer_id, producer_epoch, fds, deadline):
    """OpenProducer on `client`: attach a producer's rings to the partition's leader. `fds`:
    produce ring, completion ring, the producer's doorbell. Retries while the partition has
    no leader, until `deadline` (time.monotonic()). Returns (the topic's max batch bytes,
    the leader's Doorbell, to ring after each commit). The Producer and the Kafka gateway's
    produce path (daemon/gateway/produce_rings.py) both attach, and re-attach after a
    broker restart, with it."""
    for _ in range(100_000):   # bounded by the deadline
        try:
            res, got = client.call(
                m.OpenProducerRequest(topic=topic, partition=partition, acks=acks,
                                      producer_id=producer_id, producer_epoch=producer_epoch), fds)
            break
        except LeaderNotAvailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_RETRY_S)
    try:
        leader = Doorbell.attach(got[0], shared=True)   # every producer of it can write it
    finally:
        for fd in got:
            os.close(fd)
    return res.max_batch_bytes, leader


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
        _transactional_config(c, config or {})
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
        self._txn = None
        if c["transactional.id"]:    # the producer id comes from init_transactions()
            self._txn = TxnManager(c["transactional.id"], c["transaction.timeout.ms"])
            self._txn_lock = threading.Lock()      # the TxnManager: one call at a time
            self._txn_op_lock = threading.Lock()   # one transactional operation at a time
        elif c["enable.idempotence"]:
            res, _ = self._client.call(m.InitProducerIdRequest())
            self._pid, self._epoch = res.producer_id, res.producer_epoch
        self._doorbell, self._doorbell_fd = Doorbell.create()
        self._leader_doorbells = []
        self._links = {}          # (topic, partition) -> _Link
        self._link_list = []      # by accumulator link id
        accumulator = Accumulator if c["compression.type"] == "none" else compressed_accumulator(c)
        self._acc = accumulator(c["batch.size"], c["linger.ms"], self._acks, self._pid, self._epoch,
                                _address(self._doorbell._ptr), self._doorbell, transactional=self._txn is not None)
        if hasattr(self._acc, "bind_produce") and type(self).produce is Producer.produce:
            # produce() as one C call, no Python frame per record (the method below, bound
            # here: what it would do, for the C accumulator; a subclass's override stays)
            self.produce = self._acc.bind_produce(self._produce_slow)
        self._reports = deque()                # (on_delivery, err, Record) ready for poll()
        self._reported = threading.Condition()
        self._flushing = 0                     # flush() calls under way (under _reported)
        self._hurry = threading.Event()        # set while one is: the sender takes no pause
        self._settled = 0                      # records reported (delivered or failed)
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="odradek-producer-sender", daemon=True)
        self._sender.start()

    # == producing ==================================================================
    def produce(self, topic, value=None, key=None, partition=None, on_delivery=None, timestamp=None,
                headers=None):
        """Queue one record (confluent-kafka's positional order). Returns at once, unless
        the partition's ring is full (then it blocks up to max.block.ms and raises
        RingFull). The outcome reaches on_delivery(err, record) from poll() or flush().
        As in librdkafka: timestamp 0 (or None) is the current time, partition -1 (or None)
        lets the partitioner choose."""
        if timestamp is not None and timestamp == 0 and type(timestamp) is int:
            timestamp = None
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
        if self._txn is not None and self._pid == NO_PRODUCER_ID:
            raise IllegalState("attach() on a transactional producer: call init_transactions() first")
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
        if self._txn is not None:
            with self._txn_lock:
                self._txn.check_produce()
        for _ in range(_SLOW_TURNS):
            code, partition, nbytes, limit = res
            if code == PRODUCE_NEED_TXN:
                self._add_to_transaction(topic, partition)
            elif code == PRODUCE_NEED_COUNT:
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
            link.id = self._acc.add_link(topic, partition, _address(requests._r), requests, limit, 0,
                                         _address(completions._r), completions)
            self._link_list.append(link)
            self._links[(topic, partition)] = link

    def _attach(self, topic, partition, ring_fds, deadline):
        """OpenProducer for our rings (with the control lock held); returns the topic's
        max batch size and the leader's doorbell."""
        max_batch_bytes, leader = attach_rings(self._client, topic, partition, self._acks, self._pid, self._epoch,
                                               [*ring_fds, self._doorbell_fd], deadline)
        # kept until close(): a ring being committed on another thread may still ring
        # the previous one after a reconnect switched it
        self._leader_doorbells.append(leader)
        return max_batch_bytes, leader

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

    # == transactions ================================================================
    def init_transactions(self, timeout=None):
        """Register transactional.id with the transaction coordinator (InitProducerId):
        get the producer id and a new epoch, which fences any previous instance with the
        same transactional.id and aborts a transaction it left open. Call once, before
        any other transactional call. Retries retriable answers for up to `timeout`
        seconds (None: max.block.ms), then raises RequestTimedOut (retriable: call it
        again). Raises IllegalState on a producer without transactional.id."""
        self._require_txn("init_transactions()")
        pid, epoch = self._txn_run(lambda now: self._txn.start_init(now, self._timeout(timeout)))
        self._acc.set_producer(pid, epoch)
        self._pid, self._epoch = pid, epoch

    def begin_transaction(self):
        """Open a transaction: records produced from here on belong to it, until
        commit_transaction() or abort_transaction(). Local: no request is sent (each
        partition joins the transaction on its first record, with AddPartitionsToTxn).
        IllegalState before init_transactions() or while a transaction is open."""
        self._require_txn("begin_transaction()")
        with self._txn_lock:
            self._txn_call(self._txn.begin)

    def send_offsets_to_transaction(self, positions, group_metadata, timeout=None):
        """Commit a consumer group's offsets as part of the transaction: `positions` are
        TopicPartitions with the next offset to consume (Consumer.position(assignment())), and
        `group_metadata` the Consumer's group_metadata(). They become the group's
        committed offsets only if the transaction commits; partitions whose offset is
        negative (no position yet) are skipped. IllegalState outside a
        transaction; a group that moved on (UnknownMemberId, IllegalGeneration, ...)
        makes the transaction abortable (txn_requires_abort)."""
        self._require_txn("send_offsets_to_transaction()")
        positions = list(positions)
        if not all(isinstance(tp, TopicPartition) for tp in positions):
            raise TypeError("positions must be TopicPartitions (topic, partition, next offset to consume)")
        bad = [tp for tp in positions if type(tp.offset) is not int]
        if bad:
            raise TypeError(f"{bad[0].topic}-{bad[0].partition}: offset {bad[0].offset!r} is not a position "
                            f"(an int)")
        # A partition with no position yet (OFFSET_INVALID, while its committed offset is
        # still unstable) has nothing to commit: skipped, as librdkafka does.
        positions = [tp for tp in positions if tp.offset >= 0]
        if not isinstance(group_metadata, GroupMetadata) or not group_metadata.group_id:
            raise TypeError("group_metadata must be the GroupMetadata of a Consumer with a group.id "
                            "(Consumer.group_metadata())")
        if positions:
            self._txn_run(lambda now: self._txn.start_send_offsets(positions, group_metadata, now,
                                                                   self._timeout(timeout)))

    def commit_transaction(self, timeout=None):
        """Flush every record of the transaction, then commit it (EndTxn): its records
        and offsets become visible to read_committed consumers together. Retries
        retriable answers for up to `timeout` seconds (None: max.block.ms), then raises
        RequestTimedOut (retriable: call it again). A record that failed makes it raise
        that error with txn_requires_abort (call abort_transaction()); a fenced producer
        raises with fatal set."""
        self._require_txn("commit_transaction()")
        self._txn_run(lambda now: self._txn.start_commit(now, self._timeout(timeout)))

    def abort_transaction(self, timeout=None):
        """Abort the transaction: records not yet sent to their partitions are dropped
        (their on_delivery's err.exception is TransactionAborted), those sent are waited for, then the
        coordinator writes ABORT markers (EndTxn), so no read_committed consumer sees any
        of them. `timeout` as commit_transaction's."""
        self._require_txn("abort_transaction()")
        self._txn_run(lambda now: self._txn.start_abort(now, self._timeout(timeout)))

    def _require_txn(self, what):
        if self._txn is None:
            raise IllegalState(f"{what} needs transactional.id in the producer config")
        if self._closed:
            raise RuntimeError(f"{what} on a closed Producer")

    def _timeout(self, timeout):
        return self._max_block_s if timeout is None else timeout

    def _txn_call(self, fn, *args):
        """fn(*args) on the TxnManager (its lock held); whenever the transaction is no
        longer open, the accumulator's gates close, so no record enters a ring outside it."""
        try:
            return fn(*args)
        finally:
            if self._txn.state is not TxnState.IN_TRANSACTION:
                self._acc.txn_clear()

    def _txn_run(self, start):
        """One transactional operation: start(now) gives the first action; perform each
        and hand its outcome to the TxnManager, until Done (whose result is returned)."""
        with self._txn_op_lock:
            with self._txn_lock:
                action = self._txn_call(start, time.monotonic())
            for _ in range(_TXN_TURNS):
                if isinstance(action, Done):
                    return action.result
                outcome = self._perform(action)
                with self._txn_lock:
                    action = self._txn_call(self._txn.step, outcome, time.monotonic())
            raise RequestTimedOut("the transactional operation did not finish")

    def _perform(self, action):
        if isinstance(action, Request):
            try:
                with self._client_lock:
                    res, _ = self._client.call(action.request)
                return res
            except OdradekError as e:
                return e
        if isinstance(action, Flush):
            return self.flush(action.timeout)
        if isinstance(action, Purge):
            self._purge()
            return None
        assert isinstance(action, Wait), action
        time.sleep(action.seconds)   # a retry's backoff (the operation's deadline bounds the retries)
        return None

    def _purge(self):
        """abort_transaction(): drop every open batch (never sent) and report its records
        failed with TransactionAborted."""
        for link in self._link_list:
            for count, pending in self._acc.take_open(link.id):
                self._report(link, count, pending, -1, TransactionAborted(
                    f"abort_transaction() dropped the record before it was sent to {link.topic}-{link.partition}; "
                    f"it was not written"))

    def _add_to_transaction(self, topic, partition):
        """produce()'s slow path: add the partition to the transaction (AddPartitionsToTxn,
        up to max.block.ms), then open its gate in the accumulator."""
        self._txn_run(lambda now: self._txn.start_add([(topic, partition)], now, self._max_block_s))
        with self._txn_lock:   # still in this transaction (a failure closes the gates)
            self._txn.check_produce()
            if (topic, partition) in self._txn.partitions:
                self._acc.txn_add(self._links[(topic, partition)].id)

    # == delivery reports ============================================================
    def _report(self, link, count, pending, base_offset, error):
        """Queue the delivery reports of a batch of `count` records; `pending` holds, for
        each record with an on_delivery callback, (its index in the batch, callback, key,
        value, headers, timestamp); None: no record has one."""
        items = self._report_items(link, pending, base_offset, error)
        with self._reported:
            self._reports.extend(items)
            self._settled += count
            self._reported.notify_all()

    @staticmethod
    def _report_items(link, pending, base_offset, error):
        """(on_delivery, error, Record) of each record of a batch that has a callback."""
        items = []
        if pending is None:
            return items
        # confluent-kafka's shape: on_delivery's err and the record's error() are one KafkaError
        # (the OdradekError is its .exception)
        kafka_error = error.args[0] if isinstance(error, KafkaException) else None
        for i, callback, key, value, headers, ts in pending:
            offset = -1 if base_offset < 0 else base_offset + i
            headers = list(headers) if headers else None
            if error is None:
                rec = Record(link.topic, link.partition, offset, key, value, headers, ts)
            else:
                rec = FailedDelivery(link.topic, link.partition, offset, key, value, headers, ts,
                                     TIMESTAMP_CREATE_TIME, kafka_error)
            items.append((callback, kafka_error, rec))
        return items

    def _send_loop(self):
        doorbell, monotonic, hurry = self._doorbell, time.monotonic, self._hurry
        while not self._closed:
            started = monotonic()
            seen = self._take_completions()
            timeout = self._acc.seal_due(LIVENESS_CHECK_S)   # batches whose linger.ms ran out
            self._check_broker()
            pause = min(started + _ROUND_GAP_S - monotonic(), timeout)
            if pause > 0 and not hurry.is_set():
                # the leaders' rings meanwhile find nobody asleep: no wake-up to pay; a
                # flush() (a transaction's commit among them) ends the pause
                hurry.wait(pause)
                timeout -= pause
            doorbell.wait(seen, max(timeout, 0.0))

    def _take_completions(self):
        """Queue a delivery report for every batch the leaders have acknowledged (with
        acks=0: every batch sealed); returns our doorbell's counter as it was before
        looking (to sleep on). The accumulator reads every completion ring in one call
        (collect), without letting go of the GIL; a batch with neither callbacks nor an
        error only adds its records to the accumulator's settled count."""
        settled = self._acc.settled
        seen, reports, strays, corrupt = self._acc.collect()
        for link_id, tag in strays:
            link = self._link_list[link_id]
            log.warning("completion for unknown tag %d on %s-%d", tag, link.topic, link.partition)
        items, reported = [], 0
        for link_id, count, pending, base_offset, code in reports:
            link = self._link_list[link_id]
            error = _completion_error(link, code) if code else None
            if error is not None and self._txn is not None:
                with self._txn_lock:   # fenced: fatal; else the transaction must abort
                    self._txn_call(self._txn.batch_failed, error)
            items += self._report_items(link, pending, base_offset, error)
            reported += count
        if reported or self._acc.settled != settled:
            with self._reported:
                self._reports.extend(items)
                self._settled += reported
                self._reported.notify_all()
        if corrupt is not None:
            link = self._link_list[corrupt[0]]
            raise ShmCorrupt(f"{link.topic}-{link.partition}: {corrupt[1]}")
        return seen

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
        stuck broker makes that count non-zero, never an exception. (A compressed batch whose
        ring stays full stays open, and the sender hands it over when there is room.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._reported:   # someone waits for the reports: the sender's rounds come at once
            self._flushing += 1
            self._hurry.set()
        try:
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
        finally:
            with self._reported:
                self._flushing -= 1
                if not self._flushing:
                    self._hurry.clear()
        self.poll(0)
        return len(self)

    def __len__(self):
        """Records produced and not yet reported (delivered or failed)."""
        settled = self._settled + self._acc.settled   # before queued: never too low
        return self._acc.queued - settled

    # == lifetime ====================================================================
    def close(self, timeout=None):
        """Flush (up to `timeout` s; None: until every record is delivered, as Kafka's
        close() waits), then detach from every partition and free the rings. Each record
        still undelivered then gets its on_delivery callback, run here, with
        REQUEST_TIMED_OUT (err.exception a RequestTimedOut) saying whether it reached the broker's ring
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
