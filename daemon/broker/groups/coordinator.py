"""The group coordinator: Kafka's classic consumer-group protocol as a sans-IO state machine.

Driving it (the broker loop does this; tests do it with a FakeClock):

    coord = GroupCoordinator(GroupConfig(...))
    coord.load(records_of___consumer_offsets, now)          # once, before serving
    effects = coord.handle(Peer(conn, client_id, pid, uid), correlation_id, request, now)
    effects = coord.tick(now)             # whenever now >= coord.next_deadline()
    effects = coord.connection_closed(conn, now)
    effects = coord.persisted(token, now, error)          # when a Persist with a token is done

and apply each effect in order (effects.py: Reply, Persist, Note). Nothing here reads a
clock, sleeps, or touches a socket or a file: `now` (ms) is always given.

Semantics are those of Kafka's GroupCoordinator (the classic protocol, Kafka 3.x):
- JoinGroup: a new dynamic member (empty member id) gets MEMBER_ID_REQUIRED with its
  id and joins with it; a static member (group.instance.id) joins at once. The first
  joined member leads; the join completes when every member has rejoined, or after the
  rebalance timeout (the largest of the members'), which drops dynamic members that did
  not rejoin. An Empty group waits group.initial.rebalance.delay.ms first (extended by
  that much for each new member, up to the rebalance timeout), so that members starting
  together form one generation. The leader's answer lists every member's metadata for
  the protocol the group chose by vote.
- SyncGroup: followers wait for the leader's; the leader's assignment is written to
  __consumer_offsets (GroupMetadataValue) and then handed out; the group is Stable.
  Members that send no SyncGroup within the rebalance timeout are removed.
- Heartbeat: keeps the session (session.timeout.ms) alive; REBALANCE_IN_PROGRESS while
  the group prepares a rebalance, ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID /
  FENCED_INSTANCE_ID for stale members. A member waiting for a JoinGroup or SyncGroup
  answer needs no heartbeat.
- A dynamic member whose control connections have all closed is removed at once, and
  the group rebalances. A static member keeps its place until its session times out;
  when it comes back (empty member id, same group.instance.id) it gets a new member id,
  the old id is fenced, and if the group is Stable and its chosen protocol unchanged
  there is no rebalance: it gets its previous assignment.
- OffsetCommit (from a member of the current generation, or standalone with generation
  -1 while the group is Empty) is answered once its records are durable; OffsetFetch
  answers from memory.

Error answers: a failure of the whole request is an error response (Reply.result is an
OdradekError); per-item failures (a partition, a leaving member, a group in a batch) are
error codes inside the response, and MEMBER_ID_REQUIRED comes inside JoinGroupResponse
with the member id (client/protocol/messages.py explains the rule).
"""
import heapq
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass, fields

from odradek.client.errors import (
    CoordinatorNotAvailable, FencedInstanceId, GroupIdNotFound, GroupMaxSizeReached, IllegalGeneration,
    InconsistentGroupProtocol, InvalidCommitOffsetSize, InvalidConfig, InvalidGroupId, InvalidRequest,
    InvalidSessionTimeout, MemberIdRequired, MessageTooLarge, NonEmptyGroup, OdradekError,
    OffsetMetadataTooLarge, RebalanceInProgress, UnknownMemberId, UnknownServerError,
    UnknownTopicOrPartition)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.effects import Note, Persist, Reply
from odradek.daemon.broker.groups.group import (
    CommittedOffset, Group, GroupState, Member, PendingMember, Waiter)

__all__ = ["GroupCoordinator", "GroupConfig"]

_S = GroupState


@dataclass(frozen=True)
class GroupConfig:
    """Broker settings of the coordinator (Kafka's names in KAFKA_NAMES)."""
    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    max_size: int = 2**31 - 1
    offset_metadata_max_bytes: int = 4096
    new_member_join_timeout_ms: int = 300_000   # a new member's JoinGroup waits at most this

    KAFKA_NAMES = {
        "group.initial.rebalance.delay.ms": "initial_rebalance_delay_ms",
        "group.min.session.timeout.ms": "min_session_timeout_ms",
        "group.max.session.timeout.ms": "max_session_timeout_ms",
        "group.max.size": "max_size",
        "offset.metadata.max.bytes": "offset_metadata_max_bytes",
    }

    @classmethod
    def from_mapping(cls, mapping):
        """A GroupConfig from Kafka's dotted names; other keys are ignored."""
        values = {}
        for key, attr in cls.KAFKA_NAMES.items():
            if key in mapping:
                try:
                    values[attr] = int(mapping[key])
                except (TypeError, ValueError):
                    raise InvalidConfig(f"{key} must be an integer, not {mapping[key]!r}") from None
        return cls(**values)

    def __post_init__(self):
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise InvalidConfig(f"{f.name} must not be negative")
        if self.min_session_timeout_ms < 1:
            raise InvalidConfig("group.min.session.timeout.ms must be at least 1")
        if self.min_session_timeout_ms > self.max_session_timeout_ms:
            raise InvalidConfig("group.min.session.timeout.ms is above group.max.session.timeout.ms")
        if self.max_size < 1:
            raise InvalidConfig("group.max.size must be at least 1")


@dataclass
class _Join:
    """What a JoinGroup asks for, checked."""
    peer: object
    handle: object
    instance_id: str | None
    protocol_type: str
    protocols: list
    rebalance_timeout_ms: int
    session_timeout_ms: int

    def waiter(self):
        return Waiter(self.peer.conn, self.handle)


_HANDLERS = {
    m.FindCoordinatorRequest: "find_coordinator",
    m.JoinGroupRequest: "join_group",
    m.SyncGroupRequest: "sync_group",
    m.HeartbeatRequest: "heartbeat",
    m.LeaveGroupRequest: "leave_group",
    m.OffsetCommitRequest: "offset_commit",
    m.OffsetFetchRequest: "offset_fetch",
    m.ListGroupsRequest: "list_groups",
    m.DescribeGroupsRequest: "describe_groups",
    m.DeleteGroupsRequest: "delete_groups",
}


def _default_member_id(prefix):
    return f"{prefix}-{uuid.uuid4()}"


