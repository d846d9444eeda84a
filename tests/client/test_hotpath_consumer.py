"""The consumer's fetch decoder in C (odradek._hotpath.decode_fetch and the Record type,
daemon/c_ext/hp_consumer.c) against its Python reference: the per-batch walk that
Consumer._decode made before it (kept below), whose records come from
RecordBatch.records(). Random fetches, damaged ones included, must give the same records,
stop at the same batch with the same error class and words, and leave the same next
offset. Then the Record type, hostile arguments, and Consumer._take over the buffer.
"""
import gc
import pickle
import struct
import weakref
from collections import deque
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek import _hotpath
from odradek._hotpath import BytesView
from odradek.client import Record, native
from odradek.client._partition_read import Fault, Fetched
from odradek.client._unreadable import why_unreadable as _why
from odradek.client._fetch_decode import HIGH_WATERMARK_MAX as _HIGH_WATERMARK_MAX
from odradek.client.consumer import Consumer
from odradek.client.errors import CorruptRecord, KafkaError
from odradek.client.message import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, FailedDelivery, TopicPartition
from odradek.client.records import BatchBuilder, Compression, iter_batches, write_base_offset, write_log_append_time
from odradek.client.records.layout import (ATTRIBUTES_OFFSET, COMPRESSION_MASK, CONTROL_MASK, CRC_OFFSET,
                                            HEADER_STRUCT, LOG_OVERHEAD, MAGIC, TIMESTAMP_TYPE_MASK)
from odradek.client.records.varint import encode_varint, encode_varlong

T0 = 1_700_000_000_000
HW_LIMIT = _HIGH_WATERMARK_MAX


# ---- the reference: Consumer._decode before decode_fetch, records from records() ------------

def reference(data, pos, hw, check_crcs):
    """(records, stop, end): stop = (error class, words, batch position, floor) of the batch
    the fetch cannot read, else None; end = (next offset, ended above the high watermark)
    when it read to its end."""
    out = []
    next_offset, end, stop = pos, 0, len(data)
    above = False
    for position, batch in iter_batches(data):
        view = batch.buffer
        (base, _, _, magic, stored_crc, attrs, last_delta, _, _, _, _, _,
         count) = HEADER_STRUCT.unpack_from(view)
        if check_crcs and native.crc32c(view[ATTRIBUTES_OFFSET:]) != stored_crc:
            return out, (CorruptRecord, "fails its CRC-32C check (check.crcs)", position, next_offset), None
        if magic != MAGIC or last_delta < 0 or not 0 <= count <= last_delta + 1:
            return out, (CorruptRecord, f"has a damaged header (magic {magic}, lastOffsetDelta {last_delta}, "
                                        f"recordsCount {count})", position, next_offset), None
        if base >= hw and base >= (next_offset if end else pos):
            above, stop = True, position
            break
        if base < (next_offset if end else 0) or base + last_delta < pos or base >= hw:
            return out, (CorruptRecord, f"has a damaged baseOffset ({base}, after offset {next_offset - 1})",
                         position, next_offset), None
        end = position + len(view)
        next_offset = base + last_delta + 1
        if attrs & CONTROL_MASK:
            continue
        ts_type = TIMESTAMP_LOG_APPEND_TIME if attrs & TIMESTAMP_TYPE_MASK else TIMESTAMP_CREATE_TIME
        try:
            out += [Record("t", 3, r.offset, r.key, r.value, list(r.headers) or None, r.timestamp, ts_type)
                    for r in batch.records() if r.offset >= pos]
        except CorruptRecord as e:
            return out, (type(e), _why(e, attrs & COMPRESSION_MASK), position, base), None
    if end < stop:
        return out, (CorruptRecord, "has a damaged length (batchLength) or is cut short", end, next_offset), None
    return out, None, (next_offset, above)


def consumer_decode(data, pos, hw, check_crcs, zero_copy=False):
    """Consumer._decode (decode_fetch) over `data` as one fetch at `pos`, in reference()'s terms."""
    consumer = Consumer.__new__(Consumer)
    consumer._buffer, consumer._buffered, consumer._faults = deque(), 0, 0
    consumer._check_crcs, consumer._zero_copy = check_crcs, zero_copy
    stopped = []

    def unreadable(part, error_class, reason, position, floor, high_watermark, nbytes):
        stopped.append((error_class, reason, position, floor))
        return nbytes

    consumer._unreadable = unreadable
    part = SimpleNamespace(tp=TopicPartition("t", 3), fetched=pos, position=pos, run="a run", aborted=None,
                           last_item=None)
    assert Consumer._decode(consumer, part, memoryview(data), pos, hw) == len(data)
    records = [r for item in consumer._buffer for r in item.records]
    assert len(records) == consumer._buffered and all(type(r) is Record for r in records)
    for r in records:
        for field in (r.key(), r.value()):
            assert field is None or (type(field) is BytesView and memoryview(field).readonly if zero_copy
                                     else type(field) is bytes)
    if stopped:
        return records, stopped[0], None
    return records, None, (part.fetched, part.run is None)


