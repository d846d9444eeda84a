"""One suite for both implementations of the native API (daemon/c_ext/odradek.h): the
CFFI wrappers over odradek._native and the pure-Python reference. Every test takes the
`impl` fixture and runs once per implementation; the C run is skipped only when
odradek._native is not built.
"""
import importlib
import mmap
import os
import random
import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.client import _native_ref as ref
from support.native import impl_fixture

HEADER_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "daemon", "c_ext", "odradek.h")

impl = impl_fixture("odradek.client._native_cffi", ref)


def is_c(impl):
    return impl is not ref


# Property tests rerun the pure-Python CRC, so keep their example counts small.
quick = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


# ---- v2 batch builder (local on purpose: independent of client/records) -------------

def make_batch(base_offset=0, records=1, last_offset_delta=None, base_timestamp=1_000,
               max_timestamp=None, producer_id=-1, producer_epoch=-1, base_sequence=-1,
               leader_epoch=0, attributes=0, payload=None, magic=2, crc=None, length=None):
    """One v2 RecordBatch: the 61-byte header + opaque record bytes (the scan does not
    parse records). The CRC is computed by the reference unless given."""
    if last_offset_delta is None:
        last_offset_delta = records - 1
    if max_timestamp is None:
        max_timestamp = base_timestamp + last_offset_delta
    if payload is None:
        payload = bytes((base_offset + i) & 0xFF for i in range(7 * max(records, 0)))
    body = struct.pack(">hiqqqhii", attributes, last_offset_delta, base_timestamp,
                       max_timestamp, producer_id, producer_epoch, base_sequence,
                       records) + payload
    if crc is None:
        crc = ref.crc32c(body)
    if length is None:
        length = 4 + 1 + 4 + len(body)  # partitionLeaderEpoch, magic, crc, attributes..end
    return struct.pack(">qiibI", base_offset, length, leader_epoch, magic, crc) + body


def make_log(*counts, start=0):
    """Consecutive batches holding counts[i] records each, offsets dense from start."""
    out, offset = [], start
    for n in counts:
        out.append(make_batch(base_offset=offset, records=n, base_timestamp=offset * 10))
        offset += n
    return b"".join(out)


def refresh_crc(batch):
    """The batch with its CRC recomputed over bytes 21..end (after an edit)."""
    b = bytearray(batch)
    struct.pack_into(">I", b, 17, ref.crc32c(bytes(b[21:])))
    return bytes(b)


def assert_same_result(got, want):
    """Every field of two ScanResults, BatchInfo lists included."""
    names = ("status", "batches", "valid_bytes", "first_offset", "last_offset",
             "max_timestamp", "records", "expected", "found")
    assert {n: getattr(got, n) for n in names} == {n: getattr(want, n) for n in names}
    assert [tuple(i) for i in got.infos] == [tuple(i) for i in want.infos]


# ---- the API surface --------------------------------------------------------------------

def test_status_codes_and_sizes_match_the_header(impl):
    text = open(HEADER_PATH).read()
    codes = dict(re.findall(r"ODK_(\w+)\s*=\s*(\d+)", text))
    assert {name: getattr(impl.Status, name) for name in codes} == \
        {name: int(v) for name, v in codes.items()}
    assert impl.BATCH_HEADER_SIZE == int(re.search(r"ODK_BATCH_HEADER_SIZE\s+(\d+)", text)[1])
    assert impl.LOG_OVERHEAD == int(re.search(r"ODK_BATCH_OVERHEAD\s+(\d+)", text)[1])


def test_both_implementations_export_the_facade_api(impl):
    from odradek.client import native
    for name in native.__all__:
        if name not in ("IMPLEMENTATION", "reference"):   # the facade's own names
            assert hasattr(impl, name), name


