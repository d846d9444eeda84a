"""The transaction coordinator's rules (Kafka's TransactionCoordinator), with a fake clock:
InitProducerId and fencing, AddPartitionsToTxn / AddOffsetsToTxn, EndTxn and its markers,
failed writes, and the answers to bad input."""
import pytest
from support.txn import Harness, partition_errors

from odradek.client.errors import (
    ConcurrentTransactions, CoordinatorNotAvailable, InvalidGroupId, InvalidProducerIdMapping, InvalidRequest,
    InvalidTransactionTimeout, InvalidTxnState, LeaderNotAvailable, NotCoordinator, NotLeaderOrFollower,
    OperationNotAttempted, ProducerFenced, UnknownTopicOrPartition)
from odradek.daemon.broker.txn import TxnConfig
from odradek.daemon.broker.txn import transaction_log as tlog


def last_record(h, tid="tx"):
    key, value = h.log[-1]
    assert tlog.decode_key(key) == tid
    return None if value is None else tlog.decode_value(value)


# ---- InitProducerId ---------------------------------------------------------------------

def test_a_new_transactional_id_gets_a_new_producer_id_at_epoch_0_written_empty(h):
    r = h.init("tx", 30_000).ok()
    assert (r.producer_id, r.producer_epoch) == (1000, 0)
    rec = last_record(h)
    assert (rec.producer_id, rec.producer_epoch, rec.timeout_ms, rec.status, rec.partitions, rec.start_ms) == \
        (1000, 0, 30_000, 0, frozenset(), -1)
    assert h.state() == "Empty" and h.meta().timeout_ms == 30_000


def test_init_again_bumps_the_epoch_and_fences_the_previous_instance(h):
    pid, epoch = h.producer()
    r = h.init().ok()
    assert (r.producer_id, r.producer_epoch) == (pid, epoch + 1)
    assert set(partition_errors(h.add(pid, epoch, [("t", 0)]).ok()).values()) == {ProducerFenced.code}
    assert h.end(pid, epoch, commit=False).error() is ProducerFenced
    assert h.state() == "Empty"


def test_a_producer_recovering_with_its_id_and_epoch_keeps_its_id_and_a_retry_gets_the_same_epoch(h):
    pid, epoch = h.producer()
    r = h.init(pid=pid, epoch=epoch).ok()
    assert (r.producer_id, r.producer_epoch) == (pid, 1) and h.meta().last_producer_epoch == 0
    again = h.init(pid=pid, epoch=epoch).ok()   # the answer was lost: the same bump, not another
    assert (again.producer_id, again.producer_epoch) == (pid, 1)


def test_a_stale_epoch_or_another_producer_id_is_fenced(h):
    pid, _ = h.producer()
    h.init()
    h.init()                                   # epoch 2, previous -1 (new instances)
    assert h.init(pid=pid, epoch=0).error() is ProducerFenced
    assert h.init(pid=pid + 77, epoch=2).error() is ProducerFenced
    assert h.meta().producer_epoch == 2


def test_an_exhausted_epoch_gets_a_new_producer_id(h):
    pid, _ = h.producer()
    h.meta().producer_epoch = 32766
    r = h.init().ok()
    assert r.producer_id != pid and r.producer_epoch == 0
    assert h.meta().last_producer_id == pid


def test_an_exhausted_epoch_recovering_producer_gets_a_new_id_and_its_retry_too(h):
    pid, _ = h.producer()
    h.meta().producer_epoch = 32766
    r = h.init(pid=pid, epoch=32766).ok()
    assert r.producer_id != pid and r.producer_epoch == 0
    assert h.init(pid=pid, epoch=32766).ok().producer_id == r.producer_id   # the retry: recognised


@pytest.mark.parametrize("timeout", [0, -5, TxnConfig().max_timeout_ms + 1])
def test_a_timeout_outside_1_to_the_max_is_refused(h, timeout):
    assert h.init(timeout=timeout).error() is InvalidTransactionTimeout
    assert "tx" not in h.coord.txns and h.log == []


def test_the_max_timeout_is_the_brokers_setting():
    h = Harness(TxnConfig(max_timeout_ms=5000))
    assert h.init(timeout=5001).error() is InvalidTransactionTimeout
    assert h.init(timeout=5000).ok().producer_epoch == 0


def test_an_empty_transactional_id_is_an_invalid_request(h):
    assert h.init(tid="").error() is InvalidRequest


def test_init_while_a_commit_writes_its_markers_is_concurrent():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing()
    h.end(pid, epoch).ok()
    assert h.init().error() is ConcurrentTransactions
    h.answer()
    assert h.init().ok().producer_epoch == epoch + 1


# ---- fencing an open transaction ----------------------------------------------------------

