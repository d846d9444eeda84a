"""The transaction coordinator in a real broker: InitProducerId with a transactional id,
AddPartitionsToTxn, AddOffsetsToTxn, Describe/ListTransactions, fencing, the state kept
in __transaction_state across a restart, and the internal topic itself. (EndTxn's
markers need the partition leaders' side: test_txn_end.py.)"""
import pytest
from support.broker import BrokerProcess, wait_until
from support.txn_client import (
    add, add_offsets, begin, call, create_topic, describe, fetch_offsets, init, listed, txn_commit_offsets)

from odradek.client.admin import Admin
from odradek.client.errors import (
    ConcurrentTransactions, InvalidProducerIdMapping, InvalidRequest, InvalidTopic, InvalidTransactionTimeout,
    InvalidTxnState, ProducerFenced, UnknownTopicOrPartition, UnstableOffsetCommit)
from odradek.client.protocol import ControlClient, messages as m


@pytest.fixture
def client(broker):
    with ControlClient(broker.socket_path, timeout=10) as c:
        create_topic(c, "t", 3)
        yield c


def test_a_transaction_is_opened_and_shown(client):
    r = init(client, "app-1", 30_000)
    assert r.producer_epoch == 0
    errors = add(client, "app-1", r.producer_id, r.producer_epoch, [("t", 0), ("t", 2)])
    assert set(errors.values()) == {0}
    add_offsets(client, "app-1", r, "g")
    d = describe(client, "app-1")
    assert (d.error_code, d.transaction_state, d.producer_id, d.producer_epoch, d.transaction_timeout_ms) == \
        (0, "Ongoing", r.producer_id, 0, 30_000)
    assert sorted((t.name, p) for t in d.topics for p in t.partition_indexes) == [
        ("__consumer_offsets", 0), ("t", 0), ("t", 2)]
    init(client, "idle")
    assert listed(client) == {"app-1": "Ongoing", "idle": "Empty"}
    assert listed(client, state_filters=["Ongoing"]) == {"app-1": "Ongoing"}
    assert listed(client, producer_id_filters=[r.producer_id]) == {"app-1": "Ongoing"}
    assert describe(client, "nobody").error_code == 105     # TRANSACTIONAL_ID_NOT_FOUND


def test_bad_requests_get_kafkas_errors_and_change_nothing(client):
    with pytest.raises(InvalidTransactionTimeout):
        call(client, m.InitProducerIdRequest(transactional_id="x", transaction_timeout_ms=900_001))
    with pytest.raises(InvalidRequest):
        call(client, m.InitProducerIdRequest(transactional_id="", transaction_timeout_ms=1000))
    r = init(client, "x")
    assert add(client, "x", r.producer_id, r.producer_epoch, [("t", 7)]) == {("t", 7): UnknownTopicOrPartition.code}
    assert add(client, "x", r.producer_id + 1, r.producer_epoch, [("t", 0)]) == {
        ("t", 0): InvalidProducerIdMapping.code}
    assert describe(client, "x").transaction_state == "Empty"


def test_a_second_instance_fences_the_first(client):
    first = init(client, "app")
    second = init(client, "app")
    assert (second.producer_id, second.producer_epoch) == (first.producer_id, 1)
    assert add(client, "app", first.producer_id, first.producer_epoch, [("t", 0)]) == {("t", 0): ProducerFenced.code}
    assert add(client, "app", second.producer_id, second.producer_epoch, [("t", 0)]) == {("t", 0): 0}
    # a third instance finds the transaction open: it is aborted under a bumped epoch first
    with pytest.raises(ConcurrentTransactions):
        client.call(m.InitProducerIdRequest(transactional_id="app", transaction_timeout_ms=60_000))
    d = describe(client, "app")
    assert (d.transaction_state, d.producer_epoch) == ("PrepareAbort", 2)
    with pytest.raises(ProducerFenced):
        client.call(m.EndTxnRequest(transactional_id="app", producer_id=second.producer_id,
                                    producer_epoch=second.producer_epoch, committed=True))


def test_the_idempotent_path_is_unchanged(client):
    r, _ = client.call(m.InitProducerIdRequest())
    assert r.producer_epoch == 0
    again, _ = client.call(m.InitProducerIdRequest(producer_id=r.producer_id, producer_epoch=0))
    assert (again.producer_id, again.producer_epoch) == (r.producer_id, 1)
    t = init(client, "tx")
    assert t.producer_id != r.producer_id                      # one allocator for both


