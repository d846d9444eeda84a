"""The C record encoder and partitioner of the Producer (odradek._hotpath, hp_producer.c)
against their Python references: BatchBuilder (client/records/_builder.py) and
partition_for_key (client/partitioner.py), byte for byte, on the same inputs."""
import pytest
from hypothesis import given, settings, strategies as st

from odradek import _hotpath
from odradek._native import lib
from odradek.client.partitioner import partition_for_key
from odradek.client.records import BatchBuilder, RecordBatch, layout

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# lengths on both sides of each varint size (1 byte < 64, 2 bytes < 8192, 3 bytes < 2^20);
# the long ones repeat one byte (cheap to generate: the lengths are what matters there)
_blob = st.one_of(st.binary(max_size=70),
                  st.builds(lambda n, b: bytes([b]) * n, st.sampled_from([8191, 8192, 8193, 20_000]),
                            st.integers(0, 255)))
_maybe_blob = st.one_of(st.none(), _blob)
_headers = st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.binary(max_size=40))), max_size=4)
# deltas from the first record: small, beyond 8191 (varint sizes), beyond int32, negative
_deltas = st.one_of(st.integers(-10, 10_000), st.integers(-(1 << 40), 1 << 40),
                    st.sampled_from([(1 << 31), -(1 << 31) - 1, 8191, 8192]))


def _records(base, deltas, fields):
    return [(base + d, k, v, h) for d, (k, v, h) in zip(deltas, fields)]


def _reference(records, **ids):
    b = BatchBuilder(**ids)
    for ts, k, v, h in records:
        b.append(ts, k, v, h)
    return b.build()


def test_the_c_header_offsets_are_the_layouts():
    for c_name, py_name in [("BASE_OFFSET", "BASE_OFFSET"), ("LENGTH", "BATCH_LENGTH"),
                            ("LEADER_EPOCH", "PARTITION_LEADER_EPOCH"), ("MAGIC", "MAGIC"),
                            ("CRC", "CRC"), ("ATTRIBUTES", "ATTRIBUTES"),
                            ("LAST_DELTA", "LAST_OFFSET_DELTA"), ("BASE_TS", "BASE_TIMESTAMP"),
                            ("MAX_TS", "MAX_TIMESTAMP"), ("PRODUCER_ID", "PRODUCER_ID"),
                            ("PRODUCER_EPOCH", "PRODUCER_EPOCH"), ("BASE_SEQ", "BASE_SEQUENCE"),
                            ("RECORDS", "RECORDS_COUNT")]:
        assert getattr(lib, "ODK_BATCH_OFF_" + c_name) == getattr(layout, py_name + "_OFFSET"), c_name
    assert lib.ODK_BATCH_HEADER_SIZE == layout.BATCH_HEADER_SIZE


@settings(max_examples=150, deadline=None)
@given(base=st.integers(-(1 << 50), 1 << 50), deltas=st.lists(_deltas, min_size=1, max_size=12),
       fields=st.lists(st.tuples(_maybe_blob, _maybe_blob, _headers), min_size=12, max_size=12),
       ids=st.one_of(st.just({}), st.fixed_dictionaries({
           "producer_id": st.integers(0, INT64_MAX), "producer_epoch": st.integers(0, 32767),
           "base_sequence": st.integers(0, 0x7fffffff)})))
def test_c_batches_are_byte_identical_to_batchbuilders(base, deltas, fields, ids):
    deltas[0] = 0
    records = _records(base, deltas, fields)
    assert _hotpath.encode_batch(records, **ids) == _reference(records, **ids)


@settings(max_examples=100, deadline=None)
@given(first=st.sampled_from([INT64_MIN, INT64_MAX, -1, 0]), second=st.sampled_from([INT64_MIN, INT64_MAX, 0]))
def test_timestamps_at_the_int64_ends_match_or_fail_alike(first, second):
    records = [(first, None, b"a", []), (second, b"k", None, [])]
    try:
        expected = _reference(records)
    except ValueError:
        with pytest.raises(ValueError):
            _hotpath.encode_batch(records)
        return
    assert _hotpath.encode_batch(records) == expected


