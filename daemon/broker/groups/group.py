"""One consumer group's state: its members, generation, chosen protocol and committed
offsets — Kafka's GroupMetadata and MemberMetadata. Plain data with the few rules that
belong to the group itself (state transitions, the protocol vote, who leads); the
coordinator drives it. No I/O, no clock: times are given.
"""
from collections import Counter
from dataclasses import dataclass, replace
from enum import Enum

__all__ = ["GroupState", "Group", "Member", "Waiter", "PendingMember", "CommittedOffset", "take_newer",
           "at_record"]


class GroupState(Enum):
    """Kafka's classic group states; the value is the name DescribeGroups shows."""
    EMPTY = "Empty"                              # no members (offsets may exist)
    PREPARING_REBALANCE = "PreparingRebalance"   # waiting for members to (re)join
    COMPLETING_REBALANCE = "CompletingRebalance" # joined; waiting for the leader's assignment
    STABLE = "Stable"                            # assignment handed out; heartbeats flow
    DEAD = "Dead"                                # deleted; the object is being dropped

    def __str__(self):
        return self.value


_S = GroupState
# state -> the states it may be entered from (Kafka's validPreviousStates)
VALID_PREVIOUS = {
    _S.PREPARING_REBALANCE: {_S.STABLE, _S.COMPLETING_REBALANCE, _S.EMPTY},
    _S.COMPLETING_REBALANCE: {_S.PREPARING_REBALANCE},
    _S.STABLE: {_S.COMPLETING_REBALANCE},
    _S.DEAD: {_S.STABLE, _S.PREPARING_REBALANCE, _S.COMPLETING_REBALANCE, _S.EMPTY, _S.DEAD},
    _S.EMPTY: {_S.PREPARING_REBALANCE},
}


@dataclass(frozen=True)
class CommittedOffset:
    """A committed offset, and where its record is: the base offset of its batch in
    __consumer_offsets (Kafka's appendedBatchOffset; -1 while not known). Of two offsets
    for one partition, the one whose record is later in the log wins (is_newer_than)."""
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    record_offset: int = -1

    def is_newer_than(self, current):
        """Whether this offset replaces `current` (a CommittedOffset or None): Kafka's
        CommitRecordMetadataAndOffset.olderThan, seen from the newcomer. Positions not
        known (-1) count as newest."""
        return current is None or self.record_offset < 0 or current.record_offset < self.record_offset


def take_newer(committed, offsets):
    """Put each of `offsets` ({(topic, partition): CommittedOffset}) in `committed` unless
    the one there has a later record in __consumer_offsets (CommittedOffset.is_newer_than)."""
    for tp, value in offsets.items():
        if value.is_newer_than(committed.get(tp)):
            committed[tp] = value


def at_record(offsets, record_offset):
    """`offsets` with the position of their record (the batch's base offset) filled in."""
    return {tp: replace(value, record_offset=record_offset) for tp, value in offsets.items()}


class Waiter:
    """A request whose answer is deferred (a JoinGroup until the join completes, a
    SyncGroup until the leader's assignment is stored)."""
    __slots__ = ("conn", "handle")

    def __init__(self, conn, handle):
        self.conn = conn
        self.handle = handle


class PendingMember:
    """A member id handed out with MEMBER_ID_REQUIRED, not yet joined with it."""
    __slots__ = ("member_id", "conn", "timer")

    def __init__(self, member_id, conn):
        self.member_id = member_id
        self.conn = conn
        self.timer = None


class Member:
    __slots__ = ("member_id", "group_instance_id", "client_id", "client_host", "conns",
                 "rebalance_timeout_ms", "session_timeout_ms", "protocol_type", "protocols",
                 "assignment", "join_waiter", "sync_waiter", "is_new", "timer")

    def __init__(self, member_id, group_instance_id, client_id, client_host, rebalance_timeout_ms,
                 session_timeout_ms, protocol_type, protocols):
        self.member_id = member_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.conns = set()               # control connections this member has spoken on
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = list(protocols)  # [(assignor name, metadata bytes)], preferred first
        self.assignment = b""
        self.join_waiter = None
        self.sync_waiter = None
        self.is_new = False
        self.timer = None                 # heartbeat (session) timer token

    @property
    def is_static(self):
        return self.group_instance_id is not None

    @property
    def awaiting_join(self):
        return self.join_waiter is not None

    @property
    def awaiting_sync(self):
        return self.sync_waiter is not None

    def protocol_names(self):
        return [name for name, _ in self.protocols]

    def metadata(self, protocol):
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def matches(self, protocols):
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]

    def vote(self, candidates):
        for name in self.protocol_names():
            if name in candidates:
                return name
        raise AssertionError(f"member {self.member_id} supports none of {sorted(candidates)}")


