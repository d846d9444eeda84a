"""The transaction APIs through the gateway, raw Kafka requests: a transaction opened
(InitProducerId on the control socket: the data family serves it over TCP), partitions
and a group's offsets added, described, listed, committed or aborted over Kafka's
protocol, at the lowest and the highest version served; Admin sees the same
transaction, and the offsets committed in it."""
import struct

import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin
from odradek.client.protocol import ControlClient
from odradek.daemon.gateway.apis import table
from support.admin_gateway import request
from support.broker import wait_until
from support.txn_client import init

ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT, DESCRIBE_TXNS, LIST_TXNS = 24, 25, 26, 28, 65, 66
KEYS = (ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT, DESCRIBE_TXNS, LIST_TXNS)
TOPICS = {"txn-out": 2}


@pytest.fixture
def control(broker):
    client = ControlClient(broker.socket_path)
    yield client
    client.close()


def lowest():
    return {k: table()[k].min_version for k in KEYS}


def highest():
    return {k: table()[k].max_version for k in KEYS}


def add_partitions(wire, v, tid, pid, epoch, partitions, verify_only=False):
    """{(topic, partition): error code} of AddPartitionsToTxn in the shape of version v."""
    topics = {}
    for t, p in partitions:
        topics.setdefault(t, []).append(p)
    topics = [dict(name=t, partitions=ps) for t, ps in topics.items()]
    if v <= 3:
        r = wire.call(request(ADD_PARTITIONS, v, v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid,
                              v3_and_below_producer_epoch=epoch, v3_and_below_topics=topics))
        results = r.results_by_topic_v3_and_below
    else:
        r = wire.call(request(ADD_PARTITIONS, v, transactions=[dict(
            transactional_id=tid, producer_id=pid, producer_epoch=epoch, verify_only=verify_only, topics=topics)]))
        assert r.error_code == ErrorCode.none and r.results_by_transaction[0].transactional_id == tid
        results = r.results_by_transaction[0].topic_results
    return {(t.name, p.partition_index): p.partition_error_code for t in results for p in t.results_by_partition}


def describe(wire, tid):
    (t,) = wire.call(request(DESCRIBE_TXNS, 0, transactional_ids=[tid])).transaction_states
    return t


def describe_error(wire, tid):
    """The error code of one transactional id's DescribeTransactions, read from the frame:
    kio's reader refuses the start time -1 (none) that Kafka, and the gateway, send with it."""
    wire.send(request(DESCRIBE_TXNS, 0, transactional_ids=[tid]))
    body = wire.receive_raw()
    # correlation id, header tags (0), throttle_time_ms, states: compact array of 1 (2), error_code
    assert body[4:5] == b"\0" and body[9:10] == b"\x02"
    return struct.unpack_from(">h", body, 10)[0]


@pytest.mark.parametrize("versions", [lowest(), highest()], ids=["lowest", "highest"])
def test_a_transaction_over_kafka_requests_commits_offsets_admin_sees(wire, control, broker, versions):
    tid, group = f"gw-txn-{versions[END_TXN]}", f"gw-group-{versions[END_TXN]}"
    producer = init(control, tid)
    pid, epoch = producer.producer_id, producer.producer_epoch
    assert add_partitions(wire, versions[ADD_PARTITIONS], tid, pid, epoch, [("txn-out", 0)]) == {("txn-out", 0): 0}
    t = describe(wire, tid)
    assert (t.error_code, t.transaction_state, t.producer_id, t.producer_epoch) == (ErrorCode.none, "Ongoing", pid,
                                                                                   epoch)
    assert [(d.topic, list(d.partitions)) for d in t.topics] == [("txn-out", [0])]
    assert t.transaction_timeout.total_seconds() == 60 and t.transaction_start_time.timestamp() > 0
    with Admin(broker.socket_path) as admin:
        same = admin.describe_transactions([tid])[tid]
        assert (same.state, same.producer_id, same.partitions) == ("Ongoing", pid, [("txn-out", 0)])
        assert same.start_time_ms == round(t.transaction_start_time.timestamp() * 1000)

    listed = wire.call(request(LIST_TXNS, versions[LIST_TXNS], state_filters=["Ongoing"], producer_id_filters=[],
                               duration_filter=-1, transactional_id_pattern=f"gw-txn-{versions[END_TXN]}"))
    assert listed.error_code == ErrorCode.none
    assert [(x.transactional_id, x.producer_id, x.transaction_state) for x in listed.transaction_states] == [
        (tid, pid, "Ongoing")]

    add_offsets = wire.call(request(ADD_OFFSETS, versions[ADD_OFFSETS], transactional_id=tid, producer_id=pid,
                                    producer_epoch=epoch, group_id=group))
    assert add_offsets.error_code == ErrorCode.none
    committed = wire.call(request(TXN_OFFSET_COMMIT, versions[TXN_OFFSET_COMMIT], transactional_id=tid,
                                  group_id=group, producer_id=pid, producer_epoch=epoch, generation_id=-1,
                                  member_id="", group_instance_id=None, topics=[dict(name="txn-out", partitions=[
                                      dict(partition_index=0, committed_offset=42, committed_leader_epoch=-1,
                                           committed_metadata="m")])]))
    assert [(t.name, p.partition_index, p.error_code) for t in committed.topics for p in t.partitions] == [
        ("txn-out", 0, ErrorCode.none)]

    end = wire.call(request(END_TXN, versions[END_TXN], transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                            committed=True))
    assert end.error_code == ErrorCode.none
    if versions[END_TXN] >= 5:
        assert (end.producer_id, end.producer_epoch) == (pid, epoch)     # no epoch bump: transaction.version 1
    wait_until(lambda: describe(wire, tid).transaction_state == "CompleteCommit", timeout=15,
               what="the commit's markers")
    with Admin(broker.socket_path) as admin:
        assert admin.list_group_offsets(group) == {("txn-out", 0): (42, "m")}


