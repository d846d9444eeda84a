"""Moving a replica to another log dir online (Kafka's AlterReplicaLogDirs, done the way
kafka-reassign-partitions does it) against the real broker with three log dirs and
topics of replication factor 2, so one dir is free: the new replica copies the log and
joins the ISR, then the old one is dropped and its dir removed, while a producer with
acks=all and a consumer carry on; a leader's replica hands leadership over first; a
refused move changes nothing; a move saved under way finishes after a broker restart."""
import json
import os
import threading

from click.testing import CliRunner

from integration.test_replication import assert_identical_logs, partition_of, produce
from odradek.client import Admin, Consumer, Producer, TopicPartition
from odradek.client.consumer import OFFSET_BEGINNING
from odradek.client.errors import (InvalidReplicaAssignment, LogDirNotFound, ReassignmentInProgress,
                                   UnknownTopicOrPartition)
from odradek.daemon.cli import cli
from odradek.daemon.storage import filenames
from support.broker import BrokerProcess, consume_n, wait_until


def moving(broker, topic, partition=0):
    with Admin(broker.socket_path) as admin:
        (p,) = [p for p in admin.status([topic]).partitions if p.partition == partition]
    return p.adding_replicas, p.removing_replicas


def partition_dir(dirs, index, topic, partition=0):
    return dirs[index] / filenames.partition_dir_name(topic, partition)


class KeepProducing:
    """A producer with acks=all in a thread, producing until stopped; `acked` the
    (offset, value) of every acknowledged record, `errors` any delivery error."""

    def __init__(self, broker, topic):
        self.acked, self.errors = [], []
        self._stop = threading.Event()
        self._producer = Producer({"socket": broker.socket_path, "acks": "all"})
        self._thread = threading.Thread(target=self._run, args=(topic,))
        self._thread.start()

    def _report(self, err, rec):
        (self.errors.append(err) if err is not None else self.acked.append((rec.offset(), rec.value())))

    def _run(self, topic):
        i = 0
        while not self._stop.is_set() and i < 200_000:
            self._producer.produce(topic, b"r%06d" % i, partition=0, on_delivery=self._report)
            i += 1
            if i % 50 == 0:
                self._producer.flush(10)

    def stop(self):
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(30)
            assert self._producer.flush(10) == 0
            self._producer.close()
        return sorted(self.acked)


def read_all(broker, topic, n):
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        return [(r.offset(), r.value()) for r in consume_n(c, n)]
    finally:
        c.close()


def move_under_load(broker, dirs, src, dst, topic="t"):
    """Move replica `src` to `dst` while producing and consuming; returns the acked
    records, once the consumer, reading all along, has read every one of them."""
    load = KeepProducing(broker, topic)
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        wait_until(lambda: len(load.acked) >= 200, 10, what="records acknowledged before the move")
        with Admin(broker.socket_path) as admin:
            assert admin.alter_replica_log_dirs([(topic, 0, dirs[src], dirs[dst])]) == [None]
        seen = consume_n(c, 100)   # the consumer reads on while the move goes on
        wait_until(lambda: moving(broker, topic) == ([], []), 15, what="the move to end")
        acked = len(load.acked)
        wait_until(lambda: len(load.acked) >= acked + 200, 10, what="records acknowledged after the move")
        records = load.stop()
        seen += consume_n(c, len(records) - len(seen))
    finally:
        c.close()
        load.stop()
    assert load.errors == []
    assert [o for o, _ in records] == list(range(len(records)))   # nothing acknowledged went missing
    assert [(r.offset(), r.value()) for r in seen] == records
    return records


def test_a_follower_replica_moves_to_a_free_dir_under_load_losing_nothing(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2, config={"segment.bytes": 16384})
    before = partition_of(broker, "t")
    follower = before.replicas[1]
    free = ({0, 1, 2} - set(before.replicas)).pop()
    move_under_load(broker, dirs, follower, free)
    after = partition_of(broker, "t")
    assert after.replicas == [before.leader, free] and sorted(after.isr) == sorted(after.replicas)
    assert after.leader == before.leader and after.leader_epoch == before.leader_epoch
    assert not partition_dir(dirs, follower, "t").exists()
    log = broker.stderr(tail=None)
    assert f"t-0: replica {follower} moved to {free}" in log and "t-0: moving replica" in log
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, [before.leader, free])


