"""GroupMember (client/group_member.py) against the real sans-IO GroupCoordinator, driven
in-process: a fake transport hands each request to the coordinator and blocks the caller
until the coordinator's Reply for it comes out, so JoinGroup waits for the rest of the
group exactly as over the socket. No data plane: a stub host stands in for the Consumer
(positions are plain numbers). Real threads, real time (small timeouts)."""
import itertools
import threading
import time

import pytest

from odradek.client.errors import (FencedInstanceId, InvalidGroupId, NetworkException, RequestTimedOut)
from odradek.client.group_member import GroupMember, MaxPollIntervalExceeded, OffsetAndMetadata
from odradek.client.message import TopicPartition
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups.coordinator import GroupConfig, GroupCoordinator
from odradek.daemon.broker.groups.effects import Peer, Persist, Reply


# ---- the fake broker ------------------------------------------------------------------

class FakeBroker:
    """The real coordinator behind a lock; Metadata from a dict of partition counts."""

    def __init__(self, topics, initial_delay_ms=30):
        self.coord = GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=initial_delay_ms,
                                                  min_session_timeout_ms=100))
        self.topics = dict(topics)
        self.cv = threading.Condition()
        self.replies = {}
        self.handles = itertools.count(1)
        self.requests = []           # (connection name, request type name)
        self.stopped = False
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    @staticmethod
    def now():
        return int(time.monotonic() * 1000)

    def _apply(self, effects):
        for e in effects:
            if isinstance(e, Reply):
                self.replies[(e.conn, e.handle)] = e.result
            elif isinstance(e, Persist) and e.token is not None:
                self._apply(self.coord.persisted(e.token, self.now()))
        self.cv.notify_all()

    def _tick(self):
        while not self.stopped:
            time.sleep(0.005)
            with self.cv:
                self._apply(self.coord.tick(self.now()))

    def call(self, conn, request, timeout):
        with self.cv:
            if conn.closed:
                raise NetworkException(f"{conn.name} is closed")
            self.requests.append((conn.name, type(request).__name__))
            if isinstance(request, m.MetadataRequest):
                names = sorted(self.topics) if request.topics is None else request.topics
                return m.MetadataResponse(topics=[
                    m.MetadataResponseTopic(name=t, partitions=[m.MetadataResponsePartition(partition_index=p)
                                                                for p in range(self.topics[t])])
                    if t in self.topics else m.MetadataResponseTopic(name=t, error_code=3)
                    for t in names])
            handle = next(self.handles)
            self._apply(self.coord.handle(Peer(conn, "test"), handle, request, self.now()))
            deadline = time.monotonic() + timeout
            while (conn, handle) not in self.replies:
                if conn.closed:
                    raise NetworkException(f"{conn.name} was closed during the call")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestTimedOut("no answer")
                self.cv.wait(left)
            result = self.replies.pop((conn, handle))
        if isinstance(result, Exception):
            raise result
        return result

    def close(self, conn):
        with self.cv:
            if not conn.closed:
                conn.closed = True
                self._apply(self.coord.connection_closed(conn, self.now()))

    def stop(self):
        self.stopped = True
        self.ticker.join(1)


class FakeConn:
    def __init__(self, broker, name):
        self.broker, self.name, self.closed = broker, name, False

    def call(self, request, timeout=None):
        return self.broker.call(self, request, timeout or 30)

    def interrupt(self):
        self.broker.close(self)

    def close(self):
        self.broker.close(self)


class Host:
    """Stands in for the Consumer: positions are numbers the test moves."""

    def __init__(self, broker, name, log):
        self.name = name
        self.conn = FakeConn(broker, name + "/poll")
        self.positions = {}
        self.log = log

    def _group_call(self, request, timeout=None):
        return self.conn.call(request, timeout)

    def _group_assign(self, keys, offsets):
        for k in keys:
            self.positions[k] = offsets.get(k) if offsets.get(k) is not None else 0

    def _group_unassign(self, keys):
        for k in keys:
            del self.positions[k]

    def _group_positions(self, keys):
        return {k: self.positions[k] for k in keys if k in self.positions}

    def _group_assigned(self):
        return list(self.positions)


CONFIG = {"group.id": "g", "group.instance.id": None, "session.timeout.ms": 1000, "heartbeat.interval.ms": 30,
          "max.poll.interval.ms": 5000, "partition.assignment.strategy": ["range"], "enable.auto.commit": True,
          "auto.commit.interval.ms": 5000, "metadata.max.age.ms": 60000, "client.id": "t", "on_commit": None}


