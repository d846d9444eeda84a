"""Replication across log dirs against the real broker with three log dirs: each replica
is a process writing its own dir, the follower logs are byte-identical to the leader's,
the ISR follows Kafka's rules (a dead follower leaves at once, a stopped one after
replica.lag.time.max.ms, a caught-up one rejoins), acks=all is acknowledged only once
the in-sync replicas have the batch, and consumers never see above the high watermark."""
import filecmp
import json
import os
import signal

import pytest
from click.testing import CliRunner

from odradek.client import Admin, Consumer, Producer, TopicPartition
from odradek.client.consumer import OFFSET_BEGINNING
from odradek.client.errors import InvalidReplicationFactor, NotEnoughReplicas, NotEnoughReplicasAfterAppend
from odradek.daemon.cli import cli
from odradek.daemon.storage import filenames
from support.broker import INTERNAL_PARTITIONS, consume_n, wait_until


def run(broker, *args):
    r = CliRunner().invoke(cli, [str(a) for a in args] + ["--socket", broker.socket_path])
    assert r.exit_code == 0, r.output
    return r.stdout


def produce(broker, topic, values, acks="all", partition=0, timeout=10):
    """The delivery reports, (error, offset), of `values` produced to one partition."""
    reports = []
    with Producer({"socket": broker.socket_path, "acks": acks}) as p:
        for v in values:
            p.produce(topic, v, partition=partition, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
        assert p.flush(timeout) == 0
    return reports


def partition_of(broker, topic, partition=0):
    with Admin(broker.socket_path) as admin:
        return admin.describe_topic(topic).partitions[partition]


def status_of(broker, topic, partition=0):
    with Admin(broker.socket_path) as admin:
        st = admin.status()
    (p,) = [p for p in st.partitions if (p.topic, p.partition) == (topic, partition)]
    followers = {w.replica_id: w.pid for w in st.workers
                 if (w.topic, w.partition, w.role) == (topic, partition, "follower")}
    return p, followers


def wait_isr(broker, topic, isr, partition=0, timeout=10):
    wait_until(lambda: sorted(partition_of(broker, topic, partition).isr) == sorted(isr), timeout,
               what=f"ISR {isr}")


def log_files(dirs, topic, partition):
    """{log dir index: sorted .log file names} of the partition's dir in each log dir."""
    out = {}
    for i, d in enumerate(dirs):
        pd = d / filenames.partition_dir_name(topic, partition)
        out[i] = sorted(f for f in os.listdir(pd) if f.endswith(".log")) if pd.is_dir() else None
    return out


def assert_identical_logs(dirs, topic, partition, replicas):
    files = log_files(dirs, topic, partition)
    names = files[replicas[0]]
    assert names, files
    for r in replicas[1:]:
        assert files[r] == names, files
        for name in names:
            a = dirs[replicas[0]] / filenames.partition_dir_name(topic, partition) / name
            b = dirs[r] / filenames.partition_dir_name(topic, partition) / name
            assert filecmp.cmp(a, b, shallow=False), f"{name} differs between replicas {replicas[0]} and {r}"


def test_three_replicas_each_a_process_in_its_own_dir_with_byte_identical_logs(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        assert admin.create_topic("orders", 3, config={"segment.bytes": 4096}) == (3, 3)   # default: min(3, dirs)
        with pytest.raises(InvalidReplicationFactor, match="replication factor 4 needs as many log.dirs"):
            admin.create_topic("copies", 1, replication_factor=4)
        parts = admin.describe_topic("orders").partitions
        assert admin.describe_configs("orders")["min.insync.replicas"] == ("2", "default")
    assert sorted(p.leader for p in parts) == [0, 1, 2]
    assert all(sorted(p.replicas) == [0, 1, 2] and sorted(p.isr) == [0, 1, 2] for p in parts)
    values = [b"v%04d" % i + b"x" * 100 for i in range(300)]   # several 4 KiB segments
    reports = produce(broker, "orders", values)
    assert reports == [(None, i) for i in range(300)]
    st, followers = status_of(broker, "orders")
    assert sorted(followers) == sorted(r for r in parts[0].replicas if r != parts[0].leader)
    assert all(pid > 0 for pid in followers.values())
    assert st.high_watermark == st.log_end_offset == 300
    assert [(f.state, f.lag_records) for f in st.followers] == [("running", 0), ("running", 0)]
    out = run(broker, "status")
    assert f"{3 + INTERNAL_PARTITIONS} partitions, 0 under-replicated" in out
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition("orders", 0, OFFSET_BEGINNING)])
        assert [r.value() for r in consume_n(c, 300)] == values
    finally:
        c.close()
    assert broker.stop() == 0
    assert len(log_files(dirs, "orders", 0)[0]) >= 3
    assert_identical_logs(dirs, "orders", 0, parts[0].replicas)


