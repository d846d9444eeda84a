"""PartitionLog in follower mode: append_as_follower keeps the follower's .log files
byte-identical to the leader's (it rolls where the leader rolled, never on its own
policy), and truncate_fully_and_start_at restarts a log that fell behind the leader's
log start. The leader is a real PartitionLog; the copies go through LeaderFiles."""
import os
import struct

import pytest

from odradek.client.errors import CorruptRecord, InvalidSegment
from odradek.daemon.storage import LogConfig, PartitionLog, filenames, producer_snapshot
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from support.clock import FakeClock
from support.records import read_all, value_batch
from support.replication import Pair, assert_identical, copy_all

SMALL = {"segment.bytes": 1024, "index.interval.bytes": 200}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_pair(tmp_path, clock):
    made = []

    def _make(leader_config=SMALL, follower_config=None):
        pair = Pair(tmp_path, clock, leader_config, follower_config)
        made.append(pair)
        return pair

    yield _make
    for pair in made:
        pair.close()


def produce_mixed(pair, clock):
    """Many small appends over many rolls, a segment.ms roll, one append larger than
    segment.bytes, appends of several records."""
    pair.produce(batches=30, records=2)
    clock.advance(pair.leader.config.segment_ms + 1)   # the leader rolls by time at its next append
    pair.produce(batches=3)
    pair.produce(records=40, size=64)                   # > 1024 bytes: a segment of its own size
    pair.produce(batches=20, records=3, size=30)


@pytest.mark.parametrize("max_bytes,hints", [(1 << 20, True), (1, True), (150, True), (333, False), (1, False)])
def test_the_follower_copy_is_byte_identical_through_rolls(make_pair, clock, max_bytes, hints):
    pair = make_pair({**SMALL, "segment.ms": 60_000})
    produce_mixed(pair, clock)
    bases = [s.base_offset for s in pair.leader.segments]
    assert len(bases) > 8
    big = [s for s in pair.leader.segments if s.size > 1024]
    assert len(big) == 1                                 # the oversized append's own segment
    copy_all(pair, max_bytes=max_bytes, hints=hints)
    assert_identical(pair)
    assert pair.follower.epochs.entries == [(3, 0)]
    assert [r.value for r in read_all(pair.follower)] == [r.value for r in read_all(pair.leader)]
    pair.leader.close()
    pair.follower.close()
    # closed, both trimmed: every .log file identical, whole
    names = sorted(n for n in os.listdir(pair.leader_dir) if n.endswith(".log"))
    assert names == sorted(n for n in os.listdir(pair.follower_dir) if n.endswith(".log"))
    for n in names:
        with open(os.path.join(pair.leader_dir, n), "rb") as a, open(os.path.join(pair.follower_dir, n), "rb") as b:
            assert a.read() == b.read(), n


def test_the_follower_never_rolls_on_its_own_segment_bytes_or_segment_ms(make_pair, clock):
    # the follower's segment.bytes and segment.ms are both smaller than the leader's
    pair = make_pair({**SMALL, "segment.bytes": 4096}, {**SMALL, "segment.bytes": 512, "segment.ms": 10})
    pair.produce(batches=10)
    copy_all(pair)
    clock.advance(1_000)                          # past the follower's segment.ms
    pair.produce(batches=60)                      # more than 512 bytes in the leader's first segment
    copy_all(pair, max_bytes=300)
    assert len(pair.leader.segments) >= 2
    assert pair.follower.segments[0].size > 512   # room was made, not a roll
    assert_identical(pair)


def test_a_follower_restarted_midway_resumes_identical(make_pair, clock):
    pair = make_pair({**SMALL, "segment.ms": 60_000})
    produce_mixed(pair, clock)
    end = pair.leader.log_end_offset
    hint = None
    while pair.follower.log_end_offset < end // 2:
        chunk = pair.files.read(pair.follower.log_end_offset, end, 200, hint)
        pair.follower.append_as_follower(chunk.data, chunk.segment_base)
        hint = chunk.next_hint
    pair.reopen_follower()
    pair.produce(batches=15, records=2)
    copy_all(pair, max_bytes=500)
    assert_identical(pair)
    assert pair.follower.log_end_offset == pair.leader.log_end_offset


