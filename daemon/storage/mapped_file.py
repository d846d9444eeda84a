"""A file mapped into memory at a fixed capacity, holding `size` bytes of data.

The segment log and both indexes are MappedFiles. The file is extended (sparsely) to
its capacity when opened for writing, so appends are plain copies into the map (or
pwrites at the data's end, `write`, which the map sees: the same page cache) and a
reader's memoryview stays valid while the file grows: Python cannot resize an mmap
that has exported buffers, so the map is never resized. `trim()` cuts the file to its
data when it stops being written (roll or clean close); the map keeps its length, and
nobody reads past `size`. A clean close's trim fsyncs; a roll's does not, and hands the
descriptor over for the fsync in the background (storage/background_flush.py).

Space is a checked error, never a signal. A store into a hole of a shared mapping must
find a block, and when the filesystem has none the kernel can only answer with SIGBUS.
So nothing is written past `allocated`: blocks are allocated for real (fallocate) ahead
of the data, a few MiB at a time (`allocate`), and a full filesystem surfaces as
StorageError from that call, before any byte is copied. It is not sticky: the next
append tries again, so the file takes appends again as soon as space is freed.
Allocated blocks past `size` read as zeros; the file's length stays `capacity`.

After a crash the file can be longer than its data (the capacity) with zeros or a torn
batch after it; recovery finds the real size and calls `truncate(size)`, which also
zeroes whatever stood past it, so stale bytes can never be mistaken for data later.

Owned by the partition's worker process; not thread-safe.
"""
import errno
import mmap
import os

from odradek.client.errors import StorageError
from odradek.daemon.storage.modes import open_file

__all__ = ["MappedFile", "PAGE_SIZE"]

PAGE_SIZE = mmap.PAGESIZE
_ZERO_CHUNK = bytes(1 << 20)
ALLOCATE_AHEAD = 64 << 10  # default bytes allocated past an append that needs more (indexes)