def test_facade_picks_this_implementation_by_odradek_pure(impl, monkeypatch):
    from odradek.client import native
    if is_c(impl):
        monkeypatch.delenv("ODRADEK_PURE", raising=False)
    else:
        monkeypatch.setenv("ODRADEK_PURE", "1")
    try:
        importlib.reload(native)
        assert native.IMPLEMENTATION == ("c" if is_c(impl) else "python")
        assert native.crc32c is impl.crc32c
        assert native.scan_batches is impl.scan_batches
    finally:
        monkeypatch.undo()
        importlib.reload(native)


# ---- CRC-32C ----------------------------------------------------------------------------

ISCSI_READ_PDU = bytes.fromhex(
    "01c00000000000000000000000000000"
    "14000000000004000000001400000018"
    "28000000000000000200000000000000")


@pytest.mark.parametrize("data, expected", [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),               # the CRC catalogue check value
    (bytes(32), 0x8A9136AA),                  # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),               # 32 bytes of 0xFF
    (bytes(range(32)), 0x46DD794E),           # 32 ascending bytes
    (bytes(range(31, -1, -1)), 0x113FDB5C),   # 32 descending bytes
    (ISCSI_READ_PDU, 0xD9963A56),             # an iSCSI read command PDU
], ids=["empty", "123456789", "zeros", "ones", "ascending", "descending", "iscsi-read"])
def test_crc32c_matches_published_check_values(impl, data, expected):
    assert impl.crc32c(data) == expected
    assert impl.crc32c_sw(data) == expected


@quick
@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000))
def test_crc32c_continues_from_a_previous_crc_over_a_concatenation(impl, a, b):
    assert impl.crc32c(b, impl.crc32c(a)) == impl.crc32c(a + b)
    assert impl.crc32c_sw(b, impl.crc32c_sw(a)) == impl.crc32c_sw(a + b)


@quick
@given(data=st.binary(max_size=4000), shift=st.integers(0, 15))
def test_hardware_and_table_paths_agree_at_any_length_and_alignment(impl, data, shift):
    buf = bytearray(shift) + bytearray(data)
    view = memoryview(buf)[shift:]          # starts `shift` bytes past the allocation
    assert impl.crc32c(view) == impl.crc32c_sw(view) == impl.crc32c_sw(data)


# odk_crc32c runs one crc32 chain below 72 bytes; from there three equal chains of up to
# 8192 bytes (a round of 3 * 8192 = 24576 bytes, then the rest split evenly); with
# AVX-512 VPCLMULQDQ, from 256 bytes, folding (256 bytes a loop, then 64, then a chain
# for the last < 64). Each path (odk_crc32c_via) against the table: every length from 0
# to one interleaved round + 17, further rounds, odd heads (misalignment) and tails, and
# a non-zero starting crc.
INTERLEAVE_MIN, STREAM_MAX, FOLD_MIN = 72, 8192, 256
ROUND = 3 * STREAM_MAX
EVERY_LENGTH = range(ROUND + 18)
LONG_LENGTHS = sorted({n + d for n in (ROUND, 2 * ROUND, 3 * ROUND)
                       for d in (-25, -1, 0, 1, 17, 63, 64, INTERLEAVE_MIN - 1, INTERLEAVE_MIN,
                                 INTERLEAVE_MIN + 23, FOLD_MIN + 1)})
HW_PATHS = ["ODK_CRC_ONE_CHAIN", "ODK_CRC_INTERLEAVED", "ODK_CRC_FOLD"]


def crc32c_via(path, data, crc=0):
    """odk_crc32c through the named hardware path, or None if this CPU lacks it."""
    from odradek._native import ffi, lib
    out = ffi.new("uint32_t *")
    if not lib.odk_crc32c_via(getattr(lib, path), crc, ffi.from_buffer(data), len(data), out):
        return None
    return out[0]


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("path", HW_PATHS)
def test_every_hardware_path_agrees_with_the_table_across_its_block_boundaries(impl, path,
                                                                               shift):
    if not is_c(impl):
        pytest.skip("the reference has one path (and checks 24k lengths at a few MB/s)")
    if crc32c_via(path, b"") is None:
        pytest.skip(f"this CPU lacks {path}")
    rng = random.Random(shift)
    data = bytearray(rng.randbytes(LONG_LENGTHS[-1] + shift))
    start = rng.getrandbits(32)
    for n in [*EVERY_LENGTH, *LONG_LENGTHS]:
        view = memoryview(data)[shift:shift + n]
        assert crc32c_via(path, view) == impl.crc32c_sw(view), f"length {n}"
        assert crc32c_via(path, view, start) == impl.crc32c_sw(view, start), f"length {n} from crc"


