"""The group coordinator's membership protocol, driven with a fake clock: every state and
transition of Kafka's classic groups (Empty, PreparingRebalance, CompletingRebalance,
Stable, Dead), joins, syncs, heartbeats, leaves, timeouts, static members, connections."""
import dataclasses

import pytest

from odradek.client.errors import (
    CoordinatorNotAvailable, FencedInstanceId, GroupMaxSizeReached, IllegalGeneration,
    InconsistentGroupProtocol, InvalidConfig, InvalidGroupId, InvalidRequest, InvalidSessionTimeout, MemberIdRequired,
    NotEnoughReplicas, RebalanceInProgress, UnknownMemberId)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import GroupConfig, GroupState
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.config import GROUP_CONFIGS


def group_records(h, group="g"):
    """The GroupMetadataValues written for a group, oldest first."""
    key = fmt.encode_group_key(group)
    return [fmt.decode_group_value(v) if v is not None else None for k, v in h.log if k == key]


# ---- member ids and the first join -------------------------------------------------------

def test_a_new_member_gets_member_id_required_then_joins_with_that_id(h):
    first = h.join("c0").ok()
    assert first.error_code == MemberIdRequired.code and first.member_id == "app-1"
    assert first.generation_id == -1 and first.members == []
    assert h.state() == "Empty" and "app-1" in h.group().pending_members
    second = h.join("c0", member_id="app-1", protocols=[("range", b"meta")])
    assert not second.done                      # answered when the join completes
    assert h.state() == "PreparingRebalance"
    h.tick()                                    # initial delay 0: completes on the next tick
    resp = second.ok()
    assert (resp.error_code, resp.generation_id, resp.member_id, resp.leader) == (0, 1, "app-1", "app-1")
    assert (resp.protocol_type, resp.protocol_name) == ("consumer", "range")
    assert [(x.member_id, x.metadata) for x in resp.members] == [("app-1", b"meta")]
    assert h.state() == "CompletingRebalance"


def test_member_ids_carry_the_client_id_and_are_unique(h):
    a = h.join("c0", client_id="billing").ok().member_id
    b = h.join("c1", client_id="billing").ok().member_id
    assert a.startswith("billing-") and b.startswith("billing-") and a != b


def test_an_unused_member_id_is_forgotten_after_the_session_timeout(h):
    mid = h.join("c0", session=5000).ok().member_id
    h.tick(4999)
    assert mid in h.group().pending_members
    h.tick(1)
    assert h.coord.groups == {}                 # nothing left: the group never formed
    assert h.join("c0", member_id=mid).error() is UnknownMemberId


def test_joining_an_unknown_group_with_a_member_id_is_unknown_member(h):
    assert h.join("c0", member_id="made-up").error() is UnknownMemberId


def test_a_made_up_member_id_in_a_live_group_is_unknown_member(h):
    h.stable_group(1)
    assert h.join("c9", member_id="made-up").error() is UnknownMemberId


@pytest.mark.parametrize("session", [0, 10**9])
def test_a_session_timeout_outside_the_broker_bounds_is_refused(make_harness, session):
    h = make_harness(GroupConfig(initial_rebalance_delay_ms=0, min_session_timeout_ms=6000,
                                 max_session_timeout_ms=300_000))
    assert h.join("c0", session=session).error() is InvalidSessionTimeout


def test_an_empty_group_id_is_refused(h):
    assert h.join("c0", group="").error() is InvalidGroupId
    assert h.heartbeat("c0", "", 1, "x").error() is InvalidGroupId
    assert h.sync("c0", "", 1, "x").error() is InvalidGroupId
    assert h.leave("c0", "", ("x", None)).error() is InvalidGroupId


def test_a_join_listing_an_assignor_twice_is_invalid(h):
    assert h.join("c0", protocols=[("range", b""), ("range", b"")]).error() is InvalidRequest


def test_group_max_size_refuses_one_member_too_many(make_harness):
    h = make_harness(GroupConfig(initial_rebalance_delay_ms=0, min_session_timeout_ms=1, max_size=2))
    h.stable_group(2)
    assert h.join("c9").error() is GroupMaxSizeReached
    assert h.state() == "Stable"


