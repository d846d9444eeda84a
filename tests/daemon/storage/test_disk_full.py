"""A full or failing disk under the storage layer: a checked StorageError on the path that
met it, never a SIGBUS, nothing acknowledged lost, appends back once space is freed.

The size-limited filesystem is a small tmpfs (tests/support/small_fs.py): a store into a
hole of a MAP_SHARED map there, when the tmpfs is full, is a SIGBUS. Before blocks were
allocated ahead of appends, these tests killed the test process with that signal.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from odradek.client.errors import StorageError
from odradek.client.records import write_base_offset
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import read_offsets, write_offsets
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.segment import ALLOCATE_AHEAD
from support.clock import FakeClock
from support.compaction import Model, check_log, fill as fill_keyed
from support.records import read_all, value_batch
from support.small_fs import fill, mounted_tmpfs

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

FS_BYTES = 4 << 20


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    with mounted_tmpfs(mnt, FS_BYTES):
        yield mnt


def offsets(log):
    return [r.offset for r in read_all(log)]


def batch(first, value_size, leader):
    """4 records; a follower's carry their offsets from `first` (a leader assigns them)."""
    data = value_batch(first, 4, size=value_size)
    if not leader:
        data = bytearray(data)
        write_base_offset(data, 0, first)
    return data


@pytest.mark.parametrize("interval, value_size", [(4096, 1000), (0, 20)],
                         ids=["default index interval", "every batch indexed"])
@pytest.mark.parametrize("leader", [True, False], ids=["leader (map)", "follower (pwrite)"])
def test_a_full_filesystem_refuses_appends_with_storage_error_and_takes_them_again_when_freed(
        small_fs, interval, value_size, leader):
    filler = small_fs / "filler"
    filler.write_bytes(bytes(1 << 20))
    config = LogConfig({"index.interval.bytes": interval})
    log = PartitionLog(str(small_fs / "t-0"), config)
    with pytest.raises(StorageError, match="No space left on device"):
        for i in range(FS_BYTES // value_size):   # bounded: more than the filesystem holds
            log.append(batch(4 * i, value_size, leader), assign_offsets=leader)
    end = log.log_end_offset
    assert end > 0 and offsets(log) == list(range(end))
    with pytest.raises(StorageError):             # still full: refused again, nothing written
        log.append(batch(end, value_size, leader), assign_offsets=leader)
    assert log.log_end_offset == end and offsets(log) == list(range(end))
    os.unlink(filler)
    info = log.append(batch(end, value_size, leader), assign_offsets=leader)   # back, without reopening
    assert (info.first_offset, log.log_end_offset) == (end, end + 4)
    log.close()
    reopened = PartitionLog(str(small_fs / "t-0"), config)
    try:
        assert offsets(reopened) == list(range(end + 4))
    finally:
        reopened.close()


def test_a_log_reopened_on_a_full_disk_serves_reads_refuses_appends_and_closes_cleanly(small_fs):
    config = LogConfig({"index.interval.bytes": 0})
    log = PartitionLog(str(small_fs / "t-0"), config)
    for i in range(200):
        log.append(value_batch(i, 1))
    log.close()
    fill(small_fs)
    reopened = PartitionLog(str(small_fs / "t-0"), config)   # trusted: nothing to write
    with pytest.raises(StorageError):
        reopened.append(value_batch(200, 1))
    assert offsets(reopened) == list(range(200))
    reopened.close()


CRASHING_APPENDER = textwrap.dedent("""
    import os, sys
    from odradek.daemon.storage import LogConfig, PartitionLog
    from support.records import value_batch
    log = PartitionLog(sys.argv[1], LogConfig({"segment.bytes": 64 << 20}))
    for i in range(100):
        log.append(value_batch(10 * i, 10, size=1000))
    os._exit(0)   # a crash: no flush, no trim, no checkpoint
""")


def test_recovery_after_a_crash_finds_the_data_end_before_the_allocated_zero_tail(tmp_path):
    directory = tmp_path / "t-0"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(os.path.dirname(__file__), "..", ".."),
                                                       os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", CRASHING_APPENDER, str(directory)], check=True, env=env)
    segment = filenames.log_file(str(directory), 0)
    st = os.stat(segment)
    data_end = 100 * len(value_batch(0, 10, size=1000))
    assert st.st_size == 64 << 20                               # the capacity, sparse
    assert st.st_blocks * 512 >= data_end + ALLOCATE_AHEAD // 2  # and blocks allocated past the data
    verify = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "dump-log", "--verify", "-q",
                             str(directory)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr   # zero padding is no problem
    log = PartitionLog(str(directory), LogConfig({"segment.bytes": 64 << 20}))
    try:
        assert log.log_end_offset == 1000 and offsets(log) == list(range(1000))
        assert log.active.size == data_end
        assert log.active.log.is_zero(data_end, 64 << 20)
        assert os.stat(segment).st_blocks * 512 < data_end + (64 << 10)   # the tail's blocks freed
        assert log.append(value_batch(0, 1)).first_offset == 1000
    finally:
        log.close()


def test_a_checkpoint_that_cannot_be_written_raises_and_keeps_the_old_file(small_fs):
    path = str(small_fs / "recovery-point-offset-checkpoint")
    write_offsets(path, {("t", 0): 5})
    fill(small_fs)
    with pytest.raises(StorageError, match="cannot write .*recovery-point-offset-checkpoint"):
        write_offsets(path, {("t", p): 10 ** 12 + p for p in range(2000)})
    assert read_offsets(path) == {("t", 0): 5}
    assert sorted(os.listdir(small_fs)) == ["filler", "recovery-point-offset-checkpoint"]


def test_a_log_goes_on_when_its_recovery_point_cannot_be_checkpointed(small_fs, caplog):
    log = PartitionLog(str(small_fs / "t-0"), LogConfig())
    log.append(value_batch(0, 3))
    fill(small_fs)
    log.flush()          # the checkpoint write fails: logged, not raised
    assert "cannot checkpoint the recovery point" in caplog.text
    log.close()
    reopened = PartitionLog(str(small_fs / "t-0"), LogConfig())
    try:
        assert offsets(reopened) == [0, 1, 2]
    finally:
        reopened.close()


def test_compaction_on_a_full_disk_raises_storage_error_and_leaves_the_log_as_it_was(small_fs):
    config = LogConfig({"cleanup.policy": "compact", "segment.bytes": 1024, "index.interval.bytes": 128})
    log = PartitionLog(str(small_fs / "t-0"), config, FakeClock())
    model = Model()
    fill_keyed(log, model, 300)
    before = offsets(log)
    fill(small_fs)
    with pytest.raises(StorageError, match="compaction stopped"):
        LogCleaner(log).clean(force=True)
    assert offsets(log) == before
    check_log(log, model)
    assert not [n for n in os.listdir(log.directory) if n.endswith(filenames.CLEANED_SUFFIX)]
    log.close()