def test_a_new_instance_aborts_the_open_transaction_first_and_is_told_to_retry():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0), ("u", 1)])
    first = h.init()
    assert first.error() is ConcurrentTransactions
    assert h.state() == "PrepareAbort" and h.meta().producer_epoch == epoch + 1
    assert last_record(h).status == 3 and last_record(h).producer_epoch == epoch + 1
    markers = [mk for _, mk in h.markers]
    assert {(mk.topic, mk.partition) for mk in markers} == {("t", 0), ("u", 1)}
    assert all(not mk.committed and mk.producer_epoch == epoch + 1 and mk.producer_id == pid for mk in markers)
    assert h.init().error() is ConcurrentTransactions        # still writing markers
    h.answer()
    assert h.state() == "CompleteAbort" and last_record(h).status == 5
    r = h.init().ok()
    assert (r.producer_id, r.producer_epoch) == (pid, epoch + 2)
    assert h.end(pid, epoch, commit=True).error() is ProducerFenced   # the zombie cannot commit


def test_a_fence_whose_record_fails_reuses_its_bumped_epoch_next_time():
    h = Harness(auto_persist=False)
    pid, epoch = h.ongoing([("t", 0)])
    call = h.init()
    h.flush(LeaderNotAvailable("no leader"))
    assert call.error() is CoordinatorNotAvailable
    assert h.state() == "Ongoing" and h.meta().pending is None and h.meta().failed_epoch_fence
    call = h.init()
    h.flush()
    assert call.error() is ConcurrentTransactions
    assert h.meta().producer_epoch == epoch + 1          # bumped once, not twice


# ---- AddPartitionsToTxn, AddOffsetsToTxn ----------------------------------------------------

def test_adding_partitions_starts_the_transaction_now_and_writes_them(h):
    pid, epoch = h.producer()
    h.clock.advance(500)
    assert set(partition_errors(h.add(pid, epoch, [("t", 1), ("t", 0)]).ok()).values()) == {0}
    assert h.state() == "Ongoing" and h.meta().start_ms == h.now
    rec = last_record(h)
    assert rec.status == 1 and rec.partitions == {("t", 0), ("t", 1)} and rec.start_ms == h.now
    written = len(h.log)
    h.clock.advance(100)
    h.add(pid, epoch, [("t", 0)]).ok()                   # already in: answered without a write
    assert len(h.log) == written
    h.add(pid, epoch, [("u", 0)]).ok()
    assert last_record(h).partitions == {("t", 0), ("t", 1), ("u", 0)}
    assert h.meta().start_ms == h.now - 100              # the same transaction


def test_adding_an_unknown_partition_changes_nothing_and_names_it(h):
    pid, epoch = h.producer()
    errors = partition_errors(h.add(pid, epoch, [("t", 0), ("t", 9), ("nope", 0)]).ok())
    assert errors == {("t", 0): OperationNotAttempted.code, ("t", 9): UnknownTopicOrPartition.code,
                      ("nope", 0): UnknownTopicOrPartition.code}
    assert h.state() == "Empty"


def test_adding_with_an_unknown_id_or_producer_is_an_invalid_mapping(h):
    assert set(partition_errors(h.add(5, 0, [("t", 0)], tid="ghost").ok()).values()) == {
        InvalidProducerIdMapping.code}
    pid, epoch = h.producer()
    assert set(partition_errors(h.add(pid + 1, epoch, [("t", 0)]).ok()).values()) == {
        InvalidProducerIdMapping.code}
    assert h.add_offsets(pid + 1, epoch).error() is InvalidProducerIdMapping
    assert h.state() == "Empty"


def test_add_offsets_adds_the_groups_offsets_partition(h):
    pid, epoch = h.producer()
    h.add_offsets(pid, epoch, "g").ok()
    assert h.meta().partitions == {("__consumer_offsets", 0)} and h.state() == "Ongoing"
    assert h.add_offsets(pid, epoch, "").error() is InvalidGroupId


def test_adding_to_a_transaction_that_is_ending_is_concurrent_and_to_a_completed_one_starts_the_next():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing()
    h.end(pid, epoch).ok()
    assert set(partition_errors(h.add(pid, epoch, [("u", 0)]).ok()).values()) == {ConcurrentTransactions.code}
    assert h.add_offsets(pid, epoch).error() is ConcurrentTransactions
    h.answer()
    h.clock.advance(10)
    h.add(pid, epoch, [("u", 0)]).ok()
    assert h.meta().partitions == {("u", 0)} and h.meta().start_ms == h.now


def test_a_failed_write_answers_retriably_and_changes_nothing():
    h = Harness(auto_persist=False)
    pid, epoch = h.producer()
    call = h.add(pid, epoch, [("t", 0)])
    h.flush(NotLeaderOrFollower("moved"))
    assert set(partition_errors(call.ok()).values()) == {NotCoordinator.code}
    assert h.state() == "Empty" and h.meta().pending is None and not h.meta().partitions
    call = h.add(pid, epoch, [("t", 0)])                  # the same request again: it can go on
    h.flush()
    assert set(partition_errors(call.ok()).values()) == {0} and h.state() == "Ongoing"