class MappedFile:
    def __init__(self, path, capacity, size=None, writable=True, create=False):
        """Map `path`. `size` is the data length (default: the file's length);
        `capacity` the mapped length for writing (the file is extended to it)."""
        self.path = path
        self.writable = writable
        flags = (os.O_RDWR if writable else os.O_RDONLY) | (os.O_CREAT if create else 0)
        try:
            self._fd = open_file(path, flags)
        except OSError as e:
            raise StorageError(f"cannot open {path}: {e.strerror}") from e
        self._sticky_error = None
        self._closed = False
        try:
            file_len = os.fstat(self._fd).st_size
            self.size = file_len if size is None else size
            self.capacity = max(capacity, self.size) if writable else file_len
            if writable and file_len < self.capacity:
                os.ftruncate(self._fd, self.capacity)
            if self.capacity > 0:
                prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
                self._map = mmap.mmap(self._fd, self.capacity, mmap.MAP_SHARED, prot)
            else:
                self._map = None
        except OSError as e:
            os.close(self._fd)
            raise StorageError(f"cannot map {path}: {e.strerror}") from e
        self._view = memoryview(self._map) if self._map is not None else memoryview(b"")
        self._flushed = self.size
        # bytes [0, allocated) are known to have blocks: the data (written), and what
        # allocate() got. What lies past the data of a reopened file is not known.
        self.allocated = self.size
        if not writable:
            self._release_fd()  # the map keeps the pages; a partition may have thousands

    def _release_fd(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- reading ------------------------------------------------------------------
    def view(self, start=0, end=None):
        """A zero-copy memoryview of data bytes [start, end)."""
        end = self.size if end is None else min(end, self.size)
        return self._view[start:end]

    def is_zero(self, start, end):
        """Whether bytes [start, end) of the file are all zero. Holes of a sparse file are
        skipped with SEEK_DATA/SEEK_HOLE and data is compared in 1 MiB chunks: ~0.2 s per
        GiB of written pages, against ~14 s for any() over a memoryview."""
        end = min(end, self.capacity)
        pos = start
        while pos < end:
            data, stop = pos, end
            if self._fd >= 0:
                try:
                    data = os.lseek(self._fd, pos, os.SEEK_DATA)
                except OSError as e:
                    if e.errno == errno.ENXIO:
                        return True  # nothing but holes from pos on
                    raise
                if data >= end:
                    return True
                stop = min(os.lseek(self._fd, data, os.SEEK_HOLE), end)
            for i in range(data, stop, len(_ZERO_CHUNK)):
                j = min(i + len(_ZERO_CHUNK), stop)
                if self._map[i:j] != _ZERO_CHUNK[:j - i]:
                    return False
            pos = stop
        return True

    @property
    def buffer(self):
        """The whole map (capacity bytes), for code that scans or searches in place."""
        return self._view

    def advise_no_readahead(self):
        """No readahead around page faults in this map (madvise MADV_RANDOM): for an
        appender, whose faults are on the pages it just wrote or is about to write."""
        if self._map is not None:
            self._map.madvise(mmap.MADV_RANDOM)

    # -- writing ------------------------------------------------------------------
    def allocate(self, need, want=None):
        """Make sure bytes [0, need) have blocks on disk, and up to `want` (>= need) if
        the filesystem has room for them (both capped at the capacity): fallocate,
        mode 0, so the blocks are real and the file's length does not change. Raises
        StorageError (KAFKA_STORAGE_ERROR, retriable) when even `need` does not fit;
        nothing changes then, and a later call may succeed (space freed meanwhile)."""
        need = min(need, self.capacity)
        if need <= self.allocated:
            return
        self._check_writable()
        start = self.allocated
        for end in (min(max(want or need, need), self.capacity), need):
            try:
                os.posix_fallocate(self._fd, start, end - start)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT) and end > need:
                    continue   # not room for the run-ahead: try what this append needs
                raise StorageError(f"{self.path}: cannot allocate {end - start} bytes at {start}: "
                                   f"{e.strerror}") from e
            self.allocated = end
            return

    def append(self, data):
        """Copy `data` after the current data; returns its position. One memcpy."""
        if self._sticky_error is not None or not self.writable:
            self._check_writable()  # raises. Tested inline: a call costs ~0.3 us, and
            # append runs up to 3 times an append to the log (log, index, time index)
        n = len(data)
        pos = self.size
        if pos + n > self.capacity:
            raise StorageError(f"{self.path}: append of {n} bytes at {pos} passes capacity {self.capacity}")
        if pos + n > self.allocated:
            self.allocate(pos + n, pos + n + ALLOCATE_AHEAD)
        self._view[pos:pos + n] = data
        self.size = pos + n
        return pos

    def write(self, data):
        """Write `data` after the current data with pwrite(2), not through the map;
        returns its position. The map shows it at once (MAP_SHARED: the same page
        cache), and whole pages written so are not zeroed first, as pages a store into
        the map faults in are. The caller allocates first (allocate): this writes only
        allocated bytes, so ENOSPC here is as unexpected as EIO. A failed write leaves
        the file's state unknown: StorageError, and writes refused from then on; what
        it wrote before it failed is zeroed (_cut_failed_write)."""
        view = memoryview(data).cast("B")
        return self.write_parts((view,), len(view))

    def write_parts(self, parts, n):
        """write() of the concatenation of `parts` (buffers of n bytes in all, at most
        os.sysconf("SC_IOV_MAX") of them) with one pwritev(2): a partition leader's run of
        batches, each in its own ring entry, without joining them first."""
        if self._sticky_error is not None or not self.writable:
            self._check_writable()  # raises
        pos = self.size
        if pos + n > self.capacity:
            raise StorageError(f"{self.path}: write of {n} bytes at {pos} passes capacity {self.capacity}")
        try:
            done = os.pwritev(self._fd, parts, pos) if len(parts) > 1 else 0
            if done < n:   # one part; or a write cut short (only when interrupted): the rest
                rest = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
                while done < n:
                    done += os.pwrite(self._fd, rest[done:], pos + done)
        except OSError as e:
            self._cut_failed_write(pos, n)
            self._fail(e)
        self.size = pos + n
        self.allocated = max(self.allocated, self.size)
        return pos

    def truncate(self, size):
        """Cut the data to `size` bytes and zero everything after it, up to capacity."""
        self._check_writable()
        if size > self.size:
            raise StorageError(f"{self.path}: cannot truncate to {size}, data is {self.size} bytes")
        try:
            os.ftruncate(self._fd, size)          # drops the old bytes (zeroes on re-extension)
            os.ftruncate(self._fd, self.capacity)
        except OSError as e:
            self._fail(e)
        self.size = size
        self.allocated = size                     # the blocks past it went with them
        self._flushed = min(self._flushed, size)

    def flush(self, data_only=False):
        """msync the bytes written since the last flush and fsync the file (data_only:
        fdatasync, which skips metadata the data does not need: the file's length is
        its capacity already)."""
        if not self.writable or self._map is None:
            return
        self._check_writable()
        start = self._flushed - self._flushed % PAGE_SIZE
        try:
            if self.size > start:
                self._map.flush(start, self.size - start)
            (os.fdatasync if data_only else os.fsync)(self._fd)
        except OSError as e:
            self._fail(e)
        self._flushed = self.size

    def trim(self, sync=True):
        """Cut the file to its data when it stops being written; the map stays as it is.
        sync (clean close, recovery): msync and fsync, so the cut file is on disk on
        return. sync=False (a roll): the cut only; returns the file's descriptor, now the
        caller's to fsync and close (storage/background_flush.py): an fsync of the file
        covers the pages written through the map too. None when there was nothing to trim."""
        if not self.writable:
            return None
        if sync:
            self.flush()
        else:
            self._check_writable()
        try:
            os.ftruncate(self._fd, self.size)
            if sync:
                os.fsync(self._fd)
        except OSError as e:
            self._fail(e)
        self.capacity = self.allocated = self.size
        self.writable = False
        if sync:
            self._release_fd()
            return None
        fd, self._fd = self._fd, -1
        return fd

    def close(self):
        """Unmap and close. A reader still holding a view keeps the pages alive: the map
        is then left to the garbage collector (Python refuses to close it earlier)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._view.release()
            if self._map is not None:
                self._map.close()
        except BufferError:
            pass  # a reader's view outlives us; the pages go when it does
        self._release_fd()

    # -- errors -------------------------------------------------------------------
    def _cut_failed_write(self, pos, n):
        """After a write of n bytes at `pos` failed partway: the bytes it did write lie past
        the data, unvalidated (a leader's batches are checked only once written:
        odk_append_in_place; a follower's were, but only some landed), where a recovery
        would read on into them. They are zeroed through the map (the same page cache),
        as a refused append's copy is: no system call that could fail again, and the
        blocks stay allocated, so a later store into the map there cannot meet a full
        disk (SIGBUS) as it could after a cut with ftruncate."""
        if self._view is not None:
            self._view[pos:pos + n] = bytes(n)

    def _check_writable(self):
        if self._sticky_error is not None:
            raise StorageError(f"{self.path}: refusing writes after an earlier I/O error: {self._sticky_error}")
        if not self.writable:
            raise StorageError(f"{self.path}: not open for writing")

    def _fail(self, err):
        # After a failed write or fsync the file's state is unknown: refuse further writes
        # (the log goes offline for this partition rather than risk silent loss).
        self._sticky_error = err.strerror or str(err)
        raise StorageError(f"{self.path}: {self._sticky_error}") from err

