"""native.decode_records (odk_decode_records, daemon/c_ext/odradek.h): every record of
one uncompressed v2 batch in one call, run against both implementations (the CFFI
wrapper and the pure-Python twin) like tests/client/test_native.py: the two must accept
exactly the same batches and agree on every field, status, position, expected and found;
the twin's refusal_words gives records() the words of every refusal (the one Python
parser of the record format).

Then the users: RecordBatch.records() and record_fields(), and Consumer._decode, whose
Records must be what the old records()-based decode made.
"""
import importlib
import mmap
import os
import random
import re
import struct
import warnings
from collections import deque
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.client import _native_ref as ref
from odradek.client import native
from odradek.client._partition_read import Fault
from odradek.client.consumer import Consumer
from odradek.client.errors import CorruptRecord
from odradek.client.message import (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Record as ClientRecord,
                                    TopicPartition)
from odradek.client.records import (BatchBuilder, BatchRecord, Compression, RecordBatch, iter_batches,
                                    write_base_offset, write_log_append_time)
from odradek.client.shm import PartitionState
from support.native import impl_fixture

HEADER_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "daemon", "c_ext", "odradek.h")

try:
    _c_impl = importlib.import_module("odradek.client._native_cffi")
    _c_skip = None
except ImportError as e:   # odradek._native not built
    _c_impl, _c_skip = None, f"odradek._native cannot be imported ({e}); build it first"

Status = ref.Status
Flag = ref.RecordsFlag
T0 = 1_700_000_000_000

impl = impl_fixture("odradek.client._native_cffi", ref)   # decode_records in C, then the twin


def both(data):
    """decode_records of C and twin, checked equal field by field (rows included)."""
    want = ref.decode_records(data)
    if _c_impl is not None:
        got = _c_impl.decode_records(data)
        assert tuple(got[:6]) == tuple(want[:6]), (got, want)
        assert got.rows == want.rows
        assert (got.min_timestamp, got.max_timestamp) == (want.min_timestamp, want.max_timestamp)
        assert got.rows.typecode == "q"
    return want


quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- an encoder of our own (independent of client/records) --------------------------

def zigzag(n, bits):
    z = ((n << 1) ^ (n >> (bits - 1))) & ((1 << bits) - 1)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def varint(n):
    return zigzag(n, 32)


def varlong(n):
    return zigzag(n, 64)


def encode(records, base_offset=0, base_ts=T0, max_ts=None, attributes=0, count=None,
           leader_epoch=-1):
    """A v2 batch of `records` [(offset_delta, ts_delta, key, value, headers)] and the
    rows decode_records must give for it (positions from the batch start), with a good
    CRC. count overrides recordsCount."""
    region = bytearray()
    rows = []
    for od, td, key, value, headers in records:
        body = bytearray(b"\x00") + varlong(td) + varint(od)
        row = [od, td]
        for field in (key, value):
            if field is None:
                body += varint(-1)
                row += [len(body), -1]
            else:
                body += varint(len(field))
                row += [len(body), len(field)]
                body += field
        body += varint(len(headers))
        row += [len(body), len(headers)]
        for h_key, h_value in headers:
            k = h_key.encode("utf-8")
            body += varint(len(k)) + k
            body += varint(-1) if h_value is None else varint(len(h_value)) + h_value
        prefix = varint(len(body))
        start = 61 + len(region) + len(prefix)
        for i in (2, 4, 6):
            row[i] += start
        rows.append(tuple(row))
        region += prefix + body
    n = len(records) if count is None else count
    last_delta = max([r[0] for r in records], default=0)
    if max_ts is None:
        max_ts = max([base_ts + r[1] for r in records], default=base_ts)
    body = struct.pack(">hiqqqhii", attributes, max(last_delta, n - 1, 0), base_ts, max_ts,
                       -1, -1, -1, n) + bytes(region)
    crc = ref.crc32c(body) if len(body) < 4096 else native.crc32c(body)
    head = struct.pack(">qiibI", base_offset, 4 + 1 + 4 + len(body), leader_epoch, 2, crc)
    return head + body, rows


def flags_of(records):
    flags = 0
    for i, (od, _, key, value, headers) in enumerate(records):
        flags |= (Flag.SPARSE if od != i else 0) | (Flag.NULL_KEY if key is None else 0) | \
            (Flag.NULL_VALUE if value is None else 0) | (Flag.HEADERS if headers else 0)
    return flags


def rows_of(res):
    return [tuple(res.rows[i:i + 8]) for i in range(0, len(res.rows), 8)]


def expected_records(records, base_offset=0, base_ts=T0, append_time=None):
    return [BatchRecord(base_offset + od, base_ts + td if append_time is None else append_time,
                   key, value, tuple(headers))
            for od, td, key, value, headers in records]


