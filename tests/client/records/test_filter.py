"""records/filter.py: Kafka's MemoryRecords.filterTo for one batch, pure bytes in and out.
A filter here keeps the records whose keys it is told to keep; the output is read back
with RecordBatch, the independent reader."""
import pytest

from odradek.client.records import (ATTRIBUTES_OFFSET, BatchBuilder, BatchRetention, Compression, RecordBatch,
                                    decode_batch, filter_batch)
from odradek.client.records.filter import COPIED, DROPPED, REWRITTEN, UNREADABLE

HORIZON = 9_000_000


class KeepKeys:
    def __init__(self, keys, retention=BatchRetention.DELETE_EMPTY, marker=False):
        self.keys, self.retention, self.marker = keys, retention, marker
        self.delete_horizon_ms = HORIZON

    def check_batch_retention(self, batch):
        return self.retention, self.marker

    def retained_records(self, batch):
        return [i for i, row in enumerate(batch.rows) if row[3] >= 0 and batch.key(row) in self.keys]


def build(values, compression=Compression.NONE, base_offset=40, producer_id=7):
    b = BatchBuilder(compression=compression, base_offset=base_offset, producer_id=producer_id,
                     producer_epoch=1, base_sequence=3)
    for i, value in enumerate(values):
        b.append(1_000 + 10 * i, b"k%d" % i, value)
    return bytes(b.build())


def records(data):
    batch = RecordBatch(data)
    batch.validate()
    return batch, [(r.offset, r.key, r.value, r.timestamp) for r in batch.records()]


def test_a_batch_that_keeps_every_record_is_copied_byte_for_byte():
    data = build([b"a", b"b"])
    result = filter_batch(data, KeepKeys({b"k0", b"k1"}))
    assert (result.output, result.kind, result.records_read, result.records_kept) == (data, COPIED, 2, 2)


@pytest.mark.parametrize("compression", list(Compression))
def test_a_batch_that_loses_records_is_rebuilt_with_the_same_offsets_and_producer_fields(compression):
    data = build([b"a", b"b", b"c"], compression)
    result = filter_batch(data, KeepKeys({b"k1"}))
    assert (result.kind, result.records_read, result.records_kept) == (REWRITTEN, 3, 1)
    old, _ = records(data)
    new, kept = records(result.output)
    assert kept == [(41, b"k1", b"b", 1_010)]
    assert (new.base_offset, new.last_offset, new.producer_id, new.producer_epoch, new.base_sequence) == \
        (old.base_offset, old.last_offset, old.producer_id, old.producer_epoch, old.base_sequence)
    assert new.compression == compression and (new.base_timestamp, new.max_timestamp) == (1_010, 1_010)


def test_a_kept_tombstone_gets_the_delete_horizon_and_keeps_its_timestamp():
    data = build([b"a", None])
    result = filter_batch(data, KeepKeys({b"k0", b"k1"}))
    assert result.kind == REWRITTEN
    new, kept = records(result.output)
    assert new.base_timestamp == HORIZON and decode_batch(result.output).delete_horizon == HORIZON
    assert kept == [(40, b"k0", b"a", 1_000), (41, b"k1", None, 1_010)]
    assert filter_batch(result.output, KeepKeys({b"k0", b"k1"})).kind == COPIED   # set once


@pytest.mark.parametrize("retention, kind, size", [(BatchRetention.RETAIN_EMPTY, REWRITTEN, 61),
                                                   (BatchRetention.DELETE_EMPTY, DROPPED, None),
                                                   (BatchRetention.DELETE, DROPPED, None)])
def test_a_batch_with_nothing_kept_is_an_empty_header_or_dropped(retention, kind, size):
    data = build([b"a", b"b"])
    result = filter_batch(data, KeepKeys(set(), retention))
    assert (result.kind, result.records_kept) == (kind, 0)
    if size is None:
        assert result.output is None
    else:
        new, kept = records(result.output)
        assert (len(result.output), kept, new.records_count, new.last_offset, new.base_timestamp) == \
            (size, [], 0, 41, -1)


def test_delete_drops_a_batch_whatever_its_records():
    result = filter_batch(build([b"a"]), KeepKeys({b"k0"}, BatchRetention.DELETE))
    assert (result.output, result.kind, result.records_read) == (None, DROPPED, 1)


def test_a_batch_it_cannot_read_is_copied_and_the_filter_is_not_asked():
    data = bytearray(build([b"a"]))
    data[ATTRIBUTES_OFFSET + 1] |= Compression.ZSTD   # the codec bits, in the low byte

    class Refuses:
        def check_batch_retention(self, batch):
            raise AssertionError("asked")

    result = filter_batch(bytes(data), Refuses())
    assert (result.output, result.kind) == (bytes(data), UNREADABLE)
    assert decode_batch(bytes(data)) is None


def test_the_row_indexes_it_uses_are_native_record_fields():
    from odradek.client import native
    from odradek.client.records import filter as filter_module
    assert native.RECORD_FIELDS[filter_module._TIMESTAMP_DELTA] == "timestamp_delta"
    assert native.RECORD_FIELDS[filter_module._VALUE_LEN] == "value_len"
