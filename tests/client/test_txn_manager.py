"""The transactional producer's state machine (client/txn_manager.py), driven by hand: each
operation's actions are answered here, time is a number passed in (a fake clock)."""
import pytest
from support.clock import FakeClock

from odradek.client.errors import (ConcurrentTransactions, CoordinatorLoadInProgress, IllegalGeneration,
                                   IllegalState, InvalidProducerEpoch, InvalidTxnState, NotEnoughReplicas,
                                   ProducerFenced, RequestTimedOut)
from odradek.client.message import GroupMetadata, TopicPartition
from odradek.client.protocol import messages as m
from odradek.client.txn_manager import Done, Flush, Purge, Request, TxnManager, TxnState, Wait

S = TxnState
GROUP = GroupMetadata("g", 3, "member-1", None)


class Driver:
    """A TxnManager and a clock in seconds (FakeClock counts ms)."""

    def __init__(self):
        self.clock = FakeClock(start=0)
        self.txn = TxnManager("app", 10_000)

    @property
    def now(self):
        return self.clock.now / 1000

    def step(self, outcome, after_ms=0):
        self.clock.advance(after_ms)
        return self.txn.step(outcome, self.now)

    def ready(self):
        action = self.txn.start_init(self.now, 5)
        assert action == Request(m.InitProducerIdRequest(transactional_id="app", transaction_timeout_ms=10_000))
        assert self.step(m.InitProducerIdResponse(producer_id=7, producer_epoch=2)) == Done((7, 2))
        return self

    def in_txn(self, *partitions):
        self.ready()
        self.txn.begin()
        if partitions:
            assert isinstance(self.txn.start_add(partitions, self.now, 5), Request)
            assert self.step(added(*partitions)) == Done()
        return self


def added(*partitions, code=0):
    by_topic = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(m.AddPartitionsToTxnPartitionResult(partition_index=p, error_code=code))
    return m.AddPartitionsToTxnResponse(results=[m.AddPartitionsToTxnTopicResult(name=t, results=rs)
                                                 for t, rs in by_topic.items()])


@pytest.fixture
def d():
    return Driver()


def test_init_then_begin_add_commit_walks_kafkas_states(d):
    assert d.txn.state is S.UNINITIALIZED
    d.txn.start_init(d.now, 5)
    assert d.txn.state is S.INITIALIZING
    d.step(m.InitProducerIdResponse(producer_id=7, producer_epoch=2))
    assert (d.txn.state, d.txn.producer_id, d.txn.producer_epoch) == (S.READY, 7, 2)
    d.txn.begin()
    assert d.txn.state is S.IN_TRANSACTION
    request = d.txn.start_add([("t", 1), ("t", 0)], d.now, 5).request
    assert (request.producer_id, request.producer_epoch) == (7, 2)
    assert [(t.name, t.partitions) for t in request.topics] == [("t", [0, 1])]
    d.step(added(("t", 0), ("t", 1)))
    assert d.txn.start_add([("t", 0)], d.now, 5) == Done()      # once per partition per transaction
    assert d.txn.start_commit(d.now, 5) == Flush(5)
    assert d.txn.state is S.COMMITTING_TRANSACTION
    end = d.step(0).request
    assert isinstance(end, m.EndTxnRequest) and end.committed and (end.producer_id, end.producer_epoch) == (7, 2)
    assert d.step(m.EndTxnResponse()) == Done()
    assert (d.txn.state, d.txn.partitions, d.txn.started) == (S.READY, set(), False)


def test_a_transaction_that_added_nothing_commits_without_asking_the_coordinator(d):
    d.in_txn()
    assert d.txn.start_commit(d.now, 5) == Flush(5)
    assert d.step(0) == Done() and d.txn.state is S.READY