def test_transaction_state_survives_a_restart(tmp_path):
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 2)
            r = begin(c, "open", [("t", 1)])
            idle = init(c, "idle")
            before = describe(c, "open")
        assert b.stop() == 0
        b = BrokerProcess(tmp_path / "data").start()
        with ControlClient(b.socket_path, timeout=10) as c:
            after = describe(c, "open")
            assert after == before
            bumped = init(c, "idle")
            assert (bumped.producer_id, bumped.producer_epoch) == (idle.producer_id, idle.producer_epoch + 1)
            fresh = init(c, "new")
            assert fresh.producer_id > max(r.producer_id, idle.producer_id)   # ids are never handed out twice
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def test_the_internal_topic_is_created_compacted_and_cannot_be_deleted(client, broker):
    md, _ = client.call(m.MetadataRequest(topics=["__transaction_state"]))
    assert md.topics[0].is_internal and len(md.topics[0].partitions) == 1
    configs, _ = client.call(m.DescribeConfigsRequest(resources=[m.DescribeConfigsResource(
        resource_type=m.ConfigResourceType.TOPIC, resource_name="__transaction_state",
        configuration_keys=["cleanup.policy"])]))
    assert configs.results[0].configs[0].value == "compact"
    with Admin(socket_path=broker.socket_path) as admin:
        with pytest.raises(InvalidTopic):
            admin.delete_topic("__transaction_state")
    found, _ = client.call(m.FindCoordinatorRequest(key="app", key_type=m.CoordinatorType.TRANSACTION))
    assert found.node_id == 0
    versions, _ = client.call(m.ApiVersionsRequest())
    served = {v.api_key for v in versions.api_keys}
    assert {24, 25, 26, 28, 65, 66} <= served and 1010 not in served


def test_the_brokers_timers_abort_timed_out_transactions_and_expire_idle_ids(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=[
        "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=100",
        "--override", "transactional.id.expiration.ms=1000",
        "--override", "transaction.remove.expired.transaction.cleanup.interval.ms=100"]).start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 1)
            r = begin(c, "abandoned", [("t", 0)], timeout_ms=300)
            init(c, "idle")
            # the abort is decided and written (its markers need the leaders' side: test_txn_end.py)
            aborted = wait_until(lambda: describe(c, "abandoned").transaction_state in ("PrepareAbort", "CompleteAbort")
                                 and describe(c, "abandoned"), 10, what="the timed-out transaction to be aborted")
            assert aborted.producer_epoch == r.producer_epoch + 1
            wait_until(lambda: describe(c, "idle").error_code == 105, 10, what="the idle id to expire")
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def test_offsets_committed_in_an_open_transaction_stay_apart_across_a_restart(tmp_path):
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 2)
            r = begin(c, "app", [("t", 0)])
            add_offsets(c, "app", r, "g")
            assert txn_commit_offsets(c, "app", r.producer_id, r.producer_epoch, "g", {("t", 1): 42}) == {("t", 1): 0}
            assert fetch_offsets(c, "g", "t", [1]) == {("t", 1): (-1, 0)}
            assert fetch_offsets(c, "g", "t", [1], require_stable=True) == {("t", 1): (-1, UnstableOffsetCommit.code)}
        assert b.stop() == 0
        b = BrokerProcess(tmp_path / "data").start()
        with ControlClient(b.socket_path, timeout=10) as c:   # loaded as a transaction still open
            assert fetch_offsets(c, "g", "t", [1], require_stable=True) == {("t", 1): (-1, UnstableOffsetCommit.code)}
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def test_offsets_are_refused_outside_the_transaction_and_from_a_zombie(client):
    r = begin(client, "app", [("t", 0)])
    with pytest.raises(InvalidTxnState):                       # AddOffsetsToTxn first
        txn_commit_offsets(client, "app", r.producer_id, r.producer_epoch, "g", {("t", 1): 1})
    init(client, "idle")
    newer = init(client, "idle")
    with pytest.raises(ProducerFenced):
        txn_commit_offsets(client, "idle", newer.producer_id, newer.producer_epoch - 1, "g", {("t", 1): 1})
    assert fetch_offsets(client, "g", "t", [1], require_stable=True) == {("t", 1): (-1, 0)}
