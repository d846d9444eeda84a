"""Consumer: reads assigned partitions straight from the broker's memory, zero-copy.

    from odradek.client import Consumer, TopicPartition, OFFSET_BEGINNING
    with Consumer({"auto.offset.reset": "earliest"}) as c:
        c.assign([TopicPartition("orders", 0, OFFSET_BEGINNING)])
        for _ in range(100):
            rec = c.poll(1.0)
            if rec is not None:
                print(rec.offset(), rec.key(), rec.value())

Theory of operation
- assign(): OpenFetch gives each partition's state (read-only shared memory: log start,
  high watermark, log end, and descriptors of the last batches; client/shm/LAYOUT.md).
- A fetch reads a consistent snapshot, then finds the batch holding the position among
  the descriptors and reads its bytes straight out of the segment file, which it maps
  read-only from an fd the broker passed (GetSegment). Positions older than the
  descriptor window (catching up, replay) ask GetSegment where to read: it answers with
  a run of whole committed batches in one segment, read with no further round trips.
- One C call per fetch (odradek._hotpath.decode_fetch: daemon/c_ext/hp_consumer.c)
  checks its batches, decodes their records and makes the Records; nothing is copied
  until a record's key and value become bytes (with zero.copy, not even then).
  consume(n) hands over a fetch's list of Records whole (a slice where n cuts it).
- Only batches below the high watermark are read; their bytes never change.
- Waiting is a futex sleep on the change counters of every assigned partition at once
  (futex_waitv): no polling (the sleep ends at least every 0.5 s to check that the
  broker is still there), ~0% CPU while idle; a record produced wakes the consumer at
  once (a futex wake, ~17 us p50 on the dev VM; produce to poll, Python included, ~330
  us p50: perf/end_to_end_latency.py). fetch.min.bytes and fetch.max.wait.ms are honoured as Kafka
  does: a poll waits up to fetch.max.wait.ms for that many bytes, then returns what it has.
- Not thread-safe: one thread uses a Consumer (as with Kafka's). With a group.id the
  Consumer has one helper thread of its own (heartbeats; client/group_member.py).

zero.copy=true (default false): key and value are read-only views of the mapped segment
instead of bytes copies (compressed batches: of the decompressed bytes; headers stay bytes):
odradek._hotpath.BytesView, which has the buffer protocol (memoryview(v), bytes(v), any
call that takes a bytes-like object; writes refused), len(v), v[i] and v[i:j], and ==
and hash like bytes (daemon/c_ext/hp_bytes_view.c). A view is valid until the next
poll()/consume() or close() of this consumer: use it or copy it (bytes(rec.value()))
before then. A view kept longer never crashes the
process: it keeps the segment's mapping alive (even after retention deleted the file or
the consumer closed), but what it shows then is not promised. The one exception: a view
read while a leader cuts committed data from that file (only after an unclean change of
leader) can meet a page the cut removed, and the process gets SIGBUS.

    with Consumer({"auto.offset.reset": "earliest", "zero.copy": True}) as c:
        c.assign([TopicPartition("orders", 0, OFFSET_BEGINNING)])
        for rec in c.consume(1000, 1.0):
            handle(rec.value())             # a read-only view: valid until the next consume()

A batch that cannot be read (a flipped bit on disk: CRC-32C, a damaged length, header or
record; records in gzip, snappy, lz4 or zstd that do not decompress, or inflate past the
bound of records/compression.py; a compression id 5-7, which is no codec) hides nothing
before it: poll() and consume() return every record up to it, then raise CorruptRecord
(CORRUPT_MESSAGE), as Kafka's consumer does. The error names the partition (err.topic,
err.partition), the batch's offsets (err.offset, the first) and the next readable offset
(err.next_offset; None when nothing says where a batch with a damaged length ends: then
seek further). The position stays at the batch
and each poll raises again (other partitions go on) until seek() moves past it:

    try:
        rec = c.poll(1.0)
    except CorruptRecord as err:
        log.error("%s", err)        # "orders-0: the batch at offsets 496..503 fails ..."
        c.seek(TopicPartition(err.topic, err.partition, err.next_offset))

check.crcs=false skips only the CRC: a batch whose bit flipped in a key or value is
delivered as it is (as Kafka does); a damaged length, header or record, or an unknown
codec, still stops the reader. How the next readable offset is found:
client/_unreadable.py.

isolation.level (KIP-98): "read_uncommitted" (the default, as Kafka's) returns every
record below the high watermark, transactional or not; "read_committed" returns only
committed ones: nothing at or above the partition's last stable offset (the first offset
of a transaction still open: the consumer waits there as it waits for the high watermark,
and OFFSET_END / "latest" mean the LSO), and no record of an aborted transaction. Control
records (transaction markers) are never returned in either level, and the position moves
past them and past aborted batches, so commits and lag count them. How the aborted
transactions are known: client/_committed_read.py.

    with Consumer({"group.id": "billing", "isolation.level": "read_committed"}) as c: ...

Consumer groups (group.id): subscribe() shares topics among the members of a group,
each partition owned by one member at a time, positions committed to the broker
(__consumer_offsets). Protocol and rebalances: client/group_membership.py; the thread:
client/group_member.py.

    c = Consumer({"group.id": "billing", "auto.offset.reset": "earliest"})
    c.subscribe(["orders"],                         # or a regex: "^orders-.*"
                on_assign=lambda c, parts: print("assigned", parts),
                on_revoke=lambda c, parts: print("revoked", parts))
    while running:
        rec = c.poll(1.0)                           # joins, heartbeats run meanwhile
        if rec is not None:
            handle(rec)
    c.close()                                       # commits, leaves the group

- Callbacks run inside poll()/consume(), in the caller's thread: on_assign(consumer,
  partitions) once the partitions are positioned (committed offset, else
  auto.offset.reset; seek() in it to start elsewhere; read_committed, a partition whose
  committed offset an open transaction holds has none yet: position() OFFSET_INVALID,
  nothing read from it until the transaction ends, while poll() keeps its timeout),
  on_revoke(consumer, partitions)
  before they go (commit there if you commit by hand), on_lost(consumer, partitions)
  when the member was thrown out and they already went (default: on_revoke).
- partition.assignment.strategy: "range", "roundrobin", "cooperative-sticky" or a comma
  list in order of preference; default "range,cooperative-sticky" (Kafka 3.x's). Only
  cooperative-sticky alone rebalances incrementally (partitions that stay are not
  revoked, and are consumed during the rebalance).
- max.poll.interval.ms (default 300000): call poll() at least this often. A member that
  does not is removed from the group by its own heartbeat thread, its partitions move,
  and its next poll() raises MaxPollIntervalExceeded; the poll after that rejoins.
- group.instance.id: static membership. A restart within session.timeout.ms gets the
  same partitions back with no rebalance of the others; close() does not leave.
- metadata.max.age.ms (default 300000): how often partition counts and regex matches are
  re-read; a change rebalances the group (the leader notices added partitions).

Delivery guarantees (commit = where the group resumes after a crash or a rebalance):
- at-least-once (the default): enable.auto.commit commits, every
  auto.commit.interval.ms from poll(), before revocation and at close(), the positions
  of records poll() returned *earlier*, i.e. that the loop has finished handling. A
  crash repeats what was handled after the last commit; nothing is skipped. By hand:
  enable.auto.commit=false, handle the record, then c.commit(rec) (or c.commit() for
  every assigned partition's position).
      rec = c.poll(1.0); handle(rec); c.commit(rec)
- at-most-once: commit before handling: a crash mid-handling skips that record, never
  repeats it.
      rec = c.poll(1.0); c.commit(rec); handle(rec)
- commit(offsets=None, asynchronous=False, *, message=None, metadata=None): offsets is a
  list of TopicPartition (offset = the next record to read) or OffsetAndMetadata (each
  with its own metadata string); metadata= gives one string to all. committed(partitions)
  returns OffsetAndMetadata items (offset OFFSET_INVALID when nothing is committed), whose
  .metadata is that string. asynchronous=True reports to the on_commit config callback,
  on_commit(err, partitions), instead of raising (the local round trip is ~100 us, so it
  completes before returning).
"""
import os
import time
from collections import deque

