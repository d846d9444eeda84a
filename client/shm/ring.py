"""SPSC byte ring in shared memory: produce requests one way, completions the other.

Full layout, ordering rules and crash behaviour: LAYOUT.md beside this file.

    Ring memfd (native little-endian), data area one page in:
      off  size type field           written by
        0    4  u32  magic "ODKR"     creator        64   8  u64  tail    writer
        4    4  u32  version (2)      creator        72   4  u32  data_waiter  reader only
        8    8  u64  capacity (2^k)   creator       128   8  u64  head    reader
       16    8  u64  data_offset      creator       136   4  u32  space_waiter writer only
     4096  cap       data: entries    writer
    Entry: u32 length | u32 tag | payload, padded to 8; length 0xFFFFFFFF = wrap marker.

One process writes (reserve/commit, write), one process reads (peek/release). The hot
paths are single calls into odradek._native (shm.c): Python costs ~1 us per entry, so
1 KiB entries move at ~1 GB/s and 16 KiB ones near memcpy speed (perf/shm_ring.py).

Ownership: a Ring object belongs to one process. One thread may write and another read
through the same object (their cursors are disjoint); two writers (or two readers) on
one ring, in one process or two, corrupt it.
"""
import os
import struct
import sys
from collections import namedtuple

from odradek.client.errors import MessageTooLarge
from odradek.client.shm._lib import BYTES, ffi, lib, wait_until
from odradek.client.shm._memfd import Mapping, create_memfd
from odradek.client.errors import BadLayout, RingFull, ShmCorrupt

__all__ = ["Ring", "Completion", "drop_view", "COMPLETION_SIZE", "MAGIC", "VERSION", "HEADER_SIZE",
           "ENTRY_HEADER_SIZE", "WRAP", "MIN_CAPACITY", "MAX_CAPACITY",
           "OFF_MAGIC", "OFF_VERSION", "OFF_CAPACITY", "OFF_DATA_OFFSET", "OFF_TAIL",
           "OFF_DATA_WAITER", "OFF_HEAD", "OFF_SPACE_WAITER", "max_payload"]

# ---- Layout (checked against odradek.h and LAYOUT.md by tests/client/shm/test_layout.py)
MAGIC = struct.unpack("<I", b"ODKR")[0]
VERSION = 2
OFF_MAGIC = 0
OFF_VERSION = OFF_MAGIC + 4
OFF_CAPACITY = OFF_VERSION + 4
OFF_DATA_OFFSET = OFF_CAPACITY + 8
OFF_TAIL = 64                      # own cache line: the writer's
OFF_DATA_WAITER = OFF_TAIL + 8
OFF_HEAD = 128                     # own cache line: the reader's
OFF_SPACE_WAITER = OFF_HEAD + 8
HEADER_SIZE = 4096                 # the data area is page-aligned
ENTRY_HEADER_SIZE = 8              # u32 length | u32 tag
ALIGN = 8
WRAP = 0xFFFFFFFF
MIN_CAPACITY = 64
MAX_CAPACITY = 1 << 30

# A completion entry's payload: base_offset i64 | error_code i32 | reserved u32.
_COMPLETION = struct.Struct("<qi4x")
COMPLETION_SIZE = _COMPLETION.size
Completion = namedtuple("Completion", "tag base_offset error_code")
Completion.__doc__ = "One produce acknowledgement: the request's tag, its base offset, an error code (0 = none)."

_EMPTY = -lib.ODK_SHM_EMPTY
_FULL = -lib.ODK_SHM_FULL
_TOO_BIG = lib.ODK_SHM_TOO_BIG
_MISUSE = lib.ODK_SHM_MISUSE
_U32 = 1 << 32

