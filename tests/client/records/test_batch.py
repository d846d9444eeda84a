"""RecordBatch as a view, iter_batches over buffers of batches, and in-place rewrites."""
import gzip
import mmap

import pytest

from odradek.client import native
from odradek.client.errors import CorruptRecord, MessageTooLarge
from odradek.client.records import (
    SCAN_BYTES, BatchBuilder, BatchRecord, Compression, RecordBatch, TimestampType, iter_batches,
    next_whole_batch, whole_batch_at, read_base_offset, read_batch_length, write_base_offset, write_log_append_time,
    write_partition_leader_epoch)

T0 = 1_700_000_000_000


def batch_bytes(values, base_offset=0, timestamp=T0, **kw):
    b = BatchBuilder(base_offset=base_offset, **kw)
    for i, v in enumerate(values):
        b.append(timestamp + i, b"k%d" % i, v)
    return b.build()


def test_header_properties_read_what_the_builder_wrote():
    b = BatchBuilder(base_offset=100, partition_leader_epoch=4, producer_id=9,
                     producer_epoch=2, base_sequence=30, transactional=True)
    b.append(T0 + 5, b"a", b"1")
    b.append(T0, None, b"2")
    b.append(T0 + 3, b"c", None)
    batch = RecordBatch(b.build())
    assert (batch.base_offset, batch.last_offset_delta, batch.last_offset, batch.next_offset) == (100, 2, 102, 103)
    assert batch.partition_leader_epoch == 4 and batch.magic == 2
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (9, 2, 30)
    assert batch.last_sequence == 32
    assert (batch.base_timestamp, batch.max_timestamp) == (T0 + 5, T0 + 5)
    assert batch.records_count == len(batch) == 3
    assert batch.is_transactional and not batch.is_control
    assert batch.compression is Compression.NONE
    assert batch.timestamp_type is TimestampType.CREATE_TIME
    assert batch.size == batch.batch_length + 12 == len(batch.buffer)
    assert batch.crc == batch.compute_crc() and batch.crc_valid()
    assert batch.delete_horizon is None
    assert "base_offset=100" in repr(batch)


def test_records_have_absolute_offsets_and_timestamps():
    batch = RecordBatch(batch_bytes([b"x", b"y"], base_offset=41))
    assert list(batch.records()) == [BatchRecord(41, T0, b"k0", b"x", ()), BatchRecord(42, T0 + 1, b"k1", b"y", ())]
    assert list(batch) == list(batch.records())


def test_record_is_an_immutable_value_compared_by_fields():
    r = BatchRecord(1, 2, b"k", None, (("h", None),))
    assert r == BatchRecord(offset=1, timestamp=2, key=b"k", value=None, headers=(("h", None),))
    assert r != r._replace(value=b"")
    assert BatchRecord(1, 2, None, b"v").headers == ()
    assert hash(r) == hash(BatchRecord(1, 2, b"k", None, (("h", None),)))
    with pytest.raises(AttributeError):
        r.offset = 5
    with pytest.raises(AttributeError):
        r.extra = 1
    assert "..." in repr(BatchRecord(0, 0, None, b"v" * 1000))


def test_last_sequence_wraps_past_int32_max_as_kafka_does():
    b = BatchBuilder(producer_id=1, producer_epoch=0, base_sequence=2**31 - 2)
    for i in range(4):
        b.append(T0, None, b"x")
    assert RecordBatch(b.build()).last_sequence == 1
    assert RecordBatch(batch_bytes([b"x"])).last_sequence == -1


def test_construction_does_not_copy_the_buffer():
    data = bytearray(batch_bytes([b"x"]))
    batch = RecordBatch(data)
    assert batch.buffer.obj is data
    data[0:8] = (77).to_bytes(8, "big")
    assert batch.base_offset == 77  # fields are read live from the buffer


def test_a_longer_buffer_is_viewed_up_to_the_batch_end():
    first, second = batch_bytes([b"a"]), batch_bytes([b"b", b"c"], base_offset=1)
    batch = RecordBatch(first + second)
    assert batch.size == len(first) == len(batch.buffer)
    assert batch.crc_valid() and [r.value for r in batch.records()] == [b"a"]


def test_a_buffer_shorter_than_the_header_is_rejected_at_construction():
    with pytest.raises(CorruptRecord, match="61-byte header; found 60 bytes"):
        RecordBatch(batch_bytes([b"x"])[:60])


def test_validate_returns_the_batch_and_enforces_max_size():
    data = batch_bytes([b"x" * 100])
    assert RecordBatch(data).validate() is not None
    RecordBatch(data).validate(max_size=len(data))
    with pytest.raises(MessageTooLarge, match=f"{len(data)} bytes; the limit is 100"):
        RecordBatch(data).validate(max_size=100)


