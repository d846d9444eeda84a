"""The native module's Python face: odradek._native when it is built, else the reference.

    from odradek.client import native
    native.crc32c(b"123456789")            # 0xE3069283
    native.scan_batches(buf, cap=1024)     # ScanResult with BatchInfo list
    st = native.append_state(segment_base=0, index_interval=4096, max_batch_size=1 << 20)
    native.append(batches, log_map, index_map, timeindex_map, st)  # Status; st advanced
    target = native.append_target(log_map, index_map, timeindex_map)  # bound once per segment
    native.append_into(batches, target, st)  # the same, ~1.5 us less glue
    native.append_check(batches, target, st)  # a follower's: validate in place, no copy;
    native.append_commit(batches, target, st) # after writing them at st.position: index
    native.prefault(target, start, end)      # a background thread faults those pages in
    native.release_target(target)            # before closing the maps
    res = native.decode_records(batch)     # DecodeResult: every record's fields, 8 int64
                                           # each in res.rows (an array('q'))

Set ODRADEK_PURE=1 in the environment to force the pure-Python reference (tests run
every native test under both). `IMPLEMENTATION` says which one is in use.
"""
import os

from odradek.client import _native_ref as _ref
from odradek.client._native_ref import (APPEND_STATE_FIELDS, BatchInfo, ScanResult, Status,  # noqa: F401
                                        BATCH_HEADER_SIZE, LOG_OVERHEAD, DecodeResult,
                                        RECORD_FIELDS, RecordsFlag)

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "index_lookup", "timeindex_lookup",
           "scan_batches", "ScanResult", "BatchInfo", "Status", "IMPLEMENTATION",
           "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "append", "append_state", "AppendState",
           "APPEND_STATE_FIELDS", "append_target", "append_into", "release_target", "prefault",
           "append_fields_reader", "append_call", "append_check", "append_commit", "decode_records",
           "DecodeResult", "RECORD_FIELDS", "RecordsFlag"]


def _load():
    if os.environ.get("ODRADEK_PURE") == "1":
        return None
    try:
        from odradek import _native
    except ImportError:
        return None
    return _native


_lib = _load()

if _lib is None:
    IMPLEMENTATION = "python"
    crc32c = _ref.crc32c
    crc32c_sw = _ref.crc32c_sw
    crc32c_hw_available = _ref.crc32c_hw_available
    index_lookup = _ref.index_lookup
    timeindex_lookup = _ref.timeindex_lookup
    scan_batches = _ref.scan_batches
    append = _ref.append
    append_state = _ref.append_state
    AppendState = _ref.AppendState
    append_target = _ref.append_target
    append_into = _ref.append_into
    release_target = _ref.release_target
    prefault = _ref.prefault
    append_fields_reader = _ref.append_fields_reader
    append_call = _ref.append_call
    append_check = _ref.append_check
    append_commit = _ref.append_commit
    decode_records = _ref.decode_records
else:
    from odradek.client._native_cffi import (crc32c, crc32c_sw, crc32c_hw_available,  # noqa: F401
                                             index_lookup, timeindex_lookup, scan_batches,
                                             append, append_state, AppendState, append_target,
                                             append_into, release_target, prefault, decode_records,
                                             append_fields_reader, append_call, append_check,
                                             append_commit)
    IMPLEMENTATION = "c"