def test_a_killed_follower_leaves_the_isr_at_once_and_rejoins_after_its_restart(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    p = partition_of(broker, "t")
    assert produce(broker, "t", [b"a"] * 10) == [(None, i) for i in range(10)]
    _, followers = status_of(broker, "t")
    victim, pid = sorted(followers.items())[0]
    os.kill(pid, signal.SIGKILL)   # a follower the broker we started forked
    # out of the ISR at once (its process died), back once restarted and caught up
    wait_until(lambda: victim not in partition_of(broker, "t").isr or status_of(broker, "t")[1][victim] != pid,
               10, what="the follower to leave the ISR or restart")
    assert f"replica {victim} left, its follower process ended" in broker.stderr(tail=None)
    assert produce(broker, "t", [b"b"] * 10) == [(None, 10 + i) for i in range(10)]   # min.insync 2 of 3
    wait_isr(broker, "t", p.replicas)
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, p.replicas)


def test_stopped_followers_hold_the_high_watermark_then_leave_the_isr_and_acks_all_gets_not_enough_replicas(
        three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    p = partition_of(broker, "t")
    assert produce(broker, "t", [b"before"] * 5) == [(None, i) for i in range(5)]
    _, followers = status_of(broker, "t")
    stopped = list(followers.values())
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)   # alive, but copying nothing
    try:
        c = Consumer({"socket": broker.socket_path})
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        assert len(consume_n(c, 5)) == 5
        # acks=1 is appended at once but stays above the high watermark: not visible
        assert produce(broker, "t", [b"unreplicated"], acks=1) == [(None, 5)]
        st, _ = status_of(broker, "t")
        assert (st.log_end_offset, st.high_watermark) == (6, 5)
        assert c.consume(1, 0.2) == []
        # acks=all waits for the ISR; when it shrinks below min.insync.replicas=2 the
        # batch is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND, and the next one is refused
        [(err, offset)] = produce(broker, "t", [b"waits"], timeout=20)
        assert isinstance(err.exception, NotEnoughReplicasAfterAppend) and offset < 0, err
        assert partition_of(broker, "t").isr == [p.leader]
        assert "not caught up for" in broker.stderr(tail=None)
        # the ISR is the leader alone: the high watermark moved, the records are visible
        assert [r.value() for r in consume_n(c, 2)] == [b"unreplicated", b"waits"]
        [(err, _)] = produce(broker, "t", [b"refused"])
        assert isinstance(err.exception, NotEnoughReplicas), err
        assert "1 under min ISR" in run(broker, "status")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    wait_isr(broker, "t", p.replicas)   # caught up: back in the ISR
    assert produce(broker, "t", [b"after"]) == [(None, 7)]   # the refused batch took no offset
    c.close()
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, p.replicas)


def write_old_metadata(dirs, topic, placements):
    """cluster-metadata.json as a version before replication saved it (no partition
    epochs; isr = every replica though only the leader's dir had data)."""
    parts = [{"partition": i, "replicas": r, "leader": r[0], "leader_epoch": 0, "isr": list(r)}
             for i, r in enumerate(placements)]
    doc = {"version": 3, "next_producer_id": 1000,
           "topics": {topic: {"topic_id": "9f2c" * 8, "configs": {}, "partitions": parts}}}
    for d in dirs:
        (d / filenames.CLUSTER_METADATA).write_text(json.dumps(doc, indent=1, sort_keys=True))
    for i, r in enumerate(placements):
        os.mkdir(dirs[r[0]] / filenames.partition_dir_name(topic, i))