@pytest.mark.parametrize("shift", [0, 3])
def test_crc32c_continues_across_any_cut_of_a_long_buffer(impl, shift):
    rng = random.Random(shift)
    data = memoryview(rng.randbytes(LONG_LENGTHS[-1] + shift))[shift:]
    for n in LONG_LENGTHS[::4]:
        view = data[:n]
        cut = rng.randrange(n + 1)
        assert impl.crc32c(view[cut:], impl.crc32c(view[:cut])) == impl.crc32c_sw(view), \
            f"length {n} cut {cut}"


@pytest.mark.parametrize("n", [INTERLEAVE_MIN - 1, INTERLEAVE_MIN, INTERLEAVE_MIN + 23,
                               FOLD_MIN - 1, FOLD_MIN, FOLD_MIN + 64 + 17, 1024,
                               ROUND - 1, ROUND + 17, ROUND + INTERLEAVE_MIN])
def test_crc32c_agrees_with_the_reference_around_the_interleaving_thresholds(impl, n):
    data = random.Random(n).randbytes(n + 5)
    for shift in (0, 5):
        view = memoryview(data)[shift:shift + n]
        assert impl.crc32c(view) == ref.crc32c(view), f"shift {shift}"
        assert impl.crc32c(view, 0xDEADBEEF) == ref.crc32c(view, 0xDEADBEEF), f"shift {shift}"


def test_crc32c_agrees_with_the_reference_on_a_long_random_buffer(impl):
    data = random.Random(7).randbytes(3 * 8192 * 2 + 3 * 256 + 77)
    want = ref.crc32c(data)
    assert impl.crc32c(data) == want
    assert impl.crc32c_sw(data) == want


def test_crc32c_accepts_bytes_bytearray_memoryview_and_mmap(impl, tmp_path):
    data = random.Random(1).randbytes(5000)
    want = ref.crc32c(data[13:4013])
    path = tmp_path / "blob"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert impl.crc32c(m) == ref.crc32c(data)
        assert impl.crc32c(memoryview(m)[13:4013]) == want   # a slice at an offset
    assert impl.crc32c(data[13:4013]) == want
    assert impl.crc32c(bytearray(data)[13:4013]) == want
    assert impl.crc32c(memoryview(data)[13:4013]) == want
    assert impl.crc32c(memoryview(data[:4000]).cast("I")) == ref.crc32c(data[:4000])


def test_crc32c_hw_available_is_true_exactly_when_the_c_path_runs_on_sse42(impl):
    available = impl.crc32c_hw_available()
    assert isinstance(available, bool)
    if not is_c(impl):
        assert available is False
    else:
        cpu = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
        has_sse42 = os.uname().machine == "x86_64" and " sse4_2" in cpu
        assert available == has_sse42


# ---- batch scan: valid input -------------------------------------------------------

def test_scan_of_an_empty_buffer_is_ok_with_nothing_in_it(impl):
    r = impl.scan_batches(b"", cap=4)
    assert (r.status, r.batches, r.valid_bytes, r.first_offset, r.last_offset,
            r.max_timestamp, r.records, r.expected, r.found, r.infos) == \
        (impl.Status.OK, 0, 0, -1, -1, -1, 0, 0, 0, [])
    assert r.ok and r.status_name == "OK"


