"""LeaderFiles: a follower's reader of its leader's partition log, from the files alone.

    files = LeaderFiles("/data0/orders-0")         # the LEADER's partition dir
    chunk = files.read(offset, end_offset, max_bytes, hint=(segment_base, position))
    follower_log.append_as_follower(chunk.data, chunk.segment_base)
    next_read = files.read(chunk.next_offset, end_offset, max_bytes, hint=chunk.next_hint)
    files.close()

Theory of operation
- The leader's log is its partition dir's <base>.log files (storage/FORMAT.md): whole v2
  batches back to back, offsets increasing, segment B holding offsets [B, next base).
  The active one is preallocated (zeros after the data); sealed ones end at their data.
- read() returns a Chunk of whole batches from ONE segment file: the first is the batch
  holding `offset` (the first whose lastOffset >= offset: compaction leaves gaps), then
  as many as fit `max_bytes` (at least that one), stopping before any batch whose
  lastOffset >= end_offset. Its bytes are the leader's, byte for byte.
- With a hint (segment_base, position) (where the previous chunk ended, Chunk.next_hint,
  or a shared-memory batch descriptor) a read is one pread of max_bytes at that
  position of the segment whose descriptor is kept open; the batch header found there
  must hold `offset` or the hint is ignored. Without one (or a wrong one), the batch is
  located from scratch: list the *.log files, take the greatest base <= offset, floor
  the position by a binary search of the leader's sparse .index (each probe an 8-byte
  pread; the found entry is checked against the batch header it points to, else the
  walk starts at 0), then walk batch headers (read_header: the 61-byte header, one
  pread each) forward. Where a segment's data ends (a zero header, or the end of
  the file) with offset still below end_offset, the leader has rolled: the next file.
- Files come and go under the reader: retention unlinks old segments, compaction renames
  new inodes over old names, a roll trims one file and creates the next. A file missing
  at open, or a roll not yet visible in the listing, makes the reader relist and retry
  (at most RETRIES times; then it answers an empty chunk, or StorageError if files kept
  vanishing). A descriptor already open keeps its inode, whose bytes stay consistent.
  An offset below the oldest segment raises OffsetBelowLogStart (an OffsetOutOfRange)
  with the leader's earliest offset: the follower then truncate_fully_and_start_at it.
- Nothing read is trusted blindly: a batchLength below a batch header's size or past
  the end of the file, a negative lastOffsetDelta, or a baseOffset not above the
  previous batch's last offset raise CorruptRecord naming the file and position.
  Lengths are checked against the file's size before a larger pread, so a corrupt
  length cannot allocate more than the file holds. The follower's append validates the
  CRCs of what it copies.

Why reading a file another process appends to is safe
- pread, never mmap: the leader trims, truncates and unlinks its files, and a mapped
  read past a file's new end is SIGBUS; a pread past it returns short, which is checked.
- pread reads the page cache, which the leader's MAP_SHARED stores write straight into:
  there is no second copy that could be stale. The leader publishes its log end offset
  (shared memory) only after an append's bytes are in its mapping, so every batch
  whose lastOffset < end_offset is whole in the page cache when a reader holding that
  end_offset preads it. Bytes at or past end_offset may be half-written (the leader
  copies a batch first and rewrites its baseOffset after): the reader never parses a
  header past the last offset it may return, since batches in the active segment
  are dense (the next one starts at the previous lastOffset + 1).
- A leader that truncates its log (a failover) publishes a lower end offset; a reader
  with the old one can read zeros or a short file, which it reports as the end of the
  data (empty chunk) or a CorruptRecord the follower retries after.

Not thread-safe: one reader per follower thread.
"""
import bisect
import os
import struct
from collections import namedtuple

from odradek.client.errors import CorruptRecord, OffsetOutOfRange, StorageError
from odradek.client.records import BATCH_HEADER_SIZE, LOG_OVERHEAD, read_header
from odradek.daemon.storage import filenames

__all__ = ["LeaderFiles", "Chunk", "OffsetBelowLogStart", "RETRIES"]

RETRIES = 8                                  # relists of the dir per read
_HEAD = BATCH_HEADER_SIZE                    # bytes of header the walk reads (read_header)
_ZERO_FRAME = bytes(LOG_OVERHEAD)
_ENTRY = struct.Struct(">II")                # .index: relativeOffset, position
_MIN_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD


class OffsetBelowLogStart(OffsetOutOfRange):
    """OFFSET_OUT_OF_RANGE: the offset is below the leader's oldest segment;
    `earliest_offset` is the first offset the leader still has."""

    def __init__(self, message, earliest_offset):
        super().__init__(message)
        self.earliest_offset = earliest_offset


