"""A partition's consumer-visible state and its recent batches, in shared memory.

Full layout, ordering rules and crash behaviour: LAYOUT.md beside this file.

    State memfd (native little-endian; sealed against writes once its creator has
    mapped it, so consumers can only map it read-only):
      off size type field                  off size type field
        0   4  u32  magic "ODKP"             72   8  i64  log_start_offset
        4   4  u32  version (1)              80   8  i64  high_watermark
        8   4  u32  slots                    88   8  i64  log_end_offset
       12   4  u32  slot_size (64)           96   8  i64  active_segment_base
       16   8  u64  desc_offset (4096)      104   8  i64  window_first
       24   4  u32  minor_version (1)       112   8  i64  window_end
       64   4  u32  seq (seqlock, change    120   4  i32  leader_epoch
                    counter, futex word)    124   4  u32  flags (1 = fenced, 2 = loaded)
                                            128   8  i64  first_unstable_offset (-1: none)
     4096 + 64*k: descriptor slot k: u64 stamp | i64 base_offset | i64 last_offset |
                  i64 segment_base | i64 position | i64 max_timestamp | i32 size | pad

One writer, the partition's leader worker, publishes the state with a seqlock and
appends one descriptor per batch; any number of readers (consumers) take consistent
snapshots, sleep until the state changes (the writer FUTEX_WAKEs seq after every
publish: readers leave no mark it could trust), and find the batch holding an offset
among the last slots-1 batches without reading index files.

Ownership: the writer methods (update, append, truncate, fence) belong to one thread of
one process: the creator, or a child it forked, which inherits the creator's writable
mapping and takes it over (take_over). Nobody else can map the state writable: create()
seals it (F_SEAL_FUTURE_WRITE). The reader methods (read, wait_for_change, find) are
safe from any thread and any number of processes.

The last stable offset (transactions, KIP-98): the writer stores the first offset of the
partition's undecided transactions in first_unstable_offset (-1 when there is none), by
itself, not under the seqlock, before any publish lets the high watermark pass it;
last_stable_offset(snapshot) = min(that, snapshot.high_watermark). A state whose
minor_version is 0 (made before the field existed) has no transactions: its LSO is the
high watermark.
"""
import os
import struct
from collections import namedtuple
from typing import NamedTuple

from odradek.client.shm._lib import ffi, lib, wait_until
from odradek.client.shm._memfd import (F_SEAL_FUTURE_WRITE, Mapping, create_memfd, readonly_fd,
                                        seal_writes)
from odradek.client.errors import BadLayout, NotInWindow, TornState

__all__ = ["PartitionState", "PartitionStateFds", "PartitionSnapshot", "BatchDescriptor",
           "MAGIC", "VERSION", "HEADER_SIZE", "DESC_SIZE",
           "OFF_MAGIC", "OFF_VERSION", "OFF_SLOTS", "OFF_SLOT_SIZE", "OFF_DESC_OFFSET",
           "OFF_SEQ", "OFF_LOG_START", "OFF_HIGH_WATERMARK", "OFF_LOG_END",
           "OFF_ACTIVE_SEGMENT", "OFF_WINDOW_FIRST", "OFF_WINDOW_END", "OFF_LEADER_EPOCH",
           "OFF_FLAGS", "OFF_MINOR_VERSION", "MINOR_VERSION", "OFF_FIRST_UNSTABLE", "NO_OFFSET", "DESC_OFF_STAMP", "DESC_OFF_BASE_OFFSET", "DESC_OFF_LAST_OFFSET",
           "DESC_OFF_SEGMENT_BASE", "DESC_OFF_POSITION", "DESC_OFF_MAX_TIMESTAMP",
           "DESC_OFF_SIZE", "FLAG_FENCED", "FLAG_LOADED", "DEFAULT_SLOTS", "MIN_SLOTS", "MAX_SLOTS"]

