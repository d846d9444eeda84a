"""Damaged batches: every kind of bad byte is caught, named, and never decoded as data.

Helpers flip a byte, cut bytes, or rewrite a field and fix the CRC afterwards, so each
test reaches the check it is about (leveldb db/log_test.cc style).
"""
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.client import native
from odradek.client.errors import CorruptRecord
from odradek.client.records import (
    ATTRIBUTES_OFFSET, BATCH_LENGTH_OFFSET, CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET,
    MAGIC_OFFSET, RECORDS_COUNT_OFFSET, RECORDS_OFFSET, BatchBuilder, BatchRecord, Compression,
    RecordBatch)
from odradek.client.records.varint import encode_varint

T0 = 1_700_000_000_000


def good_batch(n=3, compression=Compression.NONE):
    b = BatchBuilder(compression=compression)
    for i in range(n):
        b.append(T0 + i, b"key%d" % i, b"value-%d" % i, [("h", b"x")] if i == 1 else ())
    return bytearray(b.build())


def fix_crc(data):
    data[CRC_OFFSET:ATTRIBUTES_OFFSET] = native.crc32c(bytes(data[ATTRIBUTES_OFFSET:])).to_bytes(4, "big")
    return data


def set_field(data, offset, fmt, value, crc=True):
    struct.pack_into(fmt, data, offset, value)
    return fix_crc(data) if crc else data


def with_records(region, count, attributes=0):
    """A batch whose records region is exactly `region`, with a correct CRC."""
    b = BatchBuilder()
    b.append(T0, None, b"placeholder")
    data = bytearray(b.build()[:RECORDS_OFFSET]) + region
    struct.pack_into(">i", data, BATCH_LENGTH_OFFSET, len(data) - 12)
    struct.pack_into(">h", data, ATTRIBUTES_OFFSET, attributes)
    struct.pack_into(">i", data, LAST_OFFSET_DELTA_OFFSET, max(count - 1, 0))
    struct.pack_into(">i", data, RECORDS_COUNT_OFFSET, count)
    return fix_crc(data)


def record_bytes(*fields):
    """A record from raw field bytes: the length prefix is computed."""
    body = b"".join(fields)
    return encode_varint(len(body)) + body


def v(n):
    return encode_varint(n)