# ---- random fetches ---------------------------------------------------------------------------

headers_st = st.lists(st.tuples(st.text(max_size=4), st.none() | st.binary(max_size=6)), max_size=2)
record_st = st.tuples(st.integers(-3, 3), st.none() | st.binary(max_size=12), st.none() | st.binary(max_size=30),
                      headers_st)
batch_st = st.tuples(st.lists(record_st, min_size=1, max_size=5),
                     st.sampled_from(["none", "none", "none", "gzip", "snappy", "lz4", "zstd", "control",
                                      "append_time"]),
                     st.integers(0, 2))                                  # offsets skipped before it
damage_st = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255), st.booleans()), max_size=3)


def build_log(batches, first_offset):
    out, offset, spans = bytearray(), first_offset, []
    for records, kind, gap in batches:
        offset += gap
        b = BatchBuilder(compression=Compression.from_name(kind) if kind in ("gzip", "snappy", "lz4", "zstd")
                         else Compression.NONE,
                         producer_id=9 if kind == "control" else -1, producer_epoch=0 if kind == "control" else -1,
                         transactional=kind == "control", control=kind == "control")
        for td, key, value, headers in records:
            b.append(T0 + td, key, value, headers)
        data = bytearray(b.build())
        write_base_offset(data, 0, offset)
        if kind == "append_time":
            write_log_append_time(data, 0, T0 + 777)
        spans.append((len(out), offset, offset + len(records) - 1))
        out += data
        offset += len(records)
    return out, spans


def damaged(log, spans, damage, refresh_crcs):
    """`log` with bytes set: (where, value, in a header) each; the CRCs made right again
    after, if refresh_crcs (so damage reaches the checks after the CRC's)."""
    out = bytearray(log)
    for where, value, in_header in damage:
        start, _, _ = spans[where % len(spans)]
        at = start + where % 61 if in_header else where % len(out)
        out[at] = value
    if refresh_crcs:
        for position, batch in iter_batches(out):
            struct.pack_into(">I", out, position + CRC_OFFSET, batch.compute_crc())
    return out


quick = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(batches=st.lists(batch_st, min_size=1, max_size=5), first=st.integers(0, 1 << 40),
       pos_at=st.integers(0, 30), hw_at=st.none() | st.integers(-2, 30), damage=damage_st,
       refresh_crcs=st.booleans(), check_crcs=st.booleans(), zero_copy=st.booleans(),
       cut=st.sampled_from([0, 0, 0, 0, 0, 1, 7, 40, 70]))
def test_decode_fetch_gives_what_the_reference_gives(batches, first, pos_at, hw_at, damage, refresh_crcs,
                                                     check_crcs, zero_copy, cut):
    log, spans = build_log(batches, first)
    last = spans[-1][2]
    pos = min(first + pos_at, last)
    hw = HW_LIMIT if hw_at is None else max(0, first + hw_at)
    log = damaged(log, spans, damage, refresh_crcs)
    if cut and cut < len(log):          # a torn tail now and then
        log = log[:len(log) - cut]
    # a fetch's bytes start at the batch holding pos (or the first after it)
    start = next((s for s, _, last_offset in spans if last_offset >= pos), 0)
    data = bytes(log[start:])
    want = reference(data, pos, hw, check_crcs)
    got = consumer_decode(data, pos, hw, check_crcs, zero_copy)
    assert got[0] == want[0]
    assert got[1:] == want[1:]


# ---- the C header reader (read_headers) on malformed headers ---------------------------------