def test_scan_accepts_consecutive_valid_batches_and_totals_them(impl):
    counts = (1, 5, 3, 100, 2)
    log = make_log(*counts, start=40)
    r = impl.scan_batches(log, check_offsets=True, min_offset=40, cap=10)
    assert isinstance(r, impl.ScanResult)
    assert (r.status, r.batches, r.valid_bytes, r.records) == (impl.Status.OK, 5, len(log), 111)
    assert (r.first_offset, r.last_offset) == (40, 150)
    assert r.max_timestamp == 1490 + 1            # last batch: base_ts 149*10, delta 1
    assert all(isinstance(i, impl.BatchInfo) for i in r.infos)
    assert [i.base_offset for i in r.infos] == [40, 41, 46, 49, 149]
    assert [i.last_offset for i in r.infos] == [40, 45, 48, 148, 150]
    assert [i.records for i in r.infos] == list(counts)
    positions = [i.position for i in r.infos]
    assert positions == [0] + [sum(i.size for i in r.infos[:k]) for k in range(1, 5)]
    assert sum(i.size for i in r.infos) == len(log)
    assert impl.scan_batches(log).infos == []     # cap 0: totals only


def test_scan_reports_every_header_field_in_the_batch_info(impl):
    batch = make_batch(base_offset=2**40 + 3, records=4, last_offset_delta=6,
                       base_timestamp=-7, max_timestamp=1_700_000_000_123,
                       producer_id=2**50 + 1, producer_epoch=-2, base_sequence=-5,
                       leader_epoch=-9, attributes=-32768 + 0x15, payload=b"p" * 33)
    [info] = impl.scan_batches(batch, cap=1).infos
    assert info == (0, 2**40 + 3, 2**40 + 9, -7, 1_700_000_000_123, 2**50 + 1, len(batch),
                    4, -5, -9, -2, -32768 + 0x15, struct.unpack_from(">I", batch, 17)[0])
    assert (info.position, info.base_offset, info.last_offset, info.base_timestamp,
            info.max_timestamp, info.producer_id, info.size, info.records,
            info.base_sequence, info.leader_epoch, info.producer_epoch, info.attributes,
            info.crc) == tuple(info)


def test_scan_accepts_a_header_only_batch_with_no_records(impl):
    batch = make_batch(records=0, last_offset_delta=0, payload=b"")
    assert len(batch) == impl.BATCH_HEADER_SIZE
    r = impl.scan_batches(batch)
    assert (r.status, r.batches, r.records) == (impl.Status.OK, 1, 0)


def test_first_offset_is_that_of_the_first_batch_even_when_negative(impl):
    log = make_batch(base_offset=-5, records=2) + make_batch(base_offset=10, records=1)
    r = impl.scan_batches(log)
    assert (r.status, r.first_offset, r.last_offset) == (impl.Status.OK, -5, 10)


def test_max_timestamp_is_the_largest_over_all_batches(impl):
    log = (make_batch(0, max_timestamp=500) + make_batch(1, max_timestamp=900)
           + make_batch(2, max_timestamp=700))
    assert impl.scan_batches(log).max_timestamp == 900


def test_base_offset_and_leader_epoch_are_not_covered_by_the_crc(impl):
    batch = bytearray(make_batch(base_offset=0, records=3))
    struct.pack_into(">qii", batch, 0, 12345, struct.unpack_from(">i", batch, 8)[0], 77)
    r = impl.scan_batches(batch, cap=1)
    assert r.status == impl.Status.OK
    assert (r.infos[0].base_offset, r.infos[0].leader_epoch) == (12345, 77)


def test_scan_reads_an_mmapped_segment_and_a_slice_at_an_offset(impl, tmp_path):
    log = make_log(3, 1, 4)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(log + bytes(4096))      # preallocated, zero-filled tail
    first = len(make_batch(0, records=3))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        r = impl.scan_batches(m, cap=8)
        assert (r.status, r.batches, r.valid_bytes) == (impl.Status.BAD_LENGTH, 3, len(log))
        view = memoryview(m)[first:len(log)]
        r = impl.scan_batches(view, check_offsets=True, min_offset=3, cap=8)
        assert (r.status, r.batches, r.first_offset, r.last_offset) == (impl.Status.OK, 2, 3, 7)
        assert [i.position for i in r.infos] == [0, len(make_batch(3, records=1))]
        del view, r