# ---- the initial rebalance delay --------------------------------------------------------

def test_members_starting_together_form_one_generation_after_the_initial_delay(make_harness):
    h = make_harness(GroupConfig(initial_rebalance_delay_ms=3000, min_session_timeout_ms=1))
    a, _ = h.join_new("c0", rebalance=10_000)
    assert h.coord.next_deadline() == h.now + 3000
    h.tick(2000)
    b, _ = h.join_new("c1", rebalance=10_000)    # a new member extends the wait by the delay
    h.tick(1000)
    assert not a.done and not b.done
    assert h.coord.next_deadline() == h.now + 3000
    h.tick(2999)
    assert not a.done
    h.tick(1)
    assert a.ok().generation_id == b.ok().generation_id == 1
    assert len(a.ok().members) == 2 and b.ok().members == []


def test_the_initial_delay_never_exceeds_the_rebalance_timeout(make_harness):
    h = make_harness(GroupConfig(initial_rebalance_delay_ms=3000, min_session_timeout_ms=1))
    first, _ = h.join_new("c0", rebalance=5000)      # waits until 3000 at most ...
    h.tick(2900)
    h.join_new("c1", rebalance=5000)                 # ... then to 5000 (the rebalance timeout) ...
    h.tick(1100)
    h.join_new("c2", rebalance=5000)                 # ... and no further
    h.tick(999)
    assert not first.done
    h.tick(1)
    assert first.ok().generation_id == 1 and len(first.ok().members) == 3


# ---- the protocol vote -------------------------------------------------------------------

def test_the_group_picks_the_assignor_most_members_prefer_among_those_all_support(h):
    a, _ = h.join_new("c0", protocols=[("range", b"A1"), ("roundrobin", b"A2")])
    b, _ = h.join_new("c1", protocols=[("roundrobin", b"B2"), ("range", b"B1")])
    c, _ = h.join_new("c2", protocols=[("roundrobin", b"C2"), ("range", b"C1"), ("sticky", b"")])
    h.tick()
    leader = a.ok()
    assert leader.protocol_name == "roundrobin" and b.ok().protocol_name == "roundrobin"
    # the leader sees each member's metadata for the chosen protocol
    assert [x.metadata for x in leader.members] == [b"A2", b"B2", b"C2"]


def test_an_assignor_no_member_shares_is_an_inconsistent_group_protocol(h):
    h.stable_group(1, protocols=[("range", b"")])
    assert h.join("c9", protocols=[("sticky", b"")]).error() is InconsistentGroupProtocol
    assert h.join("c9", protocol_type="connect").error() is InconsistentGroupProtocol
    assert h.join("c9", protocols=[]).error() is InconsistentGroupProtocol
    assert h.state() == "Stable"


def test_a_member_offering_one_shared_assignor_among_others_is_welcome(h):
    h.stable_group(1, protocols=[("range", b"")])
    call = h.join("c9", protocols=[("sticky", b""), ("range", b"x")])
    assert call.ok().error_code == MemberIdRequired.code


# ---- join, sync, stable -------------------------------------------------------------------

def test_followers_wait_for_the_leaders_sync_and_the_assignment_is_stored_first(make_harness):
    h = make_harness(auto_persist=False)
    (a, ma), (b, mb) = [h.join_new(f"c{i}") for i in range(2)]
    calls = {ma: a, mb: b}
    h.tick()
    gen = calls[ma].ok().generation_id
    follower = h.sync("c1", "g", gen, mb)
    assert not follower.done and h.state() == "CompletingRebalance"
    leader = h.sync("c0", "g", gen, ma, {ma: b"for-a", mb: b"for-b"})
    assert not leader.done and not follower.done    # not until the assignment is durable
    (value,) = group_records(h)
    assert value.generation == gen and value.protocol == "range" and value.leader == ma
    assert {x.member_id: x.assignment for x in value.members} == {ma: b"for-a", mb: b"for-b"}
    h.flush()
    assert leader.ok().assignment == b"for-a" and follower.ok().assignment == b"for-b"
    assert follower.ok().protocol_name == "range"
    assert h.state() == "Stable"


