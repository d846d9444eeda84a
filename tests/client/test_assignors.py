"""Partition assignors: Kafka's documented examples, its consumer-protocol bytes (checked
against kafka-python's codec and assignors), and properties over random groups."""
import struct
import warnings
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.client.assignors import (
    ASSIGNORS, Assignment, CooperativeStickyAssignor, MalformedConsumerProtocol, RangeAssignor,
    RoundRobinAssignor, Subscription, get_assignor)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.coordinator.assignors.range import RangePartitionAssignor as KRange
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor as KRoundRobin
    from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment as KAssignment
    from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription as KSubscription

S = Subscription


def parts(assignment):
    return [f"{t}p{p}" for t, p in assignment.partitions]


def flat(result):
    return {mid: parts(a) for mid, a in result.items()}


# ---- Kafka's documented examples ---------------------------------------------------------

def test_range_matches_kafkas_javadoc_example():
    # RangeAssignor javadoc: C0, C1; t0, t1 with 3 partitions each
    result = RangeAssignor().assign({"C0": S(["t0", "t1"]), "C1": S(["t0", "t1"])}, {"t0": 3, "t1": 3})
    assert flat(result) == {"C0": ["t0p0", "t0p1", "t1p0", "t1p1"], "C1": ["t0p2", "t1p2"]}


def test_roundrobin_matches_kafkas_javadoc_example_with_equal_subscriptions():
    result = RoundRobinAssignor().assign({"C0": S(["t0", "t1"]), "C1": S(["t0", "t1"])}, {"t0": 3, "t1": 3})
    assert flat(result) == {"C0": ["t0p0", "t0p2", "t1p1"], "C1": ["t0p1", "t1p0", "t1p2"]}


def test_roundrobin_matches_kafkas_javadoc_example_with_unequal_subscriptions():
    # C0: t0; C1: t0, t1; C2: t0, t1, t2; t0, t1, t2 have 1, 2, 3 partitions
    members = {"C0": S(["t0"]), "C1": S(["t0", "t1"]), "C2": S(["t0", "t1", "t2"])}
    result = RoundRobinAssignor().assign(members, {"t0": 1, "t1": 2, "t2": 3})
    assert flat(result) == {"C0": ["t0p0"], "C1": ["t1p0"], "C2": ["t1p1", "t2p0", "t2p1", "t2p2"]}


def test_cooperative_sticky_keeps_kafkas_sticky_example_partitions_when_a_member_leaves():
    # StickyAssignor javadoc: C0, C1, C2 over t0..t3 (2 partitions each), then C1 leaves
    topics = ["t0", "t1", "t2", "t3"]
    counts = {t: 2 for t in topics}
    a = CooperativeStickyAssignor()
    first = a.assign({c: a.subscription(topics, (), 1) for c in ("C0", "C1", "C2")}, counts)
    assert sorted(len(x.partitions) for x in first.values()) == [2, 3, 3]
    owned = {c: first[c].partitions for c in ("C0", "C2")}
    second = a.assign({c: a.subscription(topics, owned[c], 1) for c in owned}, counts)
    for c in owned:   # nothing C0 or C2 owned moves, and C1's partitions are shared out
        assert set(owned[c]) <= set(second[c].partitions)
    assert sorted(len(x.partitions) for x in second.values()) == [4, 4]


def test_range_and_roundrobin_put_static_members_first_by_instance_id():
    members = {"a-dynamic": S(["t"]), "z-static": S(["t"], group_instance_id="i1"),
               "b-static": S(["t"], group_instance_id="i2")}
    assert flat(RangeAssignor().assign(members, {"t": 3})) == {
        "z-static": ["tp0"], "b-static": ["tp1"], "a-dynamic": ["tp2"]}
    assert flat(RoundRobinAssignor().assign(members, {"t": 4})) == {
        "z-static": ["tp0", "tp3"], "b-static": ["tp1"], "a-dynamic": ["tp2"]}


def test_topics_without_partitions_are_assigned_to_nobody():
    members = {"C0": S(["known", "unknown"])}
    for name in ASSIGNORS:
        assert flat(get_assignor(name).assign(members, {"known": 1})) == {"C0": ["knownp0"]}


def test_get_assignor_knows_the_three_names():
    assert {n: type(get_assignor(n)) for n in ASSIGNORS} == {
        "range": RangeAssignor, "roundrobin": RoundRobinAssignor, "cooperative-sticky": CooperativeStickyAssignor}
    with pytest.raises(ValueError, match="unknown partition assignor 'sticky'"):
        get_assignor("sticky")


# ---- bytes -------------------------------------------------------------------------------

def test_subscription_v1_bytes_are_kafkas():
    data = Subscription(["orders"], owned_partitions=[("orders", 2)]).encode()
    assert data == (b"\x00\x01" + b"\x00\x00\x00\x01" + b"\x00\x06orders" + b"\xff\xff\xff\xff"
                    + b"\x00\x00\x00\x01" + b"\x00\x06orders" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02")


def test_assignment_v1_bytes_are_kafkas():
    data = Assignment([("b", 1), ("a", 0), ("b", 0)], user_data=b"\x07").encode()
    assert data == (b"\x00\x01" + b"\x00\x00\x00\x02"
                    + b"\x00\x01a" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00"
                    + b"\x00\x01b" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01"
                    + b"\x00\x00\x00\x01\x07")


topic_names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=12)
topic_partitions = st.lists(st.tuples(topic_names, st.integers(0, 2**31 - 1)), max_size=8, unique=True)


