"""Membership (client/group_membership.py), the sans-IO group member, against the real
sans-IO GroupCoordinator, all in one thread on a FakeClock: no sleeps, no threads.

The harness plays both I/O shells: each member's poll-thread jobs run to their end at
once (their requests are answered at once), while its group-thread job waits for the
coordinator's reply to its request (a JoinGroup waits for the rest of the group, exactly
as over the socket). When nobody can move, the clock jumps to the next deadline of the
coordinator or of a member. A member's partitions are plain numbers (its positions)."""
import itertools

import pytest
from support.clock import FakeClock

from odradek.client.assignors import Assignment
from odradek.client.errors import (CoordinatorNotAvailable, FencedInstanceId, IllegalGeneration, InvalidGroupId,
                                   MaxPollIntervalExceeded, NetworkException, RebalanceInProgress, RequestTimedOut,
                                   UnknownMemberId, UnstableOffsetCommit)
from odradek.client.group_actions import (Assign, Backoff, Call, Callback, Lose, Position, RaiseCallbackError,
                                          ReadAssigned, ReadPositions, ReportCommit, Revoke, Send, WakeLink, WakePoll)
from odradek.client.group_membership import CONNECTION_ERRORS, Membership
from odradek.client.group_offsets import MAX_BACKOFF_MS, RETRY_BACKOFF_MS, UNSTABLE_WAIT_MS
from odradek.client.message import OffsetAndMetadata, TopicPartition
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups.coordinator import GroupConfig, GroupCoordinator
from odradek.daemon.broker.groups.effects import Peer, Persist, Reply

CONFIG = {"group.id": "g", "group.instance.id": None, "session.timeout.ms": 1000, "heartbeat.interval.ms": 30,
          "max.poll.interval.ms": 5000, "partition.assignment.strategy": ["range"], "enable.auto.commit": True,
          "auto.commit.interval.ms": 5000, "metadata.max.age.ms": 60000, "client.id": "t", "on_commit": None}


# ---- the harness -------------------------------------------------------------------------

class Conn:
    def __init__(self, name):
        self.name, self.closed = name, False

    def __repr__(self):
        return self.name


class Group:
    """The real coordinator, the members, the clock."""

    def __init__(self, topics, initial_delay_ms=30):
        self.clock = FakeClock()
        self.coord = GroupCoordinator(GroupConfig(initial_rebalance_delay_ms=initial_delay_ms,
                                                  min_session_timeout_ms=100))
        self.topics = dict(topics)
        self.replies = {}
        self.handles = itertools.count(1)
        self.requests = []           # (connection name, request type name)
        self.events = []             # (time, member, kind, generation, partitions)
        self.members = []

    @property
    def now(self):
        return self.clock.now

    def apply(self, effects):
        for e in effects:
            if isinstance(e, Reply):
                self.replies[(e.conn, e.handle)] = e.result
            elif isinstance(e, Persist) and e.token is not None:
                self.apply(self.coord.persisted(e.token, self.now))

    def send(self, conn, request):
        """Hand `request` to the broker; returns its handle (the reply may come later)."""
        assert not conn.closed
        self.requests.append((conn.name, type(request).__name__))
        handle = next(self.handles)
        if isinstance(request, m.MetadataRequest):
            names = sorted(self.topics) if request.topics is None else request.topics
            self.replies[(conn, handle)] = m.MetadataResponse(topics=[
                m.MetadataResponseTopic(name=t, partitions=[m.MetadataResponsePartition(partition_index=p)
                                                            for p in range(self.topics[t])])
                if t in self.topics else m.MetadataResponseTopic(name=t, error_code=3) for t in names])
        else:
            self.apply(self.coord.handle(Peer(conn, "test"), handle, request, self.now))
        return handle

    def close(self, conn):
        if conn is not None and not conn.closed:
            conn.closed = True
            self.apply(self.coord.connection_closed(conn, self.now))

    def member(self, name, topics=("t",), **config):
        mb = Member(self, name, **config)
        mb.subscribe(list(topics))
        self.members.append(mb)
        return mb

    def drive(self, pollers, until, max_ms=20_000, what="the group to settle"):
        """Run every live member's group thread, and poll `pollers`, until `until()`;
        the clock moves only when nobody can. Fails after max_ms of fake time."""
        deadline = self.now + max_ms
        for _ in range(100_000):
            self.apply(self.coord.tick(self.now))
            moved = False
            for mb in self.members:
                if mb.alive:
                    moved |= mb.run_link()
            for mb in pollers:
                mb.poll()
            if until():
                return
            if self.now >= deadline:
                break
            if not moved:
                self.clock.advance(max(1, min(self._next_deadline(pollers), deadline) - self.now))
        raise AssertionError(f"timed out waiting for {what}: " +
                             ", ".join(f"{mb.name}={sorted(mb.owned)}" for mb in self.members))

    def run_for(self, pollers, ms):
        end = self.now + ms
        self.drive(pollers, lambda: self.now >= end, max_ms=ms + 1)

    def _next_deadline(self, pollers):
        due = [self.coord.next_deadline()] + [mb.link_wake_at for mb in self.members if mb.alive] + \
              [mb.m.next_deadline() for mb in pollers]
        due = [d for d in due if d is not None]
        return min(due) if due else self.now + 1000