from odradek.client import _config as cfg
from odradek.client._committed_read import AbortedTxns
from odradek.client._liveness import LIVENESS_CHECK_S, Liveness, connect_again
from odradek.client._fetch_decode import FetchDecoder
from odradek.client._partition_read import AssignedPartition, Fault, Fetched
from odradek.client.admin import resolve_socket
from odradek.client.errors import (InvalidConfig, InvalidGroupId, LeaderNotAvailable, OdradekError, OffsetOutOfRange,
                                   TornState, UnknownTopicOrPartition)
from odradek.client.group_member import GroupLink, GroupMember
from odradek.client.message import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OffsetAndMetadata, TopicPartition
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol import raise_for_error
from odradek.client.shm import PartitionState
from odradek.client.shm.waiting import WAIT_MANY_MAX, Sleeper

__all__ = ["Consumer"]


def _strategies(raw):
    from odradek.client.assignors import ASSIGNORS
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw)]
    if not names or not all(names):
        raise ValueError("name at least one assignor")
    for n in names:
        if n not in ASSIGNORS:
            raise ValueError(f"unknown assignor {n!r}; known: {', '.join(ASSIGNORS)}")
    if len(set(names)) != len(names):
        raise ValueError("an assignor is named twice")
    return names


def _callable_or_none(raw):
    if raw is not None and not callable(raw):
        raise ValueError("must be callable")
    return raw