def test_a_late_sync_in_a_stable_group_gets_the_assignment_at_once(h):
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    gen = c0.ok().generation_id
    h.sync("c0", "g", gen, ma, {ma: b"x", mb: b"y"}).ok()
    assert h.state() == "Stable"
    assert h.sync("c1", "g", gen, mb).ok().assignment == b"y"


def test_members_the_leader_left_out_get_an_empty_assignment(h):
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    gen = c0.ok().generation_id
    f = h.sync("c1", "g", gen, mb)
    h.sync("c0", "g", gen, ma, {ma: b"all"}).ok()
    assert f.ok().assignment == b""


def test_a_member_that_never_syncs_is_removed_after_the_rebalance_timeout(h):
    # (a session longer than the rebalance timeout, or the session would end it first)
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}", rebalance=20_000, session=60_000) for i in range(2)]
    h.tick()
    gen = c0.ok().generation_id
    h.sync("c0", "g", gen, ma, {ma: b"a", mb: b"b"}).ok()
    assert h.state() == "Stable"
    h.tick(19_999)
    assert h.group().has(mb)
    h.tick(1)
    assert not h.group().has(mb) and h.state() == "PreparingRebalance"
    assert h.heartbeat("c0", "g", gen, ma).error() is RebalanceInProgress
    rejoin = h.join("c0", member_id=ma)
    assert rejoin.ok().generation_id == gen + 1 and len(rejoin.ok().members) == 1


def test_a_lost_join_answer_is_given_again_in_completing_rebalance(h):
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    again = h.join("c1", member_id=mb)
    assert again.ok().generation_id == c1.ok().generation_id and again.ok().leader == ma
    again = h.join("c0", member_id=ma)
    assert len(again.ok().members) == 2 and h.state() == "CompletingRebalance"


def test_a_stable_follower_rejoining_unchanged_gets_the_generation_without_a_rebalance(h):
    members, gen = h.stable_group(2)
    resp = h.join(members[1][0], member_id=members[1][1]).ok()
    assert resp.generation_id == gen and resp.members == [] and h.state() == "Stable"


def test_a_leader_rejoining_a_stable_group_forces_a_rebalance(h):
    members, gen = h.stable_group(2)
    leader = h.join("c0", member_id=members[0][1])
    assert h.state() == "PreparingRebalance" and not leader.done
    follower = h.join("c1", member_id=members[1][1])
    assert leader.ok().generation_id == follower.ok().generation_id == gen + 1


def test_a_member_changing_its_metadata_forces_a_rebalance(h):
    members, gen = h.stable_group(2)
    h.join("c1", member_id=members[1][1], protocols=[("range", b"new topics")])
    assert h.state() == "PreparingRebalance"


def test_generations_increase_by_one_per_rebalance(h):
    members, gen = h.stable_group(2)
    for expected in (gen + 1, gen + 2, gen + 3):
        calls = [h.join(conn, member_id=mid) for conn, mid in members]
        assert {c.ok().generation_id for c in calls} == {expected}
        h.sync_all("g", expected, members, calls[0].ok().leader)


# ---- joining while a rebalance is under way ----------------------------------------------

def test_a_member_joining_during_preparing_rebalance_is_part_of_the_same_generation(h):
    members, gen = h.stable_group(2)
    h.join("c0", member_id=members[0][1])               # leader rejoins: PreparingRebalance
    newcomer, nid = h.join_new("c2")
    assert h.state() == "PreparingRebalance" and not newcomer.done
    h.join("c1", member_id=members[1][1])
    assert newcomer.ok().generation_id == gen + 1
    assert h.group().size == 3


def test_a_member_joining_during_completing_rebalance_restarts_it(h):
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    gen = c0.ok().generation_id
    waiting = h.sync("c1", "g", gen, mb)
    h.join_new("c2")
    assert h.state() == "PreparingRebalance"
    assert waiting.error() is RebalanceInProgress     # its sync is answered: rejoin
    assert h.sync("c0", "g", gen, ma, {}).error() is RebalanceInProgress


