"""A replica's transactions (daemon/worker/producer_keeping.py): a follower copying the
leader's batches, markers included, keeps open transactions and its own .txnindex, so
that it can lead at once; a missing .txnindex entry is written again at open."""
import os

import pytest
from support.clock import FakeClock
from support.records import make_batch
from support.replication import Pair, copy_all

from odradek.client.records import ControlRecordType, marker_batch
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.txn_index import AbortedTxn
from odradek.daemon.worker.producer_keeping import REMEMBER_BATCHES, ProducerStateKeeping
from odradek.daemon.worker.producer_state import ProducerState


class Replica(ProducerStateKeeping):
    """What ProducerStateKeeping needs of its host (a FollowerWorker or LeaderWorker)."""

    class Spec:
        def __init__(self, partition_dir):
            self.topic, self.partition, self.partition_dir = "orders", 0, partition_dir

    def __init__(self, log):
        self.log, self.spec = log, self.Spec(log.directory)
        self.producer_state = ProducerState(remember=REMEMBER_BATCHES)
        self._state_loaded = False


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path, FakeClock(), {"segment.bytes": 700})
    yield p
    p.close()


def leader_appends(pair):
    """pid 7 txn 0-1, pid 8 txn 2, ABORT 7 at 3, plain batches, pid 7 txn again, COMMIT 8."""
    lg = pair.leader
    lg.append(make_batch([b"a" * 50, b"b" * 50], producer_id=7, producer_epoch=0, base_sequence=0,
                         transactional=True), leader_epoch=3)
    lg.append(make_batch([b"c" * 50], producer_id=8, producer_epoch=0, base_sequence=0, transactional=True),
              leader_epoch=3)
    lg.append(marker_batch(ControlRecordType.ABORT, 7, 0, 1, 1700000000000), leader_epoch=3)
    for i in range(8):
        lg.append(make_batch([b"p" * 60]), leader_epoch=3)     # rolls segments
    lg.append(make_batch([b"d" * 50], producer_id=7, producer_epoch=0, base_sequence=2, transactional=True),
              leader_epoch=3)
    lg.append(marker_batch(ControlRecordType.COMMIT, 8, 0, 1, 1700000000000), leader_epoch=3)


def test_a_follower_keeps_open_transactions_and_its_own_txn_index(pair):
    leader_appends(pair)
    replica = Replica(pair.follower)
    replica.rebuild_producer_state()
    for chunk in copy_all(pair, max_bytes=300):
        replica.follow_copied(chunk.data, high_watermark=pair.follower.log_end_offset)
    txns = replica.producer_state.txns
    assert txns.ongoing() == [(7, 12)]
    assert txns.last_stable_offset(pair.follower.log_end_offset) == 12
    assert pair.follower.collect_aborted_txns(0, 100) == [AbortedTxn(7, 0, 3, 2)]
    assert len(pair.follower.segments) > 2


def test_open_rebuilds_a_missing_txn_index_entry_and_open_transactions(pair, tmp_path):
    leader_appends(pair)
    lg = pair.leader
    marker_segment = lg.segments[lg.segment_index(3)]
    path = marker_segment.txn_index.path
    assert not os.path.exists(path)          # appended without the worker: nothing indexed it
    lg.close()
    reopened = PartitionLog(lg.directory, LogConfig({"segment.bytes": 700}), pair.clock)
    try:
        leader = Replica(reopened)
        leader.rebuild_producer_state()      # no snapshot: the log is replayed
        assert reopened.collect_aborted_txns(0, 100) == [AbortedTxn(7, 0, 3, 2)]
        assert leader.producer_state.txns.ongoing() == [(7, 12)]
        leader.snapshot_producer_state("test", reopened.log_end_offset)
        again = Replica(reopened)
        again.rebuild_producer_state()       # from the snapshot: the open transaction with it
        assert again.producer_state.txns.ongoing() == [(7, 12)]
        assert reopened.collect_aborted_txns(0, 100) == [AbortedTxn(7, 0, 3, 2)]   # not twice
    finally:
        reopened.close()


def test_a_cut_replica_forgets_the_transactions_above_the_cut(pair):
    leader_appends(pair)
    replica = Replica(pair.follower)
    replica.rebuild_producer_state()
    for chunk in copy_all(pair):
        replica.follow_copied(chunk.data, high_watermark=pair.follower.log_end_offset)
    assert replica.producer_state.txns.ongoing() == [(7, 12)]
    replica.truncate_log_to(12)          # the leader's log ends below 7's second transaction
    assert replica.producer_state.txns.ongoing() == [(8, 2)]   # 8's COMMIT (13) is gone too
    replica.truncate_log_to(3)           # and below 7's ABORT: its entry goes with it
    assert replica.producer_state.txns.ongoing() == [(7, 0), (8, 2)]
    assert pair.follower.collect_aborted_txns(0, 100) == []


def test_an_entry_that_cannot_go_in_order_is_logged_not_fatal_at_open(pair, caplog):
    leader_appends(pair)
    lg = pair.leader
    lg.append_aborted_txn(AbortedTxn(9, 4, 5, 6))      # a later entry is there, 7's (at 3) is not
    assert lg.segment_index(5) == lg.segment_index(3)
    replica = Replica(lg)
    replica.rebuild_producer_state()
    assert "not indexed" in caplog.text
    assert replica.producer_state.txns.ongoing() == [(7, 12)]
