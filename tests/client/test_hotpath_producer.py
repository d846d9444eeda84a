"""The C record encoder and partitioner of the Producer (odradek._hotpath, hp_producer.c)
against their Python references: BatchBuilder (client/records/_builder.py) and
partition_for_key (client/partitioner.py), byte for byte, on the same inputs."""
import pytest
from hypothesis import given, settings, strategies as st

from odradek import _hotpath
from odradek._native import lib
from odradek.client.partitioner import partition_for_key
from odradek.client.records import MAX_SEQUENCE, BatchBuilder, RecordBatch, layout

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
           "base_sequence": st.integers(0, 0x7fffffff), "transactional": st.booleans()})))
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


def test_a_transactional_batch_needs_a_producer_id_in_c_as_in_batchbuilder():
    with pytest.raises(ValueError, match="producer id"):
        _hotpath.encode_batch([(1, b"k", b"v", None)], transactional=True)
    with pytest.raises(ValueError, match="producer id"):
        BatchBuilder(transactional=True)


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


# ---- The accumulator over a ring of this process (no broker: we play the leader) ---------

class _Rig:
    """An Accumulator with one link to a ring this test reads."""

    def __init__(self, batch_size=16384, linger_ms=10_000, acks=1, producer_id=-1, producer_epoch=-1,
                 capacity=1 << 20, next_sequence=0, transactional=False):
        from odradek.client.shm import Ring
        from odradek.client.shm._lib import ffi
        self.ring, self.fd = Ring.create(capacity)
        self.completions, self.completions_fd = Ring.create(1 << 16)
        self.acc = _hotpath.Accumulator(batch_size, linger_ms, acks, producer_id, producer_epoch,
                                        transactional=transactional)
        self.acc.set_partition_count("t", 1)
        self.link = self.acc.add_link("t", 0, int(ffi.cast("uintptr_t", self.ring._r)), self.ring,
                                      self.ring.max_payload, next_sequence,
                                      int(ffi.cast("uintptr_t", self.completions._r)), self.completions)

    def ack(self, tag, base_offset=0, error_code=0):
        """The leader's completion of the batch with that tag."""
        self.completions.write_completion(tag, base_offset, error_code)

    def collect(self):
        """(records settled by this call, reports, strays, corrupt): collect() less the
        doorbell counter (the rig has no doorbell)."""
        before = self.acc.settled
        seen, *rest = self.acc.collect()
        assert seen == 0
        return (self.acc.settled - before, *rest)

    def batches(self):
        """(tag, RecordBatch) of every committed entry, released."""
        out = []
        for _ in range(100_000):
            got = self.ring.peek()
            if got is None:
                return out
            tag, view = got
            out.append((tag, RecordBatch(bytes(view))))
            self.ring.release()
        raise AssertionError("the ring never ran dry")

    def close(self):
        import os
        self.acc.close()
        for ring, fd in ((self.ring, self.fd), (self.completions, self.completions_fd)):
            ring.close()
            os.close(fd)


@pytest.fixture
def rig():
    made = []

    def make(**kwargs):
        made.append(_Rig(**kwargs))
        return made[-1]
    yield make
    for r in made:
        r.close()


@settings(max_examples=40, deadline=None)
@given(fields=st.lists(st.tuples(_maybe_blob, _maybe_blob, _headers), min_size=1, max_size=40),
       deltas=st.lists(_deltas, min_size=40, max_size=40), batch_size=st.sampled_from([200, 4096, 30_000]))
def test_sealed_batches_in_the_ring_are_batchbuilders_with_sequences_and_tags(fields, deltas, batch_size):
    r = _Rig(batch_size=batch_size, producer_id=9, producer_epoch=3)
    try:
        records = _records(1_700_000_000_000, deltas, fields)
        for ts, k, v, h in records:
            assert r.acc.produce("t", v, k, h, None, ts) is None
        r.acc.seal_all()
        batches = r.batches()
        assert [tag for tag, _ in batches] == list(range(len(batches)))
        done = 0
        for _, batch in batches:
            n = batch.records_count
            expected = _reference(records[done:done + n], producer_id=9, producer_epoch=3, base_sequence=done)
            assert bytes(batch.buffer) == expected
            done += n
        assert done == len(records) == r.acc.queued
        for tag, _ in batches:
            r.ack(tag)
        r.ack(len(batches))    # no batch has that tag
        # no callbacks, no errors: the batches only count as settled
        assert r.collect() == (len(records), [], [(r.link, len(batches))], None)
        assert r.collect() == (0, [], [], None)
    finally:
        r.close()