@pytest.mark.parametrize("versions", [lowest(), highest()], ids=["lowest", "highest"])
def test_transaction_errors_map_to_kafka_codes(wire, control, versions):
    tid = f"gw-bad-{versions[END_TXN]}"
    producer = init(control, tid)
    pid, epoch = producer.producer_id, producer.producer_epoch
    v = versions[ADD_PARTITIONS]
    assert add_partitions(wire, v, tid, pid + 1, epoch, [("txn-out", 0)]) == {
        ("txn-out", 0): ErrorCode.invalid_producer_id_mapping}
    assert add_partitions(wire, v, "never-initialised", pid, epoch, [("txn-out", 1)]) == {
        ("txn-out", 1): ErrorCode.invalid_producer_id_mapping}
    assert set(add_partitions(wire, v, tid, pid, epoch, [("never-was", 0), ("txn-out", 0)]).values()) - {
        ErrorCode.operation_not_attempted} == {ErrorCode.unknown_topic_or_partition}
    end = wire.call(request(END_TXN, versions[END_TXN], transactional_id=tid, producer_id=pid,
                            producer_epoch=epoch + 1, committed=False))
    assert end.error_code in (ErrorCode.producer_fenced, ErrorCode.invalid_producer_epoch)
    assert describe_error(wire, "never-initialised") == ErrorCode.transactional_id_not_found
    bad = wire.call(request(LIST_TXNS, versions[LIST_TXNS], state_filters=["Sleeping"], producer_id_filters=[],
                            duration_filter=-1, transactional_id_pattern=None))
    assert list(bad.unknown_state_filters) == ["Sleeping"]
    if versions[LIST_TXNS] >= 2:
        broken = wire.call(request(LIST_TXNS, versions[LIST_TXNS], state_filters=[], producer_id_filters=[],
                                   duration_filter=-1, transactional_id_pattern="gw-(("))
        assert broken.error_code == ErrorCode.invalid_regular_expression


def test_add_partitions_v4_verifies_and_aborts(wire, control):
    tid = "gw-verify"
    producer = init(control, tid)
    pid, epoch = producer.producer_id, producer.producer_epoch
    top = table()[ADD_PARTITIONS].max_version
    assert add_partitions(wire, top, tid, pid, epoch, [("txn-out", 0)], verify_only=True) == {
        ("txn-out", 0): ErrorCode.invalid_txn_state}                      # not in a transaction yet
    assert add_partitions(wire, top, tid, pid, epoch, [("txn-out", 0)]) == {("txn-out", 0): ErrorCode.none}
    assert add_partitions(wire, top, tid, pid, epoch, [("txn-out", 0), ("txn-out", 1)], verify_only=True) == {
        ("txn-out", 0): ErrorCode.none, ("txn-out", 1): ErrorCode.invalid_txn_state}
    assert add_partitions(wire, top, tid, pid, epoch + 1, [("txn-out", 0)], verify_only=True) == {
        ("txn-out", 0): ErrorCode.producer_fenced}
    end = wire.call(request(END_TXN, 0, transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=False))
    assert end.error_code == ErrorCode.none
    wait_until(lambda: describe(wire, tid).transaction_state == "CompleteAbort", timeout=15, what="the abort")