class Member:
    """One Membership and what its shells would do: positions for the Consumer's
    partitions, the callbacks logged to group.events."""

    def __init__(self, group, name, **config):
        self.group, self.name = group, name
        self.m = Membership({**CONFIG, **config}, group.now)
        self.positions = {}          # of the partitions in `assigned` that have one
        self.assigned = set()
        self.poll_conn = Conn(f"{name}/poll")
        self.link_conn = None
        self.links = 0
        self.job = None              # the group thread's job under way
        self.pending = None          # the handle of its request awaiting a reply
        self.link_wake_at = None
        self.wakes = 0               # WakePoll actions
        self.actions = []            # every poll-thread action, in order
        self.reports = []            # ReportCommit
        self.callback_error = None
        self.fail_callbacks = False
        self.alive = True

    # ---- the poll thread --------------------------------------------------------------
    def run(self, job):
        answer = None
        for _ in range(1000):
            try:
                action = job.send(answer)
            except StopIteration as done:
                return done.value
            self.actions.append(action)
            value = error = None
            try:
                value = self.do(action)
            except Exception as e:
                error = e
            answer = (value, error, self.group.now)
        raise AssertionError("a poll-thread job did not end")

    def do(self, a):
        g = self.group
        if isinstance(a, Call):
            handle = g.send(self.poll_conn, a.request)
            assert (self.poll_conn, handle) in g.replies, f"{a.request!r} was not answered at once"
            result = g.replies.pop((self.poll_conn, handle))
            if isinstance(result, Exception):
                raise result
            return result
        if isinstance(a, ReadPositions):
            return {k: self.positions[k] for k in a.keys if k in self.positions}
        if isinstance(a, ReadAssigned):
            return []
        if isinstance(a, Assign):
            self.assigned.update(a.keys)
            if a.offsets is not None:     # else no position until a Position action
                self.do(Position({k: a.offsets.get(k) for k in a.keys}))
        elif isinstance(a, Position):
            self.positions.update({k: 0 if o is None else o for k, o in a.offsets.items() if k in self.assigned})
        elif isinstance(a, (Revoke, Lose)):
            for k in a.keys:
                self.assigned.remove(k)
                self.positions.pop(k, None)
            self.callback("revoke" if isinstance(a, Revoke) else "lost", a.keys)
        elif isinstance(a, Callback):
            assert a.name == "on_assign"
            self.callback("assign", a.keys)
        elif isinstance(a, ReportCommit):
            self.reports.append(a)
        elif isinstance(a, Backoff):
            g.clock.advance(a.ms)
        elif isinstance(a, RaiseCallbackError):
            e, self.callback_error = self.callback_error, None
            if e is not None:
                raise e
        else:
            assert isinstance(a, WakeLink), a
        return None

    def callback(self, kind, keys):
        self.group.events.append((self.group.now, self.name, kind, self.m.identity()[0], sorted(keys)))
        if self.fail_callbacks and self.callback_error is None:
            self.callback_error = RuntimeError(f"{self.name}'s on_{kind} failed")

    def subscribe(self, topics):
        self.run(self.m.subscribe(topics, self.group.now))
        return self

    def poll(self):
        self.m.poll_started(self.group.now)
        try:
            job = self.m.step(self.group.now)
            if job is not None:
                self.run(job)
        finally:
            self.m.poll_ended(self.group.now)

    # ---- the group thread -------------------------------------------------------------
    def run_link(self):
        """Move the group thread's job on as far as it can go now; True if it moved."""
        g = self.group
        if self.job is None:
            self.job, self.link_wake_at = self.m.link_job(g.now)
            if self.job is None:
                return False
            answer = None
        else:
            key = (self.link_conn, self.pending)
            if key not in g.replies:
                return False
            result = g.replies.pop(key)
            answer = (None, result, g.now) if isinstance(result, Exception) else (result, None, g.now)
        for _ in range(1000):
            try:
                action = self.job.send(answer)
            except StopIteration:
                self.job = None
                return True
            except CONNECTION_ERRORS:
                self.job = self.link_conn = None
                self.m.link_lost(g.now)
                return True
            if isinstance(action, WakePoll):
                self.wakes += 1
                answer = (None, None, g.now)
                continue
            assert isinstance(action, Send), action
            if self.link_conn is None or self.link_conn.closed:
                self.link_conn = Conn(f"{self.name}/group{self.links}")
                self.links += 1
            self.pending = g.send(self.link_conn, action.request)
            if (self.link_conn, self.pending) not in g.replies:
                return True
            result = g.replies.pop((self.link_conn, self.pending))
            answer = (None, result, g.now) if isinstance(result, Exception) else (result, None, g.now)
        raise AssertionError("a group-thread job did not end")

    def break_link(self):
        """The group connection drops: a request waiting on it fails."""
        self.group.close(self.link_conn)
        if self.pending is not None and self.job is not None:
            self.group.replies[(self.link_conn, self.pending)] = NetworkException("the connection closed")

    @property
    def owned(self):
        return set(self.m.assignment())

    def close(self):
        self.run(self.m.close(self.group.now))
        self.shut()

    def kill(self):
        """What SIGKILL does to a member: its connections close, nothing is sent."""
        self.group.events.append((self.group.now, self.name, "killed", -1, sorted(self.owned)))
        self.shut()

    def shut(self):
        self.alive = False
        self.job = None
        self.group.close(self.poll_conn)
        self.group.close(self.link_conn)