# ---- CRC --------------------------------------------------------------------------------
def test_flipping_any_crc_covered_byte_makes_the_crc_invalid():
    data = good_batch()
    for position in range(ATTRIBUTES_OFFSET, len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        batch = RecordBatch(damaged)
        assert not batch.crc_valid(), position
        with pytest.raises(CorruptRecord):  # the CRC, or an earlier header check
            batch.validate()
    damaged = bytearray(data)
    damaged[-1] ^= 0x01
    with pytest.raises(CorruptRecord, match="CRC-32C of bytes 21"):
        RecordBatch(damaged).validate()


@pytest.mark.parametrize("position", [CRC_OFFSET, CRC_OFFSET + 3])
def test_a_damaged_crc_field_is_reported_with_both_values(position):
    data = good_batch()
    stored_before = RecordBatch(data).crc
    data[position] ^= 0x80
    with pytest.raises(CorruptRecord, match=f"expected {stored_before:#010x} \\(computed\\)"):
        RecordBatch(data).validate()


def test_bytes_outside_the_crc_do_not_affect_it():
    data = good_batch()
    for position in list(range(0, 8)) + list(range(12, 16)):
        data[position] ^= 0x5A
    assert RecordBatch(data).crc_valid()


# ---- framing and header ---------------------------------------------------------------
def test_a_torn_batch_is_invalid_and_its_records_are_not_read():
    data = good_batch()[:-5]
    batch = RecordBatch(data)
    assert not batch.crc_valid()
    with pytest.raises(CorruptRecord, match="torn"):
        batch.validate()
    with pytest.raises(CorruptRecord, match="does not fit"):
        batch.records()


def test_a_wrong_magic_is_named():
    data = good_batch()
    data[MAGIC_OFFSET] = 1
    with pytest.raises(CorruptRecord, match="magic expected 2, found 1"):
        RecordBatch(data).validate()
    with pytest.raises(CorruptRecord, match="magic expected 2, found 1"):
        RecordBatch(data).records()


def test_a_batch_length_below_the_header_is_named():
    data = set_field(good_batch(), BATCH_LENGTH_OFFSET, ">i", 10, crc=False)
    with pytest.raises(CorruptRecord, match="batchLength expected >= 49, found 10"):
        RecordBatch(data).validate()


@pytest.mark.parametrize("offset,value,match", [
    (LAST_OFFSET_DELTA_OFFSET, -1, "lastOffsetDelta and recordsCount expected >= 0"),
    (RECORDS_COUNT_OFFSET, -3, "lastOffsetDelta and recordsCount expected >= 0"),
    (RECORDS_COUNT_OFFSET, 4, "recordsCount expected <= lastOffsetDelta"),
])
def test_impossible_counts_fail_validation(offset, value, match):
    data = set_field(good_batch(3), offset, ">i", value)
    with pytest.raises(CorruptRecord, match=match):
        RecordBatch(data).validate()


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_an_undefined_compression_id_is_corrupt(codec):
    data = set_field(good_batch(), ATTRIBUTES_OFFSET, ">h", codec)
    with pytest.raises(CorruptRecord, match=f"compression id expected 0-4, found {codec}"):
        RecordBatch(data).validate()
    with pytest.raises(CorruptRecord, match="compression id"):
        RecordBatch(data).records()
    with pytest.raises(CorruptRecord):
        RecordBatch(data).compression


@pytest.mark.parametrize("codec,name", [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")])
def test_plain_records_marked_compressed_are_corrupt_naming_the_codec(codec, name):
    data = set_field(good_batch(), ATTRIBUTES_OFFSET, ">h", codec)
    batch = RecordBatch(data).validate()  # storable and servable: only decoding needs it
    assert batch.compression == codec
    with pytest.raises(CorruptRecord, match=f"{name} records do not decompress"):
        batch.records()


# ---- records region ---------------------------------------------------------------------
def test_a_truncated_records_region_is_corrupt():
    data = good_batch(3)
    region = bytes(data[RECORDS_OFFSET:])
    for cut in range(1, len(region)):
        with pytest.raises(CorruptRecord):
            RecordBatch(with_records(region[:-cut], 3)).records()


def test_records_count_larger_than_the_records_present_is_corrupt():
    data = set_field(good_batch(3), RECORDS_COUNT_OFFSET, ">i", 4)
    with pytest.raises(CorruptRecord, match="record 3 runs past the end"):
        RecordBatch(data).records()


def test_records_count_smaller_than_the_records_present_is_corrupt():
    data = set_field(good_batch(3), RECORDS_COUNT_OFFSET, ">i", 2)
    with pytest.raises(CorruptRecord, match="bytes follow the last of the 2 records"):
        RecordBatch(data).records()


def test_a_huge_records_count_fails_fast_instead_of_looping():
    data = set_field(good_batch(3), RECORDS_COUNT_OFFSET, ">i", 2**31 - 1)
    with pytest.raises(CorruptRecord, match="runs past the end"):
        RecordBatch(data).records()


def test_a_corrupt_batch_yields_no_records_at_all():
    data = set_field(good_batch(3), RECORDS_COUNT_OFFSET, ">i", 4)
    with pytest.raises(CorruptRecord):
        for _ in RecordBatch(data).records():
            pytest.fail("a record of a corrupt batch was returned")


def test_a_well_formed_hand_written_record_decodes():
    region = record_bytes(b"\x00", v(0), v(0), v(1), b"k", v(-1), v(1), v(1), b"h", v(-1))
    assert list(RecordBatch(with_records(region, 1)).records()) == [
        BatchRecord(0, T0, b"k", None, (("h", None),))]


@pytest.mark.parametrize("region,match", [
    (record_bytes(b"\x00", v(0), v(0), v(-2), v(0), v(0)), "key length expected >= -1, found -2"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(-5), v(0)), "value length expected >= -1, found -5"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(-1)), "headers count"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(1000)), "headers count"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(1), v(-1), v(0)), "header key length"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(1), v(2), b"\xff\xfe", v(0)), "not UTF-8"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(1), v(0), v(-3)), "header value length"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(1), v(0), v(9), b"x"), "header value length"),
    (record_bytes(b"\x00", v(0), v(0), v(0), v(0), v(0), b"extra"), "its fields take"),
    (v(3) + b"\x00" * 6, "declares 3 bytes"),
    (v(-1) + b"\x00" * 6, "declares -1 bytes"),
    (v(3) + b"\x00" * 3, "at most 0 records fit"),   # recordsCount is checked first
    (v(100) + b"\x00" * 10, "declares 100 bytes"),
    (record_bytes(b"\x00", v(0), v(0), v(50), b"k", v(0), v(0)), "its fields take|runs past"),
    (record_bytes(b"\x00", b"\x80" * 10 + b"\x00", v(0), v(0), v(0), v(0)), "longer than 10 bytes"),
    (record_bytes(b"\x00", v(0), b"\xff" * 5 + b"\x00", v(0), v(0), v(0)), "longer than 5 bytes"),
])
def test_malformed_record_fields_are_corrupt_and_named(region, match):
    with pytest.raises(CorruptRecord, match=match):
        RecordBatch(with_records(region, 1)).records()