class Member:
    """A GroupMember with its host and a log of its callbacks."""

    def __init__(self, broker, name, events, **config):
        self.name = name
        self.host = Host(broker, name, events)
        self.events = events
        self.group_conns = []

        def connect():
            conn = FakeConn(broker, f"{name}/group{len(self.group_conns)}")
            self.group_conns.append(conn)
            return conn
        self.gm = GroupMember(self.host, {**CONFIG, **config}, connect)
        self.broker = broker

    def subscribe(self, topics):
        def cb(kind):
            def f(consumer, parts):
                assert consumer is self.host
                self.events.append((time.monotonic(), self.name, kind, self.gm.metadata().generation_id,
                                    sorted((tp.topic, tp.partition) for tp in parts)))
            return f
        self.gm.subscribe(topics, on_assign=cb("assign"), on_revoke=cb("revoke"), on_lost=cb("lost"))
        return self

    def poll(self):
        self.gm.enter_poll()
        try:
            self.gm.step()
        finally:
            self.gm.exit_poll()

    @property
    def owned(self):
        return set(self.gm.assignment())

    def kill(self):
        """What SIGKILL does to a member: its connections close, nothing is sent."""
        with self.gm._cv:
            self.gm._closing = True
            self.gm._cv.notify_all()
        self.events.append((time.monotonic(), self.name, "killed", -1, sorted(self.owned)))
        for conn in [self.host.conn] + self.group_conns:
            self.broker.close(conn)
        self.gm._thread.join(2)

    def close(self):
        self.gm.close()
        self.broker.close(self.host.conn)


def drive(members, until, timeout=5.0, what="the group to settle"):
    deadline = time.monotonic() + timeout
    while True:
        for mb in members:
            mb.poll()
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: " +
                                 ", ".join(f"{mb.name}={sorted(mb.owned)}" for mb in members))
        time.sleep(0.003)


def balanced(members, total):
    def check():
        sets = [mb.owned for mb in members]
        union = set().union(*sets)
        gens = {mb.gm.metadata().generation_id for mb in members}
        return (len(union) == total and sum(map(len, sets)) == total and len(gens) == 1
                and max(map(len, sets)) - min(map(len, sets)) <= 1 and not any(mb.gm._joining for mb in members)
                and all(mb.gm._rejoin is None for mb in members))
    return check


def check_no_double_ownership(events):
    """Replay the callbacks in time order: a partition is assigned to a member only while
    no other member holds it (a killed member holds nothing from its death on)."""
    owner = {}
    for _, name, kind, gen, parts in sorted(events):
        for tp in parts:
            if kind == "assign":
                assert owner.get(tp) in (None, name), f"{tp} assigned to {name} (gen {gen}) while {owner[tp]} owns it"
                owner[tp] = name
            else:
                assert owner.get(tp) == name, f"{name} gave up {tp} it did not own"
                del owner[tp]
    return owner


@pytest.fixture
def broker():
    b = FakeBroker({"t": 6, "u": 3})
    yield b
    b.stop()


@pytest.fixture
def members(broker):
    made = []

    def make(name, topics=("t",), **config):
        mb = Member(broker, name, events, **config).subscribe(list(topics))
        made.append(mb)
        return mb
    events = []
    make.events = events
    yield make
    for mb in made:
        try:
            mb.gm.close()
        except Exception:
            pass


# ---- tests ---------------------------------------------------------------------------

def test_eager_range_three_members_share_six_partitions_without_overlap(members):
    a = members("a")
    drive([a], lambda: len(a.owned) == 6)
    b, c = members("b"), members("c")
    drive([a, b, c], balanced([a, b, c], 6))
    assert [len(x.owned) for x in (a, b, c)] == [2, 2, 2]
    check_no_double_ownership(members.events)
    # eager: a revoked everything before rejoining
    assert ("revoke", sorted(("t", p) for p in range(6))) in [(k, parts) for _, n, k, _, parts in members.events
                                                             if n == "a"]
    # range over sorted member ids: consecutive ranges
    for x in (a, b, c):
        ps = sorted(p for _, p in x.owned)
        assert ps == list(range(ps[0], ps[0] + 2))