def with_region(region, count, attributes=0):
    """A batch whose records region is exactly `region` (bytes), recordsCount `count`."""
    data, _ = encode([], count=count, attributes=attributes)
    data = bytearray(data) + region
    struct.pack_into(">i", data, 8, len(data) - 12)
    struct.pack_into(">I", data, 17, native.crc32c(bytes(data[21:])))
    return bytes(data)


def region_of(data):
    return bytes(data[61:])


# ---- the API surface -------------------------------------------------------------------

def test_row_fields_and_flags_match_the_header():
    text = open(HEADER_PATH).read()
    defines = {name: int(v) for name, v in re.findall(r"#define\s+ODK_(\w+)\s+(\d+)", text)}
    assert defines["RECORD_FIELDS"] == len(ref.RECORD_FIELDS) == 8
    for i, name in enumerate(ref.RECORD_FIELDS):
        assert defines["REC_" + name.upper()] == i, name
    for name in ("NULL_KEY", "NULL_VALUE", "HEADERS", "SPARSE"):
        assert defines["RECORDS_" + name] == getattr(Flag, name)
    assert {"BAD_VARINT", "BAD_RECORD", "BAD_COUNT"} <= set(Status.NAMES.values())


def test_the_facade_exports_decode_records_from_the_chosen_implementation():
    assert native.decode_records is (ref.decode_records if native.IMPLEMENTATION == "python"
                                     else _c_impl.decode_records)
    for name in ("decode_records", "DecodeResult", "RECORD_FIELDS", "RecordsFlag"):
        assert name in native.__all__


def test_the_worked_example_of_format_md(impl):
    b = BatchBuilder(producer_id=7, producer_epoch=0, base_sequence=0)
    b.append(1700000000000, b"k1", b"hello", [("h", b"v")])
    data = b.build()
    res = impl.decode_records(data)
    assert res.ok and res.status_name == "OK"
    assert (res.status, res.flags, res.records, res.position, res.expected, res.found) == \
        (Status.OK, Flag.HEADERS, 1, 79, 0, 0)
    # FORMAT.md's table: key at 66, value at 69, the header after its count at 75
    assert rows_of(res) == [(0, 0, 66, 2, 69, 5, 75, 1)]
    assert isinstance(res, ref.DecodeResult) and "OK" in repr(res)


def test_an_empty_batch_decodes_to_no_rows(impl):
    data, _ = encode([])
    res = impl.decode_records(data)
    assert (res.status, res.records, res.position, len(res.rows)) == (Status.OK, 0, 61, 0)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview at an offset", "mmap",
                                  "longer buffer"])
def test_any_buffer_is_read_in_place_and_bytes_past_the_batch_are_ignored(impl, kind, tmp_path):
    records = [(i, i, b"k%d" % i, b"v" * i, []) for i in range(20)]
    data, rows = encode(records)
    if kind == "bytes":
        buf = data
    elif kind == "bytearray":
        buf = bytearray(data)
    elif kind == "memoryview at an offset":
        buf = memoryview(b"xyz" + data)[3:]
    elif kind == "longer buffer":
        buf = data + b"\xff" * 100
    else:
        path = tmp_path / "seg"
        path.write_bytes(data)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            res = impl.decode_records(m)
            del res   # nothing holds the map
        buf = data
    res = impl.decode_records(buf)
    assert res.ok and rows_of(res) == rows


# ---- agreement on well-formed batches ------------------------------------------------------

def field_bytes(max_size):
    return st.one_of(st.none(), st.just(b""), st.binary(max_size=max_size))


headers_st = st.lists(st.tuples(st.text(max_size=8), field_bytes(20)), max_size=3)
record_st = st.tuples(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-70, 70)),   # ts delta
    st.one_of(st.just(None), st.integers(-(2**31), 2**31 - 1)),         # offset delta (None: dense)
    field_bytes(300), field_bytes(300), st.one_of(st.just([]), headers_st))


@quick
@given(st.lists(record_st, max_size=40), st.booleans(), st.integers(-(2**63), 2**63 - 1))
def test_generated_batches_give_the_encoded_rows_and_records(
        impl, spec, log_append_time, base_offset):
    records = [(i if od is None else od, td, k, v, h) for i, (td, od, k, v, h) in enumerate(spec)]
    base_ts = 0 if any(abs(r[1]) > 2**40 for r in records) else T0
    data, rows = encode(records, base_offset=base_offset, base_ts=base_ts,
                        attributes=8 if log_append_time else 0, max_ts=123)
    res = impl.decode_records(data)
    assert (res.status, res.records, res.position, res.expected, res.found) == \
        (Status.OK, len(records), len(data), 0, 0)
    assert res.flags == flags_of(records)
    assert rows_of(res) == rows
    both(data)
    want = expected_records(records, base_offset, base_ts, 123 if log_append_time else None)
    assert ref.refusal_words(data) is None
    assert list(RecordBatch(data).records()) == want


