"""Hostile or broken producers on the shared-memory data plane: whatever they put in
their rings or pass as fds costs only themselves; the worker, the broker and every
other client go on."""
import os
import struct

import psutil
import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.errors import BadLayout, CorruptRecord, InvalidProducerEpoch, InvalidRequest
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm.ring import OFF_TAIL
from support.raw_producer import RawProducer
from support.records import make_batch

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault


@pytest.fixture
def topic(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("shared", 1)
    return "shared"


def good_producer_still_works(broker, topic, value=b"fine"):
    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        offsets = []
        p.produce(topic, value, on_delivery=lambda err, rec: offsets.append((err, rec.offset())))
        assert p.flush(10) == 0
    assert offsets and offsets[0][0] is None
    return offsets[0][1]


def test_open_producer_with_wrong_fds_is_refused_by_name(broker, topic):
    with ControlClient(broker.socket_path) as c:
        with pytest.raises(InvalidRequest, match="3 fds"):
            c.call(m.OpenProducerRequest(topic=topic, partition=0))
        r, w = os.pipe()
        try:
            with pytest.raises(BadLayout):
                c.call(m.OpenProducerRequest(topic=topic, partition=0), [r, w, r])
        finally:
            os.close(r)
            os.close(w)
    good_producer_still_works(broker, topic)


def test_garbage_and_foreign_batches_get_error_completions_and_append_nothing(broker, topic):
    raw = RawProducer(broker.socket_path, topic, acks=1)
    try:
        raw.write(os.urandom(200), 1)
        assert raw.completion().error_code == CorruptRecord.code
        batch = bytearray(make_batch([b"a", b"b"]))
        batch[-1] ^= 0xFF                                  # CRC no longer matches
        raw.write(bytes(batch), 2)
        assert raw.completion().error_code == CorruptRecord.code
        two = make_batch([b"a"]) + make_batch([b"b"])      # one entry, two batches
        raw.write(two, 3)
        assert raw.completion().error_code == CorruptRecord.code
        forged = make_batch([b"x"], producer_id=77, producer_epoch=0, base_sequence=0)
        raw.write(forged, 4)                                # another producer's id
        assert raw.completion().error_code == InvalidProducerEpoch.code
        raw.write(make_batch([b"ok"]), 5)
        c = raw.completion()
        assert (c.tag, c.error_code, c.base_offset) == (5, 0, 0)
    finally:
        raw.close()
    assert good_producer_still_works(broker, topic) == 1   # nothing else was appended


def test_impossible_ring_cursors_cost_only_that_producer(broker, topic):
    raw = RawProducer(broker.socket_path, topic, acks=1)
    try:
        raw.write(make_batch([b"before"]), 1)
        assert raw.completion().error_code == 0
        # a hostile writer publishes a tail far beyond what the ring can hold
        struct.pack_into("<Q", raw.requests._map.view, OFF_TAIL, 1 << 40)
        raw.leader.ring()
        offset = good_producer_still_works(broker, topic)
        assert offset == 1
    finally:
        raw.close()
    assert psutil.Process(broker.pid).is_running()
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert [c.poll(5).value() for _ in range(2)] == [b"before", b"fine"]


def test_a_producer_that_never_reads_completions_stalls_only_itself(broker, topic):
    raw = RawProducer(broker.socket_path, topic, acks=1)
    try:
        sent = 0
        for tag in range(100_000):      # until its own rings are full (bounded)
            try:
                raw.requests.write(make_batch([b"s%d" % tag]), tag, timeout=0.2)
                sent += 1
            except Exception:
                break
        assert sent > 100
        good_producer_still_works(broker, topic, b"other")
    finally:
        raw.close()


def test_a_hostile_ringer_does_not_slow_a_polite_producer(broker, topic):
    """Issue 8's standing scenario: a producer process rings the partition's doorbell in
    a tight loop and rewrites its words (hostile_ringer.py) while a polite producer
    sends one record at a time for 3 s: every record is acknowledged, p99 under 50 ms."""
    import subprocess
    import sys
    import time
    script = os.path.join(os.path.dirname(__file__), "hostile_ringer.py")
    hostile = subprocess.Popen([sys.executable, script, broker.socket_path, topic, "30"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hostile.stdout.readline().split() == ["ready"], hostile.stderr.read()
        latencies, errors = [], []
        with Producer({"socket": broker.socket_path, "linger.ms": 0, "acks": 1}) as p:
            end = time.monotonic() + 3.0
            for i in range(20_000):   # bounded by the 3 s as well
                if time.monotonic() >= end:
                    break
                t0 = time.perf_counter()
                p.produce(topic, b"polite %d" % i, on_delivery=lambda err, rec: errors.append(err))
                assert p.flush(5) == 0, f"record {i} not acknowledged within 5 s"
                latencies.append(time.perf_counter() - t0)
        assert hostile.poll() is None, "the hostile ringer stopped early"
    finally:
        hostile.kill()
        hostile.communicate(timeout=10)
    assert errors == [None] * len(latencies)
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(f"polite acks beside a hostile ringer: {len(latencies)} records, "
          f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, max {latencies[-1] * 1e3:.2f} ms")
    assert len(latencies) > 100
    assert p99 < 0.050
