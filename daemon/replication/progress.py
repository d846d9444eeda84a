"""Replica progress: where each follower of a partition has got to, in shared memory.

Followers publish their log end offset here after every append, and ring the page's
counter; the partition's leader sleeps on that counter beside its other words
(daemon/worker/wakeups.py), so it sees a follower's progress without a round trip and
moves the high watermark and completes acks=all produces at once.

Memory: one anonymous MAP_SHARED mapping per partition, made by the broker when the
partition's shared memory is (data_plane.PartitionShm) and inherited by every worker it
forks for the partition, leader and followers, across their restarts. It has no fd, so
no client can ever map it: only the broker's own processes read or write it.

    ReplicaProgress (native little-endian; every field an aligned C11 atomic):
      off size type field              written by
        0   4  u32  magic "ODKF"        the broker, once
        4   4  u32  version (1)         the broker, once
        8   4  u32  slots               the broker, once: one per log dir (replica id)
       64   4  u32  counter             every follower: +1 (seq_cst) then FUTEX_WAKE, after
                                        publishing its slot; the leader's futex word
      128 + 64*r: the slot of replica r (r = its log dir's index in log.dirs)
        0   8  i64  log_end_offset      follower r: after each append or truncation
                                        (-1: not published since the broker started, or
                                        its process died: the broker resets it)
        8   8  i64  log_start_offset    follower r
       16   8  i64  caught_up_ms        the leader: the last time (CLOCK_REALTIME ms) it
                                        found replica r caught up (Kafka's
                                        lastCaughtUpTimeMs), for status; 0: never
       24   4  i32  pid                 follower r: its pid (0: none)
       32   8  i64  synced_offset       follower r: below it its log is fsynced (acks.all.fsync
                                        topics only; -1 otherwise)

Each field has one writer and is read and written whole with C11 atomics; no field
depends on another, so there is no seqlock. The counter follows the counter scheme of
client/shm/LAYOUT.md ("Waiting"): every writer is one of our own processes, so no ABA.

Ownership: the broker creates and closes it; a follower writes its own slot, the
leader the caught_up_ms fields, anyone of them reads.
"""
import mmap
import struct

from odradek._native import ffi, lib

__all__ = ["ReplicaProgress", "MAGIC", "VERSION", "OFF_COUNTER", "SLOT_BASE", "SLOT_SIZE",
           "SLOT_LOG_END", "SLOT_LOG_START", "SLOT_CAUGHT_UP_MS", "SLOT_PID", "SLOT_SYNCED", "UNKNOWN"]

MAGIC = struct.unpack("<I", b"ODKF")[0]
VERSION = 1
OFF_MAGIC, OFF_VERSION, OFF_SLOTS = 0, 4, 8
OFF_COUNTER = 64
SLOT_BASE = 128
SLOT_SIZE = 64
SLOT_LOG_END, SLOT_LOG_START, SLOT_CAUGHT_UP_MS, SLOT_PID, SLOT_SYNCED = 0, 8, 16, 24, 32
UNKNOWN = -1

BYTES = ffi.typeof("uint8_t[]")
_load64, _store64 = lib.odk_atomic_load_u64, lib.odk_atomic_store_u64
_load32, _store32 = lib.odk_atomic_load_u32, lib.odk_atomic_store_u32
_MASK64 = (1 << 64) - 1


def _signed(v):
    return v - (1 << 64) if v >> 63 else v


class ReplicaProgress:
    """The progress page of one partition, for `slots` replicas (log dirs)."""

    __slots__ = ("mm", "ptr", "slots")

    def __init__(self, slots):
        if not 1 <= slots <= 4096:
            raise ValueError(f"replica progress holds 1..4096 slots, not {slots}")
        size = -(-(SLOT_BASE + SLOT_SIZE * slots) // mmap.PAGESIZE) * mmap.PAGESIZE
        self.mm = mmap.mmap(-1, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.ptr = ffi.from_buffer(BYTES, self.mm, require_writable=True)
        self.slots = slots
        struct.pack_into("<III", self.mm, 0, MAGIC, VERSION, slots)
        for r in range(slots):
            _store64(self.ptr, self._off(r, SLOT_LOG_END), UNKNOWN & _MASK64)
            _store64(self.ptr, self._off(r, SLOT_LOG_START), UNKNOWN & _MASK64)
            _store64(self.ptr, self._off(r, SLOT_SYNCED), UNKNOWN & _MASK64)

    def _off(self, replica, field):
        if not 0 <= replica < self.slots:
            raise IndexError(f"replica {replica} outside 0..{self.slots - 1}")
        return SLOT_BASE + SLOT_SIZE * replica + field

    # -- a follower -------------------------------------------------------------------
    def publish(self, replica, log_end_offset, log_start_offset, pid=None, synced_offset=None):
        """Follower `replica` is at these offsets now: store them, then ring the counter."""
        if synced_offset is not None:
            _store64(self.ptr, self._off(replica, SLOT_SYNCED), synced_offset & _MASK64)
        _store64(self.ptr, self._off(replica, SLOT_LOG_START), log_start_offset & _MASK64)
        _store64(self.ptr, self._off(replica, SLOT_LOG_END), log_end_offset & _MASK64)
        if pid is not None:
            _store32(self.ptr, self._off(replica, SLOT_PID), pid)
        self.ring()

    def forget(self, replica):
        """Replica `replica` has no running follower (the broker, after it died): its log
        end is not known any more (the leader must not find it caught up)."""
        _store32(self.ptr, self._off(replica, SLOT_PID), 0)
        _store64(self.ptr, self._off(replica, SLOT_LOG_END), UNKNOWN & _MASK64)
        _store64(self.ptr, self._off(replica, SLOT_SYNCED), UNKNOWN & _MASK64)
        self.ring()

    def ring(self):
        lib.odk_atomic_fetch_add_u32(self.ptr, OFF_COUNTER, 1)
        lib.odk_futex_wake(ffi.cast("uint32_t *", self.ptr + OFF_COUNTER), 2 ** 31 - 1)

    # -- the leader -------------------------------------------------------------------
    def log_end_offset(self, replica):
        return _signed(_load64(self.ptr, self._off(replica, SLOT_LOG_END)))

    def log_start_offset(self, replica):
        return _signed(_load64(self.ptr, self._off(replica, SLOT_LOG_START)))

    def synced_offset(self, replica):
        return _signed(_load64(self.ptr, self._off(replica, SLOT_SYNCED)))

    def pid(self, replica):
        return _load32(self.ptr, self._off(replica, SLOT_PID))

    def set_caught_up_ms(self, replica, ms):
        _store64(self.ptr, self._off(replica, SLOT_CAUGHT_UP_MS), ms & _MASK64)

    def caught_up_ms(self, replica):
        return _signed(_load64(self.ptr, self._off(replica, SLOT_CAUGHT_UP_MS)))

    @property
    def counter(self):
        return _load32(self.ptr, OFF_COUNTER)

    def _futex_word(self):
        """(mapping, offset) of the counter: what waiting.WaitSet sleeps on."""
        return self.mm, OFF_COUNTER

    def close(self):
        if self.mm is None:
            return
        ffi.release(self.ptr)
        self.mm.close()
        self.mm = self.ptr = None
