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
import struct

from odradek._native import ffi, lib
from odradek.client._native_ref import (BATCH_HEADER_SIZE, LOG_OVERHEAD,  # noqa: F401
                                        BatchInfo, ScanResult, Status)

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "index_lookup",
           "timeindex_lookup", "scan_batches", "ScanResult", "BatchInfo", "Status",
           "BATCH_HEADER_SIZE", "LOG_OVERHEAD"]

_from_buffer = ffi.from_buffer
_new_uncleared = ffi.new_allocator(should_clear_after_alloc=False)  # C fills what we read
_buffer = ffi.buffer
_NULL = ffi.NULL
_BYTES = ffi.typeof("uint8_t[]")
_RESULT_PTR = ffi.typeof("odk_scan_result *")
_INFO_ARRAY = ffi.typeof("odk_batch_info[]")

_crc32c = lib.odk_crc32c
_crc32c_sw = lib.odk_crc32c_sw
_index_lookup = lib.odk_index_lookup
_timeindex_lookup = lib.odk_timeindex_lookup
_scan_batches = lib.odk_scan_batches

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
