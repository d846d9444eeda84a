"""Consumer-group APIs through the gateway, raw on the wire (kio entities), against the real
broker: every API and the version shapes that differ, the KIP-394 join, a rebalance of two
members, a member whose TCP connection drops, and groups that are the same objects for
Kafka clients, odradek's Consumer and `odradek groups`."""
import dataclasses
import threading

import pytest
from click.testing import CliRunner
from kio.schema.errors import ErrorCode

from odradek.daemon.cli import cli
from odradek.client import Admin, Consumer, GroupMetadata, Producer, TopicPartition
from odradek.client.protocol.consumer_protocol import (
    ASSIGNMENT_VERSIONS, ConsumerProtocolAssignment, decode_versioned)
from support.broker import wait_until
from support.gateway import KafkaWire
from support.group_gateway import group_gateway, join, join_new, req, subscription, sync

FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE = 10, 11, 12, 13
COMMIT, FETCH, DESCRIBE, LIST, DELETE, OFFSET_DELETE = 8, 9, 15, 16, 42, 47
TOPICS = {"a": 2, "b": 1, "t": 2, "u": 2, "gone": 2, "kept": 1, "live": 1, "other": 1}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with group_gateway(tmp_path_factory.mktemp("gw"), TOPICS) as gw:    # commits to unknown partitions fail
        yield gw


@pytest.fixture
def wire(gateway):
    with KafkaWire(gateway.port) as w:
        yield w


def heartbeat(wire, group, generation, member_id, version=4):
    return wire.call(req(HEARTBEAT, version, group_id=group, generation_id=generation,
                         member_id=member_id)).error_code


def describe(wire, group, version=6):
    (g,) = wire.call(req(DESCRIBE, version, groups=[group])).groups
    return g


def stable_member(wire, group, metadata=b"sub", assignment=b"mine"):
    joined = join_new(wire, group, metadata=metadata)
    synced = sync(wire, group, joined.generation_id, joined.member_id, [(joined.member_id, assignment)])
    assert synced.error_code == ErrorCode.none and synced.assignment == assignment
    return joined


# ---- FindCoordinator ------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(0, 7))
def test_find_coordinator_names_this_gateway_in_every_shape(wire, gateway, version):
    if version >= 4:
        r = wire.call(req(FIND_COORDINATOR, version, key_type=0, coordinator_keys=["g1", "g2"]))
        assert [(c.key, c.node_id, c.host, c.port, c.error_code) for c in r.coordinators] == [
            (k, 0, "127.0.0.1", gateway.port, ErrorCode.none) for k in ("g1", "g2")]
    else:
        r = wire.call(req(FIND_COORDINATOR, version, key="g1", key_type=0))
        assert (r.node_id, r.host, r.port, r.error_code) == (0, "127.0.0.1", gateway.port, ErrorCode.none)


@pytest.mark.parametrize("version", [1, 6])
def test_find_coordinator_of_transactions_and_of_an_unknown_key_type(wire, gateway, version):
    def ask(key_type):
        if version >= 4:
            return wire.call(req(FIND_COORDINATOR, version, key_type=key_type, coordinator_keys=["t"])).coordinators[0]
        return wire.call(req(FIND_COORDINATOR, version, key="t", key_type=key_type))
    txn = ask(1)
    assert (txn.error_code, txn.node_id, txn.port) == (ErrorCode.none, 0, gateway.port)
    bad = ask(7)
    assert (bad.error_code, bad.node_id) == (ErrorCode.invalid_request, -1)


# ---- membership ----------------------------------------------------------------------------

@pytest.mark.parametrize("versions", [dict(join=v, sync=min(v, 5), hb=min(v, 4), leave=min(v, 5), describe=min(v, 6))
                                      for v in range(10)], ids=lambda v: f"join-v{v['join']}")