# ---- Layout (checked against odradek.h and LAYOUT.md by tests/client/shm/test_layout.py)
MAGIC = struct.unpack("<I", b"ODKP")[0]
VERSION = 1
OFF_MAGIC = 0
OFF_VERSION = OFF_MAGIC + 4
OFF_SLOTS = OFF_VERSION + 4
OFF_SLOT_SIZE = OFF_SLOTS + 4
OFF_DESC_OFFSET = OFF_SLOT_SIZE + 4
OFF_SEQ = 64                                 # own cache line: the seqlocked block
OFF_LOG_START = OFF_SEQ + 8                  # (4 bytes of padding after seq)
OFF_HIGH_WATERMARK = OFF_LOG_START + 8
OFF_LOG_END = OFF_HIGH_WATERMARK + 8
OFF_ACTIVE_SEGMENT = OFF_LOG_END + 8
OFF_WINDOW_FIRST = OFF_ACTIVE_SEGMENT + 8
OFF_WINDOW_END = OFF_WINDOW_FIRST + 8
OFF_LEADER_EPOCH = OFF_WINDOW_END + 8
OFF_FLAGS = OFF_LEADER_EPOCH + 4
OFF_MINOR_VERSION = OFF_DESC_OFFSET + 8      # fields added within version 1 (LAYOUT.md)
MINOR_VERSION = 1                            # 1: first_unstable_offset
OFF_FIRST_UNSTABLE = OFF_FLAGS + 4           # outside the seqlock: one aligned 8-byte store
NO_OFFSET = -1
HEADER_SIZE = 4096                           # descriptors start one page in
DESC_SIZE = 64                               # one cache line per descriptor
DESC_OFF_STAMP = 0
DESC_OFF_BASE_OFFSET = DESC_OFF_STAMP + 8
DESC_OFF_LAST_OFFSET = DESC_OFF_BASE_OFFSET + 8
DESC_OFF_SEGMENT_BASE = DESC_OFF_LAST_OFFSET + 8
DESC_OFF_POSITION = DESC_OFF_SEGMENT_BASE + 8
DESC_OFF_MAX_TIMESTAMP = DESC_OFF_POSITION + 8
DESC_OFF_SIZE = DESC_OFF_MAX_TIMESTAMP + 8
FLAG_FENCED = 1
FLAG_LOADED = 2     # a leader opened the log and published its offsets
DEFAULT_SLOTS = 1024
MIN_SLOTS = 2
MAX_SLOTS = 1 << 20

PartitionSnapshot = namedtuple(
    "PartitionSnapshot", "log_start_offset high_watermark log_end_offset leader_epoch "
                         "active_segment_base fenced change loaded")
PartitionSnapshot.__doc__ = """One consistent reading of the partition state. `change` is
the change counter it was read at (pass it to wait_for_change); `fenced` means the
writer is gone for good (leadership moved, worker dead): ask the broker. `loaded` is
false until a leader has opened the log and published its offsets (a partition whose
first worker has not started yet, say after a broker restart): until then the offsets
are zeros that say nothing about the log, and a reader waits for a change."""

BatchDescriptor = namedtuple(
    "BatchDescriptor", "base_offset last_offset segment_base position size max_timestamp")
BatchDescriptor.__doc__ = """Where a batch lives: segment `segment_base`, bytes
[position, position + size) of its .log file."""


class PartitionStateFds(NamedTuple):
    """The fd of a partition state: `state`, sealed against writes (no fd of it can
    write it, whatever its access mode). The holder closes it."""
    state: int

    def for_readers(self):
        """A new fd to hand a consumer: the state read-only. The caller closes it once
        sent."""
        return PartitionStateFds(readonly_fd(self.state))

    def close(self):
        os.close(self.state)


# odk_pstate and odk_batch_desc as struct formats, field order as in odradek.h.
_PSTATE = struct.Struct("@qqqqqqiIII")
_DESC = struct.Struct("@qqqqqii")
_RAW_STATE = struct.Struct("<qqqqqqiI")      # the seqlocked fields, straight from the page
_U32 = struct.Struct("=I")
_I64 = struct.Struct("=q")
assert _PSTATE.size == ffi.sizeof("odk_pstate"), "odk_pstate layout changed"
assert _DESC.size == ffi.sizeof("odk_batch_desc"), "odk_batch_desc layout changed"
_unpack_state = _PSTATE.unpack_from
_unpack_desc = _DESC.unpack_from
_make_snapshot = tuple.__new__

_OK = lib.ODK_SHM_OK
_TORN = lib.ODK_SHM_TORN
_NOT_YET = lib.ODK_SHM_NOT_YET
_NOT_IN_WINDOW = lib.ODK_SHM_NOT_IN_WINDOW
_RETRIES = lib.ODK_SEQLOCK_RETRIES

_read = lib.odk_pstate_read
_publish = lib.odk_pstate_publish
_append = lib.odk_pstate_append
_append_run = lib.odk_pstate_append_run
_wait = lib.odk_pstate_wait
_find = lib.odk_pstate_find

