"""Committed offsets (OffsetCommit / OffsetFetch), rebuilding from __consumer_offsets
(load), and the admin side: ListGroups, DescribeGroups, DeleteGroups, FindCoordinator."""
import pytest

from odradek.client.errors import (
    CoordinatorNotAvailable, GroupIdNotFound, IllegalGeneration, InvalidCommitOffsetSize, InvalidGroupId, InvalidRequest,
    MessageTooLarge, NonEmptyGroup, NotEnoughReplicas, OffsetMetadataTooLarge, RebalanceInProgress,
    UnknownMemberId, UnknownTopicOrPartition)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import GroupConfig, Note
from odradek.daemon.broker.groups import offsets_log as fmt


def reload(h, make_harness):
    """A fresh coordinator that loaded h's __consumer_offsets log, as after a restart."""
    h2 = make_harness()
    h2.clock.now = h.now
    h2.apply(h2.coord.load(h.log, h2.now))
    return h2


# ---- OffsetCommit / OffsetFetch ------------------------------------------------------------

def test_a_standalone_commit_is_answered_once_durable_and_then_fetched(make_harness):
    h = make_harness(auto_persist=False)
    call = h.commit("c", "g", -1, "", {("orders", 0): (42, "checkpoint A"), ("orders", 1): 7})
    assert not call.done and h.fetch("c", "g", {"orders": [0]}) == {("orders", 0): (-1, "")}
    assert [fmt.decode_key(k) for k, _ in h.log] == [fmt.OffsetKey("g", "orders", 0), fmt.OffsetKey("g", "orders", 1)]
    h.flush()
    resp = call.ok()
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in resp.topics] == [
        ("orders", [(0, 0), (1, 0)])]
    assert h.fetch("c", "g") == {("orders", 0): (42, "checkpoint A"), ("orders", 1): (7, "")}
    assert h.state() == "Empty"


def test_a_commit_to_the_empty_group_id_is_refused_and_makes_no_group(h):
    """Kafka's INVALID_GROUP_ID; it used to make (and list) a group named ""."""
    assert h.commit("c", "", -1, "", {("t", 0): 5}).error() is InvalidGroupId
    assert h.send("c", m.ListGroupsRequest()).ok().groups == [] and h.log == []


def test_commit_values_carry_the_leader_epoch_and_the_commit_time(h):
    h.send("c", m.OffsetCommitRequest(group_id="g", topics=[m.OffsetCommitRequestTopic(name="t", partitions=[
        m.OffsetCommitRequestPartition(partition_index=3, committed_offset=9, committed_leader_epoch=4,
                                       committed_metadata="meta")])])).ok()
    (key, value), = h.log
    assert fmt.decode_offset_value(value) == fmt.OffsetValue(9, 4, "meta", h.now)
    fetched = h.send("c", m.OffsetFetchRequest(group_id="g", topics=None)).ok().topics[0].partitions[0]
    assert (fetched.committed_offset, fetched.committed_leader_epoch, fetched.metadata) == (9, 4, "meta")


def test_fetching_what_was_never_committed_gives_minus_one(h):
    assert h.fetch("c", "nobody", {"t": [0, 1]}) == {("t", 0): (-1, ""), ("t", 1): (-1, "")}
    assert h.fetch("c", "nobody") == {}
    assert "nobody" not in h.coord.groups


def test_fetching_everything_lists_topics_and_partitions_in_order(h):
    h.commit("c", "g", -1, "", {("b", 1): 1, ("a", 2): 2, ("b", 0): 3, ("a", 0): 4}).ok()
    resp = h.send("c", m.OffsetFetchRequest(group_id="g", topics=None)).ok()
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in resp.topics] == [("a", [0, 2]), ("b", [0, 1])]


def test_a_later_commit_replaces_an_earlier_one(h):
    h.commit("c", "g", -1, "", {("t", 0): 5}).ok()
    h.commit("c", "g", -1, "", {("t", 0): 9}).ok()
    assert h.fetch("c", "g") == {("t", 0): (9, "")}


