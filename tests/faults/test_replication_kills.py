"""Fault injection on replicated partitions: SIGKILL of follower processes and of leader
workers while idempotent producers write with acks=all and a consumer reads.

A broker with three log dirs; a topic of PARTITIONS partitions, replication factor 3,
min.insync.replicas=2 (leaders spread over the dirs). Each cycle picks a partition and
kills, at a random point: (a) one of its followers, (b) its leader worker, or (c) a
follower and then the leader. A killed leader is replaced at once by an in-sync follower
(leader epoch + 1) and comes back as a follower, cutting what diverges; a dead follower
leaves the ISR at once and rejoins once caught up.

Afterwards:
- every acknowledged record is in the log exactly once, at the offset its delivery report
  gave; a record reported failed is not in it, unless the error was
  NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka's: appended, then the ISR shrank);
- every record the consumer read while the kills went on is still at the offset it read
  it at (nothing it saw was later cut or replaced);
- after a clean stop, the .log files of the replicas in the final ISR are byte-identical;
- no process of the broker is left.

Bounded: cycles go on until ODRADEK_LEADER_KILLS leader workers were killed (50 by
default; followers are killed besides), picked by ODRADEK_FAULT_SEED; each cycle starts only after every partition had a random number of
records acknowledged since the last one, which must come within PROGRESS_TIMEOUT_S (a
partition that stalls fails the test). Producers and the consumer are separate processes
(as users' programs are) writing what they saw to files. A longer soak:

    ODRADEK_LEADER_KILLS=200 ODRADEK_FAULT_SEED=7 .venv/bin/python -m pytest -q -s -m fault \
        tests/faults/test_replication_kills.py
"""
import filecmp
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, TopicPartition
from odradek.daemon.storage import filenames
from support.broker import multi_dir_broker, wait_until

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

TOPIC = "repl"
PARTITIONS = 3
PRODUCERS = 2
LEADER_KILLS = int(os.environ.get("ODRADEK_LEADER_KILLS", "50"))
PROGRESS_TIMEOUT_S = 30    # for progress of every partition between two kill cycles
CLIENT_SECONDS = LEADER_KILLS * 20 + 120   # producers and the consumer stop by themselves after this
SEGMENT_BYTES = 64 * 1024  # followers copy across many segment rolls
PRODUCER_RATE = 15_000     # records/s per producer at most: the final read-back stays well under a minute

PRODUCER = textwrap.dedent("""
    import os, sys, time
    from odradek.client import Producer
    from odradek.client.errors import OdradekError
    sock, topic, ident, stop_file, reports_path, seconds, rate = sys.argv[1:8]
    RATE = float(rate)
    deadline = time.monotonic() + float(seconds)   # bounded even if the test never stops us
    out = open(reports_path, "w", buffering=1)
    def on_delivery(err, rec):
        if err is None:
            out.write("ok %s %d %d\\n" % (rec.value().decode(), rec.partition(), rec.offset()))
        else:
            out.write("err %s %d %s\\n" % (rec.value().decode(), rec.partition(), type(err.exception).__name__))
    p = Producer({"socket": sock, "acks": "all", "enable.idempotence": True, "linger.ms": 2,
                  "max.block.ms": 60000})
    i, started = 0, time.monotonic()
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        try:
            p.produce(topic, b"%s-%d" % (ident.encode(), i), key=b"%d" % i, on_delivery=on_delivery)
            i += 1
        except OdradekError:
            p.poll(0.05)        # ring full while a leader restarts: wait for completions
            continue
        if i % 50 == 0:
            p.poll(0)
        # At most 2,000 records in flight: past that, wait for acknowledgements (an event,
        # not a sleep), which also leaves the two cores some room for the broker.
        while len(p) > 2000 and time.monotonic() < deadline:
            p.poll(0.05)
        # At most RATE records a second: the kill cycles need steady progress, not volume
        # (unpaced, a run wrote 5 million records that then took over a minute to read back).
        ahead = i / RATE - (time.monotonic() - started)
        if ahead > 0:
            p.poll(ahead)       # serves delivery reports while it waits
    left = p.flush(60)
    print("sent", i, "unflushed", left, flush=True)
    sys.exit(0 if left == 0 else 3)
""")

