"""OffsetDelete (Kafka's key 47) in the coordinator: an Empty group loses what is asked
for; a group with members keeps the offsets of topics a member subscribes to; tombstones
reach __consumer_offsets before the answer and survive a reload."""
from odradek.client.errors import (
    CoordinatorNotAvailable, GroupIdNotFound, GroupSubscribedToTopic, NonEmptyGroup, NotEnoughReplicas)
from odradek.client.protocol import messages as m
from odradek.client.protocol.consumer_protocol import ConsumerProtocolSubscription
from odradek.daemon.broker.groups import offsets_log as fmt


def delete(h, group, topics):
    return h.send("admin", m.OffsetDeleteRequest(group_id=group, topics=[
        m.OffsetDeleteRequestTopic(name=t, partitions=ps) for t, ps in topics.items()]))


def answer(call):
    return {(t.name, p.partition_index): p.error_code for t in call.ok().topics for p in t.partitions}


def subscription(*topics):
    return ConsumerProtocolSubscription(topics=list(topics)).encode_versioned(0)


def test_an_empty_group_loses_the_offsets_asked_for_with_tombstones(make_harness):
    h = make_harness(auto_persist=False)
    h.commit("c", "g", -1, "", {("a", 0): 1, ("a", 1): 2, ("b", 0): 3})
    h.flush()
    before = len(h.log)
    call = delete(h, "g", {"a": [0, 1, 5]})
    assert not call.done                                  # waits for the tombstones
    assert [(fmt.decode_key(k), v) for k, v in h.log[before:]] == [
        (fmt.OffsetKey("g", "a", 0), None), (fmt.OffsetKey("g", "a", 1), None)]
    h.flush()
    assert answer(call) == {("a", 0): 0, ("a", 1): 0, ("a", 5): 0}
    assert h.fetch("c", "g") == {("b", 0): (3, "")}


def test_deleted_offsets_stay_deleted_after_a_reload(h, make_harness):
    h.commit("c", "g", -1, "", {("a", 0): 1, ("b", 0): 3}).ok()
    delete(h, "g", {"a": [0]}).ok()
    h2 = make_harness()
    h2.apply(h2.coord.load(h.log, h.now))
    assert h2.fetch("c", "g") == {("b", 0): (3, "")}


def test_a_group_with_members_keeps_the_offsets_of_subscribed_topics(h):
    members, generation = h.stable_group(1, protocols=(("range", subscription("a")),))
    conn, member_id = members[0]
    h.commit(conn, "g", generation, member_id, {("a", 0): 1, ("old", 0): 2}).ok()
    call = delete(h, "g", {"a": [0], "old": [0]})
    assert answer(call) == {("a", 0): GroupSubscribedToTopic.code, ("old", 0): 0}
    assert h.fetch("c", "g") == {("a", 0): (1, "")}


def test_a_non_consumer_group_with_members_refuses_the_whole_request(h):
    h.stable_group(1, protocol_type="connect", protocols=(("x", b"not a subscription"),))
    assert delete(h, "g", {"a": [0]}).error() is NonEmptyGroup


def test_an_unknown_group_is_group_id_not_found(h):
    assert delete(h, "nobody", {"a": [0]}).error() is GroupIdNotFound
    assert "nobody" not in h.coord.groups


def test_a_failed_write_is_reported(make_harness):
    h = make_harness(auto_persist=False)
    h.commit("c", "g", -1, "", {("a", 0): 1})
    h.flush()
    call = delete(h, "g", {"a": [0]})
    h.flush(NotEnoughReplicas("isr"))
    assert call.error() is CoordinatorNotAvailable    # retriable
