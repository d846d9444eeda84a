"""Transactions in the producer state (daemon/worker/producer_txns.py): open, commit,
abort, the last stable offset, replay from log bytes, snapshots (Kafka's
CurrentTxnFirstOffset), Kafka's rules for markers."""
from support.records import make_batch

from odradek.client.errors import InvalidProducerEpoch, TransactionCoordinatorFenced
from odradek.client.records import ControlRecordType, EndTxnMarker, marker_batch, write_base_offset
from odradek.daemon.storage import producer_snapshot
from odradek.daemon.storage.txn_index import AbortedTxn
from odradek.daemon.worker.producer_state import ProducerState, batches_from_buffer

COMMIT = EndTxnMarker(ControlRecordType.COMMIT, 0)
ABORT = EndTxnMarker(ControlRecordType.ABORT, 0)


def txn_data(state, pid, epoch, first_seq, count, first_offset):
    """A transactional batch appended as the leader does: sequences, then transactions."""
    state.record(pid, epoch, first_seq, first_seq + count - 1, first_offset, first_offset + count - 1)
    state.txns.begin(pid, epoch, first_offset)


def test_a_transaction_holds_the_lso_at_its_first_offset_until_its_commit_is_replicated():
    state = ProducerState()
    txns = state.txns
    assert txns.first_unstable_offset() is None and txns.last_stable_offset(10) == 10
    txn_data(state, 7, 0, 0, 3, 10)
    txn_data(state, 7, 0, 3, 2, 13)              # the same transaction: its first offset stays
    assert txns.ongoing() == [(7, 10)]
    assert txns.last_stable_offset(15) == 10 and txns.last_stable_offset(5) == 5   # min with the HW
    assert txns.complete(7, 0, COMMIT, 15) is None   # a commit indexes nothing
    assert txns.ongoing() == [] and txns.has_unreplicated()
    assert txns.last_stable_offset(15) == 10        # the marker is not below the HW yet
    assert not txns.on_high_watermark(15)
    assert txns.on_high_watermark(16)
    assert txns.first_unstable_offset() is None and txns.last_stable_offset(16) == 16


def test_the_first_unstable_offset_is_never_below_the_log_start():
    state = ProducerState()
    txns = state.txns
    assert txns.first_unstable_offset(5) is None and txns.last_stable_offset(9, 5) == 9
    txn_data(state, 7, 0, 0, 2, 3)
    assert txns.first_unstable_offset(0) == 3 and txns.first_unstable_offset(6) == 6
    assert txns.last_stable_offset(9, 6) == 6 and txns.last_stable_offset(9, 2) == 3
    assert txns.ongoing() == [(7, 3)]                # still open, from its own first offset


def test_an_abort_gives_the_aborted_entry_with_kafkas_last_stable_offset():
    state = ProducerState()
    txn_data(state, 7, 0, 0, 2, 0)
    txn_data(state, 8, 3, 0, 1, 2)                # a second producer, interleaved
    txn_data(state, 7, 0, 2, 1, 3)
    assert state.txns.ongoing() == [(7, 0), (8, 2)]
    # 7 aborts at 4: the LSO once it is complete is 8's first offset
    assert state.txns.complete(7, 0, ABORT, 4) == AbortedTxn(7, 0, 4, 2)
    state.txns.on_high_watermark(5)
    assert state.txns.last_stable_offset(5) == 2
    # 8 aborts at 5 with no other open: last stable offset = marker + 1
    assert state.txns.complete(8, 3, ABORT, 5) == AbortedTxn(8, 2, 5, 6)
    assert state.txns.last_stable_offset(6) == 2      # decided, not replicated: still undecided for readers
    state.txns.on_high_watermark(6)
    assert state.txns.last_stable_offset(6) == 6


def test_a_marker_with_no_open_transaction_changes_only_epochs():
    state = ProducerState()
    assert state.txns.complete(9, 2, EndTxnMarker(ControlRecordType.ABORT, 4), 100) is None
    assert not state.txns.has_unreplicated() and 9 in state
    assert state.last_batches() == [(9, 2, -1, -1, 0)]
    assert state.snapshot_entries(55) == [(9, 2, -1, -1, 0, 55, 4, -1)]


def test_a_marker_with_a_bumped_epoch_forgets_the_old_epochs_batches_and_fences_old_markers():
    state = ProducerState()
    txn_data(state, 7, 0, 0, 3, 0)
    assert state.txns.check_marker(7, 0, 0) is None
    assert state.txns.complete(7, 1, ABORT, 3) == AbortedTxn(7, 0, 3, 4)   # the coordinator bumped it
    assert state.entry(7).epoch == 1 and state.entry(7).batches == ()
    assert isinstance(state.txns.check_marker(7, 0, 0), InvalidProducerEpoch)
    assert state.txns.check_marker(7, 1, 0) is None and state.txns.check_marker(99, 0, 0) is None
    # the bumped epoch's first batch starts at sequence 0
    assert state.check(7, 1, 0, 0).outcome.name == "APPEND"