def raw_batch(records):
    """One uncompressed v2 batch at offset 0 of `records`, each (value, header section
    bytes: the headers count varint and what follows, as is), CRC-32C right."""
    body = bytearray()
    for i, (value, headers) in enumerate(records):
        rec = (b"\0" + encode_varlong(i) + encode_varint(i) + encode_varint(-1) + encode_varint(len(value))
               + value + headers)
        body += encode_varint(len(rec)) + rec
    head = bytearray(HEADER_STRUCT.pack(0, HEADER_STRUCT.size - LOG_OVERHEAD + len(body), 0, MAGIC, 0, 0,
                                        len(records) - 1, T0, T0 + len(records), -1, -1, -1, len(records)))
    data = head + body
    struct.pack_into(">I", data, CRC_OFFSET, native.crc32c(bytes(data[ATTRIBUTES_OFFSET:])))
    return bytes(data)


header_key_st = st.binary(max_size=5) | st.text(max_size=3).map(str.encode)      # often not UTF-8
framed_headers_st = st.lists(st.tuples(header_key_st, st.none() | st.binary(max_size=4)), max_size=3).map(
    lambda hs: encode_varint(len(hs)) + b"".join(
        encode_varint(len(k)) + k + (encode_varint(-1) if v is None else encode_varint(len(v)) + v)
        for k, v in hs))
header_section_st = st.one_of(
    # well-framed headers whose keys may not be UTF-8 and values may be null (twice as often)
    framed_headers_st, framed_headers_st,
    # a count and lengths that need not fit: any varints and bytes
    st.lists(st.integers(-3, 6).map(encode_varint) | st.binary(min_size=1, max_size=3), max_size=6).map(b"".join),
    # a varint longer than 5 bytes, or wider than 32 bits
    st.sampled_from([b"\x01\x80\x80\x80\x80\x80\x01", b"\x01\xff\xff\xff\xff\x1f"]))


@quick
@given(records=st.lists(st.tuples(st.binary(max_size=6), header_section_st), min_size=1, max_size=4),
       pos=st.integers(0, 3), zero_copy=st.booleans())
def test_the_c_header_reader_gives_what_the_reference_gives_on_malformed_headers(records, pos, zero_copy):
    data = raw_batch(records)
    pos = min(pos, len(records) - 1)
    assert consumer_decode(data, pos, HW_LIMIT, True, zero_copy) == reference(data, pos, HW_LIMIT, True)