def test_member_id_required_round_trip_and_leader_assignment(members, broker):
    a = members("a", topics=("t", "u"))
    drive([a], lambda: len(a.owned) == 9)
    names = [t for conn, t in broker.requests if conn.startswith("a/group")]
    assert names[:2] == ["JoinGroupRequest", "JoinGroupRequest"]   # MEMBER_ID_REQUIRED, then with the id
    assert "MetadataRequest" in names and "SyncGroupRequest" in names
    assert a.gm.metadata().member_id.startswith("test-")


def test_leaving_member_partitions_move_and_close_commits(members, broker):
    a, b = members("a"), members("b")
    drive([a, b], balanced([a, b], 6))
    mine = sorted(a.owned)
    for k in mine:
        a.host.positions[k] = 10 + k[1]
    a.close()     # auto commit, on_revoke, LeaveGroup
    assert {k: broker.coord.committed_offsets("g")[k].offset for k in mine} == {k: 10 + k[1] for k in mine}
    assert [e[2:] for e in members.events if e[1] == "a"][-1][::2] == ("revoke", mine)
    drive([b], lambda: len(b.owned) == 6)
    # b starts a's old partitions at a's committed offsets
    assert {k: b.host.positions[k] for k in mine} == {k: 10 + k[1] for k in mine}
    check_no_double_ownership(members.events)


def test_killed_member_is_noticed_at_once_by_connection_close(members):
    a, b = members("a"), members("b")
    drive([a, b], balanced([a, b], 6))
    t0 = time.monotonic()
    b.kill()
    drive([a], lambda: len(a.owned) == 6)
    assert time.monotonic() - t0 < 0.5       # heartbeat 30 ms, not the 1 s session timeout
    check_no_double_ownership(members.events)


def test_cooperative_sticky_keeps_partitions_that_stay(members):
    coop = {"partition.assignment.strategy": ["cooperative-sticky"]}
    a = members("a", **coop)
    drive([a], lambda: len(a.owned) == 6)
    before = set(a.owned)
    b = members("b", **coop)
    drive([a, b], balanced([a, b], 6))
    c = members("c", **coop)
    drive([a, b, c], balanced([a, b, c], 6))
    events = members.events
    check_no_double_ownership(events)
    # a only ever revoked what moved; what a kept was never revoked and re-assigned
    revoked_by_a = {tp for _, n, k, _, parts in events if n == "a" and k == "revoke" for tp in parts}
    assert revoked_by_a == before - a.owned
    assigned_to_a = [parts for _, n, k, _, parts in events if n == "a" and k == "assign"]
    assert assigned_to_a[0] == sorted(before) and all(not set(p) & a.owned for p in assigned_to_a[1:])
    assert not [e for e in events if e[2] == "lost"]


def test_max_poll_interval_exceeded_leaves_then_raises_then_rejoins(members):
    a = members("a", **{"max.poll.interval.ms": 300})
    b = members("b")
    drive([a, b], balanced([a, b], 6))
    t0 = time.monotonic()
    drive([b], lambda: len(b.owned) == 6, what="b to take over")   # a does not poll
    took = time.monotonic() - t0
    assert 0.25 < took < 1.5
    assert a.owned                 # a has not heard yet: it learns at its next poll
    with pytest.raises(MaxPollIntervalExceeded, match=r"max.poll.interval.ms exceeded: processing between polls "
                                                      r"took \d+\.\d s.*reduce the work per poll or raise"):
        a.poll()
    assert not a.owned
    assert [e[2] for e in members.events if e[1] == "a"][-1] == "lost"
    drive([a, b], balanced([a, b], 6), what="a to rejoin")


def test_static_member_restart_within_session_timeout_causes_no_rebalance(members, broker):
    static = {"group.instance.id": "worker-1"}
    a = members("a", **static)
    drive([a], lambda: len(a.owned) == 6)
    b = members("b")
    drive([a, b], balanced([a, b], 6))
    gen = b.gm.metadata().generation_id
    owned_a = a.owned
    leader_was_a = a.gm._leader
    a.gm.close()            # a static member does not leave...
    broker.close(a.host.conn)
    assert not [x for x in broker.requests if x[1] == "LeaveGroupRequest"]
    n_events = len(members.events)
    a2 = members("a2", **static)     # ...and comes back with the same group.instance.id
    drive([a2, b], lambda: a2.owned == owned_a)
    time.sleep(0.1)
    drive([a2, b], lambda: True)
    assert b.gm.metadata().generation_id == gen == a2.gm.metadata().generation_id
    assert [e for e in members.events[n_events:] if e[1] == "b"] == []      # b saw nothing
    assert leader_was_a == a2.gm._leader      # KIP-814: a restarted leader is told to skip assignment