def test_a_record_length_shorter_than_its_fields_is_corrupt():
    good = record_bytes(b"\x00", v(0), v(0), v(1), b"k", v(1), b"v", v(0))
    shortened = v(len(good) - 2) + good[1:]
    with pytest.raises(CorruptRecord):
        RecordBatch(with_records(shortened, 1)).records()


def test_truncated_gzip_records_are_corrupt():
    data = good_batch(20, Compression.GZIP)
    region = bytes(data[RECORDS_OFFSET:])
    with pytest.raises(CorruptRecord, match="gzip records do not decompress: unexpected end"):
        RecordBatch(with_records(region[:-8], 20, attributes=1)).records()


def test_garbage_gzip_records_are_corrupt():
    with pytest.raises(CorruptRecord, match="do not decompress"):
        RecordBatch(with_records(b"\x1f\x8b" + b"\x00" * 30, 1, attributes=1)).records()


def test_gzip_holding_malformed_records_is_corrupt():
    region = zlib.compress(v(100) + b"\x00" * 5, 6, 31)
    with pytest.raises(CorruptRecord, match="declares 100 bytes"):
        RecordBatch(with_records(region, 1, attributes=1)).records()


# ---- fuzz -------------------------------------------------------------------------------
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64), st.integers(-2, 8))
def test_arbitrary_records_bytes_decode_or_raise_corrupt_record_only(region, count):
    try:
        out = list(RecordBatch(with_records(region, count)).records())
    except CorruptRecord:
        return
    assert len(out) == count and all(type(r) is BatchRecord for r in out)


@settings(max_examples=300)
@given(st.data())
def test_damaging_a_real_batch_never_crashes_the_decoder(data):
    batch = good_batch(4)
    region = bytearray(batch[RECORDS_OFFSET:])
    for _ in range(data.draw(st.integers(1, 4))):
        region[data.draw(st.integers(0, len(region) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 3))
    region = bytes(region[:len(region) - cut])
    try:
        out = list(RecordBatch(with_records(region, 4)).records())
    except CorruptRecord:
        return
    assert len(out) == 4
    for r in out:
        assert r.key is None or type(r.key) is bytes
        assert r.value is None or type(r.value) is bytes
        assert all(type(k) is str for k, _ in r.headers)