def test_a_member_joining_a_stable_group_makes_everyone_rejoin(h):
    members, gen = h.stable_group(2)
    newcomer, nid = h.join_new("c2")
    assert h.state() == "PreparingRebalance"
    for conn, mid in members:
        assert h.heartbeat(conn, "g", gen, mid).error() is RebalanceInProgress
    calls = [h.join(conn, member_id=mid) for conn, mid in members]
    assert {c.ok().generation_id for c in calls + [newcomer]} == {gen + 1}   # all in: no waiting


def test_dynamic_members_that_do_not_rejoin_in_time_are_removed(h):
    members, gen = h.stable_group(3, rebalance=15_000, session=60_000)
    a = h.join("c0", member_id=members[0][1], rebalance=15_000, session=60_000)
    h.join("c1", member_id=members[1][1], rebalance=15_000, session=60_000)
    h.tick(14_999)
    assert not a.done
    h.tick(1)
    assert a.ok().generation_id == gen + 1 and len(a.ok().members) == 2
    assert not h.group().has(members[2][1])
    assert h.heartbeat("c2", "g", gen, members[2][1]).error() is UnknownMemberId


# ---- the leader leaving mid-rebalance ----------------------------------------------------

def test_leader_leaving_during_preparing_rebalance_hands_leadership_to_a_joined_member(h):
    members, gen = h.stable_group(3)
    (c0, leader), (c1, second), (c2, third) = members
    b = h.join(c1, member_id=second, protocols=[("range", b"v2")])  # rebalance; c0 never rejoins
    h.leave(c0, "g", (leader, None)).ok()
    assert not b.done
    c = h.join(c2, member_id=third)
    assert b.ok().leader == second == c.ok().leader and len(b.ok().members) == 2
    assert b.ok().generation_id == gen + 1


def test_leader_not_rejoining_in_time_is_replaced_by_a_member_that_did(h):
    members, gen = h.stable_group(2, rebalance=5000)
    follower = h.join("c1", member_id=members[1][1], protocols=[("range", b"v2")], rebalance=5000)
    h.send("c1", m.HeartbeatRequest(group_id="g", generation_id=gen, member_id=members[1][1]))
    h.tick(5000)
    assert follower.ok().leader == members[1][1] and follower.ok().generation_id == gen + 1


def test_leader_leaving_during_completing_rebalance_sends_everyone_back_to_join(h):
    (c0, ma), (c1, mb), (c2, mc) = [h.join_new(f"c{i}") for i in range(3)]
    h.tick()
    gen = c0.ok().generation_id
    waiting = [h.sync("c1", "g", gen, mb), h.sync("c2", "g", gen, mc)]
    h.leave("c0", "g", (ma, None)).ok()
    assert [w.error() for w in waiting] == [RebalanceInProgress, RebalanceInProgress]
    calls = [h.join("c1", member_id=mb), h.join("c2", member_id=mc)]
    assert {c.ok().leader for c in calls} == {mb} and calls[0].ok().generation_id == gen + 1


def test_leader_disconnecting_after_the_join_answer_restarts_the_rebalance(h):
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    waiting = h.sync("c1", "g", c1.ok().generation_id, mb)
    h.close("c0")
    assert waiting.error() is RebalanceInProgress and not h.group().has(ma)


# ---- heartbeats ----------------------------------------------------------------------------

