"""Fault injection: SIGKILL of random partition workers and of the broker itself while
producers write with acks=all; afterwards every acknowledged record is in the log once,
at the offset its delivery report gave.

Bounded: a fixed number of kills (ODRADEK_FAULT_KILLS, 8 by default; ODRADEK_FAULT_SEED
picks them), each only after the producers made progress since the last one, which must
come within PROGRESS_TIMEOUT_S: a partition that stalls fails the test. The producers are separate processes (as
users' programs are); each appends one line per delivery report to its own file, so what
was acknowledged is known even though the test never sees their callbacks.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, TopicPartition
from support.broker import BrokerProcess, wait_until

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

PARTITIONS = 3
PRODUCERS = 2
KILLS = int(os.environ.get("ODRADEK_FAULT_KILLS", "8"))   # about a third hit the broker
PROGRESS_TIMEOUT_S = 30    # for progress of every producer between two kills
PRODUCER_SECONDS = (KILLS + 2) * PROGRESS_TIMEOUT_S   # producers stop by themselves after this

PRODUCER = textwrap.dedent("""
    import os, sys, time
    from odradek.client import Producer
    from odradek.client.errors import OdradekError
    sock, ident, stop_file, acked_path, seconds = sys.argv[1:6]
    deadline = time.monotonic() + float(seconds)   # bounded even if the test never stops us
    out = open(acked_path, "w", buffering=1)
    def on_delivery(err, rec):
        if err is None:
            out.write("%s %d %d\\n" % (rec.value().decode(), rec.partition(), rec.offset()))
    p = Producer({"socket": sock, "acks": "all", "linger.ms": 2, "max.block.ms": 60000})
    i = 0
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        try:
            p.produce("load", b"%s-%d" % (ident.encode(), i), key=b"%d" % i, on_delivery=on_delivery)
            i += 1
        except OdradekError:
            p.poll(0.05)        # ring full while a worker restarts: wait for completions
            continue
        if i % 50 == 0:
            p.poll(0)
        # At most 20,000 records in flight: past that, wait for acknowledgements (an event,
        # not a sleep), which also leaves the two cores some room for the broker.
        while len(p) > 20000 and time.monotonic() < deadline:
            p.poll(0.05)
    left = p.flush(60)
    print("sent", i, "unflushed", left, flush=True)
""")


def _acked(paths):
    """value -> (partition, offset) of every acknowledged record, from the producers' files."""
    acked = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:   # a line being written when we read is skipped
                    acked[parts[0]] = (int(parts[1]), int(parts[2]))
    return acked


class _AckCount:
    """Lines (acknowledged records) in a producer's file so far, read incrementally."""

    def __init__(self, path):
        self.path, self.pos, self.lines = path, 0, 0

    def __call__(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return 0
        whole = data.rfind(b"\n") + 1      # a line being written is counted next time
        self.pos += whole
        self.lines += data.count(b"\n", 0, whole)
        return self.lines


def _worker_pids(broker):
    with Admin(broker.socket_path) as admin:
        st = admin.status(["load"])
    return [w.pid for w in st.workers if w.topic == "load" and w.pid]


def _read_all(broker):
    """value -> [(partition, offset)] of every record in the log."""
    seen, got = {}, 0
    with Admin(broker.socket_path) as admin:
        total = sum(admin.list_offsets("load", p)[0] for p in range(PARTITIONS))
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition("load", p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60 + total / 20_000   # bounded, and room for a slow machine
        while got < total and time.monotonic() < deadline:
            for rec in c.consume(10_000, 1.0):
                got += 1
                seen.setdefault(rec.value().decode(), []).append((rec.partition(), rec.offset()))
    assert got == total, f"read {got} of the {total} records in the log"
    return seen


def _output(tmp_path, n):
    with open(tmp_path / f"producer-{n}.out", "rb") as f:
        return f.read().decode(errors="replace")[-2000:]


def test_random_sigkills_of_workers_and_the_broker_lose_and_duplicate_nothing_acknowledged(tmp_path):
    rng = random.Random(os.environ.get("ODRADEK_FAULT_SEED", "8"))
    broker = BrokerProcess(tmp_path / "data")
    stop_file = str(tmp_path / "stop")
    acked_paths = [str(tmp_path / f"acked-{n}") for n in range(PRODUCERS)]
    procs, kills = [], []

    counts = [_AckCount(path) for path in acked_paths]

    def progress(what, timeout=PROGRESS_TIMEOUT_S):
        """Each producer has 150 more records acknowledged (so each is up and running)."""
        before = [count() for count in counts]
        wait_until(lambda: all(count() >= n + 150 for count, n in zip(counts, before)),
                   timeout, interval=0.02, what=f"150 more acknowledged records per producer {what}, "
                                                f"after kills {kills}")
    try:
        broker.start()
        with Admin(broker.socket_path) as admin:
            admin.create_topic("load", num_partitions=PARTITIONS)
        for n in range(PRODUCERS):   # output to files: a full pipe would stall a producer
            with open(tmp_path / f"producer-{n}.out", "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-c", PRODUCER, broker.socket_path, f"p{n}",
                                               stop_file, acked_paths[n], str(PRODUCER_SECONDS)],
                                              stdout=out, stderr=out))
        for k in range(KILLS):
            progress(f"before kill {k + 1}")
            if rng.random() < 0.35:
                broker.kill()             # the broker (its workers die with it)
                kills.append("broker")
                broker.start()
            else:
                pids = wait_until(lambda: len(_worker_pids(broker)) == PARTITIONS and _worker_pids(broker),
                                  PROGRESS_TIMEOUT_S, what="every partition's worker running")
                pid = rng.choice(pids)
                os.kill(pid, signal.SIGKILL)   # a worker of the broker we started
                kills.append("worker")
        progress("after the last kill")
        open(stop_file, "w").close()
        for proc in procs:
            proc.wait(90)
        outputs = [_output(tmp_path, n) for n in range(PRODUCERS)]
        assert all(proc.returncode == 0 for proc in procs), outputs
        acked = _acked(acked_paths)
        seen = _read_all(broker)
        missing = [v for v in acked if v not in seen]
        assert not missing, f"{len(missing)} acknowledged records lost after {kills}: {missing[:5]}"
        moved = [v for v, at in acked.items() if seen[v] != [at]]
        assert not moved, f"acknowledged records duplicated or moved after {kills}: " \
                          f"{[(v, acked[v], seen[v]) for v in moved[:5]]}"
        assert broker.stop() == 0, broker.stderr()
        print(f"\n{len(kills)} SIGKILLs ({kills.count('broker')} of the broker, {kills.count('worker')} of "
              f"workers): {len(acked)} acknowledged records all in the log once, at their offsets; "
              f"{sum(len(at) for at in seen.values())} records in the log")
    finally:
        open(stop_file, "w").close()
        for proc in procs:       # producers we started, by their Popen
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        broker.kill()