_SCHEMA = {
    "socket": (str, None),
    "auto.offset.reset": (cfg.one_of("latest", "earliest", "error"), "latest"),
    "fetch.min.bytes": (cfg.positive_int, 1),
    "fetch.max.wait.ms": (cfg.non_negative_int, 500),
    "max.partition.fetch.bytes": (cfg.positive_int, 1 << 20),
    "check.crcs": (cfg.boolean, True),
    "zero.copy": (cfg.boolean, False),
    "isolation.level": (cfg.one_of("read_uncommitted", "read_committed"), "read_uncommitted"),
    "client.id": (str, "odradek-consumer"),
    "group.id": (str, None),
    "group.instance.id": (str, None),
    "session.timeout.ms": (cfg.positive_int, 45000),
    "heartbeat.interval.ms": (cfg.positive_int, 3000),
    "max.poll.interval.ms": (cfg.positive_int, 300000),
    "partition.assignment.strategy": (_strategies, ["range", "cooperative-sticky"]),
    "enable.auto.commit": (cfg.boolean, True),
    "auto.commit.interval.ms": (cfg.non_negative_int, 5000),
    "metadata.max.age.ms": (cfg.positive_int, 300000),
    "on_commit": (_callable_or_none, None),
}
_RETRY_S = 0.02      # a partition whose leader is restarting: look again this soon
RECONNECT_S = 0.5    # how long one attempt to reconnect to a restarted broker waits


class _GroupPartitions:
    """The Consumer as its GroupMember's PartitionHost (client/group_member.py): the
    calls the group's decisions need, on the Consumer's thread."""

    def __init__(self, consumer):
        self.consumer = consumer

    def call(self, request, timeout=None):
        res, fds = self.consumer._client.call(request, timeout=timeout)
        for fd in fds:
            os.close(fd)
        return res

    def assign(self, keys, offsets):
        c = self.consumer
        for key in keys:
            offset = None if offsets is None else offsets.get(key)
            part = c._parts.get(key)
            if part is None:
                try:
                    part = c._open(*key)
                except (LeaderNotAvailable, TornState):
                    c._pending_open[key] = offset      # opened by a later fetch round
                    part = None
            if part is not None:
                c._seek(part, offset)
            if offsets is None:
                c._awaiting.add(key)

    def position(self, offsets):
        c = self.consumer
        for key, offset in offsets.items():
            if key not in c._awaiting:
                continue        # seek() gave it a position meanwhile, or it went
            c._awaiting.discard(key)
            part = c._parts.get(key)
            if part is not None:
                c._seek(part, offset)
            elif key in c._pending_open:
                c._pending_open[key] = offset

    def unassign(self, keys):
        c = self.consumer
        for key in keys:
            c._pending_open.pop(key, None)
            c._awaiting.discard(key)
            if key in c._parts:
                c._drop(key)

    def positions(self, keys):
        out = {}
        for key in keys:
            part = self.consumer._parts.get(tuple(key))
            if part is not None and part.position is not None:
                out[tuple(key)] = part.position
        return out

    def assigned(self):
        return list(self.consumer._parts)


