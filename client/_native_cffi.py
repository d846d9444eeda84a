"""Thin wrappers over odradek._native (daemon/c_ext/odradek.h), with the signatures and
return types of the pure-Python reference in _native_ref.py. Import through
odradek.client.native, which picks this module or the reference.

Buffers (bytes, bytearray, memoryview, mmap, slices of those) are passed to C without a
copy through ffi.from_buffer; nothing is retained after a call returns. CFFI releases
the GIL around each C call, so any number of threads may call these at once (mutating a
buffer while it is being scanned is the caller's problem, as with any reader).

Per-call overhead is kept small because crc32c and scan_batches run once per batch on
the produce path (numbers from the dev VM, 1-batch scan_batches ~3 us in all):
  - lib functions and ctypes are looked up once, here;
  - result structs are decoded with one struct.unpack rather than one cdata attribute
    read per field (BatchInfo lists: 0.9 us instead of 2.5 us per batch);
  - the odk_scan_result is not ffi.new'd per call (~0.6 us) but taken from a free list
    of (bytearray, cdata view) pairs. list.pop/append are atomic, so each call owns its
    struct exclusively from pop to append: safe across threads (the GIL is released in
    C) and re-entrant (a signal handler scanning mid-call just takes another struct).
    A single shared struct would race; a threading.local would not be re-entrant.
"""
import functools
import struct
from array import array

from odradek._native import ffi, lib
from odradek.client._native_ref import (APPEND_STATE_FIELDS, APPEND_TAIL_FIELDS, BATCH_HEADER_SIZE,  # noqa: F401
                                        LOG_OVERHEAD, RECORD_FIELDS, BatchInfo, DecodeResult,
                                        RecordsFlag, ScanResult, Status)
from odradek.client.records.layout import RECORDS_COUNT_OFFSET

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "index_lookup",
           "timeindex_lookup", "scan_batches", "ScanResult", "BatchInfo", "Status",
           "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "append", "append_state", "AppendState",
           "APPEND_STATE_FIELDS", "append_target", "append_into", "release_target", "prefault",
           "append_fields_reader", "append_call", "APPEND_TAIL_FIELDS", "append_check", "append_commit",
           "decode_records", "DecodeResult", "RECORD_FIELDS", "RecordsFlag"]

_from_buffer = ffi.from_buffer
_new_uncleared = ffi.new_allocator(should_clear_after_alloc=False)  # C fills what we read
_buffer = ffi.buffer
_NULL = ffi.NULL
_BYTES = ffi.typeof("uint8_t[]")
_RESULT_PTR = ffi.typeof("odk_scan_result *")
_INFO_ARRAY = ffi.typeof("odk_batch_info[]")

_crc32c = lib.odk_crc32c
_prefault = lib.odk_prefault_async
_crc32c_sw = lib.odk_crc32c_sw
_index_lookup = lib.odk_index_lookup
_timeindex_lookup = lib.odk_timeindex_lookup
_scan_batches = lib.odk_scan_batches
_append = lib.odk_append
_append_check = lib.odk_append_check
_append_commit = lib.odk_append_commit
_new = ffi.new
_STATE_PTR = ffi.typeof("odk_append_state *")
AppendState = _STATE_PTR   # what append_state() returns: isinstance(st, ffi.CData) holds

# Native layouts of odk_scan_result and odk_batch_info, field order as in odradek.h.
_RESULT = struct.Struct("@i q q q q q q q q")
_INFO = struct.Struct("@q q q q q q i i i i h h I")
assert _RESULT.size == ffi.sizeof("odk_scan_result"), "odk_scan_result layout changed"
assert _INFO.size == ffi.sizeof("odk_batch_info"), "odk_batch_info layout changed"
_INFO_SIZE = _INFO.size
_iter_infos = _INFO.iter_unpack
_unpack_result = _RESULT.unpack_from
_make_info = tuple.__new__   # BatchInfo(*fields) without the *args repacking

_INT64_MIN = -(1 << 63)
_HW = bool(lib.odk_crc32c_hw_available())