def test_every_stop_of_decode_fetch_is_met():
    """The random test's ingredients reach every way decode_fetch stops (a check on the
    test, with fixed inputs)."""
    good = build_log([([(0, b"k", b"v", [])], "none", 0)] * 3, 10)[0]
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    header = bytearray(good)
    header[16] = 3                    # magic of the first batch
    order = bytearray(good)
    write_base_offset(order, len(good) // 3, 5)
    cases = {
        "end": (good, 10, HW_LIMIT, None),
        "above": (good, 10, 11, None),
        "length": (good[:-3], 10, HW_LIMIT, "damaged length"),
        "crc": (bad_crc, 10, HW_LIMIT, "CRC-32C"),
        "header": (header, 10, HW_LIMIT, "damaged header (magic 3"),
        "order": (order, 10, HW_LIMIT, "damaged baseOffset (5, after offset 10)"),
    }
    for name, (data, pos, hw, words) in cases.items():
        want = reference(bytes(data), pos, hw, True)
        assert consumer_decode(bytes(data), pos, hw, True) == want, name
        assert (want[1] is None) == (words is None) and (words is None or words in want[1][1]), name
    assert reference(good, 10, 11, True)[2] == (11, True)


def test_a_header_key_that_is_not_utf8_goes_to_python_which_names_it():
    b = BatchBuilder()
    b.append(T0, b"k", b"v", [("ab", b"x")])
    b.append(T0, b"k", b"w", [("cd", None)])
    data = bytearray(b"".join([build_log([([(0, b"k", b"v", [])], "none", 0)], 0)[0], b.build()]))
    write_base_offset(data, len(data) - len(b.build()), 1)
    data[data.rindex(b"cd")] = 0xFF
    struct.pack_into(">I", data, len(data) - len(b.build()) + CRC_OFFSET,
                     native.crc32c(bytes(data[len(data) - len(b.build()) + ATTRIBUTES_OFFSET:])))
    records, stop, _ = consumer_decode(bytes(data), 0, HW_LIMIT, True)
    assert [r.offset() for r in records] == [0]          # the whole batch before it, none of its own
    assert stop[0] is CorruptRecord and "record 1 header key is not UTF-8" in stop[1]
    assert consumer_decode(bytes(data), 0, HW_LIMIT, True) == reference(bytes(data), 0, HW_LIMIT, True)


def test_a_timestamp_past_int64_is_pythons_sum():
    b = BatchBuilder()
    b.append(0, b"k", b"v")
    b.append(10, b"k", b"w")
    data = bytearray(b.build())
    struct.pack_into(">q", data, 27, (1 << 63) - 5)                 # baseTimestamp
    struct.pack_into(">I", data, CRC_OFFSET, native.crc32c(bytes(data[ATTRIBUTES_OFFSET:])))
    records, stop, _ = consumer_decode(bytes(data), 0, HW_LIMIT, True)
    assert stop is None and [r.timestamp()[1] for r in records] == [(1 << 63) - 5, (1 << 63) + 5]


def test_zero_copy_views_share_one_export_and_pin_the_buffer():
    import mmap
    log = build_log([([(0, b"key", b"value%d" % i, [])], "none", 0) for i in range(4)], 0)[0]
    mm = mmap.mmap(-1, len(log))
    mm[:] = log
    whole = memoryview(mm)
    records, _, _, _, _, _, _ = _hotpath.decode_fetch(whole[0:len(log)], 0, 0, 0, HW_LIMIT, "t", 0, True, True)
    assert [bytes(r.value()) for r in records] == [b"value%d" % i for i in range(4)]
    assert all(type(r.value()) is BytesView and memoryview(r.key()).readonly for r in records)
    assert not any(gc.is_tracked(x) for r in records for x in (r, r.key(), r.value()))   # no container: untracked
    with pytest.raises(TypeError):
        records[0].value()[0] = 1
    whole.release()
    with pytest.raises(BufferError):
        mm.close()                     # the record views keep the map
    kept = records[2].value()
    del records
    gc.collect()
    assert bytes(kept) == b"value2"
    del kept
    gc.collect()
    mm.close()                         # the last view gone: the map goes


# ---- hostile arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("args, error", [
    ((b"", 0, 0, 0, 10, "t", 0, True), TypeError),                       # 8 arguments
    (("text", 0, 0, 0, 10, "t", 0, True, False), TypeError),             # not a buffer
    ((b"", "0", 0, 0, 10, "t", 0, True, False), TypeError),
    ((b"", 0, 0, 0, 10.0, "t", 0, True, False), TypeError),
    ((b"", 0, 0, 0, 10, b"t", 0, True, False), TypeError),               # topic not a str
    ((b"", 0, 0, 0, 10, "t", None, True, False), TypeError),
    ((b"", 1, 0, 0, 10, "t", 0, True, False), ValueError),               # start past the end
    ((b"", -1, 0, 0, 10, "t", 0, True, False), ValueError),
    ((b"", 0, -1, 0, 10, "t", 0, True, False), ValueError),              # pos < 0
    ((b"", 0, 5, 4, 10, "t", 0, True, False), ValueError),               # next_offset < pos
    ((b"", 0, 0, 0, (1 << 63) - 1, "t", 0, True, False), ValueError),    # high watermark too high
    ((b"", 0, 0, 0, 1 << 64, "t", 0, True, False), OverflowError),
    ((memoryview(bytes(8)).cast("q"), 0, 0, 0, 10, "t", 0, True, False), ValueError),   # not bytes
    ((memoryview(bytes(8))[::2], 0, 0, 0, 10, "t", 0, True, False), ValueError),        # not contiguous
])
def test_decode_fetch_refuses_bad_arguments_with_named_errors(args, error):
    with pytest.raises(error):
        _hotpath.decode_fetch(*args)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), pos=st.integers(0, 50), hw=st.integers(0, 100), start=st.integers(0, 300),
       flags=st.tuples(st.booleans(), st.booleans()))
def test_decode_fetch_never_crashes_on_garbage(data, pos, hw, start, flags):
    start = min(start, len(data))
    records, status, at, next_offset, *_ = _hotpath.decode_fetch(data, start, pos, pos, hw, "t", 0, *flags)
    assert start <= at <= len(data) and next_offset >= pos and status in range(7)


# ---- Record ----------------------------------------------------------------------------------

def test_record_takes_the_constructor_signature_and_defaults_to_create_time():
    r = Record("t", 1, 2, b"k", b"v", [("h", None)], 3)
    assert (r.topic(), r.partition(), r.offset(), r.key(), r.value(), r.headers(), r.timestamp(), r.error()) == \
        ("t", 1, 2, b"k", b"v", [("h", None)], (TIMESTAMP_CREATE_TIME, 3), None)
    assert Record(topic="t", partition=1, offset=2, key=None, value=None, headers=None, timestamp=3,
                  timestamp_type=TIMESTAMP_LOG_APPEND_TIME).timestamp() == (TIMESTAMP_LOG_APPEND_TIME, 3)
    assert Record("t", 1, 2, None, None, None, 3, timestamp_type=1) == Record("t", 1, 2, None, None, None, 3, 1)
    for bad in [("t", 1, 2, None, None, []), ("t",) * 9]:
        with pytest.raises(TypeError):
            Record(*bad)
    with pytest.raises(TypeError):
        Record("t", 1, 2, None, None, [], 3, nope=1)


