"""Consumer: reads assigned partitions straight from the broker's memory, zero-copy.

    from odradek.client import Consumer, TopicPartition, OFFSET_BEGINNING
    with Consumer({"auto.offset.reset": "earliest"}) as c:
        c.assign([TopicPartition("orders", 0, OFFSET_BEGINNING)])
        for _ in range(100):
            rec = c.poll(1.0)
            if rec is not None:
                print(rec.offset, rec.key, rec.value)

Theory of operation
- assign(): OpenFetch gives each partition's state (read-only shared memory: log start,
  high watermark, log end, and descriptors of the last batches; client/shm/LAYOUT.md).
- A fetch reads a consistent snapshot, then finds the batch holding the position among
  the descriptors and reads its bytes straight out of the segment file, which it maps
  read-only from an fd the broker passed (GetSegment). Nothing is copied until a record's
  key and value become Python bytes. Positions older than the descriptor window
  (catching up, replay) ask GetSegment where to read: it answers with a run of whole
  committed batches in one segment, read with no further round trips.
- Only batches below the high watermark are read; their bytes never change.
- Waiting is a futex sleep on the change counters of every assigned partition at once
  (futex_waitv): no polling, ~0% CPU while idle; a record produced wakes the consumer
  in tens of microseconds. fetch.min.bytes and fetch.max.wait.ms are honoured as Kafka
  does: a poll waits up to fetch.max.wait.ms for that many bytes, then returns what it has.
- Not thread-safe: one thread uses a Consumer (as with Kafka's).
"""
import mmap
import os
import time
from collections import deque

from odradek.client import _config as cfg
from odradek.client import native
from odradek.client.admin import resolve_socket
from odradek.client.errors import (CorruptRecord, LeaderNotAvailable, NotInWindow, OffsetOutOfRange,
                                   TornState, UnknownTopicOrPartition)
from odradek.client.message import (LOG_APPEND_TIME, OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Record,
                                    TopicPartition)
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol._errors import raise_for_error
from odradek.client.records import ATTRIBUTES_OFFSET, iter_batches
from odradek.client.records._layout import COMPRESSION_MASK, CONTROL_MASK, HEADER_STRUCT, TIMESTAMP_TYPE_MASK
from odradek.client.shm import PartitionState, wait_for_any
from odradek.client.shm.partition_state import WAIT_MANY_MAX

__all__ = ["Consumer"]

_SCHEMA = {
    "socket": (str, None),
    "auto.offset.reset": (cfg.one_of("latest", "earliest", "error"), "latest"),
    "fetch.min.bytes": (cfg.positive_int, 1),
    "fetch.max.wait.ms": (cfg.non_negative_int, 500),
    "max.partition.fetch.bytes": (cfg.positive_int, 1 << 20),
    "check.crcs": (cfg.boolean, True),
    "client.id": (str, "odradek-consumer"),
    "group.id": (str, None),
}
_RETRY_S = 0.02      # a partition whose leader is restarting: look again this soon


class _Segment:
    """A segment file mapped read-only."""
    __slots__ = ("mm", "view")

    def __init__(self, fd):
        size = os.fstat(fd).st_size
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) if size else None
        self.view = memoryview(self.mm) if size else memoryview(b"")

    def close(self):
        self.view.release()
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass   # a record view still refers to it; the map goes with the last one


class _Partition:
    __slots__ = ("tp", "state", "position", "fetched", "paused", "segments", "run", "retry_at",
                 "change")
    # run: (segment, start, end) of whole committed batches GetSegment pointed at, read
    # on from `start` while fetched stays where the last read of it ended

    def __init__(self, tp, state):
        self.tp = tp
        self.state = state
        self.position = None    # next offset to hand to the application
        self.fetched = None     # next offset to fetch (ahead of position by what is buffered)
        self.paused = False
        self.segments = {}      # base offset -> _Segment
        self.run = None         # (segment, start, end, continues at offset) from GetSegment
        self.retry_at = 0.0
        self.change = 0

    def close(self):
        for seg in self.segments.values():
            seg.close()
        self.segments.clear()
        self.state.close()


