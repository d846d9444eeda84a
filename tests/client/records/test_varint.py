"""Zigzag varints: known encodings, round trips, and strict decoding of bad input."""
import warnings

import pytest
from hypothesis import given, strategies as st

from odradek.client.errors import CorruptRecord
from odradek.client.records.varint import (
    INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, SMALL_VARINTS, decode_varint, decode_varlong,
    encode_varint, encode_varlong, size_of_varint, size_of_varlong)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record import util as kafka_util

KNOWN = [
    (0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (63, "7e"), (-64, "7f"), (64, "8001"),
    (-65, "8101"), (300, "d804"), (8191, "fe7f"), (8192, "808001"),
    (INT32_MAX, "feffffff0f"), (INT32_MIN, "ffffffff0f"),
]
KNOWN_LONG = KNOWN + [(INT64_MAX, "feffffffffffffffff01"), (INT64_MIN, "ffffffffffffffffff01")]


@pytest.mark.parametrize("value,hexed", KNOWN)
def test_varint_encodes_known_values_as_kafka_does(value, hexed):
    assert encode_varint(value).hex() == hexed
    assert decode_varint(bytes.fromhex(hexed), 0) == (value, len(hexed) // 2)
    assert size_of_varint(value) == len(hexed) // 2


@pytest.mark.parametrize("value,hexed", KNOWN_LONG)
def test_varlong_encodes_known_values_as_kafka_does(value, hexed):
    assert encode_varlong(value).hex() == hexed
    assert decode_varlong(bytes.fromhex(hexed), 0) == (value, len(hexed) // 2)
    assert size_of_varlong(value) == len(hexed) // 2


def test_small_varint_table_equals_the_general_encoder_for_all_1_and_2_byte_values():
    from odradek.client.records.varint import _encode_zigzag
    assert len(SMALL_VARINTS) == 8192
    for n in range(8192):
        assert SMALL_VARINTS[n] == _encode_zigzag(n << 1)
    assert [len(SMALL_VARINTS[n]) for n in (0, 63, 64, 8191)] == [1, 1, 2, 2]


@given(st.integers(INT32_MIN, INT32_MAX))
def test_varint_round_trips_every_int32(n):
    data = b"\xaa" + encode_varint(n) + b"\xbb"
    assert decode_varint(data, 1) == (n, len(data) - 1)
    assert size_of_varint(n) == len(data) - 2


@given(st.integers(INT64_MIN, INT64_MAX))
def test_varlong_round_trips_every_int64_and_matches_kafka_python(n):
    data = encode_varlong(n)
    assert decode_varlong(data, 0) == (n, len(data))
    assert size_of_varlong(n) == len(data) == kafka_util.size_of_varint(n)
    theirs = bytearray()
    kafka_util.encode_varint(n, theirs.append)
    assert bytes(theirs) == data


def test_decoding_works_on_bytearray_and_memoryview():
    raw = encode_varint(300)
    assert decode_varint(bytearray(raw)) == decode_varint(memoryview(raw)) == (300, 2)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80\x80\x80\x80"])
def test_truncated_varint_raises_corrupt_record(data):
    with pytest.raises(CorruptRecord, match="truncated"):
        decode_varint(data, 0)
    with pytest.raises(CorruptRecord, match="truncated"):
        decode_varlong(data, 0)


def test_decoding_past_the_end_raises_corrupt_record():
    with pytest.raises(CorruptRecord, match="truncated"):
        decode_varint(b"\x02", 1)


def test_varint_longer_than_5_bytes_raises_corrupt_record():
    with pytest.raises(CorruptRecord, match="longer than 5 bytes"):
        decode_varint(b"\x80\x80\x80\x80\x80\x00", 0)


def test_varlong_longer_than_10_bytes_raises_corrupt_record():
    with pytest.raises(CorruptRecord, match="longer than 10 bytes"):
        decode_varlong(b"\x80" * 10 + b"\x00", 0)


def test_varint_wider_than_32_bits_raises_corrupt_record():
    with pytest.raises(CorruptRecord, match="wider than 32 bits"):
        decode_varint(b"\xff\xff\xff\xff\x1f", 0)


def test_varlong_wider_than_64_bits_raises_corrupt_record():
    with pytest.raises(CorruptRecord, match="wider than 64 bits"):
        decode_varlong(b"\xff" * 9 + b"\x02", 0)


def test_non_canonical_padding_is_accepted_as_kafka_accepts_it():
    assert decode_varint(b"\x82\x80\x00", 0) == (1, 3)


@pytest.mark.parametrize("n", [INT32_MAX + 1, INT32_MIN - 1])
def test_encoding_an_int32_out_of_range_is_a_value_error(n):
    with pytest.raises(ValueError):
        encode_varint(n)
    with pytest.raises(ValueError):
        size_of_varint(n)


@pytest.mark.parametrize("n", [INT64_MAX + 1, INT64_MIN - 1])
def test_encoding_an_int64_out_of_range_is_a_value_error(n):
    with pytest.raises(ValueError):
        encode_varlong(n)
    with pytest.raises(ValueError):
        size_of_varlong(n)


@given(st.binary(max_size=12), st.integers(0, 12))
def test_decoding_arbitrary_bytes_returns_or_raises_corrupt_record_only(data, pos):
    for decode in (decode_varint, decode_varlong):
        try:
            value, end = decode(data, pos)
        except CorruptRecord:
            continue
        assert pos < end <= len(data)