def test_members_commit_in_stable_and_preparing_rebalance_but_not_completing(h):
    members, gen = h.stable_group(2)
    (c0, a), (c1, b) = members
    h.commit(c0, "g", gen, a, {("t", 0): 1}).ok()
    h.join_new("c9")                                         # PreparingRebalance
    # a member revoking its partitions commits before it rejoins: allowed
    h.commit(c1, "g", gen, b, {("t", 1): 2}).ok()
    h.join(c0, member_id=a)
    h.join(c1, member_id=b)
    assert h.state() == "CompletingRebalance"
    assert h.commit(c0, "g", gen + 1, a, {("t", 0): 3}).error() is RebalanceInProgress
    assert h.fetch("c", "g") == {("t", 0): (1, ""), ("t", 1): (2, "")}


def test_commits_from_a_stale_generation_or_a_stranger_are_refused(h):
    members, gen = h.stable_group(1)
    (c0, a), = members
    assert h.commit(c0, "g", gen - 1, a, {("t", 0): 1}).error() is IllegalGeneration
    assert h.commit(c0, "g", gen, "nobody", {("t", 0): 1}).error() is UnknownMemberId
    # generation -1 is for standalone commits, allowed only while the group is empty
    assert h.commit("admin", "g", -1, "", {("t", 0): 1}).error() is UnknownMemberId
    assert h.commit("admin", "missing", 3, "x", {("t", 0): 1}).error() is IllegalGeneration
    assert h.fetch("c", "g") == {}
    h.leave(c0, "g", (a, None)).ok()
    assert h.state() == "Empty"
    h.commit("admin", "g", -1, "", {("t", 0): 11}).ok()
    assert h.fetch("c", "g") == {("t", 0): (11, "")}


def test_a_commit_counts_as_a_heartbeat(h):
    members, gen = h.stable_group(1, session=10_000)
    (c0, a), = members
    h.tick(9000)
    h.commit(c0, "g", gen, a, {("t", 0): 1}).ok()
    h.tick(9000)
    assert h.group().has(a)


def test_too_long_metadata_fails_that_partition_only(make_harness):
    h = make_harness(GroupConfig(initial_rebalance_delay_ms=0, offset_metadata_max_bytes=8))
    resp = h.commit("c", "g", -1, "", {("t", 0): (1, "12345678"), ("t", 1): (2, "123456789")}).ok()
    assert [p.error_code for p in resp.topics[0].partitions] == [0, OffsetMetadataTooLarge.code]
    assert h.fetch("c", "g") == {("t", 0): (1, "12345678")}


def test_commits_to_unknown_partitions_are_refused_when_the_broker_knows_its_topics(make_harness):
    h = make_harness(partition_exists=lambda t, p: t == "real" and p < 2)
    resp = h.commit("c", "g", -1, "", {("real", 1): 5, ("real", 2): 5, ("ghost", 0): 5}).ok()
    codes = {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}
    assert codes == {("real", 1): 0, ("real", 2): UnknownTopicOrPartition.code,
                     ("ghost", 0): UnknownTopicOrPartition.code}
    assert h.fetch("c", "g") == {("real", 1): (5, "")}


@pytest.mark.parametrize("failure, seen", [(NotEnoughReplicas("1 in sync"), CoordinatorNotAvailable),
                                           (MessageTooLarge("big"), InvalidCommitOffsetSize)])
def test_a_commit_whose_write_fails_is_refused_and_not_visible(make_harness, failure, seen):
    h = make_harness(auto_persist=False)
    call = h.commit("c", "g", -1, "", {("t", 0): 5})
    h.flush(failure)
    assert call.error() is seen
    assert h.fetch("c", "g", {"t": [0]}) == {("t", 0): (-1, "")}
    assert "g" not in h.coord.groups


def test_topic_deleted_drops_its_offsets_with_tombstones(h):
    h.commit("c", "g", -1, "", {("gone", 0): 1, ("kept", 0): 2}).ok()
    h.apply(h.coord.topic_deleted("gone", h.now))
    assert h.fetch("c", "g") == {("kept", 0): (2, "")}
    assert h.log[-1] == (fmt.encode_offset_key("g", "gone", 0), None)


# ---- load ------------------------------------------------------------------------------------

