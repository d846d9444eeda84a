"""Sparse offset index of one segment: which byte position to start reading an offset at.

Layout (Kafka's .index): a packed array of 8-byte entries, no header.
    off size field
      0   4  relativeOffset  u32 BE  (offset - segment base offset)
      4   4  position        u32 BE  (byte position of a batch in the .log)
Entry i says: the batch at `position` holds offsets up to base + relativeOffset (the
batch's last offset, as Kafka writes it), so to read offset T start at the position of
the last entry with relativeOffset <= T and scan forward. Entries strictly increase in
both fields. The file is preallocated to segment.index.bytes while the segment is
active and trimmed to its entries when it rolls; a reader trusts only `entries`.

Search is a binary search in C straight over the mapped bytes (native.index_lookup).
Owned by the partition's worker process; not thread-safe.
"""
import struct

from odradek.daemon.storage import native
from odradek.client.errors import InvalidSegment
from odradek.daemon.storage.sparse_index import SparseIndex

__all__ = ["OffsetIndex", "ENTRY_SIZE"]

ENTRY_SIZE = 8
_ENTRY = struct.Struct(">II")


class OffsetIndex(SparseIndex):
    ENTRY = _ENTRY
    KIND = "index"
    EMPTY = staticmethod(lambda index: (index.base_offset, 0))  # last_entry when there is none

    def entry(self, slot):
        """(absolute offset, position) of entry `slot`."""
        rel, pos = _ENTRY.unpack_from(self._file.buffer, slot * ENTRY_SIZE)
        return self.base_offset + rel, pos

    def lookup(self, offset):
        """(offset, position) of the last entry at or below `offset`; (base, 0) if none."""
        if offset < self.base_offset or not self.entries:
            return self.base_offset, 0
        target = min(offset - self.base_offset, 0xFFFFFFFF)
        slot = native.index_lookup(self._file.buffer, self.entries, target)
        return self.entry(slot) if slot >= 0 else (self.base_offset, 0)

    def append(self, offset, position):
        """Add an entry; offsets and positions must strictly increase."""
        if self._file.size:
            last_offset, last_pos = self.last_entry
            assert offset > last_offset and position > last_pos, (offset, position, self.last_entry)
        self._append(_ENTRY.pack(self._relative(offset), position), (offset, position))

    def truncate_to_offset(self, offset):
        """Drop entries for offsets >= `offset` (their batches are being removed)."""
        keep = 0 if offset <= self.base_offset else \
            native.index_lookup(self._file.buffer, self.entries, offset - 1 - self.base_offset) + 1
        self._keep(keep)

    def sanity_check(self, log_size, next_offset):
        """Raise InvalidSegment unless the last entry lies inside the log (Kafka's check:
        cheap enough for every open; a wrong index found later is rebuilt the same way).
        An entry is never made for a segment's first batch, so a last entry at the base
        offset means zeros: a preallocated index a crash left untrimmed."""
        if not self.entries:
            return
        off, pos = self.last_entry
        if off <= self.base_offset or off >= next_offset or pos >= log_size:
            raise InvalidSegment(
                f"index {self.path}: last entry is (offset {off}, position {pos}); expected offset "
                f"in ({self.base_offset}, {next_offset}) and position below {log_size}")