def test_heartbeat_answers_in_every_state(h):
    # no such group
    assert h.heartbeat("c0", "g", 0, "nobody").error() is UnknownMemberId
    # PreparingRebalance (the first join has not completed): the member is new, so its
    # generation (0) is still the group's and the answer is "rebalancing"
    join, mid = h.join_new("c0")
    assert h.heartbeat("c0", "g", 0, mid).error() is RebalanceInProgress
    h.tick()
    gen = join.ok().generation_id
    # CompletingRebalance: it has its JoinGroup answer; heartbeats are fine
    assert h.state() == "CompletingRebalance"
    assert isinstance(h.heartbeat("c0", "g", gen, mid).ok(), m.HeartbeatResponse)
    h.sync("c0", "g", gen, mid, {mid: b""}).ok()
    assert h.state() == "Stable"
    assert isinstance(h.heartbeat("c0", "g", gen, mid).ok(), m.HeartbeatResponse)
    # stale generation, unknown member
    assert h.heartbeat("c0", "g", gen - 1, mid).error() is IllegalGeneration
    assert h.heartbeat("c0", "g", gen, "nobody").error() is UnknownMemberId
    # Empty: the only member left
    h.leave("c0", "g", (mid, None)).ok()
    assert h.state() == "Empty"
    assert h.heartbeat("c0", "g", gen + 1, mid).error() is UnknownMemberId


def test_heartbeats_keep_a_member_and_silence_removes_it_after_the_session_timeout(h):
    members, gen = h.stable_group(2, session=10_000)
    (c0, a), (c1, b) = members
    for _ in range(5):
        h.tick(6000)
        h.heartbeat(c0, "g", gen, a).ok()
        h.heartbeat(c1, "g", gen, b).ok()
    h.tick(6000)
    h.heartbeat(c0, "g", gen, a).ok()
    assert h.coord.next_deadline() == h.now + 4000     # b's session ends first
    h.tick(3999)
    assert h.group().has(b)
    h.tick(1)
    assert not h.group().has(b) and h.state() == "PreparingRebalance"
    assert h.heartbeat(c0, "g", gen, a).error() is RebalanceInProgress
    assert h.join(c0, member_id=a).ok().generation_id == gen + 1


def test_a_member_waiting_for_its_join_answer_needs_no_heartbeat(h):
    members, gen = h.stable_group(2, session=10_000, rebalance=60_000)
    a = h.join("c0", member_id=members[0][1])
    h.tick(30_000)                       # 3 session timeouts: c0 waits on us, c1 is silent
    assert h.group().has(members[0][1]) and not h.group().has(members[1][1])
    assert a.ok().generation_id == gen + 1


def test_next_deadline_is_none_when_nothing_is_scheduled(h):
    assert h.coord.next_deadline() is None
    members, gen = h.stable_group(1, session=7000)
    assert h.coord.next_deadline() == h.now + 7000
    h.leave(members[0][0], "g", (members[0][1], None)).ok()
    assert h.coord.next_deadline() is None


# ---- LeaveGroup --------------------------------------------------------------------------

def test_leave_group_removes_members_and_rebalances_the_rest(h):
    members, gen = h.stable_group(3)
    resp = h.leave("c1", "g", (members[1][1], None), ("nobody", None)).ok()
    assert [(x.member_id, x.error_code) for x in resp.members] == [
        (members[1][1], 0), ("nobody", UnknownMemberId.code)]
    assert h.state() == "PreparingRebalance" and h.group().size == 2


def test_the_last_member_leaving_empties_the_group_with_a_new_generation(h):
    members, gen = h.stable_group(1)
    h.leave("c0", "g", (members[0][1], None)).ok()
    assert h.state() == "Empty" and h.group().generation_id == gen + 1
    assert group_records(h)[-1] == fmt.GroupValue("consumer", gen + 1, None, None, h.now, ())


def test_leaving_an_unknown_group_answers_unknown_member_per_member(h):
    resp = h.leave("c0", "nope", ("a", None), ("", "i1")).ok()
    assert [x.error_code for x in resp.members] == [UnknownMemberId.code] * 2


def test_a_pending_member_can_leave(h):
    mid = h.join("c0").ok().member_id
    assert h.leave("c0", "g", (mid, None)).ok().members[0].error_code == 0
    assert "g" not in h.coord.groups


# ---- connections -------------------------------------------------------------------------

