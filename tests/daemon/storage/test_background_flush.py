"""A roll's fsync runs in the background (storage/background_flush.py): the appender goes
on at once, the recovery point moves past the rolled segment only once its files are on
disk, and flush(), close(), sync_data, deletions and a failing disk keep every promise
they made before.

The flusher's fsync is replaced by a Disk that holds each call until the test releases
it (and can fail it): the tests see the flush pending, deterministically."""
import errno
import os
import threading

import pytest

from odradek.client.errors import StorageError
from odradek.daemon.storage import LogConfig, PartitionLog, background_flush, filenames
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from odradek.daemon.storage.segment import LogSegment
from support.clock import FakeClock
from support.records import read_all, value_batch
from support.replication import Pair, copy_all

WAIT_S = 10   # every wait is bounded: a hang fails the test


class Disk:
    """The flusher's fsync: each call waits until `release` is set, then fails with EIO
    for the paths `failing` accepts, else fsyncs for real and records the path."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()   # a call is waiting (or went through)
        self.failing = lambda path: False
        self.synced = []

    def fsync(self, fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.entered.set()
        if not self.release.wait(WAIT_S):
            raise AssertionError("the test never released the fsync")
        if self.failing(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)
        self.synced.append(path)


@pytest.fixture
def disk(monkeypatch):
    d = Disk()
    monkeypatch.setattr(background_flush, "_fsync", d.fsync)
    yield d
    d.release.set()   # a test that failed holding it must not leave a thread waiting


@pytest.fixture
def open_log(tmp_path):
    opened = []

    def _open(**config):
        log = PartitionLog(str(tmp_path / "orders-0"), LogConfig(config), FakeClock())
        log.flushes_done = threading.Semaphore(0)
        log.flush_listener = log.flushes_done.release
        opened.append(log)
        return log

    yield _open
    for log in opened:
        if not log._closed:
            try:
                log.close()
            except StorageError:
                pass   # the failing-disk tests


def wait_flushes(log, count=1):
    for _ in range(count):
        assert log.flushes_done.acquire(timeout=WAIT_S), "the background fsync never finished"


def checkpointed_recovery_point(tmp_path):
    return LogDirCheckpoints(str(tmp_path)).read(("orders", 0))[0]


def segment_files(directory, base):
    return {filenames.log_file(directory, base), filenames.index_file(directory, base),
            filenames.timeindex_file(directory, base)}


def open_fds_under(path):
    """Where this process's descriptors into `path` point (" (deleted)" if unlinked)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue   # the listing's own descriptor, closed by now
        if target.startswith(str(path)):
            found.append(target)
    return found


def flusher_threads():
    return {t for t in threading.enumerate() if t.name.startswith("flush-")}


def run_in_thread(fn):
    """fn() on another thread (this test's thread only waits meanwhile): (thread, outcome)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as e:
            outcome["error"] = e
    t = threading.Thread(target=target)
    t.start()
    return t, outcome


def test_a_roll_returns_before_the_fsync_and_the_recovery_point_moves_once_it_is_done(open_log, tmp_path, disk):
    log = open_log()
    log.append(value_batch(0, 3))
    log.append(value_batch(3, 2))
    log.roll()
    assert disk.entered.wait(WAIT_S)          # the flusher is inside the rolled segment's fsync
    log.append(value_batch(5, 4))             # and the appender goes on
    assert log.log_end_offset == 9
    assert log.recovery_point == 0 and checkpointed_recovery_point(tmp_path) == 0
    assert log.flushes_pending
    disk.release.set()
    wait_flushes(log)
    log.append(value_batch(9, 1))             # the next append collects it
    assert log.recovery_point == 5 and checkpointed_recovery_point(tmp_path) == 5
    assert not log.flushes_pending
    # the rolled segment's files, then the directory (the new segment's entries), which the
    # roll itself no longer fsyncs
    assert set(disk.synced) == segment_files(log.directory, 0) | {log.directory}
    assert disk.synced[-1] == log.directory
    assert [r.offset for r in read_all(log)] == list(range(10))


def test_a_follower_rolling_where_its_leader_did_gets_the_same_background_fsync(tmp_path, disk):
    pair = Pair(tmp_path, FakeClock(), {"segment.bytes": 1024})
    try:
        pair.produce(batches=40)
        assert len(pair.leader.segments) > 2
        copy_all(pair)                         # the follower rolls as the leader did, at once
        follower = pair.follower
        assert follower.log_end_offset == pair.leader.log_end_offset
        assert follower.recovery_point == 0 and follower.flushes_pending
        done = threading.Semaphore(0)
        follower.flush_listener = done.release
        disk.release.set()
        for _ in range(len(follower.segments) - 1):
            assert done.acquire(timeout=WAIT_S)
        follower.collect_flushes()
        assert follower.recovery_point == follower.active.base_offset
    finally:
        disk.release.set()
        pair.close()


@pytest.mark.parametrize("call", ["flush", "close"])
def test_flush_and_close_wait_for_a_pending_background_fsync(open_log, tmp_path, disk, call):
    threads_before = flusher_threads()
    log = open_log()
    log.append(value_batch(0, 3))
    log.roll()
    log.append(value_batch(3, 2))
    thread, outcome = run_in_thread(getattr(log, call))
    thread.join(0.2)
    assert thread.is_alive(), f"{call}() returned before the rolled segment was fsynced"
    disk.release.set()
    thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert segment_files(log.directory, 0) <= set(disk.synced)
    assert checkpointed_recovery_point(tmp_path) == 5
    if call == "flush":
        assert log.recovery_point == 5 and log.synced_offset == 5 and not log.flushes_pending
    else:
        assert open_fds_under(tmp_path) == []      # every descriptor closed, the flusher's too
        assert flusher_threads() == threads_before


def test_flush_messages_counts_the_records_of_a_rolled_segment_whose_fsync_is_pending(open_log, tmp_path, disk):
    """As Kafka counts unflushed records from the recovery point: the append that makes
    flush.messages of them flushes, waiting for the rolled segment's fsync."""
    log = open_log(**{"flush.messages": 5})
    log.append(value_batch(0, 3))
    log.roll()
    log.append(value_batch(3, 1))
    assert log.recovery_point == 0
    thread, outcome = run_in_thread(lambda: log.append(value_batch(4, 1)))
    thread.join(0.2)
    assert thread.is_alive(), "the fifth record's append did not wait for the rolled segment's fsync"
    disk.release.set()
    thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert log.recovery_point == 5 and checkpointed_recovery_point(tmp_path) == 5


