"""BatchBuilder: what append and build write, size estimates, and misuse."""
import pytest

from odradek.client.records import (
    BATCH_HEADER_SIZE, MAX_RECORD_OVERHEAD, BatchBuilder, BatchRecord, Compression, RecordBatch,
    TimestampType, size_of_record)

T0 = 1_700_000_000_000


def decode(data):
    return list(RecordBatch(data).validate().records())


def test_append_returns_offset_deltas_and_len_counts_records():
    b = BatchBuilder()
    assert [b.append(T0, None, b"v") for _ in range(3)] == [0, 1, 2]
    assert len(b) == 3


def test_defaults_are_what_a_non_idempotent_kafka_producer_writes():
    b = BatchBuilder()
    b.append(T0, None, b"v")
    batch = RecordBatch(b.build())
    assert (batch.base_offset, batch.partition_leader_epoch, batch.producer_id,
            batch.producer_epoch, batch.base_sequence, batch.attributes) == (0, -1, -1, -1, -1, 0)


def test_attribute_flags_follow_the_builder_options():
    b = BatchBuilder(producer_id=5, producer_epoch=0, transactional=True, control=True,
                     timestamp_type=TimestampType.LOG_APPEND_TIME, compression="gzip")
    b.append(T0, b"\x00\x00\x00\x01", b"")
    batch = RecordBatch(b.build())
    assert batch.is_transactional and batch.is_control
    assert batch.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert batch.compression is Compression.GZIP
    assert batch.attributes == 0x10 | 0x20 | 0x08 | 0x01


def test_estimated_size_is_exact_for_uncompressed_batches():
    b = BatchBuilder()
    assert b.estimated_size() == BATCH_HEADER_SIZE
    b.append(T0, b"k", b"v" * 300, [("h", b"x")])
    b.append(T0 - 9000, None, b"")
    assert b.estimated_size() == len(b.build())


@pytest.mark.parametrize("key,value,headers,offset_delta,ts_delta", [
    (None, None, (), 0, 0),
    (b"", b"", (), 1, 0),
    (b"k", b"v" * 100, (), 5, 3),
    (b"k" * 9000, b"v" * 70000, (("a", None), ("\u00e9", b"x" * 200)), 20000, -(2**40)),
])
def test_size_of_record_is_the_exact_bytes_append_adds(key, value, headers, offset_delta, ts_delta):
    b = BatchBuilder()
    for _ in range(offset_delta):
        b.append(T0, None, None)
    start = b.estimated_size()
    b.append(T0 + ts_delta, key, value, headers)
    assert b.estimated_size() - start == size_of_record(key, value, headers, offset_delta, ts_delta)


def test_max_record_overhead_bounds_size_of_record_beyond_the_payload():
    payload = 3 + 100
    worst = size_of_record(b"abc", b"v" * 100, (), 2**31 - 1, -(2**63))
    assert worst - payload <= MAX_RECORD_OVERHEAD


def test_timestamps_set_base_and_max_from_first_and_largest():
    b = BatchBuilder()
    for ts in (T0 + 10, T0, T0 + 50, T0 + 20):
        b.append(ts, None, b"v")
    assert (b.base_timestamp, b.max_timestamp) == (T0 + 10, T0 + 50)
    batch = RecordBatch(b.build())
    assert (batch.base_timestamp, batch.max_timestamp) == (T0 + 10, T0 + 50)
    assert [r.timestamp for r in batch.records()] == [T0 + 10, T0, T0 + 50, T0 + 20]


def test_fast_and_slow_encodings_give_identical_records():
    b = BatchBuilder()
    b.append(T0, b"k", b"v")                          # fast path
    b.append(T0 + 10_000, b"k" * 8192, b"v")          # long key: slow path
    b.append(T0 - 1, bytearray(b"k"), memoryview(b"v"))  # buffers: slow path
    b.append(T0, b"k", None)                          # null value: slow path
    b.append(T0, b"k", b"v", [("h", None)])           # headers: slow path
    assert decode(b.build()) == [
        BatchRecord(0, T0, b"k", b"v"), BatchRecord(1, T0 + 10_000, b"k" * 8192, b"v"),
        BatchRecord(2, T0 - 1, b"k", b"v"), BatchRecord(3, T0, b"k", None),
        BatchRecord(4, T0, b"k", b"v", (("h", None),))]


