"""Partition limits and large creates against the real broker: refused above the limits
with the key named, served while hundreds of workers start, stopped promptly by SIGTERM
mid-create, consistent after a SIGKILL mid-create, and a saved topic above the limits
loaded offline and deletable."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from odradek.client import Admin
from odradek.client.errors import InvalidPartitions, LeaderNotAvailable, PolicyViolation
from odradek.client.protocol import CLIENT, Connection, ControlClient, messages as m
from odradek.daemon.storage.filenames import CLUSTER_METADATA
from support.broker import INTERNAL_PARTITIONS, BrokerProcess, raw_socket, wait_until

LARGE = 300                  # partitions of a "large" create: a few seconds of forks here
MAX_ANSWER_S = 0.5           # longest a request may wait while they start
STOP_WITHIN_S = 10.0
PROBE_INTERVAL_S = 0.005     # between two requests of the answer-time probe


def limits(total, per_topic):
    return ["--override", f"max.partitions={total}", "--override", f"max.partitions.per.topic={per_topic}"]


@pytest.fixture
def started():
    brokers = []

    def start(path, args=()):
        b = BrokerProcess(path, args=list(args)).start()
        brokers.append(b)
        return b
    yield start
    for b in brokers:
        b.kill()
        assert not b.leftovers(), f"processes left behind: {b.leftovers()}"


def full_log(broker):
    with open(broker.stderr_path, "rb") as f:
        return f.read().decode(errors="replace")


def partition_dirs(data_dir, topic):
    return sorted(n for n in os.listdir(data_dir) if n.rsplit("-", 1)[0] == topic)


def running_workers(admin, topic):
    return sum(1 for w in admin.status().workers if w.topic == topic and w.state == "running" and w.pid)


def test_creates_above_either_limit_are_refused_naming_the_key_and_change_nothing(tmp_path, started):
    b = started(tmp_path / "data", limits(12, 8))
    with Admin(b.socket_path) as admin:
        with pytest.raises(InvalidPartitions, match=r"9 partitions; the limit is 8 \(max.partitions.per.topic\)"):
            admin.create_topic("a", 9)
        admin.create_topic("a", 6)
        with pytest.raises(PolicyViolation, match=r"the limit is 12 \(max.partitions\)"):
            admin.create_topic("b", 6)   # 1 internal + 6 + 6
        with pytest.raises(InvalidPartitions, match=r"max.partitions.per.topic"):
            admin.create_partitions("a", 9)
        with pytest.raises(PolicyViolation, match=r"max.partitions"):
            admin.create_topic("c", 6, validate_only=True)
        assert {n: len(t.partitions) for n, t in admin.list_topics().items()} == {"a": 6}
    cli = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "topics", "create", "huge", "--partitions",
                          "1000000", "--socket", b.socket_path], capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0 and "max.partitions.per.topic" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert b.stop() == 0
    b.start()
    with Admin(b.socket_path) as admin:
        assert {n: len(t.partitions) for n, t in admin.list_topics().items()} == {"a": 6}
    assert partition_dirs(b.data_dir, "b") == partition_dirs(b.data_dir, "huge") == []
    assert b.stop() == 0


def test_a_large_create_leaves_the_broker_answering_and_sigterm_stops_it_promptly(tmp_path, started):
    b = started(tmp_path / "data")
    latencies, stop = [], threading.Event()

    def ask():
        with ControlClient(b.socket_path, timeout=10) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                c.call(m.ApiVersionsRequest())
                latencies.append(time.monotonic() - t0)
                # pacing, not waiting for time to pass: the probe samples the broker's answer
                # time and must not become a load of its own (~200 requests a second, one in
                # flight); stop.wait ends at once when the test is done
                stop.wait(PROBE_INTERVAL_S)
    asker = threading.Thread(target=ask)
    asker.start()
    try:
        with Admin(b.socket_path, timeout=60) as admin:
            wait_until(lambda: latencies, what="a first answer")
            before = len(latencies)
            admin.create_topic("big", LARGE)
            wait_until(lambda: running_workers(admin, "big") == LARGE, timeout=120, what=f"{LARGE} workers")
    finally:
        stop.set()
        asker.join(30)
    during = latencies[before:]
    assert len(during) > 20 and max(during) < MAX_ANSWER_S, f"max answer {max(during):.3f}s"
    with Admin(b.socket_path) as admin:   # a second large create, and SIGTERM in the middle of it
        admin.create_topic("bigger", LARGE)
    t0 = time.monotonic()
    assert b.stop(timeout=STOP_WITHIN_S) == 0, b.stderr()
    assert time.monotonic() - t0 < STOP_WITHIN_S
    assert "workers not started" in full_log(b)


def saved_topics(data_dir):
    """The topics of the metadata saved in `data_dir` (replaced atomically: never torn)."""
    try:
        with open(os.path.join(data_dir, CLUSTER_METADATA)) as f:
            return json.load(f).get("topics", {})
    except FileNotFoundError:
        return {}


def test_sigkill_mid_create_comes_back_with_the_whole_topic_or_none_of_it(tmp_path, started):
    b = started(tmp_path / "data")
    # where the kill lands: before the broker reads the request; once the topic's first
    # partition dir is made (before or after the metadata naming it is saved: dirs come
    # first); once the saved metadata names it (its workers still starting)
    kill_points = [lambda name: True,
                   lambda name: partition_dirs(b.data_dir, name),
                   lambda name: name in saved_topics(b.data_dir)]
    for attempt, reached in enumerate(kill_points):
        name = f"t{attempt}"
        s = raw_socket(b.socket_path)
        try:   # the request, and no wait for its answer
            s.sendall(Connection(CLIENT).send_request(m.CreateTopicsRequest(topics=[m.CreatableTopic(
                name=name, num_partitions=LARGE // 3, replication_factor=-1, configs={})])))
            wait_until(lambda: reached(name), timeout=30, what=f"kill point {attempt} of the create of {name}")
            b.kill()
        finally:
            s.close()
        b.start()
        with Admin(b.socket_path, timeout=30) as admin:
            topics = admin.list_topics()
            if name in topics:
                assert len(topics[name].partitions) == LARGE // 3
                wait_until(lambda: running_workers(admin, name) == LARGE // 3, timeout=60, what="its workers")
                assert len(partition_dirs(b.data_dir, name)) == LARGE // 3
            else:
                assert attempt < 2, "the metadata named the topic before the kill"
                assert partition_dirs(b.data_dir, name) == []
    assert b.stop() == 0, b.stderr()


def test_a_saved_topic_above_the_limits_is_offline_and_can_be_deleted(tmp_path, started):
    b = started(tmp_path / "data")
    with Admin(b.socket_path) as admin:
        admin.create_topic("big", 20)
        admin.create_topic("small", 2)
    assert b.stop() == 0
    os.mkdir(os.path.join(b.data_dir, "ghost-0"))   # what a create killed before its save leaves
    os.mkdir(os.path.join(b.data_dir, "ghost-1"))   # a dir holding data of no topic: kept
    with open(os.path.join(b.data_dir, "ghost-1", "00000000000000000000.log"), "wb") as f:
        f.write(b"x")
    b.args += limits(10, 10)
    b.start()
    err = full_log(b)
    assert "topic big is offline: its 20 partitions are above max.partitions.per.topic=10" in err
    assert "odradek topics delete big" in err
    assert partition_dirs(b.data_dir, "ghost") == ["ghost-1"] and "ghost-1 holds data of no topic" in err
    with Admin(b.socket_path) as admin:
        wait_until(lambda: running_workers(admin, "small") == 2, what="small's workers")
        assert running_workers(admin, "big") == 0
        assert len(b.workers()) == 2 + INTERNAL_PARTITIONS
        with pytest.raises(LeaderNotAvailable, match="offline"):
            admin.list_offsets("big", 0)
        with pytest.raises(PolicyViolation, match="offline"):
            admin.create_partitions("big", 21)
    cli = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "topics", "delete", "big", "--socket",
                          b.socket_path], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert partition_dirs(b.data_dir, "big") == []
    assert b.stop() == 0
    b.start()
    with Admin(b.socket_path) as admin:
        assert list(admin.list_topics()) == ["small"]
    assert "offline" not in full_log(b).split("partition limits")[-1]
    assert b.stop() == 0, b.stderr()