# Result structs for the C calls: a free list of (bytearray, cdata over it) pairs, so a
# call neither ffi.new's (~0.5 us) nor shares a struct with another thread: list.pop
# and list.append are atomic, so each call owns its struct from pop to append.
_free_states, _free_descs = [], []


def _take(free, ctype, size):
    try:
        return free.pop()
    except IndexError:
        raw = bytearray(size)
        return raw, ffi.from_buffer(ctype, raw, True)


_STATE_PTR = ffi.typeof("odk_pstate *")
_DESC_PTR = ffi.typeof("odk_batch_desc *")


class PartitionState:
    """The shared state of one partition: a seqlocked block of offsets and a ring of the
    last `slots` batch descriptors. Create with PartitionState.create(slots) -> (state,
    fds); hand readers fds.for_readers(); they map them with PartitionState.attach.
    The creator's object is the only writer; a child it forks takes it over."""

    __slots__ = ("_map", "_ptr", "_st", "slots")

    def __init__(self, mapping):
        """Use PartitionState.create or PartitionState.attach."""
        slots = ffi.new("uint32_t *")
        if lib.odk_pstate_check(mapping.ptr, mapping.size, slots):
            raise BadLayout(f"not an odradek partition state (version {VERSION}) that fits "
                            f"its {mapping.size}-byte memfd")
        self._map = mapping
        self._ptr = mapping.ptr
        self.slots = slots[0]
        self._st = None   # the writer's copy of the state, loaded on first write

    @classmethod
    def create(cls, slots=DEFAULT_SLOTS, *, log_start_offset=0, high_watermark=0,
               log_end_offset=0, leader_epoch=0, active_segment_base=0):
        """A new state with room for `slots` descriptors (window: the last slots-1
        batches), published with the given values. Returns (state, PartitionStateFds);
        the caller owns the fds. The state is sealed against writes once mapped here:
        this object (and its copies in children forked from now on) is its only writer.
        Raises SealUnsupported on a kernel without F_SEAL_FUTURE_WRITE."""
        if not MIN_SLOTS <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be from {MIN_SLOTS} to {MAX_SLOTS}, not {slots}")
        state_fd = create_memfd("odradek-partition-state", HEADER_SIZE + slots * DESC_SIZE,
                                final=False)
        try:
            mapping = Mapping(state_fd, writable=True)
            seal_writes(state_fd)
            assert lib.odk_pstate_format(mapping.ptr, mapping.size, slots) == 0
            ps = cls(mapping)
            _I64.pack_into(mapping.view, OFF_FIRST_UNSTABLE, NO_OFFSET)
            _U32.pack_into(mapping.view, OFF_MINOR_VERSION, MINOR_VERSION)
            ps.update(log_start_offset=log_start_offset, high_watermark=high_watermark,
                      log_end_offset=log_end_offset, leader_epoch=leader_epoch,
                      active_segment_base=active_segment_base)
            return ps, PartitionStateFds(state_fd)
        except BaseException:
            os.close(state_fd)
            raise

    @classmethod
    def attach(cls, state_fd):
        """Map a partition state from its fd, read-only (only the reader methods work).
        Refuses a state not sealed against writes: any reader could forge it for the
        others. The caller closes the fd."""
        mapping = Mapping(state_fd, writable=False)
        if not mapping.seals & F_SEAL_FUTURE_WRITE:
            mapping.close()
            raise BadLayout(f"partition state memfd {state_fd} is not sealed against writes "
                            f"(F_SEAL_FUTURE_WRITE): any reader could forge it for the others")
        return cls(mapping)

    def take_over(self):
        """Become the writer afresh: a worker forked from the creator, or the creator
        again once its workers are gone. Forgets this copy of the fields (another
        process wrote since) and carries on from the page. Returns self."""
        self._st = None
        return self

    @property
    def writable(self):
        return self._map.writable

    # ---- readers -------------------------------------------------------------------

    def read(self, max_retries=_RETRIES):
        """A consistent PartitionSnapshot. Raises TornState if every one of max_retries
        tries found an update in progress (the writer died in one, or is stalled)."""
        raw, out = _take(_free_states, _STATE_PTR, _PSTATE.size)
        try:
            if _read(self._ptr, out, max_retries) != _OK:
                raise TornState(f"partition state still mid-update after {max_retries} tries: "
                                f"its writer died or is stalled; ask the broker")
            ls, hw, leo, seg, _, _, epoch, flags, change, _ = _unpack_state(raw)
        finally:
            _free_states.append((raw, out))
        return _make_snapshot(PartitionSnapshot,
                              (ls, hw, leo, epoch, seg, bool(flags & FLAG_FENCED), change,
                               bool(flags & FLAG_LOADED)))

    def first_unstable_offset(self):
        """The first offset of the partition's undecided transactions, or None: none, or
        a state made before the field existed (minor_version 0)."""
        view = self._map.view
        if _U32.unpack_from(view, OFF_MINOR_VERSION)[0] < 1:
            return None
        first = _I64.unpack_from(view, OFF_FIRST_UNSTABLE)[0]
        return None if first < 0 else first

    def last_stable_offset(self, snapshot):
        """Where a read_committed reader stops, for a snapshot read just before: the
        first unstable offset, or the snapshot's high watermark if lower or there is none
        (read after the snapshot, the field is never behind it: LAYOUT.md)."""
        first = self.first_unstable_offset()
        return snapshot.high_watermark if first is None else min(first, snapshot.high_watermark)

    def wait_for_change(self, last_seen, timeout=None):
        """Sleep until the change counter differs from last_seen (a snapshot's `change`):
        True, or False after `timeout` seconds. A writer that died mid-update leaves the
        counter changed: this returns True and read() then raises TornState."""
        ptr = self._ptr

        def step(ns):
            return _wait(ptr, last_seen, ns)
        return wait_until(step, timeout)

    def find(self, offset, max_retries=_RETRIES):
        """The descriptor of the first live batch with last_offset >= offset (the batch
        holding offset, or the next one after a gap), or None if no such batch has been
        appended yet. Raises NotInWindow when offset is older than the window (ask the
        broker) and TornState as read() does. Check offset against a snapshot's
        high_watermark first: descriptors are published at append, before commit."""
        raw, out = _take(_free_descs, _DESC_PTR, _DESC.size)
        try:
            rc = _find(self._ptr, self.slots, offset, max_retries, out)
            if rc == _OK:
                base, last, seg, pos, ts, size, _ = _unpack_desc(raw)
                return BatchDescriptor(base, last, seg, pos, size, ts)
        finally:
            _free_descs.append((raw, out))
        if rc == _NOT_YET:
            return None
        if rc == _NOT_IN_WINDOW:
            raise NotInWindow(f"offset {offset} is older than the last {self.slots - 1} "
                              f"batches in shared memory; ask the broker where it is")
        raise TornState(f"partition state kept changing or stayed mid-update for "
                        f"{max_retries} tries looking up offset {offset}")

    def run_end(self, d, upper, limit, max_descriptors):
        """Where the run of batches that starts with descriptor `d` ends, as a position in
        d's segment: it takes the next descriptors while each lies right after the run in
        the same segment, has a base offset below `upper` and keeps the run within `limit`
        bytes (`d` itself always counts), at most `max_descriptors` of them; a lookup that
        fails (NotInWindow, TornState) ends the run there. A fetch sends the run as one
        slice (the gateway's sendfile, a Consumer's view of its mapping)."""
        start, end, nxt = d.position, d.position + d.size, d.last_offset + 1
        for _ in range(max_descriptors):
            if end - start >= limit or nxt >= upper:
                break
            try:
                d2 = self.find(nxt)
            except (NotInWindow, TornState):
                break
            if d2 is None or d2.segment_base != d.segment_base or d2.position != end or \
                    d2.base_offset >= upper or end + d2.size - start > limit:
                break
            end += d2.size
            nxt = d2.last_offset + 1
        return end

    # ---- the writer (the partition's leader worker) --------------------------------

    def _writer_state(self):
        st = self._st
        if st is None:
            if not self._map.writable:
                raise PermissionError("this partition state is mapped read-only: only its "
                                      "writer (the leader worker) may change it")
            st = ffi.new("odk_pstate *")
            # Taking over: the fields as they are, even mid-update (the next publish
            # completes that update; callers overwrite what they know).
            (st.log_start_offset, st.high_watermark, st.log_end_offset, st.active_segment_base,
             st.window_first, st.window_end, st.leader_epoch, st.flags) = \
                _RAW_STATE.unpack_from(self._map.view, OFF_LOG_START)
            self._st = st
        return st

    def raw_high_watermark(self):
        """The writer's view of the high watermark, as the page holds it even mid-update
        (a predecessor killed while publishing): for a writer taking over."""
        return self._writer_state().high_watermark

    def update(self, *, log_start_offset=None, high_watermark=None, log_end_offset=None,
               leader_epoch=None, active_segment_base=None, loaded=None):
        """Publish the given fields (the others unchanged) in one seqlock write, waking
        readers that wait for a change. `loaded=True`: these are the offsets of the log,
        as its leader opened it (readers act on them from then on). Returns the new
        change counter."""
        st = self._writer_state()
        if loaded:
            st.flags |= FLAG_LOADED
        if log_start_offset is not None:
            st.log_start_offset = log_start_offset
        if high_watermark is not None:
            st.high_watermark = high_watermark
        if log_end_offset is not None:
            st.log_end_offset = log_end_offset
        if leader_epoch is not None:
            st.leader_epoch = leader_epoch
        if active_segment_base is not None:
            st.active_segment_base = active_segment_base
        return _publish(self._ptr, st)

    def append(self, base_offset, last_offset, segment_base, position, size, max_timestamp,
               *, high_watermark=None):
        """Record a batch just appended to the log: its descriptor enters the window and
        log_end_offset becomes last_offset + 1 (and high_watermark, if given), in one
        publish. Batches must come in offset order. Returns the new change counter."""
        st = self._writer_state()
        if last_offset < base_offset or base_offset < st.log_end_offset:
            raise ValueError(f"batch [{base_offset}, {last_offset}] does not follow the log "
                             f"end offset {st.log_end_offset}")
        if high_watermark is not None:
            st.high_watermark = high_watermark
        return _append(self._ptr, self.slots, st, base_offset, last_offset,
                       segment_base, position, size, max_timestamp)

    def append_run(self, segment_base, batches, *, high_watermark=None):
        """append() for each of `batches`, (base_offset, last_offset, position, size,
        max_timestamp) tuples of one segment in offset order, with one wake-up for readers
        (odk_pstate_append_run): a leader's run of batches appended with one write.
        Returns the new change counter."""
        st = self._writer_state()
        if not batches:
            return self.update(high_watermark=high_watermark)
        if batches[0][0] < st.log_end_offset or any(b[1] < b[0] for b in batches) or \
                any(batches[k + 1][0] <= batches[k][1] for k in range(len(batches) - 1)):
            raise ValueError(f"batches {[(b[0], b[1]) for b in batches]} do not follow the log end "
                             f"offset {st.log_end_offset} in order")
        step = self.slots - 1
        for i in range(0, len(batches), step):
            chunk = batches[i:i + step]
            descs = bytearray(_DESC.size * len(chunk))
            for k, (base, last, position, size, max_ts) in enumerate(chunk):
                _DESC.pack_into(descs, k * _DESC.size, base, last, segment_base, position, max_ts, size, 0)
            if high_watermark is not None and i + step >= len(batches):
                st.high_watermark = high_watermark
            change = _append_run(self._ptr, self.slots, st, segment_base,
                                 ffi.cast("odk_batch_desc *", ffi.from_buffer(descs)), len(chunk))
        return change

    def set_first_unstable_offset(self, offset):
        """Store the first offset of the undecided transactions (None or -1: none). Not a
        publish: store it before the publish that moves the high watermark past it, and
        publish (update()) after raising it, so that sleeping readers learn of it."""
        if not self._map.writable:
            raise PermissionError("this partition state is mapped read-only: only its writer may change it")
        _I64.pack_into(self._map.view, OFF_FIRST_UNSTABLE, NO_OFFSET if offset is None else offset)

    def truncate(self, log_end_offset):
        """The log was truncated to log_end_offset: the window restarts empty (its
        descriptors may describe removed batches), the high watermark is capped at the
        new end, in one publish. Returns the new change counter."""
        st = self._writer_state()
        st.window_first = st.window_end
        st.log_end_offset = log_end_offset
        st.high_watermark = min(st.high_watermark, log_end_offset)
        return _publish(self._ptr, st)

    def fence(self):
        """Mark this state abandoned (leadership moved; or the broker, as a stand-in
        writer, after the worker died): readers see fenced=True and every waiter wakes.
        Completes a dead writer's half update. Returns the new change counter."""
        st = self._writer_state()
        st.flags |= FLAG_FENCED
        return _publish(self._ptr, st)

    def _futex_word(self):
        """(mmap, offset) of seq, the readers' futex word (for waiting.WaitSet)."""
        return self._map.mm, OFF_SEQ

    # ---- lifetime --------------------------------------------------------------------

    def close(self):
        """Unmap (the memory goes when every holder has closed and unmapped)."""
        if self._map is not None:
            self._map.close()
            self._map = self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
