"""SegmentWriter: a new, inactive segment written front to back with plain writes, as
<base>.log.cleaned, <base>.index.cleaned and <base>.timeindex.cleaned (the compaction
output that PartitionLog.replace_segments swaps in; FORMAT.md, "Compaction").

    writer = SegmentWriter(partition_dir, base_offset, config.index_interval_bytes)
    writer.append(batch_bytes, last_offset, max_timestamp)   # whole batches, in order
    writer.finish()        # the last time entry, fsync, close: ready for the swap
    writer.abort()         # or: close and delete what was written

No capacity to outgrow (a rebuilt batch can be a few bytes longer than the original):
batches are buffered and written ~1 MiB at a time, index entries kept in memory and
written by finish(). Entries follow the sparse-index rule of index_policy.py, as
LogSegment's appends do, so the result is what an append of the same batches would have
indexed. Owned by the partition's worker (the cleaner); not thread-safe.
"""
import os

from odradek.client.errors import StorageError
from odradek.daemon.storage import filenames
from odradek.daemon.storage.index_policy import SparseIndexing, time_entry_due
from odradek.daemon.storage.modes import open_file
from odradek.daemon.storage.offset_index import OffsetIndex
from odradek.daemon.storage.time_index import TimeIndex

__all__ = ["SegmentWriter"]

_U32_MAX = 0xFFFFFFFF


class SegmentWriter(SparseIndexing):
    _FLUSH = 1 << 20   # buffered batch bytes written at once

    def __init__(self, directory, base, index_interval):
        self.base = base
        self.paths = [p + filenames.CLEANED_SUFFIX for p in filenames.segment_files(directory, base)]
        for p in self.paths:   # a pass dropped before its swap (the process went on)
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self._fd = open_file(self.paths[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
        self._pending = []
        self._pending_bytes = 0
        self.size = 0
        self._index_interval_bytes = index_interval   # SparseIndexing's fields
        self._bytes_since_index = 0
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base
        self._index = []
        self._time_index = []
        self._last_time = (-1, base)    # (timestamp, offset) of the last time-index entry

    def append(self, data, last_offset, max_timestamp):
        """Write the whole batch `data`, whose last offset and maxTimestamp are given."""
        self._index_batch(self.size, last_offset, len(data), max_timestamp)
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.size += len(data)
        if self._pending_bytes >= self._FLUSH:
            self._write_pending()

    def _add_index_entry(self, last_offset, position):
        rel = last_offset - self.base
        if not 0 <= rel <= _U32_MAX or position > _U32_MAX:
            raise StorageError(f"{self.paths[0]}: offset {last_offset} or position {position} "
                               f"does not fit a segment based at {self.base}")
        self._index.append(OffsetIndex.ENTRY.pack(rel, position))
        self._maybe_time_entry()

    def _maybe_time_entry(self):
        ts, offset = self.max_timestamp, self.offset_of_max_timestamp
        if time_entry_due(ts, offset, *self._last_time, bool(self._time_index)):
            self._time_index.append(TimeIndex.ENTRY.pack(ts, offset - self.base))
            self._last_time = (ts, offset)

    def _write_pending(self):
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def finish(self):
        """Seal: the last time-index entry, every byte written and fsynced, files closed."""
        self._write_pending()
        self._maybe_time_entry()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        for path, entries in ((self.paths[1], self._index), (self.paths[2], self._time_index)):
            fd = open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
            try:
                view = memoryview(b"".join(entries))
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)

    def abort(self):
        """Close and delete the files written so far."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for p in self.paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