@given(topics=st.lists(topic_names, max_size=5, unique=True), owned=topic_partitions,
       user_data=st.one_of(st.none(), st.binary(max_size=16)), generation=st.integers(-1, 2**31 - 1))
def test_subscriptions_read_and_write_the_same_bytes_as_kafka_python(topics, owned, user_data, generation):
    ours = Subscription(topics, owned, user_data, generation)
    by_topic = {}
    for t, p in sorted(owned):
        by_topic.setdefault(t, []).append(p)
    theirs = KSubscription(version=2, topics=topics, user_data=user_data, generation_id=generation,
                           owned_partitions=[KSubscription.TopicPartition(topic=t, partitions=ps)
                                             for t, ps in by_topic.items()])
    for version in (0, 1, 2):
        assert ours.encode(version) == theirs.encode(version=version)
        back = Subscription.decode(theirs.encode(version=version))
        assert back.topics == tuple(topics) and back.user_data == user_data
        assert back.owned_partitions == (ours.owned_partitions if version >= 1 else ())
        assert back.generation_id == (generation if version >= 2 else -1)
    decoded = KSubscription.decode(ours.encode())
    assert list(decoded.topics) == topics and decoded.user_data == user_data


@given(partitions=topic_partitions, user_data=st.one_of(st.none(), st.binary(max_size=16)))
def test_assignments_read_and_write_the_same_bytes_as_kafka_python(partitions, user_data):
    ours = Assignment(partitions, user_data)
    by_topic = {}
    for t, p in sorted(partitions):
        by_topic.setdefault(t, []).append(p)
    theirs = KAssignment(version=1, user_data=user_data, assigned_partitions=[
        KAssignment.TopicPartition(topic=t, partitions=ps) for t, ps in by_topic.items()])
    assert ours.encode() == theirs.encode(version=1)
    assert Assignment.decode(theirs.encode(version=1)) == ours
    assert Assignment.decode(theirs.encode(version=0)) == ours


def test_a_newer_version_is_read_as_the_newest_known_ignoring_later_fields():
    v2 = Subscription(["t"], [("t", 0)], None, 7).encode(2)
    v3 = b"\x00\x03" + v2[2:] + b"\x00\x04rack"
    assert Subscription.decode(v3) == Subscription(["t"], [("t", 0)], None, 7)
    assert Assignment.decode(b"") == Assignment()


@given(st.binary(max_size=64))
def test_garbage_raises_malformed_consumer_protocol_and_nothing_else(data):
    for cls in (Subscription, Assignment):
        try:
            cls.decode(data)
        except MalformedConsumerProtocol:
            pass


# ---- against kafka-python's assignors (dynamic members) ----------------------------------

groups = st.dictionaries(st.sampled_from([f"t{i}" for i in range(6)]), st.integers(1, 12), min_size=1).flatmap(
    lambda counts: st.tuples(st.just(counts), st.dictionaries(
        st.text("abcdefgh-0123456789", min_size=1, max_size=8),
        st.lists(st.sampled_from(sorted(counts)), min_size=1, max_size=len(counts), unique=True),
        min_size=1, max_size=8)))


def kafka_python_assign(assignor, counts, members):
    cluster = SimpleNamespace(partitions_for_topic=lambda t: set(range(counts[t])) if t in counts else None)
    kmembers = [SimpleNamespace(member_id=mid, group_instance_id=None, metadata=SimpleNamespace(topics=topics))
                for mid, topics in members.items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = assignor.assign(cluster, kmembers)
    return {mid: sorted((t, p) for t, ps in a.assigned_partitions for p in ps) for mid, a in result.items()}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(groups)
def test_range_and_roundrobin_assign_exactly_as_kafka_python(group):
    counts, members = group
    subs = {mid: S(topics) for mid, topics in members.items()}
    got = {mid: list(a.partitions) for mid, a in RangeAssignor().assign(subs, counts).items()}
    assert got == kafka_python_assign(KRange, counts, members)
    # kafka-python's round robin breaks on unequal subscriptions (its skip loop mixes up
    # member ids and tuples); compare where it works, Kafka's own example covers the rest
    members = {mid: sorted(counts) for mid in members}
    subs = {mid: S(topics) for mid, topics in members.items()}
    got = {mid: list(a.partitions) for mid, a in RoundRobinAssignor().assign(subs, counts).items()}
    assert got == kafka_python_assign(KRoundRobin, counts, members)


# ---- properties --------------------------------------------------------------------------

def check_exactly_once(result, members, counts):
    owners = {}
    for mid, a in result.items():
        for tp in a.partitions:
            assert tp not in owners, f"{tp} given to {owners[tp]} and {mid}"
            assert tp[0] in members[mid].topics, f"{mid} got {tp} without subscribing to it"
            owners[tp] = mid
    wanted = {(t, p) for s in members.values() for t in s.topics for p in range(counts.get(t, 0))}
    assert set(owners) == wanted


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(groups)
def test_every_subscribed_partition_goes_to_exactly_one_subscriber(group):
    counts, members = group
    subs = {mid: S(topics) for mid, topics in members.items()}
    for name in ASSIGNORS:
        check_exactly_once(get_assignor(name).assign(subs, counts), subs, counts)


equal_groups = st.tuples(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 20), min_size=1),
                         st.integers(1, 9))


