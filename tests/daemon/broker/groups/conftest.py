"""A broker loop in miniature for the group coordinator: a FakeClock, a request sender
that records every reply, and a __consumer_offsets "log" that Persist effects append to
(acknowledged at once, or held until flush() when auto_persist is off)."""
import itertools

import pytest
from support.clock import FakeClock
from support.replies import Call, record

from odradek.client.errors import MemberIdRequired
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import GroupConfig, GroupCoordinator, Note, Peer, Persist, Reply

TEST_CONFIG = GroupConfig(initial_rebalance_delay_ms=0, min_session_timeout_ms=1)


class Harness:
    def __init__(self, config=TEST_CONFIG, auto_persist=True, partition_exists=None):
        self.clock = FakeClock()
        ids = itertools.count(1)
        self.coord = GroupCoordinator(config, new_member_id=lambda prefix: f"{prefix}-{next(ids)}",
                                      partition_exists=partition_exists)
        self.replies = {}
        self.log = []          # (key, value) records appended to __consumer_offsets
        self.persists = []     # every Persist effect, in order
        self.pending = []      # (Persist token, its batch's offset) not yet acknowledged
        self.notes = []
        self.auto_persist = auto_persist
        self._handles = itertools.count(1)

    @property
    def now(self):
        return self.clock.now

    def apply(self, effects):
        for e in effects:
            if isinstance(e, Reply):
                record(self.replies, e)
            elif isinstance(e, Persist):
                self.persists.append(e)
                offset = len(self.log)     # the batch's base offset: a record's index in the log
                self.log.extend(e.records)
                if e.token is not None:
                    if self.auto_persist:
                        self.apply(self.coord.persisted(e.token, self.now, None, offset))
                    else:
                        self.pending.append((e.token, offset))
            else:
                assert isinstance(e, Note), e
                self.notes.append(e)

    # ---- the loop -----------------------------------------------------------------
    def send(self, conn, request, client_id="app", pid=100, uid=1000):
        handle = next(self._handles)
        self.apply(self.coord.handle(Peer(conn, client_id, pid, uid), handle, request, self.now))
        return Call(self, conn, handle)

    def tick(self, ms=0):
        self.clock.advance(ms)
        self.apply(self.coord.tick(self.now))

    def close(self, conn):
        self.apply(self.coord.connection_closed(conn, self.now))

    def flush(self, error=None):
        held, self.pending = self.pending, []
        for token, offset in held:
            self.apply(self.coord.persisted(token, self.now, error, offset))

    def state(self, group="g"):
        state = self.coord.group_state(group)
        return state.value if state is not None else None

    def group(self, group="g"):
        return self.coord.groups[group]

    # ---- client requests ----------------------------------------------------------
    def join(self, conn, group="g", member_id="", instance=None, protocols=(("range", b"r"),),
             session=10_000, rebalance=30_000, protocol_type="consumer", client_id="app"):
        return self.send(conn, m.JoinGroupRequest(
            group_id=group, member_id=member_id, group_instance_id=instance, session_timeout_ms=session,
            rebalance_timeout_ms=rebalance, protocol_type=protocol_type,
            protocols=[m.JoinGroupRequestProtocol(name=n, metadata=md) for n, md in protocols]),
            client_id=client_id)

    def join_new(self, conn, group="g", **kw):
        """A new dynamic member's two JoinGroups (MEMBER_ID_REQUIRED round trip): the
        second call (answered when the join completes) and the member id."""
        first = self.join(conn, group, **kw).ok()
        assert first.error_code == MemberIdRequired.code and first.member_id
        return self.join(conn, group, member_id=first.member_id, **kw), first.member_id

    def sync(self, conn, group, generation, member_id, assignments=None, instance=None):
        return self.send(conn, m.SyncGroupRequest(
            group_id=group, generation_id=generation, member_id=member_id, group_instance_id=instance,
            assignments=[m.SyncGroupRequestAssignment(member_id=k, assignment=v)
                         for k, v in (assignments or {}).items()]))

    def heartbeat(self, conn, group, generation, member_id, instance=None):
        return self.send(conn, m.HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id,
                                                  group_instance_id=instance))

    def leave(self, conn, group, *members):
        return self.send(conn, m.LeaveGroupRequest(group_id=group, members=[
            m.MemberIdentity(member_id=mid, group_instance_id=iid) for mid, iid in members]))

    def commit(self, conn, group, generation, member_id, offsets, instance=None):
        topics = {}
        for (t, p), value in sorted(offsets.items()):
            offset, metadata = value if isinstance(value, tuple) else (value, None)
            topics.setdefault(t, []).append(m.OffsetCommitRequestPartition(
                partition_index=p, committed_offset=offset, committed_metadata=metadata))
        return self.send(conn, m.OffsetCommitRequest(
            group_id=group, generation_id=generation, member_id=member_id, group_instance_id=instance,
            topics=[m.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in topics.items()]))

    def fetch(self, conn, group, topics=None):
        """{(topic, partition): (offset, metadata)} from an OffsetFetch."""
        req = m.OffsetFetchRequest(group_id=group, topics=None if topics is None else [
            m.OffsetFetchRequestTopic(name=t, partition_indexes=ps) for t, ps in topics.items()])
        resp = self.send(conn, req).ok()
        return {(t.name, p.partition_index): (p.committed_offset, p.metadata)
                for t in resp.topics for p in t.partitions}

    # ---- whole scenarios ----------------------------------------------------------
    def stable_group(self, n, group="g", **kw):
        """n dynamic members on connections c0..c{n-1}, joined, synced, Stable. Returns
        ([(conn, member_id)], generation); member i's assignment is b"A-<member id>"."""
        calls = [(f"c{i}",) + self.join_new(f"c{i}", group, **kw) for i in range(n)]
        self.tick()
        members = [(conn, mid) for conn, _, mid in calls]
        responses = [call.ok() for _, call, _ in calls]
        generation = responses[0].generation_id
        leader = responses[0].leader
        self.sync_all(group, generation, members, leader)
        assert self.state(group) == "Stable"
        return members, generation

    def sync_all(self, group, generation, members, leader):
        """Followers first, then the leader with b"A-<member id>" for everyone."""
        calls = {}
        for conn, mid in members:
            if mid != leader:
                calls[mid] = self.sync(conn, group, generation, mid)
        conn = dict((mid, c) for c, mid in members)[leader]
        calls[leader] = self.sync(conn, group, generation, leader,
                                  {mid: b"A-" + mid.encode() for _, mid in members})
        for mid, call in calls.items():
            assert call.ok().assignment == b"A-" + mid.encode()
        return calls


@pytest.fixture
def h():
    return Harness()


@pytest.fixture
def make_harness():
    return Harness
