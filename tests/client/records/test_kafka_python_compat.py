"""Byte compatibility with kafka-python's v2 codec, in both directions.

kafka-python's builder writes partitionLeaderEpoch 0 (Kafka's Java producer writes -1;
the field is not CRC-covered), so ours is built with partition_leader_epoch=0 where
bytes are compared. Its gzip header carries the current time and its lz4 and zstd
framings differ in options Kafka leaves free (checksums, content size), so compressed
batches are compared by their decompressed records region, each side's region read by
the other side's decoder (kafka-python's kafka.codec: its own xerial framing over
python-snappy, whose raw blocks are cramjam's too, so test_compression.py checks those
with a decoder of its own; lz4 and zstandard over liblz4 and libzstd).
"""
import warnings

import pytest

from odradek.client.records import (
    RECORDS_OFFSET, BatchBuilder, BatchRecord, Compression, RecordBatch, write_base_offset,
    write_log_append_time)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import codec as kafka_codec
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

T0 = 1_700_000_000_000

CASES = {
    "plain": [(T0, b"key", b"value", [])],
    "null key and value": [(T0, None, None, []), (T0 + 1, None, b"v", []), (T0 + 2, b"k", None, [])],
    "empty key and value": [(T0, b"", b"", [])],
    "headers with null values": [
        (T0, b"k", b"v", [("trace-id", b"abc"), ("empty", b""), ("null", None)]),
        (T0, None, b"v", [("\u00fcnicode-\u2603", b"\x00\xff")]),
    ],
    "large and negative timestamps": [
        (2**62, b"a", b"1", []), (-(2**62), b"b", b"2", []), (-1, b"c", b"3", []),
        (0, b"d", b"4", []), (2**62 + 10_000, b"e", b"5", []),
    ],
    "out of order timestamps": [(T0 + 500, None, b"a", []), (T0, None, b"b", []), (T0 + 90_000, None, b"c", [])],
    "large key and value": [(T0, b"K" * 10_000, b"V" * 100_000, [])],
    "1000 records": [(T0 + i, b"key-%d" % (i % 17), b"value-%d" % i * (i % 5), []) for i in range(1000)],
}
PRODUCER_STATES = {
    "no producer": dict(producer_id=-1, producer_epoch=-1, base_sequence=-1, transactional=False),
    "idempotent": dict(producer_id=123456789012, producer_epoch=7, base_sequence=2**31 - 5, transactional=False),
    "transactional": dict(producer_id=42, producer_epoch=3, base_sequence=0, transactional=True),
}


def ours(records, compression=Compression.NONE, **state):
    b = BatchBuilder(compression=compression, partition_leader_epoch=0, **state)
    for ts, key, value, headers in records:
        b.append(ts, key, value, headers)
    return b.build()


def theirs(records, compression=Compression.NONE, producer_id=-1, producer_epoch=-1,
           base_sequence=-1, transactional=False):
    b = DefaultRecordBatchBuilder(2, int(compression), transactional, producer_id,
                                  producer_epoch, base_sequence, batch_size=2**30)
    for offset, (ts, key, value, headers) in enumerate(records):
        assert b.append(offset, ts, key, value, headers) is not None
    return bytes(b.build())


def expected(records, base_offset=0):
    return [BatchRecord(base_offset + i, ts, key, value, tuple(headers))
            for i, (ts, key, value, headers) in enumerate(records)]


