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
from array import array

from odradek._native import ffi, lib
from odradek.client._native_ref import (BATCH_HEADER_SIZE, LOG_OVERHEAD, RECORD_FIELDS,  # noqa: F401
                                        BatchInfo, DecodeResult, RecordsFlag, ScanResult, Status)
from odradek.client.records.layout import RECORDS_COUNT_OFFSET

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "scan_batches", "ScanResult", "BatchInfo",
           "Status", "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "decode_records", "DecodeResult",
           "RECORD_FIELDS", "RecordsFlag", "walk_prefixes", "parse_produce_one"]

_from_buffer = ffi.from_buffer
_new_uncleared = ffi.new_allocator(should_clear_after_alloc=False)  # C fills what we read
_buffer = ffi.buffer
_NULL = ffi.NULL
_BYTES = ffi.typeof("uint8_t[]")
_RESULT_PTR = ffi.typeof("odk_scan_result *")
_INFO_ARRAY = ffi.typeof("odk_batch_info[]")

_crc32c = lib.odk_crc32c
_crc32c_sw = lib.odk_crc32c_sw
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
_release = ffi.release
_DECODE = struct.Struct("@i i q q q q q q")
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
    status, flags, records, position, expected, found, min_ts, max_ts = _unpack_decode(raw)
    _give_decode((raw, out))
    if records != count:
        if count:
            _release(held)            # an exported array cannot be resized
        del rows[records * 8:]
    return _make_decode(DecodeResult, (status, flags, records, position, expected, found,
                                       rows, min_ts, max_ts))


_walk_prefixes = lib.odk_walk_prefixes


def walk_prefixes(buf, buf_pos, pos, start, end, upper, max_bytes, at_least_one, max_batches):
    """odk_walk_prefixes (odradek.h); `buf` any buffer (bytes go to C as they are)."""
    p = buf if type(buf) is bytes else _from_buffer(_BYTES, buf)
    return _walk_prefixes(p, len(p), buf_pos, pos, start, end, upper, max_bytes, at_least_one, max_batches)


_parse_produce_one = lib.odk_parse_produce_one
_PRODUCE_ONE = struct.Struct("@6i4q")      # odk_produce_one's fields, in order (odradek.h)
_PRODUCE_ONE_PTR = ffi.typeof("odk_produce_one *")
assert _PRODUCE_ONE.size == ffi.sizeof("odk_produce_one")
_produce_ones: list = []                   # free list of (bytearray, cdata view): see the module docstring


def parse_produce_one(frame, min_version, max_version):
    """odk_parse_produce_one (odradek.h): the tuple of _native_ref.parse_produce_one, or None."""
    p = frame if type(frame) is bytes else _from_buffer(_BYTES, frame)
    try:
        raw, out = _produce_ones.pop()
    except IndexError:
        raw = bytearray(_PRODUCE_ONE.size)
        out = _from_buffer(_PRODUCE_ONE_PTR, raw, True)
    try:
        if _parse_produce_one(p, len(p), min_version, max_version, out):
            return None
        return _PRODUCE_ONE.unpack(raw)
    finally:
        _produce_ones.append((raw, out))
