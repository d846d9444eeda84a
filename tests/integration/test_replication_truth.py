"""Until replication across log dirs is built, a broker with three log dirs keeps each
partition in one dir, and says so: new topics get one replica, a factor above 1 is
refused, and a topic saved with three replicas by an earlier version reports ISR = its
leader, counts as under-replicated, and refuses acks=all (min.insync.replicas 2)."""
import json
import os

import pytest
from click.testing import CliRunner

from odradek.client import Admin, Producer
from odradek.client.errors import InvalidReplicationFactor, NotEnoughReplicas
from odradek.daemon.cli import cli
from odradek.daemon.storage import filenames
from support.broker import INTERNAL_PARTITIONS, BrokerProcess


@pytest.fixture
def three_dirs(tmp_path):
    """(data dir holding the socket, [three log dirs], config path); the broker is
    started by the test (after it wrote what it wants found)."""
    data = tmp_path / "data"
    dirs = [tmp_path / f"disk{i}" for i in range(3)]
    for d in (data, *dirs):
        d.mkdir()
    config = tmp_path / "odradek.toml"
    config.write_text(f"log.dirs = {json.dumps([str(d) for d in dirs])}\n"
                      f"socket.path = {json.dumps(str(data / 'odradek.sock'))}\n")
    return data, dirs, config


@pytest.fixture
def start(three_dirs):
    started = []

    def start():
        data, _, config = three_dirs
        started.append(BrokerProcess(data, config=config).start())
        return started[-1]
    yield start
    for b in started:
        try:
            code = b.stop()
            assert code == 0, f"broker exit status {code}: {b.stderr()}"
            assert not b.leftovers(), f"processes left behind: {b.leftovers()}"
        finally:
            b.kill()


def run(broker, *args):
    r = CliRunner().invoke(cli, [str(a) for a in args] + ["--socket", broker.socket_path])
    assert r.exit_code == 0, r.output
    return r.stdout


def produce_one(broker, topic, acks):
    """The delivery reports, (error, offset), of one record produced to partition 0."""
    reports = []
    with Producer({"socket": broker.socket_path, "acks": acks}) as p:
        p.produce(topic, b"v", partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset)))
        assert p.flush(10) == 0
    return reports


def test_new_topics_have_one_replica_and_a_larger_factor_is_refused(start):
    broker = start()
    with Admin(broker.socket_path) as admin:
        assert admin.create_topic("orders", 3) == (3, 1)
        with pytest.raises(InvalidReplicationFactor, match="replication across log dirs is not built yet"):
            admin.create_topic("copies", 1, replication_factor=3)
        assert "copies" not in admin.list_topics()
        parts = admin.list_topics(["orders"])["orders"].partitions
    assert sorted(p.leader for p in parts) == [0, 1, 2]   # leaders still spread over the dirs
    assert all(p.replicas == [p.leader] and p.isr == [p.leader] for p in parts)
    assert f"{3 + INTERNAL_PARTITIONS} partitions, 0 under-replicated" in run(broker, "status")
    assert produce_one(broker, "orders", "all") == [(None, 0)]   # min.insync.replicas 1


def write_old_metadata(dirs, topic, placements):
    """cluster-metadata.json as the earlier version saved it (isr = every replica), in
    every log dir, and each partition's dir in its leader's log dir."""
    parts = [{"partition": i, "replicas": r, "leader": r[0], "leader_epoch": 0, "isr": list(r)}
             for i, r in enumerate(placements)]
    doc = {"version": 3, "next_producer_id": 1000,
           "topics": {topic: {"topic_id": "9f2c" * 8, "configs": {}, "partitions": parts}}}
    for d in dirs:
        (d / filenames.CLUSTER_METADATA).write_text(json.dumps(doc, indent=1, sort_keys=True))
    for i, r in enumerate(placements):
        os.mkdir(dirs[r[0]] / filenames.partition_dir_name(topic, i))


def test_a_topic_saved_with_three_replicas_reports_isr_leader_only_and_refuses_acks_all(three_dirs, start):
    _, dirs, _ = three_dirs
    write_old_metadata(dirs, "old", [[0, 1, 2], [1, 2, 0]])
    broker = start()
    rows = [line.split() for line in run(broker, "topics", "describe", "old").splitlines()[2:]]
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [("0", "0", "0,1,2", "0"), ("1", "1", "1,2,0", "1")]
    assert f"{2 + INTERNAL_PARTITIONS} partitions, 2 under-replicated" in run(broker, "status")
    with Admin(broker.socket_path) as admin:
        assert [p.isr for p in admin.list_topics(["old"])["old"].partitions] == [[0], [1]]
        with pytest.raises(InvalidReplicationFactor, match="not built yet"):
            admin.create_partitions("old", 3)
    with Admin(broker.socket_path) as admin:   # the default for 3 replicas, from the broker's 0
        assert admin.describe_configs("old")["min.insync.replicas"] == ("2", "default")
    [(err, _)] = produce_one(broker, "old", "all")   # refused before append, on the callback
    assert isinstance(err, NotEnoughReplicas)
    assert produce_one(broker, "old", 1) == [(None, 0)]