# ---- batch scan: each failure ------------------------------------------------------

def test_scan_reports_truncation_at_every_byte_inside_the_last_batch(impl):
    head = make_log(2, 3)
    last = make_batch(base_offset=5, records=4)
    for cut in range(1, len(last)):
        r = impl.scan_batches(head + last[:cut])
        assert (r.status, r.batches, r.valid_bytes, r.last_offset) == \
            (impl.Status.TRUNCATED, 2, len(head), 4), f"cut at {cut}"
        if cut < 12:   # not even baseOffset + batchLength
            assert (r.expected, r.found) == (12, cut)
        else:          # the length is readable: the batch needs len(last) bytes
            assert (r.expected, r.found) == (len(last), cut)


def test_scan_reports_any_flipped_bit_under_the_crc_as_bad_crc(impl):
    head = make_log(2)
    batch = make_batch(base_offset=2, records=3, producer_id=9)
    stored = struct.unpack_from(">I", batch, 17)[0]
    for pos in range(21, len(batch)):
        for bit in (0x01, 0x40):
            bad = bytearray(batch)
            bad[pos] ^= bit
            r = impl.scan_batches(head + bad)
            assert (r.status, r.batches, r.valid_bytes) == \
                (impl.Status.BAD_CRC, 1, len(head)), f"byte {pos} bit {bit:#x}"
            assert (r.expected, r.found) == (ref.crc32c(bytes(bad[21:])), stored)


def test_scan_reports_a_damaged_crc_field_with_the_computed_and_stored_values(impl):
    batch = bytearray(make_batch(records=2))
    good = struct.unpack_from(">I", batch, 17)[0]
    struct.pack_into(">I", batch, 17, good ^ 0x80000000)
    r = impl.scan_batches(batch)
    assert (r.status, r.expected, r.found) == (impl.Status.BAD_CRC, good, good ^ 0x80000000)


@pytest.mark.parametrize("magic", [0, 1, 3, -1, -128])
def test_scan_reports_a_magic_other_than_2_with_the_byte_found(impl, magic):
    log = make_log(1) + make_batch(base_offset=1, magic=magic)
    r = impl.scan_batches(log)
    assert (r.status, r.batches, r.expected, r.found) == (impl.Status.BAD_MAGIC, 1, 2, magic)


@pytest.mark.parametrize("length", [48, 0, 1, -1, -2**31])
def test_scan_rejects_a_batch_length_too_short_for_the_header(impl, length):
    bad = make_batch(base_offset=1, length=length)
    r = impl.scan_batches(make_log(1) + bad)
    assert (r.status, r.batches, r.valid_bytes) == (impl.Status.BAD_LENGTH, 1, len(make_log(1)))
    assert (r.expected, r.found) == (49, length)


def test_scan_reports_a_huge_batch_length_as_truncated(impl):
    bad = make_batch(length=2**31 - 1)
    r = impl.scan_batches(bad)
    assert (r.status, r.expected, r.found) == (impl.Status.TRUNCATED, 2**31 + 11, len(bad))


@pytest.mark.parametrize("tail", [4096, 12, 61])
def test_scan_reports_a_zero_filled_tail_as_bad_length_after_the_valid_prefix(impl, tail):
    log = make_log(2, 2)
    r = impl.scan_batches(log + bytes(tail))
    assert (r.status, r.batches, r.valid_bytes, r.last_offset) == \
        (impl.Status.BAD_LENGTH, 2, len(log), 3)
    assert (r.expected, r.found) == (49, 0)


def test_scan_reports_a_zero_tail_shorter_than_a_length_field_as_truncated(impl):
    log = make_log(2)
    r = impl.scan_batches(log + bytes(11))
    assert (r.status, r.valid_bytes, r.expected, r.found) == \
        (impl.Status.TRUNCATED, len(log), 12, 11)