def test_record_reads_as_confluent_kafkas_message_does():
    confluent = pytest.importorskip("confluent_kafka")
    assert (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME) == (confluent.TIMESTAMP_CREATE_TIME,
                                                                  confluent.TIMESTAMP_LOG_APPEND_TIME)
    for headers in (None, [("h", b"x"), ("n", None)]):
        ours = Record("t", 1, 2, b"k", b"value", headers, 3, TIMESTAMP_LOG_APPEND_TIME)
        theirs = confluent.Message(topic="t", partition=1, offset=2, key=b"k", value=b"value", headers=headers,
                                   timestamp=(TIMESTAMP_LOG_APPEND_TIME, 3))
        for name in ("topic", "partition", "offset", "key", "value", "headers", "timestamp", "error", "latency",
                     "leader_epoch"):
            assert getattr(ours, name)() == getattr(theirs, name)(), name
        assert len(ours) == len(theirs) == 5
        for name, new in (("topic", "u"), ("key", b"k2"), ("value", b"v2"), ("headers", [("a", b"b")])):
            assert getattr(ours, "set_" + name)(new) is getattr(theirs, "set_" + name)(new) is None
            assert getattr(ours, name)() == getattr(theirs, name)() == new
    assert len(Record("t", 1, 2, None, None, None, 3)) == 0 and Record("t", 1, 2, None, b"", None, 3)   # always true


def test_record_compares_all_fields_and_is_not_hashable():
    a = Record("t", 1, 2, b"k", b"v", [], 3)
    for i in range(8):
        fields = ["t", 1, 2, b"k", b"v", [], 3, 1]
        fields[i] = "other"
        assert a != Record(*fields) and not a == Record(*fields)
    assert a == Record("t", 1, 2, b"k", memoryview(b"v"), [], 3) and not a != Record("t", 1, 2, b"k", b"v", [], 3)
    assert a.__eq__(("t", 1)) is NotImplemented and a != ("t", 1)
    assert Record.__hash__ is None
    with pytest.raises(TypeError):
        hash(a)
    nan = float("nan")
    assert Record("t", 1, 2, b"k", b"v", [], nan) != Record("t", 1, 2, b"k", b"v", [], nan)   # ==, not `is`


def test_record_repr_pickle_subclass_and_a_record_never_initialised():
    r = Record("orders", 0, 7, b"k", b"x" * 40, [], 5)
    assert repr(r) == f"Record(orders-0@7, key=b'k', value={bytes(32)!r}..., timestamp=5)".replace(
        repr(bytes(32)), repr(b"x" * 32))
    assert repr(Record("t", 1, 2, None, memoryview(b"ab"), [], 3)) == "Record(t-1@2, key=None, value=b'ab', timestamp=3)"
    assert pickle.loads(pickle.dumps(r)) == r
    failed = FailedDelivery("orders", 0, -1, b"k", b"v", None, 5, 1, KafkaError(KafkaError._MSG_TIMED_OUT))
    again = pickle.loads(pickle.dumps(failed))
    assert type(again) is FailedDelivery and again == failed and again.error() == KafkaError._MSG_TIMED_OUT
    assert isinstance(failed, Record) and r.error() is None
    assert Record.__module__ == "odradek.client.message"

    class Mine(Record):
        def __init__(self, *args):
            super().__init__(*args)
            self.extra = 1

    m = Mine("t", 1, 2, None, None, [], 3)
    assert type(m) is Mine and m.extra == 1 and m == Record("t", 1, 2, None, None, [], 3)
    empty = Record.__new__(Record)       # every field reads None, as a bare Message's do
    assert (empty.topic(), empty.offset(), empty.value(), empty.timestamp(), len(empty)) == (None, None, None,
                                                                                             (None, None), 0)
    assert repr(empty) == "Record(None-None@None, key=None, value=None, timestamp=None)"
    assert empty == Record.__new__(Record) and pickle.loads(pickle.dumps(empty)) == empty