CONSUMER = textwrap.dedent("""
    import os, sys, time
    from odradek.client import OFFSET_BEGINNING, Consumer, TopicPartition
    sock, topic, partitions, stop_file, read_path, seconds = sys.argv[1:7]
    deadline = time.monotonic() + float(seconds)
    out = open(read_path, "w")
    c = Consumer({"socket": sock})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(int(partitions))])
    n = 0
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        for rec in c.consume(2000, 0.2):
            out.write("%d %d %s\\n" % (rec.partition(), rec.offset(), rec.value().decode()))
            n += 1
        out.flush()
    c.close()
    print("read", n, flush=True)
""")


class _Reports:
    """The producers' delivery reports so far, read incrementally from their files."""

    def __init__(self, paths):
        self.paths = paths
        self.pos = {path: 0 for path in paths}
        self.acked = {}        # value -> (partition, offset)
        self.failed = {}       # value -> (partition, error name)
        self.per_partition = [0] * PARTITIONS   # acknowledged records

    def read(self):
        for path in self.paths:
            try:
                with open(path, "rb") as f:
                    f.seek(self.pos[path])
                    data = f.read()
            except FileNotFoundError:
                continue
            whole = data.rfind(b"\n") + 1      # a line being written is read next time
            self.pos[path] += whole
            for line in data[:whole].decode().splitlines():
                kind, value, partition, last = line.split()
                if kind == "ok":
                    assert value not in self.acked, f"{value} acknowledged twice: {self.acked[value]}, {line}"
                    self.acked[value] = (int(partition), int(last))
                    self.per_partition[int(partition)] += 1
                else:
                    self.failed[value] = (int(partition), last)
        return self.per_partition


def _reads(path):
    """[(partition, offset, value)] the consumer read."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and line.endswith("\n"):
                out.append((int(parts[0]), int(parts[1]), parts[2]))
    return out


def _replicas(broker, seen):
    """{partition: {"leader": pid, replica id: follower pid}} of the running processes
    of the broker's topic partitions, from Admin.status(); `seen` collects
    (pid, create time) of each, for the check that none is left."""
    with Admin(broker.socket_path) as admin:
        st = admin.status([TOPIC])
    out = {p: {} for p in range(PARTITIONS)}
    for w in st.workers:
        if w.topic != TOPIC or not w.pid or w.state != "running":
            continue
        try:
            proc = psutil.Process(w.pid)
            if proc.ppid() != broker.pid:
                continue   # not (or no longer) a process of the broker we started
            seen.add((w.pid, proc.create_time()))
        except psutil.NoSuchProcess:
            continue
        out[w.partition]["leader" if w.role == "leader" else w.replica_id] = w.pid
    return out


def _all_running(broker, partition, seen):
    """The partition's process pids once its leader and both followers run."""
    procs = _replicas(broker, seen)[partition]
    return procs if len(procs) == 3 else None


def _kill(broker, pid):
    """SIGKILL `pid` if it is still a child of the broker we started."""
    try:
        if psutil.Process(pid).ppid() != broker.pid:
            return False
    except psutil.NoSuchProcess:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid, created):
    """Is the process `pid` that started at `created` still there (not a zombie)?"""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _partition_dir(log_dir, partition):
    return os.path.join(log_dir, filenames.partition_dir_name(TOPIC, partition))


def _differing_logs(dirs, partition, replicas):
    """How the .log files of `replicas` (log dir indexes) differ; [] when identical."""
    names = {r: sorted(f for f in os.listdir(_partition_dir(dirs[r], partition)) if f.endswith(".log"))
             for r in replicas}
    first = replicas[0]
    diffs = []
    for r in replicas[1:]:
        if names[r] != names[first]:
            diffs.append(f"replica {r} has segments {names[r]}, replica {first} {names[first]}")
            continue
        for name in names[first]:
            a = os.path.join(_partition_dir(dirs[first], partition), name)
            b = os.path.join(_partition_dir(dirs[r], partition), name)
            if not filecmp.cmp(a, b, shallow=False):
                diffs.append(f"{name} differs between replicas {first} ({os.path.getsize(a)} bytes) and {r} "
                             f"({os.path.getsize(b)} bytes)")
    return diffs


