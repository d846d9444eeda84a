"""Unmodified Kafka clients through the gateway: kafka-python, confluent-kafka (librdkafka)
and kcat (where installed) produce and consume (assign(): groups are tested with the
group APIs), keyed placement, headers, acks 0/1/all, the idempotent producer, read_committed against
odradek's transactional Producer, the long poll; and records crossing between TCP and
shared memory unchanged (keys, values, headers, timestamps, offsets)."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from confluent_kafka import Consumer as CKConsumer, Producer as CKProducer, TopicPartition as CKTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KPTopicPartition

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.partitioner import partition_for_key
from support.broker import BrokerProcess, consume_n, stop_cleanly, wait_until
from support.gateway import GatewayProcess

PARTITIONS = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwclients")
    broker = BrokerProcess(tmp / "data").start()
    gw = GatewayProcess(broker.socket_path, tmp).start()
    yield broker, gw
    gw.stop()
    stop_cleanly(broker)


_n = [0]


@pytest.fixture
def topic(env):
    _n[0] += 1
    name = f"t{_n[0]}"
    with Admin(env[0].socket_path) as admin:
        admin.create_topic(name, num_partitions=PARTITIONS)
    return name


def ck_consume(bootstrap, topic, n, timeout=20, **config):
    c = CKConsumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False, **config})
    try:
        c.assign([CKTopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert not msg.error(), msg.error()
                out.append(msg)
        return out
    finally:
        c.close()


def kp_consume(bootstrap, topic, n, **config):
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000, **config)
    try:
        tps = [KPTopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out = []
        for r in c:
            out.append(r)
            if len(out) == n:
                break
        return out
    finally:
        c.close()


def shm_consume(broker, topic, n):
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        return consume_n(c, n, timeout=20)


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_kafka_python_round_trip(env, topic, acks):
    _, gw = env
    p = KafkaProducer(bootstrap_servers=gw.bootstrap, acks=acks, enable_idempotence=acks == "all")
    futures = [p.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("n", b"%d" % i)]) for i in range(60)]
    p.flush(20)
    p.close()
    metas = [f.get(10) for f in futures]
    if acks != 0:
        assert all(m.offset >= 0 for m in metas)
    got = kp_consume(gw.bootstrap, topic, 60)
    assert sorted(r.value for r in got) == sorted(b"v%d" % i for i in range(60))
    for r in got:
        i = int(r.value[1:])
        assert r.key == b"k%d" % i and r.headers == [("n", b"%d" % i)]
        assert r.partition == partition_for_key(r.key, PARTITIONS)   # murmur2, as our Producer


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_confluent_round_trip(env, topic, acks):
    _, gw = env
    p = CKProducer({"bootstrap.servers": gw.bootstrap, "acks": acks, "linger.ms": 2,
                    "partitioner": "murmur2_random"})     # Kafka's (and our) murmur2 placement
    reports = []
    for i in range(300):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("n", b"%d" % i)],
                  on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))
    assert p.flush(20) == 0
    assert len(reports) == 300 and all(err is None for err, _, _ in reports)
    got = ck_consume(gw.bootstrap, topic, 300)
    assert sorted(m.value() for m in got) == sorted(b"v%d" % i for i in range(300))
    for m in got:
        i = int(m.value()[1:])
        assert m.key() == b"k%d" % i and m.headers() == [("n", b"%d" % i)]
        assert m.partition() == partition_for_key(m.key(), PARTITIONS)
    offsets = {}
    for m in got:
        offsets.setdefault(m.partition(), []).append(m.offset())
    assert all(o == list(range(len(o))) for o in offsets.values())


def test_confluent_idempotent_producer(env, topic):
    _, gw = env
    p = CKProducer({"bootstrap.servers": gw.bootstrap, "enable.idempotence": True, "linger.ms": 1,
                    "max.in.flight.requests.per.connection": 5})
    errors = []
    for i in range(2000):
        p.produce(topic, value=b"%d" % i, partition=i % PARTITIONS,
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(20) == 0 and errors == []
    got = ck_consume(gw.bootstrap, topic, 2000)
    assert len(got) == 2000 and len({m.value() for m in got}) == 2000      # each once


def test_tcp_records_read_by_the_shm_consumer_unchanged(env, topic):
    broker, gw = env
    p = CKProducer({"bootstrap.servers": gw.bootstrap, "linger.ms": 2})
    for i in range(100):
        p.produce(topic, key=None if i % 10 == 0 else b"k%d" % i, value=b"v" * i, partition=i % PARTITIONS,
                  headers=[("a", b"1"), ("b", None)] if i % 2 else None, timestamp=1_600_000_000_000 + i)
    assert p.flush(20) == 0
    tcp = {(m.partition(), m.offset()): m for m in ck_consume(gw.bootstrap, topic, 100)}
    shm = shm_consume(broker, topic, 100)
    assert len(tcp) == len(shm) == 100
    for r in shm:
        m = tcp[(r.partition(), r.offset())]
        assert (r.key(), r.value(), r.timestamp(), r.headers()) == (m.key(), m.value(), m.timestamp(), m.headers())
        i = len(r.value())
        assert r.timestamp()[1] == 1_600_000_000_000 + i and r.partition() == i % PARTITIONS


def test_shm_records_read_over_tcp_unchanged(env, topic):
    broker, gw = env
    with Producer({"socket": broker.socket_path, "linger.ms": 2}) as p:
        for i in range(100):
            p.produce(topic, b"w" * i, key=b"k%d" % i, headers=[("x", b"%d" % i)], timestamp=1_650_000_000_000 + i)
        assert p.flush(10) == 0
    shm = {(r.partition(), r.offset()): r for r in shm_consume(broker, topic, 100)}
    for consumed in (ck_consume(gw.bootstrap, topic, 100), kp_consume(gw.bootstrap, topic, 100)):
        assert len(consumed) == 100
        for m in consumed:
            if hasattr(m, "value") and callable(m.value):
                key, value, headers, ts, part, off = (m.key(), m.value(), m.headers(), m.timestamp()[1],
                                                      m.partition(), m.offset())
            else:
                key, value, headers, ts, part, off = m.key, m.value, m.headers, m.timestamp, m.partition, m.offset
            r = shm[(part, off)]
            assert (key, value, ts) == (r.key(), r.value(), r.timestamp()[1])
            assert [tuple(h) for h in headers] == [tuple(h) for h in r.headers()]


def test_read_committed_skips_an_aborted_transaction(env, topic):
    broker, gw = env
    with Producer({"socket": broker.socket_path, "transactional.id": f"tx-{topic}"}) as p:
        p.init_transactions()
        for word, commit in ((b"one", True), (b"two", False), (b"three", True)):
            p.begin_transaction()
            for i in range(5):
                p.produce(topic, word, partition=i % PARTITIONS)
            p.flush(10)
            p.commit_transaction() if commit else p.abort_transaction()
    committed = ck_consume(gw.bootstrap, topic, 10, **{"isolation.level": "read_committed"})
    assert sorted(m.value() for m in committed) == sorted([b"one"] * 5 + [b"three"] * 5)
    everything = ck_consume(gw.bootstrap, topic, 15, **{"isolation.level": "read_uncommitted"})
    assert sorted(m.value() for m in everything) == sorted([b"one"] * 5 + [b"two"] * 5 + [b"three"] * 5)
    by_kafka_python = kp_consume(gw.bootstrap, topic, 15, isolation_level="read_committed")
    assert sorted(r.value for r in by_kafka_python) == sorted([b"one"] * 5 + [b"three"] * 5)


def test_a_waiting_consumer_gets_a_later_record(env, topic):
    """A record produced while confluent-kafka's fetch waits in the gateway (a long poll of
    fetch.wait.max.ms=5000) reaches the consumer at once: the gateway wakes on the
    partition state, not at the end of the wait."""
    broker, gw = env
    stats = []
    c = CKConsumer({"bootstrap.servers": gw.bootstrap, "group.id": "unused", "fetch.wait.max.ms": 5000,
                    "statistics.interval.ms": 50, "stats_cb": stats.append})
    try:
        c.assign([CKTopicPartition(topic, 0, 0)])

        def fetch_waiting():     # librdkafka's statistics: a Fetch sent, its answer awaited
            assert c.poll(0.05) is None
            last = json.loads(stats[-1]) if stats else {}
            brokers = [b for b in last.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
            return any(b["req"].get("Fetch", 0) >= 1 and b["waitresp_cnt"] >= 1 for b in brokers)
        wait_until(fetch_waiting, 30, interval=0, what="the consumer's Fetch to wait in the gateway")
        with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
            p.produce(topic, b"late", partition=0)
            assert p.flush(10) == 0
        sent = time.monotonic()
        msg = c.poll(10)
        got = time.monotonic()
        assert msg is not None and msg.value() == b"late"
        assert got - sent < 0.5    # woken by the partition state, not at the end of fetch.wait.max.ms
    finally:
        c.close()


def _leader_pid(broker, topic, partition):
    with Admin(broker.socket_path) as admin:
        st = admin.status([topic])
    return next(w.pid for w in st.workers if w.topic == topic and w.partition == partition)


def test_a_leader_killed_under_tcp_load_loses_and_duplicates_nothing(env, topic):
    """The broker gives the gateway's rings to the restarted leader; the idempotence check
    turns a batch taken twice into a duplicate; Fetch maps the new leader's state."""
    broker, gw = env
    delivered, errors = [], []
    p = CKProducer({"bootstrap.servers": gw.bootstrap, "enable.idempotence": True, "linger.ms": 1})
    killed = []
    for i in range(3000):
        p.produce(topic, value=b"%d" % i, partition=0,
                  on_delivery=lambda err, msg: (errors if err else delivered).append(msg.value()))
        p.poll(0)
        if i == 1500:
            assert p.flush(20) == 0
            pid = _leader_pid(broker, topic, 0)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    assert p.flush(30) == 0 and errors == [] and len(delivered) == 3000
    assert _leader_pid(broker, topic, 0) != killed[0]
    got = ck_consume(gw.bootstrap, topic, 3000)
    assert sorted(int(m.value()) for m in got) == list(range(3000))
    assert [m.offset() for m in got] == list(range(3000))


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (Debian: apt-get install kcat)")
def test_kcat_produces_and_consumes(env, topic):
    """kcat bundles an older librdkafka (Debian's 2.0.2): Metadata v4, Produce v7, Fetch v11."""
    broker, gw = env
    lines = b"".join(b"k%d:v%d\n" % (i, i) for i in range(30))
    subprocess.run(["kcat", "-b", gw.bootstrap, "-P", "-t", topic, "-K:", "-X", "partitioner=murmur2_random"],
                   input=lines, check=True, timeout=60)
    out = subprocess.run(["kcat", "-b", gw.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                          "-f", "%k=%s@%p\n"], capture_output=True, check=True, timeout=60).stdout
    got = sorted(out.decode().split())
    assert got == sorted(f"k{i}=v{i}@{partition_for_key(b'k%d' % i, PARTITIONS)}" for i in range(30))
    assert len(shm_consume(broker, topic, 30)) == 30
