"""EndTxn end to end: the coordinator's markers written by the partitions' leaders.

These tests need both halves of issue 12's first step: the transaction coordinator
(daemon/broker/txn, txn_shell.py) and the leader workers' WriteTxnMarker handling (a
control batch per partition). Until both are merged, the leaders answer WriteTxnMarker
with UNKNOWN_TOPIC_OR_PARTITION and the coordinator keeps retrying: these fail."""
import os
import signal

import psutil
import pytest
from support.broker import BrokerProcess, wait_until
from support.txn_client import (
    add, add_offsets, begin, call, create_topic, describe, fetch_offsets, init, leader_pid, txn_commit_offsets)

from odradek.client.errors import ConcurrentTransactions, InvalidTxnState, ProducerFenced
from odradek.client.protocol import ControlClient, messages as m

END_WAIT_S = 15


def end_offsets(client, partitions):
    """{(topic, partition): high watermark}."""
    topics = {}
    for t, p in partitions:
        topics.setdefault(t, []).append(m.ListOffsetsPartition(partition_index=p, timestamp=m.LATEST_TIMESTAMP))
    response, _ = client.call(m.ListOffsetsRequest(topics=[m.ListOffsetsTopic(name=t, partitions=ps)
                                                           for t, ps in topics.items()]))
    return {(t.name, p.partition_index): p.offset for t in response.topics for p in t.partitions}


def wait_state(client, tid, state):
    return wait_until(lambda: describe(client, tid).transaction_state == state, END_WAIT_S,
                      what=f"{tid} to be {state}")


@pytest.fixture
def client(broker):
    with ControlClient(broker.socket_path, timeout=10) as c:
        create_topic(c, "t", 2)
        yield c


@pytest.mark.parametrize("commit", [True, False])
def test_end_writes_a_marker_to_every_partition_then_completes(client, commit):
    r = init(client, "app")
    parts = [("t", 0), ("t", 1), ("__consumer_offsets", 0)]
    add(client, "app", r.producer_id, r.producer_epoch, [("t", 0), ("t", 1)])
    add_offsets(client, "app", r, "g")
    before = wait_until(lambda: end_offsets(client, parts), what="the partitions' offsets")
    call(client, m.EndTxnRequest(transactional_id="app", producer_id=r.producer_id,
                                 producer_epoch=r.producer_epoch, committed=commit))
    wait_state(client, "app", "CompleteCommit" if commit else "CompleteAbort")
    after = end_offsets(client, parts)
    assert {tp: after[tp] - before[tp] for tp in parts} == dict.fromkeys(parts, 1)   # one marker each
    call(client, m.EndTxnRequest(transactional_id="app", producer_id=r.producer_id,
                                 producer_epoch=r.producer_epoch, committed=commit))   # a retry: fine
    with pytest.raises(InvalidTxnState):
        client.call(m.EndTxnRequest(transactional_id="app", producer_id=r.producer_id,
                                    producer_epoch=r.producer_epoch, committed=not commit))


def test_a_new_instance_aborts_the_old_ones_transaction_and_gets_the_epoch_after(client):
    old = init(client, "app")
    add(client, "app", old.producer_id, old.producer_epoch, [("t", 0)])
    with pytest.raises(ConcurrentTransactions):
        client.call(m.InitProducerIdRequest(transactional_id="app", transaction_timeout_ms=60_000))
    new = init(client, "app")                 # retried until the abort's markers are written
    assert (new.producer_id, new.producer_epoch) == (old.producer_id, old.producer_epoch + 2)
    assert describe(client, "app").transaction_state == "Empty"     # aborted, then the new epoch written
    with pytest.raises(ProducerFenced):
        client.call(m.EndTxnRequest(transactional_id="app", producer_id=old.producer_id,
                                    producer_epoch=old.producer_epoch, committed=True))