def _read_log(broker):
    """{(partition, offset): value} of every record below the high watermarks."""
    log, got = {}, 0
    with Admin(broker.socket_path) as admin:
        ends = [admin.list_offsets(TOPIC, p)[0] for p in range(PARTITIONS)]
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60 + sum(ends) / 20_000   # bounded, and room for a slow machine
        while got < sum(ends) and time.monotonic() < deadline:
            for rec in c.consume(10_000, 1.0):
                got += 1
                log[(rec.partition(), rec.offset())] = rec.value().decode()
    assert got == sum(ends) == len(log), f"read {got} records ({len(log)} offsets) of the {sum(ends)} in the log"
    return log


def _caught_up(broker):
    """Every partition's ISR holds all its replicas, and the followers lag 0 records."""
    with Admin(broker.socket_path) as admin:
        parts = admin.describe_topic(TOPIC).partitions
        st = admin.status([TOPIC])
    if any(sorted(p.isr) != sorted(p.replicas) for p in parts):
        return None
    mine = [p for p in st.partitions if p.topic == TOPIC]
    if len(mine) != PARTITIONS or any(p.high_watermark != p.log_end_offset or len(p.followers) != 2
                                      or any(f.lag_records != 0 for f in p.followers) for p in mine):
        return None
    return {p.partition: list(p.isr) for p in parts}


def _count(failed):
    """{error name: how many records got it}."""
    out = {}
    for _, err in failed.values():
        out[err] = out.get(err, 0) + 1
    return out


def _tail(path, n=3000):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