def test_one_member_joins_syncs_heartbeats_and_leaves(wire, versions):
    group = f"solo-v{versions['join']}"
    if versions["join"] >= 4:
        joined = join_new(wire, group, version=versions["join"], metadata=b"\x00\x01meta")
    else:    # the gateway makes KIP-394's round trip for a client that predates it
        joined = join(wire, group, version=versions["join"], metadata=b"\x00\x01meta")
    assert joined.error_code == ErrorCode.none and joined.generation_id == 1
    assert joined.leader == joined.member_id and joined.protocol_name == "range"
    assert joined.member_id.startswith("odradek-tests-")        # the Kafka header's client.id
    assert [(x.member_id, x.metadata) for x in joined.members] == [(joined.member_id, b"\x00\x01meta")]
    synced = sync(wire, group, 1, joined.member_id, [(joined.member_id, b"\x00\x02assigned")],
                  version=versions["sync"])
    assert (synced.error_code, synced.assignment) == (ErrorCode.none, b"\x00\x02assigned")
    assert heartbeat(wire, group, 1, joined.member_id, versions["hb"]) == ErrorCode.none
    assert heartbeat(wire, group, 7, joined.member_id, versions["hb"]) == ErrorCode.illegal_generation
    assert heartbeat(wire, group, 1, "stranger", versions["hb"]) == ErrorCode.unknown_member_id
    g = describe(wire, group, versions["describe"])
    assert (g.error_code, g.group_state, g.protocol_type, g.protocol_data) == (
        ErrorCode.none, "Stable", "consumer", "range")
    assert [(x.member_id, x.client_id, x.member_metadata, x.member_assignment) for x in g.members] == [
        (joined.member_id, "odradek-tests", b"\x00\x01meta", b"\x00\x02assigned")]
    assert g.members[0].client_host == "/127.0.0.1:%d" % wire.sock.getsockname()[1]    # the member's address
    if versions["leave"] >= 3:
        r = wire.call(req(LEAVE, versions["leave"], group_id=group,
                          members=[dict(member_id=joined.member_id), dict(member_id="stranger")]))
        assert r.error_code == ErrorCode.none
        assert [(x.member_id, x.error_code) for x in r.members] == [
            (joined.member_id, ErrorCode.none), ("stranger", ErrorCode.unknown_member_id)]
    else:
        r = wire.call(req(LEAVE, versions["leave"], group_id=group, member_id=joined.member_id))
        assert r.error_code == ErrorCode.none
        r = wire.call(req(LEAVE, versions["leave"], group_id=group, member_id=joined.member_id))
        assert r.error_code == ErrorCode.unknown_member_id
    assert describe(wire, group).group_state == "Empty"


def test_join_errors_come_back_in_the_response(wire):
    r = wire.call(req(JOIN, 9, group_id="bad-session", session_timeout=1, rebalance_timeout=1000, member_id="",
                      protocol_type="consumer", protocols=[dict(name="range", metadata=b"")]))
    assert (r.error_code, r.generation_id, r.protocol_name) == (ErrorCode.invalid_session_timeout, -1, None)
    r = join(wire, "never-made", version=2, member_id="ghost")
    assert (r.error_code, r.protocol_name, r.member_id) == (ErrorCode.unknown_member_id, "", "ghost")


def test_two_members_rebalance(gateway):
    group = "pair"
    with KafkaWire(gateway.port) as a, KafkaWire(gateway.port) as b:
        first = stable_member(a, group, metadata=b"A")
        second = {}
        t = threading.Thread(target=lambda: second.update(r=join_new(b, group, metadata=b"B")))
        t.start()
        # the first member learns of the rebalance from its heartbeat, and rejoins
        wait_until(lambda: heartbeat(a, group, 1, first.member_id) == ErrorCode.rebalance_in_progress,
                   10, 0.05, "a rebalance")
        again = join(a, group, member_id=first.member_id, metadata=b"A")
        t.join(10)
        joined_b = second["r"]
        assert again.generation_id == joined_b.generation_id == 2
        assert again.leader == first.member_id == joined_b.leader
        assert sorted((x.member_id, x.metadata) for x in again.members) == sorted(
            [(first.member_id, b"A"), (joined_b.member_id, b"B")])
        assert joined_b.members == ()                                 # only the leader gets them
        got = {}
        t = threading.Thread(target=lambda: got.update(b=sync(b, group, 2, joined_b.member_id)))
        t.start()
        mine = sync(a, group, 2, first.member_id, [(first.member_id, b"a-part"), (joined_b.member_id, b"b-part")])
        t.join(10)
        assert (mine.assignment, got["b"].assignment) == (b"a-part", b"b-part")
        assert describe(a, group).group_state == "Stable"