@given(equal_groups)
def test_equal_subscriptions_are_balanced_within_one(group):
    counts, n = group
    subs = {f"m{i}": S(sorted(counts)) for i in range(n)}
    for assignor in (RoundRobinAssignor(), CooperativeStickyAssignor()):
        sizes = [len(a.partitions) for a in assignor.assign(subs, counts).values()]
        assert max(sizes) - min(sizes) <= 1
    for topic, count in counts.items():   # range balances each topic
        sizes = [sum(1 for t, _ in a.partitions if t == topic) for a in RangeAssignor().assign(subs, counts).values()]
        assert max(sizes) - min(sizes) <= 1


def run_cooperative(assignor, owned, topics_of, counts, generation):
    """One rebalance: every member reports what it owns; returns the new assignment after
    checking that no partition changes hands within the generation."""
    subs = {mid: assignor.subscription(topics_of[mid], owned.get(mid, ()), generation) for mid in topics_of}
    result = assignor.assign(subs, counts)
    for mid, a in result.items():
        for tp in a.partitions:
            for other, theirs in owned.items():
                assert other == mid or tp not in theirs, \
                    f"generation {generation}: {tp} given to {mid} while {other} still owns it"
    return {mid: a.partitions for mid, a in result.items()}


changes = st.lists(st.tuples(st.sampled_from(["join", "leave", "resubscribe", "grow"]),
                             st.integers(0, 7), st.lists(st.sampled_from(["a", "b", "c"]), min_size=1,
                                                         max_size=3, unique=True)), min_size=1, max_size=6)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(counts=st.fixed_dictionaries({"a": st.integers(1, 12), "b": st.integers(1, 12), "c": st.integers(1, 12)}),
       steps=changes)
def test_cooperative_never_moves_a_partition_within_one_generation_and_converges(counts, steps):
    assignor = CooperativeStickyAssignor()
    topics_of, owned, generation = {}, {}, 0
    for action, who, topics in steps:
        mid = f"m{who}"
        if action == "join" or (action == "resubscribe" and mid in topics_of):
            topics_of[mid] = topics
        elif action == "leave":
            topics_of.pop(mid, None)
            owned.pop(mid, None)
        elif action == "grow":
            counts = {t: n + 1 for t, n in counts.items()}
        if not topics_of:
            continue
        # rebalance until nothing is withheld: revoked partitions are given out next time
        for _ in range(3):
            generation += 1
            new = run_cooperative(assignor, owned, topics_of, counts, generation)
            settled = new == owned
            owned = new
            if settled:
                break
        subs = {m: S(topics_of[m]) for m in topics_of}
        check_exactly_once({m: Assignment(owned[m]) for m in topics_of}, subs, counts)
        if len({tuple(sorted(t)) for t in topics_of.values()}) == 1:
            sizes = [len(p) for p in owned.values()]
            assert max(sizes) - min(sizes) <= 1


def test_cooperative_adding_a_member_revokes_first_and_assigns_next_generation():
    a = CooperativeStickyAssignor()
    one = run_cooperative(a, {}, {"A": ["t"]}, {"t": 4}, 1)
    assert one == {"A": (("t", 0), ("t", 1), ("t", 2), ("t", 3))}
    two = run_cooperative(a, one, {"A": ["t"], "B": ["t"]}, {"t": 4}, 2)
    assert len(two["A"]) == 2 and two["B"] == ()          # A gives up two; B waits
    three = run_cooperative(a, two, {"A": ["t"], "B": ["t"]}, {"t": 4}, 3)
    assert three["A"] == two["A"] and set(three["B"]) == set(one["A"]) - set(two["A"])


def test_cooperative_conflicting_claims_go_to_the_later_generation():
    a = CooperativeStickyAssignor()
    members = {"old": a.subscription(["t"], [("t", 0)], 3), "new": a.subscription(["t"], [("t", 0), ("t", 1)], 4)}
    result = a.assign(members, {"t": 2})
    # "new" keeps both claims it validly holds... but balance wants one each: t1 (or t0)
    # must move; nothing moves to a member while another member still claims it
    assert result["new"].partitions in ((("t", 0),), (("t", 1),), (("t", 0), ("t", 1)))
    assert result["old"].partitions == ()
    assert struct.unpack(">i", members["new"].user_data) == (4,)


def test_a_topic_name_too_long_for_the_consumer_protocol_is_a_value_error():
    with pytest.raises(ValueError, match="exceeds"):
        Subscription(["t" * 40000]).encode()
    with pytest.raises(ValueError, match="exceeds"):
        Assignment([("t" * 40000, 0)]).encode()