def test_the_leaders_replica_moves_after_handing_leadership_over(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2, config={"segment.bytes": 16384})
    before = partition_of(broker, "t")
    leader = before.leader
    free = ({0, 1, 2} - set(before.replicas)).pop()
    move_under_load(broker, dirs, leader, free)
    after = partition_of(broker, "t")
    # the new replica takes the old one's place: first, the preferred leader
    assert after.replicas == [free, before.replicas[1]] and sorted(after.isr) == sorted(after.replicas)
    assert after.leader != leader and after.leader_epoch > before.leader_epoch
    assert not partition_dir(dirs, leader, "t").exists()
    assert f"asking leader {leader} to hand over" in broker.stderr(tail=None)
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, after.replicas)


def test_refused_moves_change_nothing(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2)
        admin.create_topic("u", 1, replication_factor=2)
    assert produce(broker, "t", [b"x"] * 5) == [(None, i) for i in range(5)]
    before = partition_of(broker, "t")
    a, b = before.replicas
    free = ({0, 1, 2} - {a, b}).pop()
    with Admin(broker.socket_path) as admin:
        errors = admin.alter_replica_log_dirs([
            ("t", 0, dirs[a], str(dirs[0]) + "-nowhere"),   # not in log.dirs
            ("t", 0, dirs[a], "a\x00b"),                    # no path at all
            ("t", 0, dirs[a], dirs[b]),                     # already a replica there
            ("t", 0, dirs[free], dirs[free]),               # no replica there to move
            ("t", 7, dirs[a], dirs[free]),                  # no such partition
            ("nope", 0, dirs[a], dirs[free]),
        ])
    assert [type(e) for e in errors] == [LogDirNotFound, LogDirNotFound, InvalidReplicaAssignment,
                                         InvalidReplicaAssignment, UnknownTopicOrPartition,
                                         UnknownTopicOrPartition], errors
    assert "is not one of log.dirs" in errors[0].message and "already has a replica" in errors[2].message
    assert partition_of(broker, "t") == before and moving(broker, "t") == ([], [])
    assert not partition_dir(dirs, free, "t").exists()
    # a second move of a partition whose first is under way (same request: deterministic)
    u = partition_of(broker, "u")
    u_free = ({0, 1, 2} - set(u.replicas)).pop()
    with Admin(broker.socket_path) as admin:
        first, second = admin.alter_replica_log_dirs([("u", 0, dirs[u.replicas[1]], dirs[u_free]),
                                                      ("u", 0, dirs[u.replicas[0]], dirs[u_free])])
    assert first is None and isinstance(second, ReassignmentInProgress), second
    wait_until(lambda: moving(broker, "u") == ([], []), 15, what="the first move to end")
    assert partition_of(broker, "u").replicas == [u.replicas[0], u_free]
    # the CLI: one line on stderr, exit 1
    r = CliRunner().invoke(cli, ["log-dirs", "move", "t", "0", "--from", str(dirs[a]), "--to", str(dirs[b]),
                                 "--socket", broker.socket_path])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "already has a replica" in r.stderr, r.stderr
    assert partition_of(broker, "t") == before


