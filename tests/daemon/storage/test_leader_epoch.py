"""The leader-epoch cache (Kafka's LeaderEpochFileCache semantics, KIP-101/KIP-279), its
`leader-epoch-checkpoint` file, and PartitionLog keeping it in step with the log."""
import os

import pytest

from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.leader_epoch import (CorruptEpochFile, LeaderEpochCache, LeaderEpochFile,
                                                 UNDEFINED_EPOCH, UNDEFINED_OFFSET, decode, encode)
from support.clock import FakeClock
from support.records import value_batch


# == the cache =================================================================================
def test_assign_appends_a_higher_epoch_and_ignores_a_repeat():
    c = LeaderEpochCache()
    assert c.assign(2, 0) and c.assign(3, 10)
    assert not c.assign(3, 10) and not c.assign(3, 15)  # same epoch, not lower start: nothing
    assert c.entries == [(2, 0), (3, 10)] and c.latest_epoch == 3


def test_assign_drops_the_entries_it_supersedes():
    c = LeaderEpochCache([(1, 0), (2, 5), (4, 10)])
    assert c.assign(3, 8)                       # epoch 4 >= 3, offset 10 >= 8: dropped
    assert c.entries == [(1, 0), (2, 5), (3, 8)]
    assert c.assign(3, 6)                       # the latest epoch with a lower start replaces it
    assert c.entries == [(1, 0), (2, 5), (3, 6)]
    assert c.assign(5, 5)                       # start offset 5 >= 5: (2, 5) goes too
    assert c.entries == [(1, 0), (5, 5)]
    with pytest.raises(ValueError):
        c.assign(-1, 0)


def test_truncate_from_end_drops_entries_starting_at_or_above_the_new_end():
    c = LeaderEpochCache([(1, 0), (2, 5), (3, 10)])
    assert c.truncate_from_end(10)
    assert c.entries == [(1, 0), (2, 5)]
    assert not c.truncate_from_end(6)
    assert c.truncate_from_end(0) and c.entries == []


def test_truncate_from_start_keeps_the_latest_entry_below_moved_to_the_new_start():
    c = LeaderEpochCache([(1, 0), (2, 5), (3, 10)])
    assert c.truncate_from_start(7)
    assert c.entries == [(2, 7), (3, 10)]
    assert not c.truncate_from_start(3)         # below the first entry: nothing
    assert not c.truncate_from_start(7)         # already there
    assert c.truncate_from_start(10)
    assert c.entries == [(3, 10)]
    assert c.truncate_from_start(50) and c.entries == [(3, 50)]