def test_a_follower_that_rolled_as_a_leader_before_dying_takes_the_empty_segment_back(make_pair, clock):
    # found by tests/faults/test_replication_kills.py: the old leader had rolled (an empty
    # segment at its log end) just before it died; its successor went on in the segment
    # before, and the old leader, a follower now, appended the successor's batches into
    # its empty segment: the same offsets, but files that no longer lined up
    pair = make_pair({**SMALL, "segment.ms": 60_000})
    pair.produce(batches=5, records=2)
    copy_all(pair)
    pair.follower.roll()      # its roll as a leader, with nothing appended after it
    pair.reopen_follower()    # it died and came back as a follower
    assert pair.follower.active.base_offset == pair.leader.log_end_offset
    pair.produce(batches=3, records=2)   # the new leader's batches, in its segment that began before
    copy_all(pair)
    assert_identical(pair)
    assert [s.base_offset for s in pair.follower.segments] == [s.base_offset for s in pair.leader.segments]


def test_a_segment_base_that_does_not_line_up_is_refused_and_changes_nothing(make_pair):
    pair = make_pair()
    pair.produce(batches=3)
    copy_all(pair)
    leo, segments = pair.follower.log_end_offset, pair.follower.segments
    with pytest.raises(InvalidSegment, match="cannot start here"):
        pair.follower.append_as_follower(value_batch(0, 1), leo + 5)
    assert pair.follower.log_end_offset == leo and pair.follower.segments == segments


def test_bad_batches_from_the_leader_are_refused_as_by_append(make_pair):
    pair = make_pair()
    pair.produce(batches=3)
    chunk = pair.files.read(0, pair.leader.log_end_offset, 1 << 20)
    damaged = bytearray(chunk.data)
    damaged[-1] ^= 0xFF
    with pytest.raises(CorruptRecord, match="CRC"):
        pair.follower.append_as_follower(bytes(damaged), chunk.segment_base)
    assert pair.follower.log_end_offset == 0
    pair.follower.append_as_follower(chunk.data, chunk.segment_base)
    with pytest.raises(CorruptRecord, match="baseOffset"):   # already there
        pair.follower.append_as_follower(chunk.data, chunk.segment_base)
    assert_identical(pair)


def test_the_follower_flushes_by_its_flush_policy(make_pair):
    pair = make_pair(SMALL, {**SMALL, "flush.messages": 2})
    pair.produce(batches=5)
    copy_all(pair, max_bytes=1)   # one batch, one record a chunk
    assert pair.follower.recovery_point == 4   # flushed after every second record


def test_truncate_fully_and_start_at_empties_the_log_and_starts_it_there(make_pair):
    pair = make_pair()
    pair.produce(batches=40)
    copy_all(pair)
    follower = pair.follower
    producer_snapshot.write(follower.directory, follower.log_end_offset, [])
    assert len(follower.segments) > 2
    follower.truncate_fully_and_start_at(1000)
    assert (follower.log_start_offset, follower.log_end_offset, follower.recovery_point) == (1000, 1000, 1000)
    assert [s.base_offset for s in follower.segments] == [1000]
    assert sorted(os.listdir(follower.directory)) == sorted(
        [filenames.segment_name(1000) + s for s in (".log", ".index", ".timeindex")] +
        [filenames.LEADER_EPOCH_CHECKPOINT])
    assert follower.epochs.entries == []
    assert LogDirCheckpoints(follower.log_dir).read(("orders", 0)) == (1000, 1000)
    assert producer_snapshot.offsets(follower.directory) == []
    follower.assign_epoch(4)
    follower.append(value_batch(0, 2), leader_epoch=4)
    assert follower.log_end_offset == 1002 and follower.epochs.entries == [(4, 1000)]
    pair.reopen_follower()
    assert (pair.follower.log_start_offset, pair.follower.log_end_offset) == (1000, 1002)
    assert pair.follower.epochs.entries == [(4, 1000)]


