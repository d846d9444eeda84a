"""GroupMember (client/group_member.py), the I/O shell of the group membership, with a
real Consumer against a real broker: the group thread, its connection, the Waker. The
decisions themselves are tested on a fake clock in test_group_membership.py."""
import time

import pytest
from support.broker import BrokerProcess, wait_until

from odradek.client import Admin, Consumer
from odradek.client.shm import wait_for_any


@pytest.fixture
def broker(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    with Admin(b.socket_path) as admin:
        admin.create_topic("t", num_partitions=4)
    yield b
    try:
        assert b.stop() == 0, b.stderr()
        assert not b.leftovers(), b.leftovers()
    finally:
        b.kill()


def member(broker, **config):
    c = Consumer({"socket": broker.socket_path, "group.id": "g", "heartbeat.interval.ms": 100,
                  "session.timeout.ms": 6000, **config})
    c.subscribe(["t"])
    return c


def assigned(*consumers, each):
    return lambda: all(c.poll(0.02) is None and len(c.assignment()) == each for c in consumers)


def test_the_group_thread_rings_the_waker_when_the_join_is_done(broker):
    c = member(broker)
    try:
        waker = c._group.waker
        seen = waker.seen()
        c.poll(0)       # asks the group thread to join, and does not wait for it
        assert wait_for_any([waker.state], [seen], 10.0), "the join's result never rang the waker"
        wait_until(assigned(c, each=4), 10, what="the assignment")
    finally:
        c.close()


def test_poll_keeps_its_timeout_while_the_join_waits_for_the_group(broker):
    a = member(broker)
    b = None
    try:
        wait_until(assigned(a, each=4), 10, what="a's assignment")
        b = member(broker)
        # b's JoinGroup waits until a rejoins, which a does only when it polls
        t0 = time.monotonic()
        assert b.poll(0.2) is None
        assert time.monotonic() - t0 < 1.0 and b.group_metadata().generation_id == -1
        wait_until(assigned(a, b, each=2), 10, what="the two to share the partitions")
    finally:
        a.close()
        if b is not None:
            b.close()


def test_the_group_thread_reconnects_when_its_connection_drops(broker):
    c = member(broker)
    try:
        wait_until(assigned(c, each=4), 10, what="the assignment")
        g = c._group
        link = g._link
        generation = c.group_metadata().generation_id
        link.interrupt()     # as a broken connection: the next heartbeat fails
        wait_until(lambda: c.poll(0.02) is None and g._link is not None and g._link is not link, 10,
                   what="a new group connection")
        # the coordinator counted the member out with its connection (as a killed one):
        # it hears so at its next heartbeat and joins again over the new connection
        wait_until(lambda: assigned(c, each=4)() and c.group_metadata().generation_id > generation, 10,
                   what="the member to rejoin")
    finally:
        c.close()


def test_close_leaves_the_group_and_stops_the_group_thread(broker):
    c = member(broker)
    wait_until(assigned(c, each=4), 10, what="the assignment")
    thread = c._group._thread
    c.close()
    assert not thread.is_alive()
    with Admin(broker.socket_path) as admin:
        assert admin.describe_group("g").members == []