def balanced(members, total):
    def check():
        sets = [mb.owned for mb in members]
        union = set().union(*sets)
        gens = {mb.m.identity()[0] for mb in members}
        return (len(union) == total and sum(map(len, sets)) == total and len(gens) == 1
                and max(map(len, sets)) - min(map(len, sets)) <= 1
                and not any(mb.m.joining or mb.m.rejoin_wanted for mb in members))
    return check


def check_no_double_ownership(events):
    """Replay the callbacks in order: a partition is assigned to a member only while no
    other member holds it (a killed member holds nothing from its death on)."""
    owner = {}
    for _, name, kind, gen, parts in events:
        if kind == "killed":
            for tp in parts:
                del owner[tp]
            continue
        for tp in parts:
            if kind == "assign":
                assert owner.get(tp) in (None, name), f"{tp} assigned to {name} (gen {gen}) while {owner[tp]} owns it"
                owner[tp] = name
            else:
                assert owner.get(tp) == name, f"{name} gave up {tp} it did not own"
                del owner[tp]
    return owner


@pytest.fixture
def group():
    return Group({"t": 6, "u": 3})


# ---- rebalances against the coordinator ---------------------------------------------------

def test_eager_range_three_members_share_six_partitions_without_overlap(group):
    a = group.member("a")
    group.drive([a], lambda: len(a.owned) == 6)
    b, c = group.member("b"), group.member("c")
    group.drive([a, b, c], balanced([a, b, c], 6))
    assert [len(x.owned) for x in (a, b, c)] == [2, 2, 2]
    check_no_double_ownership(group.events)
    # eager: a revoked everything before rejoining
    assert ("revoke", sorted(("t", p) for p in range(6))) in [(k, parts) for _, n, k, _, parts in group.events
                                                             if n == "a"]
    # range over sorted member ids: consecutive ranges
    for x in (a, b, c):
        ps = sorted(p for _, p in x.owned)
        assert ps == list(range(ps[0], ps[0] + 2))


def test_member_id_required_round_trip_and_leader_assignment(group):
    a = group.member("a", topics=("t", "u"))
    group.drive([a], lambda: len(a.owned) == 9)
    names = [t for conn, t in group.requests if conn.startswith("a/group")]
    assert names == ["JoinGroupRequest", "JoinGroupRequest", "MetadataRequest", "SyncGroupRequest"]
    assert a.m.identity()[1].startswith("test-") and a.m.leader


def test_leaving_member_partitions_move_and_close_commits(group):
    a, b = group.member("a"), group.member("b")
    group.drive([a, b], balanced([a, b], 6))
    mine = sorted(a.owned)
    for k in mine:
        a.positions[k] = 10 + k[1]
    a.close()     # auto commit, on_revoke, LeaveGroup
    assert {k: group.coord.committed_offsets("g")[k].offset for k in mine} == {k: 10 + k[1] for k in mine}
    assert [e[2:] for e in group.events if e[1] == "a"][-1][::2] == ("revoke", mine)
    assert ("a/poll", "LeaveGroupRequest") in group.requests
    group.drive([b], lambda: len(b.owned) == 6)
    # b starts a's old partitions at a's committed offsets
    assert {k: b.positions[k] for k in mine} == {k: 10 + k[1] for k in mine}
    check_no_double_ownership(group.events)


def test_killed_member_is_noticed_within_a_heartbeat_not_the_session_timeout(group):
    a, b = group.member("a"), group.member("b")
    group.drive([a, b], balanced([a, b], 6))
    t0 = group.now
    b.kill()
    group.drive([a], lambda: len(a.owned) == 6)
    # the closed connection removes b at once; a hears at its next heartbeat (30 ms) and
    # the group waits for nobody else: well inside the 1 s session timeout
    assert group.now - t0 <= 2 * CONFIG["heartbeat.interval.ms"]
    check_no_double_ownership(group.events)


def test_cooperative_sticky_keeps_partitions_that_stay(group):
    coop = {"partition.assignment.strategy": ["cooperative-sticky"]}
    a = group.member("a", **coop)
    group.drive([a], lambda: len(a.owned) == 6)
    before = set(a.owned)
    b = group.member("b", **coop)
    group.drive([a, b], balanced([a, b], 6))
    c = group.member("c", **coop)
    group.drive([a, b, c], balanced([a, b, c], 6))
    events = group.events
    check_no_double_ownership(events)
    # a only ever revoked what moved; what a kept was never revoked and re-assigned
    revoked_by_a = {tp for _, n, k, _, parts in events if n == "a" and k == "revoke" for tp in parts}
    assert revoked_by_a == before - a.owned
    assigned_to_a = [parts for _, n, k, _, parts in events if n == "a" and k == "assign"]
    assert assigned_to_a[0] == sorted(before) and all(not set(p) & a.owned for p in assigned_to_a[1:])
    assert not [e for e in events if e[2] == "lost"]


