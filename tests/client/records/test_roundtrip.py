"""Property: whatever records go into BatchBuilder come out of RecordBatch.records(),
and for uncompressed batches the bytes are kafka-python's, byte for byte."""
import warnings

from hypothesis import given, settings, strategies as st

from odradek.client.records import (
    BatchBuilder, BatchRecord, Compression, RecordBatch, iter_batches, size_of_record)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatchBuilder

# Lengths around 8192 cross from the builder's table-driven fast path to its slow path.
maybe_bytes = (st.none() | st.binary(max_size=40)
               | st.integers(8185, 8200).map(lambda n: b"x" * n))
small_maybe_bytes = st.none() | st.binary(max_size=20)
headers = st.lists(st.tuples(st.text(max_size=10), small_maybe_bytes), max_size=3)
# Timestamps spread over +-2**62 so every delta from the first still fits in an int64.
timestamps = st.integers(-(2**62), 2**62) | st.integers(1_700_000_000_000, 1_700_000_100_000)
record = st.tuples(timestamps, maybe_bytes, maybe_bytes, headers)
batch_records = st.lists(record, min_size=1, max_size=12)
producer = st.sampled_from([(-1, -1, -1), (0, 0, 0), (2**40, 2**15 - 1, 2**31 - 1)])


def build(records, compression=Compression.NONE, base_offset=0, pid=(-1, -1, -1), epoch=-1):
    b = BatchBuilder(compression=compression, base_offset=base_offset,
                     partition_leader_epoch=epoch, producer_id=pid[0], producer_epoch=pid[1],
                     base_sequence=pid[2])
    for ts, key, value, hdrs in records:
        b.append(ts, key, value, hdrs)
    return b.build()


@settings(max_examples=100, deadline=None)
@given(batch_records, st.sampled_from([Compression.NONE, Compression.GZIP]),
       st.integers(0, 2**62), producer)
def test_encode_then_decode_gives_the_same_records(records, compression, base_offset, pid):
    data = build(records, compression, base_offset, pid)
    batch = RecordBatch(data).validate()
    assert list(batch.records()) == [
        BatchRecord(base_offset + i, ts, key, value, tuple(hdrs))
        for i, (ts, key, value, hdrs) in enumerate(records)]
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == pid
    assert batch.max_timestamp == max(r[0] for r in records)
    assert batch.base_timestamp == records[0][0]


@settings(max_examples=50, deadline=None)  # kafka-python's CRC is pure Python
@given(batch_records, producer)
def test_uncompressed_bytes_equal_kafka_pythons(records, pid):
    theirs = DefaultRecordBatchBuilder(2, 0, False, pid[0], pid[1], pid[2], batch_size=2**30)
    for offset, (ts, key, value, hdrs) in enumerate(records):
        theirs.append(offset, ts, key, value, hdrs)
    assert build(records, pid=pid, epoch=0) == bytes(theirs.build())


@settings(max_examples=50, deadline=None)
@given(batch_records)
def test_size_of_record_adds_up_to_the_batch_size(records):
    data = build(records)
    first_ts = records[0][0]
    assert len(data) == 61 + sum(size_of_record(k, v, h, i, ts - first_ts)
                                 for i, (ts, k, v, h) in enumerate(records))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(record, min_size=1, max_size=3), min_size=1, max_size=4))
def test_concatenated_batches_are_walked_back_in_order(batches):
    data = b"".join(build(records) for records in batches)
    found = [b.validate() for _, b in iter_batches(data)]
    assert [[r.value for r in b.records()] for b in found] == \
        [[value for _, _, value, _ in records] for records in batches]