class GroupCoordinator:
    """Every consumer group of the broker. Not thread-safe: one loop drives it."""

    def __init__(self, config=None, *, new_member_id=None, partition_exists=None):
        """`new_member_id(prefix)` makes member ids (default prefix-uuid4; tests pass a
        counter). `partition_exists(topic, partition)`, if given, makes OffsetCommit
        refuse unknown partitions with UNKNOWN_TOPIC_OR_PARTITION."""
        self.config = config or GroupConfig()
        self.groups = {}                       # group id -> Group
        self._new_member_id = new_member_id or _default_member_id
        self._partition_exists = partition_exists
        self._timers = []                      # heap of (deadline, seq, kind, group, target)
        self._seq = itertools.count(1)
        self._continuations = {}               # Persist token -> what to do when it is durable
        self._conn_groups = defaultdict(set)   # conn -> ids of groups it has members in
        self._out = None

    # == the loop's interface =========================================================
    def handle(self, peer, handle, request, now):
        """Any group request: dispatches on its type. Returns effects."""
        name = _HANDLERS.get(type(request))
        if name is None:
            raise TypeError(f"the group coordinator does not handle {type(request).__name__}")
        return getattr(self, name)(peer, handle, request, now)

    def find_coordinator(self, peer, handle, req, now):
        return self._run(self._find_coordinator, peer, handle, req, now)

    def join_group(self, peer, handle, req, now):
        return self._run(self._join_group, peer, handle, req, now)

    def sync_group(self, peer, handle, req, now):
        return self._run(self._sync_group, peer, handle, req, now)

    def heartbeat(self, peer, handle, req, now):
        return self._run(self._heartbeat, peer, handle, req, now)

    def leave_group(self, peer, handle, req, now):
        return self._run(self._leave_group, peer, handle, req, now)

    def offset_commit(self, peer, handle, req, now):
        return self._run(self._offset_commit, peer, handle, req, now)

    def offset_fetch(self, peer, handle, req, now):
        return self._run(self._offset_fetch, peer, handle, req, now)

    def list_groups(self, peer, handle, req, now):
        return self._run(self._list_groups, peer, handle, req, now)

    def describe_groups(self, peer, handle, req, now):
        return self._run(self._describe_groups, peer, handle, req, now)

    def delete_groups(self, peer, handle, req, now):
        return self._run(self._delete_groups, peer, handle, req, now)

    def tick(self, now):
        """Fire every deadline that is due (sessions, rebalance and initial delays,
        SyncGroup waits, MEMBER_ID_REQUIRED ids). Returns effects."""
        return self._run(self._tick, now)

    def next_deadline(self):
        """The earliest time (ms) at which tick() has something to do; None if nothing
        is scheduled."""
        while self._timers and not self._timer_live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def connection_closed(self, conn, now):
        """A control connection closed: its dynamic members leave at once (the group
        rebalances); static members keep their place until their session times out."""
        return self._run(self._connection_closed, conn, now)

    def persisted(self, token, now, error=None):
        """The Persist carrying `token` is durable (error None) or failed (an
        OdradekError). Returns the effects that waited for it."""
        return self._run(self._persisted, token, now, error)

    def load(self, records, now):
        """Rebuild every group from the records of __consumer_offsets, oldest first:
        (key bytes, value bytes or None). Replaces all state; call before serving.
        Members of a group written Stable come back Stable, with their assignment; each
        must heartbeat within its session timeout (from `now`) or leave. Records that
        do not decode are skipped with a Note."""
        return self._run(self._load, records, now)

    def topic_deleted(self, topic, now):
        """Drop every committed offset of a deleted topic (and write their tombstones)."""
        return self._run(self._topic_deleted, topic, now)

    # ---- read-only views (status, lag, CLI) -----------------------------------------
    def committed_offsets(self, group_id):
        """{(topic, partition): CommittedOffset} of a group ({} if unknown)."""
        group = self.groups.get(group_id)
        return dict(group.offsets) if group is not None else {}

    def group_state(self, group_id):
        group = self.groups.get(group_id)
        return group.state if group is not None else None

    # == plumbing =====================================================================
    def _run(self, fn, *args):
        self._out = []
        try:
            fn(*args)
            return self._out
        finally:
            self._out = None

    def _reply(self, conn, handle, result):
        self._out.append(Reply(conn, handle, result))

    def _answer(self, waiter, result):
        if waiter is not None:
            self._out.append(Reply(waiter.conn, waiter.handle, result))

    def _note(self, group_id, text):
        self._out.append(Note(group_id, text))

    def _persist(self, records, continuation=None):
        token = None
        if continuation is not None:
            token = next(self._seq)
            self._continuations[token] = continuation
        self._out.append(Persist(tuple(records), token))
        return token

    def _bind(self, group, conn):
        self._conn_groups[conn].add(group.group_id)

    # ---- timers ----------------------------------------------------------------------
    def _arm(self, deadline, kind, group, target):
        seq = next(self._seq)
        heapq.heappush(self._timers, (deadline, seq, kind, group, target))
        return seq

    def _timer_live(self, entry):
        _, seq, kind, group, target = entry
        if self.groups.get(group.group_id) is not group:
            return False
        if kind == "join":
            return group.join_timer == seq
        if kind == "sync":
            return group.sync_timer == seq
        if kind == "session":
            return group.members.get(target.member_id) is target and target.timer == seq
        if kind == "pending":
            return group.pending_members.get(target.member_id) is target and target.timer == seq
        return False

    def _arm_session(self, group, member, now, timeout_ms=None):
        """Kafka's completeAndScheduleNextHeartbeatExpiration."""
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.timer = self._arm(now + max(timeout, 1), "session", group, member)

    def _arm_join(self, group, now, delay_ms, initial, remaining_ms=0):
        group.join_timer = self._arm(now + delay_ms, "join", group, group)
        group.join_initial = initial
        group.join_delay_ms = delay_ms
        group.join_remaining_ms = remaining_ms

    def _tick(self, now):
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if not self._timer_live(entry):
                continue
            deadline, _, kind, group, target = entry
            if kind == "join":
                group.join_timer = None
                self._on_join_deadline(group, now, deadline)
            elif kind == "sync":
                group.sync_timer = None
                self._on_sync_deadline(group, now)
            elif kind == "session":
                target.timer = None
                self._on_session_expired(group, target, now)
            elif kind == "pending":
                target.timer = None
                self._note(group.group_id, f"member id {target.member_id} was not used to join within "
                                           "its session timeout; forgotten")
                self._remove_pending(group, target.member_id, now)

    def _on_join_deadline(self, group, now, deadline):
        if group.join_initial and group.new_member_added and group.join_remaining_ms != 0:
            # Kafka's InitialDelayedJoin: a member arrived during the delay; wait again,
            # counting from when the delay ended (tick may come late)
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, group.join_remaining_ms)
            remaining = max(group.join_remaining_ms - group.join_delay_ms, 0)
            self._arm_join(group, deadline, delay, True, remaining)
        else:
            self._complete_join(group, now)

    def _on_sync_deadline(self, group, now):
        if not group.pending_sync or group.state not in (_S.COMPLETING_REBALANCE, _S.STABLE):
            return
        late = sorted(group.pending_sync)
        for member_id in late:
            member = group.remove(member_id)
            if member is not None:
                member.timer = None
        self._note(group.group_id, f"removed {', '.join(late)}: no SyncGroup within the rebalance timeout")
        self._prepare_rebalance(group, now, f"members {', '.join(late)} sent no SyncGroup in time")

    def _on_session_expired(self, group, member, now):
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            # waiting for our answer: no heartbeat expected (the session restarts when it
            # is answered); look again one session from now in case it never is
            self._arm_session(group, member, now)
            return
        what = "its JoinGroup was not completed" if member.is_new else "no heartbeat"
        self._note(group.group_id, f"member {member.member_id} removed: {what} within "
                                   f"{member.session_timeout_ms} ms (session timeout)")
        self._remove_member_and_update(group, member, now, f"member {member.member_id}'s session expired")

    # == JoinGroup ====================================================================
    def _join_group(self, peer, handle, req, now):
        cfg = self.config
        group_id, member_id = req.group_id, req.member_id
        if not group_id:
            return self._reply(peer.conn, handle, InvalidGroupId("JoinGroup needs a non-empty group id"))
        if not cfg.min_session_timeout_ms <= req.session_timeout_ms <= cfg.max_session_timeout_ms:
            return self._reply(peer.conn, handle, InvalidSessionTimeout(
                f"session.timeout.ms {req.session_timeout_ms} is outside [{cfg.min_session_timeout_ms}, "
                f"{cfg.max_session_timeout_ms}] (the broker's group.min/max.session.timeout.ms)"))
        protocols = [(p.name, bytes(p.metadata)) for p in req.protocols]
        if len({name for name, _ in protocols}) != len(protocols):
            return self._reply(peer.conn, handle, InvalidRequest("JoinGroup lists an assignor twice"))
        join = _Join(peer, handle, req.group_instance_id, req.protocol_type, protocols,
                     req.rebalance_timeout_ms if req.rebalance_timeout_ms > 0 else req.session_timeout_ms,
                     req.session_timeout_ms)
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return self._reply(peer.conn, handle, UnknownMemberId(
                    f"group {group_id} does not exist, so member {member_id} is not in it; "
                    "join with an empty member id"))
            group = self.groups[group_id] = Group(group_id, now)
        if not self._accept_joining_member(group, member_id):
            if group.has(member_id):
                self._remove_member_and_update(group, group.members[member_id], now,
                                               "the group is over group.max.size")
            self._reply(peer.conn, handle, GroupMaxSizeReached(
                f"group {group_id} already has {self.config.max_size} members (group.max.size)"))
        elif not member_id:
            self._new_member_join(group, join, now)
        else:
            self._current_member_join(group, member_id, join, now)
        if group.is_(_S.PREPARING_REBALANCE):
            self._try_complete_join(group, now)
        self._maybe_forget(group)

    def _accept_joining_member(self, group, member_id):
        limit = self.config.max_size
        if group.state in (_S.EMPTY, _S.DEAD):
            return True
        if group.is_(_S.PREPARING_REBALANCE):
            return (group.has(member_id) and group.members[member_id].awaiting_join) or \
                group.num_awaiting_join() < limit
        return group.has(member_id) or group.size < limit

    def _protocol_check(self, group, join):
        """None, or the error for a JoinGroup whose protocols this group cannot take."""
        if group.is_(_S.DEAD):
            return CoordinatorNotAvailable(f"group {group.group_id} is being deleted; retry")
        names = [name for name, _ in join.protocols]
        if group.supports_protocols(join.protocol_type, names):
            return None
        if not join.protocol_type or not names:
            why = "a JoinGroup needs a protocol type and at least one assignor"
        elif join.protocol_type != group.protocol_type:
            why = f"the group's protocol type is {group.protocol_type!r}, this member's {join.protocol_type!r}"
        else:
            why = (f"no assignor of {names} is supported by every member "
                   f"(the members have {sorted(group.candidate_protocols())} in common)")
        return InconsistentGroupProtocol(f"group {group.group_id}: {why}")

    def _new_member_join(self, group, join, now):
        error = self._protocol_check(group, join)
        if error is not None:
            return self._answer(join.waiter(), error)
        new_id = self._new_member_id(join.instance_id if join.instance_id is not None else join.peer.client_id)
        if join.instance_id is not None:
            old_id = group.static_member_id(join.instance_id)
            if old_id is not None:
                self._update_static_member_and_rebalance(group, old_id, new_id, join, now)
            else:
                self._add_member_and_rebalance(group, new_id, join, now)
            return
        # a new dynamic member: hand out its id; it joins with it (KIP-394)
        pending = group.pending_members[new_id] = PendingMember(new_id, join.peer.conn)
        pending.timer = self._arm(now + join.session_timeout_ms, "pending", group, pending)
        self._bind(group, join.peer.conn)
        self._answer(join.waiter(), m.JoinGroupResponse(
            error_code=MemberIdRequired.code, error_message="join again with this member id",
            member_id=new_id))

    def _current_member_join(self, group, member_id, join, now):
        error = self._protocol_check(group, join)
        if error is not None:
            return self._answer(join.waiter(), error)
        if member_id in group.pending_members:
            if join.instance_id is not None:
                return self._answer(join.waiter(), InvalidRequest(
                    f"member id {member_id} was given to a dynamic member; a static member "
                    "(group.instance.id) joins with an empty member id"))
            return self._add_member_and_rebalance(group, member_id, join, now)
        error = self._validate_member(group, member_id, join.instance_id, "JoinGroup")
        if error is not None:
            return self._answer(join.waiter(), error)
        member = group.members[member_id]
        member.conns.add(join.peer.conn)
        self._bind(group, join.peer.conn)
        if group.is_(_S.PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, join, now, f"member {member_id} rejoined")
        elif group.is_(_S.COMPLETING_REBALANCE):
            if member.matches(join.protocols):
                # it missed our answer: give the current generation again
                self._answer(join.waiter(), self._join_response(group, member, group.is_leader(member_id)))
            else:
                self._update_member_and_rebalance(group, member, join, now,
                                                  f"member {member_id} changed its metadata")
        elif group.is_(_S.STABLE):
            if group.is_leader(member_id):
                # the leader may rejoin to make the group reassign (e.g. partitions were added)
                self._update_member_and_rebalance(group, member, join, now, f"leader {member_id} rejoined")
            elif not member.matches(join.protocols):
                self._update_member_and_rebalance(group, member, join, now,
                                                  f"member {member_id} changed its metadata")
            else:
                self._answer(join.waiter(), self._join_response(group, member, False))
        else:
            self._answer(join.waiter(), UnknownMemberId(
                f"group {group.group_id} is {group.state}; rejoin with an empty member id"))

    def _validate_member(self, group, member_id, instance_id, operation):
        """Kafka's validateCurrentMember: None, FENCED_INSTANCE_ID or UNKNOWN_MEMBER_ID."""
        if instance_id is not None:
            current = group.static_member_id(instance_id)
            if current is None:
                return UnknownMemberId(f"group.instance.id {instance_id} is not a member of group "
                                       f"{group.group_id} ({operation})")
            if current != member_id:
                return FencedInstanceId(
                    f"member {member_id} of group {group.group_id} is fenced ({operation}): another "
                    f"instance with group.instance.id {instance_id} joined as {current}")
            return None
        if not group.has(member_id):
            return UnknownMemberId(f"member {member_id} is not in group {group.group_id} ({operation}); "
                                   "rejoin with an empty member id")
        return None

    def _add_member_and_rebalance(self, group, member_id, join, now):
        peer = join.peer
        member = Member(member_id, join.instance_id, peer.client_id, peer.client_host,
                        join.rebalance_timeout_ms, join.session_timeout_ms, join.protocol_type, join.protocols)
        member.conns.add(peer.conn)
        member.is_new = True
        self._bind(group, peer.conn)
        if group.is_(_S.PREPARING_REBALANCE) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, join.waiter())
        # until its join completes a new member cannot heartbeat: bound its wait instead
        self._arm_session(group, member, now, self.config.new_member_join_timeout_ms)
        kind = f"static member {join.instance_id}" if join.instance_id is not None else "member"
        self._maybe_prepare_rebalance(group, now, f"{kind} {member_id} joined")

    def _update_member_and_rebalance(self, group, member, join, now, reason):
        self._supersede(member.join_waiter, "JoinGroup")
        group.update_member(member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms,
                            join.waiter())
        self._maybe_prepare_rebalance(group, now, reason)

    def _supersede(self, waiter, what):
        self._answer(waiter, RebalanceInProgress(f"a newer {what} from the same member replaced this one"))

    def _update_static_member_and_rebalance(self, group, old_id, new_id, join, now):
        instance_id = join.instance_id
        member = group.members[old_id]
        fenced = FencedInstanceId(f"group.instance.id {instance_id} of group {group.group_id} joined again "
                                  f"as {new_id}; this instance ({old_id}) is fenced")
        self._answer(member.join_waiter, fenced)
        self._answer(member.sync_waiter, fenced)
        member.join_waiter = member.sync_waiter = None
        group.replace_static_member(instance_id, old_id, new_id)
        member.client_id, member.client_host = join.peer.client_id, join.peer.client_host
        member.conns = {join.peer.conn}
        self._bind(group, join.peer.conn)
        waiter = join.waiter()
        group.update_member(member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms, waiter)
        self._arm_session(group, member, now)
        self._note(group.group_id, f"static member {instance_id} rejoined: member id {old_id} -> {new_id}")
        if group.is_(_S.STABLE):
            if group.protocol_name == group.select_protocol():
                # no rebalance: store the new member id, then answer with the current generation
                self._persist_group(group, now, continuation=("static-join", group, member, waiter))
            else:
                self._maybe_prepare_rebalance(
                    group, now, f"static member {instance_id} rejoined with assignors that change the "
                                "group's protocol")
        elif group.is_(_S.COMPLETING_REBALANCE):
            # the leader may be assigning to the old member id: start over
            self._prepare_rebalance(group, now, f"static member {instance_id} rejoined during "
                                                "CompletingRebalance")
        # PreparingRebalance: it is simply a joined member now

    def _join_response(self, group, member, with_members, skip_assignment=False):
        return m.JoinGroupResponse(
            generation_id=group.generation_id, protocol_type=group.protocol_type,
            protocol_name=group.protocol_name, leader=group.leader_id or "",
            skip_assignment=skip_assignment, member_id=member.member_id,
            members=self._member_list(group) if with_members else [])

    def _member_list(self, group):
        return [m.JoinGroupResponseMember(member_id=x.member_id, group_instance_id=x.group_instance_id,
                                          metadata=x.metadata(group.protocol_name))
                for x in group.members.values()]

    # ---- rebalance -------------------------------------------------------------------
    def _maybe_prepare_rebalance(self, group, now, reason):
        if group.can_rebalance:
            self._prepare_rebalance(group, now, reason)

    def _prepare_rebalance(self, group, now, reason):
        if group.is_(_S.COMPLETING_REBALANCE):
            self._reset_and_propagate_error(group, now, RebalanceInProgress(
                f"group {group.group_id} is rebalancing again ({reason}); rejoin"))
        group.pending_sync.clear()
        group.sync_timer = None
        from_empty = group.is_(_S.EMPTY)
        group.transition(_S.PREPARING_REBALANCE, now)
        if from_empty:
            delay = self.config.initial_rebalance_delay_ms
            self._arm_join(group, now, delay, True, max(group.rebalance_timeout_ms() - delay, 0))
        else:
            self._arm_join(group, now, group.rebalance_timeout_ms(), False)
        self._note(group.group_id, f"preparing to rebalance (generation {group.generation_id}): {reason}")
        self._try_complete_join(group, now)

    def _try_complete_join(self, group, now):
        if (group.is_(_S.PREPARING_REBALANCE) and group.join_timer is not None and not group.join_initial
                and group.has_all_members_joined()):
            self._complete_join(group, now)

    def _complete_join(self, group, now):
        group.join_timer = None
        for member in group.not_yet_rejoined():
            if not member.is_static:
                group.remove(member.member_id)
                member.timer = None
                self._note(group.group_id, f"member {member.member_id} removed: it did not rejoin within "
                                           "the rebalance timeout")
        if group.is_(_S.DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # only absent static members are left: wait for them (or their sessions to end)
            self._note(group.group_id, "no member rejoined; waiting another rebalance timeout")
            self._arm_join(group, now, max(group.rebalance_timeout_ms(), 1), False)
            return
        group.init_next_generation(now)
        if group.is_(_S.EMPTY):
            self._note(group.group_id, f"generation {group.generation_id}: the group is empty")
            self._persist_group(group, now)
            return
        self._note(group.group_id, f"generation {group.generation_id}: {group.size} members, protocol "
                                   f"{group.protocol_name}, leader {group.leader_id}")
        for member in group.members.values():
            if member.join_waiter is not None:
                self._answer(member.join_waiter,
                             self._join_response(group, member, group.is_leader(member.member_id)))
                member.join_waiter = None
            self._arm_session(group, member, now)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        group.sync_timer = self._arm(now + group.rebalance_timeout_ms(), "sync", group, group)

    def _reset_and_propagate_error(self, group, now, error):
        for member in group.members.values():
            member.assignment = b""
            if member.sync_waiter is not None:
                self._answer(member.sync_waiter, error)
                member.sync_waiter = None
                self._arm_session(group, member, now)

    def _propagate_assignment(self, group, now):
        for member in group.members.values():
            if member.sync_waiter is not None:
                self._answer(member.sync_waiter, m.SyncGroupResponse(
                    protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                    assignment=member.assignment))
                member.sync_waiter = None
                self._arm_session(group, member, now)

    def _remove_member_and_update(self, group, member, now, reason):
        gone = UnknownMemberId(f"member {member.member_id} was removed from group {group.group_id} "
                               f"({reason}); rejoin with an empty member id")
        self._answer(member.join_waiter, gone)
        self._answer(member.sync_waiter, gone)
        member.join_waiter = member.sync_waiter = None
        group.remove(member.member_id)
        member.timer = None
        if group.state in (_S.STABLE, _S.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, now, reason)
        elif group.is_(_S.PREPARING_REBALANCE):
            self._try_complete_join(group, now)

    def _remove_pending(self, group, member_id, now):
        group.pending_members.pop(member_id, None)
        if group.is_(_S.PREPARING_REBALANCE):
            self._try_complete_join(group, now)
        self._maybe_forget(group)

    def _maybe_forget(self, group):
        """A group that never got past generation 0 and holds nothing disappears (as
        Kafka's periodic cleanup would remove it): no record was ever written for it."""
        if (group.is_(_S.EMPTY) and group.generation_id == 0 and not group.members
                and not group.pending_members and not group.offsets and not group.commits_in_flight
                and self.groups.get(group.group_id) is group):
            del self.groups[group.group_id]

    # == SyncGroup ====================================================================
    def _sync_group(self, peer, handle, req, now):
        if not req.group_id:
            return self._reply(peer.conn, handle, InvalidGroupId("SyncGroup needs a non-empty group id"))
        group = self.groups.get(req.group_id)
        if group is None:
            return self._reply(peer.conn, handle, UnknownMemberId(
                f"group {req.group_id} does not exist; rejoin with an empty member id"))
        error = self._validate_sync(group, req)
        if error is not None:
            return self._reply(peer.conn, handle, error)
        member = group.members[req.member_id]
        member.conns.add(peer.conn)
        self._bind(group, peer.conn)
        if group.is_(_S.EMPTY):
            self._reply(peer.conn, handle, UnknownMemberId(f"group {group.group_id} is empty"))
        elif group.is_(_S.PREPARING_REBALANCE):
            self._reply(peer.conn, handle, RebalanceInProgress(
                f"group {group.group_id} is rebalancing; rejoin"))
        elif group.is_(_S.COMPLETING_REBALANCE):
            self._supersede(member.sync_waiter, "SyncGroup")
            member.sync_waiter = Waiter(peer.conn, handle)
            self._synced(group, member.member_id)
            if group.is_leader(member.member_id):
                given = {a.member_id: bytes(a.assignment) for a in req.assignments}
                assignment = {mid: given.get(mid, b"") for mid in group.members}
                missing = [mid for mid in group.members if mid not in given]
                if missing:
                    self._note(group.group_id, f"the leader's assignment has nothing for {', '.join(missing)}")
                self._persist_group(group, now, assignment,
                                    ("sync", group, group.generation_id, assignment))
        else:  # Stable: hand out the current assignment
            self._synced(group, member.member_id)
            self._reply(peer.conn, handle, m.SyncGroupResponse(
                protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                assignment=member.assignment))
            self._arm_session(group, member, now)

    def _validate_sync(self, group, req):
        if group.is_(_S.DEAD):
            return CoordinatorNotAvailable(f"group {group.group_id} is being deleted; retry")
        error = self._validate_member(group, req.member_id, req.group_instance_id, "SyncGroup")
        if error is not None:
            return error
        if req.generation_id != group.generation_id:
            return IllegalGeneration(f"SyncGroup for generation {req.generation_id}, but group "
                                     f"{group.group_id} is at generation {group.generation_id}; rejoin")
        if req.protocol_type is not None and req.protocol_type != group.protocol_type:
            return InconsistentGroupProtocol(f"group {group.group_id} has protocol type "
                                             f"{group.protocol_type!r}, not {req.protocol_type!r}")
        if req.protocol_name is not None and req.protocol_name != group.protocol_name:
            return InconsistentGroupProtocol(f"group {group.group_id} uses assignor "
                                             f"{group.protocol_name!r}, not {req.protocol_name!r}")
        return None

    def _synced(self, group, member_id):
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_timer = None

    # == Heartbeat ====================================================================
    def _heartbeat(self, peer, handle, req, now):
        if not req.group_id:
            return self._reply(peer.conn, handle, InvalidGroupId("Heartbeat needs a non-empty group id"))
        group = self.groups.get(req.group_id)
        if group is None:
            return self._reply(peer.conn, handle, UnknownMemberId(
                f"group {req.group_id} does not exist; rejoin with an empty member id"))
        if group.is_(_S.DEAD):
            return self._reply(peer.conn, handle, CoordinatorNotAvailable(
                f"group {group.group_id} is being deleted; retry"))
        error = self._validate_member(group, req.member_id, req.group_instance_id, "Heartbeat")
        if error is None and req.generation_id != group.generation_id:
            error = IllegalGeneration(f"heartbeat for generation {req.generation_id}, but group "
                                      f"{group.group_id} is at generation {group.generation_id}; rejoin")
        if error is None and group.is_(_S.EMPTY):
            error = UnknownMemberId(f"group {group.group_id} is empty")
        if error is not None:
            return self._reply(peer.conn, handle, error)
        member = group.members[req.member_id]
        member.conns.add(peer.conn)
        self._bind(group, peer.conn)
        self._arm_session(group, member, now)
        if group.is_(_S.PREPARING_REBALANCE):
            self._reply(peer.conn, handle, RebalanceInProgress(
                f"group {group.group_id} is rebalancing; rejoin"))
        else:  # Stable, or CompletingRebalance (the member got its JoinGroup answer)
            self._reply(peer.conn, handle, m.HeartbeatResponse())

    # == LeaveGroup ===================================================================
    def _leave_group(self, peer, handle, req, now):
        if not req.group_id:
            return self._reply(peer.conn, handle, InvalidGroupId("LeaveGroup needs a non-empty group id"))
        group = self.groups.get(req.group_id)
        if group is not None and group.is_(_S.DEAD):
            return self._reply(peer.conn, handle, CoordinatorNotAvailable(
                f"group {group.group_id} is being deleted; retry"))
        results = []
        for who in req.members:
            error = None
            if group is None:
                error = UnknownMemberId(f"group {req.group_id} does not exist")
            elif not who.member_id:
                # an administrative removal by group.instance.id
                current = group.static_member_id(who.group_instance_id)
                if current is None:
                    error = UnknownMemberId(f"group.instance.id {who.group_instance_id} is not a member of "
                                            f"group {group.group_id}")
                else:
                    self._leave(group, group.members[current], who.reason, now)
            elif who.member_id in group.pending_members:
                self._remove_pending(group, who.member_id, now)
            else:
                error = self._validate_member(group, who.member_id, who.group_instance_id, "LeaveGroup")
                if error is None:
                    self._leave(group, group.members[who.member_id], who.reason, now)
            results.append(m.MemberResponse(
                member_id=who.member_id, group_instance_id=who.group_instance_id,
                error_code=error.code if error else 0, error_message=error.message if error else None))
        self._reply(peer.conn, handle, m.LeaveGroupResponse(members=results))

    def _leave(self, group, member, reason, now):
        why = f"member {member.member_id} left" + (f" ({reason})" if reason else "")
        self._note(group.group_id, why)
        self._remove_member_and_update(group, member, now, why)

    # == connections ==================================================================
    def _connection_closed(self, conn, now):
        for group_id in sorted(self._conn_groups.pop(conn, ())):
            group = self.groups.get(group_id)
            if group is None:
                continue
            for pending in list(group.pending_members.values()):
                if pending.conn == conn:
                    self._remove_pending(group, pending.member_id, now)
            for member in list(group.members.values()):
                if conn not in member.conns or group.members.get(member.member_id) is not member:
                    continue
                member.conns.discard(conn)
                if member.conns:
                    continue  # still reachable on another connection
                if member.is_static:
                    for attr in ("join_waiter", "sync_waiter"):
                        waiter = getattr(member, attr)
                        if waiter is not None and waiter.conn == conn:
                            setattr(member, attr, None)
                    self._arm_session(group, member, now)   # its session runs from now
                    self._note(group.group_id, f"static member {member.group_instance_id} ({member.member_id}) "
                                               "disconnected; it keeps its place until its session times out")
                else:
                    self._note(group.group_id, f"member {member.member_id} disconnected: removed")
                    self._remove_member_and_update(group, member, now,
                                                   f"member {member.member_id}'s connection closed")

    # == offsets ======================================================================
    def _offset_commit(self, peer, handle, req, now):
        group = self.groups.get(req.group_id)
        if group is None:
            if req.generation_id >= 0:
                return self._reply(peer.conn, handle, IllegalGeneration(
                    f"group {req.group_id} does not exist, so generation {req.generation_id} is not "
                    "current; rejoin"))
            group = self.groups[req.group_id] = Group(req.group_id, now)
        error = self._validate_commit(group, req)
        if error is None and group.is_(_S.COMPLETING_REBALANCE):
            error = RebalanceInProgress(f"group {group.group_id} is completing a rebalance; commit after "
                                        "SyncGroup")
        if error is not None:
            self._maybe_forget(group)
            return self._reply(peer.conn, handle, error)
        if group.state in (_S.STABLE, _S.PREPARING_REBALANCE):
            self._arm_session(group, group.members[req.member_id], now)
        records, offsets, topics = [], {}, []
        limit = self.config.offset_metadata_max_bytes
        for topic in req.topics:
            parts = []
            for p in topic.partitions:
                code, message = 0, None
                metadata = p.committed_metadata or ""
                if len(metadata.encode("utf-8")) > limit:
                    e = OffsetMetadataTooLarge(f"metadata of {len(metadata.encode())} bytes is over "
                                               f"offset.metadata.max.bytes ({limit})")
                    code, message = e.code, e.message
                elif self._partition_exists is not None and not self._partition_exists(topic.name,
                                                                                       p.partition_index):
                    e = UnknownTopicOrPartition(f"{topic.name}-{p.partition_index} does not exist")
                    code, message = e.code, e.message
                else:
                    value = CommittedOffset(p.committed_offset, p.committed_leader_epoch, metadata, now)
                    offsets[(topic.name, p.partition_index)] = value
                    records.append((fmt.encode_offset_key(group.group_id, topic.name, p.partition_index),
                                    fmt.encode_offset_value(fmt.OffsetValue(
                                        value.offset, value.leader_epoch, value.metadata, now))))
                parts.append(m.OffsetCommitResponsePartition(partition_index=p.partition_index,
                                                             error_code=code, error_message=message))
            topics.append(m.OffsetCommitResponseTopic(name=topic.name, partitions=parts))
        response = m.OffsetCommitResponse(topics=topics)
        if not records:
            self._maybe_forget(group)
            return self._reply(peer.conn, handle, response)
        group.commits_in_flight += 1
        self._persist(records, ("commit", group, offsets, Waiter(peer.conn, handle), response))

    def _validate_commit(self, group, req):
        """Kafka's validateOffsetCommit."""
        if group.is_(_S.DEAD):
            return CoordinatorNotAvailable(f"group {group.group_id} is being deleted; retry")
        if req.generation_id < 0 and group.is_(_S.EMPTY):
            return None  # a standalone commit (admin tools, assign() without group management)
        if req.generation_id >= 0 or req.member_id or req.group_instance_id is not None:
            error = self._validate_member(group, req.member_id, req.group_instance_id, "OffsetCommit")
            if error is None and req.generation_id != group.generation_id:
                error = IllegalGeneration(f"commit for generation {req.generation_id}, but group "
                                          f"{group.group_id} is at generation {group.generation_id}; "
                                          "the partitions may have moved: rejoin")
            return error
        return UnknownMemberId(f"group {group.group_id} has members ({group.state}); only its members can "
                               "commit, or anyone once it is empty")

    def _offset_fetch(self, peer, handle, req, now):
        group = self.groups.get(req.group_id)
        offsets = group.offsets if group is not None else {}
        topics = []
        if req.topics is None:
            by_topic = defaultdict(list)
            for (topic, partition), value in sorted(offsets.items()):
                by_topic[topic].append(self._fetched(partition, value))
            topics = [m.OffsetFetchResponseTopic(name=t, partitions=ps) for t, ps in by_topic.items()]
        else:
            for t in req.topics:
                topics.append(m.OffsetFetchResponseTopic(name=t.name, partitions=[
                    self._fetched(p, offsets.get((t.name, p))) for p in t.partition_indexes]))
        self._reply(peer.conn, handle, m.OffsetFetchResponse(topics=topics))

    @staticmethod
    def _fetched(partition, value):
        if value is None:
            return m.OffsetFetchResponsePartition(partition_index=partition, committed_offset=-1,
                                                  committed_leader_epoch=-1, metadata="")
        return m.OffsetFetchResponsePartition(partition_index=partition, committed_offset=value.offset,
                                              committed_leader_epoch=value.leader_epoch,
                                              metadata=value.metadata)

    def _topic_deleted(self, topic, now):
        records = []
        for group in self.groups.values():
            for key in [k for k in group.offsets if k[0] == topic]:
                del group.offsets[key]
                records.append((fmt.encode_offset_key(group.group_id, key[0], key[1]), None))
        for group in list(self.groups.values()):
            self._maybe_forget(group)
        if records:
            self._persist(records)

    # == admin: list, describe, delete ================================================
    def _find_coordinator(self, peer, handle, req, now):
        if req.key_type != m.CoordinatorType.GROUP:
            return self._reply(peer.conn, handle, InvalidRequest(
                f"coordinator type {req.key_type} is not served (only groups, 0)"))
        self._reply(peer.conn, handle, m.FindCoordinatorResponse(node_id=0))

    def _list_groups(self, peer, handle, req, now):
        wanted = {s.lower() for s in req.states_filter}
        listed = [m.ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type or "",
                                group_state=str(g.state))
                  for g in sorted(self.groups.values(), key=lambda g: g.group_id)
                  if not g.is_(_S.DEAD) and (not wanted or str(g.state).lower() in wanted)]
        self._reply(peer.conn, handle, m.ListGroupsResponse(groups=listed))

    def _describe_groups(self, peer, handle, req, now):
        self._reply(peer.conn, handle, m.DescribeGroupsResponse(
            groups=[self.describe(group_id) for group_id in req.groups]))

    def describe(self, group_id):
        """The DescribedGroup of a group (GROUP_ID_NOT_FOUND, state Dead, if unknown).
        As in Kafka, member metadata and assignments are shown only while Stable."""
        group = self.groups.get(group_id)
        if group is None or group.is_(_S.DEAD):
            e = GroupIdNotFound(f"group {group_id} does not exist")
            return m.DescribedGroup(error_code=e.code, error_message=e.message, group_id=group_id,
                                    group_state=str(_S.DEAD))
        stable = group.is_(_S.STABLE)
        members = [m.DescribedGroupMember(
            member_id=x.member_id, group_instance_id=x.group_instance_id, client_id=x.client_id,
            client_host=x.client_host, member_metadata=x.metadata(group.protocol_name) if stable else b"",
            member_assignment=x.assignment if stable else b"") for x in group.members.values()]
        return m.DescribedGroup(group_id=group_id, group_state=str(group.state),
                                protocol_type=group.protocol_type or "",
                                protocol_data=(group.protocol_name or "") if stable else "", members=members)

    def _delete_groups(self, peer, handle, req, now):
        results, records, deleted = [], [], []
        for group_id in dict.fromkeys(req.groups_names):
            group = self.groups.get(group_id)
            error = None
            if group is None or group.is_(_S.DEAD):
                error = GroupIdNotFound(f"group {group_id} does not exist")
            elif not group.is_(_S.EMPTY):
                error = NonEmptyGroup(f"group {group_id} is {group.state} with {group.size} members; "
                                      "only an empty group can be deleted")
            else:
                group.transition(_S.DEAD, now)
                del self.groups[group_id]
                for topic, partition in sorted(group.offsets):
                    records.append((fmt.encode_offset_key(group_id, topic, partition), None))
                if group.generation_id > 0:  # generation 0 never wrote its metadata
                    records.append((fmt.encode_group_key(group_id), None))
                group.offsets.clear()
                deleted.append(group_id)
                self._note(group_id, "deleted")
            results.append(m.DeletableGroupResult(group_id=group_id, error_code=error.code if error else 0,
                                                  error_message=error.message if error else None))
        response = m.DeleteGroupsResponse(results=results)
        if records:
            self._persist(records, ("delete", Waiter(peer.conn, handle), response, deleted))
        else:
            self._reply(peer.conn, handle, response)

    # == persistence ==================================================================
    def _persist_group(self, group, now, assignment=None, continuation=None):
        protocol = group.protocol_name
        members = tuple(fmt.MemberValue(
            x.member_id, x.group_instance_id, x.client_id, x.client_host, x.rebalance_timeout_ms,
            x.session_timeout_ms, x.metadata(protocol) if protocol is not None else b"",
            assignment.get(x.member_id, b"") if assignment is not None else x.assignment)
            for x in group.members.values())
        value = fmt.GroupValue(group.protocol_type or "", group.generation_id, protocol,
                               group.leader_id, group.state_timestamp, members)
        return self._persist([(fmt.encode_group_key(group.group_id), fmt.encode_group_value(value))],
                             continuation)

    def _persisted(self, token, now, error):
        continuation = self._continuations.pop(token, None)
        if continuation is None:
            raise KeyError(f"no Persist is waiting with token {token}")
        kind = continuation[0]
        if kind == "sync":
            _, group, generation, assignment = continuation
            if (self.groups.get(group.group_id) is not group or not group.is_(_S.COMPLETING_REBALANCE)
                    or group.generation_id != generation):
                return  # the group moved on while the write was in flight
            if error is not None:
                self._reset_and_propagate_error(group, now, self._store_error(error, group.group_id))
                self._maybe_prepare_rebalance(group, now, f"storing the assignment failed: {error}")
                return
            for member in group.members.values():
                member.assignment = assignment.get(member.member_id, b"")
            self._propagate_assignment(group, now)
            group.transition(_S.STABLE, now)
            self._note(group.group_id, f"generation {group.generation_id} is stable")
        elif kind == "static-join":
            _, group, member, waiter = continuation
            if self.groups.get(group.group_id) is not group or member.join_waiter is not waiter:
                return  # answered already (a rebalance started meanwhile), or gone
            member.join_waiter = None
            if error is not None:
                self._answer(waiter, self._store_error(error, group.group_id))
                return
            leader = group.is_leader(member.member_id)
            # the leader learns it leads, but must not reassign a Stable group (KIP-814)
            self._answer(waiter, self._join_response(group, member, leader, skip_assignment=leader))
        elif kind == "commit":
            _, group, offsets, waiter, response = continuation
            group.commits_in_flight -= 1
            if error is not None:
                self._maybe_forget(group)
                return self._answer(waiter, self._store_error(error, group.group_id, commit=True))
            if self.groups.get(group.group_id) is group:  # not deleted meanwhile
                group.offsets.update(offsets)
            self._answer(waiter, response)
        elif kind == "delete":
            _, waiter, response, deleted = continuation
            if error is not None:
                e = self._store_error(error, "")
                for result in response.results:
                    if result.group_id in deleted:
                        result.error_code, result.error_message = e.code, e.message
            self._answer(waiter, response)

    @staticmethod
    def _store_error(error, group_id, commit=False):
        """Kafka's mapping of a failed __consumer_offsets append to what the client sees."""
        what = f"writing group {group_id} to __consumer_offsets failed: {error}"
        if isinstance(error, MessageTooLarge):
            return InvalidCommitOffsetSize(what) if commit else UnknownServerError(what)
        if isinstance(error, OdradekError) and error.retriable:
            return CoordinatorNotAvailable(what + "; retry")
        return UnknownServerError(what)

    def _load(self, records, now):
        self.groups.clear()
        self._timers.clear()
        self._continuations.clear()
        self._conn_groups.clear()
        offsets = defaultdict(dict)
        metadata = {}
        skipped = 0
        for key, value in records:
            try:
                k = fmt.decode_key(key)
                if isinstance(k, fmt.OffsetKey):
                    if value is None:
                        offsets[k.group].pop((k.topic, k.partition), None)
                    else:
                        v = fmt.decode_offset_value(value)
                        offsets[k.group][(k.topic, k.partition)] = CommittedOffset(
                            v.offset, v.leader_epoch, v.metadata, v.commit_timestamp)
                else:
                    metadata[k.group] = fmt.decode_group_value(value) if value is not None else None
            except fmt.FormatError as e:
                skipped += 1
                if skipped <= 10:
                    self._note("", f"__consumer_offsets: skipped a record: {e}")
        for group_id in sorted(set(offsets) | set(metadata)):
            value = metadata.get(group_id)
            if value is None and not offsets.get(group_id):
                continue  # deleted
            group = Group(group_id, now)
            group.offsets = offsets.get(group_id, {})
            if value is not None:
                self._restore(group, value, now)
            self.groups[group_id] = group
        if skipped:
            self._note("", f"__consumer_offsets: {skipped} records skipped in all")

    def _restore(self, group, value, now):
        group.generation_id = value.generation
        group.protocol_type = value.protocol_type or None
        if value.current_state_timestamp >= 0:
            group.state_timestamp = value.current_state_timestamp
        if not value.members:
            return  # Empty
        group.protocol_name = value.protocol
        for v in value.members:
            member = Member(v.member_id, v.group_instance_id, v.client_id, v.client_host, v.rebalance_timeout,
                            v.session_timeout, value.protocol_type, [(value.protocol, v.subscription)])
            member.assignment = v.assignment
            group.members[v.member_id] = member
            if v.group_instance_id is not None:
                group.static_members[v.group_instance_id] = v.member_id
            self._arm_session(group, member, now)
        group.leader_id = value.leader if value.leader in group.members else next(iter(group.members))
        group.state = _S.STABLE