def test_load_rebuilds_committed_offsets(make_harness):
    h = make_harness()
    h.commit("c", "g1", -1, "", {("t", 0): (5, "m"), ("t", 1): 6}).ok()
    h.commit("c", "g1", -1, "", {("t", 0): (8, "n")}).ok()
    h.commit("c", "g2", -1, "", {("u", 3): 1}).ok()
    h.commit("c", "g3", -1, "", {("u", 3): 1}).ok()
    h.send("admin", m.DeleteGroupsRequest(groups_names=["g3"])).ok()
    h.apply(h.coord.topic_deleted("u", h.now))
    h.commit("c", "g2", -1, "", {("v", 0): 2}).ok()
    h2 = reload(h, make_harness)
    for group in ("g1", "g2", "g3"):
        assert h2.fetch("c", group) == h.fetch("c", group)
    assert h2.fetch("c", "g1") == {("t", 0): (8, "n"), ("t", 1): (6, "")}
    assert sorted(h2.coord.groups) == ["g1", "g2"] and h2.state("g1") == "Empty"


def test_load_restores_a_stable_group_whose_members_carry_on_without_a_rebalance(make_harness):
    h = make_harness()
    members, gen = h.stable_group(2, session=10_000)
    (c0, a), (c1, b) = members
    h2 = reload(h, make_harness)
    assert h2.state() == "Stable" and h2.group().generation_id == gen
    # the members reconnect (new connections) and carry on
    h2.heartbeat("n0", "g", gen, a).ok()
    assert h2.sync("n0", "g", gen, a).ok().assignment == b"A-" + a.encode()
    h2.tick(6000)
    h2.heartbeat("n0", "g", gen, a).ok()
    h2.tick(4000)                       # b never came back: its session ends
    assert not h2.group().has(b) and h2.state() == "PreparingRebalance"
    d = h2.send("x", m.DescribeGroupsRequest(groups=["g"])).ok().groups[0]
    assert [x.member_id for x in d.members] == [a]


def test_load_restores_an_empty_groups_generation(make_harness):
    h = make_harness()
    members, gen = h.stable_group(1)
    h.leave(members[0][0], "g", (members[0][1], None)).ok()
    h2 = reload(h, make_harness)
    assert h2.state() == "Empty" and h2.group().generation_id == gen + 1
    call, _ = h2.join_new("c0")
    h2.tick()
    assert call.ok().generation_id == gen + 2


def test_load_restores_static_members(make_harness):
    h = make_harness()
    calls = [h.join(f"c{i}", instance=f"i{i}") for i in range(2)]
    h.tick()
    gen = calls[0].ok().generation_id
    h.sync_all("g", gen, [(f"c{i}", c.ok().member_id) for i, c in enumerate(calls)], calls[0].ok().leader)
    h2 = reload(h, make_harness)
    assert h2.group().static_members == {"i0": calls[0].ok().member_id, "i1": calls[1].ok().member_id}
    resp = h2.join("r1", instance="i1").ok()     # a restarted static member: no rebalance
    assert resp.generation_id == gen and h2.state() == "Stable"


def test_load_skips_records_it_cannot_read_and_says_so(make_harness):
    h = make_harness()
    h.commit("c", "g", -1, "", {("t", 0): 1}).ok()
    h.log[0:0] = [(b"\x00\x09junk", b"x"), (fmt.encode_offset_key("g", "t", 1), b"\x00\x63garbage")]
    h2 = reload(h, make_harness)
    assert h2.fetch("c", "g") == {("t", 0): (1, "")}
    assert sum("skipped a record" in n.text for n in h2.notes) == 2
    assert all(isinstance(n, Note) for n in h2.notes)


def test_load_replaces_what_was_there(make_harness):
    h = make_harness()
    h.commit("c", "old", -1, "", {("t", 0): 1}).ok()
    h.apply(h.coord.load([], h.now))
    assert h.coord.groups == {} and h.coord.next_deadline() is None


# ---- a delete racing a commit -----------------------------------------------------------------

def test_a_commit_in_flight_when_its_group_is_deleted_is_dropped_like_the_log_says(make_harness):
    h = make_harness(auto_persist=False)
    commit = h.commit("c", "g", -1, "", {("t", 0): 1})
    h.flush()
    commit2 = h.commit("c", "g", -1, "", {("t", 0): 2})    # in flight ...
    delete = h.send("admin", m.DeleteGroupsRequest(groups_names=["g"]))  # ... when the group goes
    h.flush()
    assert commit.ok() and commit2.ok() and delete.ok().results[0].error_code == 0
    assert h.fetch("c", "g") == {}
    assert reload(h, make_harness).fetch("c", "g") == {}   # the log agrees with memory