def test_many_records_and_large_keys_and_values(impl):
    rng = random.Random(3)
    records = [(i, rng.randrange(-10**6, 10**6), rng.randbytes(rng.randrange(0, 40)),
                rng.randbytes(rng.randrange(0, 200)), []) for i in range(5000)]
    records.append((5000, 0, b"K" * 70_000, b"V" * (1 << 20), [("h", b"x" * 20_000)]))
    data, rows = encode(records)
    res = impl.decode_records(data)
    assert res.ok and res.records == 5001 and rows_of(res) == rows
    assert list(RecordBatch(data).records()) == expected_records(records)


KP_CASES = {
    "plain": [(T0, b"key", b"value", [])],
    "null key and value": [(T0, None, None, []), (T0 + 1, None, b"v", []), (T0 + 2, b"k", None, [])],
    "empty key and value": [(T0, b"", b"", [])],
    "headers with null values": [
        (T0, b"k", b"v", [("trace-id", b"abc"), ("empty", b""), ("null", None)]),
        (T0, None, b"v", [("\u00fcnicode-\u2603", b"\x00\xff")])],
    "large and negative timestamps": [(2**62, b"a", b"1", []), (-(2**62), b"b", b"2", []),
                                      (-1, b"c", b"3", []), (0, b"d", b"4", [])],
    "large key and value": [(T0, b"K" * 10_000, b"V" * 100_000, [])],
    "300 records": [(T0 + i, b"key-%d" % (i % 17), b"value-%d" % i * (i % 5), [])
                    for i in range(300)],
}


@pytest.mark.parametrize("case", sorted(KP_CASES))
def test_batches_built_by_kafka_python(impl, case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    b = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, batch_size=2**30)
    for offset, (ts, key, value, headers) in enumerate(KP_CASES[case]):
        assert b.append(offset, ts, key, value, headers) is not None
    data = bytearray(b.build())
    write_base_offset(data, 0, 1000)
    data = bytes(data)
    res = impl.decode_records(data)
    assert res.ok and res.records == len(KP_CASES[case])
    theirs = [BatchRecord(r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
              for r in DefaultRecordBatch(data)]
    assert list(RecordBatch(data).records()) == theirs
    both(data)


# ---- every check, with its status and details ----------------------------------------------

def rec(*fields):
    body = b"".join(fields)
    return varint(len(body)) + body


def z(n):
    return varint(n)


GOOD = rec(b"\x00", z(0), z(0), z(1), b"k", z(1), b"v", z(0))            # 9 bytes
BIG = rec(b"\x00", z(0), z(0), z(1), b"k", z(20), b"v" * 20, z(0))       # 28 bytes: 4 x 7
# (region, count) -> (status, records, position - 61, expected, found): positions are
# from the records region here (61 + e, the record end, in the expected/found values)
CHECKS = {
    "fewer records than recordsCount": ((BIG, 4), (Status.BAD_COUNT, 1, 28, 4, 1)),
    "bytes after the last record": ((GOOD + b"\x00", 1), (Status.BAD_COUNT, 1, 9, 71, 70)),
    "a negative recordsCount": ((GOOD, -1), (Status.BAD_COUNT, 0, -61, 1, -1)),
    "a recordsCount that cannot fit": ((GOOD, 2), (Status.BAD_COUNT, 0, -61, 1, 2)),
    "a huge recordsCount": ((GOOD, 2**31 - 1), (Status.BAD_COUNT, 0, -61, 1, 2**31 - 1)),
    "a length varint cut by the end": ((BIG + b"\x80\x80", 2), (Status.TRUNCATED, 1, 28, 3, 2)),
    "a length varint too long": ((GOOD + b"\xff" * 5 + b"\x00" * 3, 2),
                                 (Status.BAD_VARINT, 1, 9, 5, 6)),
    "a length varint too wide": ((b"\xff\xff\xff\xff\x1f" + b"\x00" * 9, 1),
                                 (Status.BAD_VARINT, 0, 0, 15, 0x1F)),
    "a record length below 6": ((z(5) + b"\x00" * 8, 1), (Status.BAD_RECORD, 0, 0, 8, 5)),
    "a negative record length": ((z(-1) + b"\x00" * 8, 1), (Status.BAD_RECORD, 0, 0, 8, -1)),
    "a record length past the end": ((z(100) + b"\x00" * 8, 1), (Status.BAD_RECORD, 0, 0, 8, 100)),
    "a timestamp varlong too long": ((rec(b"\x00", b"\x80" * 10 + b"\x00", z(0), z(0), z(0), z(0)), 1),
                                     (Status.BAD_VARINT, 0, 2, 10, 11)),
    "a timestamp varlong too wide": ((rec(b"\x00", b"\xff" * 9 + b"\x02", z(0), z(0), z(0), z(0)), 1),
                                     (Status.BAD_VARINT, 0, 2, 1, 2)),
    "an offset delta varint too long": ((rec(b"\x00", z(0), b"\xff" * 5 + b"\x00", z(0), z(0), z(0)), 1),
                                        (Status.BAD_VARINT, 0, 3, 5, 6)),
    "a key length below -1": ((rec(b"\x00", z(0), z(0), z(-2), z(0), z(0)), 1),
                              (Status.BAD_RECORD, 0, 4, -1, -2)),
    "a value length below -1": ((rec(b"\x00", z(0), z(0), z(0), z(-5), z(0)), 1),
                                (Status.BAD_RECORD, 0, 5, -1, -5)),
    "a key past the record": ((rec(b"\x00", z(0), z(0), z(50), b"k", z(0), z(0)), 1),
                              (Status.BAD_RECORD, 0, 4, 69, 116)),
    "a varint cut by the record end": ((z(6) + b"\x00" + z(0) + z(0) + z(0) + z(0) + b"\x80" + z(0), 1),
                                       (Status.BAD_RECORD, 0, 6, 68, 69)),
    "a negative headers count": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(-1)), 1),
                                 (Status.BAD_RECORD, 0, 6, 0, -1)),
    "a headers count that cannot fit": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(3), z(0), z(0)), 1),
                                        (Status.BAD_RECORD, 0, 6, 1, 3)),
    "a null header key": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(1), z(-1), z(0)), 1),
                          (Status.BAD_RECORD, 0, 7, 0, -1)),
    "a header key past the record": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(1), z(9), b"k"), 1),
                                     (Status.BAD_RECORD, 0, 7, 70, 78)),
    "a header value length below -1": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(1), z(0), z(-3)), 1),
                                       (Status.BAD_RECORD, 0, 8, -1, -3)),
    "a header value past the record": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(1), z(0), z(9), b"x"), 1),
                                       (Status.BAD_RECORD, 0, 8, 71, 79)),
    "fields ending before the record": ((rec(b"\x00", z(0), z(0), z(0), z(0), z(0), b"extra"), 1),
                                        (Status.BAD_RECORD, 0, 7, 73, 68)),
}