class Consumer(FetchDecoder):
    def __init__(self, config=None):
        self.config = c = cfg.parse_config(config, _SCHEMA, "consumer")
        if c["group.id"] is not None:
            if not c["group.id"]:
                raise InvalidConfig("consumer config group.id must not be empty")
            if c["group.instance.id"] == "":
                raise InvalidConfig("consumer config group.instance.id must not be empty (omit it for a "
                                    "dynamic member)")
            if c["heartbeat.interval.ms"] >= c["session.timeout.ms"]:
                raise InvalidConfig(f"heartbeat.interval.ms ({c['heartbeat.interval.ms']}) must be lower than "
                                    f"session.timeout.ms ({c['session.timeout.ms']}); a third of it is usual")
        elif c["group.instance.id"] is not None:
            raise InvalidConfig("group.instance.id needs a group.id")
        self._reset = c["auto.offset.reset"]
        self._min_bytes = c["fetch.min.bytes"]
        self._max_wait_s = c["fetch.max.wait.ms"] / 1000
        self._max_bytes = c["max.partition.fetch.bytes"]
        self._check_crcs = c["check.crcs"]
        self._zero_copy = c["zero.copy"]
        self._committed = c["isolation.level"] == "read_committed"
        self._isolation = m.IsolationLevel.READ_COMMITTED if self._committed else m.IsolationLevel.READ_UNCOMMITTED
        self._socket_path = resolve_socket(c["socket"])
        self._client = ControlClient(self._socket_path)
        self._liveness = Liveness()
        self._parts = {}          # (topic, partition) -> _Partition
        self._buffer = deque()    # Fetched runs of Records not yet returned, and Faults
        self._buffered = 0        # Records in the buffer
        self._faults = 0          # Faults in the buffer
        self._pending_open = {}   # (topic, partition) -> offset: assigned by the group, no leader yet
        # (topic, partition) the group assigned whose committed offset is still to come: no
        # position, not fetched or waited on (client/group_membership.py: positions of new partitions)
        self._awaiting = set()
        # (topic, partition) poll() returned a record of since its assign or seek: position()
        # says OFFSET_INVALID for the others, as confluent-kafka does
        self._returned = set()
        self._pending_retry_at = 0.0
        self._closed = False
        self._sleeper = Sleeper()   # _wait's WaitSet, made again only when the partitions change
        self._group = None
        if c["group.id"] is not None:
            path = resolve_socket(c["socket"])
            try:
                self._group = GroupMember(_GroupPartitions(self), c, lambda: GroupLink(path))
            except BaseException:
                self._client.close()
                raise

    # == assignment and positions =====================================================
    def assign(self, partitions):
        """Read exactly these partitions (replacing any earlier assignment). Each
        TopicPartition's offset: an offset, OFFSET_BEGINNING, OFFSET_END, or omitted
        (auto.offset.reset decides)."""
        g = self._group
        if g is not None and g.subscribed:
            if not g.in_callback:
                raise OdradekError("assign() on a subscribed consumer: the group assigns its partitions; "
                                   "unsubscribe() first, or call assign() only inside on_assign to set "
                                   "the starting offsets")
            for tp in partitions:   # inside on_assign: set where the given partitions start
                part = self._parts.get((tp.topic, tp.partition))
                if part is not None and tp.offset is not None and tp.offset != OFFSET_INVALID:
                    self._seek(part, tp.offset)
            return
        wanted = {(tp.topic, tp.partition): tp for tp in partitions}
        # with a group.id, partitions given no offset start at the committed one: asked for
        # below, and until it is known (read_committed: while a transaction holds it) they
        # have no position and are not fetched; poll() asks again (Kafka's rule: assign()
        # never waits)
        unset = [] if g is None else [key for key, tp in wanted.items()
                                      if tp.offset is None or tp.offset == OFFSET_INVALID]
        gone = [key for key in self._parts if key not in wanted]
        for key in gone:
            self._drop(key)
        if g is not None:
            g.forget_positions(gone + unset)
        for key, tp in wanted.items():
            part = self._parts.get(key) or self._open(tp.topic, tp.partition)
            self._seek(part, tp.offset)
        if unset:
            self._awaiting.update(unset)
            g.position_assigned(unset)

    def unassign(self):
        if self._group is not None and self._group.subscribed:
            raise OdradekError("unassign() on a subscribed consumer: use unsubscribe()")
        if self._group is not None:
            self._group.forget_positions(list(self._parts))
        for key in list(self._parts):
            self._drop(key)

    def assignment(self):
        """The partitions this consumer reads: assign()'s, or what the group gave it."""
        if self._group is not None and self._group.subscribed:
            return [TopicPartition(t, p) for (t, p) in self._group.assignment()]
        return [TopicPartition(t, p) for (t, p) in self._parts]

    # == consumer groups ==================================================================
    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        """Join the group (at the next poll) for these topics: a list of names, or one
        regex string starting with '^' (topics created later that match are picked up
        within metadata.max.age.ms). Replaces an earlier subscription. Callbacks:
        fn(consumer, [TopicPartition]), run inside poll()."""
        g = self._require_group("subscribe()")
        if not g.subscribed and self._parts:
            raise OdradekError("subscribe() on a consumer with a manual assignment: unassign() first")
        g.subscribe(topics, on_assign, on_revoke, on_lost)

    def unsubscribe(self):
        """Leave the group: commit (enable.auto.commit), on_revoke, LeaveGroup."""
        if self._group is not None:
            self._group.unsubscribe()

    def commit(self, offsets=None, asynchronous=False, *, message=None, metadata=None):
        """Commit offsets to the group: `offsets` (TopicPartition or OffsetAndMetadata
        items: the offset of the next record to read), or `message` (a Record: its
        offset + 1), or else the position of every assigned partition. `metadata`: one
        string stored with every offset (an OffsetAndMetadata's own string wins).
        Returns the committed TopicPartitions; raises on failure (RebalanceInProgress,
        IllegalGeneration, UnknownMemberId when the group moved on). asynchronous=True:
        returns None and reports the outcome to on_commit instead of raising."""
        return self._require_group("commit()").commit(offsets, asynchronous, message, metadata)

    def committed(self, partitions, timeout=None):
        """The group's committed offsets: OffsetAndMetadata per partition, in order
        (offset OFFSET_INVALID where nothing is committed; .metadata the commit's string).
        With isolation.level=read_committed, offsets an open transaction holds are waited
        for (KIP-447) up to `timeout`, then UnstableOffsetCommit."""
        g = self._require_group("committed()")
        got = g.fetch_committed([(tp.topic, tp.partition) for tp in partitions], timeout)
        return [got.get((tp.topic, tp.partition)) or OffsetAndMetadata(tp.topic, tp.partition, OFFSET_INVALID)
                for tp in partitions]

    def group_metadata(self):
        """GroupMetadata(group_id, generation_id, member_id, group_instance_id) now
        (generation -1 while not in a generation); None without a group.id."""
        return self._group.metadata() if self._group is not None else None

    def consumer_group_metadata(self):
        """confluent-kafka's name for group_metadata(): what
        Producer.send_offsets_to_transaction takes."""
        return self.group_metadata()

    def memberid(self):
        """This member's id in the group (confluent-kafka's name), None before it joined."""
        g = self._group
        return (g.metadata().member_id or None) if g is not None else None

    def _require_group(self, what):
        if self._closed:
            raise RuntimeError(f"{what} on a closed Consumer")
        if self._group is None:
            raise InvalidGroupId(f"{what} needs a group.id in the consumer config")
        return self._group

    def _open_pending(self, now):
        self._pending_retry_at = now + _RETRY_S
        for key, offset in list(self._pending_open.items()):
            try:
                part = self._open(*key)
            except (LeaderNotAvailable, TornState):
                continue
            del self._pending_open[key]
            if key not in self._awaiting:
                self._seek(part, offset)

    def _reconnect(self):
        """The broker went away (a restart, a crash): connect again (for up to
        RECONNECT_S, then let the next round try again) and map every assigned
        partition's new shared state. Positions and buffered records are kept; segment
        maps are dropped (the files may have changed meanwhile)."""
        client = connect_again(self._socket_path, time.monotonic() + RECONNECT_S, _RETRY_S * 5)
        if client is None:
            return
        self._client.close()
        self._client = client
        for key, part in list(self._parts.items()):
            try:
                res, fds = client.call(m.OpenFetchRequest(topic=key[0], partition=key[1]))
            except (LeaderNotAvailable, TornState):
                part.retry_at = time.monotonic() + _RETRY_S
                self._liveness.look_again_soon()     # try the whole thing again next round
                continue
            try:
                state = PartitionState.attach(fds[0])
            finally:
                for fd in fds:
                    os.close(fd)
            part.state.close()
            part.state = state
            part.change = 0
            part.forget_segments()

    def _open(self, topic, partition):
        res, fds = self._client.call(m.OpenFetchRequest(topic=topic, partition=partition))
        try:
            state = PartitionState.attach(fds[0])
        finally:
            for fd in fds:
                os.close(fd)
        part = self._parts[(topic, partition)] = AssignedPartition(TopicPartition(topic, partition), state)
        if self._committed:
            part.aborted = AbortedTxns()
        return part

    def _drop(self, key):
        part = self._parts.pop(key)
        self._awaiting.discard(key)
        self._returned.discard(key)
        self._unbuffer(key)
        part.close()

    def _unbuffer(self, key):
        part = self._parts.get(key)
        if part is not None:
            part.last_item = None
        if self._buffer:
            self._buffer = deque(x for x in self._buffer if (x.topic, x.partition) != key)
            self._faults = sum(type(x) is Fault for x in self._buffer)
            self._buffered = sum(len(x.records) - x.taken for x in self._buffer if type(x) is Fetched)

    def _part(self, tp):
        part = self._parts.get((tp.topic, tp.partition))
        if part is None:
            raise UnknownTopicOrPartition(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return part

    def _seek(self, part, offset):
        self._awaiting.discard((part.tp.topic, part.tp.partition))
        self._returned.discard((part.tp.topic, part.tp.partition))
        snap = part.state.read()
        part.start_at = None
        if not snap.loaded and offset in (OFFSET_BEGINNING, OFFSET_END):
            part.start_at, offset = offset, None    # no log offsets to go by yet
        elif offset == OFFSET_BEGINNING:
            offset = snap.log_start_offset
        elif offset == OFFSET_END:
            offset = self._end(part, snap)
        elif offset is None or offset < 0:
            offset = None     # start_at or auto.offset.reset, at the first fetch
        part.position = part.fetched = offset
        resume, part.resume = part.resume, None
        part.run = None
        if resume is not None and resume[0] == offset and \
                any(seg is resume[1][0] for seg in part.segments.values()):   # still mapped
            part.run = resume[1]
        part.stopped = False
        self._unbuffer((part.tp.topic, part.tp.partition))

    def seek(self, partition):
        """Move to partition.offset (an offset, OFFSET_BEGINNING or OFFSET_END)."""
        self._seek(self._part(partition), partition.offset)

    def seek_to_beginning(self, partitions=None):
        for tp in partitions or self.assignment():
            self._seek(self._part(tp), OFFSET_BEGINNING)

    def seek_to_end(self, partitions=None):
        for tp in partitions or self.assignment():
            self._seek(self._part(tp), OFFSET_END)

    def position(self, partitions):
        """The offset of the next record poll() returns, per partition: confluent-kafka's
        position, the offset after the last record poll() or consume() returned since the
        partition's assign() or seek() (or after the transaction markers and aborted
        records that follow it), OFFSET_INVALID while none was returned. partitions is
        required, as in confluent-kafka: position(assignment()) for every assigned one."""
        out = []
        for tp in partitions:
            pos = self._part(tp).position
            if pos is None or (tp.topic, tp.partition) not in self._returned:
                pos = OFFSET_INVALID
            out.append(TopicPartition(tp.topic, tp.partition, pos))
        return out

    def pause(self, partitions):
        for tp in partitions:
            part = self._part(tp)
            part.paused = True
            part.fetched = part.position
            part.run = None
            part.stopped = False
            self._unbuffer((tp.topic, tp.partition))

    def resume(self, partitions):
        for tp in partitions:
            self._part(tp).paused = False

    def offsets_for_times(self, partitions, timeout=None):
        """For each TopicPartition(topic, partition, timestamp_ms): the earliest offset
        whose record timestamp is >= it (offset -1 if there is none; read_committed:
        none at or above the last stable offset)."""
        out = []
        for tp in partitions:
            one = m.ListOffsetsTopic(name=tp.topic, partitions=[m.ListOffsetsPartition(partition_index=tp.partition,
                                                                                     timestamp=tp.offset)])
            res, _ = self._client.call(m.ListOffsetsRequest(isolation_level=self._isolation, topics=[one]),
                                       timeout=timeout)
            p = res.topics[0].partitions[0]
            raise_for_error(p.error_code, p.error_message)
            out.append(TopicPartition(tp.topic, tp.partition, p.offset))
        return out

    # == consuming =====================================================================
    def poll(self, timeout=None):
        """The next record, or None after `timeout` seconds (None: wait forever)."""
        got = self.consume(1, timeout)
        return got[0] if got else None

    def consume(self, num_messages=1, timeout=None):
        """Up to num_messages records; waits up to `timeout` seconds (None: forever) for
        the first, then for fetch.min.bytes up to fetch.max.wait.ms; [] on timeout."""
        if self._closed:
            raise RuntimeError("consume() on a closed Consumer")
        g = self._group
        if g is None:
            return self._consume(num_messages, timeout, None)
        g.enter_poll()
        try:
            return self._consume(num_messages, timeout, g)
        finally:
            g.exit_poll()

    def _consume(self, num_messages, timeout, g):
        deadline = None if timeout is None else time.monotonic() + timeout
        fetched_bytes, min_wait_end = 0, None
        wake_seen = None
        for _ in range(1 << 30):   # bounded by the deadline
            if g is not None:
                wake_seen = g.waker.seen()     # before looking: a ring after this wakes the wait
                g.step()
            if self._buffered >= num_messages:
                break
            got = self._fetch_round()
            if self._faults:
                break     # an unreadable batch: the records before it, or its error, at once
            fetched_bytes += got
            now = time.monotonic()
            if got and not self._buffer and (deadline is None or now < deadline):
                continue   # only empty or control batches (compaction keeps some): read on
            if self._buffer:
                if fetched_bytes >= self._min_bytes:
                    break
                if min_wait_end is None:
                    min_wait_end = now + self._max_wait_s
                if now >= min_wait_end:
                    break
            wait_end = deadline if min_wait_end is None else (
                min_wait_end if deadline is None else min(deadline, min_wait_end))
            if wait_end is not None and now >= wait_end:
                break
            if g is not None:
                due = g.next_deadline()      # auto commit, metadata refresh, a join retry
                if due is not None:
                    due = max(due, now + 0.001)
                    wait_end = due if wait_end is None else min(wait_end, due)
            self._wait(None if wait_end is None else wait_end - now, wake_seen)
        return self._take(num_messages)

    def _take(self, n):
        """Up to n buffered records, whole fetches handed over as they are (or sliced),
        each partition's position moved past its last record taken. A Fault in the
        buffer: the records before it; its error when it comes first. The fault goes
        back to the end of the buffer and its partition stays stopped, its position at
        the unreadable batch: each poll raises the error again (after the records of
        other partitions fetched meanwhile) until seek(), pause() or a new assignment
        moves the partition on."""
        buf = self._buffer
        out = None
        while buf and n > 0:
            item = buf[0]
            if type(item) is Fault:
                if out is not None:
                    break
                buf.rotate(-1)
                part = self._parts[(item.topic, item.partition)]
                part.position = part.fetched = max(item.error.offset, part.position)
                raise item.error.with_traceback(None)   # not a traceback that grows each poll
            records, taken = item.records, item.taken
            if taken + n >= len(records):
                buf.popleft()
                piece = records[taken:] if taken else records
                part = item.part
                part.position = item.end           # past the control and aborted batches after it too
                if part.last_item is item:
                    part.last_item = None          # not kept alive: its Records can be freed (and reused)
            else:
                piece = records[taken:taken + n]
                item.taken = taken + n
                item.part.position = piece[-1].offset() + 1
            self._returned.add((item.topic, item.partition))
            n -= len(piece)
            if out is None:
                out = piece
            else:
                out += piece
        if out is None:
            return []
        self._buffered -= len(out)
        return out

    def _wait(self, timeout, wake_seen=None):
        waker = self._group.waker.state if wake_seen is not None else None
        limit = WAIT_MANY_MAX - (waker is not None)
        awaiting = self._awaiting
        parts = [p for key, p in self._parts.items() if not p.paused and key not in awaiting][:limit]
        now = time.monotonic()
        retry = [p.retry_at for p in parts if p.retry_at > now]
        if self._pending_open:
            retry.append(max(self._pending_retry_at, now))
        if retry:
            timeout = min(retry) - now if timeout is None else min(timeout, min(retry) - now)
        states, seen = [p.state for p in parts], [p.change for p in parts]
        if waker is not None:
            states.append(waker)
            seen.append(wake_seen)
        # at most LIVENESS_CHECK_S, so a broker that went away is noticed (_fetch_round)
        timeout = LIVENESS_CHECK_S if timeout is None else min(timeout, LIVENESS_CHECK_S)
        if not states:
            time.sleep(timeout)   # nothing to wait on
            return
        self._sleeper.wait(states, seen, timeout)

    def _fetch_round(self):
        """Fetch from each fetchable partition once; returns bytes fetched."""
        total = 0
        now = time.monotonic()
        if self._liveness.broker_gone(self._client, now):
            self._reconnect()
        if self._pending_open and now >= self._pending_retry_at:
            self._open_pending(now)
        awaiting = self._awaiting
        for key, part in list(self._parts.items()):
            if part.paused or part.stopped or part.retry_at > now or key in awaiting:
                continue
            try:
                total += self._fetch(part)
            except (TornState, LeaderNotAvailable):
                part.retry_at = now + _RETRY_S    # the leader died mid-update or is restarting
        return total

    def _fetch(self, part):
        state = part.state
        snap = state.read()
        part.change = snap.change
        if snap.leader_epoch != part.leader_epoch:
            if part.leader_epoch is not None:
                part.forget_segments()   # mapped from the previous leader's files
            part.leader_epoch = snap.leader_epoch
        if snap.fenced:
            raise UnknownTopicOrPartition(f"{part.tp.topic}-{part.tp.partition} no longer exists "
                                          f"(its topic was deleted)")
        if not snap.loaded:
            # no leader has published the log's offsets yet (its worker is starting):
            # zeros here are not an empty log, and must not reset the position
            return 0
        if part.fetched is None:
            self._reset_position(part, snap, None)
        pos = part.fetched
        if pos < snap.log_start_offset or pos > snap.log_end_offset:
            self._reset_position(part, snap, pos)
            pos = part.fetched
        limit = state.last_stable_offset(snap) if self._committed else snap.high_watermark
        if pos >= limit:
            return 0
        data = part.bytes_at(self._client, pos, limit, self._max_bytes)
        if data is None:
            return 0
        n = self._decode(part, data, pos, limit)
        if part.run is not None:
            part.run = part.run[:3] + (part.fetched,) + part.run[4:]
        return n

    def _reset_position(self, part, snap, bad):
        if bad is None and part.start_at is not None:     # a seek made before the log was loaded
            offset = snap.log_start_offset if part.start_at == OFFSET_BEGINNING else self._end(part, snap)
            part.position = part.fetched = offset
            part.start_at = part.run = None
            return
        if self._reset == "error":
            where = "no position" if bad is None else f"offset {bad} is out of range " \
                f"({snap.log_start_offset}..{snap.log_end_offset})"
            raise OffsetOutOfRange(f"{part.tp.topic}-{part.tp.partition}: {where} and auto.offset.reset "
                                   f"is 'error'; seek() to a valid offset")
        offset = snap.log_start_offset if self._reset == "earliest" else self._end(part, snap)
        part.position = part.fetched = offset
        part.run = None

    def _end(self, part, snap):
        """Where OFFSET_END / "latest" is: the high watermark, read_committed the LSO."""
        return part.state.last_stable_offset(snap) if self._committed else snap.high_watermark

    # == lifetime ==========================================================================
    def close(self):
        """Commit (enable.auto.commit), on_revoke, leave the group (not a static member),
        and release everything."""
        if self._closed:
            return
        try:
            if self._group is not None:
                self._group.close()
        finally:
            self._closed = True
            for key in list(self._parts):
                self._drop(key)
            self._pending_open.clear()
            self._sleeper.close()
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
