"""A log dir that fills up under a replicated partition's leader: the leader gives up
leadership (its failing append's entry stays in the producer's ring), an in-sync replica
on another dir leads, and the producer sees no error at all; the replica in the full dir
stays out of the ISR until it has room again. The dir is a size-limited tmpfs the test
mounts (skipped where it cannot)."""
import os

import pytest

from odradek.client import Admin, Consumer, Producer, TopicPartition
from odradek.client.consumer import OFFSET_BEGINNING
from support.broker import INTERNAL_PARTITIONS, consume_n, multi_dir_broker
from support.small_fs import fill, mounted_tmpfs

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

FS_BYTES = 48 << 20
VALUE = 16000            # one record per 16 KiB batch
RECORDS = 100
MAX_RECORDS = (FS_BYTES // VALUE) * 2   # bounds the filling loop
# the dir the test's topic leads from: leaders go round the dirs in creation order, and
# the internal topics (one partition each) were created first
FULL = INTERNAL_PARTITIONS % 3


@pytest.fixture
def broker(tmp_path):
    b = multi_dir_broker(tmp_path, ["disk0", "disk1", "disk2"])
    for d in b.dirs:
        os.mkdir(d)
    with mounted_tmpfs(b.dirs[FULL], FS_BYTES):
        b.start()
        try:
            yield b
            code = b.stop()
            assert code == 0, f"broker exit status {code}: {b.stderr()}"
            assert not b.leftovers(), f"processes left behind: {b.leftovers()}"
        finally:
            b.kill()


def test_a_leader_whose_dir_fills_up_hands_leadership_to_an_in_sync_replica_and_no_produce_fails(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)       # its leader lands in dirs[FULL]
        before = admin.describe_topic("t").partitions[0]
    assert before.leader == FULL, before
    reports = []

    def produce(p, n):
        for _ in range(n):
            i = next(numbers)
            p.produce("t", i.to_bytes(4, "big") * (VALUE // 4), partition=0,
                      on_delivery=lambda err, rec: reports.append((err, rec.offset(), rec.value())))
        assert p.flush(30) == 0

    def leader():
        with Admin(broker.socket_path) as admin:
            return admin.describe_topic("t").partitions[0]
    numbers = iter(range(MAX_RECORDS))
    with Producer({"socket": broker.socket_path, "acks": "all"}) as p:
        produce(p, RECORDS)
        fill(str(broker.dirs[FULL]))           # the disk is full now (the log has blocks ahead of it)
        for _ in range(MAX_RECORDS // RECORDS - 2):   # bounded: until the leader moves
            produce(p, RECORDS)
            if leader().leader != FULL:
                break
        produce(p, RECORDS)                 # and on the new leader
    assert [err for err, _, _ in reports if err is not None] == []
    assert sorted(o for _, o, _ in reports) == list(range(len(reports)))
    after = leader()
    assert after.leader != FULL and after.leader_epoch > before.leader_epoch and FULL not in after.isr, after
    assert "giving up leadership: an append failed" in broker.stderr(tail=None)
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        got = {r.offset(): r.value() for r in consume_n(c, len(reports))}
    assert got == {o: v for _, o, v in reports}