def test_abort_purges_waits_for_what_was_sent_then_ends_with_an_abort(d):
    d.in_txn(("t", 0))
    assert d.txn.start_abort(d.now, 5) == Purge()
    assert d.step(None, after_ms=1000) == Flush(4)        # the rest of the timeout
    end = d.step(0).request
    assert isinstance(end, m.EndTxnRequest) and not end.committed
    assert d.step(m.EndTxnResponse()) == Done() and d.txn.state is S.READY


@pytest.mark.parametrize("call", ["begin", "commit", "abort", "offsets", "produce"])
def test_calls_out_of_order_raise_illegal_state_and_change_nothing(d, call):
    start = {"begin": lambda: d.txn.begin(), "commit": lambda: d.txn.start_commit(d.now, 5),
             "abort": lambda: d.txn.start_abort(d.now, 5), "produce": d.txn.check_produce,
             "offsets": lambda: d.txn.start_send_offsets([TopicPartition("t", 0, 5)], GROUP, d.now, 5)}[call]
    with pytest.raises(IllegalState, match="init_transactions"):
        start()
    assert d.txn.state is S.UNINITIALIZED
    d.ready()
    if call != "begin":
        with pytest.raises(IllegalState, match="begin_transaction"):
            start()
        assert d.txn.state is S.READY
    else:
        d.txn.begin()
        with pytest.raises(IllegalState, match="a transaction is open"):
            d.txn.begin()                                  # begin twice
        assert d.txn.state is S.IN_TRANSACTION


def test_init_twice_is_illegal_state(d):
    d.ready()
    with pytest.raises(IllegalState, match="READY"):
        d.txn.start_init(d.now, 5)


def test_retriable_answers_are_retried_after_a_backoff_until_the_timeout(d):
    d.txn.start_init(d.now, 1)
    waits = []
    for _ in range(7):
        waits.append(d.step(ConcurrentTransactions("aborting the previous instance's")).seconds)
        assert isinstance(d.step(None, after_ms=waits[-1] * 1000), Request)
    assert waits == [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016]
    with pytest.raises(RequestTimedOut) as e:
        d.step(CoordinatorLoadInProgress("loading"), after_ms=1000)
    assert e.value.retriable and not e.value.fatal and d.txn.state is S.INITIALIZING
    d.txn.start_init(d.now, 1)                              # called again, it resumes
    d.step(m.InitProducerIdResponse(producer_id=7, producer_epoch=0))
    assert d.txn.state is S.READY


def test_a_commit_whose_records_are_not_delivered_in_time_is_retriable_and_resumes(d):
    d.in_txn(("t", 0))
    d.txn.start_commit(d.now, 1)
    with pytest.raises(RequestTimedOut, match="3 records") as e:
        d.step(3)
    assert e.value.retriable and d.txn.state is S.COMMITTING_TRANSACTION
    assert d.txn.start_commit(d.now, 1) == Flush(1)
    assert isinstance(d.step(0).request, m.EndTxnRequest)


@pytest.mark.parametrize("fenced", [ProducerFenced, InvalidProducerEpoch])
def test_fenced_is_fatal_and_every_later_call_raises_it(d, fenced):
    d.in_txn(("t", 0))
    d.txn.start_commit(d.now, 5)
    d.step(0)
    with pytest.raises(fenced) as e:
        d.step(fenced("a newer instance"))
    assert e.value.fatal and not e.value.retriable and not e.value.txn_requires_abort
    assert d.txn.state is S.FATAL_ERROR
    for call in (d.txn.begin, d.txn.check_produce, lambda: d.txn.start_abort(d.now, 5)):
        with pytest.raises(fenced) as again:
            call()
        assert again.value is e.value


def test_a_fenced_batch_is_fatal_too(d):
    d.in_txn(("t", 0))
    d.txn.batch_failed(InvalidProducerEpoch("t-0: the producer epoch is old"))
    assert d.txn.state is S.FATAL_ERROR and d.txn.error.fatal