def test_second_live_static_instance_fences_the_first(members):
    a = members("a", **{"group.instance.id": "w"})
    drive([a], lambda: len(a.owned) == 6)
    a2 = members("a2", **{"group.instance.id": "w"})
    drive([a2], lambda: len(a2.owned) == 6)
    time.sleep(0.1)        # a's next heartbeat is fenced
    with pytest.raises(FencedInstanceId):
        a.poll()
    assert not a.owned
    with pytest.raises(FencedInstanceId):   # fatal: every later poll says so
        a.poll()


def test_commit_committed_and_metadata(members, broker):
    a = members("a", **{"enable.auto.commit": False})
    drive([a], lambda: len(a.owned) == 6)
    done = a.gm.commit_offsets({("t", 0): 5, ("t", 1): 7}, {("t", 0): "ckpt-5"})
    assert done == [TopicPartition("t", 0, 5), TopicPartition("t", 1, 7)]
    got = a.gm.fetch_committed([("t", 0), ("t", 1), ("t", 2)])
    assert got[("t", 0)] == OffsetAndMetadata("t", 0, 5, "ckpt-5") and got[("t", 0)].metadata == "ckpt-5"
    assert got[("t", 1)].metadata == "" and got[("t", 2)] is None


def test_auto_commit_on_interval_and_before_eager_revocation(members, broker):
    a = members("a", **{"auto.commit.interval.ms": 50})
    drive([a], lambda: len(a.owned) == 6)
    a.host.positions[("t", 0)] = 42
    drive([a], lambda: broker.coord.committed_offsets("g").get(("t", 0)) is not None)
    assert broker.coord.committed_offsets("g")[("t", 0)].offset == 42
    a.host.positions[("t", 5)] = 9
    b = members("b", **{"auto.commit.interval.ms": 60000})
    drive([a, b], balanced([a, b], 6))
    assert broker.coord.committed_offsets("g")[("t", 5)].offset == 9     # committed before a revoked it
    owner = a if ("t", 5) in a.owned else b
    assert owner.host.positions[("t", 5)] == 9        # eager: even a starts it again from the commit


def test_leader_notices_added_partitions(members, broker):
    a = members("a", **{"metadata.max.age.ms": 50})
    b = members("b", **{"metadata.max.age.ms": 50})
    drive([a, b], balanced([a, b], 6))
    broker.topics["t"] = 8
    drive([a, b], balanced([a, b], 8), what="the 2 new partitions to be assigned")
    check_no_double_ownership(members.events)


def test_regex_subscription_picks_up_new_topics(members, broker):
    a = members("a", topics=("^orders-.*",), **{"metadata.max.age.ms": 50})
    broker.topics["orders-eu"] = 2
    drive([a], lambda: a.owned == {("orders-eu", 0), ("orders-eu", 1)}, what="orders-eu")
    broker.topics["orders-us"] = 1
    drive([a], lambda: len(a.owned) == 3, what="orders-us")


def test_rebalance_is_noticed_within_a_heartbeat_interval(members):
    a = members("a", **{"heartbeat.interval.ms": 50})
    drive([a], lambda: len(a.owned) == 6)
    b = members("b")
    t0 = time.monotonic()
    drive([a, b], balanced([a, b], 6))
    assert time.monotonic() - t0 < 0.5


def test_waker_rings_on_group_events(members):
    a = members("a")
    seen = a.gm.waker.seen()
    a.poll()                      # starts the join; the group thread rings when it is done
    from odradek.client.shm import wait_for_any
    assert wait_for_any([a.gm.waker.state], [seen], 2.0)


def test_unsubscribe_revokes_and_leaves(members, broker):
    a, b = members("a"), members("b")
    drive([a, b], balanced([a, b], 6))
    a.gm.unsubscribe()
    assert not a.owned and ("a/poll", "LeaveGroupRequest") in broker.requests
    drive([a, b], lambda: len(b.owned) == 6)


def test_empty_group_id_is_refused(broker):
    with pytest.raises(InvalidGroupId):
        GroupMember(Host(broker, "x", []), {**CONFIG, "group.id": ""}, None)


def test_subscribe_refuses_names_mixed_with_a_pattern(members):
    with pytest.raises(ValueError, match="regex"):
        members("a", topics=("t", "^x"))
