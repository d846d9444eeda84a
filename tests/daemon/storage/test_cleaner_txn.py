"""The cleaner and aborted transactions (Kafka's CleanedTransactionMetadata): an aborted
transaction's records are neither mapped (they never shadow a committed value of their
key) nor kept; its ABORT marker then gets a delete horizon and goes after it; a pass stops
below the max_offset it is given (the worker's last stable offset)."""
import pytest

from odradek.client.records import BatchBuilder, ControlRecordType, marker_batch
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.txn_index import AbortedTxn
from support.clock import FakeClock
from support.records import batches_in, read_all

CONFIG = {"cleanup.policy": "compact", "segment.bytes": 4096, "index.interval.bytes": 128,
          "delete.retention.ms": 100}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def log(tmp_path, clock):
    lg = PartitionLog(str(tmp_path / "topic-0"), LogConfig(CONFIG), clock)
    yield lg
    lg.close()


def plain(key, value, ts):
    b = BatchBuilder()
    b.append(ts, key, value)
    return b.build()


def txn_data(pid, key, value, ts, seq=0):
    b = BatchBuilder(producer_id=pid, producer_epoch=0, base_sequence=seq, transactional=True)
    b.append(ts, key, value)
    return b.build()


def marker(kind, pid, ts):
    return marker_batch(kind, pid, 0, 0, ts)


def data_records(log):
    """The data records of the log (read_all gives the markers' control records too)."""
    control = {b.base_offset for b in batches_in(log) if b.is_control}
    return [r for r in read_all(log) if r.offset not in control]


def test_aborted_records_go_without_hiding_the_committed_value_then_their_marker_goes(log, clock):
    now = clock()
    log.append(plain(b"a", b"committed", now))                     # 0
    log.append(txn_data(9, b"a", b"aborted", now))                 # 1: aborted below
    log.append(txn_data(8, b"b", b"kept", now))                    # 2: committed below
    log.append(txn_data(9, b"c", b"aborted-too", now, seq=1))      # 3
    log.append(marker(ControlRecordType.ABORT, 9, now))            # 4
    log.append_aborted_txn(AbortedTxn(9, 1, 4, 2))
    log.append(marker(ControlRecordType.COMMIT, 8, now))           # 5
    log.append(plain(b"q", b"1", now))                             # 6
    log.roll()
    log.append(plain(b"z", b"1", now))                             # 7: the active segment
    cleaner = LogCleaner(log, active_producers=lambda: {})
    cleaner.clean(force=True)
    assert [(r.offset, r.key, r.value) for r in data_records(log)] == [
        (0, b"a", b"committed"), (2, b"b", b"kept"), (6, b"q", b"1"), (7, b"z", b"1")]
    shapes = [(b.base_offset, b.is_control, b.delete_horizon is not None) for b in batches_in(log)]
    assert (4, True, True) in shapes            # no data of the aborted transaction left: a horizon
    assert (5, True, False) in shapes           # the commit's data is still there: no horizon
    clock.advance(100)
    cleaner.clean(force=True)
    assert 4 not in [b.base_offset for b in batches_in(log)]
    assert [r.offset for r in data_records(log)] == [0, 2, 6, 7]


def test_a_pass_leaves_what_is_at_or_above_max_offset(log, clock):
    now = clock()
    log.append(plain(b"a", b"old", now))                           # 0
    log.roll()
    log.append(txn_data(9, b"a", b"open", now))                    # 1: undecided: the LSO is 1
    log.roll()
    log.append(plain(b"z", b"1", now))
    LogCleaner(log, active_producers=lambda: {}).clean(max_offset=1, force=True)
    assert [(r.offset, r.value) for r in data_records(log)] == [(0, b"old"), (1, b"open"), (2, b"1")]