# the words records() raises for each (the twin's refusal_words)
CHECK_WORDS = {
    "fewer records than recordsCount": "record 1 runs past the end of the 28-byte records region",
    "bytes after the last record": "1 bytes follow the last of the 1 records",
    "a negative recordsCount": "recordsCount expected >= 0, found -1",
    "a recordsCount that cannot fit": "recordsCount 2 runs past the end of the 9-byte records region",
    "a huge recordsCount": "recordsCount 2147483647 runs past the end",
    "a length varint cut by the end": "record 1 runs past the end of the 30-byte records region",
    "a length varint too long": "record 1 length at byte 9 of the records is longer than 5 bytes",
    "a length varint too wide": "record 0 length at byte 0 of the records holds a value wider than 32 bits",
    "a record length below 6": "record 0 at byte 0 of the records declares 5 bytes; expected 6..8",
    "a negative record length": "record 0 at byte 0 of the records declares -1 bytes",
    "a record length past the end": "record 0 at byte 0 of the records declares 100 bytes; expected 6..8",
    "a timestamp varlong too long": "record 0 timestampDelta at byte 2 of the records is longer than 10 bytes",
    "a timestamp varlong too wide": "record 0 timestampDelta at byte 2 .* wider than 64 bits",
    "an offset delta varint too long": "record 0 offsetDelta at byte 3 of the records is longer than 5 bytes",
    "a key length below -1": "record 0 key length expected >= -1, found -2",
    "a value length below -1": "record 0 value length expected >= -1, found -5",
    "a key past the record": "record 0 key length 50 runs past the end of the record",
    "a varint cut by the record end": "record 0 headers count at byte 6 of the records runs past the end of the record",
    "a negative headers count": "record 0 headers count expected 0..0, found -1",
    "a headers count that cannot fit": "record 0 headers count expected 0..1, found 3",
    "a null header key": "record 0 header key length expected 0..[0-9]+, found -1",
    "a header key past the record": "record 0 header key length expected 0..[0-9]+, found 9",
    "a header value length below -1": "record 0 header value length expected >= -1, found -3",
    "a header value past the record": "record 0 header value length 9 runs past the end of the record",
    "fields ending before the record": "record 0 at byte 0 of the records declares 11 bytes after its length; "
                                       "its fields take 6",
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_each_check_reports_its_status_and_details(impl, name):
    (region, count), (status, records, position, expected, found) = CHECKS[name]
    data = with_region(region, count)
    res = impl.decode_records(data)
    assert (res.status, res.records, res.position, res.expected, res.found) == \
        (status, records, position + 61, expected, found), res
    assert len(res.rows) == 8 * records
    with pytest.raises(CorruptRecord) as err:
        RecordBatch(data).records()
    assert str(err.value).endswith(f": batch at base offset 0: {ref.refusal_words(data)}")
    assert re.search(CHECK_WORDS[name], str(err.value)), err.value


def test_a_records_count_more_records_than_can_fit_is_bad_count_up_front(impl):
    data = with_region(GOOD * 3, 5)              # 27 bytes: at most 3 records of 7
    res = impl.decode_records(data)
    assert (res.status, res.records, res.position, res.expected, res.found) == \
        (Status.BAD_COUNT, 0, 0, 3, 5)


@pytest.mark.parametrize("name,data,want", [
    ("shorter than the header", b"\x00" * 60, (Status.TRUNCATED, 61, 60)),
    ("batchLength below 49", struct.pack(">qi", 0, 48) + bytes(49), (Status.BAD_LENGTH, 49, 48)),
    ("torn", encode([(0, 0, b"k", b"v", [])])[0][:-1], (Status.TRUNCATED, 70, 69)),
    ("magic 1", None, (Status.BAD_MAGIC, 2, 1)),
    ("gzip", None, (Status.BAD_CODEC, 0, 1)),
    ("codec 7", None, (Status.BAD_CODEC, 0, 7)),
])
def test_batch_level_checks(impl, name, data, want):
    if data is None:
        data = bytearray(encode([(0, 0, b"k", b"v", [])])[0])
        if name == "magic 1":
            data[16] = 1
        else:
            data[22] = 1 if name == "gzip" else 7
        data = bytes(data)
    res = impl.decode_records(data)
    assert (res.status, res.records, res.position, res.expected, res.found) == (want[0], 0, 0) + want[1:]
    assert len(res.rows) == 0 and res.flags == 0


def test_rows_of_the_records_before_a_failure_are_returned(impl):
    records = [(i, 0, None, b"v%d" % i, []) for i in range(3)]
    data, rows = encode(records)
    data = bytearray(data) + rec(b"\x00", z(0), z(3), z(-2), z(0), z(0))
    struct.pack_into(">i", data, 8, len(data) - 12)
    struct.pack_into(">i", data, 57, 4)
    res = impl.decode_records(bytes(data))
    assert res.status == Status.BAD_RECORD and res.records == 3
    assert rows_of(res) == rows and res.flags == Flag.NULL_KEY


def test_c_refuses_rows_smaller_than_records_count():
    if _c_impl is None:
        pytest.skip(_c_skip)
    ffi, lib = _c_impl.ffi, _c_impl.lib
    data, _ = encode([(i, 0, b"k", b"v", []) for i in range(5)])
    out = ffi.new("odk_decode_result *")
    rows = ffi.new("int64_t[]", 8 * 4)
    assert lib.odk_decode_records(data, len(data), rows, 4, out) == Status.MORE
    assert (out.records, out.expected, out.found) == (0, 5, 4)
    assert list(rows) == [0] * 32                       # nothing written
    rows = ffi.new("int64_t[]", 8 * 5)
    assert lib.odk_decode_records(data, len(data), rows, 5, out) == Status.OK


def test_c_without_rows_checks_only_and_agrees_with_the_decode():
    """rows NULL (odk_append's record check): every check, no rows, the same verdict."""
    if _c_impl is None:
        pytest.skip(_c_skip)
    ffi, lib = _c_impl.ffi, _c_impl.lib
    data, _ = encode([(i, 0, b"k", b"v", []) for i in range(5)])
    out = ffi.new("odk_decode_result *")
    assert lib.odk_decode_records(data, len(data), ffi.NULL, 0, out) == Status.OK
    assert (out.records, out.position) == (5, len(data))
    for cut in (len(data) - 1, len(data) - 3):
        bad = bytearray(data[:cut])
        bad[8:12] = (cut - 12).to_bytes(4, "big")             # batchLength: the records are cut short
        want = _c_impl.decode_records(bytes(bad))
        assert want.status != Status.OK
        assert lib.odk_decode_records(bytes(bad), len(bad), ffi.NULL, 0, out) == want.status
        assert (out.records, out.position, out.expected, out.found) == \
            (want.records, want.position, want.expected, want.found)


# ---- damaged batches: never a crash, C == twin, records() raises the twin's words -------------

def check_damaged(data):
    res = both(data)
    words = ref.refusal_words(data)
    assert (words is None) == res.ok, (res, words)
    if res.ok:
        try:
            assert len(list(RecordBatch(data).records())) == res.records
        except CorruptRecord as e:
            # the one check left to Python: header keys are decoded (as UTF-8) by the caller
            assert "header key is not UTF-8" in str(e), (res, e)
    else:
        with pytest.raises(CorruptRecord) as err:
            RecordBatch(data).records()
        # a batch-level refusal (header) is found by records() first, in its own words
        if res.status not in (Status.TRUNCATED, Status.BAD_LENGTH, Status.BAD_MAGIC,
                              Status.BAD_CODEC) or res.position:
            assert str(err.value).endswith(words), (err.value, words)
    return res


SAMPLES = {
    "plain": [(i, i * 3, b"key%d" % i, b"value-%d" % i, []) for i in range(4)],
    "nulls and headers": [(0, -5, None, b"v", [("a", b"1"), ("b", None)]), (1, 2**40, b"", None, []),
                          (2, 7, b"k" * 200, b"v" * 300, [("\u2603", b"")])],
    "sparse": [(0, 0, b"a", b"1", []), (5, 1, b"b", b"2", []), (9, -1, None, None, [])],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_of_the_records_region(name):
    data, _ = encode(SAMPLES[name])
    region = region_of(data)
    count = len(SAMPLES[name])
    statuses = set()
    for cut in range(len(region)):
        statuses.add(check_damaged(with_region(region[:cut], count)).status)
    assert Status.OK not in statuses


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_of_the_buffer(name):
    data, _ = encode(SAMPLES[name])
    for cut in range(len(data)):
        res = both(data[:cut])
        assert (res.status, res.records, res.position) == (Status.TRUNCATED, 0, 0)
        assert (res.expected, res.found) == ((61, cut) if cut < 61 else (len(data), cut))
        if cut >= 61:
            with pytest.raises(CorruptRecord, match="does not fit"):
                RecordBatch(data[:cut]).records()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_random_byte_flips(name):
    data, _ = encode(SAMPLES[name])
    rng = random.Random(name)
    seen = set()
    for _ in range(1500):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(57, len(damaged)) if rng.random() < 0.9 else rng.randrange(8, 61)
            damaged[at] = rng.randrange(256)
        seen.add(check_damaged(bytes(damaged)).status)
    assert len(seen) >= 4, seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80), st.integers(-2, 12))
