"""TxnMetadata's transitions: Kafka's table of legal predecessors, and a change that is
prepared, then completed or abandoned, one at a time."""
import pytest

from odradek.daemon.broker.txn.state import (
    VALID_PREVIOUS, IllegalTransition, TxnMetadata, TxnState, is_epoch_exhausted)

S = TxnState


def meta(state=S.EMPTY, epoch=0, partitions=()):
    return TxnMetadata("tx", 7, epoch, 1000, state, 0, partitions=partitions, start_ms=5 if partitions else -1)


def test_the_states_ids_names_and_predecessors_are_kafkas():
    assert [(s.id, s.display) for s in S] == [
        (0, "Empty"), (1, "Ongoing"), (2, "PrepareCommit"), (3, "PrepareAbort"), (4, "CompleteCommit"),
        (5, "CompleteAbort"), (6, "Dead"), (7, "PrepareEpochFence")]
    assert VALID_PREVIOUS[S.PREPARE_ABORT] == {S.ONGOING, S.PREPARE_EPOCH_FENCE}
    assert VALID_PREVIOUS[S.COMPLETE_COMMIT] == {S.PREPARE_COMMIT}
    assert VALID_PREVIOUS[S.ONGOING] == {S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}
    assert S.from_name("Ongoing") is S.ONGOING and S.from_name("ongoing") is None and S.from_id(8) is None


@pytest.mark.parametrize("state", [S.EMPTY, S.COMPLETE_ABORT, S.PREPARE_COMMIT, S.DEAD])
def test_ending_is_legal_only_from_ongoing(state):
    with pytest.raises(IllegalTransition):
        meta(state).prepare_end(True, 10)


def test_a_change_is_pending_until_completed_and_one_at_a_time():
    m = meta()
    transit = m.prepare_add_partitions({("t", 0)}, 10)
    assert m.pending is S.ONGOING and m.state is S.EMPTY and not m.partitions
    with pytest.raises(IllegalTransition):
        m.prepare_add_partitions({("t", 1)}, 11)
    m.complete(transit)
    assert (m.state, m.partitions, m.start_ms, m.update_ms, m.pending) == (S.ONGOING, {("t", 0)}, 10, 10, None)
    end = m.prepare_end(False, 20)
    m.abandon()
    assert m.state is S.ONGOING and m.pending is None
    with pytest.raises(IllegalTransition):
        m.complete(end)                      # abandoned: nothing to complete


def test_the_fence_bumps_once_and_its_abort_takes_the_bumped_epoch():
    m = meta(S.ONGOING, epoch=4, partitions={("t", 0)})
    fence = m.prepare_fence_epoch()
    assert fence.producer_epoch == 5 and m.pending is S.PREPARE_EPOCH_FENCE
    m.begin_abort_after_fence(5)
    abort = m.prepare_end(False, 30)
    assert (abort.state, abort.producer_epoch, abort.partitions) == (S.PREPARE_ABORT, 5, frozenset({("t", 0)}))
    m.abandon()
    m.failed_epoch_fence = True
    assert m.prepare_fence_epoch().producer_epoch == 5   # the failed fence's epoch again


def test_epochs_run_out_at_32766():
    assert not is_epoch_exhausted(32765) and is_epoch_exhausted(32766)
    with pytest.raises(IllegalTransition):
        meta(epoch=32766).prepare_increment_epoch(1000, None, 0)
    rotated = meta(epoch=32766).prepare_rotate_producer_id(8, 1000, 0, keep_last_epoch=True)
    assert (rotated.producer_id, rotated.producer_epoch, rotated.last_producer_epoch, rotated.last_producer_id) == \
        (8, 0, 32766, 7)
    with pytest.raises(IllegalTransition):
        meta(S.ONGOING, partitions={("t", 0)}).prepare_rotate_producer_id(8, 1000, 0, keep_last_epoch=False)