def test_sigkills_of_followers_and_leaders_under_acks_all_lose_nothing_acknowledged(tmp_path):
    rng = random.Random(os.environ.get("ODRADEK_FAULT_SEED", "9"))
    broker = multi_dir_broker(tmp_path, ["disk0", "disk1", "disk2"])
    stop_file = str(tmp_path / "stop")
    report_paths = [str(tmp_path / f"reports-{n}") for n in range(PRODUCERS)]
    read_path = str(tmp_path / "read")
    reports = _Reports(report_paths)
    procs, kills, seen = [], [], set()
    started = time.monotonic()

    def progress(what):
        """Every partition has a random number (20..300) more acknowledged records: the
        killed processes are back (or the survivors go on) and the next kill falls at a
        random point of the load."""
        want = [n + rng.randint(20, 300) for n in reports.read()]
        wait_until(lambda: all(n >= w for n, w in zip(reports.read(), want)), PROGRESS_TIMEOUT_S,
                   interval=0.01, what=f"more acknowledged records on every partition {what} "
                                       f"(have {reports.per_partition}, want {want}), after kills {kills}")

    def running(partition):
        return wait_until(lambda: _all_running(broker, partition, seen), PROGRESS_TIMEOUT_S, interval=0.01,
                          what=f"every replica process of {TOPIC}-{partition} running, after kills {kills}")

    try:
        broker.start()
        with Admin(broker.socket_path) as admin:
            admin.create_topic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": 2,
                                                             "segment.bytes": SEGMENT_BYTES})
            parts = admin.describe_topic(TOPIC).partitions
        assert sorted(p.leader for p in parts) == [0, 1, 2]
        for n in range(PRODUCERS):   # output to files: a full pipe would stall a client
            with open(tmp_path / f"producer-{n}.out", "wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", PRODUCER, broker.socket_path, TOPIC, f"p{n}", stop_file,
                     report_paths[n], str(CLIENT_SECONDS), str(PRODUCER_RATE)], stdout=out, stderr=out))
        with open(tmp_path / "consumer.out", "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", CONSUMER, broker.socket_path, TOPIC, str(PARTITIONS), stop_file, read_path,
                 str(CLIENT_SECONDS)], stdout=out, stderr=out))

        while sum(k.endswith(":leader") for k in kills) < LEADER_KILLS:
            progress(f"before kill {len(kills) + 1}")
            partition = rng.randrange(PARTITIONS)
            procs_of = running(partition)
            follower = rng.choice([r for r in procs_of if r != "leader"])
            scenario = rng.choice(["follower", "leader", "follower+leader"])
            if scenario != "leader" and _kill(broker, procs_of[follower]):
                kills.append(f"{partition}:follower{follower}")
            if scenario == "follower+leader" and rng.random() < 0.5:
                # the leader a little later: the ISR has shrunk, acks=all goes on with 2
                want = reports.read()[partition] + rng.randint(1, 100)
                wait_until(lambda: reports.read()[partition] >= want, PROGRESS_TIMEOUT_S, interval=0.005,
                           what=f"acknowledged records on {TOPIC}-{partition} after killing a follower")
            if scenario != "follower" and _kill(broker, procs_of["leader"]):
                kills.append(f"{partition}:leader")
            broker.workers()   # its children now, for the check that none is left
        progress("after the last kill")
        killing_s = time.monotonic() - started

        open(stop_file, "w").close()
        for proc in procs:
            proc.wait(90)
        outputs = {n: _tail(tmp_path / f"producer-{n}.out") for n in range(PRODUCERS)}
        outputs["consumer"] = _tail(tmp_path / "consumer.out")
        assert all(proc.returncode == 0 for proc in procs), f"client exits {[p.returncode for p in procs]}: {outputs}"
        reports.read()
        final_isr = wait_until(lambda: _caught_up(broker), 30, interval=0.02,
                               what="every follower back in the ISR with lag 0")

        log = _read_log(broker)
        where = {}
        for at, value in log.items():
            where.setdefault(value, []).append(at)
        lost = [v for v in reports.acked if v not in where]
        assert not lost, f"{len(lost)} acknowledged records lost after kills {kills}: " \
                         f"{[(v, reports.acked[v]) for v in lost[:5]]}"
        moved = [v for v, at in reports.acked.items() if where[v] != [at]]
        assert not moved, f"acknowledged records duplicated or moved after kills {kills}: " \
                          f"{[(v, reports.acked[v], where[v]) for v in moved[:5]]}"
        # only NOT_ENOUGH_REPLICAS_AFTER_APPEND reports a record in the log as failed
        # (Kafka's rule); any other error says the record was not written
        misreported = [(v, err, where[v]) for v, (_, err) in reports.failed.items()
                       if err != "NotEnoughReplicasAfterAppend" and v in where]
        assert not misreported, f"{len(misreported)} records reported failed are in the log after kills " \
                                f"{kills} (value, error, where): {misreported[:5]}"
        reads = _reads(read_path)
        changed = [(p, o, v, log.get((p, o))) for p, o, v in reads if log.get((p, o)) != v]
        assert not changed, f"{len(changed)} records the consumer read are no longer at their offsets " \
                            f"(partition, offset, read, now): {changed[:5]}"

        assert broker.stop() == 0, broker.stderr()
        for partition, isr in final_isr.items():
            diffs = _differing_logs(broker.dirs, partition, isr)
            assert not diffs, f"{TOPIC}-{partition}: replicas of the ISR {isr} differ: {diffs}"
        left = [pid for pid, created in seen if _alive(pid, created)]
        assert not left and not broker.leftovers(), f"processes left behind: {left} {broker.leftovers()}"
        print(f"\n{len(kills)} SIGKILLs in {killing_s:.1f} s ({sum('leader' in k for k in kills)} of leaders, "
              f"{sum('follower' in k for k in kills)} of followers): {len(reports.acked)} acknowledged "
              f"records all in the log once, at their offsets; refused: {_count(reports.failed)}; {len(log)} "
              f"records in the log; the consumer read {len(reads)}, all still where it read them; "
              f"{time.monotonic() - started:.1f} s in all")
    finally:
        open(stop_file, "w").close()
        for proc in procs:       # clients we started, by their Popen
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        broker.kill()