def test_a_marker_from_an_older_coordinator_epoch_is_fenced_even_with_the_current_producer_epoch():
    state = ProducerState()
    txn_data(state, 7, 0, 0, 2, 0)
    assert state.txns.check_marker(7, 0, 0) is None                  # nothing recorded yet: any coordinator
    state.txns.complete(7, 0, EndTxnMarker(ControlRecordType.COMMIT, 4), 2)
    refused = state.txns.check_marker(7, 0, 3)
    assert isinstance(refused, TransactionCoordinatorFenced) and refused.code == 52
    assert "coordinator epoch 3" in str(refused) and "epoch 4" in str(refused)
    assert state.txns.check_marker(7, 0, 4) is None and state.txns.check_marker(7, 0, 5) is None
    # the producer epoch is checked first, as Kafka's appendEndTxnMarker does
    assert isinstance(state.txns.check_marker(7, -1, 3), InvalidProducerEpoch)
    # the coordinator epoch survives a snapshot
    loaded = ProducerState()
    loaded.load(state.snapshot_entries(1700000000000))
    assert isinstance(loaded.txns.check_marker(7, 0, 3), TransactionCoordinatorFenced)


def built(data, offset):
    data = bytearray(data)
    write_base_offset(data, 0, offset)
    return bytes(data)


def sample_log():
    """0-1 pid 7 txn, 2 plain, 3 pid 8 txn, 4 ABORT 7, 5 pid 7 txn again, 6 COMMIT 8."""
    return b"".join([
        built(make_batch([b"a", b"b"], producer_id=7, producer_epoch=0, base_sequence=0, transactional=True), 0),
        built(make_batch([b"c"]), 2),
        built(make_batch([b"d"], producer_id=8, producer_epoch=0, base_sequence=0, transactional=True), 3),
        built(marker_batch(ControlRecordType.ABORT, 7, 0, 2, 1700000000000), 4),
        built(make_batch([b"e"], producer_id=7, producer_epoch=0, base_sequence=2, transactional=True), 5),
        built(marker_batch(ControlRecordType.COMMIT, 8, 0, 2, 1700000000000), 6),
    ])


def test_replay_of_log_bytes_rebuilds_open_transactions_and_the_aborted_ones():
    data = sample_log()
    rows = list(batches_from_buffer(data, 0, transactions=True))
    assert [r[6] & 0x30 for r in rows] == [0x10, 0, 0x10, 0x30, 0x10, 0x30]
    assert rows[3][7] == EndTxnMarker(ControlRecordType.ABORT, 2) and rows[0][7] is None
    assert [r[:6] for r in rows] == list(batches_from_buffer(data))    # the same six fields
    state, aborted = ProducerState(), []
    assert state.rebuild(batches_from_buffer(data, 0, transactions=True), aborted) == 3   # markers have no sequence
    assert aborted == [AbortedTxn(7, 0, 4, 3)]
    assert state.txns.ongoing() == [(7, 5)]
    state.txns.on_high_watermark(7)
    assert state.txns.last_stable_offset(7) == 5
    assert state.entry(7).last_seq == 2 and state.entry(8).last_seq == 0


def test_snapshot_round_trip_reopens_transactions_and_an_old_snapshot_still_loads(tmp_path):
    state = ProducerState()
    state.rebuild(batches_from_buffer(sample_log(), 0, transactions=True))
    entries = [producer_snapshot.SnapshotEntry(*e) for e in state.snapshot_entries(1700000000000)]
    assert [(e.producer_id, e.coordinator_epoch, e.current_txn_first_offset) for e in entries] == \
        [(7, 2, 5), (8, 2, -1)]
    producer_snapshot.write(str(tmp_path), 7, entries)
    offset, loaded_entries = producer_snapshot.load_latest(str(tmp_path), 0, 7)
    loaded = ProducerState()
    loaded.load(loaded_entries)
    assert loaded.txns.ongoing() == [(7, 5)]
    assert loaded.snapshot_entries(1700000000000) == state.snapshot_entries(1700000000000)
    # a snapshot written before transactions existed: -1 in both fields (the format is
    # Kafka's version 1 throughout); and one as last_batches() gives it (five fields)
    old = [producer_snapshot.SnapshotEntry(7, 0, 4, 104, 4, 1700000000000)]
    assert producer_snapshot.decode(producer_snapshot.encode(old)) == old
    for entries in (old, state.last_batches()):
        again = ProducerState()
        again.load(entries)
        assert again.txns.ongoing() == [] and again.txns.first_unstable_offset() is None


def test_snapshot_order_of_open_transactions_is_by_first_offset():
    loaded = ProducerState()
    loaded.load([(3, 0, 5, 50, 0, 0, 0, 40), (1, 0, 5, 30, 0, 0, 0, 20), (2, 0, 5, 35, 0, 0, 0, -1)])
    assert loaded.txns.ongoing() == [(1, 20), (3, 40)]
    assert loaded.txns.complete(1, 0, ABORT, 60) == AbortedTxn(1, 20, 60, 40)