def test_base_sequences_wrap_after_max_sequence_as_kafkas(rig):
    r = rig(batch_size=61 + 2 * 12, producer_id=5, producer_epoch=1, next_sequence=MAX_SEQUENCE - 2)
    for i in range(8):                      # two records a batch
        assert r.acc.produce("t", b"v%d" % i, None, None, None, 1000 + i) is None
    r.acc.seal_all()
    batches = [b for _, b in r.batches()]
    assert [len(b) for b in batches] == [2, 2, 2, 2]
    assert [b.base_sequence for b in batches] == [MAX_SEQUENCE - 2, MAX_SEQUENCE, 1, 3]
    for i, b in enumerate(batches):
        records = [(1000 + j, None, b"v%d" % j, []) for j in (2 * i, 2 * i + 1)]
        assert bytes(b.buffer) == _reference(records, producer_id=5, producer_epoch=1,
                                             base_sequence=b.base_sequence)


def test_a_full_ring_queues_nothing_until_space_comes(rig):
    r = rig(batch_size=16384, capacity=1 << 16)
    value = b"x" * 1000
    for sent in range(1000):
        res = r.acc.produce("t", value)
        if res is not None:
            break
    code, partition, nbytes, limit = res
    assert (code, partition) == (_hotpath.PRODUCE_FULL, 0) and nbytes == 16384 and limit == r.ring.max_payload
    assert r.acc.queued == sent
    assert r.acc.wait_space(r.link, nbytes, 0.01) is False      # nobody reads: still full
    assert r.acc.produce("t", value) == res and r.acc.queued == sent
    first = r.batches()                                          # the leader takes what was sealed
    assert r.acc.wait_space(r.link, nbytes, 1.0) is True
    assert r.acc.produce("t", value) is None and r.acc.queued == sent + 1
    r.acc.seal_all()
    assert sum(b.records_count for _, b in first + r.batches()) == sent + 1


def test_bind_produce_takes_confluent_kafkas_argument_order_and_calls_the_slow_path(rig):
    r = rig()
    asked = []

    def slow(res, *argv):
        asked.append((res[0], argv))
        return "slow's result"
    produce = r.acc.bind_produce(slow)

    def cb(err, rec):
        pass
    # topic, value, key, partition, on_delivery, timestamp, headers (Producer.produce's order)
    assert produce("t", b"a", b"k", 0, cb, 10, [("h", b"x")]) is None
    assert produce("t", value=b"b", timestamp=11, headers={"h": None}, key=None, partition=None) is None
    # the slow path gets the accumulator's tuple and the arguments in Accumulator.produce's order
    assert produce("u", b"c", None, None, None, 12) == "slow's result"
    assert asked == [(_hotpath.PRODUCE_NEED_COUNT, ("u", b"c", None, None, None, 12, None))]
    assert produce("t", b"d", partition=1, on_delivery=cb) == "slow's result"
    assert asked[1] == (_hotpath.PRODUCE_NEED_LINK, ("t", b"d", None, None, 1, None, cb))
    for args, kwargs, message in [((), {}, "topic"), (("t",), {"colour": 1}, "colour"),
                                  (("t", b"v"), {"value": b"w"}, "value"), (("t",) * 8, {}, "at most"),
                                  (("t", b"v", None, None, 3), {}, "on_delivery")]:
        with pytest.raises(TypeError, match=message):
            produce(*args, **kwargs)
    with pytest.raises(TypeError, match="callable"):
        r.acc.bind_produce(3)
    r.acc.seal_all()
    (_, batch), = r.batches()
    assert [(rec.timestamp, rec.key, rec.value, list(rec.headers)) for rec in batch.records()] == [
        (10, b"k", b"a", [("h", b"x")]), (11, None, b"b", [("h", None)])]
    r.ack(0, 40)
    assert r.collect() == (0, [(r.link, 2, [(0, cb, b"k", b"a", [("h", b"x")], 10)], 40, 0)], [], None)


def test_callbacks_are_kept_per_record_only_in_batches_that_have_one(rig):
    r = rig()

    def cb(err, rec):
        pass
    r.acc.produce("t", b"a", None, None, None, 10)
    r.acc.produce("t", b"b", b"k", [("h", None)], None, 11, cb)
    r.acc.produce("t", b"c", None, None, None, 12)
    r.acc.seal_all()
    r.acc.produce("t", b"d", None, None, None, 13)
    r.acc.seal_all()
    r.ack(0, 7)
    # only the record with a callback is in the report, with its index in the batch
    assert r.collect() == (0, [(r.link, 3, [(1, cb, b"k", b"b", [("h", None)], 11)], 7, 0)], [], None)
    assert r.acc.take_sealed(r.link) == [(1, None)]
    assert r.acc.take_open(r.link) == []