def test_a_move_under_way_when_the_broker_crashes_finishes_after_its_restart(three_dirs, start):
    data, dirs, config = three_dirs
    broker = BrokerProcess(data, config=config).start()   # killed below: not the fixture's
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2, config={"segment.bytes": 1 << 20})
    values = [b"%06d" % i + b"x" * 1000 for i in range(3000)]   # 3 MB for the new replica to copy
    with Producer({"socket": broker.socket_path, "acks": "all"}) as p:
        for v in values:
            p.produce("t", v, partition=0)
        assert p.flush(20) == 0
    before = partition_of(broker, "t")
    follower = before.replicas[1]
    free = ({0, 1, 2} - set(before.replicas)).pop()
    try:
        with Admin(broker.socket_path) as admin:
            assert admin.alter_replica_log_dirs([("t", 0, dirs[follower], dirs[free])]) == [None]
    finally:
        broker.kill()   # SIGKILL at once: the new replica cannot be in sync yet (a clean stop
        #                 could let it finish: on a quiet machine it copies 3 MB in milliseconds)
    assert not broker.leftovers()
    saved = json.loads((dirs[0] / filenames.CLUSTER_METADATA).read_text())["topics"]["t"]["partitions"][0]
    assert (saved["adding_replicas"], saved["removing_replicas"]) == ([free], [follower]), saved
    broker = start()
    wait_until(lambda: moving(broker, "t") == ([], []), 15, what="the move to end after the restart")
    assert partition_of(broker, "t").replicas == [before.leader, free]
    assert not partition_dir(dirs, follower, "t").exists()
    assert [v for _, v in read_all(broker, "t", len(values))] == values
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, [before.leader, free])


def test_a_partition_dir_left_in_a_dir_without_a_replica_is_put_aside_at_start(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2)
    free = ({0, 1, 2} - set(partition_of(broker, "t").replicas)).pop()
    assert broker.stop() == 0
    left = partition_dir(dirs, free, "t")   # what a move that ended as the broker stopped leaves
    left.mkdir()
    (left / "00000000000000000000.log").write_bytes(b"old")
    broker = start()
    assert not left.exists()
    (stray,) = [d for d in os.listdir(dirs[free]) if d.startswith("t-0.") and d.endswith("-stray")]
    assert (dirs[free] / stray / "00000000000000000000.log").read_bytes() == b"old"   # kept, aside
    assert f"{left}: no replica of t-0 is in this log dir" in broker.stderr(tail=None)


def test_move_wait_shows_progress_until_done_and_status_flags_the_partition(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2)
    assert produce(broker, "t", [b"x"] * 50) == [(None, i) for i in range(50)]
    before = partition_of(broker, "t")
    free = ({0, 1, 2} - set(before.replicas)).pop()
    r = CliRunner().invoke(cli, ["log-dirs", "move", "t", "0", "--from", str(dirs[before.replicas[1]]),
                                 "--to", str(dirs[free]), "--wait", "--socket", broker.socket_path])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("moving t-0 from") and lines[-1] == \
        f"done: t-0 replicas {before.leader},{free}, ISR {before.leader},{free}, leader {before.leader}", lines


def test_a_move_saved_in_sync_with_its_old_replica_leading_finishes_at_start(three_dirs, start):
    """The broker stopped after the new replica joined the ISR, before the leader handed
    over: the saved metadata as it was then, and the new replica's dir as it had copied it."""
    import shutil
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=2)
    assert produce(broker, "t", [b"%d" % i for i in range(30)]) == [(None, i) for i in range(30)]
    before = partition_of(broker, "t")
    leader, other = before.replicas
    free = ({0, 1, 2} - {leader, other}).pop()
    assert broker.stop() == 0
    shutil.copytree(partition_dir(dirs, leader, "t"), partition_dir(dirs, free, "t"))
    doc = json.loads((dirs[0] / filenames.CLUSTER_METADATA).read_text())
    doc["version"] += 1
    p = doc["topics"]["t"]["partitions"][0]
    p.update(replicas=[leader, other, free], isr=[leader, other, free], adding_replicas=[free],
             removing_replicas=[leader], partition_epoch=p["partition_epoch"] + 2)
    for d in dirs:
        (d / filenames.CLUSTER_METADATA).write_text(json.dumps(doc))
    broker = start()
    wait_until(lambda: moving(broker, "t") == ([], []), 15, what="the move to end after the restart")
    after = partition_of(broker, "t")
    assert after.replicas == [free, other] and after.leader != leader and sorted(after.isr) == sorted([free, other])
    assert not partition_dir(dirs, leader, "t").exists()
    assert [v for _, v in read_all(broker, "t", 30)] == [b"%d" % i for i in range(30)]
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, after.replicas)