def test_a_failed_background_fsync_makes_the_log_refuse_writes_and_keeps_the_recovery_point(
        open_log, tmp_path, disk):
    disk.failing = lambda path: path.endswith(filenames.LOG_SUFFIX)
    threads_before = flusher_threads()
    log = open_log()
    log.append(value_batch(0, 3))
    log.roll()
    disk.release.set()
    wait_flushes(log)
    with pytest.raises(StorageError, match=r"fsync of rolled segment 0 failed \(Input/output error\)"):
        log.append(value_batch(3, 1))
    run = [memoryview(value_batch(3 + 40 * i, 40, size=1000)) for i in range(2)]   # a leader's run too
    with pytest.raises(StorageError, match="rolled segment 0"):
        log.append_parts(run, sum(map(len, run)))
    with pytest.raises(StorageError, match="rolled segment 0"):
        log.flush()
    with pytest.raises(StorageError, match="rolled segment 0"):
        log.sync_data()
    assert log.recovery_point == 0 and checkpointed_recovery_point(tmp_path) == 0
    assert log.log_end_offset == 3 and [r.offset for r in read_all(log)] == [0, 1, 2]   # reads go on
    with pytest.raises(StorageError, match="rolled segment 0"):
        log.close()
    # the flusher closed the descriptors it was given; left: one per file, the map's own
    # (Python's mmap keeps a dup), as the close that failed did not get to the maps
    assert sorted(p for p in open_fds_under(tmp_path) if p in segment_files(log.directory, 0)) == \
        sorted(segment_files(log.directory, 0))
    assert flusher_threads() == threads_before     # stopped, not left waiting


def test_the_recovery_point_never_passes_a_segment_whose_fsync_failed(open_log, tmp_path, disk):
    """The first rolled segment's fsync fails, the second's succeeds: the recovery point
    stays below the first."""
    first_log = filenames.log_file(str(tmp_path / "orders-0"), 0)
    disk.failing = lambda path: path == first_log
    log = open_log()
    log.append(value_batch(0, 3))
    log.roll()
    log.append(value_batch(3, 2))
    log.roll()
    disk.release.set()
    wait_flushes(log, 2)
    assert filenames.log_file(log.directory, 3) in disk.synced
    with pytest.raises(StorageError, match="rolled segment 0"):
        log.collect_flushes()
    assert log.recovery_point == 0 and checkpointed_recovery_point(tmp_path) == 0


def test_segments_deleted_while_their_fsync_is_pending_are_skipped_and_their_descriptors_closed(
        open_log, tmp_path, disk):
    log = open_log(**{"retention.bytes": 0})
    for first in (0, 3, 6):
        log.append(value_batch(first, 3))
        log.roll()
    assert disk.entered.wait(WAIT_S)        # segment 0's fsync has begun; 3 and 6 wait behind it
    assert log.delete_old_segments() == 3
    assert log.log_start_offset == 9 and not log.flushes_pending
    log.append(value_batch(9, 2))
    disk.release.set()
    wait_flushes(log, 3)
    # the fsync under way when its file was unlinked finished (harmless); the others
    # never began; no descriptor of a deleted file is left open
    assert not any(filenames.log_file(log.directory, base) in disk.synced for base in (3, 6))
    assert not [p for p in open_fds_under(tmp_path) if "(deleted)" in p]
    log.flush()
    assert log.recovery_point == 11 and checkpointed_recovery_point(tmp_path) == 11


