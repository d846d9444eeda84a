"""Sparse time index of one segment: from a timestamp to where to start looking.

Layout (Kafka's .timeindex): a packed array of 12-byte entries, no header.
    off size field
      0   8  timestamp       i64 BE  (largest record timestamp so far in the segment)
      8   4  relativeOffset  u32 BE  (the offset that carries that timestamp, - base)
An entry is added beside each offset-index entry, only when the segment's largest
timestamp has grown since the last entry, so timestamps strictly increase. Because
entry i holds the largest timestamp up to its offset, every record up to offset_i has a
timestamp <= timestamp_i. The first record with timestamp >= T therefore lies after the
offset of the last entry below T: `scan_start(T)` returns that offset + 1.

Owned by the partition's worker process; not thread-safe.
"""
import struct

from odradek.client import native
from odradek.client.errors import InvalidSegment
from odradek.daemon.storage.mapped_file import MappedFile

__all__ = ["TimeIndex", "ENTRY_SIZE"]

ENTRY_SIZE = 12
_ENTRY = struct.Struct(">qI")


class TimeIndex:
    def __init__(self, path, base_offset, max_bytes, writable=True, entries=None):
        self.base_offset = base_offset
        capacity = max_bytes - max_bytes % ENTRY_SIZE if writable else 0
        self._file = MappedFile(path, capacity, None if entries is None else entries * ENTRY_SIZE,
                                writable=writable, create=writable)
        if self._file.size % ENTRY_SIZE:
            self._file.close()
            raise InvalidSegment(f"time index {path}: size {self._file.size} is not a multiple of {ENTRY_SIZE}")
        self.path = path
        # The last entry, cached: maybe_append compares with it for every indexed batch
        # (see OffsetIndex._last; reading it back from the map cost ~2 us an append).
        # Every change of the file's size goes through this class (_reload_last).
        self._last = None
        self._reload_last()

    @property
    def entries(self):
        return self._file.size // ENTRY_SIZE

    @property
    def is_full(self):
        f = self._file  # entries >= capacity in entries, without a property call (per append)
        return f.size // ENTRY_SIZE >= f.capacity // ENTRY_SIZE

    def entry(self, slot):
        """(timestamp, absolute offset) of entry `slot`."""
        ts, rel = _ENTRY.unpack_from(self._file.buffer, slot * ENTRY_SIZE)
        return ts, self.base_offset + rel

    @property
    def last_entry(self):
        """The last entry, or (-1, base_offset) when there is none."""
        return self._last

    def _reload_last(self):
        self._last = self.entry(self.entries - 1) if self.entries else (-1, self.base_offset)

    def maybe_append(self, timestamp, offset):
        """Add (timestamp, offset) if the timestamp is larger than the last entry's."""
        last_ts, last_off = self._last
        if timestamp <= last_ts or (self._file.size and offset <= last_off) or self.is_full:
            return False
        rel = offset - self.base_offset
        if not 0 <= rel <= 0xFFFFFFFF:
            raise InvalidSegment(f"time index {self.path}: offset {offset} is not within 2^32 of base {self.base_offset}")
        self._file.append(_ENTRY.pack(timestamp, rel))
        self._last = (timestamp, offset)
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
        self._file.truncate(keep * ENTRY_SIZE)
        self._reload_last()

    def reset(self):
        self._file.truncate(0)
        self._reload_last()

    def sanity_check(self, next_offset):
        """Raise InvalidSegment unless the last entry's offset lies inside the log."""
        if self.entries and self.last_entry[1] >= next_offset:
            raise InvalidSegment(f"time index {self.path}: last entry {self.last_entry} "
                                 f"points past the log end offset {next_offset}")

    def flush(self):
        self._file.flush()

    def trim(self):
        self._file.trim()

    def close(self):
        self._file.close()
