"""Group membership: Kafka's classic group state machine (JoinGroup, SyncGroup,
Heartbeat, LeaveGroup), rebalances, sessions and their deadlines, and members whose
connections close. It writes each group's GroupMetadataValue to __consumer_offsets
(the assignment of a generation, a static member's new id) and restores members from
it at load. Part of the GroupCoordinator (coordinator.py explains the semantics);
no I/O, no clock: `now` (ms) is always given.
"""
import heapq
import itertools
from dataclasses import dataclass
from functools import partial

from odradek.client.errors import (
    CoordinatorNotAvailable, FencedInstanceId, GroupMaxSizeReached, IllegalGeneration, InconsistentGroupProtocol,
    InvalidGroupId, InvalidRequest, InvalidSessionTimeout, MemberIdRequired, RebalanceInProgress, UnknownMemberId)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.context import store_error
from odradek.daemon.broker.groups.group import Group, GroupState, Member, PendingMember, Waiter

__all__ = ["Membership"]

_S = GroupState


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


class Membership:
    """The membership part of the coordinator, over the shared Context `ctx`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._timers = []                      # heap of (deadline, seq, kind, group, target)
        self._seq = itertools.count(1)

    def reset(self):
        """Forget every deadline (before a load)."""
        self._timers.clear()

    def next_deadline(self):
        """The earliest time (ms) at which tick() has something to do; None if nothing
        is scheduled."""
        while self._timers and not self._timer_live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    # ---- timers ----------------------------------------------------------------------
    def _arm(self, deadline, kind, group, target):
        seq = next(self._seq)
        heapq.heappush(self._timers, (deadline, seq, kind, group, target))
        return seq

    def _timer_live(self, entry):
        _, seq, kind, group, target = entry
        if self.ctx.groups.get(group.group_id) is not group:
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

    def arm_session(self, group, member, now, timeout_ms=None):
        """Kafka's completeAndScheduleNextHeartbeatExpiration."""
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.timer = self._arm(now + max(timeout, 1), "session", group, member)

    def _arm_join(self, group, now, delay_ms, initial, remaining_ms=0):
        group.join_timer = self._arm(now + delay_ms, "join", group, group)
        group.join_initial = initial
        group.join_delay_ms = delay_ms
        group.join_remaining_ms = remaining_ms

    def tick(self, now):
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
                self.ctx.note(group.group_id, f"member id {target.member_id} was not used to join within "
                                           "its session timeout; forgotten")
                self._remove_pending(group, target.member_id, now)

    def _on_join_deadline(self, group, now, deadline):
        if group.join_initial and group.new_member_added and group.join_remaining_ms != 0:
            # Kafka's InitialDelayedJoin: a member arrived during the delay; wait again,
            # counting from when the delay ended (tick may come late)
            group.new_member_added = False
            delay = min(self.ctx.config.initial_rebalance_delay_ms, group.join_remaining_ms)
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
        self.ctx.note(group.group_id, f"removed {', '.join(late)}: no SyncGroup within the rebalance timeout")
        self._prepare_rebalance(group, now, f"members {', '.join(late)} sent no SyncGroup in time")

    def _on_session_expired(self, group, member, now):
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            # waiting for our answer: no heartbeat expected (the session restarts when it
            # is answered); look again one session from now in case it never is
            self.arm_session(group, member, now)
            return
        what = "its JoinGroup was not completed" if member.is_new else "no heartbeat"
        self.ctx.note(group.group_id, f"member {member.member_id} removed: {what} within "
                                   f"{member.session_timeout_ms} ms (session timeout)")
        self._remove_member_and_update(group, member, now, f"member {member.member_id}'s session expired")


    # == JoinGroup ====================================================================
    def join_group(self, peer, handle, req, now):
        cfg = self.ctx.config
        group_id, member_id = req.group_id, req.member_id
        if not group_id:
            return self.ctx.reply(peer.conn, handle, InvalidGroupId("JoinGroup needs a non-empty group id"))
        if not cfg.min_session_timeout_ms <= req.session_timeout_ms <= cfg.max_session_timeout_ms:
            return self.ctx.reply(peer.conn, handle, InvalidSessionTimeout(
                f"session.timeout.ms {req.session_timeout_ms} is outside [{cfg.min_session_timeout_ms}, "
                f"{cfg.max_session_timeout_ms}] (the broker's group.min/max.session.timeout.ms)"))
        protocols = [(p.name, bytes(p.metadata)) for p in req.protocols]
        if len({name for name, _ in protocols}) != len(protocols):
            return self.ctx.reply(peer.conn, handle, InvalidRequest("JoinGroup lists an assignor twice"))
        join = _Join(peer, handle, req.group_instance_id, req.protocol_type, protocols,
                     req.rebalance_timeout_ms if req.rebalance_timeout_ms > 0 else req.session_timeout_ms,
                     req.session_timeout_ms)
        group = self.ctx.groups.get(group_id)
        if group is None:
            if member_id:
                return self.ctx.reply(peer.conn, handle, UnknownMemberId(
                    f"group {group_id} does not exist, so member {member_id} is not in it; "
                    "join with an empty member id"))
            group = self.ctx.groups[group_id] = Group(group_id, now)
        if not self._accept_joining_member(group, member_id):
            if group.has(member_id):
                self._remove_member_and_update(group, group.members[member_id], now,
                                               "the group is over group.max.size")
            self.ctx.reply(peer.conn, handle, GroupMaxSizeReached(
                f"group {group_id} already has {self.ctx.config.max_size} members (group.max.size)"))
        elif not member_id:
            self._new_member_join(group, join, now)
        else:
            self._current_member_join(group, member_id, join, now)
        if group.is_(_S.PREPARING_REBALANCE):
            self._try_complete_join(group, now)
        self.ctx.maybe_forget(group)

    def _accept_joining_member(self, group, member_id):
        limit = self.ctx.config.max_size
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
            return self.ctx.answer(join.waiter(), error)
        new_id = self.ctx.new_member_id(join.instance_id if join.instance_id is not None else join.peer.client_id)
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
        self.ctx.bind(group, join.peer.conn)
        self.ctx.answer(join.waiter(), m.JoinGroupResponse(
            error_code=MemberIdRequired.code, error_message="join again with this member id",
            member_id=new_id))

    def _current_member_join(self, group, member_id, join, now):
        error = self._protocol_check(group, join)
        if error is not None:
            return self.ctx.answer(join.waiter(), error)
        if member_id in group.pending_members:
            if join.instance_id is not None:
                return self.ctx.answer(join.waiter(), InvalidRequest(
                    f"member id {member_id} was given to a dynamic member; a static member "
                    "(group.instance.id) joins with an empty member id"))
            return self._add_member_and_rebalance(group, member_id, join, now)
        error = self.validate_member(group, member_id, join.instance_id, "JoinGroup")
        if error is not None:
            return self.ctx.answer(join.waiter(), error)
        member = group.members[member_id]
        member.conns.add(join.peer.conn)
        self.ctx.bind(group, join.peer.conn)
        if group.is_(_S.PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, join, now, f"member {member_id} rejoined")
        elif group.is_(_S.COMPLETING_REBALANCE):
            if member.matches(join.protocols):
                # it missed our answer: give the current generation again
                self.ctx.answer(join.waiter(), self._join_response(group, member, group.is_leader(member_id)))
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
                self.ctx.answer(join.waiter(), self._join_response(group, member, False))
        else:
            self.ctx.answer(join.waiter(), UnknownMemberId(
                f"group {group.group_id} is {group.state}; rejoin with an empty member id"))

    def validate_member(self, group, member_id, instance_id, operation):
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
        self.ctx.bind(group, peer.conn)
        if group.is_(_S.PREPARING_REBALANCE) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, join.waiter())
        # until its join completes a new member cannot heartbeat: bound its wait instead
        self.arm_session(group, member, now, self.ctx.config.new_member_join_timeout_ms)
        kind = f"static member {join.instance_id}" if join.instance_id is not None else "member"
        self._maybe_prepare_rebalance(group, now, f"{kind} {member_id} joined")

    def _update_member_and_rebalance(self, group, member, join, now, reason):
        self._supersede(member.join_waiter, "JoinGroup")
        group.update_member(member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms,
                            join.waiter())
        self._maybe_prepare_rebalance(group, now, reason)

    def _supersede(self, waiter, what):
        self.ctx.answer(waiter, RebalanceInProgress(f"a newer {what} from the same member replaced this one"))

    def _update_static_member_and_rebalance(self, group, old_id, new_id, join, now):
        instance_id = join.instance_id
        member = group.members[old_id]
        fenced = FencedInstanceId(f"group.instance.id {instance_id} of group {group.group_id} joined again "
                                  f"as {new_id}; this instance ({old_id}) is fenced")
        self.ctx.answer(member.join_waiter, fenced)
        self.ctx.answer(member.sync_waiter, fenced)
        member.join_waiter = member.sync_waiter = None
        group.replace_static_member(instance_id, old_id, new_id)
        member.client_id, member.client_host = join.peer.client_id, join.peer.client_host
        member.conns = {join.peer.conn}
        self.ctx.bind(group, join.peer.conn)
        waiter = join.waiter()
        group.update_member(member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms, waiter)
        self.arm_session(group, member, now)
        self.ctx.note(group.group_id, f"static member {instance_id} rejoined: member id {old_id} -> {new_id}")
        if group.is_(_S.STABLE):
            if group.protocol_name == group.select_protocol():
                # no rebalance: store the new member id, then answer with the current generation
                self._persist_group(group, now, continuation=partial(
                    self._rejoin_stored, group, member, waiter))
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
            delay = self.ctx.config.initial_rebalance_delay_ms
            self._arm_join(group, now, delay, True, max(group.rebalance_timeout_ms() - delay, 0))
        else:
            self._arm_join(group, now, group.rebalance_timeout_ms(), False)
        self.ctx.note(group.group_id, f"preparing to rebalance (generation {group.generation_id}): {reason}")
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
                self.ctx.note(group.group_id, f"member {member.member_id} removed: it did not rejoin within "
                                           "the rebalance timeout")
        if group.is_(_S.DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # only absent static members are left: wait for them (or their sessions to end)
            self.ctx.note(group.group_id, "no member rejoined; waiting another rebalance timeout")
            self._arm_join(group, now, max(group.rebalance_timeout_ms(), 1), False)
            return
        group.init_next_generation(now)
        if group.is_(_S.EMPTY):
            self.ctx.note(group.group_id, f"generation {group.generation_id}: the group is empty")
            self._persist_group(group, now)
            return
        self.ctx.note(group.group_id, f"generation {group.generation_id}: {group.size} members, protocol "
                                   f"{group.protocol_name}, leader {group.leader_id}")
        for member in group.members.values():
            if member.join_waiter is not None:
                self.ctx.answer(member.join_waiter,
                             self._join_response(group, member, group.is_leader(member.member_id)))
                member.join_waiter = None
            self.arm_session(group, member, now)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        group.sync_timer = self._arm(now + group.rebalance_timeout_ms(), "sync", group, group)

    def _reset_and_propagate_error(self, group, now, error):
        for member in group.members.values():
            member.assignment = b""
            if member.sync_waiter is not None:
                self.ctx.answer(member.sync_waiter, error)
                member.sync_waiter = None
                self.arm_session(group, member, now)

    def _propagate_assignment(self, group, now):
        for member in group.members.values():
            if member.sync_waiter is not None:
                self.ctx.answer(member.sync_waiter, m.SyncGroupResponse(
                    protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                    assignment=member.assignment))
                member.sync_waiter = None
                self.arm_session(group, member, now)

    def _remove_member_and_update(self, group, member, now, reason):
        gone = UnknownMemberId(f"member {member.member_id} was removed from group {group.group_id} "
                               f"({reason}); rejoin with an empty member id")
        self.ctx.answer(member.join_waiter, gone)
        self.ctx.answer(member.sync_waiter, gone)
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
        self.ctx.maybe_forget(group)

    # == SyncGroup ====================================================================
    def _named_group(self, peer, handle, req, what):
        """The existing group a SyncGroup or Heartbeat names; None once the error (no
        group id, or no such group) is answered."""
        if not req.group_id:
            self.ctx.reply(peer.conn, handle, InvalidGroupId(f"{what} needs a non-empty group id"))
            return None
        group = self.ctx.groups.get(req.group_id)
        if group is None:
            self.ctx.reply(peer.conn, handle, UnknownMemberId(
                f"group {req.group_id} does not exist; rejoin with an empty member id"))
        return group

    def sync_group(self, peer, handle, req, now):
        group = self._named_group(peer, handle, req, "SyncGroup")
        if group is None:
            return
        error = self._validate_sync(group, req)
        if error is not None:
            return self.ctx.reply(peer.conn, handle, error)
        member = group.members[req.member_id]
        member.conns.add(peer.conn)
        self.ctx.bind(group, peer.conn)
        if group.is_(_S.EMPTY):
            self.ctx.reply(peer.conn, handle, UnknownMemberId(f"group {group.group_id} is empty"))
        elif group.is_(_S.PREPARING_REBALANCE):
            self.ctx.reply(peer.conn, handle, RebalanceInProgress(
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
                    self.ctx.note(group.group_id, f"the leader's assignment has nothing for {', '.join(missing)}")
                self._persist_group(group, now, assignment,
                                    partial(self._assignment_stored, group, group.generation_id, assignment))
        else:  # Stable: hand out the current assignment
            self._synced(group, member.member_id)
            self.ctx.reply(peer.conn, handle, m.SyncGroupResponse(
                protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                assignment=member.assignment))
            self.arm_session(group, member, now)

    def _validate_sync(self, group, req):
        if group.is_(_S.DEAD):
            return CoordinatorNotAvailable(f"group {group.group_id} is being deleted; retry")
        error = self.validate_member(group, req.member_id, req.group_instance_id, "SyncGroup")
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
    def heartbeat(self, peer, handle, req, now):
        group = self._named_group(peer, handle, req, "Heartbeat")
        if group is None:
            return
        if group.is_(_S.DEAD):
            return self.ctx.reply(peer.conn, handle, CoordinatorNotAvailable(
                f"group {group.group_id} is being deleted; retry"))
        error = self.validate_member(group, req.member_id, req.group_instance_id, "Heartbeat")
        if error is None and req.generation_id != group.generation_id:
            error = IllegalGeneration(f"heartbeat for generation {req.generation_id}, but group "
                                      f"{group.group_id} is at generation {group.generation_id}; rejoin")
        if error is None and group.is_(_S.EMPTY):
            error = UnknownMemberId(f"group {group.group_id} is empty")
        if error is not None:
            return self.ctx.reply(peer.conn, handle, error)
        member = group.members[req.member_id]
        member.conns.add(peer.conn)
        self.ctx.bind(group, peer.conn)
        self.arm_session(group, member, now)
        if group.is_(_S.PREPARING_REBALANCE):
            self.ctx.reply(peer.conn, handle, RebalanceInProgress(
                f"group {group.group_id} is rebalancing; rejoin"))
        else:  # Stable, or CompletingRebalance (the member got its JoinGroup answer)
            self.ctx.reply(peer.conn, handle, m.HeartbeatResponse())

    # == LeaveGroup ===================================================================
    def leave_group(self, peer, handle, req, now):
        if not req.group_id:
            return self.ctx.reply(peer.conn, handle, InvalidGroupId("LeaveGroup needs a non-empty group id"))
        group = self.ctx.groups.get(req.group_id)
        if group is not None and group.is_(_S.DEAD):
            return self.ctx.reply(peer.conn, handle, CoordinatorNotAvailable(
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
                error = self.validate_member(group, who.member_id, who.group_instance_id, "LeaveGroup")
                if error is None:
                    self._leave(group, group.members[who.member_id], who.reason, now)
            results.append(m.MemberResponse(
                member_id=who.member_id, group_instance_id=who.group_instance_id,
                error_code=error.code if error else 0, error_message=error.message if error else None))
        self.ctx.reply(peer.conn, handle, m.LeaveGroupResponse(members=results))

    def _leave(self, group, member, reason, now):
        why = f"member {member.member_id} left" + (f" ({reason})" if reason else "")
        self.ctx.note(group.group_id, why)
        self._remove_member_and_update(group, member, now, why)

    # == connections ==================================================================
    def connection_closed(self, conn, now):
        for group_id in sorted(self.ctx.conn_groups.pop(conn, ())):
            group = self.ctx.groups.get(group_id)
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
                    self.arm_session(group, member, now)   # its session runs from now
                    self.ctx.note(group.group_id, f"static member {member.group_instance_id} ({member.member_id}) "
                                               "disconnected; it keeps its place until its session times out")
                else:
                    self.ctx.note(group.group_id, f"member {member.member_id} disconnected: removed")
                    self._remove_member_and_update(group, member, now,
                                                   f"member {member.member_id}'s connection closed")

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
        return self.ctx.persist([(fmt.encode_group_key(group.group_id), fmt.encode_group_value(value))],
                             continuation)

    def _assignment_stored(self, group, generation, assignment, now, error):
        """The leader's assignment is durable (or failed): hand it out; the group is Stable."""
        if (self.ctx.groups.get(group.group_id) is not group or not group.is_(_S.COMPLETING_REBALANCE)
                or group.generation_id != generation):
            return  # the group moved on while the write was in flight
        if error is not None:
            self._reset_and_propagate_error(group, now, store_error(error, group.group_id))
            self._maybe_prepare_rebalance(group, now, f"storing the assignment failed: {error}")
            return
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
        self._propagate_assignment(group, now)
        group.transition(_S.STABLE, now)
        self.ctx.note(group.group_id, f"generation {group.generation_id} is stable")

    def _rejoin_stored(self, group, member, waiter, now, error):
        """A static member's new id is durable (or failed): answer its JoinGroup."""
        if self.ctx.groups.get(group.group_id) is not group or member.join_waiter is not waiter:
            return  # answered already (a rebalance started meanwhile), or gone
        member.join_waiter = None
        if error is not None:
            self.ctx.answer(waiter, store_error(error, group.group_id))
            return
        leader = group.is_leader(member.member_id)
        # the leader learns it leads, but must not reassign a Stable group (KIP-814)
        self.ctx.answer(waiter, self._join_response(group, member, leader, skip_assignment=leader))

    def restore(self, group, value, now):
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
            self.arm_session(group, member, now)
        group.leader_id = value.leader if value.leader in group.members else next(iter(group.members))
        group.state = _S.STABLE
