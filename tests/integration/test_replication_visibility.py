"""What the operator tools say about replication, against the real broker with three log
dirs: `odradek status`, `topics describe`, Admin.partition_health and
Admin.describe_log_dirs show each follower, its lag in records and time, the ISR and the
flags as they are: for followers in sync, one stopped (SIGSTOP: alive, copying nothing),
one killed (out of the ISR at once, then restarted), and the data bytes of every replica
in every dir."""
import os
import re
import signal
import time

from odradek.client import Admin
from odradek.daemon.storage import filenames
from support.broker import wait_until
from integration.test_describe_log_dirs import batch_bytes
from integration.conftest import LAG_MS
from integration.test_replication import partition_of, produce, run, status_of, wait_isr


def table(out, header):
    """{first cell: [{column: cell}]} of the table whose header row starts with `header`
    (columns are two or more spaces apart; a cell such as "1.5 KiB" holds one)."""
    cells_of = lambda line: re.split(r"\s{2,}", line.strip())   # noqa: E731
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:len(header)] == header)
    heads = cells_of(lines[at])
    rows = {}
    for line in lines[at + 1:]:
        if not line.strip():
            break
        cells = cells_of(line)
        rows.setdefault(cells[0], []).append(dict(zip(heads, cells)))
    return rows


def follower_rows(out, name):
    return {int(r["REPLICA"]): r for r in table(out, ["PARTITION", "REPLICA"]).get(name, [])}


def describe_row(out, partition):
    return table(out, ["PARTITION", "LEADER"])[str(partition)][0]


def test_in_sync_followers_are_shown_with_no_lag_and_every_dir_lists_its_replicas_with_their_bytes(
        three_dirs, start):
    _, dirs, _ = three_dirs
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 2)
        admin.create_topic("single", 1, replication_factor=1)
    sizes = {}
    for part in range(2):
        n = 20 * (part + 1)   # each partition its own size
        assert produce(broker, "t", [b"v" * (50 + i) for i in range(n)], partition=part) == \
            [(None, i) for i in range(n)]
    for part in range(2):
        wait_until(lambda: all(f.lag_records == 0 and f.size_bytes > 0 for f in status_of(broker, "t", part)[0].followers),
                   10, what="followers caught up")
    parts = {p: partition_of(broker, "t", p) for p in range(2)}

    with Admin(broker.socket_path) as admin:
        h = admin.partition_health()
        log_dirs = admin.describe_log_dirs(["t"])
    assert h.under_replicated == h.under_min_isr == h.offline == []
    lags = [f for f in h.followers if f.topic == "t"]
    assert sorted((f.partition, f.replica_id) for f in lags) == \
        sorted((p, r) for p in range(2) for r in parts[p].replicas if r != parts[p].leader)
    assert all(f.in_isr and f.state == "running" and f.lag_records == 0 and f.lag_ms == 0 for f in lags), lags
    assert not any(f.topic == "single" for f in h.followers)   # RF=1: no follower

    # every replica in every dir, leaders and followers, with the bytes dump-log reads
    for i, d in enumerate(log_dirs):
        got = sorted((r.partition, r.role) for r in d.replicas)
        assert got == sorted((p, "leader" if parts[p].leader == i else "follower") for p in range(2)), (i, got)
        for r in d.replicas:
            assert r.offset_lag == 0 and r.is_future is False
            size = batch_bytes(os.path.join(d.path, filenames.partition_dir_name("t", r.partition)))
            assert r.size == size, (i, r)
            sizes.setdefault(r.partition, set()).add(r.size)
    assert len(sizes[0]) == len(sizes[1]) == 1 and sizes[0] != sizes[1]   # identical copies, own sizes
    out = run(broker, "log-dirs", "describe", "--topic", "t")
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+\s+t-\d\s", line)]
    assert sorted((int(r[0]), r[1], int(r[2]), r[5]) for r in rows) == \
        sorted((i, f"t-{r.partition}", r.size, r.role) for i, d in enumerate(log_dirs) for r in d.replicas)

    out = run(broker, "status")
    p0 = table(out, ["PARTITION", "LEADER"])["t-0"][0]
    assert (p0["REPLICAS"], p0["ISR"], p0["HW"], p0["LOG-END"], p0["FLAGS"]) == \
        (",".join(map(str, parts[0].replicas)), ",".join(map(str, parts[0].isr)), "20", "20", "-")
    fr = follower_rows(out, "t-0")
    assert sorted(fr) == sorted(r for r in parts[0].replicas if r != parts[0].leader)
    assert all((r["STATE"], r["LOG-END"], r["LAG-RECORDS"], r["IN-ISR"]) == ("running", "20", "0", "yes")
               for r in fr.values()), fr
    assert "single-0" not in table(out, ["PARTITION", "REPLICA"])
    assert f"{h.partitions} partitions, 0 under-replicated, 0 under min ISR, 0 offline" in out
    row = describe_row(run(broker, "topics", "describe", "t"), 1)
    assert (row["HW"], row["END"], row["FLAGS"]) == ("40", "40", "-")
    assert row["FOLLOWER-LAG"] == ",".join(f"{r}:0" for r in sorted(parts[1].replicas) if r != parts[1].leader)
    assert broker.stop() == 0