def test_a_cycle_through_a_record_is_collected():
    class Payload:
        pass
    p = Payload()
    gone = weakref.ref(p)
    r = Record("t", 1, 2, None, None, [("h", b"")], 3)
    r.set_value(p)
    p.record = r
    del r, p
    gc.collect()
    assert gone() is None


# ---- Consumer._take over the buffer ------------------------------------------------------

def test_take_slices_whole_fetches_and_moves_positions_and_a_fault_raises_after_the_records_before_it():
    consumer = Consumer.__new__(Consumer)
    parts = {("t", p): SimpleNamespace(tp=TopicPartition("t", p), position=0, fetched=0, last_item=None)
             for p in (0, 1)}
    consumer._parts, consumer._returned = parts, set()
    recs = [[Record("t", p, o, None, b"", [], 0) for o in range(5)] for p in (0, 1)]
    error = CorruptRecord("bad")
    error.offset = 5
    consumer._buffer = deque([Fetched(parts["t", 0], list(recs[0]), 5), Fault(TopicPartition("t", 0), error),
                              Fetched(parts["t", 1], list(recs[1]), 5)])
    consumer._buffered, consumer._faults = 10, 1
    assert consumer._take(3) == recs[0][:3] and parts["t", 0].position == 3
    assert consumer._take(10) == recs[0][3:] and parts["t", 0].position == 5   # stops before the fault
    with pytest.raises(CorruptRecord):
        consumer._take(10)
    assert parts["t", 0].position == 5
    assert consumer._take(10) == recs[1] and parts["t", 1].position == 5       # then the fault again
    with pytest.raises(CorruptRecord):
        consumer._take(1)
    assert consumer._buffered == 0 and len(consumer._buffer) == 1
    assert consumer._returned == {("t", 0), ("t", 1)}       # position() of both is theirs now


def test_a_decoded_record_without_headers_reads_none_and_is_collected_in_a_cycle():
    log = build_log([([(0, b"k", b"v", []), (0, b"k", b"w", [("h", None)])], "none", 0)], 0)[0]
    plain, with_headers = _hotpath.decode_fetch(bytes(log), 0, 0, 0, HW_LIMIT, "t", 0, True, False)[0]
    assert not gc.is_tracked(plain) and gc.is_tracked(with_headers)     # only atomic fields: untracked
    assert plain.headers() is None and not gc.is_tracked(plain)        # confluent-kafka's None: no list made
    assert with_headers.headers() == [("h", None)]
    other = _hotpath.decode_fetch(bytes(log), 0, 0, 0, HW_LIMIT, "t", 0, True, False)[0][0]
    assert other == plain and pickle.loads(pickle.dumps(other)).headers() is None
    other.set_key(b"changed")                                           # any field set: tracked
    assert gc.is_tracked(other) and other.key() == b"changed"
    last = _hotpath.decode_fetch(bytes(log), 0, 0, 0, HW_LIMIT, "t", 0, True, False)[0][0]
    last.set_headers([last])                                            # a cycle: collected
    gone = weakref.ref(build_log)                                       # (a sentinel that stays)
    del last
    gc.collect()
    assert gone() is build_log


def test_a_decoded_record_given_new_fields_by_init_is_collected_in_a_cycle():
    class Payload:
        pass
    log = build_log([([(0, b"k", b"v", [])], "none", 0)], 0)[0]
    r = _hotpath.decode_fetch(bytes(log), 0, 0, 0, HW_LIMIT, "t", 0, True, False)[0][0]
    assert not gc.is_tracked(r)
    p = Payload()
    gone = weakref.ref(p)
    r.__init__("t", 0, 0, None, p, [], 0)
    p.record = r
    del r, p
    gc.collect()
    assert gone() is None


def test_a_bad_header_key_before_pos_still_refuses_the_batch_as_records_does():
    # found by the random test: the records before pos are not delivered, but records()
    # decodes every header key of the batch, so the batch is refused all the same
    b = BatchBuilder()
    for key in ("ok", "xy", "ok"):
        b.append(T0, None, None, [(key, None)])
    data = bytearray(b.build())
    data[data.index(b"xy")] = 0xC2
    struct.pack_into(">I", data, CRC_OFFSET, native.crc32c(bytes(data[ATTRIBUTES_OFFSET:])))
    records, stop, _ = consumer_decode(bytes(data), 2, HW_LIMIT, True)
    assert records == [] and "record 1 header key is not UTF-8" in stop[1]
    assert (records, stop, None) == reference(bytes(data), 2, HW_LIMIT, True)