def test_arbitrary_records_bytes(region, count):
    check_damaged(with_region(region, count))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_arbitrary_records_made_of_plausible_varints(data):
    pieces = data.draw(st.lists(st.one_of(
        st.integers(-3, 20).map(varint), st.integers(-(2**35), 2**35).map(lambda n: zigzag(n, 40)),
        st.binary(max_size=4), st.sampled_from([b"\x80" * 5, b"\xff" * 10 + b"\x01", b"\x00"])),
        max_size=20))
    region = b"".join(pieces)
    count = data.draw(st.integers(0, 4))
    if data.draw(st.booleans()) and region:
        region = varint(len(region)) + region     # a plausible record length in front
        count = max(count, 1)
    check_damaged(with_region(region, count))


# ---- RecordBatch.records() and record_fields() ---------------------------------------------

def test_record_fields_gives_what_records_gives():
    records = [(0, 5, b"k", b"v", []), (1, -5, None, b"", [("h", b"x"), ("n", None)]),
               (2, 0, b"", None, [])]
    data, _ = encode(records, base_offset=100)
    batch = RecordBatch(data)
    buf, rows = batch.record_fields()
    assert type(buf) is bytes
    got = []
    for od, td, kp, kl, vp, vl, hp, hc in rows:
        got.append(BatchRecord(100 + od, T0 + td, buf[kp:kp + kl] if kl >= 0 else None,
                          buf[vp:vp + vl] if vl >= 0 else None,
                          tuple(batch.read_headers(buf, hp, hc)) if hc else ()))
    assert got == list(batch.records()) == expected_records(records, 100)