def test_max_poll_interval_exceeded_leaves_at_the_limit_then_raises_then_rejoins(group):
    a = group.member("a", **{"max.poll.interval.ms": 300})
    b = group.member("b")
    group.drive([a, b], balanced([a, b], 6))
    t0 = group.now        # a's last poll
    group.drive([b], lambda: len(b.owned) == 6, what="b to take over")   # a does not poll
    took = group.now - t0
    # a's group thread leaves 300 ms after its last poll; b hears at its next heartbeat
    assert 300 < took <= 300 + 2 * CONFIG["heartbeat.interval.ms"]
    assert ("a/group0", "LeaveGroupRequest") in group.requests
    assert a.owned and a.wakes               # a has not heard yet: it learns at its next poll
    with pytest.raises(MaxPollIntervalExceeded, match=r"max.poll.interval.ms exceeded: processing between polls "
                                                      r"took 0\.3 s \(the limit is 0\.3 s\).*reduce the work per "
                                                      r"poll or raise"):
        a.poll()
    assert not a.owned
    assert [e[2] for e in group.events if e[1] == "a"][-1] == "lost"
    group.drive([a, b], balanced([a, b], 6), what="a to rejoin")


def test_a_static_member_that_stops_polling_stops_heartbeating_without_leaving(group):
    a = group.member("a", **{"max.poll.interval.ms": 300, "group.instance.id": "a"})
    group.drive([a], lambda: len(a.owned) == 6)
    group.run_for([], 400)
    assert not [r for r in group.requests if r[1] == "LeaveGroupRequest"]
    heartbeats = len([r for r in group.requests if r[1] == "HeartbeatRequest"])
    group.run_for([], 300)
    assert len([r for r in group.requests if r[1] == "HeartbeatRequest"]) == heartbeats
    with pytest.raises(MaxPollIntervalExceeded):
        a.poll()


def test_static_member_restart_within_session_timeout_causes_no_rebalance(group):
    static = {"group.instance.id": "worker-1"}
    a = group.member("a", **static)
    group.drive([a], lambda: len(a.owned) == 6)
    b = group.member("b")
    group.drive([a, b], balanced([a, b], 6))
    gen = b.m.identity()[0]
    owned_a = a.owned
    leader_was_a = a.m.leader
    a.close()            # a static member does not leave...
    assert not [x for x in group.requests if x[1] == "LeaveGroupRequest"]
    n_events = len(group.events)
    a2 = group.member("a2", **static)     # ...and comes back with the same group.instance.id
    group.drive([a2, b], lambda: a2.owned == owned_a)
    heartbeats = len([r for r in group.requests if r == ("b/group0", "HeartbeatRequest")])
    group.run_for([a2, b], 10 * CONFIG["heartbeat.interval.ms"])
    assert len([r for r in group.requests if r == ("b/group0", "HeartbeatRequest")]) >= heartbeats + 9
    assert b.m.identity()[0] == gen == a2.m.identity()[0]
    assert [e for e in group.events[n_events:] if e[1] == "b"] == []      # b saw nothing
    assert leader_was_a == a2.m.leader      # KIP-814: a restarted leader is told to skip assignment


def test_second_live_static_instance_fences_the_first(group):
    a = group.member("a", **{"group.instance.id": "w"})
    group.drive([a], lambda: len(a.owned) == 6)
    a2 = group.member("a2", **{"group.instance.id": "w"})
    group.drive([a2], lambda: len(a2.owned) == 6)
    wakes = a.wakes
    group.drive([a2], lambda: a.wakes > wakes, what="a's next heartbeat")   # fenced
    with pytest.raises(FencedInstanceId):
        a.poll()
    assert not a.owned
    with pytest.raises(FencedInstanceId):   # fatal: every later poll says so
        a.poll()


def test_commit_committed_and_metadata(group):
    a = group.member("a", **{"enable.auto.commit": False})
    group.drive([a], lambda: len(a.owned) == 6)
    done = a.run(a.m.commit({("t", 0): 5, ("t", 1): 7}, {("t", 0): "ckpt-5"}))
    assert done == [TopicPartition("t", 0, 5), TopicPartition("t", 1, 7)]
    got = a.run(a.m.fetch_committed([("t", 0), ("t", 1), ("t", 2)]))
    assert got[("t", 0)] == OffsetAndMetadata("t", 0, 5, "ckpt-5") and got[("t", 0)].metadata == "ckpt-5"
    assert got[("t", 1)].metadata == "" and got[("t", 2)] is None


def test_auto_commit_on_interval_and_before_eager_revocation(group):
    a = group.member("a", **{"auto.commit.interval.ms": 50})
    group.drive([a], lambda: len(a.owned) == 6)
    a.positions[("t", 0)] = 42
    t0 = group.now
    group.drive([a], lambda: group.coord.committed_offsets("g").get(("t", 0)) is not None)
    assert group.coord.committed_offsets("g")[("t", 0)].offset == 42 and group.now - t0 <= 50
    a.positions[("t", 5)] = 9
    b = group.member("b", **{"auto.commit.interval.ms": 60000})
    group.drive([a, b], balanced([a, b], 6))
    assert group.coord.committed_offsets("g")[("t", 5)].offset == 9     # committed before a revoked it
    owner = a if ("t", 5) in a.owned else b
    assert owner.positions[("t", 5)] == 9        # eager: even a starts it again from the commit