def crc32c(data, crc=0):
    """CRC-32C of data, continuing from a previous result `crc` (0 to start)."""
    p = _from_buffer(_BYTES, data)
    return _crc32c(crc, p, len(p))


def crc32c_sw(data, crc=0):
    """crc32c through the table (slicing-by-8) path, whatever the CPU offers."""
    p = _from_buffer(_BYTES, data)
    return _crc32c_sw(crc, p, len(p))


def crc32c_hw_available():
    """True if crc32c uses the SSE4.2 crc32 instruction."""
    return _HW


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


_free_results = []                 # (bytearray, odk_scan_result * over it) pairs
_take_result = _free_results.pop
_give_result = _free_results.append


def _new_result():
    raw = bytearray(_RESULT.size)
    return raw, _from_buffer(_RESULT_PTR, raw, True)


def scan_batches(buf, max_batch_size=0, check_offsets=False, min_offset=0, cap=0):
    """Validate concatenated v2 batches from the start of buf; see odk_scan_batches.

    cap > 0 collects up to cap BatchInfo in result.infos (and stops with MORE when full);
    cap == 0 collects none.
    """
    p = _from_buffer(_BYTES, buf)
    try:
        raw, out = _take_result()
    except IndexError:
        raw, out = _new_result()
    if cap:
        if cap < 0:
            raise ValueError(f"cap must be >= 0, not {cap}")
        arr = _new_uncleared(_INFO_ARRAY, cap)
        _scan_batches(p, len(p), max_batch_size, check_offsets, min_offset, arr, cap, out)
        fields = _unpack_result(raw)
        infos = [_make_info(BatchInfo, t)
                 for t in _iter_infos(_buffer(arr, fields[1] * _INFO_SIZE))]
    else:
        _scan_batches(p, len(p), max_batch_size, check_offsets, min_offset, _NULL, 0, out)
        fields = _unpack_result(raw)
        infos = []
    _give_result((raw, out))
    return ScanResult(*fields, infos)


assert set(APPEND_STATE_FIELDS) == {f for f, _ in _STATE_PTR.item.fields}, \
    "odk_append_state fields changed: update _native_ref.APPEND_STATE_FIELDS"


def append_state(segment_base=0, index_interval=4096, max_batch_size=0, next_offset=None,
                 position=0, index_entries=0, time_entries=0, bytes_since_index=0,
                 max_timestamp=-1, offset_of_max=None, assign=True, leader_epoch=-1,
                 append_time=-1):
    """A new odk_append_state (an `odk_append_state *` cdata owning its memory) for
    `append`; defaults describe an empty segment at segment_base. Read and set its
    fields as attributes (~40 ns each); keep one per segment and reuse it."""
    st = _new(_STATE_PTR)
    st.segment_base, st.index_interval, st.max_batch_size = segment_base, index_interval, max_batch_size
    st.next_offset = segment_base if next_offset is None else next_offset
    st.offset_of_max = segment_base if offset_of_max is None else offset_of_max
    st.position, st.index_entries, st.time_entries = position, index_entries, time_entries
    st.bytes_since_index, st.max_timestamp = bytes_since_index, max_timestamp
    st.assign, st.leader_epoch, st.append_time = int(bool(assign)), leader_epoch, append_time
    st.first_offset = st.last_offset = st.append_max_timestamp = st.first_max_timestamp = -1
    st.last_time_timestamp = -1
    return st