def test_truncation_below_segments_whose_fsync_is_pending(open_log, tmp_path, disk):
    log = open_log()
    log.append(value_batch(0, 3))
    log.roll()
    log.append(value_batch(3, 3))
    log.roll()
    log.append(value_batch(6, 1))
    thread, outcome = run_in_thread(lambda: log.truncate_to(3))   # flush() inside waits for segment 0
    disk.release.set()
    thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert log.log_end_offset == 3 and log.recovery_point == 3 and not log.flushes_pending
    assert checkpointed_recovery_point(tmp_path) == 3
    assert not [p for p in open_fds_under(tmp_path) if "(deleted)" in p]


def test_sync_data_claims_a_rolled_segment_only_once_its_fsync_is_done(open_log, disk):
    log = open_log()
    log.append(value_batch(0, 3))
    assert log.sync_data() == 3
    log.append(value_batch(3, 2))
    log.roll()
    log.append(value_batch(5, 4))
    assert log.sync_data() == 3              # offsets 3..4 are in the rolled segment, not on disk yet
    disk.release.set()
    wait_flushes(log)
    assert log.sync_data() == 9
    assert log.recovery_point == 5


def test_a_crash_before_the_background_fsync_makes_the_next_open_scan_the_rolled_segment(
        tmp_path, disk, monkeypatch):
    directory = str(tmp_path / "orders-0")
    log = PartitionLog(directory, LogConfig({}), FakeClock())
    log.append(value_batch(0, 3))
    log.roll()
    log.append(value_batch(3, 2))
    assert checkpointed_recovery_point(tmp_path) == 0     # a power loss now: segment 0 unproven
    for segment in log.segments:                          # a crash: nothing closed
        segment.close()
    scanned = []
    recover = LogSegment.recover

    def counting_recover(self, *args, **kwargs):
        scanned.append(self.base_offset)
        return recover(self, *args, **kwargs)
    monkeypatch.setattr(LogSegment, "recover", counting_recover)
    reopened = PartitionLog(directory, LogConfig({}), FakeClock())
    try:
        assert scanned == [0, 3]
        assert [r.offset for r in read_all(reopened)] == [0, 1, 2, 3, 4]
        assert reopened.recovery_point == 5
    finally:
        reopened.close()
        disk.release.set()


def test_files_synced_with_a_roll_hold_the_recovery_point_until_they_are_synced(open_log, tmp_path, disk):
    """PartitionLog.sync_with_roll (the leader's producer-state snapshot at a roll): its
    files are fsynced in the background after the rolled segment's, and the recovery
    point passes the roll only once both are done."""
    log = open_log()
    log.append(value_batch(0, 3))
    log.append(value_batch(3, 2))
    log.roll()
    extra = tmp_path / "orders-0" / "extra.snapshot"
    extra.write_bytes(b"state")
    log.sync_with_roll([str(extra), log.directory], "the extra file")
    log.append(value_batch(5, 1))
    assert log.recovery_point == 0
    disk.release.set()
    wait_flushes(log, 2)
    log.collect_flushes()
    assert log.recovery_point == 5 and checkpointed_recovery_point(tmp_path) == 5
    assert {str(extra), log.directory} <= set(disk.synced)
    assert not [p for p in open_fds_under(tmp_path) if p in (str(extra), log.directory)]


def test_a_failed_fsync_of_files_synced_with_a_roll_refuses_writes_and_keeps_the_recovery_point(
        open_log, tmp_path, disk):
    """As Kafka's roll: a producer-state snapshot whose flush failed leaves the recovery
    point where it was (its testRecoveryPointNotIncrementedOnProducerStateSnapshotFlushFailure)."""
    log = open_log()
    log.append(value_batch(0, 3))
    log.roll()
    extra = tmp_path / "orders-0" / "extra.snapshot"
    extra.write_bytes(b"state")
    disk.failing = lambda path: path == str(extra)
    log.sync_with_roll([str(extra)], "the extra file")
    disk.release.set()
    wait_flushes(log, 2)
    with pytest.raises(StorageError, match=r"the fsync of the extra file failed \(Input/output error\)"):
        log.append(value_batch(3, 1))
    assert log.recovery_point == 0 and checkpointed_recovery_point(tmp_path) == 0
    with pytest.raises(StorageError, match="the extra file"):
        log.close()


def test_files_synced_with_no_roll_pending_are_fsynced_at_once(open_log, tmp_path, disk):
    log = open_log()
    log.append(value_batch(0, 3))
    extra = tmp_path / "orders-0" / "extra.snapshot"
    extra.write_bytes(b"state")
    log.sync_with_roll([str(extra)], "the extra file")     # the Disk (the flusher's fsync) is never asked
    assert not disk.entered.is_set() and not log.flushes_pending
    with pytest.raises(StorageError, match="cannot sync the missing file"):
        log.sync_with_roll([str(extra) + ".missing"], "the missing file")