def test_record_fields_refuses_a_compressed_batch_and_raises_what_records_raises_otherwise():
    for codec in (Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD):
        b = BatchBuilder(compression=codec)
        b.append(T0, b"k", b"v")
        with pytest.raises(ValueError, match=f"{codec.label}-compressed"):
            RecordBatch(b.build()).record_fields()
    data = bytearray(encode([(0, 0, b"k", b"v", [])])[0])
    data[22] = 6
    with pytest.raises(CorruptRecord, match="compression id expected 0-4, found 6"):
        RecordBatch(bytes(data)).record_fields()
    with pytest.raises(CorruptRecord, match="does not fit"):
        RecordBatch(encode([(0, 0, b"k", b"v", [])])[0][:-1]).record_fields()
    region, count = CHECKS["a key length below -1"][0]
    with pytest.raises(CorruptRecord, match="key length expected >= -1, found -2"):
        RecordBatch(with_region(region, count)).record_fields()


def test_a_header_key_that_is_not_utf8_is_refused_with_records_words():
    region = rec(b"\x00", z(0), z(0), z(0), z(0), z(1), z(2), b"\xff\xfe", z(0))
    data = with_region(region, 1)
    assert ref.decode_records(data).ok          # lengths are fine: C leaves UTF-8 to Python
    with pytest.raises(CorruptRecord, match="record 0 header key is not UTF-8") as err:
        RecordBatch(data).records()
    batch = RecordBatch(data)
    buf, rows = batch.record_fields()
    (_, _, _, _, _, _, hp, hc), = rows
    with pytest.raises(CorruptRecord) as err2:
        batch.read_headers(buf, hp, hc)
    assert str(err2.value) == str(err.value)