_from_buffer = ffi.from_buffer
_reserve = lib.odk_ring_reserve
_commit = lib.odk_ring_commit
_write = lib.odk_ring_write
_write_unrung = lib.odk_ring_write_unrung
_peek = lib.odk_ring_peek
_release = lib.odk_ring_release
_take = lib.odk_ring_take
_release_to = lib.odk_ring_release_to
_free = lib.odk_ring_free
_complete_release = lib.odk_ring_complete_release
_read_completion = lib.odk_ring_read_completion
_CORRUPT = -lib.ODK_SHM_CORRUPT
_wait_readable = lib.odk_ring_wait_readable
_wait_writable = lib.odk_ring_wait_writable
_load_u64 = lib.odk_atomic_load_u64
_load_u32 = lib.odk_atomic_load_u32
_pack_completion = _COMPLETION.pack
_unpack_completion = _COMPLETION.unpack


def max_payload(capacity):
    """Largest entry payload a ring of `capacity` data bytes takes: half of it, less the
    entry header, so an entry always fits once the ring has drained, wherever it wraps."""
    return capacity // 2 - ENTRY_HEADER_SIZE


class Ring:
    """A single-producer single-consumer ring of variable-size entries (u32 tag each).

    Writer:  view = ring.reserve(n, tag); fill view; ring.commit()     (zero extra copy)
             ring.write(data, tag)                                      (one copy)
    Reader:  tag, view = ring.peek(); use view; ring.release()          (zero copy)
    Both sides block on futexes, never poll: ring.wait(timeout) for data,
    ring.wait_for_space(n, timeout) for room. Timeouts are seconds; None waits forever,
    0 does not wait.

    Create with Ring.create(capacity) -> (ring, fd) and send the fd to the peer, which
    maps it with Ring.attach(fd). Each side may close its fd once attached.
    """

    __slots__ = ("_map", "_r", "_mv", "_ro", "_wview", "_rview", "_rtag", "_doorbell",
                 "capacity", "max_payload", "_completion_out")

    def __init__(self, mapping):
        """Use Ring.create or Ring.attach."""
        if not mapping.writable:
            raise BadLayout("a ring needs a writable mapping (both sides write a cursor)")
        r = ffi.new("odk_ring *")
        rc = lib.odk_ring_init(r, mapping.ptr, mapping.size)
        if rc == lib.ODK_SHM_CORRUPT:
            raise ShmCorrupt(f"ring cursors are impossible: head "
                             f"{_load_u64(mapping.ptr, OFF_HEAD)}, tail {_load_u64(mapping.ptr, OFF_TAIL)}")
        if rc:
            raise BadLayout(f"not an odradek ring (version {VERSION}) of a size that fits "
                            f"its {mapping.size}-byte memfd")
        self._map = mapping
        self._r = r
        self._mv = mapping.view
        self._ro = mapping.view.toreadonly()   # peeked views are slices of this
        self._wview = self._rview = self._doorbell = None
        self._rtag = 0
        self._completion_out = None            # read_completion's out-parameters, made at its first call
        self.capacity = r.capacity
        self.max_payload = max_payload(r.capacity)

    @classmethod
    def create(cls, capacity):
        """A new ring with `capacity` data bytes (a power of two, 64 B .. 1 GiB).
        Returns (ring, fd); the caller owns fd (send it, then close it)."""
        if not (MIN_CAPACITY <= capacity <= MAX_CAPACITY) or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two from {MIN_CAPACITY} to "
                             f"{MAX_CAPACITY}, not {capacity}")
        fd = create_memfd("odradek-ring", HEADER_SIZE + capacity)
        try:
            mapping = Mapping(fd, writable=True)
            rc = lib.odk_ring_format(mapping.ptr, mapping.size, capacity)
            assert rc == 0, rc
            return cls(mapping), fd
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd):
        """Map the ring behind fd (from Ring.create, passed over the control socket).
        The fd is not kept: the caller closes it."""
        return cls(Mapping(fd, writable=True))

    # ---- writer ------------------------------------------------------------------

    def set_doorbell(self, doorbell):
        """Ring `doorbell` after every commit but write(ring=False)'s (the reader sleeps on
        it, not on this ring, when it serves many rings). None stops it. Writer side only."""
        old = self._doorbell
        if doorbell is None:
            self._r.doorbell = ffi.NULL
            self._doorbell = None
        else:
            # Our own buffer export of the doorbell's mmap: while it lives, the mmap
            # cannot be unmapped (closing the Doorbell defers the unmap), so the
            # pointer C keeps stays valid.
            self._doorbell = _from_buffer(BYTES, doorbell._map.mm, require_writable=True)
            self._r.doorbell = self._doorbell
        if old is not None:
            ffi.release(old)

    def reserve(self, n, tag=0, timeout=0):
        """A writable view of n bytes inside the ring for the next entry; fill it, then
        commit() (or cancel()). Waits up to `timeout` seconds for room, then raises
        RingFull. n above max_payload raises MessageTooLarge."""
        try:
            off = _reserve(self._r, n, tag)
        except OverflowError:
            off = self._bad_size(n, tag)
        if off < 0:
            off = self._reserve_slow(n, tag, timeout, off)
        view = self._mv[off:off + n]
        self._wview = view
        return view

    def _reserve_slow(self, n, tag, timeout, off):
        if off == _FULL and timeout != 0:
            def step(ns):
                return _wait_writable(self._r, n, ns)
            if wait_until(step, timeout):
                off = _reserve(self._r, n, tag)
        if off >= 0:
            return off
        if off == _FULL:
            raise RingFull(f"no room for a {n}-byte entry in {self.capacity}-byte ring "
                           f"within {timeout} s (the reader is behind or gone)")
        if off == -_TOO_BIG:
            raise MessageTooLarge(f"a {n}-byte entry exceeds the ring's max payload of "
                                  f"{self.max_payload} bytes (half its capacity, less 8)")
        if off == -_MISUSE:
            raise RuntimeError("reserve() while a reservation is open: commit() or cancel() it")
        raise AssertionError(f"odk_ring_reserve returned {off}")

    def _bad_size(self, n, tag):
        if not 0 <= tag < _U32:
            raise ValueError(f"a ring tag is a u32, not {tag}")
        if n < 0:
            raise ValueError(f"entry size must be >= 0, not {n}")
        return -_TOO_BIG

    def commit(self, n=None):
        """Publish the reserved entry, shrunk to its first n bytes if n is given. Wakes
        the reader if it sleeps (and rings the doorbell, if one is set). The view from
        reserve() is released: it must not be used after this."""
        view = self._wview
        if view is None:
            raise RuntimeError("commit() without reserve()")
        rc = _commit(self._r, len(view) if n is None else n)
        if rc:
            if rc == _TOO_BIG:
                raise ValueError(f"commit({n}) exceeds the {len(view)} bytes reserved")
            raise AssertionError(f"odk_ring_commit returned {rc}")
        self._wview = None
        drop_view(view)

    def cancel(self):
        """Drop the reserved entry unpublished."""
        view = self._wview
        if view is None:
            raise RuntimeError("cancel() without reserve()")
        lib.odk_ring_cancel(self._r)
        self._wview = None
        drop_view(view)

    def write(self, data, tag=0, timeout=0, ring=True):
        """Append one entry holding a copy of data (any buffer). Waits up to `timeout`
        seconds for room, then raises RingFull. `ring` False: the doorbell (set_doorbell)
        is not rung for it; the writer rings it with ring_doorbell() after its last entry
        of a row, before it waits for what they bring (a reader asleep on the doorbell
        does not see them until then). An entry that has to wait for room rings it first
        (the unrung entries before it hold that room until the reader sees them) and
        again when committed."""
        if self._wview is not None:
            raise RuntimeError("write() while a reservation is open: commit() or cancel() it")
        # bytes go to C as they are; other buffers through from_buffer (~0.3 us more)
        p = data if type(data) is bytes else _from_buffer(BYTES, data)
        try:
            rc = (_write if ring else _write_unrung)(self._r, p, len(p), tag)
        except OverflowError:
            rc = -self._bad_size(len(p), tag)
        if rc:   # full (wait for room, or raise) or too big (raise)
            if not ring:
                self.ring_doorbell()
            view = self.reserve(len(p), tag, timeout)
            ffi.memmove(view, p, len(p))
            self.commit()

    def ring_doorbell(self):
        """Ring the doorbell (set_doorbell), if any: after writes with ring=False."""
        lib.odk_ring_ring_doorbell(self._r)

    def wait_for_space(self, n, timeout=None):
        """Block until an n-byte entry fits (True) or `timeout` seconds pass (False)."""
        if not 0 <= n <= self.max_payload:
            raise MessageTooLarge(f"a {n}-byte entry exceeds the ring's max payload of "
                                  f"{self.max_payload} bytes")
        r = self._r

        def step(ns):
            return _wait_writable(r, n, ns)
        return wait_until(step, timeout)

    def write_completion(self, tag, base_offset, error_code=0, timeout=0):
        """Append a completion (tag of the request, base offset assigned, error code)."""
        self.write(_pack_completion(base_offset, error_code), tag, timeout)

    # ---- reader ------------------------------------------------------------------

    def peek(self):
        """(tag, view) of the next committed entry, or None if there is none. The view is
        read-only and points into the ring (no copy); it is valid until release(). Peek
        again before release() returns the same entry."""
        view = self._rview
        if view is not None:
            return self._rtag, view
        off = _peek(self._r)
        if off < 0:
            if off == _EMPTY:
                return None
            raise self._corrupt()
        r = self._r
        view = self._ro[off:off + r.entry_len]
        self._rview = view
        self._rtag = tag = r.entry_tag
        return tag, view

    def release_completing(self, completions, base_offset, error_code=0):
        """completions.write_completion(tag of the peeked entry, base_offset,
        error_code), then release(), in one C call (a partition leader's, per produce
        entry). Raises RingFull (and releases nothing) if the completion does not fit."""
        view = self._rview
        if view is None:
            raise RuntimeError("release_completing() without peek()")
        self._rview = None
        drop_view(view)
        rc = _complete_release(self._r, completions._r, base_offset, error_code)
        if rc:
            if rc == -_FULL:
                raise RingFull(f"no room for a completion in the {completions.capacity}-byte completion ring")
            raise ValueError(f"release_completing: error code {rc}")

    def release(self):
        """Done with the peeked entry: its view is released, then its space given back
        (waking a writer that waits for room)."""
        view = self._rview
        if view is None:
            raise RuntimeError("release() without peek()")
        self._rview = None
        drop_view(view)   # before the head moves: the caller cannot read reused bytes
        _release(self._r)

    def take(self):
        """Done with the peeked entry (its view is released), but keep its space: the
        next peek() returns the entry after it, while the shared head stays, so a reader
        that dies now leaves this entry to its successor. Returns the ring position to
        pass to release_to() once the entry is done for good (in order: positions
        grow)."""
        view = self._rview
        if view is None:
            raise RuntimeError("take() without peek()")
        self._rview = None
        drop_view(view)
        _take(self._r)
        return self._r.head

    def more_after_peeked(self):
        """Whether the writer has committed another entry after the peeked one (a reader
        choosing between taking one entry and a run of them); False with none peeked."""
        if self._rview is None:
            return False
        return _load_u64(self._map.ptr, OFF_TAIL) > self._r.entry_end

    def take_keeping_view(self):
        """take(), but the peeked entry's view stays usable: the caller reads several
        consecutive entries at once (a partition leader appending a run of batches with
        one write). It must release each such view (view.release()) before release_to()
        passes the entry's position, after which the writer may reuse the bytes
        (drop_view).
        Returns the position, as take()."""
        if self._rview is None:
            raise RuntimeError("take_keeping_view() without peek()")
        self._rview = None
        _take(self._r)
        return self._r.head

    def release_to(self, position):
        """Give back the space of every entry taken up to `position` (from take())."""
        if _release_to(self._r, position) != 0:
            raise ValueError(f"release_to({position}): outside the taken entries "
                             f"(released {self.head}, taken up to {self._r.head})")

    def wait(self, timeout=None):
        """Block until an entry is committed (True) or `timeout` seconds pass (False)."""
        r = self._r

        def step(ns):
            return _wait_readable(r, ns)
        return wait_until(step, timeout)

    def read_completion(self):
        """The next Completion, released from the ring, or None if there is none (one C
        call, odk_ring_read_completion, unless an entry is peeked already)."""
        if self._rview is None:
            out = self._completion_out
            if out is None:
                out = self._completion_out = (ffi.new("int64_t *"), ffi.new("int32_t *"))
            tag = _read_completion(self._r, out[0], out[1])
            if tag >= 0:
                return Completion(tag, out[0][0], out[1][0])
            if tag == _EMPTY:
                return None
            if tag == _CORRUPT and self._r.entry_pending:     # peeked: a completion of the wrong size
                raise ShmCorrupt(f"a completion entry is {COMPLETION_SIZE} bytes, not {self._r.entry_len}")
            raise self._corrupt()
        got = self.peek()
        if got is None:
            return None
        tag, view = got
        if len(view) != COMPLETION_SIZE:
            raise ShmCorrupt(f"a completion entry is {COMPLETION_SIZE} bytes, not {len(view)}")
        base_offset, error_code = _unpack_completion(view)
        self.release()
        return Completion(tag, base_offset, error_code)

    def _corrupt(self):
        r, p = self._r, self._map.ptr
        head, tail = r.head, _load_u64(p, OFF_TAIL)
        pos = HEADER_SIZE + (head & (self.capacity - 1))
        length = _load_u32(p, pos)
        return ShmCorrupt(f"ring entry at position {head} is impossible (tail {tail}, "
                          f"capacity {self.capacity}, length field {length:#x}, max payload "
                          f"{self.max_payload}): the writer is broken; drop this ring")

    # ---- state and lifetime --------------------------------------------------------

    @property
    def free(self):
        """The bytes this ring's writer could still commit (entry headers, padding and
        wrap markers included): capacity - (tail - head), 0 if the reader's head is
        broken (past the tail)."""
        return _free(self._r)

    @property
    def head(self):
        """Bytes released by the reader since creation (a shared cursor)."""
        return _load_u64(self._map.ptr, OFF_HEAD)

    @property
    def tail(self):
        """Bytes committed by the writer since creation (a shared cursor)."""
        return _load_u64(self._map.ptr, OFF_TAIL)

    def _futex_word(self):
        """(mmap, offset) of tail's low half, the reader's futex word (waiting.WaitSet)."""
        return self._map.mm, OFF_TAIL + (4 if sys.byteorder == "big" else 0)

    @property
    def reader_waiting(self):
        """True while the reader announces it sleeps (or is about to) for data."""
        return bool(_load_u32(self._map.ptr, OFF_DATA_WAITER))

    @property
    def writer_waiting(self):
        """True while the writer announces it sleeps (or is about to) for space."""
        return bool(_load_u32(self._map.ptr, OFF_SPACE_WAITER))

    def close(self):
        """Unmap (once no view from peek/reserve is alive). The ring's memory is freed
        when every process has closed its fd and unmapped it."""
        if self._map is None:
            return
        for view in (self._wview, self._rview):
            if view is not None:
                drop_view(view)
        self._wview = self._rview = None
        self._ro.release()
        self.set_doorbell(None)
        self._map.close()
        self._map = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def drop_view(view):
    """Release a view into a ring (one we handed out, or one a reader kept through
    take_keeping_view), so that whoever keeps it gets ValueError instead of bytes the peer
    may be rewriting. A view re-exported meanwhile (BufferError) stays usable."""
    try:
        view.release()
    except BufferError:
        pass