def test_a_dynamic_member_whose_connection_drops_is_removed_at_once(h):
    members, gen = h.stable_group(3)
    h.close("c2")
    assert not h.group().has(members[2][1]) and h.state() == "PreparingRebalance"
    assert h.heartbeat("c0", "g", gen, members[0][1]).error() is RebalanceInProgress
    calls = [h.join(c, member_id=mid) for c, mid in members[:2]]
    assert {c.ok().generation_id for c in calls} == {gen + 1} and len(calls[0].ok().members) == 2


def test_a_member_on_two_connections_stays_until_both_close(h):
    members, gen = h.stable_group(2)
    h.heartbeat("hb-conn", "g", gen, members[0][1]).ok()     # a heartbeat thread's connection
    h.close("c0")
    assert h.group().has(members[0][1]) and h.state() == "Stable"
    h.close("hb-conn")
    assert not h.group().has(members[0][1])


def test_a_pending_member_whose_connection_drops_is_forgotten(h):
    h.stable_group(1)
    mid = h.join("c9").ok().member_id
    h.close("c9")
    assert mid not in h.group().pending_members


def test_a_closing_connection_of_no_member_changes_nothing(h):
    members, gen = h.stable_group(2)
    h.close("someone-else")
    assert h.state() == "Stable" and h.group().size == 2


def test_a_new_member_disconnecting_mid_rebalance_leaves_it(h):
    members, gen = h.stable_group(1)
    newcomer, nid = h.join_new("c9")
    assert h.state() == "PreparingRebalance"
    h.close("c9")
    assert not h.group().has(nid) and h.state() == "PreparingRebalance"
    rejoin = h.join("c0", member_id=members[0][1])
    assert rejoin.ok().generation_id == gen + 1 and len(rejoin.ok().members) == 1


# ---- static membership -------------------------------------------------------------------

def static_group(h, n=2, session=10_000):
    """n static members (instance ids i0..), Stable. Returns [(conn, member_id, instance)], gen."""
    calls = [(f"c{i}", f"i{i}", h.join(f"c{i}", instance=f"i{i}", session=session)) for i in range(n)]
    h.tick()
    members = [(conn, call.ok().member_id, iid) for conn, iid, call in calls]
    gen = calls[0][2].ok().generation_id
    h.sync_all("g", gen, [(c, mid) for c, mid, _ in members], calls[0][2].ok().leader)
    return members, gen


def test_a_static_member_joins_without_the_member_id_round_trip(h):
    call = h.join("c0", instance="i0")
    h.tick()
    assert call.ok().member_id.startswith("i0-") and call.ok().generation_id == 1


def test_a_static_member_restarting_gets_a_new_id_and_its_old_assignment_without_a_rebalance(h):
    members, gen = static_group(h)
    (c0, old_a, _), (c1, b, _) = members
    h.close(c0)                                       # the process dies ...
    assert h.state() == "Stable" and h.group().has(old_a)
    rejoin = h.join("c0-new", instance="i0")          # ... and restarts
    resp = rejoin.ok()
    assert resp.member_id != old_a and resp.generation_id == gen and h.state() == "Stable"
    # it was the leader: it learns so, with the members, but must not reassign
    assert resp.leader == resp.member_id and resp.skip_assignment and len(resp.members) == 2
    assert h.sync("c0-new", "g", gen, resp.member_id, instance="i0").ok().assignment == b"A-" + old_a.encode()
    assert h.group().static_members == {"i0": resp.member_id, "i1": b}
    # the new member id is stored before the answer
    assert {x.member_id for x in group_records(h)[-1].members} == {resp.member_id, b}
    # the other member never noticed
    assert isinstance(h.heartbeat(c1, "g", gen, b, instance="i1").ok(), m.HeartbeatResponse)


def test_a_static_follower_restarting_is_told_the_current_leader(h):
    members, gen = static_group(h)
    (c0, a, _), (c1, old_b, _) = members
    resp = h.join("c1-new", instance="i1").ok()
    assert resp.leader == a and not resp.skip_assignment and resp.members == []
    assert h.sync("c1-new", "g", gen, resp.member_id, instance="i1").ok().assignment == b"A-" + old_b.encode()