def test_a_topic_saved_before_replication_gets_its_followers_which_catch_up_and_join(three_dirs, start):
    _, dirs, _ = three_dirs
    write_old_metadata(dirs, "old", [[0, 1, 2], [1, 2, 0]])
    broker = start()
    wait_isr(broker, "old", [0, 1, 2], partition=0)
    wait_isr(broker, "old", [0, 1, 2], partition=1)
    assert produce(broker, "old", [b"x"] * 3) == [(None, i) for i in range(3)]
    assert f"{2 + INTERNAL_PARTITIONS} partitions, 0 under-replicated" in run(broker, "status")
    assert broker.stop() == 0
    assert_identical_logs(dirs, "old", 0, [0, 1, 2])


def leader_pid(broker, topic, partition=0):
    with Admin(broker.socket_path) as admin:
        st = admin.status()
    running = [w.pid for w in st.workers if (w.topic, w.partition, w.role) == (topic, partition, "leader") and w.pid]
    return running[0] if running else None


def test_a_killed_leader_is_replaced_by_an_in_sync_follower_and_rejoins_as_a_follower(three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    before = partition_of(broker, "t")
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        with Producer({"socket": broker.socket_path, "acks": "all"}) as p:
            reports = []
            for i in range(20):
                p.produce("t", b"%d" % i, partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
            assert p.flush(10) == 0
            pid = leader_pid(broker, "t")
            os.kill(pid, signal.SIGKILL)   # the leader worker the broker we started forked
            wait_until(lambda: partition_of(broker, "t").leader != before.leader, 10, what="a new leader")
            # the same producer and consumer carry on, with no code of theirs
            for i in range(20, 40):
                p.produce("t", b"%d" % i, partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
            assert p.flush(10) == 0
        assert reports == [(None, i) for i in range(40)]
        assert [r.value() for r in consume_n(c, 40)] == [b"%d" % i for i in range(40)]
    finally:
        c.close()
    after = partition_of(broker, "t")
    assert after.leader_epoch == before.leader_epoch + 1 and after.leader in before.isr
    assert f"leader {before.leader} died; replica {after.leader} leads in epoch {after.leader_epoch}" in \
        broker.stderr(tail=None)
    wait_isr(broker, "t", before.replicas)   # the old leader caught up as a follower
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, before.replicas)


def test_a_lost_log_dir_moves_leadership_to_an_in_sync_replica_and_its_replicas_rejoin_when_put_back(
        three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 3)
    leaders = {p.partition: p.leader for p in (partition_of(broker, "t", i) for i in range(3))}
    for part in range(3):
        assert produce(broker, "t", [b"%d" % part] * 5, partition=part) == [(None, i) for i in range(5)]
    assert broker.stop() == 0
    lost = 1
    os.rename(dirs[lost], str(dirs[lost]) + ".away")
    broker = start()
    moved = [part for part, d in leaders.items() if d == lost]
    for part in range(3):
        p = partition_of(broker, "t", part)
        assert p.leader != lost and lost not in p.isr and len(p.isr) == 2, p
        # min.insync.replicas 2 of the 2 left: acks=all still goes through, on every partition
        assert produce(broker, "t", [b"more"], partition=part) == [(None, 5)]
    assert [partition_of(broker, "t", part).leader_epoch for part in moved] == [1] * len(moved)
    assert f"{3 + INTERNAL_PARTITIONS} under-replicated" in run(broker, "status")   # __consumer_offsets too
    assert broker.stop() == 0
    os.rename(str(dirs[lost]) + ".away", dirs[lost])
    broker = start()
    for part in range(3):
        wait_isr(broker, "t", [0, 1, 2], partition=part)
    assert broker.stop() == 0
    for part in range(3):
        assert_identical_logs(dirs, "t", part, [0, 1, 2])


def test_a_replaced_disk_is_re_replicated_after_forget_data_without_losing_a_record(three_dirs, start):
    import shutil
    import subprocess
    import sys
    _, dirs, config = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 3)
    for part in range(3):
        assert produce(broker, "t", [b"%d" % part] * 5, partition=part) == [(None, i) for i in range(5)]
    assert broker.stop() == 0
    lost = 2
    shutil.rmtree(dirs[lost])   # the disk died
    dirs[lost].mkdir()          # ... and an empty one took its place
    r = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "log-dirs", "forget-data", str(dirs[lost]),
                        "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr   # every partition has another in-sync copy: no data loss to accept
    assert f"{3 + INTERNAL_PARTITIONS} replicas there are copied again from their leaders" in r.stdout, r.stdout
    assert "0 partitions with no other in-sync copy" in r.stdout
    broker = start()
    for part in range(3):
        wait_isr(broker, "t", [0, 1, 2], partition=part)
        assert produce(broker, "t", [b"more"], partition=part) == [(None, 5)]
    assert broker.stop() == 0
    for part in range(3):
        assert_identical_logs(dirs, "t", part, [0, 1, 2])


def test_acks_all_fsync_acknowledges_only_what_every_in_sync_replica_has_fsynced(three_dirs, start):
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("durable", 1, config={"acks.all.fsync": "true"})
        admin.create_topic("memory", 1)
    for topic in ("durable", "memory"):
        assert produce(broker, topic, [b"x"] * 10) == [(None, i) for i in range(10)]
    durable, _ = status_of(broker, "durable")
    memory, _ = status_of(broker, "memory")
    # acknowledged means fsynced on the followers too (group commit), ...
    assert [f.synced_offset >= 10 for f in durable.followers] == [True, True], durable.followers
    # ... where without the setting nothing was fsynced yet (no roll, no flush.ms)
    assert [f.synced_offset for f in memory.followers] == [0, 0], memory.followers


def test_the_preferred_replica_gets_leadership_back_once_it_is_in_sync(three_dirs, start):
    _, dirs, config = three_dirs
    with open(config, "a") as f:
        f.write("leader.imbalance.check.interval.seconds = 1\n")
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    before = partition_of(broker, "t")
    preferred = before.replicas[0]
    assert before.leader == preferred
    assert produce(broker, "t", [b"a"] * 5) == [(None, i) for i in range(5)]
    os.kill(leader_pid(broker, "t"), signal.SIGKILL)   # another replica leads ...
    wait_until(lambda: partition_of(broker, "t").leader != preferred, 10, what="a new leader")
    assert produce(broker, "t", [b"b"] * 5) == [(None, 5 + i) for i in range(5)]
    # ... until the preferred one is back in sync: then it leads again, losing nothing
    wait_until(lambda: partition_of(broker, "t").leader == preferred, 15, what="the preferred leader back")
    assert f"handed over to the preferred replica {preferred}" in broker.stderr(tail=None)
    wait_isr(broker, "t", before.replicas)
    assert produce(broker, "t", [b"c"] * 5) == [(None, 10 + i) for i in range(5)]
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        assert [r.value() for r in consume_n(c, 15)] == [b"a"] * 5 + [b"b"] * 5 + [b"c"] * 5
    finally:
        c.close()
    assert broker.stop() == 0
    assert_identical_logs(dirs, "t", 0, before.replicas)


@pytest.mark.parametrize("unclean", [False, True])
def test_with_no_in_sync_follower_a_dead_leader_waits_unless_unclean_election_is_enabled(three_dirs, start, unclean):
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, config={"unclean.leader.election.enable": str(unclean).lower(),
                                           "min.insync.replicas": "1"})
    before = partition_of(broker, "t")
    assert produce(broker, "t", [b"both"] * 3) == [(None, i) for i in range(3)]
    _, followers = status_of(broker, "t")
    for pid in followers.values():
        os.kill(pid, signal.SIGSTOP)   # alive but copying nothing: out of the ISR after LAG_MS
    try:
        assert produce(broker, "t", [b"leader only"] * 2, acks=1) == [(None, 3), (None, 4)]
        wait_isr(broker, "t", [before.leader])   # behind for LAG_MS: out
        os.kill(leader_pid(broker, "t"), signal.SIGKILL)
    finally:
        for pid in followers.values():
            os.kill(pid, signal.SIGCONT)
    if unclean:   # an out-of-sync follower leads: what only the old leader had may be lost, and is said
        wait_until(lambda: partition_of(broker, "t").leader != before.leader, 10, what="an unclean election")
        assert "UNCLEAN election" in broker.stderr(tail=None)
        # (on one host the follower may still copy the old leader's last records from its
        # files before it takes over: then nothing is lost)
        hw = wait_until(lambda: status_of(broker, "t")[0].high_watermark >= 3 and status_of(broker, "t")[0].high_watermark,
                        10, what="the high watermark")
        expected = ([b"both"] * 3 + [b"leader only"] * 2)[:hw]
    else:         # the partition waits for its leader, the last in-sync replica, and loses nothing
        wait_until(lambda: leader_pid(broker, "t"), 10, what="the leader restarted")
        assert partition_of(broker, "t").leader == before.leader
        assert "no in-sync replica to take over" in broker.stderr(tail=None)
        expected = [b"both"] * 3 + [b"leader only"] * 2
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        wait_until(lambda: status_of(broker, "t")[0].high_watermark == len(expected), 10, what="the high watermark")
        assert [r.value() for r in consume_n(c, len(expected))] == expected
    finally:
        c.close()