def append(src, dst, index, timeindex, st):
    """Copy, validate, rewrite and index a buffer of v2 batches at the end of a segment:
    odk_append (see odradek.h for every rule and status). Returns st.status.

    src: the batches (any buffer; read once, by the copy). dst: the segment's mapping,
    writable, its whole capacity (MappedFile.buffer); the copy goes to st.position.
    index, timeindex: the mapped index files, writable, whole capacity (entries that fit
    = len // 8 and len // 12). st: from append_state(); its segment fields advance on
    Status.OK only, its result fields are set by every call. No allocation per call: the
    four buffers are borrowed (ffi.from_buffer) for the call only, and st is the caller's.
    """
    s = _from_buffer(_BYTES, src)
    d = _from_buffer(_BYTES, dst, True)
    i = _from_buffer(_BYTES, index, True)
    t = _from_buffer(_BYTES, timeindex, True)
    return _append(s, len(s), d, len(d), i, len(i) >> 3, t, len(t) // 12, st)


_release = ffi.release


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


# odk_append_state from `position` (byte 40) to the end, in field order (odradek.h)
_APPEND_TAIL = struct.Struct("@7q2i10q")
assert ffi.offsetof("odk_append_state", "position") == 40 and \
    ffi.sizeof("odk_append_state") == 40 + _APPEND_TAIL.size and \
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
    return functools.partial(_APPEND_TAIL.unpack_from, ffi.buffer(st), 40)


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


# ---- Record decode ----------------------------------------------------------------------
# Rows go straight into an array('q') (what decode_records returns, the same type as the
# twin's), through a cdata view over it: array * n is a cheap zeroed allocation. Readers
# walk it with struct.iter_unpack("@8q"), one 8-tuple a record: measured on the dev VM
# (148-record batches) at ~0.21 us a record, against ~0.28 us for zip() over the eight
# memoryview(rows)[field::8].tolist() columns and ~0.48 us once map() adds the base
# timestamp in C. odk_decode_result is taken from a free list of (bytearray, cdata)
# pairs, as in scan_batches. The whole call costs ~3.5 us on that VM (~0.6 us of it is
# CFFI's call with the GIL released), so a batch of 15 records of 1 KiB pays ~0.23 us a
# record for it.
_decode_records = lib.odk_decode_records
_DECODE = struct.Struct("@i i q q q q")
assert _DECODE.size == ffi.sizeof("odk_decode_result"), "odk_decode_result layout changed"
assert len(RECORD_FIELDS) == lib.ODK_RECORD_FIELDS, "ODK_RECORD_FIELDS changed"
_DECODE_PTR = ffi.typeof("odk_decode_result *")
_I64_ARRAY = ffi.typeof("int64_t[]")
_unpack_decode = _DECODE.unpack_from
_count_at = struct.Struct(">i").unpack_from      # recordsCount
_ZERO_ROW = array("q", bytes(8 * lib.ODK_RECORD_FIELDS))
_free_decodes = []
_take_decode = _free_decodes.pop
_give_decode = _free_decodes.append
_make_decode = tuple.__new__


def decode_records(batch):
    """Decode every record of one uncompressed v2 batch: odk_decode_records (see
    odradek.h). Returns a DecodeResult whose rows (an array('q')) hold the records
    decoded before any failure, 8 fields each (RECORD_FIELDS)."""
    # bytes go to C as they are (cffi passes their pointer): one from_buffer less,
    # ~0.6 us on the dev VM, for the caller that decodes a bytes copy of the batch
    p = batch if type(batch) is bytes else _from_buffer(_BYTES, batch)
    n = len(p)
    # rows for recordsCount records, when that many can fit; else C fails before any
    count = _count_at(batch, RECORDS_COUNT_OFFSET)[0] if n >= BATCH_HEADER_SIZE else 0
    if count < 0 or count > (n - BATCH_HEADER_SIZE) // 7:
        count = 0
    rows = _ZERO_ROW * count
    try:
        raw, out = _take_decode()
    except IndexError:
        raw = bytearray(_DECODE.size)
        out = _from_buffer(_DECODE_PTR, raw, True)
    if count:
        held = _from_buffer(_I64_ARRAY, rows, True)
        _decode_records(p, n, held, count, out)
    else:
        _decode_records(p, n, _NULL, 0, out)
    status, flags, records, position, expected, found = _unpack_decode(raw)
    _give_decode((raw, out))
    if records != count:
        if count:
            _release(held)            # an exported array cannot be resized
        del rows[records * 8:]
    return _make_decode(DecodeResult, (status, flags, records, position, expected, found,
                                       rows))