# ---- Consumer._decode ------------------------------------------------------------------------

def test_the_record_type_reads_through_confluent_kafkas_methods_and_no_attributes():
    # Record is a C type (daemon/c_ext/hp_consumer.c): decode_fetch fills its fields, read
    # through methods only (a Message's API), so no field is a writable attribute
    attributes = [name for name, v in vars(ClientRecord).items()
                  if type(v).__name__ in ("member_descriptor", "getset_descriptor") and not name.startswith("__")]
    assert attributes == []
    r = ClientRecord("t", 0, 1, b"k", b"v", [], 2)
    assert r.__reduce__()[1] == ("t", 0, 1, b"k", b"v", [], 2, TIMESTAMP_CREATE_TIME)   # the constructor's order
    with pytest.raises(AttributeError):
        r.value = b"x"


def decode_new(data, pos, check_crcs=True, fetched=0, zero_copy=False):
    """Consumer._decode over `data` as a fetch at `pos`: (the Records it buffered, where
    the next fetch starts, the error of the _Fault it buffered after them or None)."""
    consumer = Consumer.__new__(Consumer)
    consumer._buffer, consumer._buffered, consumer._faults = deque(), 0, 0
    consumer._check_crcs, consumer._zero_copy = check_crcs, zero_copy
    state, fds = PartitionState.create(16, high_watermark=1 << 40, log_end_offset=1 << 40)
    os.close(fds.state)
    view = memoryview(data)
    part = SimpleNamespace(tp=TopicPartition("t", 3), fetched=fetched, position=fetched, state=state, run=None,
                           resume=None, stopped=False, extent=(SimpleNamespace(view=view), 0, len(view), None),
                           aborted=None, last_item=None)
    try:
        Consumer._decode(consumer, part, view, pos, 1 << 40)
    finally:
        state.close()
    got = [r for item in consumer._buffer if type(item) is not Fault for r in item.records]
    assert len(got) == consumer._buffered
    error = consumer._buffer[-1].error if consumer._faults else None
    assert all(type(r) is ClientRecord for r in got)
    return got, part.fetched, error


def decode_reference(data, pos):
    """What the consumer made before: Records from records(), for whole good batches."""
    out = []
    view = memoryview(data)
    position = 0
    while position < len(view):
        batch = RecordBatch(view[position:])
        position += batch.size
        if batch.is_control:
            continue
        ts_type = TIMESTAMP_LOG_APPEND_TIME if batch.timestamp_type == 1 else TIMESTAMP_CREATE_TIME
        out += [ClientRecord("t", 3, r.offset, r.key, r.value, list(r.headers) or None, r.timestamp, ts_type)
                for r in batch.records() if r.offset >= pos]
    return out


def build(records, offset, compression=Compression.NONE, append_time=None):
    b = BatchBuilder(compression=compression)
    for ts, key, value, headers in records:
        b.append(ts, key, value, headers)
    data = bytearray(b.build())
    write_base_offset(data, 0, offset)
    if append_time is not None:
        write_log_append_time(data, 0, append_time)
    return data


