"""Exactly-once under SIGKILL (issue 12's end-to-end proof): a consume-transform-produce
processor (eos_processor_child.py: read topic `in` in a group with read_committed, write
transform(record) to `out` and commit the input offsets in the same transaction, under a
fixed transactional.id) is SIGKILLed at random points and restarted, KILLS times, then
left to finish. Afterwards `out` read with read_committed is transform(`in`) exactly
once: every record, none twice, in each partition's order. read_uncommitted sees the
killed transactions' aborted records too, which shows the kills hit mid-transaction.

Bounded: KILLS (ODRADEK_EOS_KILLS, 30 by default) cycles; each kill comes at a random
point (ODRADEK_EOS_SEED picks them): every fifth cycle once the instance has written
a transaction's records and holds it open (the child's HOLD mode: a sure mid-transaction
kill, so some aborted records are always there to be hidden); of the others, one in five
at a random moment of the start (init_transactions, the group join, the KIP-447 stable
offset fetch), the rest a random 0-150 ms after the instance's first commit, which must
come within PROGRESS_TIMEOUT_S. The random delays are the faults' timing, not waits for
events.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from odradek.client import Admin, Consumer, Producer, TopicPartition
from faults.eos_processor_child import IN, OUT, transform   # the processor's own definitions
from support.broker import BrokerProcess, stop_cleanly, wait_until

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault


CHILD = os.path.join(os.path.dirname(__file__), "eos_processor_child.py")
PARTITIONS = 2
PER_PARTITION = 20_000
KILLS = int(os.environ.get("ODRADEK_EOS_KILLS", "30"))
SEED = int(os.environ.get("ODRADEK_EOS_SEED", "12"))
PROGRESS_TIMEOUT_S = 30
FINISH_TIMEOUT_S = 120


def value(partition, i):
    return b"%d:%d" % (partition, i)


@pytest.fixture
def broker(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    yield b
    stop_cleanly(b)


class Processor:
    """One instance of the processor child; its stdout goes to a file the test reads."""

    def __init__(self, broker, out_path, seed, hold=False):
        self.out_path = out_path
        with open(out_path, "w") as out:
            self.proc = subprocess.Popen([sys.executable, CHILD, broker.socket_path, str(PER_PARTITION), str(seed)]
                                         + (["HOLD"] if hold else []),
                                         stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)

    def holding(self):
        with open(self.out_path) as f:
            return any(line.startswith("holding") for line in f)

    def commits(self):
        with open(self.out_path) as f:
            return sum(1 for line in f if line.startswith("committed "))

    def unstable_waits(self):
        """How many times this instance was told its group's offsets were unstable (KIP-447)."""
        with open(self.out_path) as f:
            return sum(1 for line in f if "; asking again in " in line)   # fetch_committed's log line

    def output(self):
        with open(self.out_path) as f:
            return f.read()[-3000:]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdin.close()


def read_all(broker, topic, isolation):
    """{partition: [values]} of `topic` from the start to its end for `isolation`."""
    with Admin(broker.socket_path) as admin:
        ends = {p: admin.list_offsets(topic, p, "latest", isolation)[0] for p in range(PARTITIONS)}
    out = {p: [] for p in range(PARTITIONS)}
    with Consumer({"socket": broker.socket_path, "isolation.level": isolation}) as c:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])

        def at_end():
            for r in c.consume(1000, 0.2):
                out[r.partition()].append(r.value())
            # position(): OFFSET_INVALID until a record of the partition is returned
            return all(max(tp.offset, 0) >= ends[tp.partition] for tp in c.position(c.assignment()))
        wait_until(at_end, 30, interval=0, what=f"{topic} read to its end ({isolation})")
    return out


def test_consume_transform_produce_is_exactly_once_through_kills(broker, tmp_path):
    rng = random.Random(SEED)
    with Admin(broker.socket_path) as admin:
        admin.create_topic(IN, PARTITIONS)
        admin.create_topic(OUT, PARTITIONS)
    with Producer({"socket": broker.socket_path, "linger.ms": 5}) as p:
        for i in range(PER_PARTITION):
            for partition in range(PARTITIONS):
                p.produce(IN, value(partition, i), key=b"%d" % i, partition=partition)
        assert p.flush(30) == 0

    started = time.monotonic()
    startup_kills = 0
    instances = []
    for cycle in range(KILLS):
        hold = cycle % 5 == 4        # a sure mid-transaction kill: records written, no commit
        proc = Processor(broker, tmp_path / f"proc-{cycle}.out", rng.randrange(1 << 30), hold)
        instances.append(proc)
        try:
            if hold:
                wait_until(lambda: proc.holding() or proc.proc.poll() is not None, PROGRESS_TIMEOUT_S,
                           interval=0.005, what=f"cycle {cycle}: a transaction written and held open")
                assert proc.proc.poll() is None, f"the processor ended before its kill:\n{proc.output()}"
            elif rng.random() < 0.2:
                startup_kills += 1
                time.sleep(rng.uniform(0, 1.0))          # somewhere in its start
            else:
                wait_until(lambda: proc.commits() or proc.proc.poll() is not None, PROGRESS_TIMEOUT_S,
                           interval=0.005, what=f"cycle {cycle}: a commit")
                time.sleep(rng.uniform(0, 0.15))         # somewhere in a later transaction
                assert proc.proc.poll() is None, f"the processor ended before its kill:\n{proc.output()}"
        finally:
            proc.kill()
    killing_s = time.monotonic() - started

    last = Processor(broker, tmp_path / "proc-last.out", rng.randrange(1 << 30))
    instances.append(last)
    try:
        code = last.proc.wait(FINISH_TIMEOUT_S)
    finally:
        if last.proc.poll() is None:
            last.kill()
        else:
            last.proc.stdin.close()
    assert code == 0 and "done" in last.output(), last.output()

    committed = read_all(broker, OUT, "read_committed")
    for partition in range(PARTITIONS):
        want = [transform(value(partition, i)) for i in range(PER_PARTITION)]
        got = committed[partition]
        assert got == want, (f"out-{partition}: {len(got)} records, {len(set(got))} distinct, first difference at "
                             f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}")
    uncommitted = read_all(broker, OUT, "read_uncommitted")
    aborted = sum(len(v) for v in uncommitted.values()) - PARTITIONS * PER_PARTITION
    waits = sum(proc.unstable_waits() for proc in instances)
    print(f"{KILLS} kills ({startup_kills} during the start) in {killing_s:.1f} s; read_uncommitted sees "
          f"{aborted} records of aborted transactions; {waits} offset fetches answered UNSTABLE_OFFSET_COMMIT")
    assert aborted > 0, "no kill hit a transaction with records written"
