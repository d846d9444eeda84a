"""A partition leader SIGKILLed mid-transaction (issue 12's crash case): on a broker with
three log dirs the replicated partition fails over to an in-sync follower, which keeps
the open transaction (its last stable offset holds read_committed consumers at the
transaction's first record); the producer goes on writing to the new leader and commits;
read_committed then sees every record of the transaction exactly once, in order."""
import os
import signal

from odradek.client import Admin, Consumer, Producer, TopicPartition
from support.broker import wait_until

WAIT_S = 15
BEFORE, AFTER = 20, 20       # records of the transaction written before and after the kill


def partition(broker):
    with Admin(broker.socket_path) as admin:
        return admin.describe_topic("t").partitions[0]


def leader_pid(broker):
    with Admin(broker.socket_path) as admin:
        st = admin.status()
    running = [w.pid for w in st.workers if (w.topic, w.partition, w.role) == ("t", 0, "leader") and w.pid
               and w.state == "running"]
    return running[0] if running else None


def ends(broker):
    """(high watermark, last stable offset) of t-0."""
    with Admin(broker.socket_path) as admin:
        return (admin.list_offsets("t", 0, "latest")[0],
                admin.list_offsets("t", 0, "latest", isolation_level="read_committed")[0])


def read_to_end(broker, isolation, end):
    values = []
    with Consumer({"socket": broker.socket_path, "isolation.level": isolation}) as c:
        c.assign([TopicPartition("t", 0, 0)])

        def at_end():
            values.extend(r.value() for r in c.consume(100, 0.2))
            return c.position(c.assignment())[0].offset >= end
        wait_until(at_end, WAIT_S, interval=0, what=f"t-0 read to {end} ({isolation})")
    return values


def test_a_leader_killed_mid_transaction_fails_over_keeping_the_transaction(three_dirs, start):
    broker = start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    before = partition(broker)
    assert len(before.replicas) == 3
    with Producer({"socket": broker.socket_path, "transactional.id": "fo", "linger.ms": 1}) as p:
        p.init_transactions(WAIT_S)
        p.begin_transaction()
        for i in range(BEFORE):
            p.produce("t", b"%d" % i, partition=0)
        assert p.flush(WAIT_S) == 0           # acks=all: the in-sync followers have them
        assert ends(broker) == (BEFORE, 0)    # open: read_committed stops at its first record
        os.kill(leader_pid(broker), signal.SIGKILL)   # a leader worker of the broker we started
        wait_until(lambda: partition(broker).leader != before.leader and leader_pid(broker), WAIT_S,
                   what="a new leader")
        after = partition(broker)
        assert after.leader in before.isr and after.leader_epoch == before.leader_epoch + 1
        assert ends(broker) == (BEFORE, 0)    # the new leader holds the same transaction open
        for i in range(BEFORE, BEFORE + AFTER):
            p.produce("t", b"%d" % i, partition=0)
        p.commit_transaction(WAIT_S)
    total = BEFORE + AFTER
    high, stable = wait_until(lambda: (lambda e: e if e[0] == e[1] == total + 1 else None)(ends(broker)), WAIT_S,
                              what="the COMMIT marker on the new leader, the LSO at the high watermark")
    want = [b"%d" % i for i in range(total)]
    assert read_to_end(broker, "read_committed", stable) == want
    assert read_to_end(broker, "read_uncommitted", high) == want     # no record written twice