def test_a_dropped_connection_removes_its_member_at_once(gateway):
    """Decided: a dynamic member whose Kafka TCP connection closes leaves the group at once
    (Kafka would wait session.timeout.ms); the group rebalances for the others."""
    group = "dropped"
    with KafkaWire(gateway.port) as a:
        first = stable_member(a, group)
        b = KafkaWire(gateway.port)
        second = {}
        t = threading.Thread(target=lambda: second.update(r=join_new(b, group)))
        t.start()
        wait_until(lambda: heartbeat(a, group, 1, first.member_id) == ErrorCode.rebalance_in_progress, 10, 0.05,
                   "a rebalance")
        join(a, group, member_id=first.member_id)
        t.join(10)
        sync_b = threading.Thread(target=lambda: sync(b, group, 2, second["r"].member_id))
        sync_b.start()
        sync(a, group, 2, first.member_id, [(first.member_id, b"x"), (second["r"].member_id, b"y")])
        sync_b.join(10)
        assert len(describe(a, group).members) == 2
        b.close()
        # well within the session timeout (30 s), the survivor is told to rejoin
        wait_until(lambda: heartbeat(a, group, 2, first.member_id) == ErrorCode.rebalance_in_progress, 5, 0.05,
                   "the dropped member's removal")
        again = join(a, group, member_id=first.member_id)
        assert again.generation_id == 3 and [x.member_id for x in again.members] == [first.member_id]


def test_a_static_member_keeps_its_place_when_its_connection_drops(gateway):
    """As in Kafka, a static member (group.instance.id) stays until its session times out;
    back on a new connection it gets a new member id and its assignment, no rebalance."""
    group = "static"
    with KafkaWire(gateway.port) as a:
        joined = join(a, group, instance="instance-1")            # static members need no KIP-394 round trip
        assert joined.error_code == ErrorCode.none and joined.generation_id == 1
        sync(a, group, 1, joined.member_id, [(joined.member_id, b"kept")], version=3)
    with KafkaWire(gateway.port) as b:
        g = describe(b, group)
        assert (g.group_state, [x.member_id for x in g.members]) == ("Stable", [joined.member_id])
        back = join(b, group, instance="instance-1")
        assert back.error_code == ErrorCode.none and back.generation_id == 1
        assert back.member_id != joined.member_id
        assert sync(b, group, 1, back.member_id, version=3).assignment == b"kept"
        assert heartbeat(b, group, 1, joined.member_id) == ErrorCode.unknown_member_id     # the old id is gone


# ---- offsets -------------------------------------------------------------------------------

def commit(wire, group, offsets, version=9, generation=-1, member_id=""):
    r = wire.call(req(COMMIT, version, group_id=group, generation_id_or_member_epoch=generation,
                      member_id=member_id, retention_time=-1, topics=[
                          dict(name=t, partitions=[dict(partition_index=p, committed_offset=o, committed_leader_epoch=2,
                                                        committed_metadata=f"m{o}")])
                          for (t, p), o in offsets.items()]))
    return {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}