class Chunk(namedtuple("Chunk", "segment_base position data first_offset next_offset")):  # data: bytes-like
    """Whole batches `data` (bytes) read from position `position` of the leader's segment
    `segment_base`; first_offset is the first batch's baseOffset, next_offset the offset
    to read next (the last batch's lastOffset + 1). Empty data: nothing readable yet
    (next_offset = the offset asked; segment_base and position are the hint given, or None)."""
    __slots__ = ()

    @property
    def next_hint(self):
        """The hint for the read of next_offset: (segment_base, position after data), or None."""
        if self.segment_base is None:
            return None
        return self.segment_base, self.position + len(self.data)


class _Header(namedtuple("_Header", "base size last")):
    __slots__ = ()


class LeaderFiles:
    def __init__(self, partition_dir):
        self.directory = os.path.abspath(partition_dir)
        self._fd = -1          # the .log descriptor kept open across reads
        self._fd_base = None   # its segment's base offset
        self._closed = False

    def __repr__(self):
        return f"LeaderFiles({self.directory}, open segment {self._fd_base})"

    # == reading ====================================================================
    def read(self, offset, end_offset, max_bytes, hint=None):
        """A Chunk of whole batches: from the batch holding `offset`, none whose lastOffset
        >= `end_offset`, at most `max_bytes` (but at least one batch), from one segment.
        `hint`: (segment_base, position) where that batch is expected. Raises
        OffsetBelowLogStart, CorruptRecord, StorageError."""
        if self._closed:
            raise StorageError(f"leader files {self.directory}: closed")
        empty = Chunk(*(hint or (None, None)), b"", offset, offset)
        if offset >= end_offset:
            return empty
        if hint is not None and hint[1] >= 0:
            chunk = self._read_hinted(offset, end_offset, max_bytes, *hint)
            if chunk is not None:
                return chunk
        vanished = 0
        for _ in range(RETRIES):
            try:
                found = self._locate(offset)
                if found is None:
                    continue   # the data ends and no later segment is listed: a roll under way?
                chunk = self._chunk(found[0], found[1], offset, end_offset, max_bytes)
            except FileNotFoundError:
                vanished += 1  # deleted or renamed over between listing and open
                continue
            if chunk is not None:
                return chunk
        if vanished == RETRIES:
            raise StorageError(f"leader files {self.directory}: segment files kept vanishing while "
                               f"locating offset {offset} ({RETRIES} tries)")
        return empty

    def _read_hinted(self, offset, end_offset, max_bytes, segment_base, position):
        try:
            self._use(segment_base, fresh=False)
        except FileNotFoundError:
            return None
        return self._chunk(segment_base, position, offset, end_offset, max_bytes, hinted=True)

    def _chunk(self, segment_base, position, offset, end_offset, max_bytes, hinted=False):
        """The chunk from the batch at `position` of the open segment, or None if there is
        no batch there (the data ends) or, `hinted`, not the one holding `offset`."""
        fd = self._fd
        path = filenames.log_file(self.directory, segment_base)
        buf = os.pread(fd, max(max_bytes, _HEAD), position)
        try:
            first = _header(buf, 0, path, position)
        except CorruptRecord:
            if hinted:
                return None   # a wrong hint (inside a batch, or a replaced file): locate instead
            raise
        if first is None or (hinted and not first.base <= offset <= first.last):
            return None
        if first.last < offset:
            raise CorruptRecord(f"{path}: the batch at position {position} ends at offset {first.last}, "
                                f"below {offset}, where the batch holding it was located")
        if first.last >= end_offset:
            return Chunk(segment_base, position, b"", offset, offset)
        if len(buf) < first.size:
            if position + first.size > os.fstat(fd).st_size:
                raise _past_the_end(path, position, first)
            buf += os.pread(fd, first.size - len(buf), position + len(buf))
            if len(buf) < first.size:
                raise CorruptRecord(f"{path}: the batch at position {position} is cut short by the end "
                                    f"of the file")
        stop, last = first.size, first.last
        while last + 1 < end_offset and stop + _HEAD <= len(buf):
            b = _header(buf, stop, path, position + stop)
            if b is None:
                break   # the segment's data ends here
            if b.base <= last:
                raise _backwards(path, position + stop, b.base, last)
            if b.last >= end_offset or stop + b.size > len(buf):
                break
            stop, last = stop + b.size, b.last
        data = buf if stop == len(buf) else memoryview(buf)[:stop]   # no copy of what was read
        return Chunk(segment_base, position, data, first.base, last + 1)

    # == locating from scratch ========================================================
    def _locate(self, offset):
        """(segment base, position) of the first batch whose lastOffset >= offset, or None
        if the data ends before it with no later segment listed. Opens that segment."""
        bases = self._list()
        if not bases:
            return None
        if offset < bases[0]:
            raise OffsetBelowLogStart(f"offset {offset} is below the leader's log start {bases[0]} "
                                      f"({self.directory})", bases[0])
        i = bisect.bisect_right(bases, offset) - 1
        self._use(bases[i], fresh=True)
        position, expect = self._index_floor(bases[i], offset)
        file_size = os.fstat(self._fd).st_size
        while True:
            path = filenames.log_file(self.directory, bases[i])
            b = _header(os.pread(self._fd, _HEAD, position), 0, path, position)
            if b is None:   # the segment's data ends: the batch is in a later one
                i += 1
                if i == len(bases):
                    return None
                self._use(bases[i], fresh=True)
                position, expect, file_size = 0, bases[i], os.fstat(self._fd).st_size
                continue
            if b.base < expect:
                raise _backwards(path, position, b.base, expect - 1)
            if b.last >= offset:
                return bases[i], position
            if position + b.size > file_size:
                raise _past_the_end(path, position, b)
            position, expect = position + b.size, b.last + 1

    def _index_floor(self, base, offset):
        """(position, lowest baseOffset there) to walk from: the leader's .index entry with
        the greatest relativeOffset <= offset - base, checked against the batch it names;
        (0, base) without a usable one. The index is preallocated while active (zeros
        after the entries, and a valid entry has a position > 0): a binary search for the
        last entry that is non-zero and at or below the target."""
        target = offset - base
        try:
            fd = os.open(filenames.index_file(self.directory, base), os.O_RDONLY)
        except FileNotFoundError:
            return 0, base
        try:
            low, high = 0, os.fstat(fd).st_size // _ENTRY.size   # entries [0, low) qualify
            while low < high:
                mid = (low + high) // 2
                raw = os.pread(fd, _ENTRY.size, mid * _ENTRY.size)
                if len(raw) < _ENTRY.size:
                    high = mid
                    continue
                rel, pos = _ENTRY.unpack(raw)
                if pos > 0 and rel <= target:
                    low = mid + 1
                else:
                    high = mid
            if not low:
                return 0, base
            rel, pos = _ENTRY.unpack(os.pread(fd, _ENTRY.size, (low - 1) * _ENTRY.size))
        finally:
            os.close(fd)
        try:
            b = _header(os.pread(self._fd, _HEAD, pos), 0, "", pos)
        except CorruptRecord:
            b = None
        if b is None or b.last != base + rel:
            return 0, base   # an entry being written, or a stale index: walk from the start
        return pos, b.base

    def _list(self):
        """Base offsets of the dir's .log files, ascending."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        parsed = (filenames.parse_segment_file(n) for n in names)
        return sorted(p[0] for p in parsed if p and p[1] == filenames.LOG_SUFFIX)

    def _use(self, base, fresh):
        """Make segment `base`'s .log the open one (reopened if `fresh`: it may have been
        replaced by a compaction swap). FileNotFoundError if it is gone."""
        if base == self._fd_base and not fresh:
            return
        fd = os.open(filenames.log_file(self.directory, base), os.O_RDONLY | os.O_CLOEXEC)
        self._release()
        self._fd, self._fd_base = fd, base

    # == closing ======================================================================
    def _release(self):
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._fd_base = -1, None

    def close(self):
        self._release()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _header(buf, at, path, position):
    """The _Header of the batch at buf[at:], None at the end of the data (a zero frame
    or the end of the buffer/file). CorruptRecord for an impossible header."""
    if len(buf) - at < LOG_OVERHEAD or buf[at:at + LOG_OVERHEAD] == _ZERO_FRAME:
        return None
    if len(buf) - at < _HEAD:
        raise CorruptRecord(f"{path}: the batch at position {position} is cut short by the end of the file "
                            f"({len(buf) - at} bytes)")
    header = read_header(buf, at)
    base, length, delta = header.base_offset, header.batch_length, header.last_offset_delta
    if length < _MIN_LENGTH or base < 0 or delta < 0:
        raise CorruptRecord(f"{path}: impossible batch header at position {position}: baseOffset {base}, "
                            f"batchLength {length}, lastOffsetDelta {delta}")
    return _Header(base, length + LOG_OVERHEAD, base + delta)


def _backwards(path, position, base, previous_last):
    return CorruptRecord(f"{path}: the batch at position {position} has baseOffset {base}, not above the "
                         f"previous batch's last offset {previous_last}")


def _past_the_end(path, position, b):
    return CorruptRecord(f"{path}: the batch at position {position} (offsets {b.base}..{b.last}) has "
                         f"batchLength {b.size - LOG_OVERHEAD}, past the end of the file")