def test_iter_batches_yields_each_batch_with_its_position_and_stops_at_the_clean_end():
    parts = [batch_bytes([b"a"]), batch_bytes([b"b", b"c"], base_offset=1), batch_bytes([b"d"], base_offset=3)]
    data = b"".join(parts)
    found = list(iter_batches(data))
    assert [p for p, _ in found] == [0, len(parts[0]), len(parts[0]) + len(parts[1])]
    assert [b.base_offset for _, b in found] == [0, 1, 3]
    assert [bytes(b.buffer) for _, b in found] == parts


def test_iter_batches_returns_the_position_where_it_stopped():
    data = batch_bytes([b"a"]) + batch_bytes([b"b"])

    def stop_position(buf):
        stopped = yield from iter_batches(buf)
        return stopped

    def run(buf):
        gen = stop_position(buf)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value

    assert run(data) == len(data)
    assert run(data[:-1]) == len(data) // 2
    assert run(b"") == 0


@pytest.mark.parametrize("cut", [1, 11, 12, 13, 40])
def test_iter_batches_stops_before_a_torn_tail(cut):
    first, second = batch_bytes([b"a"]), batch_bytes([b"b"] * 3, base_offset=1)
    data = first + second[:-cut] if cut < len(second) else first
    assert [p for p, _ in iter_batches(data)] == [0]


def test_iter_batches_stops_at_a_zero_filled_tail():
    data = batch_bytes([b"a"]) + bytes(4096)
    assert [p for p, _ in iter_batches(data)] == [0]


def test_iter_batches_stops_at_an_impossible_batch_length():
    data = bytearray(batch_bytes([b"a"]) + batch_bytes([b"b"]))
    half = len(data) // 2
    data[half + 8:half + 12] = (48).to_bytes(4, "big")
    assert [p for p, _ in iter_batches(data)] == [0]
    data[half + 8:half + 12] = (-1).to_bytes(4, "big", signed=True)
    assert [p for p, _ in iter_batches(data)] == [0]


def test_iter_batches_starts_at_the_given_position():
    first, second = batch_bytes([b"a"]), batch_bytes([b"b"], base_offset=1)
    found = list(iter_batches(first + second, len(first)))
    assert [(p, b.base_offset) for p, b in found] == [(len(first), 1)]


def test_iter_batches_yields_batches_with_bad_crcs_for_dump_tools():
    data = bytearray(batch_bytes([b"a"]) + batch_bytes([b"b"]))
    data[-1] ^= 0xFF
    found = [b for _, b in iter_batches(data)]
    assert len(found) == 2 and found[0].crc_valid() and not found[1].crc_valid()


def test_iter_batches_over_an_mmap_reads_in_place(tmp_path):
    first, second = batch_bytes([b"a", b"b"]), batch_bytes([b"c"], base_offset=2)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(first + second)
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        view = memoryview(m)
        batches = [b for _, b in iter_batches(view)]
        assert [r.value for b in batches for r in b.records()] == [b"a", b"b", b"c"]
        write_base_offset(m, len(first), 500)
        assert batches[1].base_offset == 500 and batches[1].crc_valid()
        del batches  # views pin the mmap: release them before it closes
        view.release()
    assert read_base_offset(path.read_bytes(), len(first)) == 500


def test_write_base_offset_assigns_offsets_without_breaking_the_crc():
    first = batch_bytes([b"a"])
    data = bytearray(first + batch_bytes([b"b", b"c"]))
    assert read_batch_length(data, 0) == len(first) - 12
    write_base_offset(data, 0, 1000)
    write_base_offset(data, len(first), 1001)
    assert read_base_offset(data, 0) == 1000 and read_base_offset(data, len(first)) == 1001
    batches = [b.validate() for _, b in iter_batches(data)]
    assert [r.offset for b in batches for r in b.records()] == [1000, 1001, 1002]


def test_write_partition_leader_epoch_is_not_crc_covered():
    data = bytearray(batch_bytes([b"a"]))
    write_partition_leader_epoch(data, 0, 12)
    batch = RecordBatch(data).validate()
    assert batch.partition_leader_epoch == 12


def test_write_log_append_time_stamps_every_record_and_recomputes_the_crc():
    data = bytearray(batch_bytes([b"a", b"b"], timestamp=5))
    write_log_append_time(data, 0, T0)
    batch = RecordBatch(data).validate()
    assert batch.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert batch.max_timestamp == T0 and batch.base_timestamp == 5
    assert [r.timestamp for r in batch.records()] == [T0, T0]