def test_an_abandoned_transaction_is_aborted_after_its_timeout(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=[
        "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=100"]).start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 1)
            r = begin(c, "app", [("t", 0)], timeout_ms=300)
            wait_state(c, "app", "CompleteAbort")
            assert describe(c, "app").producer_epoch == r.producer_epoch + 1
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def test_a_commit_cut_by_a_broker_crash_is_completed_after_the_restart(tmp_path):
    """PrepareCommit is durable, the marker is not (the partition's leader is stopped):
    SIGKILL the broker; the restarted coordinator finds PrepareCommit and completes it."""
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 1)
            r = begin(c, "app", [("t", 0)])
            before = wait_until(lambda: end_offsets(c, [("t", 0)]), what="t-0's offsets")[("t", 0)]
            b.workers()                                    # the test's record of them, to reap
            stuck = leader_pid(c, "t", 0)
            os.kill(stuck, signal.SIGSTOP)                 # it cannot write the marker
            call(c, m.EndTxnRequest(transactional_id="app", producer_id=r.producer_id,
                                    producer_epoch=r.producer_epoch, committed=True))
            assert describe(c, "app").transaction_state == "PrepareCommit"
        b.kill()                                           # its workers die with it (PDEATHSIG)
        wait_until(lambda: not psutil.pid_exists(stuck) or psutil.Process(stuck).status() == psutil.STATUS_ZOMBIE,
                   10, what="the stopped leader to die with the broker")
        b = BrokerProcess(tmp_path / "data").start()
        with ControlClient(b.socket_path, timeout=10) as c:
            wait_state(c, "app", "CompleteCommit")
            assert end_offsets(c, [("t", 0)])[("t", 0)] == before + 1
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def offsets_transaction(client):
    """Topic t (2 partitions) and a transaction of "app" open on t-0 that may commit
    offsets of group g: its InitProducerId answer."""
    create_topic(client, "t", 2)
    r = begin(client, "app", [("t", 0)])
    add_offsets(client, "app", r, "g")
    return r


@pytest.mark.parametrize("commit", [True, False])
def test_offsets_sent_in_a_transaction_count_only_if_it_commits_and_after_a_restart_too(tmp_path, commit):
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            r = offsets_transaction(c)
            txn_commit_offsets(c, "app", r.producer_id, r.producer_epoch, "g", {("t", 1): 42})
            call(c, m.EndTxnRequest(transactional_id="app", producer_id=r.producer_id,
                                    producer_epoch=r.producer_epoch, committed=commit))
            wait_state(c, "app", "CompleteCommit" if commit else "CompleteAbort")
            expected = {("t", 1): (42 if commit else -1, 0)}
            assert fetch_offsets(c, "g", "t", [1], require_stable=True) == expected
        assert b.stop() == 0
        b = BrokerProcess(tmp_path / "data").start()
        with ControlClient(b.socket_path, timeout=10) as c:     # the marker in __consumer_offsets decides
            assert fetch_offsets(c, "g", "t", [1], require_stable=True) == expected
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()


def plain_commit(client, group, offsets):
    """A standalone OffsetCommit of {(topic, partition): offset}."""
    topics = {}
    for (t, p), offset in sorted(offsets.items()):
        topics.setdefault(t, []).append(m.OffsetCommitRequestPartition(partition_index=p, committed_offset=offset))
    response = call(client, m.OffsetCommitRequest(group_id=group, topics=[
        m.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in topics.items()]))
    assert {p.error_code for t in response.topics for p in t.partitions} == {0}


def test_a_transactional_offset_counts_only_if_no_plain_commit_came_after_it_in_the_log_and_after_a_restart(
        tmp_path):
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            r = offsets_transaction(c)
            plain_commit(c, "g", {("t", 0): 7})                           # before the transaction's offsets
            txn_commit_offsets(c, "app", r.producer_id, r.producer_epoch, "g", {("t", 0): 9, ("t", 1): 42})
            plain_commit(c, "g", {("t", 1): 50})                          # after them, before the marker
            call(c, m.EndTxnRequest(transactional_id="app", producer_id=r.producer_id,
                                    producer_epoch=r.producer_epoch, committed=True))
            wait_state(c, "app", "CompleteCommit")
            expected = {("t", 0): (9, 0), ("t", 1): (50, 0)}
            assert {**fetch_offsets(c, "g", "t", [0]), **fetch_offsets(c, "g", "t", [1])} == expected
        assert b.stop() == 0
        b = BrokerProcess(tmp_path / "data").start()
        with ControlClient(b.socket_path, timeout=10) as c:     # replayed from __consumer_offsets
            assert {**fetch_offsets(c, "g", "t", [0]), **fetch_offsets(c, "g", "t", [1])} == expected
        assert b.stop() == 0
        assert not b.leftovers()
    finally:
        b.kill()
