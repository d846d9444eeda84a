"""Sparse time index of one segment: from a timestamp to where to start looking.

Layout (Kafka's .timeindex): a packed array of 12-byte entries, no header.
    off size field
      0   8  timestamp       i64 BE  (largest record timestamp so far in the segment)
      8   4  relativeOffset  u32 BE  (the offset that carries that timestamp, - base)
An entry is added beside each offset-index entry, only when the segment's largest
timestamp has grown since the last entry, so timestamps strictly increase (the rule:
index_policy.py). Because
entry i holds the largest timestamp up to its offset, every record up to offset_i has a
timestamp <= timestamp_i. The first record with timestamp >= T therefore lies after the
offset of the last entry below T: `scan_start(T)` returns that offset + 1.

Owned by the partition's worker process; not thread-safe.
"""
import struct

from odradek.daemon.storage import native
from odradek.daemon.storage.index_policy import time_entry_due
from odradek.client.errors import InvalidSegment
from odradek.daemon.storage.sparse_index import SparseIndex

__all__ = ["TimeIndex", "ENTRY_SIZE"]

ENTRY_SIZE = 12
_ENTRY = struct.Struct(">qI")


class TimeIndex(SparseIndex):
    ENTRY = _ENTRY
    KIND = "time index"
    EMPTY = staticmethod(lambda index: (-1, index.base_offset))  # last_entry when there is none

    def entry(self, slot):
        """(timestamp, absolute offset) of entry `slot`."""
        ts, rel = _ENTRY.unpack_from(self._file.buffer, slot * ENTRY_SIZE)
        return ts, self.base_offset + rel

    def maybe_append(self, timestamp, offset):
        """Add (timestamp, offset) if index_policy.time_entry_due says so and there is room."""
        last_ts, last_off = self.last_entry
        if self.is_full or not time_entry_due(timestamp, offset, last_ts, last_off, self._file.size > 0):
            return False
        self._append(_ENTRY.pack(timestamp, self._relative(offset)), (timestamp, offset))
        return True

    def scan_start(self, timestamp):
        """The first offset that can hold a record with a timestamp >= `timestamp`."""
        slot = native.timeindex_lookup(self._file.buffer, self.entries, timestamp)
        return self.base_offset if slot == 0 else self.entry(slot - 1)[1] + 1

    def truncate_to_offset(self, offset):
        """Drop entries for offsets >= `offset`."""
        keep = self.entries
        while keep and self.entry(keep - 1)[1] >= offset:
            keep -= 1
        self._keep(keep)

    def sanity_check(self, next_offset):
        """Raise InvalidSegment unless the last entry's offset lies inside the log."""
        if self.entries and self.last_entry[1] >= next_offset:
            raise InvalidSegment(f"time index {self.path}: last entry {self.last_entry} "
                                 f"points past the log end offset {next_offset}")
