"""Thin wrappers over the storage-only functions of odradek._native
(daemon/c_ext/odradek.h): the index lookups and the fused append, with the signatures
and return types of their pure-Python reference in _native_ref.py beside this file.
Import through odradek.daemon.storage.native, which picks this module or the reference.

Buffers are passed to C without a copy through ffi.from_buffer; nothing is retained
after a call returns, except by append_target, which binds a segment's three maps once
(release_target lets go). CFFI releases the GIL around each C call.
"""
import functools
import struct

from odradek._native import ffi, lib
from odradek.daemon.storage import _native_ref as _ref
from odradek.daemon.storage._native_ref import APPEND_STATE_FIELDS, APPEND_TAIL_FIELDS  # noqa: F401

__all__ = ["index_lookup", "timeindex_lookup", "append", "append_state", "AppendState",
           "APPEND_STATE_FIELDS", "append_target", "append_into", "release_target", "prefault",
           "append_fields_reader", "append_call", "APPEND_TAIL_FIELDS", "append_check", "append_commit",
           "append_in_place", "expect_buffer"]

_from_buffer = ffi.from_buffer
_BYTES = ffi.typeof("uint8_t[]")
_prefault = lib.odk_prefault_async
_index_lookup = lib.odk_index_lookup
_timeindex_lookup = lib.odk_timeindex_lookup
_append = lib.odk_append
_append_check = lib.odk_append_check
_append_in_place = lib.odk_append_in_place
_append_commit = lib.odk_append_commit
_new = ffi.new
_release = ffi.release
_STATE_PTR = ffi.typeof("odk_append_state *")
AppendState = _STATE_PTR   # what append_state() returns: isinstance(st, ffi.CData) holds
_INT64_MIN = -(1 << 63)
_HEADER_SIZE = lib.ODK_BATCH_HEADER_SIZE


def _check_entries(n, entries, entry_size):
    # C trusts `entries`: this is the bound that keeps it inside the buffer.
    if entries < 0 or entries * entry_size > n:
        raise ValueError(f"{entries} index entries of {entry_size} bytes do not fit in "
                         f"a buffer of {n} bytes")


def index_lookup(index, entries, target):
    """Slot of the last offset-index entry with relativeOffset <= target, else -1."""
    p = _from_buffer(_BYTES, index)
    if entries < 0 or entries * 8 > len(p):
        _check_entries(len(p), entries, 8)
    try:
        return _index_lookup(p, entries, target)
    except OverflowError:   # target outside u32: below or above every entry
        if isinstance(target, int):
            return -1 if target < 0 else entries - 1
        raise


def timeindex_lookup(index, entries, target):
    """Slot of the first time-index entry with timestamp >= target, else `entries`."""
    p = _from_buffer(_BYTES, index)
    if entries < 0 or entries * 12 > len(p):
        _check_entries(len(p), entries, 12)
    try:
        return _timeindex_lookup(p, entries, target)
    except OverflowError:   # target outside i64: below or above every entry
        if isinstance(target, int):
            return 0 if target < _INT64_MIN else entries
        raise


assert set(APPEND_STATE_FIELDS) == {f for f, _ in _STATE_PTR.item.fields}, \
    "odk_append_state fields changed: update _native_ref.APPEND_STATE_FIELDS"


def append_state(*args, **kwargs):
    """A new odk_append_state (an `odk_append_state *` cdata owning its memory) for
    `append`, filled as the reference's append_state (same arguments and defaults: an
    empty segment at segment_base). Read and set its fields as attributes (~40 ns each);
    keep one per segment and reuse it."""
    return _ref.append_state(*args, state=_new(_STATE_PTR), **kwargs)


def expect_buffer(st, headers):
    """The reference's expect_buffer: a writable buffer of `headers` batch headers, C
    memory that st.expect points at. The buffer returned keeps that memory alive: keep
    it as long as st (a released buffer would leave st pointing at freed memory)."""
    if headers < 1:
        raise ValueError(f"an expectation holds at least one header, not {headers}")
    memory = _new("uint8_t[]", headers * _HEADER_SIZE)
    st.expect = memory
    return ffi.buffer(memory)