def test_an_elected_follower_that_does_not_take_over_is_replaced_by_a_leader_worker_on_its_replica(three_dirs, start):
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    before = partition_of(broker, "t")
    assert produce(broker, "t", [b"a"] * 5) == [(None, i) for i in range(5)]
    _, followers = status_of(broker, "t")
    first = next(r for r in before.isr if r != before.leader)   # the one the election picks
    os.kill(followers[first], signal.SIGSTOP)   # alive, in the ISR (idle: caught up), but stuck
    try:
        os.kill(leader_pid(broker, "t"), signal.SIGKILL)
        wait_until(lambda: "did not take over within" in broker.stderr(tail=None), 10, what="the promotion timeout")
    finally:
        try:
            os.kill(followers[first], signal.SIGCONT)
        except ProcessLookupError:
            pass   # killed by the broker, as it should be
    wait_until(lambda: leader_pid(broker, "t"), 10, what="a leader worker")
    assert partition_of(broker, "t").leader == first
    assert produce(broker, "t", [b"b"] * 5) == [(None, 5 + i) for i in range(5)]


def test_a_producer_goes_on_after_a_new_leader_that_never_saw_its_refused_batch(three_dirs, start):
    # A batch refused with NOT_ENOUGH_REPLICAS uses up its sequence numbers at the leader
    # that refused it, and only there: the producer's next batches are numbered after it.
    # A successor elected later saw none of that, and answered every later batch of the
    # producer with OUT_OF_ORDER_SEQUENCE_NUMBER, for good (seen in the replication fault
    # suite). It now takes a forward gap in the first batch a producer sends it.
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)   # 3 replicas, min.insync.replicas 2
    reports = []
    p = Producer({"socket": broker.socket_path, "acks": "all", "enable.idempotence": True})
    stopped = []
    try:
        def send(values):
            del reports[:]
            for v in values:
                p.produce("t", v, partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
            assert p.flush(10) == 0
            return list(reports)

        assert send([b"a", b"b"]) == [(None, 0), (None, 1)]
        leader = partition_of(broker, "t").leader
        _, followers = status_of(broker, "t")
        for pid in followers.values():
            os.kill(pid, signal.SIGSTOP)   # followers the broker we started forked
            stopped.append(pid)
        (shrunk,) = send([b"x"])   # appended, held until the stopped followers leave the ISR
        assert isinstance(shrunk[0].exception, NotEnoughReplicasAfterAppend), shrunk
        wait_isr(broker, "t", [leader])
        (refused,) = send([b"refused"])   # refused before the append: its sequence is used up
        assert isinstance(refused[0].exception, NotEnoughReplicas), refused
        while stopped:
            os.kill(stopped.pop(), signal.SIGCONT)
        wait_isr(broker, "t", [0, 1, 2])
        os.kill(leader_pid(broker, "t"), signal.SIGKILL)   # the one that refused it
        wait_until(lambda: partition_of(broker, "t").leader != leader, 10, what="a new leader")
        assert send([b"c", b"d"]) == [(None, 3), (None, 4)]   # after x, which the followers copied
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        p.close(5)
