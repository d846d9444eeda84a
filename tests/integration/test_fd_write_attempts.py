"""A client trying to write every fd the broker gave it (issue 8, defect 2, and the
standing fault-injection suite). hostile_client.py, a process of its own, takes the
partition state, a segment, the leader's doorbell and its own rings and
tries write, pwrite, a shared writable mmap, mprotect, MADV_REMOVE, ftruncate, a hole
punch, F_SETFL, and all of them again on a read-write reopen through /proc/self/fd.

What is shared and read-only (state, segments) must refuse every one; what is writable
by design (the leader's doorbell: a counter, LAYOUT.md) and its own rings may take
writes, even a MADV_REMOVE that zeroes the doorbell's magic; and afterwards every other
client sees the partition as it was, and a new producer attaches and produces.

The memfd seal holds against any uid, root included: the first test runs the attacker
as the broker's own user. Segment files are protected by their mode (0640, whatever the
umask), which root and the broker's uid bypass: the second test drops the attacker to
another uid (needs root to do so) after it got its fds, and runs the broker with umask 0.
"""
import json
import os
import subprocess
import sys

import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm import PartitionState
from support.broker import BrokerProcess

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

HOSTILE = os.path.join(os.path.dirname(__file__), "hostile_client.py")
TOPIC = "shared"
RECORDS = 30
SHARED_READ_ONLY = {"partition-state", "segment"}
WRITABLE_BY_DESIGN = {"doorbell"}
OWN = {"own-produce-ring", "own-completion-ring", "own-doorbell"}
NOBODY = 65534


@pytest.fixture
def started(tmp_path):
    """start(umask=None) -> a running broker with topic TOPIC holding RECORDS records."""
    brokers = []

    def start(umask=None):
        b = BrokerProcess(tmp_path / "data", umask=umask).start()
        brokers.append(b)
        with Admin(b.socket_path) as admin:
            admin.create_topic(TOPIC, 1)
        produce(b, [b"r%d" % i for i in range(RECORDS)])
        return b
    yield start
    for b in brokers:
        try:
            assert b.stop() == 0, b.stderr()
            assert not b.leftovers()
        finally:
            b.kill()


def produce(broker, values):
    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        errors = []
        for v in values:
            p.produce(TOPIC, v, on_delivery=lambda err, rec: errors.append(err))
        assert p.flush(10) == 0
    assert errors == [None] * len(values)


def attack(broker, kinds, as_uid=None):
    argv = [sys.executable, HOSTILE, broker.socket_path, TOPIC]
    if as_uid is not None:
        argv += ["--as-uid", str(as_uid)]
    proc = subprocess.run(argv + sorted(kinds), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def landed(results):
    return sorted(a for a, what in results.items() if what == "wrote")


def check_the_attack_failed(report, kinds):
    assert set(report["passed"]) <= {"partition-state", "segment", "doorbell"}, \
        f"the broker passed a client something else (another producer's ring?): {report['passed']}"
    assert report["hand_back"] == "SHM_BAD_LAYOUT"     # the state reopened rw, offered as a ring
    results = report["results"]
    assert set(results) == set(kinds)
    for kind in SHARED_READ_ONLY & kinds:
        assert landed(results[kind]) == [], f"{kind} written by {landed(results[kind])}: {results[kind]}"
        assert results[kind]["mmap-private-write"] == "private"
    for kind in (WRITABLE_BY_DESIGN | OWN) & kinds:    # the attacker's writes are real
        assert {"write", "pwrite", "mmap-shared-write"} <= set(landed(results[kind])), results[kind]
        assert results[kind]["ftruncate"].startswith("denied"), results[kind]   # size seals hold


def check_others_see_the_partition_as_it_was(broker, earlier):
    """`earlier`: a consumer that read half the records before the attack."""
    with ControlClient(broker.socket_path) as c:
        _, fds = c.call(m.OpenFetchRequest(topic=TOPIC, partition=0))
    try:
        state = PartitionState.attach(*fds)
    finally:
        for fd in fds:
            os.close(fd)
    snap = state.read()
    state.close()
    assert (snap.log_start_offset, snap.high_watermark, snap.fenced) == (0, RECORDS, False)
    produce(broker, [b"after"])
    want = [(i, b"r%d" % i) for i in range(RECORDS)] + [(RECORDS, b"after")]
    got = [(r.offset(), r.value()) for r in (earlier.poll(10) for _ in range(RECORDS // 2 + 1))]
    assert got == want[RECORDS // 2:]
    with Consumer({"socket": broker.socket_path}) as late:
        late.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        assert [(r.offset(), r.value()) for r in (late.poll(10) for _ in range(RECORDS + 1))] == want


def consumer_half_way(broker):
    c = Consumer({"socket": broker.socket_path})
    c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    assert [c.poll(10).offset() for _ in range(RECORDS // 2)] == list(range(RECORDS // 2))
    return c


def test_a_client_of_the_brokers_own_uid_cannot_write_the_shared_memory(started):
    # Memfd seals bind every uid, root included. Segments are left out: their owner
    # (the broker's uid; and root) can reopen a segment file read-write.
    broker = started()
    kinds = {"partition-state"} | WRITABLE_BY_DESIGN | OWN
    with consumer_half_way(broker) as earlier:
        check_the_attack_failed(attack(broker, kinds), kinds)
        check_others_see_the_partition_as_it_was(broker, earlier)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the attacker to another uid needs root")
def test_a_client_of_another_uid_cannot_write_anything_it_shares(started):
    broker = started(umask=0)
    kinds = SHARED_READ_ONLY | WRITABLE_BY_DESIGN | OWN
    with consumer_half_way(broker) as earlier:
        report = attack(broker, kinds, as_uid=NOBODY)
        assert report["uid"] == NOBODY
        check_the_attack_failed(report, kinds)
        assert report["results"]["segment"]["reopen-rdwr"] == "denied EACCES"
        check_others_see_the_partition_as_it_was(broker, earlier)