def test_the_old_instance_of_a_static_member_is_fenced(h):
    members, gen = static_group(h)
    (c0, old_a, _), _ = members
    new_a = h.join("c0-new", instance="i0").ok().member_id
    assert h.heartbeat(c0, "g", gen, old_a, instance="i0").error() is FencedInstanceId
    assert h.sync(c0, "g", gen, old_a, instance="i0").error() is FencedInstanceId
    assert h.commit(c0, "g", gen, old_a, {("t", 0): 5}, instance="i0").error() is FencedInstanceId
    assert h.join(c0, member_id=old_a, instance="i0").error() is FencedInstanceId
    resp = h.leave(c0, "g", (old_a, "i0")).ok()
    assert resp.members[0].error_code == FencedInstanceId.code
    assert h.group().has(new_a) and h.state() == "Stable"
    # without its instance id the old member id is simply unknown
    assert h.heartbeat(c0, "g", gen, old_a).error() is UnknownMemberId


def test_a_static_member_rejoining_with_other_assignors_changes_the_protocol_by_rebalance(h):
    calls = [h.join(f"c{i}", instance=f"i{i}", protocols=[("range", b""), ("roundrobin", b"")]) for i in range(2)]
    h.tick()
    gen = calls[0].ok().generation_id
    h.sync_all("g", gen, [(f"c{i}", c.ok().member_id) for i, c in enumerate(calls)], calls[0].ok().leader)
    assert h.group().protocol_name == "range"
    h.join("c0-new", instance="i0", protocols=[("roundrobin", b"")])
    assert h.state() == "PreparingRebalance"


def test_a_static_member_rejoining_during_completing_rebalance_restarts_it(h):
    calls = [h.join(f"c{i}", instance=f"i{i}") for i in range(2)]
    h.tick()
    gen = calls[0].ok().generation_id
    old = calls[1].ok().member_id
    waiting = h.sync("c1", "g", gen, old, instance="i1")
    again = h.join("c1-new", instance="i1")
    assert waiting.error() is FencedInstanceId           # the old instance's sync
    assert h.state() == "PreparingRebalance" and not again.done
    h.join("c0", member_id=calls[0].ok().member_id, instance="i0")
    assert again.ok().generation_id == gen + 1


def test_a_disconnected_static_member_keeps_its_place_until_its_session_ends(h):
    members, gen = static_group(h, session=10_000)
    (c0, a, _), (c1, b, _) = members
    h.close(c0)
    for _ in range(3):
        h.tick(3000)
        h.heartbeat(c1, "g", gen, b, instance="i1").ok()
    assert h.state() == "Stable" and h.group().has(a)
    h.tick(1000)                                       # 10 s since a's last word
    assert not h.group().has(a) and h.state() == "PreparingRebalance"


def test_a_static_member_can_be_removed_by_instance_id_alone(h):
    members, gen = static_group(h)
    resp = h.leave("admin", "g", ("", "i1")).ok()
    assert resp.members[0].error_code == 0 and not h.group().has(members[1][1])
    resp = h.leave("admin", "g", ("", "i9")).ok()
    assert resp.members[0].error_code == UnknownMemberId.code


def test_absent_static_members_stay_in_the_group_through_a_rebalance(h):
    members, gen = static_group(h, n=3, session=60_000)
    (c0, a, _), (c1, b, _), (c2, c, _) = members
    h.close(c2)
    ja = h.join(c0, member_id=a, instance="i0")          # leader rejoins: rebalance
    h.join(c1, member_id=b, instance="i1")
    h.tick(30_000)                                      # rebalance timeout: c never rejoined
    assert ja.ok().generation_id == gen + 1
    assert {x.member_id for x in ja.ok().members} == {a, b, c}   # c keeps its place


# ---- generations and ids in SyncGroup ------------------------------------------------------

