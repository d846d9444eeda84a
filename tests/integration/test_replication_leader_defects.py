"""Defects of the replicated partition leader (daemon/worker/leader.py) that
tests/faults/test_replication_kills.py found, each pinned by a deterministic test.

- GetSegment answered batches above the high watermark (a consumer catching up through
  it then read what a change of leader could remove, or called it corrupt): it answers
  committed batches only.
- A producer-state snapshot written at a roll lay above held acks=all entries a successor
  took again, so its duplicate check called written, replicated records out of order: the
  leader looks such an entry up in the log above the high watermark it started at."""
import os
import signal

import pytest

from odradek.client import Admin, Producer
from odradek.client.protocol import ControlClient, messages as m
from support.broker import multi_dir_broker, wait_until


@pytest.fixture
def broker(tmp_path):
    b = multi_dir_broker(tmp_path, ["disk0", "disk1", "disk2"])
    stopped = []
    b.stopped = stopped
    b.start()
    yield b
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
    try:
        assert b.stop() == 0, b.stderr()
        assert not b.leftovers(), f"processes left behind: {b.leftovers()}"
    finally:
        b.kill()


def processes(broker, topic, killed=None):
    """(leader pid, [follower pids]) of partition 0, once all three run (and, after we
    SIGKILLed `killed`, once the broker has seen it die: until it reaps it, status still
    lists it as running)."""
    def running():
        with Admin(broker.socket_path) as admin:
            st = admin.status([topic])
        mine = [w for w in st.workers if (w.topic, w.partition) == (topic, 0) and w.pid and w.state == "running"]
        return mine if len(mine) == 3 and killed not in (w.pid for w in mine) else None
    mine = wait_until(running, 10, what=f"the three replica processes of {topic}-0")
    return ([w.pid for w in mine if w.role == "leader"][0], [w.pid for w in mine if w.role == "follower"])


def stop_followers(broker, pids):
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)   # followers of the broker we started: alive, copying nothing
        broker.stopped.append(pid)


def resume_followers(broker):
    while broker.stopped:
        os.kill(broker.stopped.pop(), signal.SIGCONT)


def produce(broker, topic, values, acks):
    reports = []
    p = Producer({"socket": broker.socket_path, "acks": acks})
    try:
        for v in values:
            p.produce(topic, v, partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
        assert p.flush(10) == 0
    finally:
        p.close(5)      # bounded: close() alone waits for every record
    return reports


def test_get_segment_answers_no_batch_at_or_above_the_high_watermark(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
    assert produce(broker, "t", [b"committed"] * 5, acks="all") == [(None, i) for i in range(5)]
    _, followers = processes(broker, "t")
    stop_followers(broker, followers)
    assert produce(broker, "t", [b"not replicated"], acks=1) == [(None, 5)]
    with Admin(broker.socket_path) as admin:
        assert admin.list_offsets("t", 0)[0] == 5    # the high watermark
    with ControlClient(broker.socket_path) as client:
        res, fds = client.call(m.GetSegmentRequest(topic="t", partition=0, offset=0, want_fd=False))
    assert fds == []
    # a consumer reads [position, size) and would decode batch 5, above the high
    # watermark it read: CorruptRecord "damaged baseOffset" (or a record a failover cuts)
    assert res.next_offset == 5, f"GetSegment answered up to offset {res.next_offset}, past the high watermark 5"
    resume_followers(broker)


def test_held_acks_all_entries_taken_again_after_a_roll_are_acknowledged_at_their_offsets(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, config={"segment.bytes": 4096})
    assert produce(broker, "t", [b"before"] * 3, acks="all") == [(None, i) for i in range(3)]
    leader, followers = processes(broker, "t")
    stop_followers(broker, followers)    # in the ISR still (replica.lag.time.max.ms is 30 s): acks=all waits
    reports = []
    values = [b"v%03d" % i + b"x" * 200 for i in range(60)]   # ~12 KiB: the leader rolls twice
    p = Producer({"socket": broker.socket_path, "acks": "all", "linger.ms": 0})
    try:
        for v in values:
            p.produce("t", v, partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
            p.poll(0)

        def appended():
            with Admin(broker.socket_path) as admin:
                st = admin.status(["t"])
            (part,) = [x for x in st.partitions if (x.topic, x.partition) == ("t", 0)]
            return part.log_end_offset == 3 + len(values) and part.segments >= 3
        wait_until(appended, 10, what="the leader to append every batch, rolling its segment")
        assert reports == []             # held: the followers have none of it
        os.kill(leader, signal.SIGKILL)  # the leader worker of the broker we started, holding them
        resume_followers(broker)
        assert p.flush(20) == 0
    finally:
        p.close(5)      # bounded: close() alone waits for every record
    # the successor takes the held entries again: duplicates, acknowledged where written
    assert sorted(reports, key=lambda r: r[1]) == [(None, 3 + i) for i in range(len(values))], \
        [r for r in reports if r[0] is not None][:3]


def test_a_successor_killed_after_it_took_over_is_not_killed_again_as_a_follower(broker):
    # The promotion deadline (PROMOTION_TIMEOUT_S after an election) read the successor's
    # pid when it fired, not when it was set: a successor that led, died and came back as
    # a follower within that time was SIGKILLed again, as "did not take over".
    from odradek.daemon.broker.replication import PROMOTION_TIMEOUT_S
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=3)
    assert produce(broker, "t", [b"x"] * 5, "all") == [(None, i) for i in range(5)]
    first, _ = processes(broker, "t")
    os.kill(first, signal.SIGKILL)          # a leader the broker we started forked
    successor, _ = processes(broker, "t", killed=first)   # it took over: all three run again
    assert successor != first
    os.kill(successor, signal.SIGKILL)      # within PROMOTION_TIMEOUT_S of its election
    processes(broker, "t", killed=successor)
    overdue = "did not take over"
    try:
        wait_until(lambda: overdue in broker.stderr(tail=None), PROMOTION_TIMEOUT_S + 1,
                   what="a promotion deadline to fire (it must not)")
    except AssertionError:
        pass   # timed out: no deadline fired, as it should be
    assert overdue not in broker.stderr(tail=None)
    assert produce(broker, "t", [b"y"] * 5, "all") == [(None, 5 + i) for i in range(5)]