# ---- ListGroups, DescribeGroups, DeleteGroups, FindCoordinator --------------------------------

def test_list_groups_with_and_without_a_state_filter(h):
    h.stable_group(1, group="live")
    h.commit("c", "idle", -1, "", {("t", 0): 1}).ok()
    h.join_new("z0", group="forming")
    listed = h.send("a", m.ListGroupsRequest()).ok().groups
    assert [(g.group_id, g.protocol_type, g.group_state) for g in listed] == [
        ("forming", "consumer", "PreparingRebalance"), ("idle", "", "Empty"), ("live", "consumer", "Stable")]
    stable = h.send("a", m.ListGroupsRequest(states_filter=["stable", "Empty"])).ok().groups
    assert [g.group_id for g in stable] == ["idle", "live"]


def test_describe_shows_members_with_client_id_host_metadata_and_assignment(h):
    call = h.join("c0", instance="i0", protocols=[("range", b"sub")], client_id="billing")
    h.tick()
    mid = call.ok().member_id
    d = h.send("a", m.DescribeGroupsRequest(groups=["g"])).ok().groups[0]
    assert (d.group_state, d.protocol_type, d.protocol_data) == ("CompletingRebalance", "consumer", "")
    assert d.members[0].member_assignment == b"" and d.members[0].member_metadata == b""
    h.sync("c0", "g", 1, mid, {mid: b"assigned"}, instance="i0").ok()
    d = h.send("a", m.DescribeGroupsRequest(groups=["g", "nope"])).ok().groups
    assert (d[0].error_code, d[0].group_state, d[0].protocol_data) == (0, "Stable", "range")
    (x,) = d[0].members
    assert (x.member_id, x.group_instance_id, x.client_id, x.client_host) == (mid, "i0", "billing", "pid:100 uid:1000")
    assert (x.member_metadata, x.member_assignment) == (b"sub", b"assigned")
    assert (d[1].error_code, d[1].group_state) == (GroupIdNotFound.code, "Dead")


def test_delete_groups_deletes_only_empty_groups_and_writes_tombstones(make_harness):
    h = make_harness()
    h.stable_group(1, group="busy")
    h.commit("c", "idle", -1, "", {("t", 0): 1, ("t", 1): 2}).ok()
    h.auto_persist = False
    before = len(h.log)
    call = h.send("a", m.DeleteGroupsRequest(groups_names=["idle", "busy", "nope", "idle"]))
    assert not call.done                                   # answered once the tombstones are durable
    assert h.log[before:] == [(fmt.encode_offset_key("idle", "t", 0), None),
                              (fmt.encode_offset_key("idle", "t", 1), None)]
    h.flush()
    results = call.ok().results
    assert [(r.group_id, r.error_code) for r in results] == [
        ("idle", 0), ("busy", NonEmptyGroup.code), ("nope", GroupIdNotFound.code)]
    assert "idle" not in h.coord.groups and h.state("busy") == "Stable"


def test_deleting_a_group_that_had_generations_tombstones_its_metadata(h):
    members, gen = h.stable_group(1)
    h.leave(members[0][0], "g", (members[0][1], None)).ok()
    assert h.send("a", m.DeleteGroupsRequest(groups_names=["g"])).ok().results[0].error_code == 0
    assert h.log[-1] == (fmt.encode_group_key("g"), None)
    assert h.heartbeat(members[0][0], "g", gen, members[0][1]).error() is UnknownMemberId


def test_a_failed_delete_reports_the_write_error(make_harness):
    h = make_harness(auto_persist=False)
    h.commit("c", "g", -1, "", {("t", 0): 1})
    h.flush()
    call = h.send("a", m.DeleteGroupsRequest(groups_names=["g"]))
    h.flush(NotEnoughReplicas("1 in sync"))
    assert call.ok().results[0].error_code == CoordinatorNotAvailable.code


def test_find_coordinator_names_this_broker(h):
    assert h.send("c", m.FindCoordinatorRequest(key="g")).ok().node_id == 0
    assert h.send("c", m.FindCoordinatorRequest(key="t", key_type=1)).error() is InvalidRequest


def test_requests_the_coordinator_does_not_serve_are_a_type_error(h):
    with pytest.raises(TypeError):
        h.send("c", m.MetadataRequest())