def append(src, dst, index, timeindex, st):
    """odk_append: the reference's append (its docstring says what each argument is),
    in C. Returns st.status. No allocation per call: the four buffers are borrowed
    (ffi.from_buffer) for the call only, and st is the caller's."""
    s = _from_buffer(_BYTES, src)
    d = _from_buffer(_BYTES, dst, True)
    i = _from_buffer(_BYTES, index, True)
    t = _from_buffer(_BYTES, timeindex, True)
    return _append(s, len(s), d, len(d), i, len(i) >> 3, t, len(t) // 12, st)


def append_target(dst, index, timeindex):
    """The three segment buffers of `append`, bound once (per segment) for append_into,
    which then skips the three ffi.from_buffer calls (~0.5 us each on the dev box).
    Holds them exported (an mmap cannot be closed meanwhile): release_target(target)
    before closing the files. A list [dst, dst_size, index, index_cap, timeindex,
    time_cap]; treat it as opaque."""
    d = _from_buffer(_BYTES, dst, True)
    i = _from_buffer(_BYTES, index, True)
    t = _from_buffer(_BYTES, timeindex, True)
    return [d, len(d), i, len(i) >> 3, t, len(t) // 12]


def append_into(src, target, st):
    """append(src, *buffers bound in target, st). ValueError after release_target."""
    s = _from_buffer(_BYTES, src)
    try:
        d, dn, i, ic, t, tc = target
    except ValueError:
        raise ValueError("append target was released") from None
    return _append(s, len(s), d, dn, i, ic, t, tc, st)


def append_in_place(length, target, st):
    """odk_append_in_place: append_into for the `length` bytes the caller already wrote
    at st.position of the target's .log (pwrite); every failure zeroes them again.
    Returns st.status."""
    try:
        d, dn, i, ic, t, tc = target
    except ValueError:
        raise ValueError("append target was released") from None
    if length < 0:
        raise ValueError(f"length must be >= 0, not {length}")
    return _append_in_place(length, d, dn, i, ic, t, tc, st)


def append_check(src, target, st):
    """odk_append_check: validate a follower's batches where they are, for the segment
    bound in target (append_target), writing nothing; returns st.status. On Status.OK
    write src at st.position of the .log (pwrite), then append_commit(src, target, st)."""
    s = _from_buffer(_BYTES, src)
    try:
        d, dn, i, ic, t, tc = target
    except ValueError:
        raise ValueError("append target was released") from None
    return _append_check(s, len(s), dn, t, ic, tc, st)


def append_commit(src, target, st):
    """odk_append_commit: after an OK append_check of src and its write, add its index
    entries and advance st (Status.OK), or Status.BAD_STATE and nothing written."""
    s = _from_buffer(_BYTES, src)
    try:
        d, dn, i, ic, t, tc = target
    except ValueError:
        raise ValueError("append target was released") from None
    return _append_commit(s, len(s), i, ic, t, tc, st)


# odk_append_state from `position` (byte 88, after the configuration and the expectation)
# to the end, in field order (odradek.h)
_APPEND_TAIL = struct.Struct("@7q2i10q")
_TAIL_AT = 88
assert ffi.offsetof("odk_append_state", "expect") == 72 and \
    ffi.offsetof("odk_append_state", "position") == _TAIL_AT and \
    ffi.sizeof("odk_append_state") == _TAIL_AT + _APPEND_TAIL.size and \
    len(APPEND_TAIL_FIELDS) == 7 + 2 + 10, "odk_append_state layout changed"


def append_call(target, st):
    """A function of one argument, `data`: append_into(data, target, st) with the target's
    pointers bound once (what LogSegment calls per append)."""
    d, dn, i, ic, t, tc = target
    from_buffer, append = _from_buffer, _append

    def call(data):
        if not target:
            raise ValueError("append target was released")
        p = from_buffer(_BYTES, data)
        return append(p, len(p), d, dn, i, ic, t, tc, st)
    return call


def append_fields_reader(st):
    """A function returning the state's fields APPEND_TAIL_FIELDS as one tuple: one
    unpack (~0.3 us) instead of a cffi attribute read per field (~0.12 us each)."""
    return functools.partial(_APPEND_TAIL.unpack_from, ffi.buffer(st), _TAIL_AT)


def prefault(target, start, end):
    """Ask the process's prefault thread to populate bytes [start, end) of the target's
    segment map for writing (odk_prefault_async): 0 queued, 1 queue full, 2 unavailable.
    A released target (empty) is ignored (2)."""
    if not target:
        return 2
    return _prefault(target[0], start, min(end, target[1]))


def release_target(target):
    """Let go of the buffers append_target took (idempotent); the target is then dead:
    it is emptied first, so no later append_into can reach a released pointer."""
    held = target[0::2]
    target.clear()
    for p in held:
        _release(p)