def test_end_offset_for_answers_as_offsets_for_leader_epoch_does():
    c = LeaderEpochCache([(1, 0), (3, 10), (5, 20)])
    assert c.end_offset_for(5, log_end_offset=27) == (5, 27)    # the latest: the log end
    assert c.end_offset_for(3, 27) == (3, 20)                   # the next epoch's start
    assert c.end_offset_for(4, 27) == (3, 20)                   # unknown: the largest below it
    assert c.end_offset_for(0, 27) == (0, 0)                    # below all: the first start
    assert c.end_offset_for(6, 27) == (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
    assert c.end_offset_for(UNDEFINED_EPOCH, 27) == (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
    assert LeaderEpochCache().end_offset_for(0, 5) == (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
    assert [c.epoch_for_offset(o) for o in (0, 9, 10, 25)] == [1, 1, 3, 5]


# == the file ==================================================================================
GOLDEN = b"0\n2\n3 0\n5 120\n"   # Kafka's LeaderEpochCheckpointFile: version, count, "epoch offset"


def test_file_format_is_kafkas_text():
    assert encode([(3, 0), (5, 120)]) == GOLDEN
    assert decode(GOLDEN) == [(3, 0), (5, 120)]
    assert encode([]) == b"0\n0\n" and decode(b"0\n0\n") == []


@pytest.mark.parametrize("data, named", [
    (b"1\n0\n", "version"), (b"0\n", "count line"), (b"0\n2\n3 0\n", "count says 2"),
    (b"0\n1\n3\n", "two integers"), (b"0\n1\nx 0\n", "two integers"),
    (b"0\n2\n3 0\n3 5\n", "epoch above 3"), (b"0\n2\n3 5\n4 5\n", "starting above offset 5"),
    (b"0\n1\n-1 0\n", "non-negative")])
def test_a_damaged_file_is_refused_naming_the_line(data, named):
    with pytest.raises(CorruptEpochFile, match=named):
        decode(data, "f")


# == PartitionLog keeps it in step ============================================================
CONFIG = {"segment.bytes": 600, "retention.bytes": 1000}


def open_log(tmp_path, config=CONFIG):
    return PartitionLog(str(tmp_path / "t-0"), LogConfig(config), FakeClock())


def epoch_file(tmp_path):
    return (tmp_path / "t-0" / "leader-epoch-checkpoint").read_bytes()


def test_assign_epoch_writes_the_file_and_batches_carry_the_epoch(tmp_path):
    log = open_log(tmp_path)
    log.assign_epoch(4)
    assert epoch_file(tmp_path) == b"0\n1\n4 0\n"
    log.append(value_batch(0, 3), leader_epoch=4)
    log.assign_epoch(6)
    log.append(value_batch(3, 2), leader_epoch=6)
    assert epoch_file(tmp_path) == b"0\n2\n4 0\n6 3\n"
    assert log.end_offset_for_epoch(4) == (4, 3) and log.end_offset_for_epoch(6) == (6, 5)
    log.close()


def test_truncate_to_cuts_the_cache(tmp_path):
    log = open_log(tmp_path, {})
    log.assign_epoch(1)
    log.append(value_batch(0, 2), leader_epoch=1)
    log.assign_epoch(2)
    log.append(value_batch(2, 2), leader_epoch=2)
    log.truncate_to(2)
    assert log.epochs.entries == [(1, 0)] and epoch_file(tmp_path) == b"0\n1\n1 0\n"
    log.close()


def test_retention_moves_the_first_entry_to_the_new_log_start(tmp_path):
    log = open_log(tmp_path)
    log.assign_epoch(1)
    for i in range(30):
        log.append(value_batch(i, 1, size=40), leader_epoch=1)
    assert log.delete_old_segments() > 0 and log.log_start_offset > 0
    assert epoch_file(tmp_path) == b"0\n1\n1 %d\n" % log.log_start_offset
    log.close()


def test_reopen_cuts_entries_above_a_recovered_end(tmp_path):
    log = open_log(tmp_path, {})
    log.assign_epoch(1)
    log.append(value_batch(0, 2), leader_epoch=1)
    log.close()
    # an entry the crash left above the log end (assigned, its batches never written)
    LeaderEpochFile(str(tmp_path / "t-0")).write([(1, 0), (2, 7)])
    log = open_log(tmp_path, {})
    assert log.epochs.entries == [(1, 0)] and epoch_file(tmp_path) == b"0\n1\n1 0\n"
    log.close()


@pytest.mark.parametrize("damage", [b"garbage\n", None])
def test_a_damaged_or_missing_file_is_rebuilt_from_the_batches(tmp_path, damage):
    log = open_log(tmp_path, {})
    for epoch, first in ((2, 0), (2, 2), (5, 4), (7, 6)):
        log.assign_epoch(epoch)
        log.append(value_batch(first, 2), leader_epoch=epoch)
    log.close()
    path = tmp_path / "t-0" / "leader-epoch-checkpoint"
    if damage is None:
        os.unlink(path)
    else:
        path.write_bytes(damage)
    log = open_log(tmp_path, {})
    assert log.epochs.entries == [(2, 0), (5, 4), (7, 6)]
    assert epoch_file(tmp_path) == b"0\n3\n2 0\n5 4\n7 6\n"
    log.close()


def test_a_file_behind_the_last_batchs_epoch_is_rebuilt(tmp_path):
    # assign_epoch writes the file without fsync: after a power loss it can be the old one
    log = open_log(tmp_path, {})
    for epoch, first in ((2, 0), (5, 2)):
        log.assign_epoch(epoch)
        log.append(value_batch(first, 2), leader_epoch=epoch)
    log.close()
    LeaderEpochFile(str(tmp_path / "t-0")).write([(2, 0)])   # the rename of epoch 5's entry was lost
    log = open_log(tmp_path, {})
    assert log.epochs.entries == [(2, 0), (5, 2)]
    assert epoch_file(tmp_path) == b"0\n2\n2 0\n5 2\n"
    log.close()


def test_an_empty_log_without_a_file_writes_none_until_an_epoch_is_assigned(tmp_path):
    log = open_log(tmp_path, {})
    assert log.epochs.entries == []
    assert not os.path.exists(tmp_path / "t-0" / "leader-epoch-checkpoint")
    log.close()


def test_a_follower_append_extends_the_cache_from_the_batches_epochs(tmp_path):
    leader = open_log(tmp_path, {})
    for epoch, first in ((1, 0), (1, 2), (4, 4), (6, 6)):
        leader.assign_epoch(epoch)
        leader.append(value_batch(first, 2), leader_epoch=epoch)
    data = bytes(leader.read(0, 1 << 20).view)
    leader.close()
    follower = PartitionLog(str(tmp_path / "t-1"), LogConfig({}), FakeClock())
    follower.append(data, assign_offsets=False)
    assert follower.epochs.entries == [(1, 0), (4, 4), (6, 6)]
    assert (tmp_path / "t-1" / "leader-epoch-checkpoint").read_bytes() == b"0\n3\n1 0\n4 4\n6 6\n"
    follower.close()
