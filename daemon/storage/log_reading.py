"""PartitionLog's reads (log.py): whole batches from an offset, where a reader starts,
and lookups by timestamp.

- read() copies nothing: FetchData holds a memoryview into the segment's map.
- locate() says where a reader of an offset starts (a Location: a segment and a range
  of its .log of whole batches), for readers that map the segment themselves
  (shared-memory consumers, the Kafka listener's sendfile).
- offset_for_timestamp() is Kafka's ListOffsets by time.

A mixin of PartitionLog, on its fields (_segments, _bases, log_start_offset, active,
...), which log.py sets up. Owned by the partition's worker process, as PartitionLog is.
"""
import bisect
from collections import namedtuple

from odradek.client.errors import OffsetOutOfRange
from odradek.client.records import RecordBatch

__all__ = ["LogReading", "FetchData", "Location"]


class Location(namedtuple("Location", "segment position end next_offset")):
    """Where to read from: bytes [position, end) of `segment` are whole batches."""
    __slots__ = ()


class FetchData:
    """Whole batches read from one segment: `view` is a memoryview into the map (no
    copy), `first_offset` the baseOffset of its first batch, `next_offset` where the
    next read starts. An empty view means nothing to read at that offset yet."""
    __slots__ = ("view", "first_offset", "next_offset", "segment_base")

    def __init__(self, view, first_offset, next_offset, segment_base):
        self.view, self.first_offset = view, first_offset
        self.next_offset, self.segment_base = next_offset, segment_base

    def __len__(self):
        return len(self.view)


class LogReading:
    def segment_index(self, offset):
        return max(bisect.bisect_right(self._bases, offset) - 1, 0)

    def read(self, offset, max_bytes, max_offset=None):
        """Whole batches from the one holding `offset`, up to `max_bytes` (at least one
        batch, however large, as Kafka does), never past `max_offset` (exclusive; the
        high watermark) or the log end. Raises OffsetOutOfRange outside the log."""
        self._check_open()
        end = self.log_end_offset if max_offset is None else min(max_offset, self.log_end_offset)
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRange(f"offset {offset} is outside the log of {self.topic}-{self.partition}: "
                                   f"valid offsets are {self.log_start_offset}..{self.log_end_offset}")
        i = self.segment_index(offset)
        while i < len(self._segments):
            segment = self._segments[i]
            first = segment.find(offset)
            if first is not None:
                break
            i += 1  # offset is past this segment's batches (gap after compaction): next one
        else:
            return FetchData(memoryview(b""), offset, offset, self.active.base_offset)
        if first.base_offset >= end:
            return FetchData(memoryview(b""), offset, offset, segment.base_offset)
        stop, next_offset = first.position, offset
        for b in segment.batches_from(first.position):
            if b.base_offset >= end or (stop > first.position and stop + b.size - first.position > max_bytes):
                break
            stop = b.position + b.size
            next_offset = b.last_offset + 1
        return FetchData(segment.view(first.position, stop), first.base_offset, next_offset, segment.base_offset)

    def locate(self, offset, max_offset=None):
        """Where a reader of `offset` starts: a Location(segment, position, end,
        next_offset) where [position, end) of the segment's .log holds whole batches, the
        first being the one holding `offset` (or the next after a gap), none at or past
        `max_offset` (exclusive; the high watermark; default the log end). next_offset is
        the offset to locate after reading up to `end`. Raises OffsetOutOfRange outside
        [log start, log end]. Consumers map the segment and read [position, end) themselves."""
        self._check_open()
        leo = self.log_end_offset
        limit = leo if max_offset is None else min(max_offset, leo)
        if offset < self.log_start_offset or offset > leo:
            raise OffsetOutOfRange(f"offset {offset} is outside the log of {self.topic}-{self.partition}: "
                                   f"valid offsets are {self.log_start_offset}..{leo}")
        i = self.segment_index(offset)
        while i < len(self._segments):
            segment = self._segments[i]
            first = segment.find_for_reader(offset) if offset < limit else None
            if first is not None and first.damaged:
                # the rest of the segment: the reader's decoder names the damage and
                # finds the next whole batch itself (client/_unreadable.py)
                after = segment.next_offset if segment is self.active else max(segment.next_offset,
                                                                                 self._bases[i + 1])
                return Location(segment, first.position, segment.size, after)
            if first is not None and first.base_offset < limit:
                break
            if segment is self.active or self._bases[i + 1] >= limit:
                return Location(segment, segment.size, segment.size, max(offset, limit))
            i += 1  # offset is past this segment's batches (a gap): the next one
        if limit >= segment.next_offset:
            end, next_offset = segment.size, segment.next_offset
            if segment is not self.active:
                next_offset = max(next_offset, self._bases[i + 1])
        else:
            end, next_offset = first.position, offset
            for b in segment.batches_from(first.position):
                if b.base_offset >= limit:
                    break
                end, next_offset = b.position + b.size, b.last_offset + 1
        return Location(segment, first.position, end, next_offset)

    def max_timestamp(self):
        """The largest timestamp of any batch in the log (-1: none)."""
        self._check_open()
        return max((segment.max_timestamp for segment in self._segments), default=-1)

    def offset_for_timestamp(self, timestamp):
        """(offset, timestamp) of the first record whose timestamp >= `timestamp`, or
        None if there is none (Kafka's ListOffsets by time)."""
        self._check_open()
        for segment in self._segments:
            if segment.max_timestamp < timestamp:
                continue
            b = segment.find_by_timestamp(timestamp)
            if b is None:
                continue
            for record in RecordBatch(segment.view(b.position, b.position + b.size)).records():
                if record.timestamp >= timestamp and record.offset >= self.log_start_offset:
                    return record.offset, record.timestamp
        return None