def test_the_batch_decodes_to_the_records_given():
    records = [(1_700_000_000_000 + i, None if i % 3 == 0 else b"k%d" % i, b"v" * i,
                [("h", None), ("trace", b"x%d" % i)]) for i in range(50)]
    batch = RecordBatch(_hotpath.encode_batch(records, producer_id=7, producer_epoch=2, base_sequence=40))
    batch.validate()
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (7, 2, 40)
    got = [(r.timestamp, r.key, r.value, list(r.headers)) for r in batch.records()]
    assert got == [(ts, k, v, h) for ts, k, v, h in records]


def test_str_bytearray_and_memoryview_encode_as_their_bytes():
    as_bytes = _hotpath.encode_batch([(5, b"key", "välue".encode(), [("h", "x".encode())])])
    assert _hotpath.encode_batch([(5, bytearray(b"key"), "välue", [("h", "x")])]) == as_bytes
    assert _hotpath.encode_batch([(5, memoryview(b"key"), memoryview("välue".encode()),
                                   {"h": bytearray(b"x")})]) == as_bytes
    strided = memoryview(b"kxeyy")[::2]   # not contiguous: its bytes, copied
    assert _hotpath.encode_batch([(5, strided, b"v", None)]) == _hotpath.encode_batch([(5, b"key", b"v", None)])


@pytest.mark.parametrize("bad", [1, 2.5, [b"x"], object(), {b"x": 1}])
@pytest.mark.parametrize("where", ["key", "value"])
def test_non_bytes_keys_and_values_are_type_errors_naming_the_argument(bad, where):
    record = (1, bad, b"v", None) if where == "key" else (1, b"k", bad, None)
    with pytest.raises(TypeError, match=where):
        _hotpath.encode_batch([record])


@pytest.mark.parametrize("headers, message", [
    (5, "headers must be"), ("h=x", "headers must be"), ([b"hx"], "each header"),
    ([("h", b"x", b"y")], "each header"), ([(b"h", b"x")], "header key"), ([(1, b"x")], "header key"),
    ([("h", 5)], "header value"), ({"h": object()}, "header value")])
def test_bad_headers_are_type_errors(headers, message):
    with pytest.raises(TypeError, match=message):
        _hotpath.encode_batch([(1, b"k", b"v", headers)])


@pytest.mark.parametrize("timestamp, error", [(1.5, TypeError), ("1", TypeError), (True, TypeError),
                                              (1 << 63, ValueError), (-(1 << 63) - 1, ValueError)])
def test_bad_timestamps_are_refused(timestamp, error):
    with pytest.raises(error):
        _hotpath.encode_batch([(timestamp, b"k", b"v", None)])


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=300), n=st.integers(1, 10_000))
def test_the_c_partitioner_is_kafkas(key, n):
    assert _hotpath.partition_for_key(key, n) == partition_for_key(key, n)


def test_the_accumulator_refuses_bad_arguments_before_any_link_exists():
    acc = _hotpath.Accumulator(16384, 5, 1, -1, -1)
    for args, kwargs, message in [((1,), {}, "topic"), (("t", 1), {}, "value"), (("t",), {"key": [1]}, "key"),
                                  (("t",), {"headers": object()}, "headers"),
                                  (("t",), {"partition": "0"}, "partition"),
                                  (("t",), {"timestamp": 1.0}, "timestamp"),
                                  (("t",), {"on_delivery": 3}, "on_delivery"),
                                  ((), {}, "topic"), (("t",), {"colour": 1}, "colour"),
                                  (("t", b"v"), {"value": b"w"}, "value")]:
        with pytest.raises(TypeError, match=message):
            acc.produce(*args, **kwargs)
    assert acc.queued == 0
    # valid arguments: the accumulator asks for what it lacks, queuing nothing
    assert acc.produce("t", b"v")[0] == _hotpath.PRODUCE_NEED_COUNT
    assert acc.produce("t", b"v", partition=3)[:2] == (_hotpath.PRODUCE_NEED_LINK, 3)
    acc.set_partition_count("t", 4)
    assert acc.produce("t", b"v", key=b"user-1")[:2] == (_hotpath.PRODUCE_NEED_LINK,
                                                          partition_for_key(b"user-1", 4))
    with pytest.raises(ValueError, match="out of range"):
        acc.produce("t", b"v", partition=1 << 40)
    assert acc.queued == 0