def test_produce_from_threads_and_the_sender_never_tear_a_batch(rig):
    import threading
    r = rig(batch_size=2048, linger_ms=0.2, capacity=1 << 22)
    stop = threading.Event()

    def sender():
        while not stop.is_set():
            r.acc.seal_due(0.001)

    def producer(n):
        for i in range(2000):
            assert r.acc.produce("t", b"%d-%d" % (n, i), None, None, 0) is None
    threads = [threading.Thread(target=producer, args=(n,)) for n in range(3)]
    s = threading.Thread(target=sender)
    s.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    s.join(30)
    r.acc.seal_all()
    values = []
    for _, batch in r.batches():
        batch.validate()
        values += [rec.value for rec in batch.records()]
    assert sorted(values) == sorted(b"%d-%d" % (n, i) for n in range(3) for i in range(2000))
    for n in range(3):   # each thread's records in its order
        mine = [v for v in values if v.startswith(b"%d-" % n)]
        assert mine == [b"%d-%d" % (n, i) for i in range(2000)]


def test_wait_space_polls_then_sleeps_until_the_reader_frees_room_and_refuses_what_never_fits(rig):
    import threading
    import time
    r = rig(batch_size=16384, capacity=1 << 16)
    for _ in range(1000):
        res = r.acc.produce("t", b"x" * 1000)
        if res is not None:
            break
    nbytes = res[2]
    got = []
    waiter = threading.Thread(target=lambda: got.append(r.acc.wait_space(r.link, nbytes, 0.04)
                                                         or r.acc.wait_space(r.link, nbytes, 5.0)))
    started = time.monotonic()
    waiter.start()
    for _ in range(5000):                       # until it announces its sleep on the head
        if r.ring.writer_waiting or not waiter.is_alive():
            break
        waiter.join(0.001)
    # the space-waiter flag (the leader then wakes it at every release) only after 2 ms of
    # polling found no room: a producer ahead of its leader waits here once per batch
    assert r.ring.writer_waiting and time.monotonic() - started >= 0.002
    r.batches()                                 # the leader takes the entries: the head moves
    waiter.join(5)
    assert got == [True] and not r.ring.writer_waiting
    with pytest.raises(ValueError, match="never fits"):
        r.acc.wait_space(r.link, r.ring.max_payload + 1, 0.0)


def test_a_reservation_left_open_in_the_ring_is_a_system_error_not_a_size(rig):
    r = rig()
    r.ring.reserve(100)                         # a second writer of the link's ring
    with pytest.raises(SystemError, match="reservation"):
        r.acc.produce("t", b"v")
    assert r.acc.queued == 0
    r.ring.cancel()
    assert r.acc.produce("t", b"v") is None and r.acc.queued == 1


def _with_allocations_failing(call):
    """call()'s result, run with every allocation from the n-th on failing (MemoryError),
    for n = 0, 1, ... until it succeeds."""
    import _testcapi
    for n in range(500):
        _testcapi.set_nomemory(n, 0)
        try:
            return call()
        except MemoryError:
            pass
        finally:
            _testcapi.remove_mem_hooks()
    raise AssertionError("call() never succeeded")


def test_out_of_memory_in_collect_or_take_sealed_leaves_the_batches_in_flight(rig):
    def cb(err, rec):
        pass
    r = rig(batch_size=200)
    for i in range(12):                         # several batches, callbacks on some records
        r.acc.produce("t", b"v%d" % i * 10, None, None, None, 1000 + i, cb if i % 2 else None)
    r.acc.seal_all()
    batches = r.batches()
    assert len(batches) >= 3
    tag, batch = batches[1]
    r.ack(tag, 500)
    # a call that fails takes nothing; one that runs out of memory midway returns what it
    # took and leaves the completion it met in its ring: over the calls, the batch is
    # reported once
    import _testcapi
    reports = []
    for n in range(200):
        _testcapi.set_nomemory(n, 0)
        try:
            got = r.acc.collect()
        except MemoryError:
            continue
        finally:
            _testcapi.remove_mem_hooks()
        assert got[0] == 0 and got[2:] == ([], None)
        reports += got[1]
    assert r.acc.settled == 0
    first = sum(b.records_count for _, b in batches[:1])
    count = batch.records_count
    assert reports == [(r.link, count, [(i - first, cb, None, b"v%d" % i * 10, [], 1000 + i)
                                        for i in range(first, first + count) if i % 2], 500, 0)]
    assert r.collect() == (0, [], [], None)
    rest = _with_allocations_failing(lambda: r.acc.take_sealed(r.link))
    assert [c for c, _ in rest] == [b.records_count for t, b in batches if t != tag]
    assert r.acc.take_sealed(r.link) == []