def test_a_request_while_a_write_is_under_way_is_concurrent():
    h = Harness(auto_persist=False)
    pid, epoch = h.producer()
    first = h.add(pid, epoch, [("t", 0)])
    second = h.add(pid, epoch, [("t", 1)])
    assert set(partition_errors(second.ok()).values()) == {ConcurrentTransactions.code}
    assert h.init().error() is ConcurrentTransactions
    h.flush()
    assert set(partition_errors(first.ok()).values()) == {0}


# ---- EndTxn ----------------------------------------------------------------------------

@pytest.mark.parametrize("commit", [True, False])
def test_end_writes_prepare_answers_then_markers_then_complete(commit):
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0), ("t", 1), ("u", 0)])
    call = h.end(pid, epoch, commit)
    assert call.ok() is not None                          # answered once Prepare is durable
    assert [r.status for r in map(tlog.decode_value, (v for _, v in h.log[-1:]))] == [2 if commit else 3]
    assert h.state() == ("PrepareCommit" if commit else "PrepareAbort")
    markers = [mk for _, mk in h.markers]
    assert sorted((mk.topic, mk.partition) for mk in markers) == [("t", 0), ("t", 1), ("u", 0)]
    assert all(mk.committed is commit and (mk.producer_id, mk.producer_epoch) == (pid, epoch) for mk in markers)
    h.answer(only={("t", 0)})
    described = h.describe("tx")[0]
    assert {(t.name, p) for t in described.topics for p in t.partition_indexes} == {("t", 1), ("u", 0)}
    assert h.end(pid, epoch, commit).error() is ConcurrentTransactions     # a retry while markers go out
    assert h.end(pid, epoch, not commit).error() is ConcurrentTransactions  # (Kafka: pending comes first)
    h.answer()
    assert h.state() == ("CompleteCommit" if commit else "CompleteAbort")
    rec = last_record(h)
    assert rec.status == (4 if commit else 5) and rec.partitions == frozenset()
    assert h.end(pid, epoch, commit).ok() is not None                      # a retry after: done
    assert h.end(pid, epoch, not commit).error() is InvalidTxnState


def test_end_without_an_open_transaction_is_an_invalid_state(h):
    pid, epoch = h.producer()
    assert h.end(pid, epoch, True).error() is InvalidTxnState
    assert h.end(pid, epoch, False).error() is InvalidTxnState


def test_end_with_bad_identity_is_refused(h):
    pid, epoch = h.ongoing()
    assert h.end(pid, epoch, tid="ghost").error() is InvalidProducerIdMapping
    assert h.end(pid + 1, epoch).error() is InvalidProducerIdMapping
    assert h.end(pid, epoch + 1).error() is ProducerFenced
    assert h.end(pid, epoch, tid="").error() is InvalidRequest
    assert h.state() == "Ongoing"


def test_a_failed_prepare_write_leaves_the_transaction_open():
    h = Harness(auto_persist=False)
    pid, epoch = h.ongoing([("t", 0)])
    call = h.end(pid, epoch)
    h.flush(LeaderNotAvailable("restarting"))
    assert call.error() is CoordinatorNotAvailable
    assert h.state() == "Ongoing" and h.markers == []
    call = h.end(pid, epoch)
    h.flush()
    assert call.ok() is not None and h.state() == "PrepareCommit"


def test_a_failed_complete_write_is_retried_until_it_is_written():
    h = Harness(auto_persist=False)
    pid, epoch = h.ongoing([("t", 0)])
    h.end(pid, epoch)
    h.flush()                                            # Prepare durable; the marker answered at once
    assert h.pending, "the Complete record is being written"
    h.flush(LeaderNotAvailable("restarting"))
    assert h.state() == "PrepareCommit" and h.meta().pending is not None
    due = h.coord.next_deadline()
    assert due == h.now + 100
    h.tick(99)
    assert not h.pending
    h.tick(1)
    assert h.pending
    h.flush()
    assert h.state() == "CompleteCommit" and h.meta().pending is None


def test_a_transaction_with_offsets_writes_a_marker_to_the_offsets_partition(h):
    pid, epoch = h.ongoing([("t", 2)])
    h.add_offsets(pid, epoch)
    h.end(pid, epoch).ok()
    assert {(mk.topic, mk.partition) for mk in h.written} == {("t", 2), ("__consumer_offsets", 0)}


def test_verify_accepts_only_a_current_producer_whose_transaction_holds_the_partition(h):
    pid, epoch = h.producer()
    offsets = ("__consumer_offsets", 0)
    assert h.coord.verify("tx", pid, epoch, offsets).__class__ is InvalidTxnState       # nothing open
    h.add_offsets(pid, epoch).ok()
    assert h.coord.verify("tx", pid, epoch, offsets) is None
    assert h.coord.verify("tx", pid, epoch, ("t", 0)).__class__ is InvalidTxnState     # not added
    assert h.coord.verify("tx", pid + 1, epoch, offsets).__class__ is InvalidProducerIdMapping
    assert h.coord.verify("nope", pid, epoch, offsets).__class__ is InvalidProducerIdMapping
    h.init()                                                   # a new instance: the old one is a zombie
    assert h.coord.verify("tx", pid, epoch, offsets).__class__ is ProducerFenced