def test_sync_with_a_wrong_generation_or_member_is_refused(h):
    c0, ma = h.join_new("c0")
    h.tick()
    gen = c0.ok().generation_id
    assert h.sync("c0", "g", gen + 1, ma).error() is IllegalGeneration
    assert h.sync("c0", "g", gen, "nobody").error() is UnknownMemberId
    assert h.sync("c0", "other", gen, ma).error() is UnknownMemberId
    assert h.send("c0", m.SyncGroupRequest(group_id="g", generation_id=gen, member_id=ma,
                                           protocol_name="roundrobin")).error() is InconsistentGroupProtocol


def test_sync_during_preparing_rebalance_is_told_to_rejoin(h):
    members, gen = h.stable_group(2)
    h.join("c0", member_id=members[0][1])
    assert h.sync("c1", "g", gen, members[1][1]).error() is RebalanceInProgress


def test_a_failed_assignment_write_sends_members_back_to_join(make_harness):
    h = make_harness(auto_persist=False)
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    gen = c0.ok().generation_id
    follower = h.sync("c1", "g", gen, mb)
    leader = h.sync("c0", "g", gen, ma, {ma: b"a", mb: b"b"})
    h.flush(NotEnoughReplicas("only 1 in sync"))
    assert leader.error() is CoordinatorNotAvailable and follower.error() is CoordinatorNotAvailable
    assert h.state() == "PreparingRebalance"


def test_a_write_finishing_after_the_group_moved_on_changes_nothing(make_harness):
    h = make_harness(auto_persist=False)
    (c0, ma), (c1, mb) = [h.join_new(f"c{i}") for i in range(2)]
    h.tick()
    gen = c0.ok().generation_id
    leader = h.sync("c0", "g", gen, ma, {ma: b"a", mb: b"b"})
    h.leave("c1", "g", (mb, None)).ok()                   # rebalance while the write is in flight
    assert leader.error() is RebalanceInProgress
    h.flush()
    assert h.state() == "PreparingRebalance"


# ---- states -------------------------------------------------------------------------------

def test_invalid_transitions_are_bugs(h):
    h.join_new("c0")
    with pytest.raises(AssertionError, match="not a valid transition"):
        h.group().transition(GroupState.STABLE, h.now)


def test_a_group_walks_every_state(h):
    seen = []
    record = lambda: seen.append(h.state())  # noqa: E731
    join, mid = h.join_new("c0")
    record()
    h.tick()
    record()
    h.sync("c0", "g", join.ok().generation_id, mid, {mid: b"x"}).ok()
    record()
    h.leave("c0", "g", (mid, None)).ok()
    record()
    h.send("admin", m.DeleteGroupsRequest(groups_names=["g"])).ok()
    record()
    assert seen == ["PreparingRebalance", "CompletingRebalance", "Stable", "Empty", None]


# ---- configuration ---------------------------------------------------------------------------

def test_group_config_reads_kafkas_setting_names():
    cfg = GroupConfig.from_mapping({"group.initial.rebalance.delay.ms": "0", "group.max.size": 5,
                                    "group.min.session.timeout.ms": 100, "unrelated": "x"})
    assert (cfg.initial_rebalance_delay_ms, cfg.max_size, cfg.min_session_timeout_ms) == (0, 5, 100)
    assert GroupConfig().initial_rebalance_delay_ms == 3000        # Kafka's default


def test_group_config_has_a_field_for_each_group_key():
    names = {f.name for f in dataclasses.fields(GroupConfig)}
    assert set(GroupConfig.KAFKA_NAMES) == {k.name for k in GROUP_CONFIGS}
    assert set(GroupConfig.KAFKA_NAMES.values()) <= names
    assert all(getattr(GroupConfig(), GroupConfig.KAFKA_NAMES[k.name]) == k.default for k in GROUP_CONFIGS)


@pytest.mark.parametrize("bad", [{"group.max.size": "many"}, {"group.max.size": 0},
                                 {"group.min.session.timeout.ms": 0},
                                 {"group.min.session.timeout.ms": 10, "group.max.session.timeout.ms": 5},
                                 {"offset.metadata.max.bytes": -1}])
def test_group_config_refuses_nonsense(bad):
    with pytest.raises(InvalidConfig):
        GroupConfig.from_mapping(bad)