def fetched(topics):
    return {(t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
            for t in topics for p in t.partitions}


@pytest.mark.parametrize("version", range(2, 10))
def test_offset_commit_then_fetch(wire, version):
    group = f"offsets-v{version}"
    assert commit(wire, group, {("a", 0): 10, ("a", 1): 11, ("b", 0): 20}, version) == {
        ("a", 0): ErrorCode.none, ("a", 1): ErrorCode.none, ("b", 0): ErrorCode.none}
    r = wire.call(req(FETCH, 7, group_id=group, topics=[dict(name="a", partition_indexes=[0, 1, 9])],
                      require_stable=True))
    assert r.error_code == ErrorCode.none
    assert fetched(r.topics) == {("a", 0): (10, "m10", 0), ("a", 1): (11, "m11", 0), ("a", 9): (-1, "", 0)}
    epoch = r.topics[0].partitions[0].committed_leader_epoch
    assert epoch == (2 if version >= 6 else -1)


def test_offset_commit_of_a_stale_generation_fails_every_partition(wire):
    assert commit(wire, "no-such-gen", {("a", 0): 1, ("b", 3): 2}, generation=5, member_id="m") == {
        ("a", 0): ErrorCode.illegal_generation, ("b", 3): ErrorCode.illegal_generation}


@pytest.mark.parametrize("version", range(1, 8))
def test_offset_fetch_of_one_group(wire, version):
    group = f"fetch-v{version}"
    commit(wire, group, {("t", 0): 5, ("u", 1): 6})
    r = wire.call(req(FETCH, version, group_id=group, topics=[dict(name="t", partition_indexes=[0])]))
    assert fetched(r.topics) == {("t", 0): (5, "m5", 0)}
    if version >= 2:          # topics null: everything committed
        r = wire.call(req(FETCH, version, group_id=group, topics=None))
        assert fetched(r.topics) == {("t", 0): (5, "m5", 0), ("u", 1): (6, "m6", 0)}


@pytest.mark.parametrize("version", [7, 9])
def test_require_stable_reports_an_offset_an_open_transaction_holds(gateway, version):
    """KIP-447: with require_stable (v7+), a partition whose offset an open transaction
    commits is UNSTABLE_OFFSET_COMMIT until the transaction ends; without it, the last
    committed offset."""
    group = f"stable-v{version}"

    def fetch(wire, require_stable):
        topics = [dict(name="t", partition_indexes=[0])]
        if version >= 8:
            r = wire.call(req(FETCH, version, require_stable=require_stable,
                              groups=[dict(group_id=group, member_epoch=-1, topics=topics)]))
            return fetched(r.groups[0].topics)[("t", 0)]
        return fetched(wire.call(req(FETCH, version, group_id=group, topics=topics,
                                     require_stable=require_stable)).topics)[("t", 0)]
    producer = Producer({"socket": gateway.broker.socket_path, "transactional.id": f"txn-{group}", "linger.ms": 1})
    try:
        with KafkaWire(gateway.port) as w:
            commit(w, group, {("t", 0): 3})
            producer.init_transactions(10)
            producer.begin_transaction()
            producer.send_offsets_to_transaction([TopicPartition("t", 0, 8)], GroupMetadata(group, -1, "", None), 10)
            assert fetch(w, True) == (-1, "", ErrorCode.unstable_offset_commit)
            assert fetch(w, False) == (3, "m3", ErrorCode.none)
            producer.commit_transaction(10)           # its markers follow: the offset is stable once they land
            wait_until(lambda: fetch(w, True) == (8, "", ErrorCode.none), 10, 0.02, "the committed offset")
    finally:
        producer.close(10)


@pytest.mark.parametrize("version", [8, 9])
def test_offset_fetch_of_a_batch_of_groups(wire, version):
    commit(wire, f"batch-a-v{version}", {("t", 0): 1})
    commit(wire, f"batch-b-v{version}", {("t", 0): 2, ("t", 1): 3})
    request = req(FETCH, version, require_stable=False, groups=[
        dict(group_id=f"batch-a-v{version}", topics=[dict(name="t", partition_indexes=[0, 1])]),
        dict(group_id=f"batch-b-v{version}", topics=[]),
        dict(group_id="batch-nobody", member_epoch=-1, topics=[])])
    a, b, nobody = request.groups           # null topics: every committed offset of the group
    request = dataclasses.replace(request, groups=(a, dataclasses.replace(b, topics=None),
                                                   dataclasses.replace(nobody, topics=None)))
    r = wire.call(request)
    assert [(g.group_id, fetched(g.topics), g.error_code) for g in r.groups] == [
        (f"batch-a-v{version}", {("t", 0): (1, "m1", 0), ("t", 1): (-1, "", 0)}, ErrorCode.none),
        (f"batch-b-v{version}", {("t", 0): (2, "m2", 0), ("t", 1): (3, "m3", 0)}, ErrorCode.none),
        ("batch-nobody", {}, ErrorCode.none)]


def test_offset_delete(wire, gateway):
    commit(wire, "od", {("gone", 0): 1, ("gone", 1): 2, ("kept", 0): 3})
    r = wire.call(req(OFFSET_DELETE, 0, group_id="od", topics=[
        dict(name="gone", partitions=[dict(partition_index=0), dict(partition_index=1)])]))
    assert r.error_code == ErrorCode.none
    assert [(p.partition_index, p.error_code) for p in r.topics[0].partitions] == [(0, 0), (1, 0)]
    r = wire.call(req(FETCH, 7, group_id="od", topics=None))
    assert fetched(r.topics) == {("kept", 0): (3, "m3", 0)}
    r = wire.call(req(OFFSET_DELETE, 0, group_id="od-nobody", topics=[
        dict(name="x", partitions=[dict(partition_index=0)])]))
    assert (r.error_code, r.topics) == (ErrorCode.group_id_not_found, ())


def test_offset_delete_keeps_a_subscribed_topics_offsets(gateway):
    with KafkaWire(gateway.port) as w:
        joined = stable_member(w, "od-sub", metadata=subscription("live"))
        commit(w, "od-sub", {("live", 0): 4}, generation=1, member_id=joined.member_id)
        r = w.call(req(OFFSET_DELETE, 0, group_id="od-sub", topics=[
            dict(name="live", partitions=[dict(partition_index=0)]),
            dict(name="other", partitions=[dict(partition_index=0)])]))
        assert [(t.name, t.partitions[0].error_code) for t in r.topics] == [
            ("live", ErrorCode.group_subscribed_to_topic), ("other", ErrorCode.none)]


# ---- ListGroups, DescribeGroups, DeleteGroups ---------------------------------------------

def test_list_groups_with_state_and_type_filters(gateway):
    with KafkaWire(gateway.port) as w:
        stable_member(w, "listed-stable")
        commit(w, "listed-empty", {("t", 0): 1})
        listed = {g.group_id: g for g in w.call(req(LIST, 0)).groups}
        assert listed["listed-stable"].protocol_type == "consumer" and "listed-empty" in listed
        by_state = {g.group_id: g.group_state for g in w.call(req(LIST, 4, states_filter=["Stable"])).groups}
        assert by_state.get("listed-stable") == "Stable" and "listed-empty" not in by_state
        classic = w.call(req(LIST, 5, states_filter=[], types_filter=["Classic"])).groups
        assert {g.group_type for g in classic} == {"classic"} and "listed-empty" in {g.group_id for g in classic}
        assert w.call(req(LIST, 5, states_filter=[], types_filter=["consumer"])).groups == ()


def test_describe_an_unknown_group(wire):
    g = describe(wire, "described-nobody")
    assert (g.error_code, g.group_state, g.members) == (ErrorCode.group_id_not_found, "Dead", ())
    assert g.authorized_operations == -2 ** 31


@pytest.mark.parametrize("version", range(0, 3))
def test_delete_groups(gateway, version):
    with KafkaWire(gateway.port) as w:
        commit(w, f"del-empty-v{version}", {("t", 0): 1})
        stable_member(w, f"del-busy-v{version}")
        r = w.call(req(DELETE, version, groups_names=[f"del-empty-v{version}", f"del-busy-v{version}",
                                                      "del-nobody"]))
        assert [(x.group_id, x.error_code) for x in r.results] == [
            (f"del-empty-v{version}", ErrorCode.none), (f"del-busy-v{version}", ErrorCode.non_empty_group),
            ("del-nobody", ErrorCode.group_id_not_found)]
        assert describe(w, f"del-empty-v{version}").error_code == ErrorCode.group_id_not_found


# ---- the same groups for every client -------------------------------------------------------

def test_odradek_groups_describe_shows_a_group_made_over_tcp(gateway):
    with KafkaWire(gateway.port) as w:
        joined = stable_member(w, "seen-by-cli")
        commit(w, "seen-by-cli", {("t", 0): 42}, generation=1, member_id=joined.member_id)
        result = CliRunner().invoke(cli, ["groups", "describe", "seen-by-cli", "--members",
                                          "--socket", gateway.broker.socket_path])
        assert result.exit_code == 0, result.output
        assert joined.member_id in result.output and "Stable" in result.output
        with Admin(gateway.broker.socket_path) as admin:
            assert admin.list_group_offsets("seen-by-cli")[("t", 0)][0] == 42


def test_an_odradek_consumer_and_a_kafka_member_share_a_group(gateway):
    """The odradek Consumer (Unix socket) leads; a member speaking Kafka's protocol joins
    with a ConsumerProtocol subscription; both get partitions of the topic."""
    with Admin(gateway.broker.socket_path) as admin:
        admin.create_topic("shared", num_partitions=4)
    consumer = Consumer({"socket": gateway.broker.socket_path, "group.id": "mixed", "heartbeat.interval.ms": 100,
                         "session.timeout.ms": 6000, "partition.assignment.strategy": "range"})
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            consumer.poll(0.05)
    consumer.subscribe(["shared"])
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        wait_until(lambda: len(consumer.assignment()) == 4, 10, 0.05, "the Consumer to own all 4 partitions")
        with KafkaWire(gateway.port, client_id="kafka-member") as w:
            joined = join_new(w, "mixed", metadata=subscription("shared"))
            assert joined.leader != joined.member_id
            synced = sync(w, "mixed", joined.generation_id, joined.member_id)
            _, assignment = decode_versioned(ConsumerProtocolAssignment, ASSIGNMENT_VERSIONS, synced.assignment)
            mine = {(tp.topic, p) for tp in assignment.assigned_partitions for p in tp.partitions}
            assert len(mine) == 2 and {t for t, _ in mine} == {"shared"}
            wait_until(lambda: {(tp.topic, tp.partition) for tp in consumer.assignment()} ==
                       {("shared", p) for p in range(4)} - mine, 10, 0.05, "the Consumer to keep the other two")
    finally:
        stop.set()
        poller.join(10)
        consumer.close()


def test_a_broker_that_is_gone_is_coordinator_not_available(tmp_path):
    """Clients look for the coordinator again on COORDINATOR_NOT_AVAILABLE; the connection
    stays open."""
    with group_gateway(tmp_path) as gw, KafkaWire(gw.port) as w:
        stable_member(w, "orphan")
        gw.broker.stop()
        r = w.call(req(FIND_COORDINATOR, 3, key="orphan", key_type=0))
        assert (r.error_code, r.node_id) == (ErrorCode.coordinator_not_available, -1)
        assert join(w, "orphan").error_code == ErrorCode.coordinator_not_available
        assert heartbeat(w, "orphan", 1, "m") == ErrorCode.coordinator_not_available
        assert commit(w, "orphan", {("t", 0): 1}) == {("t", 0): ErrorCode.coordinator_not_available}