def test_scan_rejects_batches_larger_than_max_batch_size_and_accepts_exactly_it(impl):
    small, big = make_batch(0, records=1), make_batch(1, records=30)
    r = impl.scan_batches(small + big, max_batch_size=len(big))
    assert (r.status, r.batches) == (impl.Status.OK, 2)
    r = impl.scan_batches(small + big, max_batch_size=len(big) - 1)
    assert (r.status, r.batches, r.valid_bytes) == (impl.Status.BAD_LENGTH, 1, len(small))
    assert (r.expected, r.found) == (len(big) - 1 - 12, len(big) - 12)
    for no_limit in (0, -1):
        assert impl.scan_batches(small + big, max_batch_size=no_limit).status == impl.Status.OK


@pytest.mark.parametrize("delta, count, found", [(-1, 3, -1), (2, -1, -1), (-7, -3, -7),
                                                 (-2**31, 0, -2**31)])
def test_scan_rejects_negative_last_offset_delta_or_record_count_despite_a_good_crc(
        impl, delta, count, found):
    bad = make_batch(base_offset=1, records=count, last_offset_delta=delta, payload=b"x")
    r = impl.scan_batches(make_log(1) + bad)
    assert (r.status, r.batches, r.expected, r.found) == (impl.Status.BAD_LENGTH, 1, 0, found)


def test_scan_rejects_a_batch_whose_next_offset_would_overflow_int64(impl):
    top = 2**63 - 1
    ok = make_batch(base_offset=top - 5, records=5)            # last offset top - 1
    r = impl.scan_batches(ok)
    assert (r.status, r.last_offset) == (impl.Status.OK, top - 1)
    bad = make_batch(base_offset=top - 5, records=6)           # last offset top
    r = impl.scan_batches(bad)
    assert (r.status, r.expected, r.found) == (impl.Status.BAD_LENGTH, 4, 5)


def test_check_offsets_rejects_offsets_going_backwards_but_allows_gaps(impl):
    a, b = make_batch(10, records=5), make_batch(12, records=1)   # 10..14, then 12
    r = impl.scan_batches(a + b, check_offsets=True, min_offset=10)
    assert (r.status, r.batches, r.valid_bytes) == (impl.Status.BAD_OFFSET, 1, len(a))
    assert (r.expected, r.found) == (15, 12)
    assert impl.scan_batches(a + b).status == impl.Status.OK      # unchecked by default
    gap = a + make_batch(20, records=1) + make_batch(21, records=1)
    assert impl.scan_batches(gap, check_offsets=True).status == impl.Status.OK


def test_check_offsets_rejects_a_first_batch_below_min_offset(impl):
    log = make_log(3, start=7)
    r = impl.scan_batches(log, check_offsets=True, min_offset=8)
    assert (r.status, r.batches, r.valid_bytes, r.first_offset) == \
        (impl.Status.BAD_OFFSET, 0, 0, -1)
    assert (r.expected, r.found) == (8, 7)
    assert impl.scan_batches(log, check_offsets=True, min_offset=7).status == impl.Status.OK


def test_scan_checks_length_then_magic_then_counts_then_crc_then_offsets(impl):
    # one batch wrong in every way: the first check in header order decides
    batch = make_batch(base_offset=0, records=-1, magic=1, crc=0)
    assert impl.scan_batches(batch).status == impl.Status.BAD_MAGIC
    batch = make_batch(base_offset=0, records=-1, crc=0)
    assert impl.scan_batches(batch).status == impl.Status.BAD_LENGTH
    batch = make_log(1, start=5) + make_batch(base_offset=0, crc=0)
    assert impl.scan_batches(batch, check_offsets=True).status == impl.Status.BAD_CRC