def test_collect_reports_refused_batches_and_with_acks_0_every_sealed_one(rig):
    r = rig(batch_size=200)
    for i in range(4):
        r.acc.produce("t", b"x" * 150, None, None, None, 1000 + i)   # one record a batch
    r.acc.seal_all()
    r.ack(0, 10)
    r.ack(1, -1, 87)             # refused: reported, with its error code, callback or not
    assert r.collect() == (1, [(r.link, 1, None, -1, 87)], [], None)
    a0 = rig(acks=0)
    a0.acc.produce("t", b"a", None, None, None, 1)
    a0.acc.seal_all()
    a0.acc.produce("t", b"b", None, None, None, 2, lambda err, rec: None)
    a0.acc.seal_all()
    settled, reports, strays, corrupt = a0.collect()
    assert (settled, [(link, n, base, code) for link, n, _, base, code in reports]) == (1, [(a0.link, 1, -1, 0)])
    assert a0.collect() == (0, [], [], None)


def test_collect_stops_at_a_completion_of_the_wrong_size(rig):
    r = rig()
    r.acc.produce("t", b"a", None, None, None, 1)
    r.acc.seal_all()
    r.completions.write(b"\0" * 8, 0)    # a completion is 16 bytes
    r.ack(0)
    settled, reports, strays, corrupt = r.collect()
    assert (settled, reports, strays) == (0, [], []) and corrupt == (r.link, "a completion entry is 16 bytes, not 8")
    assert r.collect()[3] == corrupt       # it stays: the ring is broken


def test_a_transactional_accumulator_lets_records_through_only_for_partitions_in_the_transaction(rig):
    r = rig(producer_id=9, producer_epoch=4, transactional=True)
    assert r.acc.produce("t", b"early", None, None, 0, 1000)[:2] == (_hotpath.PRODUCE_NEED_TXN, 0)
    assert r.acc.produce("t", b"early", None, None, None, 1000)[:2] == (_hotpath.PRODUCE_NEED_TXN, 0)   # sticky
    assert r.acc.queued == 0 and r.batches() == []
    r.acc.txn_add(r.link)
    for i in range(3):
        assert r.acc.produce("t", b"v%d" % i, None, None, 0, 1000 + i) is None
    r.acc.seal_all()
    (_, batch), = r.batches()
    records = [(1000 + i, None, b"v%d" % i, []) for i in range(3)]
    assert batch.is_transactional and not batch.is_control
    assert bytes(batch.buffer) == _reference(records, producer_id=9, producer_epoch=4, base_sequence=0,
                                             transactional=True)
    r.acc.txn_clear()                        # the transaction ended: the gate closes again
    assert r.acc.produce("t", b"late", None, None, 0, 2000)[0] == _hotpath.PRODUCE_NEED_TXN
    assert r.acc.queued == 3


def test_set_producer_comes_before_any_link_and_txn_add_after_it():
    acc = _hotpath.Accumulator(16384, 5, -1, -1, -1, transactional=True)
    with pytest.raises(ValueError, match="int16"):
        acc.set_producer(1, 1 << 15)
    acc.set_producer(11, 0)
    with pytest.raises(ValueError, match="no link"):
        acc.txn_add(0)


def test_set_producer_after_a_link_is_refused(rig):
    r = rig(transactional=True)
    with pytest.raises(ValueError, match="set_producer\\(\\) first"):
        r.acc.txn_add(r.link)                # no producer id yet: a transactional batch needs one
    with pytest.raises(ValueError, match="after a link"):
        r.acc.set_producer(3, 1)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_the_compressed_accumulator_gates_and_marks_transactional_batches_alike(codec):
    import os
    from odradek.client._producer_compressed import CompressedAccumulator
    from odradek.client.records import Compression
    from odradek.client.shm import Doorbell, Ring
    ring, fd = Ring.create(1 << 20)
    doorbell, doorbell_fd = Doorbell.create()
    try:
        acc = CompressedAccumulator(16384, 10_000, 1, -1, -1, 0, doorbell, transactional=True,
                                    codec=Compression.from_name(codec))
        acc.set_partition_count("t", 1)
        with pytest.raises(ValueError, match="producer id"):
            acc.txn_add(0)
        acc.set_producer(9, 4)
        link = acc.add_link("t", 0, 0, ring, ring.max_payload)
        with pytest.raises(ValueError, match="after a link"):
            acc.set_producer(3, 1)
        assert acc.produce("t", b"early", partition=0)[:2] == (_hotpath.PRODUCE_NEED_TXN, 0)
        acc.txn_add(link)
        assert acc.produce("t", b"v", partition=0, timestamp=1000) is None
        acc.seal_all()
        _, view = ring.peek()
        batch = RecordBatch(bytes(view))
        assert batch.compression == Compression.from_name(codec)
        assert batch.is_transactional and (batch.producer_id, batch.producer_epoch) == (9, 4)
        assert [r.value for r in batch.records()] == [b"v"]
        acc.txn_clear()
        assert acc.produce("t", b"late", partition=0)[0] == _hotpath.PRODUCE_NEED_TXN
    finally:
        ring.close()
        doorbell.close()
        os.close(fd)
        os.close(doorbell_fd)
