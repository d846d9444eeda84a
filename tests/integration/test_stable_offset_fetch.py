"""KIP-447 against a real broker: a read_committed group member whose committed offset an
open transaction holds waits for that transaction to end (OffsetFetch with require_stable,
asked again on UNSTABLE_OFFSET_COMMIT) with no position for that partition, while each
poll() keeps its timeout; then it starts from the offset the transaction committed,
instead of falling back to auto.offset.reset and reading again what was processed."""
import logging
import threading
import time

import pytest
from support.broker import wait_until

from odradek.client import OFFSET_INVALID, Admin, Consumer, GroupMetadata, Producer, TopicPartition
from odradek.client.errors import UnstableOffsetCommit

WAIT_S = 15
POLL_S = 0.5
SLACK_S = 0.5       # a poll returns within POLL_S + SLACK_S: one OffsetFetch round trip, a fetch round


def topic_with_records(broker, partitions):
    """Topic t, each partition p holding values b"p-0".."p-9" at offsets 0..9."""
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", partitions)
    with Producer({"socket": broker.socket_path, "linger.ms": 1}) as plain:
        for i in range(10):
            for part in range(partitions):
                plain.produce("t", b"%d-%d" % (part, i), partition=part)
        assert plain.flush(WAIT_S) == 0


def open_transaction(broker, offsets):
    """A transactional producer whose open transaction holds group g's offsets of t
    ({partition: offset})."""
    p = Producer({"socket": broker.socket_path, "transactional.id": "app", "linger.ms": 1})
    try:
        p.init_transactions(WAIT_S)
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition("t", part, offset) for part, offset in offsets.items()],
                                      GroupMetadata("g", -1, "", None), WAIT_S)
    except BaseException:
        p.close(WAIT_S)
        raise
    return p