def test_array_values_are_written_as_their_bytes():
    from array import array
    b = BatchBuilder()
    value = array("i", [1, 2, 3])
    b.append(T0, None, value)
    assert decode(b.build())[0].value == value.tobytes()


@pytest.mark.parametrize("timestamp", [1.5, "1", None])
def test_timestamp_must_be_an_int(timestamp):
    b = BatchBuilder()
    with pytest.raises(TypeError, match="timestamp"):
        b.append(timestamp, None, b"v")
    assert len(b) == 0


def test_a_bad_later_record_leaves_the_builder_unchanged():
    b = BatchBuilder()
    b.append(T0, None, b"v")
    snapshot = (len(b), b.estimated_size(), b.max_timestamp)
    for bad in [(T0 + 5.5, None, b"v"), (T0 + 9, "str key", b"v"), (T0 + 9, None, 5),
                (T0 + 9, None, b"v", [(b"bytes key", b"x")]), (T0 + 9, None, b"v", [("h", "str")])]:
        with pytest.raises(TypeError):
            b.append(*bad)
        assert (len(b), b.estimated_size(), b.max_timestamp) == snapshot
    with pytest.raises(ValueError):
        b.append(2**63, None, b"v")
    assert decode(b.build()) == [BatchRecord(0, T0, None, b"v")]


def test_a_timestamp_too_far_from_the_first_is_a_value_error():
    b = BatchBuilder()
    b.append(-(2**63), None, b"v")
    with pytest.raises(ValueError, match="too far"):
        b.append(2**63 - 1, None, b"v")


def test_building_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="no records"):
        BatchBuilder().build()


@pytest.mark.parametrize("codec", [Compression.SNAPPY, Compression.LZ4, Compression.ZSTD, "zstd", "lz4"])
def test_builder_writes_every_kafka_codec_and_marks_it(codec):
    b = BatchBuilder(compression=codec)
    for i in range(50):
        b.append(T0 + i, b"k%d" % i, b"value %d " % i * 20)
    data = b.build()
    batch = RecordBatch(data).validate()
    assert batch.compression == Compression.from_name(codec) if isinstance(codec, str) else codec
    assert len(data) < b.estimated_size() / 3     # compressed
    assert [r.value for r in batch.records()] == [b"value %d " % i * 20 for i in range(50)]


def test_builder_refuses_an_unknown_codec_name():
    with pytest.raises(ValueError, match="brotli"):
        BatchBuilder(compression="brotli")


def test_transactional_batches_need_a_producer_id():
    with pytest.raises(ValueError, match="producer id"):
        BatchBuilder(transactional=True)


def test_build_can_be_called_again_after_more_appends():
    b = BatchBuilder()
    b.append(T0, None, b"a")
    one = b.build()
    assert b.build() == one
    b.append(T0, None, b"b")
    assert [r.value for r in decode(b.build())] == [b"a", b"b"]
    assert decode(one) == [BatchRecord(0, T0, None, b"a")]


def test_gzip_output_is_deterministic_and_level_is_configurable():
    def build(level=None):
        b = BatchBuilder(compression=Compression.GZIP, compression_level=level)
        for i in range(20):
            b.append(T0 + i, None, b"abc" * 30)
        return b.build()

    assert build() == build()
    assert decode(build(1)) == decode(build(9)) == decode(build())
    assert len(build()) < 20 * 90


def test_base_offset_option_shifts_every_record_offset():
    b = BatchBuilder(base_offset=10**12)
    b.append(T0, None, b"a")
    b.append(T0, None, b"b")
    assert [r.offset for r in decode(b.build())] == [10**12, 10**12 + 1]