def test_cap_stops_with_more_and_the_scan_resumes_from_valid_bytes(impl):
    counts = (2, 1, 4, 3, 5)
    log = make_log(*counts)
    r = impl.scan_batches(log, check_offsets=True, cap=2)
    assert (r.status, r.batches, r.last_offset, r.expected, r.found) == \
        (impl.Status.MORE, 2, 2, 0, 0)
    assert len(r.infos) == 2 and r.valid_bytes == sum(i.size for i in r.infos)
    seen = [i.base_offset for i in r.infos]
    pos, nxt = r.valid_bytes, r.last_offset + 1
    while True:
        r = impl.scan_batches(memoryview(log)[pos:], check_offsets=True, min_offset=nxt, cap=2)
        seen += [i.base_offset for i in r.infos]
        pos, nxt = pos + r.valid_bytes, r.last_offset + 1
        if r.status != impl.Status.MORE:
            break
    assert r.status == impl.Status.OK and pos == len(log)
    assert seen == [0, 2, 3, 7, 10]


def test_cap_equal_to_the_number_of_batches_ends_ok_not_more(impl):
    log = make_log(1, 2, 3)
    r = impl.scan_batches(log, cap=3)
    assert (r.status, r.batches, len(r.infos)) == (impl.Status.OK, 3, 3)


def test_cap_with_a_bad_batch_after_it_stops_with_more_before_looking(impl):
    log = make_log(1, 2) + bytes(100)
    assert impl.scan_batches(log, cap=2).status == impl.Status.MORE
    assert impl.scan_batches(log, cap=3).status == impl.Status.BAD_LENGTH


def test_negative_cap_is_refused(impl):
    with pytest.raises(ValueError):
        impl.scan_batches(make_log(1), cap=-1)


# ---- batch scan: differential property test ----------------------------------------

@st.composite
def damaged_logs(draw):
    """A few valid batches, then maybe one damage: a cut, a flipped byte, a zero tail,
    a rewritten field (with or without a fixed CRC), or a batch out of order."""
    offset, batches = draw(st.integers(-3, 2**40)), []
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(0, 6))
        batches.append(make_batch(base_offset=offset, records=n,
                                  base_timestamp=draw(st.integers(-5, 10**13)),
                                  payload=draw(st.binary(max_size=40))))
        offset += max(n, 1) + draw(st.sampled_from([0, 0, 0, -3, 5]))
    log = bytearray(b"".join(batches))
    kind = draw(st.sampled_from(["none", "cut", "flip", "zeros", "field", "field+crc"]))
    if log and kind == "cut":
        del log[draw(st.integers(0, len(log) - 1)):]
    elif log and kind == "flip":
        log[draw(st.integers(0, len(log) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "zeros":
        log += bytes(draw(st.integers(1, 80)))
    elif batches and kind.startswith("field"):
        start = len(b"".join(batches[:-1]))
        pos = draw(st.sampled_from([8, 16, 23, 57]))          # length, magic, delta, count
        value = draw(st.sampled_from([-1, 0, 1, 48, 49, 2**31 - 1, -2**31]))
        if pos == 16:
            log[start + 16] = value & 0xFF
        else:
            struct.pack_into(">i", log, start + pos, value)
        if kind == "field+crc" and pos != 8:
            log[start:] = refresh_crc(bytes(log[start:]))
    return bytes(log)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=damaged_logs(), check_offsets=st.booleans(), min_offset=st.integers(-5, 50),
       cap=st.integers(0, 5), max_batch_size=st.sampled_from([0, -1, 61, 100, 150, 10**6]),
       prefix=st.integers(0, 9))
def test_scan_agrees_with_the_reference_on_random_damaged_logs(
        impl, log, check_offsets, min_offset, cap, max_batch_size, prefix):
    buf = memoryview(bytes(prefix) + log)[prefix:]    # misaligned start
    got = impl.scan_batches(buf, max_batch_size, check_offsets, min_offset, cap)
    want = ref.scan_batches(log, max_batch_size=max_batch_size, check_offsets=check_offsets,
                            min_offset=min_offset, cap=cap)
    assert_same_result(got, want)
    if got.status not in (impl.Status.OK, impl.Status.MORE):
        # the valid prefix on its own scans clean
        clean = impl.scan_batches(log[:got.valid_bytes], max_batch_size, check_offsets,
                                  min_offset)
        assert (clean.status, clean.batches) == (impl.Status.OK, got.batches)
