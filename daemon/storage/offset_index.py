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

from odradek.client import native
from odradek.client.errors import InvalidSegment
from odradek.daemon.storage.mapped_file import MappedFile

__all__ = ["OffsetIndex", "ENTRY_SIZE"]

ENTRY_SIZE = 8
_ENTRY = struct.Struct(">II")


class OffsetIndex:
    def __init__(self, path, base_offset, max_bytes, writable=True, entries=None):
        """Open or create the index at `path`. `entries`: how many entries are valid
        (None: the file's length says, as for a trimmed index)."""
        self.base_offset = base_offset
        capacity = max_bytes - max_bytes % ENTRY_SIZE if writable else 0
        self._file = MappedFile(path, capacity, None if entries is None else entries * ENTRY_SIZE,
                                writable=writable, create=writable)
        if self._file.size % ENTRY_SIZE:
            self._file.close()
            raise InvalidSegment(f"index {path}: size {self._file.size} is not a multiple of {ENTRY_SIZE}")
        self.path = path
        # The last entry, kept here as well as in the file: append checks it for every
        # indexed batch (each batch of 4 KiB or more), and reading it back from the map
        # (entries, entry(), unpack) cost ~2 us an append of a 16 KiB batch, against
        # ~7 us for a raw copy of it (perf/log_append.py). Every change of the file's
        # size goes through this class, which refreshes it (_reload_last).
        self._last = None
        self._reload_last()

    @property
    def entries(self):
        return self._file.size // ENTRY_SIZE

    @property
    def max_entries(self):
        return self._file.capacity // ENTRY_SIZE

    @property
    def is_full(self):
        f = self._file  # entries >= max_entries, without their two property calls (per append)
        return f.size // ENTRY_SIZE >= f.capacity // ENTRY_SIZE

    def entry(self, slot):
        """(absolute offset, position) of entry `slot`."""
        rel, pos = _ENTRY.unpack_from(self._file.buffer, slot * ENTRY_SIZE)
        return self.base_offset + rel, pos

    @property
    def last_entry(self):
        """The last entry, or (base_offset, 0) when there is none."""
        return self._last

    def _reload_last(self):
        self._last = self.entry(self.entries - 1) if self.entries else (self.base_offset, 0)

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
            last_offset, last_pos = self._last
            assert offset > last_offset and position > last_pos, (offset, position, self._last)
        rel = offset - self.base_offset
        if not 0 <= rel <= 0xFFFFFFFF:
            raise InvalidSegment(f"index {self.path}: offset {offset} is not within 2^32 of base {self.base_offset}")
        self._file.append(_ENTRY.pack(rel, position))
        self._last = (offset, position)

    def truncate_to_offset(self, offset):
        """Drop entries for offsets >= `offset` (their batches are being removed)."""
        keep = 0 if offset <= self.base_offset else \
            native.index_lookup(self._file.buffer, self.entries, offset - 1 - self.base_offset) + 1
        self._file.truncate(keep * ENTRY_SIZE)
        self._reload_last()

    def reset(self):
        self._file.truncate(0)
        self._reload_last()

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

    def flush(self):
        self._file.flush()

    def trim(self):
        self._file.trim()

    def close(self):
        self._file.close()
