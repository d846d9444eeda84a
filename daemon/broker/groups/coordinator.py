"""The group coordinator: Kafka's classic consumer-group protocol as a sans-IO state machine.

Driving it (the broker loop does this; tests do it with a FakeClock):

    coord = GroupCoordinator(GroupConfig(...))
    coord.load(records_of___consumer_offsets, now)          # once, before serving
    effects = coord.handle(Peer(conn, client_id, pid, uid), correlation_id, request, now)
    effects = coord.tick(now)             # whenever now >= coord.next_deadline()
    effects = coord.connection_closed(conn, now)
    effects = coord.persisted(token, now, error, offset)  # when a Persist with a token is done

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
- TxnOffsetCommit (KIP-98, checked as an OffsetCommit) writes the offsets as the
  producer's transactional batch and holds them apart until txn_completed() says how the
  transaction ended (txn_offsets.py).

The parts, each behind the dispatch table (request type -> the part's handler):
    membership.py  JoinGroup, SyncGroup, Heartbeat, LeaveGroup; rebalances, sessions, deadlines
    offsets.py     OffsetCommit, OffsetFetch; a deleted topic's offsets; loading __consumer_offsets
    txn_offsets.py TxnOffsetCommit: offsets committed in a transaction
    admin.py       FindCoordinator, ListGroups, DescribeGroups, DeleteGroups
    offset_delete.py  OffsetDelete: some committed offsets of a group
    context.py     what they share: the groups, the settings (config.py), the effects of a call

Error answers: a failure of the whole request is an error response (Reply.result is an
OdradekError); per-item failures (a partition, a leaving member, a group in a batch) are
error codes inside the response, and MEMBER_ID_REQUIRED comes inside JoinGroupResponse
with the member id (client/protocol/messages.py explains the rule).
"""
import uuid

from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups.admin import GroupAdmin
from odradek.daemon.broker.groups.config import GroupConfig
from odradek.daemon.broker.groups.context import Context
from odradek.daemon.broker.groups.membership import Membership
from odradek.daemon.broker.groups.offset_delete import OffsetDelete
from odradek.daemon.broker.groups.offsets import Offsets
from odradek.daemon.broker.groups.txn_offsets import TxnOffsets

__all__ = ["GroupCoordinator", "GroupConfig"]


def _default_member_id(prefix):
    return f"{prefix}-{uuid.uuid4()}"


class GroupCoordinator:
    """Every consumer group of the broker. Not thread-safe: one loop drives it."""

    def __init__(self, config=None, *, new_member_id=None, partition_exists=None):
        """`new_member_id(prefix)` makes member ids (default prefix-uuid4; tests pass a
        counter). `partition_exists(topic, partition)`, if given, makes OffsetCommit
        refuse unknown partitions with UNKNOWN_TOPIC_OR_PARTITION."""
        self._ctx = Context(config or GroupConfig(), new_member_id or _default_member_id, partition_exists)
        self.membership = Membership(self._ctx)
        self.offsets = Offsets(self._ctx, self.membership)
        self.admin = GroupAdmin(self._ctx)
        self.txn_offsets = TxnOffsets(self._ctx, self.offsets)
        self._dispatch = {
            m.JoinGroupRequest: self.membership.join_group,
            m.SyncGroupRequest: self.membership.sync_group,
            m.HeartbeatRequest: self.membership.heartbeat,
            m.LeaveGroupRequest: self.membership.leave_group,
            m.OffsetCommitRequest: self.offsets.offset_commit,
            m.OffsetFetchRequest: self.offsets.offset_fetch,
            m.TxnOffsetCommitRequest: self.txn_offsets.txn_offset_commit,
            m.FindCoordinatorRequest: self.admin.find_coordinator,
            m.ListGroupsRequest: self.admin.list_groups,
            m.DescribeGroupsRequest: self.admin.describe_groups,
            m.DeleteGroupsRequest: self.admin.delete_groups,
            m.OffsetDeleteRequest: OffsetDelete(self._ctx).offset_delete,
        }

    @property
    def config(self):
        return self._ctx.config

    @property
    def groups(self):
        """group id -> Group: every group the coordinator holds."""
        return self._ctx.groups

    # == the loop's interface =========================================================
    def handle(self, peer, handle, request, now):
        """Any group request: dispatches on its type. Returns effects."""
        handler = self._dispatch.get(type(request))
        if handler is None:
            raise TypeError(f"the group coordinator does not handle {type(request).__name__}")
        return self._ctx.run(handler, peer, handle, request, now)

    def tick(self, now):
        """Fire every deadline that is due (sessions, rebalance and initial delays,
        SyncGroup waits, MEMBER_ID_REQUIRED ids). Returns effects."""
        return self._ctx.run(self.membership.tick, now)

    def next_deadline(self):
        """The earliest time (ms) at which tick() has something to do; None if nothing
        is scheduled."""
        return self.membership.next_deadline()

    def connection_closed(self, conn, now):
        """A control connection closed: its dynamic members leave at once (the group
        rebalances); static members keep their place until their session times out."""
        return self._ctx.run(self.membership.connection_closed, conn, now)

    def persisted(self, token, now, error=None, offset=-1):
        """The Persist carrying `token` is durable (error None; `offset`: its batch's base
        offset in __consumer_offsets) or failed (an OdradekError). Returns the effects
        that waited for it."""
        return self._ctx.run(self._ctx.persisted, token, now, error, offset)

    def txn_completed(self, producer_id, commit, now):
        """The transaction coordinator wrote `producer_id`'s marker to __consumer_offsets:
        the offsets it committed in that transaction take effect (commit) or are dropped."""
        return self._ctx.run(self.txn_offsets.txn_completed, producer_id, commit, now)

    def load(self, records, now):
        """Rebuild every group from the records of __consumer_offsets, oldest first:
        (key bytes, value bytes or None). Replaces all state; call before serving.
        Members of a group written Stable come back Stable, with their assignment; each
        must heartbeat within its session timeout (from `now`) or leave. Records that
        do not decode are skipped with a Note."""
        return self._ctx.run(self.offsets.load, records, now)

    def topic_deleted(self, topic, now):
        """Drop every committed offset of a deleted topic (and write their tombstones)."""
        return self._ctx.run(self.offsets.topic_deleted, topic, now)

    # ---- read-only views (status, lag, CLI) -----------------------------------------
    def committed_offsets(self, group_id):
        """{(topic, partition): CommittedOffset} of a group ({} if unknown)."""
        group = self.groups.get(group_id)
        return dict(group.offsets) if group is not None else {}

    def group_state(self, group_id):
        group = self.groups.get(group_id)
        return group.state if group is not None else None

    def describe(self, group_id):
        """The DescribedGroup of a group (see GroupAdmin.describe)."""
        return self.admin.describe(group_id)
