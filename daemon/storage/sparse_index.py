"""What the offset index and the time index share: a mapped file of fixed-size,
big-endian entries, preallocated while the segment is active, trimmed when it rolls.

Subclasses set ENTRY (a struct.Struct), KIND (for messages) and decode/encode entries;
see offset_index.py and time_index.py for the layouts. Owned by the partition's worker
process; not thread-safe.
"""
from odradek.client.errors import InvalidSegment
from odradek.daemon.storage.mapped_file import MappedFile

__all__ = ["SparseIndex"]


class SparseIndex:
    ENTRY = None   # struct.Struct of one entry
    KIND = "index"

    def __init__(self, path, base_offset, max_bytes, writable=True, entries=None):
        """Open or create the index at `path`. `entries`: how many entries are valid
        (None: the file's length says, as for a trimmed index)."""
        size = self.ENTRY.size
        self.entry_size = size
        self.base_offset = base_offset
        self.path = path
        capacity = max_bytes - max_bytes % size if writable else 0
        self._file = MappedFile(path, capacity, None if entries is None else entries * size,
                                writable=writable, create=writable)
        if self._file.size % size:
            self._file.close()
            raise InvalidSegment(f"{self.KIND} {path}: size {self._file.size} is not a multiple of {size}")
        # The last entry, kept here as well as in the file: appends compare with it for
        # every indexed batch, and reading it back from the map cost ~2 us of a ~25 us
        # 16 KiB append (perf/log_append.py). Every change of the file's size goes
        # through this class, which refreshes it (_reload_last).
        self._last = None
        self._reload_last()

    @property
    def entries(self):
        return self._file.size // self.entry_size

    def advise_no_readahead(self):
        """No readahead around page faults in the map (MappedFile.advise_no_readahead):
        for the active segment's appender, whose first entry would otherwise fault in a
        readahead window of the fresh, preallocated file (zero-filled pages)."""
        self._file.advise_no_readahead()

    @property
    def max_entries(self):
        return self._file.capacity // self.entry_size

    @property
    def is_full(self):
        f = self._file  # entries >= max_entries, without their two property calls (per append)
        return f.size // self.entry_size >= f.capacity // self.entry_size

    @property
    def last_entry(self):
        last = self._last
        if last is None:  # dropped by set_entries: read it back from the map once
            last = self._last = self.entry(self.entries - 1) if self.entries else self.EMPTY(self)
        return last

    def _reload_last(self):
        self._last = None

    @property
    def buffer(self):
        """The whole mapped file (capacity), for the native append to write entries into."""
        return self._file.buffer

    def set_entries(self, count):
        """Entries [0, count) are valid: the native append wrote the new ones in place.
        (The cached last entry is dropped, not reread: appends through the native call
        never look at it, and rereading cost ~2 us an append.)"""
        self._file.size = count * self.entry_size
        self._last = None

    def allocate(self, nbytes):
        """Disk blocks for the first `nbytes` of the file (MappedFile.allocate): the
        native append writes entries into the map, where a hole on a full filesystem
        would be a SIGBUS. Raises StorageError when there is no room."""
        self._file.allocate(nbytes)

    def _relative(self, offset):
        rel = offset - self.base_offset
        if not 0 <= rel <= 0xFFFFFFFF:
            raise InvalidSegment(f"{self.KIND} {self.path}: offset {offset} is not within 2^32 of base "
                                 f"{self.base_offset}")
        return rel

    def _append(self, packed, last):
        self._file.append(packed)
        self._last = last

    def _keep(self, count):
        """Keep the first `count` entries."""
        self._file.truncate(count * self.entry_size)
        self._reload_last()

    def reset(self):
        self._keep(0)

    def flush(self):
        self._file.flush()

    def trim(self, sync=True):
        """MappedFile.trim: with sync=False, returns the descriptor left to fsync."""
        return self._file.trim(sync)

    def close(self):
        self._file.close()