def read_with_kafka_python(data):
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    return [BatchRecord(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in batch]


# Every case without producer state, and every producer state on a small case (one
# 1000-record run is enough: kafka-python's CRC is pure Python).
IDENTICAL = [(case, "no producer") for case in CASES] + \
    [("headers with null values", state) for state in PRODUCER_STATES if state != "no producer"]


@pytest.mark.parametrize("case,state", IDENTICAL)
def test_identical_input_gives_identical_bytes(case, state):
    assert ours(CASES[case], **PRODUCER_STATES[state]) == theirs(CASES[case], **PRODUCER_STATES[state])


@pytest.mark.parametrize("case", CASES)
def test_kafka_python_reads_our_batches(case):
    assert read_with_kafka_python(ours(CASES[case])) == expected(CASES[case])


@pytest.mark.parametrize("case", CASES)
def test_we_read_kafka_python_batches(case):
    batch = RecordBatch(theirs(CASES[case])).validate()
    assert list(batch.records()) == expected(CASES[case])


def test_producer_fields_and_flags_read_the_same_on_both_sides():
    state = PRODUCER_STATES["transactional"]
    data = theirs(CASES["plain"], **state)
    mine, kb = RecordBatch(data), DefaultRecordBatch(data)
    assert (mine.producer_id, mine.producer_epoch, mine.base_sequence, mine.is_transactional) == \
        (kb.producer_id, kb.producer_epoch, kb.base_sequence, kb.is_transactional) == (42, 3, 0, True)
    assert (mine.crc, mine.attributes, mine.last_offset_delta, mine.base_timestamp, mine.max_timestamp) == \
        (kb.crc, kb.attributes, kb.last_offset_delta, kb.first_timestamp, kb.max_timestamp)


COMPRESSED_CASES = {  # kafka-python sends a batch uncompressed when compressing does not shrink it
    "1000 records": CASES["1000 records"],
    "repetitive with headers and nulls": [
        (T0 + i, None if i % 3 else b"key", None if i % 7 == 0 else b"payload " * 8,
         [("h", None), ("trace", b"abcabc")]) for i in range(40)],
    "large and negative timestamps": [(ts, k, (v or b"") * 50, h)
                                      for ts, k, v, h in CASES["large and negative timestamps"]],
}


KAFKA_PYTHON_DECODE = {Compression.GZIP: kafka_codec.gzip_decode, Compression.SNAPPY: kafka_codec.snappy_decode,
                       Compression.LZ4: kafka_codec.lz4_decode, Compression.ZSTD: kafka_codec.zstd_decode}


@pytest.mark.parametrize("codec", list(KAFKA_PYTHON_DECODE))
@pytest.mark.parametrize("case", COMPRESSED_CASES)
def test_compressed_batches_cross_read_and_hold_identical_records_bytes(case, codec):
    records = COMPRESSED_CASES[case]
    mine = ours(records, codec)
    other = theirs(records, codec)
    assert DefaultRecordBatch(other).compression_type == RecordBatch(mine).compression == codec
    assert read_with_kafka_python(mine) == expected(records)
    assert list(RecordBatch(other).validate().records()) == expected(records)
    plain = ours(records)[RECORDS_OFFSET:]
    assert KAFKA_PYTHON_DECODE[codec](mine[RECORDS_OFFSET:]) == plain
    assert RecordBatch(other).uncompressed()[RECORDS_OFFSET:] == plain


def test_snappy_batches_are_framed_as_kafka_python_frames_them():
    """xerial's framing on both sides: the same 16-byte header and 32 KiB blocks."""
    records = [(T0 + i, None, b"%d " % i * 40, []) for i in range(2000)]      # ~3 blocks
    mine, other = ours(records, Compression.SNAPPY), theirs(records, Compression.SNAPPY)
    assert mine[RECORDS_OFFSET:RECORDS_OFFSET + 16] == other[RECORDS_OFFSET:RECORDS_OFFSET + 16] == \
        bytes.fromhex("82534e41505059000000000100000001")
    plain = len(ours(records)) - RECORDS_OFFSET
    assert xerial_blocks(mine[RECORDS_OFFSET:]) == xerial_blocks(other[RECORDS_OFFSET:]) == -(-plain // 32768)


def xerial_blocks(region):
    count, pos = 0, 16
    while pos < len(region):
        pos += 4 + int.from_bytes(region[pos:pos + 4], "big")
        count += 1
    assert pos == len(region)
    return count


def test_kafka_python_sees_offsets_assigned_in_place():
    data = bytearray(ours(CASES["null key and value"]))
    write_base_offset(data, 0, 5000)
    assert [r.offset for r in read_with_kafka_python(bytes(data))] == [5000, 5001, 5002]


def test_kafka_python_sees_log_append_time():
    data = bytearray(ours(CASES["out of order timestamps"]))
    write_log_append_time(data, 0, T0 + 1)
    assert [r.timestamp for r in read_with_kafka_python(bytes(data))] == [T0 + 1] * 3
    assert [r.timestamp for r in RecordBatch(data).validate().records()] == [T0 + 1] * 3


def test_kafka_python_reads_our_control_batch_as_a_commit_marker():
    b = BatchBuilder(producer_id=42, producer_epoch=3, base_sequence=-1, transactional=True,
                     control=True, partition_leader_epoch=0)
    b.append(T0, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")  # version 0, type COMMIT
    kb = DefaultRecordBatch(b.build())
    assert kb.validate_crc() and kb.is_control_batch
    (marker,) = list(kb)
    assert marker.commit and marker.version == 0