def test_a_commit_from_a_member_the_group_moved_on_without_is_refused_and_says_why(group):
    a = group.member("a")
    group.drive([a], lambda: len(a.owned) == 6)
    b = group.member("b")
    group.drive([b], lambda: len(b.owned) == 6, what="b to take over from a, which does not poll")
    with pytest.raises((IllegalGeneration, UnknownMemberId), match="commit refused: .*current generation"):
        a.run(a.m.commit({("t", 0): 1}, None))
    assert ("t", 0) not in group.coord.committed_offsets("g")


def test_leader_notices_added_partitions(group):
    a = group.member("a", **{"metadata.max.age.ms": 50})
    b = group.member("b", **{"metadata.max.age.ms": 50})
    group.drive([a, b], balanced([a, b], 6))
    group.topics["t"] = 8
    group.drive([a, b], balanced([a, b], 8), what="the 2 new partitions to be assigned")
    check_no_double_ownership(group.events)


def test_regex_subscription_picks_up_new_topics(group):
    a = group.member("a", topics=("^orders-.*",), **{"metadata.max.age.ms": 50})
    group.topics["orders-eu"] = 2
    group.drive([a], lambda: a.owned == {("orders-eu", 0), ("orders-eu", 1)}, what="orders-eu")
    group.topics["orders-us"] = 1
    t0 = group.now
    group.drive([a], lambda: len(a.owned) == 3, what="orders-us")
    assert group.now - t0 <= 50 + 2 * CONFIG["heartbeat.interval.ms"]


def test_rebalance_is_noticed_within_a_heartbeat_interval(group):
    a = group.member("a", **{"heartbeat.interval.ms": 50})
    group.drive([a], lambda: len(a.owned) == 6)
    b = group.member("b")
    t0 = group.now
    group.drive([a, b], balanced([a, b], 6))
    assert group.now - t0 <= 50 + 30 + 30      # a's heartbeat, then the joins and the sync


def test_unsubscribe_revokes_and_leaves(group):
    a, b = group.member("a"), group.member("b")
    group.drive([a, b], balanced([a, b], 6))
    a.run(a.m.unsubscribe(group.now))
    assert not a.owned and ("a/poll", "LeaveGroupRequest") in group.requests
    group.drive([a, b], lambda: len(b.owned) == 6)


def test_a_lost_group_connection_fails_the_join_and_the_member_rejoins_after_a_backoff(group):
    a = group.member("a")
    group.drive([a], lambda: a.pending is not None, what="a's first JoinGroup")
    a.break_link()
    assert a.run_link()
    assert a.job is None and a.m.link_job(group.now) == (None, group.now + RETRY_BACKOFF_MS)
    group.drive([a], lambda: len(a.owned) == 6, what="a to join over a new connection")
    assert a.links == 2


# ---- the jobs' actions, one by one --------------------------------------------------------

def answers(job, *replies, now=0):
    """Run a job with canned replies (a reply that is an exception is raised into it);
    returns [its actions]."""
    out = []
    replies = list(replies)
    answer = None
    for _ in range(100):
        try:
            action = job.send(answer)
        except StopIteration:
            return out
        out.append(action)
        reply = replies.pop(0) if replies else None
        answer = (None, reply, now) if isinstance(reply, Exception) else (reply, None, now)
    raise AssertionError("the job did not end")


def joined(**config):
    """A Membership that joined generation 1 as a follower and was given t-0 and t-1
    (its step has not applied that yet)."""
    mb = Membership({**CONFIG, **config}, 0)
    answers(mb.subscribe(["t"], 0))
    assert [type(a) for a in answers(mb.step(0))] == [WakeLink, RaiseCallbackError]
    job, _ = mb.link_job(0)
    acts = answers(job, m.JoinGroupResponse(generation_id=1, protocol_name="range", leader="m-0", member_id="m-1"),
                   m.SyncGroupResponse(assignment=Assignment([("t", 0), ("t", 1)]).encode()))
    assert [type(a) for a in acts] == [Send, Send, WakePoll] and mb.identity() == (1, "m-1")
    return mb


NOTHING_COMMITTED = m.OffsetFetchResponse(topics=[])


HB = CONFIG["heartbeat.interval.ms"]


def test_an_eager_rejoin_commits_then_revokes_then_asks_the_group_thread_to_join():
    mb = joined()
    acts = answers(mb.step(0), NOTHING_COMMITTED)
    assert [type(a) for a in acts] == [Call, Assign, Callback, RaiseCallbackError]
    assert acts[1].keys == [("t", 0), ("t", 1)] and acts[2] == Callback("on_assign", [("t", 0), ("t", 1)])
    job, _ = mb.link_job(HB)
    answers(job, RebalanceInProgress(), now=HB)       # the heartbeat hears of a rebalance
    acts = answers(mb.step(HB), {("t", 0): 4}, m.OffsetCommitResponse(topics=[m.OffsetCommitResponseTopic(
        name="t", partitions=[m.OffsetCommitResponsePartition(partition_index=0)])]))
    assert [type(a) for a in acts] == [ReadPositions, Call, Revoke, WakeLink, RaiseCallbackError]
    assert acts[1].request.topics[0].partitions[0].committed_offset == 4
    assert acts[2] == Revoke([("t", 0), ("t", 1)]) and mb.joining and mb.assignment() == []
    job, _ = mb.link_job(HB)
    assert isinstance(job.send(None).request, m.JoinGroupRequest)