class Group:
    def __init__(self, group_id, now, state=GroupState.EMPTY):
        self.group_id = group_id
        self.state = state
        self.state_timestamp = now
        self.generation_id = 0
        self.protocol_type = None
        self.protocol_name = None
        self.leader_id = None
        self.members = {}            # member id -> Member, in joining order
        self.static_members = {}     # group.instance.id -> member id
        self.pending_members = {}    # member id -> PendingMember
        self.pending_sync = set()    # member ids that have not sent SyncGroup this generation
        self.new_member_added = False
        self.offsets = {}            # (topic, partition) -> CommittedOffset
        self.commits_in_flight = 0   # OffsetCommits waiting for their Persist
        # producer id -> {(topic, partition): CommittedOffset}: offsets committed in a
        # transaction still open (TxnOffsetCommit), taken when it commits, dropped if it aborts
        self.pending_txn_offsets = {}
        # timers: tokens of the currently armed join / sync deadlines
        self.join_timer = None
        self.join_initial = False    # the join timer is the initial-delay kind
        self.join_delay_ms = 0
        self.join_remaining_ms = 0
        self.sync_timer = None

    # ---- state ---------------------------------------------------------------------
    def is_(self, state):
        return self.state is state

    def transition(self, state, now):
        if self.state not in VALID_PREVIOUS[state]:
            raise AssertionError(f"group {self.group_id}: {self.state} -> {state} is not a valid transition")
        self.state = state
        self.state_timestamp = now

    @property
    def can_rebalance(self):
        return self.state in VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    # ---- members -------------------------------------------------------------------
    def has(self, member_id):
        return member_id in self.members

    def is_leader(self, member_id):
        return self.leader_id == member_id

    def add(self, member, waiter):
        if not self.members:
            self.protocol_type = member.protocol_type
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        member.join_waiter = waiter
        self.pending_members.pop(member.member_id, None)

    def remove(self, member_id):
        member = self.members.pop(member_id, None)
        if member is not None and member.group_instance_id is not None:
            if self.static_members.get(member.group_instance_id) == member_id:
                del self.static_members[member.group_instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.pop(member_id, None)
        self.pending_sync.discard(member_id)
        return member

    def replace_static_member(self, instance_id, old_id, new_id):
        """Give the static member `instance_id` a new member id (it moves to the end of
        the joining order, as in Kafka)."""
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        if self.leader_id == old_id:
            self.leader_id = new_id
        self.static_members[instance_id] = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return member

    def static_member_id(self, instance_id):
        return self.static_members.get(instance_id) if instance_id is not None else None

    def update_member(self, member, protocols, rebalance_timeout_ms, session_timeout_ms, waiter):
        member.protocols = list(protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        member.join_waiter = waiter

    @property
    def size(self):
        return len(self.members)

    def num_awaiting_join(self):
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self):
        return self.num_awaiting_join() == len(self.members) and not self.pending_members

    def not_yet_rejoined(self):
        return [m for m in self.members.values() if not m.awaiting_join]

    def maybe_elect_new_joined_leader(self):
        """At the end of a join: keep the leader if it rejoined, else pick the first
        member that did. False if nobody rejoined."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def rebalance_timeout_ms(self):
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # ---- protocols -----------------------------------------------------------------
    def supports_protocols(self, protocol_type, names):
        """Could a member with this protocol type and these assignors join? (Kafka's
        supportsProtocols: an empty group takes any non-empty offer; otherwise the type
        must match and one assignor must be supported by every current member.)"""
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        if protocol_type != self.protocol_type or not names:
            return False
        return any(all(name in m.protocol_names() for m in self.members.values()) for name in names)

    def candidate_protocols(self):
        members = list(self.members.values())
        if not members:
            return set()
        common = set(members[0].protocol_names())
        for m in members[1:]:
            common &= set(m.protocol_names())
        return common

    def select_protocol(self):
        """Kafka's vote: every member votes for the first assignor in its own list that
        every member supports; the most votes wins (ties: the first voted, in joining
        order)."""
        candidates = self.candidate_protocols()
        if not candidates:
            raise AssertionError(f"group {self.group_id}: no protocol common to every member")
        votes = Counter(m.vote(candidates) for m in self.members.values())
        return votes.most_common(1)[0][0]

    def init_next_generation(self, now):
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.transition(GroupState.COMPLETING_REBALANCE, now)
        else:
            self.protocol_name = None
            self.transition(GroupState.EMPTY, now)
        self.pending_sync.clear()
