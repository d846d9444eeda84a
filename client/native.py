"""The native module's Python face: odradek._native when it is built, else the reference.

    from odradek.client import native
    native.crc32c(b"123456789")            # 0xE3069283
    native.scan_batches(buf, cap=1024)     # ScanResult with BatchInfo list
    res = native.decode_records(batch)     # DecodeResult: every record's fields, 8 int64
                                           # each in res.rows (an array('q'))

Set ODRADEK_PURE=1 in the environment to force the pure-Python reference (tests run
every native test under both). `IMPLEMENTATION` says which one is in use. The functions
only the daemon's storage uses (index lookups, the fused append) have their own face
beside it: odradek.daemon.storage.native, whose reference builds on this one's batch
checks (`reference`: the pure-Python module, whatever IMPLEMENTATION is).
"""
import os

from odradek.client import _native_ref as reference
from odradek.client._native_ref import (BatchInfo, ScanResult, Status, BATCH_HEADER_SIZE,  # noqa: F401
                                        LOG_OVERHEAD, DecodeResult, RECORD_FIELDS, RecordsFlag)

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "scan_batches", "ScanResult", "BatchInfo",
           "Status", "IMPLEMENTATION", "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "decode_records",
           "DecodeResult", "RECORD_FIELDS", "RecordsFlag", "reference", "walk_prefixes", "parse_produce_one"]


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
    crc32c = reference.crc32c
    crc32c_sw = reference.crc32c_sw
    crc32c_hw_available = reference.crc32c_hw_available
    scan_batches = reference.scan_batches
    decode_records = reference.decode_records
    walk_prefixes = reference.walk_prefixes
    parse_produce_one = reference.parse_produce_one
else:
    from odradek.client._native_cffi import (crc32c, crc32c_sw, crc32c_hw_available,  # noqa: F401
                                             scan_batches, decode_records, walk_prefixes, parse_produce_one)
    IMPLEMENTATION = "c"