def control_batch(offset):
    """A transaction commit marker (as a coordinator writes one)."""
    b = BatchBuilder(producer_id=9, producer_epoch=0, transactional=True, control=True)
    b.append(T0, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")
    data = bytearray(b.build())
    write_base_offset(data, 0, offset)
    return data


def test_the_consumer_decode_makes_the_records_the_records_path_made():
    recs = [(T0 + i, b"k%d" % i if i % 3 else None, b"v" * (i * 7) if i % 4 else None,
             [("h%d" % i, b"x"), ("null", None)] if i % 5 == 0 else []) for i in range(12)]
    log = build(recs[:6], 100) + build(recs[6:], 106, append_time=T0 + 999) + control_batch(112) + \
        build(recs[:3], 113, compression=Compression.GZIP) + build(recs[3:5], 116)
    for pos in (0, 100, 103, 106, 110, 113, 114, 117, 118):
        # a fetch's bytes start at the batch holding pos (or the first after it)
        start = next((p for p, b in iter_batches(log) if b.last_offset >= pos), len(log))
        got, fetched, error = decode_new(log[start:], pos, fetched=pos)
        want = decode_reference(log, pos)
        assert got == want, pos
        assert fetched == 118 and error is None
        assert all(type(r) is ClientRecord for r in got)
        assert all(r.headers() is None or type(r.headers()) is list for r in got)
        assert all(r.key() is None or type(r.key()) is bytes for r in got)
    got, _, _ = decode_new(log, 0)
    assert [r.offset() for r in got] == list(range(100, 112)) + list(range(113, 118))
    assert [r.timestamp()[0] for r in got[6:12]] == [TIMESTAMP_LOG_APPEND_TIME] * 6
    assert {r.timestamp()[1] for r in got[6:12]} == {T0 + 999}
    assert got[0].headers() == [("h0", b"x"), ("null", None)] and got[1].headers() is None


def test_the_consumer_buffers_the_batches_before_a_bad_crc_or_corrupt_records_then_a_fault():
    good = build([(T0, b"k", b"v", [])], 0)
    bad_crc = build([(T0, b"k", b"v", [])], 1)
    bad_crc[bad_crc.rindex(b"v")] ^= 0xFF                      # the value's byte
    after = build([(T0, b"k", b"w", [])], 2)
    got, fetched, error = decode_new(good + bad_crc + after, 0)
    assert [r.offset() for r in got] == [0] and fetched == 1
    assert isinstance(error, CorruptRecord) and (error.offset, error.next_offset) == (1, 2)
    assert "t-3: the batch at offsets 1..1 fails its CRC-32C" in str(error)
    got, _, error = decode_new(good + bad_crc + after, 0, check_crcs=False)   # no CRC check: decodes
    assert [r.value() for r in got] == [b"v", b"\x89", b"w"] and error is None   # 'v' ^ 0xFF
    region, count = CHECKS["a key length below -1"][0]
    corrupt = bytearray(with_region(region, count))
    write_base_offset(corrupt, 0, 1)
    got, fetched, error = decode_new(good + corrupt, 0)
    assert [r.offset() for r in got] == [0] and fetched == 1      # the good batch only
    assert isinstance(error, CorruptRecord) and "key length expected >= -1, found -2" in str(error)


@pytest.mark.parametrize("codec, error_class, words", [
    (Compression.ZSTD, CorruptRecord, "has records that cannot be decoded (batch at base offset 1: zstd records "
                                      "do not decompress"),
    (Compression.SNAPPY, CorruptRecord, "has records that cannot be decoded (batch at base offset 1: snappy "),
    (7, CorruptRecord, "names compression id 7, which is no codec")])
def test_the_consumer_names_a_codec_it_cannot_read_after_the_batches_before_it(codec, error_class, words):
    good = build([(T0, b"k", b"v", [])], 0)
    odd = build([(T0, b"k", b"v", [])] * 3, 1)
    odd[22] |= codec                                             # attributes' low byte
    odd[17:21] = native.crc32c(bytes(odd[21:])).to_bytes(4, "big")
    for check_crcs in (True, False):
        got, fetched, error = decode_new(good + odd + build([(T0, b"k", b"w", [])], 4), 0, check_crcs)
        assert [r.offset() for r in got] == [0] and fetched == 1 and type(error) is error_class
        assert (error.offset, error.next_offset) == (1, 4) and words in str(error)
        assert "offsets 1..3" in str(error) and "by the batch's header" in str(error)


def test_the_consumer_names_a_header_key_that_is_not_utf8_and_buffers_nothing_of_it():
    region = rec(b"\x00", z(0), z(0), z(0), z(0), z(1), z(2), b"\xff\xfe", z(0))
    data = with_region(rec(b"\x00", z(0), z(0), z(0), z(0), z(0)) + region, 2)
    got, _, error = decode_new(data, 0)
    assert not got and isinstance(error, CorruptRecord)
    assert "record 1 header key is not UTF-8" in str(error)


def test_the_consumer_skips_records_before_pos_in_a_sparse_batch():
    records = [(0, 0, b"a", b"1", []), (4, 1, b"b", b"2", []), (9, 2, None, None, [])]
    data, _ = encode(records, base_offset=50)
    got, fetched, _ = decode_new(data, 54)
    assert [(r.offset(), r.key(), r.value(), r.timestamp()[1]) for r in got] == \
        [(54, b"b", b"2", T0 + 1), (59, None, None, T0 + 2)]
    assert fetched == 60


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_compressed_batches_decode_through_records(codec):
    data = build([(T0, b"k", b"v" * 1000, [("h", b"x")])] * 5, 7, compression=codec)
    got, _, _ = decode_new(data, 0)
    assert [r.offset() for r in got] == [7, 8, 9, 10, 11]
    assert got[0].headers() == [("h", b"x")] and got[0].value() == b"v" * 1000