def test_a_stopped_follower_shows_its_lag_in_records_and_time_then_leaves_the_isr(three_dirs, start):
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    p = partition_of(broker, "t")
    assert produce(broker, "t", [b"a"] * 5) == [(None, i) for i in range(5)]
    _, followers = status_of(broker, "t")
    victim, pid = sorted(followers.items())[0]
    other = next(r for r in followers if r != victim)
    os.kill(pid, signal.SIGSTOP)   # a follower the broker we started forked
    try:
        assert produce(broker, "t", [b"b"] * 7, acks=1) == [(None, 5 + i) for i in range(7)]
        stopped_at = time.time()
        wait_isr(broker, "t", [p.leader, other])   # after replica.lag.time.max.ms
        with Admin(broker.socket_path) as admin:
            h = admin.partition_health()
            dirs = admin.describe_log_dirs(["t"])
        assert h.under_replicated == ["t-0"] and h.under_min_isr == h.offline == []
        lag = {f.replica_id: f for f in h.followers if f.topic == "t"}
        assert (lag[victim].in_isr, lag[victim].log_end_offset, lag[victim].lag_records) == (False, 5, 7)
        assert LAG_MS <= lag[victim].lag_ms <= (time.time() - stopped_at) * 1000 + LAG_MS + 1000, lag[victim]
        assert lag[victim].size_bytes == -1   # a stopped process does not answer: not known, not waited for
        assert (lag[other].in_isr, lag[other].lag_records, lag[other].lag_ms) == (True, 0, 0)
        # the high watermark moved past the stopped follower once it left: Kafka's offset lag
        mine = next(r for r in dirs[victim].replicas if r.topic == "t")
        assert (mine.role, mine.offset_lag, mine.size) == ("follower", 7, -1)

        out = run(broker, "status")
        fr = follower_rows(out, "t-0")
        assert (fr[victim]["STATE"], fr[victim]["LOG-END"], fr[victim]["LAG-RECORDS"], fr[victim]["IN-ISR"]) == \
            ("stopped", "5", "7", "no")
        assert fr[victim]["LAG-TIME"] != "-" and fr[other]["IN-ISR"] == "yes"
        assert table(out, ["PARTITION", "LEADER"])["t-0"][0]["FLAGS"] == "under-replicated"
        assert "1 under-replicated, 0 under min ISR" in out
        assert "under-replicated (ISR smaller than the replicas): t-0" in out
        row = describe_row(run(broker, "topics", "describe", "t"), 0)
        assert row["FLAGS"] == "under-replicated" and f"{victim}:7" in row["FOLLOWER-LAG"].split(","), row
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_isr(broker, "t", p.replicas)
    with Admin(broker.socket_path) as admin:
        assert admin.partition_health().under_replicated == []
    assert broker.stop() == 0


def test_a_killed_follower_is_dead_and_out_of_the_isr_until_it_restarts_and_rejoins(three_dirs, start):
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, config={"min.insync.replicas": "3"})
    p = partition_of(broker, "t")
    assert produce(broker, "t", [b"a"] * 3) == [(None, i) for i in range(3)]
    _, followers = status_of(broker, "t")
    victim = min(followers)
    # each quick death doubles the restart backoff (0.1, 0.2, 0.4, 0.8 s): the fourth
    # leaves it dead long enough to look at, without racing its restart
    for _ in range(4):
        pid = wait_until(lambda: status_of(broker, "t")[1].get(victim), 10, what="a follower process")
        os.kill(pid, signal.SIGKILL)   # a follower the broker we started forked
        wait_until(lambda: status_of(broker, "t")[1].get(victim) != pid, 10, what="the follower's death")
    assert "restarting in 0.8s" in broker.stderr(tail=None)
    with Admin(broker.socket_path) as admin:
        st = admin.status(["t"])
        h = admin.partition_health(["t"])
        dirs = admin.describe_log_dirs(["t"])
    assert victim not in st.partitions[0].isr_nodes   # out at once, before any restart
    assert h.under_replicated == ["t-0"] and h.under_min_isr == ["t-0"] and h.offline == [], h
    f = next(f for f in h.followers if f.replica_id == victim)
    assert (f.state, f.in_isr, f.log_end_offset, f.lag_records, f.size_bytes) == ("dead", False, -1, -1, -1), f
    assert f.lag_ms > 0, f   # since it was last caught up
    mine = next(r for r in dirs[victim].replicas if r.topic == "t")   # its files are still there
    assert (mine.role, mine.size, mine.offset_lag) == ("follower", -1, -1)
    wait_isr(broker, "t", p.replicas)   # restarted, caught up, back in
    out = run(broker, "status")
    fr = follower_rows(out, "t-0")
    assert fr[victim]["IN-ISR"] == "yes" and fr[victim]["STATE"] == "running"
    assert "0 under-replicated, 0 under min ISR" in out
    assert broker.stop() == 0