def test_write_log_append_time_refuses_a_batch_that_does_not_fit():
    data = bytearray(batch_bytes([b"a"]))
    with pytest.raises(CorruptRecord):
        write_log_append_time(data[:-1], 0, T0)


def test_in_place_writes_need_a_writable_buffer():
    with pytest.raises(TypeError):
        write_base_offset(batch_bytes([b"a"]), 0, 5)


def test_gzip_batch_reads_back_its_records():
    b = BatchBuilder(compression=Compression.GZIP)
    for i in range(50):
        b.append(T0 + i, None, b"same value %d" % (i % 3))
    batch = RecordBatch(b.build()).validate()
    assert batch.compression is Compression.GZIP
    assert batch.size < b.estimated_size()
    assert [r.value for r in batch.records()] == [b"same value %d" % (i % 3) for i in range(50)]


def test_gzip_records_in_several_members_are_all_read():
    b = BatchBuilder()
    for v in (b"a", b"b", b"c"):
        b.append(T0, None, v)
    plain = b.build()
    region = plain[61:]
    members = gzip.compress(region[:4], mtime=0) + gzip.compress(region[4:], mtime=0)
    data = bytearray(plain[:61] + members)
    data[8:12] = (len(data) - 12).to_bytes(4, "big")
    data[21:23] = (1).to_bytes(2, "big")
    data[17:21] = native.crc32c(bytes(data[21:])).to_bytes(4, "big")
    assert [r.value for r in RecordBatch(data).validate().records()] == [b"a", b"b", b"c"]


def test_whole_batch_at_and_next_whole_batch_find_the_batches_after_damaged_bytes():
    a, b = batch_bytes([b"x" * 40], base_offset=5), batch_bytes([b"y", b"z"], base_offset=9)
    data = bytearray(b"\x02" * 30 + a + b)          # a run of magic-like bytes before them
    n = len(data)
    assert whole_batch_at(data, 30, n) == (5, len(a))
    assert whole_batch_at(data, 30, n - 1) == (5, len(a))             # b need not fit
    assert whole_batch_at(data, 30 + len(a), n - 1) is None            # torn by the limit
    assert next_whole_batch(data, 0, n, below_offset=100) == (5, 30)
    data[30 + 8:30 + 12] = (10**6).to_bytes(4, "big")                  # a's batchLength damaged
    assert whole_batch_at(data, 30, n) is None
    assert next_whole_batch(data, 30, n, below_offset=100) == (9, 30 + len(a))
    assert next_whole_batch(data, 30, n, below_offset=9) is None        # offsets out of range
    assert next_whole_batch(data, 30, n, below_offset=100, above_offset=9) is None
    assert next_whole_batch(data, 30, 30 + len(a) + 1, below_offset=100) is None
    data[-3] ^= 1                                                       # b's CRC fails
    assert next_whole_batch(data, 30, n, below_offset=100) is None
    assert SCAN_BYTES == 16 << 20


@pytest.mark.parametrize("compression", list(Compression))
def test_uncompressed_is_the_batch_with_plain_records_that_decode_to_the_same(compression):
    b = BatchBuilder(compression=compression, base_offset=7, producer_id=3, producer_epoch=1, base_sequence=5)
    for i in range(20):
        b.append(T0 + i, b"k%d" % i, b"v" * i, [("h", b"%d" % i)])
    batch = RecordBatch(b.build())
    data = batch.uncompressed()
    plain = RecordBatch(data)
    assert plain.compression == Compression.NONE and plain.size == len(data)
    assert (plain.base_offset, plain.producer_id, plain.base_sequence, plain.records_count) == (7, 3, 5, 20)
    assert list(plain.records()) == list(batch.records())
    assert native.decode_records(data).ok
    if compression == Compression.NONE:
        assert data == bytes(batch.buffer)


def test_uncompressed_refuses_what_records_refuses():
    data = bytearray(batch_bytes([b"x"], compression=Compression.GZIP))
    with pytest.raises(CorruptRecord, match="does not fit"):
        RecordBatch(bytes(data[:-1])).uncompressed()
    data[-12:-4] = bytes(8)   # inside the gzip stream's deflate data or trailer
    with pytest.raises(CorruptRecord, match="gzip"):
        RecordBatch(bytes(data)).uncompressed()
    data[22] = 3   # gzip bytes marked lz4
    with pytest.raises(CorruptRecord, match="lz4 records do not decompress"):
        RecordBatch(bytes(data)).uncompressed()
    data[22] = 5
    with pytest.raises(CorruptRecord, match="compression id expected 0-4, found 5"):
        RecordBatch(bytes(data)).uncompressed()