def test_a_failed_batch_makes_the_transaction_abortable_then_abort_recovers(d):
    d.in_txn(("t", 0))
    d.txn.batch_failed(NotEnoughReplicas("t-0"))
    assert d.txn.state is S.ABORTABLE_ERROR
    for call in (d.txn.check_produce, lambda: d.txn.start_commit(d.now, 5)):
        with pytest.raises(NotEnoughReplicas) as e:
            call()
        assert e.value.txn_requires_abort and not e.value.fatal and not e.value.retriable
    assert d.txn.start_abort(d.now, 5) == Purge()
    d.step(None)
    d.step(0)
    d.step(m.EndTxnResponse())
    assert d.txn.state is S.READY
    d.txn.begin()


def test_a_batch_failing_during_the_commits_flush_fails_the_commit_as_abortable(d):
    d.in_txn(("t", 0))
    d.txn.start_commit(d.now, 5)
    d.txn.batch_failed(NotEnoughReplicas("t-0"))
    with pytest.raises(NotEnoughReplicas) as e:
        d.step(0)
    assert e.value.txn_requires_abort and d.txn.state is S.ABORTABLE_ERROR


def test_a_batch_failing_while_aborting_changes_nothing(d):
    d.in_txn(("t", 0))
    d.txn.start_abort(d.now, 5)
    d.txn.batch_failed(NotEnoughReplicas("t-0"))
    assert d.txn.state is S.ABORTING_TRANSACTION


def test_send_offsets_adds_the_group_then_commits_its_offsets_in_the_transaction(d):
    d.in_txn()
    add = d.txn.start_send_offsets([TopicPartition("in", 0, 42), TopicPartition("in", 1, 7)], GROUP, d.now, 5)
    assert add.request == m.AddOffsetsToTxnRequest(transactional_id="app", producer_id=7, producer_epoch=2,
                                                   group_id="g")
    commit = d.step(m.AddOffsetsToTxnResponse()).request
    assert (commit.group_id, commit.generation_id, commit.member_id) == ("g", 3, "member-1")
    assert [(p.partition_index, p.committed_offset) for p in commit.topics[0].partitions] == [(0, 42), (1, 7)]
    ok = m.TxnOffsetCommitResponse(topics=[m.TxnOffsetCommitResponseTopic(name="in", partitions=[
        m.TxnOffsetCommitResponsePartition(partition_index=0), m.TxnOffsetCommitResponsePartition(partition_index=1)])])
    assert d.step(ok) == Done()
    assert d.txn.started           # so the commit sends EndTxn
    d.txn.start_commit(d.now, 5)
    assert isinstance(d.step(0).request, m.EndTxnRequest)


def test_offsets_refused_by_a_group_that_moved_on_make_the_transaction_abortable(d):
    d.in_txn()
    d.txn.start_send_offsets([TopicPartition("in", 0, 42)], GROUP, d.now, 5)
    d.step(m.AddOffsetsToTxnResponse())
    refused = m.TxnOffsetCommitResponse(topics=[m.TxnOffsetCommitResponseTopic(name="in", partitions=[
        m.TxnOffsetCommitResponsePartition(partition_index=0, error_code=IllegalGeneration.code)])])
    with pytest.raises(IllegalGeneration) as e:
        d.step(refused)
    assert e.value.txn_requires_abort and d.txn.state is S.ABORTABLE_ERROR


def test_a_partition_the_coordinator_refuses_is_fatal_and_not_added(d):
    d.in_txn()
    d.txn.start_add([("t", 0)], d.now, 5)
    with pytest.raises(InvalidTxnState) as e:
        d.step(added(("t", 0), code=InvalidTxnState.code))
    assert e.value.fatal and d.txn.partitions == set() and d.txn.state is S.FATAL_ERROR


def test_a_retriable_add_is_retried_then_the_partition_joins(d):
    d.in_txn()
    d.txn.start_add([("t", 0)], d.now, 5)
    assert d.step(added(("t", 0), code=ConcurrentTransactions.code)) == Wait(0.00025)
    assert isinstance(d.step(None, after_ms=20), Request)
    assert d.step(added(("t", 0))) == Done() and d.txn.partitions == {("t", 0)}