class Consumer:
    def __init__(self, config=None):
        self.config = c = cfg.parse_config(config, _SCHEMA, "consumer")
        if c["group.id"] is not None:
            raise NotImplementedError("consumer groups (group.id, subscribe) come with the group "
                                      "coordinator; use assign() for now")
        self._reset = c["auto.offset.reset"]
        self._min_bytes = c["fetch.min.bytes"]
        self._max_wait_s = c["fetch.max.wait.ms"] / 1000
        self._max_bytes = c["max.partition.fetch.bytes"]
        self._check_crcs = c["check.crcs"]
        self._client = ControlClient(resolve_socket(c["socket"]))
        self._parts = {}          # (topic, partition) -> _Partition
        self._buffer = deque()    # Records fetched, not yet returned
        self._closed = False

    # == assignment and positions =====================================================
    def assign(self, partitions):
        """Read exactly these partitions (replacing any earlier assignment). Each
        TopicPartition's offset: an offset, OFFSET_BEGINNING, OFFSET_END, or omitted
        (auto.offset.reset decides)."""
        wanted = {(tp.topic, tp.partition): tp for tp in partitions}
        for key in list(self._parts):
            if key not in wanted:
                self._drop(key)
        for key, tp in wanted.items():
            part = self._parts.get(key) or self._open(tp.topic, tp.partition)
            self._seek(part, tp.offset)

    def unassign(self):
        for key in list(self._parts):
            self._drop(key)

    def assignment(self):
        return [TopicPartition(t, p) for (t, p) in self._parts]

    def _open(self, topic, partition):
        res, fds = self._client.call(m.OpenFetchRequest(topic=topic, partition=partition))
        try:
            state = PartitionState.attach(fds[0], fds[1])
        finally:
            for fd in fds:
                os.close(fd)
        part = self._parts[(topic, partition)] = _Partition(TopicPartition(topic, partition), state)
        return part

    def _drop(self, key):
        part = self._parts.pop(key)
        self._unbuffer(key)
        part.close()

    def _unbuffer(self, key):
        if self._buffer:
            self._buffer = deque(r for r in self._buffer if (r.topic, r.partition) != key)

    def _part(self, tp):
        part = self._parts.get((tp.topic, tp.partition))
        if part is None:
            raise UnknownTopicOrPartition(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return part

    def _seek(self, part, offset):
        snap = part.state.read()
        if offset == OFFSET_BEGINNING:
            offset = snap.log_start_offset
        elif offset == OFFSET_END:
            offset = snap.high_watermark
        elif offset is None or offset < 0:
            offset = None     # auto.offset.reset, at the first fetch
        part.position = part.fetched = offset
        part.run = None
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

    def position(self, partitions=None):
        """The offset of the next record poll() returns, per partition (OFFSET_INVALID
        before the first fetch decides it)."""
        out = []
        for tp in partitions or self.assignment():
            pos = self._part(tp).position
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if pos is None else pos))
        return out

    def pause(self, partitions):
        for tp in partitions:
            part = self._part(tp)
            part.paused = True
            part.fetched = part.position
            part.run = None
            self._unbuffer((tp.topic, tp.partition))

    def resume(self, partitions):
        for tp in partitions:
            self._part(tp).paused = False

    def offsets_for_times(self, partitions, timeout=None):
        """For each TopicPartition(topic, partition, timestamp_ms): the earliest offset
        whose record timestamp is >= it (offset -1 if there is none)."""
        out = []
        for tp in partitions:
            res, _ = self._client.call(m.ListOffsetsRequest(topics=[m.ListOffsetsTopic(
                name=tp.topic, partitions=[m.ListOffsetsPartition(partition_index=tp.partition,
                                                                  timestamp=tp.offset)])]), timeout=timeout)
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
        deadline = None if timeout is None else time.monotonic() + timeout
        fetched_bytes, min_wait_end = 0, None
        for _ in range(1 << 30):   # bounded by the deadline
            if len(self._buffer) >= num_messages:
                break
            fetched_bytes += self._fetch_round()
            now = time.monotonic()
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
            self._wait(None if wait_end is None else wait_end - now)
        return self._take(num_messages)

    def _take(self, n):
        out = []
        buf = self._buffer
        while buf and len(out) < n:
            rec = buf.popleft()
            self._parts[(rec.topic, rec.partition)].position = rec.offset + 1
            out.append(rec)
        return out

    def _wait(self, timeout):
        parts = [p for p in self._parts.values() if not p.paused][:WAIT_MANY_MAX]
        now = time.monotonic()
        retry = [p.retry_at for p in parts if p.retry_at > now]
        if retry:
            timeout = min(retry) - now if timeout is None else min(timeout, min(retry) - now)
        if not parts:
            time.sleep(min(timeout, 1.0) if timeout is not None else 1.0)   # nothing to wait on
            return
        wait_for_any([p.state for p in parts], [p.change for p in parts], timeout)

    def _fetch_round(self):
        """Fetch from each fetchable partition once; returns bytes fetched."""
        total = 0
        now = time.monotonic()
        for part in list(self._parts.values()):
            if part.paused or part.retry_at > now:
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
        if snap.fenced:
            raise UnknownTopicOrPartition(f"{part.tp.topic}-{part.tp.partition} no longer exists "
                                          f"(its topic was deleted)")
        if part.fetched is None:
            self._reset_position(part, snap, None)
        pos = part.fetched
        if pos < snap.log_start_offset or pos > snap.log_end_offset:
            self._reset_position(part, snap, pos)
            pos = part.fetched
        if pos >= snap.high_watermark:
            return 0
        data = self._bytes_at(part, pos, snap.high_watermark)
        if data is None:
            return 0
        n = self._decode(part, data, pos)
        if part.run is not None:
            part.run = part.run[:3] + (part.fetched,)
        return n

    def _reset_position(self, part, snap, bad):
        if self._reset == "error":
            where = "no position" if bad is None else f"offset {bad} is out of range " \
                f"({snap.log_start_offset}..{snap.log_end_offset})"
            raise OffsetOutOfRange(f"{part.tp.topic}-{part.tp.partition}: {where} and auto.offset.reset "
                                   f"is 'error'; seek() to a valid offset")
        offset = snap.log_start_offset if self._reset == "earliest" else snap.high_watermark
        part.position = part.fetched = offset
        part.run = None

    def _bytes_at(self, part, pos, hw):
        """A memoryview of whole batches from the one holding `pos`, below hw."""
        run = part.run
        if run is not None and run[1] < run[2] and run[3] == pos:
            return self._from_run(part, run)
        part.run = None
        try:
            d = part.state.find(pos)
        except NotInWindow:
            return self._locate(part, pos)
        if d is None or d.base_offset >= hw:
            return None
        limit, start, end = self._max_bytes, d.position, d.position + d.size
        # the following descriptors too, while they are contiguous and fit the limit
        nxt = d.last_offset + 1
        for _ in range(256):
            if end - start >= limit or nxt >= hw:
                break
            try:
                d2 = part.state.find(nxt)
            except NotInWindow:
                break
            if d2 is None or d2.segment_base != d.segment_base or d2.position != end or \
                    d2.base_offset >= hw or end + d2.size - start > limit:
                break
            end += d2.size
            nxt = d2.last_offset + 1
        seg = self._segment(part, d.segment_base, end, pos)
        return seg.view[start:end]

    def _from_run(self, part, run):
        seg, start, end, _ = run
        stop = start
        limit = start + self._max_bytes
        # whole batches up to the limit (at least one)
        for _ in range(1 << 20):
            if stop >= end:
                break
            length = int.from_bytes(seg.view[stop + 8:stop + 12], "big") + 12
            if stop > start and stop + length > limit:
                break
            stop += length
        part.run = None if stop >= end else (seg, stop, end, None)
        return seg.view[start:stop]

    def _locate(self, part, pos):
        tp = part.tp
        res, fds = self._client.call(m.GetSegmentRequest(topic=tp.topic, partition=tp.partition, offset=pos))
        try:
            seg = part.segments.get(res.base_offset)
            if fds and (seg is None or len(seg.view) < res.size):
                if seg is not None:
                    seg.close()
                seg = part.segments[res.base_offset] = _Segment(fds[0])
        finally:
            for fd in fds:
                os.close(fd)
        if res.position >= res.size:
            return None
        part.run = (seg, res.position, res.size, pos)
        return self._from_run(part, part.run)

    def _segment(self, part, base, need_end, pos):
        seg = part.segments.get(base)
        if seg is None or len(seg.view) < need_end:
            tp = part.tp
            res, fds = self._client.call(m.GetSegmentRequest(topic=tp.topic, partition=tp.partition,
                                                             offset=pos))
            try:
                if seg is not None:
                    seg.close()
                seg = part.segments[res.base_offset] = _Segment(fds[0])
            finally:
                for fd in fds:
                    os.close(fd)
            if res.base_offset != base or len(seg.view) < need_end:
                raise CorruptRecord(f"{tp.topic}-{tp.partition}: the descriptor of offset {pos} points "
                                    f"past segment {base}'s end; the partition state is inconsistent")
        return seg

    def _decode(self, part, data, pos):
        """Buffer the records of the whole batches in `data` (a view of the segment) with
        offsets >= pos. An uncompressed batch is decoded by one C call
        (RecordBatch.record_fields) and each Record made straight from its row: made by
        object.__new__ with its eight slots stored inline, which skips the call of
        Record.__init__ (~0.25 us a record on the dev VM; tests/client/
        test_native_records.py pins the slot names). A corrupt batch raises
        CorruptRecord before any of its records is buffered."""
        tp = part.tp
        topic, partition = tp.topic, tp.partition
        out = self._buffer
        check_crcs = self._check_crcs
        crc = native.crc32c
        unpack_header = HEADER_STRUCT.unpack_from
        new = object.__new__
        next_offset = pos
        for _, batch in iter_batches(data):
            view = batch.buffer
            (base_offset, _, _, _, stored_crc, attrs, last_delta, base_ts, max_ts, _, _, _,
             _) = unpack_header(view)
            if check_crcs and crc(view[ATTRIBUTES_OFFSET:]) != stored_crc:
                raise CorruptRecord(f"{topic}-{partition}: the batch at offset {base_offset} "
                                    f"fails its CRC-32C")
            next_offset = base_offset + last_delta + 1
            if attrs & CONTROL_MASK:
                continue
            append_time = attrs & TIMESTAMP_TYPE_MASK
            ts_type = LOG_APPEND_TIME if append_time else 0
            if attrs & COMPRESSION_MASK:     # gzip (the others raise): through records()
                for r in batch.records():
                    if r.offset >= pos:
                        out.append(Record(topic, partition, r.offset, _b(r.key), _b(r.value),
                                          [(k, _b(v)) for k, v in r.headers] if r.headers else [],
                                          r.timestamp, ts_type))
                continue
            buf, rows = batch.record_fields()
            skip = pos - base_offset         # records with offset_delta < skip are before pos
            records = []
            append = records.append
            for od, td, kp, kl, vp, vl, hp, hc in rows:
                if od >= skip:
                    r = new(Record)
                    r.topic = topic
                    r.partition = partition
                    r.offset = base_offset + od
                    r.key = buf[kp:kp + kl] if kl >= 0 else None
                    r.value = buf[vp:vp + vl] if vl >= 0 else None
                    r.headers = batch.read_headers(buf, hp, hc) if hc else []
                    r.timestamp = max_ts if append_time else base_ts + td
                    r.timestamp_type = ts_type
                    append(r)
            out.extend(records)
        part.fetched = max(next_offset, part.fetched)
        return len(data)

    # == lifetime ==========================================================================
    def close(self):
        if self._closed:
            return
        self._closed = True
        for key in list(self._parts):
            self._drop(key)
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _b(v):
    return v if v is None or type(v) is bytes else bytes(v)