def member(broker, **config):
    return Consumer({"socket": broker.socket_path, "group.id": "g", "isolation.level": "read_committed",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest", **config})


def told_unstable(caplog):
    return any("; asking again in " in r.getMessage() for r in caplog.records)   # the membership's log line


def timed_poll(c):
    t0 = time.monotonic()
    rec = c.poll(POLL_S)
    took = time.monotonic() - t0
    assert took < POLL_S + SLACK_S, f"poll({POLL_S}) took {took:.2f} s"
    return rec


def test_a_read_committed_member_starts_from_the_offset_an_open_transaction_commits(broker, caplog):
    topic_with_records(broker, 1)
    caplog.set_level(logging.INFO, logger="odradek.client.group_member")
    p = open_transaction(broker, {0: 6})
    c = member(broker)
    try:
        c.subscribe(["t"])
        got = []
        reader = threading.Thread(target=lambda: got.extend(c.consume(1, WAIT_S)))
        reader.start()
        wait_until(lambda: told_unstable(caplog), WAIT_S, what="the member told the offset is unstable")
        p.commit_transaction(WAIT_S)
        reader.join(WAIT_S + 5)
        assert not reader.is_alive()
        assert [(r.offset(), r.value()) for r in got] == [(6, b"0-6")]
    finally:
        c.close()
        p.close(WAIT_S)


def test_poll_keeps_its_timeout_while_a_transaction_holds_the_groups_offset(broker, caplog):
    """The member is assigned t-0 with no position while the transaction is open: each
    poll(0.5) returns empty in time, and the first record after the commit is the one at
    the offset the transaction committed. (A member that waited inside poll() would stay
    there until the committer thread gives up on the test and commits, seconds later.)"""
    topic_with_records(broker, 1)
    caplog.set_level(logging.INFO, logger="odradek.client.group_member")
    p = open_transaction(broker, {0: 6})
    c = member(broker)
    go = threading.Event()
    committer = threading.Thread(target=lambda: (go.wait(WAIT_S / 3), p.commit_transaction(WAIT_S)))
    try:
        assigned = []
        c.subscribe(["t"], on_assign=lambda consumer, parts: assigned.extend(parts))
        committer.start()
        for _ in range(int(WAIT_S / POLL_S)):
            if assigned:
                break
            assert timed_poll(c) is None
        assert assigned == [TopicPartition("t", 0)]
        for _ in range(4):         # the transaction still open: no position, nothing read, in time
            assert timed_poll(c) is None
            assert c.position([TopicPartition("t", 0)])[0].offset == OFFSET_INVALID
        assert told_unstable(caplog)
        go.set()
        committer.join(WAIT_S)
        assert not committer.is_alive()
        for _ in range(int(WAIT_S / POLL_S)):
            rec = timed_poll(c)
            if rec is not None:
                break
        assert rec is not None and (rec.offset(), rec.value()) == (6, b"0-6")
    finally:
        go.set()
        if committer.is_alive():
            committer.join(WAIT_S)
        c.close()
        p.close(WAIT_S)


def test_a_rebalance_and_a_close_while_positions_wait_for_a_transaction(broker):
    """Two read_committed members share t-0 and t-1, whose offsets an open transaction
    holds; one closes (in time), the other is given both partitions,
    still with no positions, and starts each from the offset the transaction commits."""
    topic_with_records(broker, 2)
    p = open_transaction(broker, {0: 3, 1: 7})
    a = b = None
    closed = False
    try:
        a = member(broker, **{"enable.auto.commit": True, "heartbeat.interval.ms": 100})
        b = member(broker, **{"enable.auto.commit": True, "heartbeat.interval.ms": 100})
        a.subscribe(["t"])
        b.subscribe(["t"])
        for _ in range(int(WAIT_S / POLL_S)):
            if len(a.assignment()) == len(b.assignment()) == 1:
                break
            assert timed_poll(a) is None and timed_poll(b) is None
        assert len(a.assignment()) == len(b.assignment()) == 1
        t0 = time.monotonic()
        a.close()
        closed = True
        assert time.monotonic() - t0 < POLL_S + SLACK_S
        for _ in range(int(WAIT_S / POLL_S)):
            if len(b.assignment()) == 2:
                break
            assert timed_poll(b) is None
        assert [tp.offset for tp in b.position(b.assignment())] == [OFFSET_INVALID, OFFSET_INVALID]
        t0 = time.monotonic()
        with pytest.raises(UnstableOffsetCommit):      # committed() waits, up to its own timeout
            b.committed([TopicPartition("t", 0)], 0.3)
        assert 0.3 <= time.monotonic() - t0 < 0.3 + SLACK_S
        p.commit_transaction(WAIT_S)
        got = {}
        for _ in range(int(WAIT_S / POLL_S)):
            rec = timed_poll(b)
            if rec is not None:
                got.setdefault(rec.partition(), rec.value())
            if len(got) == 2:
                break
        assert got == {0: b"0-3", 1: b"1-7"}
    finally:
        for c in (a, b):
            if c is not None and not (c is a and closed):
                c.close()
        p.close(WAIT_S)


def test_assign_by_hand_does_not_wait_for_a_transaction_either(broker, caplog):
    """assign() with a group.id and no offsets, under read_committed, while a transaction
    holds the group's offset of t-0: assign() returns at once, and the partitions have no
    position and polls keep their timeout until the transaction ends (t-1 too: its
    committed offset comes in the same OffsetFetch, failed as a whole while one partition
    is unstable, as Kafka's consumer does); then t-0 starts from the committed offset and
    t-1 (nothing committed) from auto.offset.reset. (assign() used to wait up to 15
    minutes for the transaction inside OffsetFetch.)"""
    topic_with_records(broker, 2)
    caplog.set_level(logging.INFO, logger="odradek.client.group_member")
    p = open_transaction(broker, {0: 6})
    c = member(broker)
    try:
        t0 = time.monotonic()
        c.assign([TopicPartition("t", 0), TopicPartition("t", 1)])
        assert time.monotonic() - t0 < SLACK_S
        for _ in range(4):
            assert timed_poll(c) is None
            assert [tp.offset for tp in c.position(c.assignment())] == [OFFSET_INVALID] * 2
        assert told_unstable(caplog)
        p.commit_transaction(WAIT_S)
        firsts = {}
        for _ in range(int(WAIT_S / POLL_S) + 20):
            rec = timed_poll(c)
            if rec is not None:
                firsts.setdefault(rec.partition(), (rec.offset(), rec.value()))
            if len(firsts) == 2:
                break
        assert firsts == {0: (6, b"0-6"), 1: (0, b"1-0")}
        c.unassign()
        c.assign([TopicPartition("t", 0, 2)])                       # an offset given: no question asked
        rec = wait_until(lambda: c.poll(POLL_S), timeout=WAIT_S, what="a record of t-0")
        assert (rec.partition(), rec.offset()) == (0, 2)
    finally:
        c.close()
        p.close(WAIT_S)