def test_heartbeats_come_every_interval_and_a_rebalance_wakes_the_poll_thread():
    mb = joined()                             # joined at 0: the first heartbeat is due at HB
    assert mb.link_job(HB - 1) == (None, HB)
    job, _ = mb.link_job(HB)
    assert [type(a) for a in answers(job, m.HeartbeatResponse(), now=HB + 1)] == [Send]
    assert mb.link_job(HB + 2) == (None, 2 * HB + 1)
    job, _ = mb.link_job(2 * HB + 1)
    assert [type(a) for a in answers(job, RebalanceInProgress(), now=2 * HB + 2)] == [Send, WakePoll]
    assert mb.rejoin_wanted


def test_no_poll_for_max_poll_interval_sends_leave_group_then_tells_the_poll_thread():
    mb = joined(**{"max.poll.interval.ms": 300, "heartbeat.interval.ms": 1000})
    mb.poll_ended(0)
    assert mb.link_job(200) == (None, 301)    # before the heartbeat at 1000: the poll interval
    job, _ = mb.link_job(301)
    acts = answers(job, m.LeaveGroupResponse(), now=302)
    assert [type(a) for a in acts] == [Send, WakePoll] and isinstance(acts[0].request, m.LeaveGroupRequest)
    assert mb.identity() == (-1, "")
    with pytest.raises(MaxPollIntervalExceeded):
        answers(mb.step(303))


def test_a_callback_error_is_raised_once_the_step_is_done(group):
    a = group.member("a")
    a.fail_callbacks = True
    with pytest.raises(RuntimeError, match="on_assign failed"):
        group.drive([a], lambda: False, what="the callback")
    assert len(a.owned) == 6 and isinstance(a.actions[-1], RaiseCallbackError)


def test_a_failed_auto_commit_is_reported_to_on_commit():
    mb = joined(**{"auto.commit.interval.ms": 0})
    answers(mb.step(0), NOTHING_COMMITTED, None, None, {})    # the join's result; nothing to commit
    acts = answers(mb.step(1), {("t", 0): 3}, RebalanceInProgress())
    report = next(a for a in acts if isinstance(a, ReportCommit))
    assert isinstance(report.error, RebalanceInProgress) and report.partitions == [TopicPartition("t", 0, 3)]


def run_on_a_fake_clock(job, reply):
    """Run a job whose every Call is answered by reply(request, now) (an exception is
    raised into it) and whose Backoffs move the clock; returns [(now, action)]."""
    out, now, answer = [], 0, None
    for _ in range(5000):
        try:
            action = job.send(answer)
        except StopIteration:
            return out
        out.append((now, action))
        if isinstance(action, Backoff):
            now += action.ms
        r = reply(action.request, now) if isinstance(action, Call) else {} if isinstance(action, ReadPositions) else None
        answer = (None, r, now) if isinstance(r, Exception) else (r, None, now)
    raise AssertionError("the job did not end")


def committed_response(offset):
    return m.OffsetFetchResponse(topics=[m.OffsetFetchResponseTopic(name="t", partitions=[
        m.OffsetFetchResponsePartition(partition_index=p, committed_offset=offset) for p in (0, 1)])])


def step_at(mb, now, reply):
    """Run mb.step(now) on a fake clock that does not move: a step must not wait (Backoff).
    Every Call is answered by reply(request, now); ReadPositions by {} (no partition has a
    position). Returns [its actions]."""
    job, out, answer = mb.step(now), [], None
    for _ in range(100):
        if job is None:
            return out
        try:
            action = job.send(answer)
        except StopIteration:
            return out
        assert not isinstance(action, Backoff), f"a step waited ({action}) inside the poll"
        out.append(action)
        r = reply(action.request, now) if isinstance(action, Call) else {} if isinstance(action, ReadPositions) else None
        answer = (None, r, now) if isinstance(r, Exception) else (r, None, now)
    raise AssertionError("the step did not end")


