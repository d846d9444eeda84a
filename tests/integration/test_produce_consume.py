"""Producer and Consumer against the real broker: round trips, order, keys, headers,
positions, waits, restarts, and the data plane's behaviour when processes die."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from odradek.client import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Admin, Consumer, Producer, TopicPartition)
from odradek.client.errors import (InvalidConfig, InvalidTimestamp, MessageTooLarge, OffsetOutOfRange, RequestTimedOut,
                                   RingFull, UnknownTopicOrPartition)
from odradek.client.partitioner import partition_for_key
from support.broker import consume_n, wait_until


def producer(broker, **config):
    return Producer({"socket": broker.socket_path, **config})


def consumer(broker, **config):
    return Consumer({"socket": broker.socket_path, **config})


def create(broker, name, partitions=1, **configs):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(name, num_partitions=partitions, config=configs)


def test_round_trip_keeps_order_keys_values_headers_timestamps(broker):
    create(broker, "orders")
    reports = []
    with producer(broker, **{"linger.ms": 2}) as p:
        for i in range(500):
            p.produce("orders", b"v%d" % i, key=b"k%d" % (i % 7), headers=[("h", b"x%d" % i)],
                      timestamp=1_700_000_000_000 + i, partition=0,
                      on_delivery=lambda err, rec: reports.append((err, rec)))
        assert p.flush(10) == 0
    assert len(reports) == 500 and all(err is None for err, _ in reports)
    assert sorted(rec.offset() for _, rec in reports) == list(range(500))
    with consumer(broker) as c:
        c.assign([TopicPartition("orders", 0, OFFSET_BEGINNING)])
        recs = consume_n(c, 500)
    assert [r.offset() for r in recs] == list(range(500))
    assert [r.value() for r in recs] == [b"v%d" % i for i in range(500)]
    assert recs[3].key() == b"k3" and recs[3].headers() == [("h", b"x3")]
    assert recs[42].timestamp()[1] == 1_700_000_000_042 and recs[42].topic() == "orders"


def test_keyed_records_land_where_kafkas_partitioner_puts_them(broker):
    create(broker, "keyed", partitions=4)
    keys = [b"user-%d" % i for i in range(40)]
    with producer(broker) as p:
        for k in keys:
            p.produce("keyed", b"x", key=k)
        assert p.flush(10) == 0
    with consumer(broker) as c:
        c.assign([TopicPartition("keyed", i, OFFSET_BEGINNING) for i in range(4)])
        recs = consume_n(c, 40)
    for r in recs:
        assert r.partition() == partition_for_key(r.key(), 4)


def test_keyless_records_stick_to_a_partition_per_batch(broker):
    create(broker, "sticky", partitions=3)
    seen = []
    with producer(broker, **{"linger.ms": 1000, "batch.size": 1 << 20}) as p:
        for i in range(20):
            p.produce("sticky", b"v%d" % i, on_delivery=lambda err, rec: seen.append(rec.partition()))
        p.flush(10)
    assert len(set(seen)) == 1     # one batch, one partition


def test_a_consumer_waiting_is_woken_by_a_produce(broker):
    create(broker, "wake")
    with consumer(broker, **{"auto.offset.reset": "latest"}) as c:
        c.assign([TopicPartition("wake", 0)])
        assert c.poll(0.05) is None
        got = []
        t = threading.Thread(target=lambda: got.append(c.poll(10)))
        t.start()
        with producer(broker, **{"linger.ms": 0}) as p:
            p.produce("wake", b"hello")
            p.flush(5)
        t.join(10)
    assert got and got[0] is not None and got[0].value() == b"hello"


def test_positions_seek_offsets_for_times_pause_resume(broker):
    create(broker, "pos", partitions=2)
    with producer(broker) as p:
        for i in range(10):
            p.produce("pos", b"%d" % i, partition=0, timestamp=1_000_000 + i * 10)
        p.flush(10)
    with consumer(broker) as c:
        tp = TopicPartition("pos", 0)
        c.assign([TopicPartition("pos", 0, 4), TopicPartition("pos", 1, OFFSET_END)])
        assert c.position([tp])[0].offset == OFFSET_INVALID        # nothing returned yet (confluent-kafka's)
        assert c.poll(5).offset() == 4
        assert c.position([tp])[0].offset == 5
        c.seek(TopicPartition("pos", 0, 8))
        assert [r.offset() for r in consume_n(c, 2)] == [8, 9]
        assert c.offsets_for_times([TopicPartition("pos", 0, 1_000_035)])[0].offset == 4
        assert c.offsets_for_times([TopicPartition("pos", 0, 9_999_999)])[0].offset == -1
        c.seek_to_beginning([tp])
        c.pause([tp])
        assert c.poll(0.05) is None
        c.resume([tp])
        assert c.poll(5).offset() == 0
        c.seek_to_end([tp])
        assert c.poll(0.05) is None and c.position([tp])[0].offset == OFFSET_INVALID   # none since the seek
        with producer(broker) as p:
            p.produce("pos", b"10", partition=0)
        assert c.poll(5).offset() == 10 and c.position([tp])[0].offset == 11


def test_pause_mid_batch_then_resume_goes_on_at_the_position(broker):
    create(broker, "midbatch")
    with producer(broker, **{"linger.ms": 10_000}) as p:
        for i in range(10):
            p.produce("midbatch", b"m%d" % i, partition=0)
        assert p.flush(10) == 0                # one batch of 10 records
    with consumer(broker) as c:
        tp = TopicPartition("midbatch", 0)
        c.assign([TopicPartition("midbatch", 0, OFFSET_BEGINNING)])
        assert c.poll(5).offset() == 0           # records 1-9 are now buffered
        c.pause([tp])
        assert c.poll(0.05) is None
        c.resume([tp])
        assert c.position([tp])[0].offset == 1
        assert [r.offset() for r in consume_n(c, 9)] == list(range(1, 10))


def test_auto_offset_reset(broker):
    create(broker, "reset")
    with producer(broker) as p:
        for i in range(3):
            p.produce("reset", b"%d" % i)
        p.flush(10)
    with consumer(broker, **{"auto.offset.reset": "earliest"}) as c:
        c.assign([TopicPartition("reset", 0)])
        assert c.poll(5).offset() == 0
    with consumer(broker, **{"auto.offset.reset": "latest"}) as c:
        c.assign([TopicPartition("reset", 0)])
        assert c.poll(0.05) is None and c.position(c.assignment())[0].offset == OFFSET_INVALID
        with producer(broker) as p:
            p.produce("reset", b"3", partition=0)
        assert c.poll(5).offset() == 3 and c.position(c.assignment())[0].offset == 4
    with consumer(broker, **{"auto.offset.reset": "error"}) as c:
        c.assign([TopicPartition("reset", 0)])
        with pytest.raises(OffsetOutOfRange, match="auto.offset.reset"):
            c.poll(1)
        c.assign([TopicPartition("reset", 0, 99)])
        with pytest.raises(OffsetOutOfRange, match="out of range"):
            c.poll(1)


def test_replay_from_old_segments_reads_beyond_the_descriptor_window(broker):
    # 1500 batches > the 1023-batch window, over several segments
    create(broker, "replay", **{"segment.bytes": "65536"})
    with producer(broker, **{"linger.ms": 0}) as p:
        for i in range(1500):
            p.produce("replay", b"r%d" % i)
        assert p.flush(30) == 0
    with consumer(broker, **{"max.partition.fetch.bytes": "4096"}) as c:
        c.assign([TopicPartition("replay", 0, OFFSET_BEGINNING)])
        recs = consume_n(c, 1500, timeout=30)
    assert [r.value() for r in recs] == [b"r%d" % i for i in range(1500)]


def test_fetch_min_bytes_waits_up_to_fetch_max_wait(broker):
    create(broker, "minbytes")
    with producer(broker, **{"linger.ms": 0}) as p:
        p.produce("minbytes", b"small")
        p.flush(5)
    with consumer(broker, **{"fetch.min.bytes": "100000", "fetch.max.wait.ms": "200"}) as c:
        c.assign([TopicPartition("minbytes", 0, OFFSET_BEGINNING)])
        t0 = time.monotonic()
        rec = c.poll(5)
        waited = time.monotonic() - t0
    assert rec is not None and rec.value() == b"small"
    assert 0.15 <= waited < 3


def test_bad_config_and_unknown_topic_are_named_errors(broker):
    with pytest.raises(InvalidConfig, match="linger_ms"):
        producer(broker, linger_ms=5)
    with pytest.raises(InvalidConfig, match="acks"):
        producer(broker, acks=2)
    with producer(broker) as p:
        with pytest.raises(UnknownTopicOrPartition):
            p.produce("nope", b"x")
    with consumer(broker) as c:
        with pytest.raises(UnknownTopicOrPartition):
            c.assign([TopicPartition("nope", 0)])


def test_acks_zero_reports_without_offsets_and_records_arrive(broker):
    create(broker, "fire")
    offsets = []
    with producer(broker, acks=0) as p:
        for i in range(50):
            p.produce("fire", b"%d" % i, on_delivery=lambda err, rec: offsets.append(rec.offset()))
        p.flush(5)
    assert offsets == [-1] * 50
    with consumer(broker) as c:
        c.assign([TopicPartition("fire", 0, OFFSET_BEGINNING)])
        assert len(consume_n(c, 50)) == 50


def test_a_broker_restart_keeps_every_acknowledged_record(broker):
    create(broker, "durable", partitions=2)
    acked = []
    with producer(broker) as p:
        for i in range(300):
            p.produce("durable", b"d%d" % i, key=b"%d" % i,
                      on_delivery=lambda err, rec: err is None and acked.append(rec.value()))
        p.flush(10)
    assert len(acked) == 300
    assert broker.stop() == 0
    broker.start()
    with consumer(broker) as c:
        c.assign([TopicPartition("durable", i, OFFSET_BEGINNING) for i in range(2)])
        recs = consume_n(c, 300)
    assert sorted(r.value() for r in recs) == sorted(acked)


def _worker_of(broker, topic, partition):
    with Admin(broker.socket_path) as admin:
        st = admin.status([topic])
    return next(w.pid for w in st.workers if w.topic == topic and w.partition == partition)


def test_a_worker_killed_under_load_loses_and_duplicates_nothing_acknowledged(broker):
    create(broker, "crash")
    acked, errors = [], []
    stop = threading.Event()

    def on_delivery(err, rec):
        (errors if err else acked).append(rec.value() if not err else err)

    with producer(broker, **{"linger.ms": 1}) as p:
        def kill_twice():
            for _ in range(2):
                wait_until(lambda: len(acked) > 200 or stop.is_set(), 20, what="records acknowledged")
                pid = _worker_of(broker, "crash", 0)
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: _worker_of(broker, "crash", 0) not in (0, pid), 20, what="a new worker")
                acked_at_kill = len(acked)
                wait_until(lambda: len(acked) > acked_at_kill + 100 or stop.is_set(), 20, what="progress")
        killer = threading.Thread(target=kill_twice)
        killer.start()
        for i in range(3000):
            p.produce("crash", b"c%d" % i)
            if i % 100 == 0:
                p.poll(0)
        for _ in range(300):
            p.produce("crash", b"tail", on_delivery=on_delivery)
        p.flush(30)
        stop.set()
        killer.join(30)
    # every record was produced with on_delivery only for the tail; check the whole log
    with consumer(broker) as c:
        c.assign([TopicPartition("crash", 0, OFFSET_BEGINNING)])
        recs = consume_n(c, 3300, timeout=30)
        assert c.poll(0.2) is None, "a record was written twice"
    assert [r.value() for r in recs[:3000]] == [b"c%d" % i for i in range(3000)]
    assert [r.offset() for r in recs] == list(range(3300))
    assert not errors


def test_a_producer_killed_mid_produce_leaves_the_partition_usable(broker, tmp_path):
    create(broker, "victim")
    script = textwrap.dedent(f"""
        import sys
        from odradek.client import Producer
        p = Producer({{"socket": {broker.socket_path!r}, "linger.ms": 0}})
        i = 0
        while True:
            p.produce("victim", b"x" * 100)
            i += 1
            if i == 200:
                print("going", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with producer(broker, **{"linger.ms": 0}) as p:
        p.produce("victim", b"after")
        assert p.flush(10) == 0
    with consumer(broker) as c:
        c.assign([TopicPartition("victim", 0, OFFSET_BEGINNING)])
        recs = []
        for _ in range(100_000):   # bounded: until "after" arrives
            rec = c.poll(10)
            assert rec is not None
            recs.append(rec)
            if rec.value() == b"after":
                break
    assert all(r.value() == b"x" * 100 for r in recs[:-1]) and len(recs) >= 200


def test_an_explicit_partition_needs_no_metadata_and_a_missing_one_is_refused(broker):
    create(broker, "explicit", partitions=2)
    errors = []
    with producer(broker, **{"linger.ms": 0}) as p:
        p.produce("explicit", b"x", partition=1)
        assert p.flush(5) == 0
        with pytest.raises(UnknownTopicOrPartition):
            p.produce("explicit", b"x", partition=7, on_delivery=lambda err, rec: errors.append(err))


def test_a_consumer_killed_while_waiting_or_reading_disturbs_nobody(broker):
    create(broker, "watched", partitions=2)
    script = textwrap.dedent(f"""
        from odradek.client import Consumer, TopicPartition, OFFSET_BEGINNING
        c = Consumer({{"socket": {broker.socket_path!r}}})
        c.assign([TopicPartition("watched", p, OFFSET_BEGINNING) for p in range(2)])
        print("waiting", flush=True)
        while True:
            c.poll(10)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(3)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == b"waiting"
        with producer(broker, **{"linger.ms": 0}) as p:
            for i in range(200):
                p.produce("watched", b"w%d" % i, partition=i % 2)
            for proc in procs:                 # killed while asleep on the futexes or reading
                proc.send_signal(signal.SIGKILL)
            for i in range(200, 400):
                p.produce("watched", b"w%d" % i, partition=i % 2)
            assert p.flush(10) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    with consumer(broker) as c:
        c.assign([TopicPartition("watched", p, OFFSET_BEGINNING) for p in range(2)])
        assert len(consume_n(c, 400)) == 400


def test_an_oversized_record_is_refused_at_produce_and_spoils_no_batch(broker):
    create(broker, "big", **{"max.message.bytes": "10000"})
    reports = []
    with producer(broker, **{"linger.ms": 1000}) as p:
        p.produce("big", b"small", on_delivery=lambda err, rec: reports.append(err))
        with pytest.raises(MessageTooLarge):
            p.produce("big", b"x" * 20000, on_delivery=lambda err, rec: reports.append(err))
        assert len(p) == 1
        assert p.flush(10) == 0
    assert reports == [None]


def test_a_record_timestamp_past_the_topics_limits_fails_its_batch_alone(broker):
    """Kafka 4's message.timestamp.after.max.ms (one hour): the shared-memory Producer's
    batch holding a record stamped two hours ahead is reported InvalidTimestamp, nothing of
    it is stored, and the producer's next batch is taken (its sequence follows)."""
    create(broker, "stamps")
    now = int(time.time() * 1000)
    reports = []
    with producer(broker, **{"linger.ms": 0}) as p:
        for ts in (now, now + 2 * 3600 * 1000, now + 60_000):
            p.produce("stamps", b"%d" % ts, timestamp=ts, on_delivery=lambda err, rec: reports.append(err))
            p.flush(10)
    assert reports[0] is None and reports[2] is None
    assert isinstance(reports[1].exception, InvalidTimestamp), reports[1]
    with consumer(broker) as c:
        c.assign([TopicPartition("stamps", 0, OFFSET_BEGINNING)])
        got = consume_n(c, 2)
    assert [(r.offset(), r.timestamp()[1]) for r in got] == [(0, now), (1, now + 60_000)]


def test_a_full_ring_blocks_produce_for_max_block_ms_then_refuses_without_queueing(broker):
    create(broker, "stuck")
    with producer(broker, **{"linger.ms": 0, "produce.ring.bytes": 65536, "max.block.ms": 200}) as p:
        p.produce("stuck", b"first")
        assert p.flush(5) == 0
        handle = _worker_of(broker, "stuck", 0)
        os.kill(handle, signal.SIGSTOP)        # the leader stops taking entries
        try:
            queued, refused = 0, None
            for i in range(10_000):           # until the 64 KiB ring is full (bounded)
                try:
                    p.produce("stuck", b"y" * 1000)
                    queued += 1
                except RingFull as e:
                    refused = e
                    break
            assert refused is not None and "max.block.ms" in str(refused)
            assert len(p) == queued            # the refused record was not queued
        finally:
            os.kill(handle, signal.SIGCONT)
        assert p.flush(10) == 0
    with consumer(broker) as c:
        c.assign([TopicPartition("stuck", 0, OFFSET_BEGINNING)])
        assert len(consume_n(c, queued + 1)) == queued + 1
        assert c.poll(0.1) is None


def test_flush_and_close_with_a_stuck_broker_count_and_fail_what_is_left(broker):
    create(broker, "wedged")
    reports = []
    config = {"linger.ms": 20, "batch.size": 4096, "produce.ring.bytes": 65536, "max.block.ms": 200}
    p = producer(broker, **config)
    p.produce("wedged", b"first")
    assert p.flush(5) == 0
    worker = _worker_of(broker, "wedged", 0)
    os.kill(worker, signal.SIGSTOP)            # the leader stops taking entries
    try:
        queued = 0
        for i in range(10_000):               # until the ring and the open batch are full
            try:
                p.produce("wedged", b"z" * 1000, on_delivery=lambda err, rec: reports.append((err, rec)))
                queued += 1
            except RingFull:
                break
        assert len(p) == queued > 0            # a refused record is not queued
        started = time.monotonic()
        assert p.flush(timeout=0.5) == queued  # counts what is left; raises nothing
        assert time.monotonic() - started < 2
        assert not reports
        started = time.monotonic()
        p.close(timeout=0.5)
        assert time.monotonic() - started < 8
    finally:
        os.kill(worker, signal.SIGCONT)
    assert len(reports) == queued and len(p) == 0
    assert all(isinstance(err.exception, RequestTimedOut) and "closed before" in err.str() for err, _ in reports)
    # every batch holds its ring space from its first record (the C accumulator builds it
    # in a ring reservation), so all of them reached the ring: a leader may still write them
    assert {("not written" in str(err), "may still" in str(err)) for err, _ in reports} == {(False, True)}
    assert sorted(rec.value() for _, rec in reports) == [b"z" * 1000] * queued


@pytest.mark.parametrize("how", ["restart", "sigkill"])
def test_a_producer_and_a_consumer_carry_on_across_a_broker_restart(broker, how):
    create(broker, "survive", partitions=2)
    acked, errors = [], []

    def on_delivery(err, rec):
        (errors if err else acked).append(err or rec.value())
    with producer(broker, **{"linger.ms": 1}) as p, consumer(broker) as c:
        c.assign([TopicPartition("survive", i, OFFSET_BEGINNING) for i in range(2)])
        for i in range(100):
            p.produce("survive", b"before-%d" % i, partition=i % 2, on_delivery=on_delivery)
        assert p.flush(10) == 0
        got = consume_n(c, 100)
        if how == "restart":
            assert broker.stop() == 0
        else:
            broker.kill()
        for i in range(50):                   # into the rings while the broker is away
            p.produce("survive", b"during-%d" % i, partition=i % 2, on_delivery=on_delivery)
        broker.start()
        for i in range(50):
            p.produce("survive", b"after-%d" % i, partition=i % 2, on_delivery=on_delivery)
        assert p.flush(30) == 0, errors
        got += consume_n(c, 100, timeout=30)
        assert c.poll(0.3) is None
    assert not errors and len(acked) == 200
    assert sorted(r.value() for r in got) == sorted(acked)


def _state_lines(broker, topic):
    """The workers' 'producer state' lines for partition 0 of `topic`, oldest first."""
    with open(broker.stderr_path, "rb") as f:
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if f"{topic}-0: producer state:" in line]


def test_open_after_a_clean_stop_loads_the_snapshot_and_replays_nothing(broker):
    create(broker, "snap", **{"segment.bytes": "16384"})
    with producer(broker, **{"linger.ms": 0}) as p:
        for i in range(400):
            p.produce("snap", b"v%04d" % i + b"x" * 200)
        assert p.flush(10) == 0
        assert broker.stop() == 0
        pdir = os.path.join(broker.data_dir, "snap-0")
        snaps = sorted(n for n in os.listdir(pdir) if n.endswith(".snapshot"))
        assert snaps[-1] == "%020d.snapshot" % 400 and len(snaps) == 2   # the close's and a roll's
        opened = len(_state_lines(broker, "snap"))
        broker.start()
        wait_until(lambda: len(_state_lines(broker, "snap")) > opened, 10, what="the worker to open")
        assert "snapshot 400 loaded (1 producers), replayed 0 batches (0 bytes)" in _state_lines(broker, "snap")[-1]
        p.produce("snap", b"after")     # the producer's sequence 400 follows the snapshot's 399
        assert p.flush(10) == 0


def test_a_killed_worker_replays_only_the_log_after_the_last_roll(broker):
    create(broker, "snapkill", **{"segment.bytes": "16384"})
    with producer(broker, **{"linger.ms": 0}) as p:
        for i in range(400):
            p.produce("snapkill", b"v%04d" % i + b"x" * 200)
        assert p.flush(10) == 0
        pid = _worker_of(broker, "snapkill", 0)
        opened = len(_state_lines(broker, "snapkill"))
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _worker_of(broker, "snapkill", 0) not in (0, pid), 20, what="a new worker")
        wait_until(lambda: len(_state_lines(broker, "snapkill")) > opened, 10, what="the new worker to open")
        line = _state_lines(broker, "snapkill")[-1]
        assert "loaded (1 producers)" in line, line
        replayed = int(line.split("replayed ")[1].split(" ")[0])
        assert 0 < replayed < 100, line               # the active segment's batches, not 400
        p.produce("snapkill", b"after")
        assert p.flush(10) == 0
    with consumer(broker) as c:
        c.assign([TopicPartition("snapkill", 0, OFFSET_BEGINNING)])
        assert [r.offset() for r in consume_n(c, 401)] == list(range(401))