def test_a_crash_inside_truncate_fully_opens_a_consistent_log(tmp_path, clock):
    """The state truncate_fully_and_start_at passes through: old segments gone, the new
    one created, the checkpoints not yet moved. Open starts the log at the new segment."""
    directory = str(tmp_path / "follower" / "orders-0")
    log = PartitionLog(directory, LogConfig(SMALL), clock)
    for i in range(20):
        log.append(value_batch(i, 1))
    log.close()
    for name in os.listdir(directory):
        if filenames.parse_segment_file(name):
            os.unlink(os.path.join(directory, name))
    with open(filenames.log_file(directory, 500), "wb"):
        pass
    log = PartitionLog(directory, LogConfig(SMALL), clock)
    try:
        assert (log.log_start_offset, log.log_end_offset) == (500, 500)
        batch = bytearray(value_batch(0, 1))
        struct.pack_into(">q", batch, 0, 500)   # baseOffset: not covered by the CRC
        log.append_as_follower(bytes(batch), 500)
        assert log.log_end_offset == 501
    finally:
        log.close()


def test_a_log_append_time_follower_keeps_the_leaders_timestamps(make_pair, clock):
    # Kafka's appendAsFollower never stamps: the leader's LogAppendTime (and the CRC
    # over it) is what the follower stores, whatever its own clock says
    config = {**SMALL, "message.timestamp.type": "LogAppendTime"}
    pair = make_pair(config)
    pair.produce(batches=5)
    clock.advance(5_000)
    copy_all(pair)
    assert_identical(pair)
    assert [b.max_timestamp for b in pair.follower.active.batches_from()] == \
        [b.max_timestamp for b in pair.leader.active.batches_from()]


def test_a_follower_that_becomes_leader_appends_through_the_map_after_its_pwrites(make_pair):
    # the follower's appends are pwrites, a leader's are copies into the map: the same
    # PartitionLog object goes on from where the pwrites ended, and its indexes agree
    pair = make_pair({**SMALL, "segment.bytes": 1 << 16})
    pair.produce(batches=20, records=2)
    copy_all(pair, max_bytes=300)
    follower = pair.follower
    segment = follower.active
    end, size = follower.log_end_offset, segment.size
    assert segment.native_state.position == size        # pwrites moved the C state along
    follower.assign_epoch(4)
    info = follower.append(value_batch(end, 3), leader_epoch=4)
    assert (info.first_offset, follower.log_end_offset) == (end, end + 3)
    assert bytes(segment.view(0, size)) == bytes(pair.leader.active.view(0, size))
    values = [r.value for r in read_all(pair.leader)] + [r.value for r in read_all(follower, end)]
    assert [r.value for r in read_all(follower)] == values
    assert [r.offset for r in read_all(follower)] == list(range(end + 3))
    for offset in range(end + 3):   # every offset found through the index entries both paths made
        assert segment.find(offset).base_offset <= offset <= segment.find(offset).last_offset
    entries = segment.index.entries
    pair.reopen_follower()          # a clean close trims: the indexes are trusted as written
    assert pair.follower.active.index.entries == entries
    assert [r.value for r in read_all(pair.follower)] == values


def test_a_crashed_follower_recovers_its_pwritten_batches_and_cuts_a_torn_tail(make_pair):
    pair = make_pair({**SMALL, "segment.bytes": 1 << 16})
    pair.produce(batches=12)
    copy_all(pair, max_bytes=200)
    segment = pair.follower.active
    torn = pair.files.read(0, pair.leader.log_end_offset, 1 << 20).data[:50]
    with open(segment.log.path, "r+b") as f:        # half a batch past the data, as a
        f.seek(segment.size)                          # pwrite cut short by a crash leaves
        f.write(torn)
    for s in pair.follower.segments:
        s.close()   # as a SIGKILL: no flush, trim or checkpoint
    pair.follower._closed = True
    pair.reopen_follower()
    assert pair.follower.log_end_offset == 12
    assert_identical(pair)
    assert pair.follower.active.log.is_zero(pair.follower.active.size, pair.follower.active.log.capacity)