def polls_on_a_fake_clock(mb, reply, start, until_ms, poll_ms=500):
    """A Consumer polling back to back with poll(poll_ms / 1000) from `start`: it steps
    whenever mb.next_deadline() comes and at the start of each poll (steps take no time:
    step_at). Returns [(now, action)] of every step up to until_ms."""
    now, out = start, []
    for _ in range(100_000):
        if now >= until_ms:
            return out
        out += [(now, a) for a in step_at(mb, now, reply)]
        due = mb.next_deadline()
        next_poll = (now // poll_ms + 1) * poll_ms
        now = next_poll if due is None or due <= now else min(due, next_poll)
    raise AssertionError("the polls did not end")


def offset_fetches(steps):
    return [(now, a) for now, a in steps if isinstance(a, Call) and isinstance(a.request, m.OffsetFetchRequest)]


def test_a_read_committed_member_polls_on_while_a_transaction_holds_its_committed_offsets_kip_447():
    """KIP-447 without blocking poll(): the partitions are assigned with no position, and
    later polls ask again, backing off, until the transaction ends (as Kafka's consumer)."""
    mb = joined(**{"isolation.level": "read_committed"})
    txn_ends_at = 7_000

    def reply(req, now):
        return UnstableOffsetCommit("a transaction holds t-0") if now < txn_ends_at else committed_response(42)
    acts = step_at(mb, 0, reply)
    assert [type(a) for a in acts] == [Call, Assign, Callback, RaiseCallbackError]
    assert acts[1] == Assign([("t", 0), ("t", 1)], None)              # assigned, no position yet
    assert acts[2] == Callback("on_assign", [("t", 0), ("t", 1)])
    assert mb.next_deadline() == RETRY_BACKOFF_MS                     # the poll sleeps until then at most
    steps = polls_on_a_fake_clock(mb, reply, 1, 20_000)
    fetches = offset_fetches(steps)
    assert all(a.request.require_stable for _, a in fetches)
    assert [now for now, _ in fetches][:6] == [100, 300, 700, 1_500, 2_500, 3_500]   # backing off to 1 s
    assert txn_ends_at <= fetches[-1][0] < txn_ends_at + MAX_BACKOFF_MS            # asked within a backoff
    assert [a for _, a in steps if isinstance(a, Position)] == [Position({("t", 0): 42, ("t", 1): 42})]
    assert not [a for _, a in steps if isinstance(a, Assign)]          # the partitions stayed assigned


def test_partitions_assigned_by_hand_get_their_positions_from_later_polls_not_a_wait():
    """assign() by hand (no subscription) with no offsets under read_committed: one
    OffsetFetch, no Backoff; while unstable, later steps ask again on the same schedule as
    the group's own partitions, until a Position; forget_positions (unassign) stops it."""
    mb = Membership({**CONFIG, "isolation.level": "read_committed", "enable.auto.commit": False}, 0)
    txn_ends_at = 3_000

    def reply(req, now):
        return UnstableOffsetCommit("a transaction holds t-0") if now < txn_ends_at else committed_response(5)
    acts = answers(mb.position_assigned([("t", 0), ("t", 1)], 0), UnstableOffsetCommit("open"))
    assert [type(a) for a in acts] == [Call]                          # asked once, did not wait
    assert mb.next_deadline() == RETRY_BACKOFF_MS
    steps = polls_on_a_fake_clock(mb, reply, 1, 6_000)
    assert [now for now, _ in offset_fetches(steps)][:4] == [100, 300, 700, 1_500]
    assert [a for _, a in steps if isinstance(a, Position)] == [Position({("t", 0): 5, ("t", 1): 5})]
    assert mb.next_deadline() is None
    answers(mb.position_assigned([("t", 0)], 7_000), UnstableOffsetCommit("open again"))
    mb.forget_positions([("t", 0)])
    assert mb.next_deadline() is None and not offset_fetches(polls_on_a_fake_clock(mb, reply, 7_001, 12_000))


def test_an_offset_unstable_past_the_longest_transaction_is_left_to_auto_offset_reset():
    mb = joined(**{"isolation.level": "read_committed"})
    steps = polls_on_a_fake_clock(mb, lambda req, now: UnstableOffsetCommit("a hanging transaction"), 0,
                                  UNSTABLE_WAIT_MS + 10_000, poll_ms=1_000)
    fetches = offset_fetches(steps)
    assert UNSTABLE_WAIT_MS <= fetches[-1][0] < UNSTABLE_WAIT_MS + MAX_BACKOFF_MS
    assert [a for _, a in steps if isinstance(a, Position)] == [Position({("t", 0): None, ("t", 1): None})]


def test_fetching_committed_offsets_is_retried_by_later_polls_then_left_to_auto_offset_reset():
    mb = joined()
    steps = polls_on_a_fake_clock(mb, lambda req, now: CoordinatorNotAvailable(), 0, 10_000)
    assert [now for now, _ in offset_fetches(steps)] == [0, 100, 300]
    assert [a for _, a in steps if isinstance(a, (Assign, Position))] == [
        Assign([("t", 0), ("t", 1)], None), Position({("t", 0): None, ("t", 1): None})]


def unpositioned(**config):
    """A read_committed member given t-0 and t-1, whose committed offsets a transaction holds."""
    mb = joined(**{"isolation.level": "read_committed", **config})
    acts = step_at(mb, 0, lambda req, now: UnstableOffsetCommit("open"))
    assert Assign([("t", 0), ("t", 1)], None) in acts
    return mb


def test_an_eager_rebalance_while_positions_are_unknown_forgets_them_and_asks_afresh():
    mb = unpositioned()
    job, _ = mb.link_job(HB)
    answers(job, RebalanceInProgress(), now=HB)
    acts = step_at(mb, 200, lambda req, now: AssertionError(f"{req} while rejoining"))   # its fetch was due at 100
    assert [type(a) for a in acts] == [ReadPositions, Revoke, WakeLink, RaiseCallbackError]
    assert mb.next_deadline() is None                      # nothing to ask again for
    job, _ = mb.link_job(300)
    answers(job, m.JoinGroupResponse(generation_id=2, protocol_name="range", leader="m-0", member_id="m-1"),
            m.SyncGroupResponse(assignment=Assignment([("t", 1)]).encode()), now=300)
    acts = step_at(mb, 400, lambda req, now: committed_response(9))
    assert offset_fetches([(400, a) for a in acts])[0][1].request.topics[0].partition_indexes == [1]
    assert Assign([("t", 1)], {("t", 1): 9}) in acts


def test_partitions_lost_while_positions_are_unknown_are_not_asked_for_again():
    mb = unpositioned()
    job, _ = mb.link_job(HB)
    answers(job, UnknownMemberId(), now=HB)
    acts = step_at(mb, 200, lambda req, now: AssertionError(f"{req} after the loss"))
    assert [type(a) for a in acts] == [Lose, WakeLink, RaiseCallbackError] and mb.next_deadline() is None


def test_close_while_positions_are_unknown_commits_nothing_and_does_not_wait():
    mb = unpositioned()
    acts = run_on_a_fake_clock(mb.close(50), lambda req, now: m.LeaveGroupResponse())
    assert [type(a) for _, a in acts] == [ReadPositions, Revoke, Call]
    assert isinstance(acts[-1][1].request, m.LeaveGroupRequest) and acts[-1][0] == 0


def test_cooperative_members_wait_for_a_transaction_across_a_rebalance(group):
    """Against the real coordinator: a transaction holds the offsets of t-0..5; a joins,
    then b; the partitions that move are forgotten by a and asked for by b, those a keeps
    are asked for again during the rebalance; when the transaction's marker lands, both
    start from the offsets it committed, and nobody from auto.offset.reset."""
    pid = 4000
    producer = Conn("producer")
    res = group.send(producer, m.TxnOffsetCommitRequest(
        transactional_id="tx", group_id="g", producer_id=pid, producer_epoch=0, generation_id=-1, member_id="",
        topics=[m.TxnOffsetCommitRequestTopic(name="t", partitions=[
            m.TxnOffsetCommitRequestPartition(partition_index=p, committed_offset=10 + p) for p in range(6)])]))
    assert all(p.error_code == 0 for t in group.replies.pop((producer, res)).topics for p in t.partitions)
    cfg = {"partition.assignment.strategy": ["cooperative-sticky"], "isolation.level": "read_committed"}
    a = group.member("a", **cfg)
    group.drive([a], lambda: len(a.assigned) == 6)
    b = group.member("b", **cfg)
    group.drive([a, b], lambda: len(a.assigned) == len(b.assigned) == 3 and not a.m.joining and not b.m.joining)
    assert a.positions == b.positions == {}
    group.run_for([a, b], 3_000)
    assert a.positions == b.positions == {}
    for mb in (a, b):     # each asks again for what it holds now, nothing else
        last = [x.request for x in mb.actions if isinstance(x, Call) and isinstance(x.request, m.OffsetFetchRequest)][-1]
        assert {("t", p) for t in last.topics for p in t.partition_indexes} == mb.assigned
    group.apply(group.coord.txn_completed(pid, True, group.now))
    group.drive([a, b], lambda: len(a.positions) == len(b.positions) == 3, max_ms=MAX_BACKOFF_MS + 1)
    assert {**a.positions, **b.positions} == {("t", p): 10 + p for p in range(6)}
    assert not [x for mb in (a, b) for x in mb.actions if isinstance(x, Backoff)]
    assert all(x.offsets is None for mb in (a, b) for x in mb.actions if isinstance(x, Assign))
    check_no_double_ownership(group.events)


def test_committed_with_a_timeout_waits_that_long_for_a_stable_offset_then_raises():
    mb = joined(**{"isolation.level": "read_committed"})
    asked = []

    def still_open(req, now):
        asked.append((now, req.require_stable))
        return UnstableOffsetCommit("open")
    with pytest.raises(UnstableOffsetCommit):
        run_on_a_fake_clock(mb.fetch_committed([("t", 0)], 2_500), still_open)
    assert asked[-1] == (2_500, True)           # 100 + 200 + 400 + 800 ms, then the 1,000 ms clipped to the timeout
    stable = run_on_a_fake_clock(mb.fetch_committed([("t", 0)], 2_500),
                                 lambda req, now: UnstableOffsetCommit("open") if now < 1_000 else committed_response(3))
    assert stable[-1][0] == 1_500 and isinstance(stable[-1][1], Call)    # 100 + 200 + 400 + 800 ms of backoff


def test_committed_whose_last_ask_times_out_at_the_deadline_still_raises_unstable():
    """The last ask comes at the deadline, with no time left for its answer: its timeout
    still says why committed() gave up (UnstableOffsetCommit), not RequestTimedOut; a
    timeout before any answer is the timeout."""
    mb = joined(**{"isolation.level": "read_committed"})
    with pytest.raises(UnstableOffsetCommit):
        run_on_a_fake_clock(mb.fetch_committed([("t", 0)], 2_500),
                            lambda req, now: UnstableOffsetCommit("open") if now < 2_500 else RequestTimedOut("late"))
    with pytest.raises(RequestTimedOut):
        run_on_a_fake_clock(mb.fetch_committed([("t", 0)], 2_500), lambda req, now: RequestTimedOut("late"))


def test_a_read_uncommitted_member_does_not_ask_for_stable_offsets():
    mb = joined()
    acts = answers(mb.step(0), NOTHING_COMMITTED)
    assert isinstance(acts[0], Call) and acts[0].request.require_stable is False


def test_empty_group_id_is_refused():
    with pytest.raises(InvalidGroupId):
        Membership({**CONFIG, "group.id": ""}, 0)


def test_subscribe_refuses_names_mixed_with_a_pattern(group):
    with pytest.raises(ValueError, match="regex"):
        group.member("a", topics=("t", "^x"))
