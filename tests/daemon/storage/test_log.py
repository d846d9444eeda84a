"""PartitionLog: appends, reads, rolling, indexes, timestamps, retention, flush policy."""
import os

import pytest

from odradek.client.errors import (CorruptRecord, InvalidRecord, MessageTooLarge, OffsetOutOfRange,
                                   UnsupportedCompression)
from odradek.client.records import CRC_OFFSET, MAGIC_OFFSET, Compression, iter_batches
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from support.clock import FakeClock
from support.records import batches_in, make_batch, read_all, value_batch


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def open_log(tmp_path, clock):
    opened = []

    def _open(**config):
        log = PartitionLog(str(tmp_path / "orders-0"), LogConfig(config), clock)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()


def values(records):
    return [r.value for r in records]


def test_append_assigns_dense_offsets_from_the_log_end(open_log):
    log = open_log()
    a = log.append(value_batch(0, 3))
    b = log.append(value_batch(3, 2))
    assert (a.first_offset, a.last_offset, b.first_offset, b.last_offset) == (0, 2, 3, 4)
    assert log.log_end_offset == 5
    assert [r.offset for r in read_all(log)] == [0, 1, 2, 3, 4]
    # the producer's baseOffset 0 was rewritten in the segment; the CRC still holds
    stored = batches_in(log)
    assert [b.base_offset for b in stored] == [0, 3]
    assert all(b.crc_valid() for b in stored)


def test_append_of_several_batches_in_one_buffer_assigns_each(open_log):
    log = open_log()
    info = log.append(value_batch(0, 2) + value_batch(2, 3) + value_batch(5, 1))
    assert (info.first_offset, info.last_offset, info.batches, info.records) == (0, 5, 3, 6)
    assert values(read_all(log)) == [(b"v%d-" % i).ljust(16, b".") for i in range(6)]
    assert [r.offset for r in read_all(log)] == list(range(6))


def test_read_returns_a_memoryview_into_the_segment_without_copying(open_log):
    log = open_log()
    log.append(value_batch(0, 2))
    data = log.read(0, 1 << 20)
    assert isinstance(data.view, memoryview)
    assert data.view.obj is not None and not isinstance(data.view.obj, bytes)
    del data


def test_read_honours_max_bytes_but_returns_at_least_one_batch(open_log):
    log = open_log()
    for i in range(5):
        log.append(value_batch(i, 1, size=100))
    one = len(batches_in(log)[0].buffer)
    assert len(log.read(0, 1).view) == one          # smaller than one batch: still one
    assert len(log.read(0, 2 * one).view) == 2 * one
    assert len(log.read(0, 2 * one + 5).view) == 2 * one
    data = log.read(3, 1 << 20)
    assert data.first_offset == 3 and data.next_offset == 5


def test_read_stops_at_max_offset_like_a_high_watermark(open_log):
    log = open_log()
    for i in range(4):
        log.append(value_batch(i, 1))
    data = log.read(0, 1 << 20, max_offset=2)
    assert data.next_offset == 2
    assert len(log.read(2, 1 << 20, max_offset=2)) == 0


def test_read_inside_a_batch_returns_the_whole_batch(open_log):
    log = open_log()
    log.append(value_batch(0, 10))
    data = log.read(7, 1 << 20)
    assert data.first_offset == 0 and data.next_offset == 10
    assert [r.offset for r in read_all(log, start=7)] == [7, 8, 9]


def test_read_outside_the_log_is_offset_out_of_range(open_log):
    log = open_log()
    log.append(value_batch(0, 3))
    assert len(log.read(3, 100)) == 0  # the log end: nothing yet, not an error
    with pytest.raises(OffsetOutOfRange, match="valid offsets are 0..3"):
        log.read(4, 100)
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 100)


def test_segments_roll_on_segment_bytes_and_are_named_by_base_offset(open_log, tmp_path):
    log = open_log(**{"segment.bytes": 1024})
    for i in range(40):
        log.append(value_batch(i, 1, size=100))
    assert len(log.segments) > 3
    names = sorted(os.listdir(tmp_path / "orders-0"))
    bases = [s.base_offset for s in log.segments]
    for base in bases:
        assert filenames.segment_name(base) + ".log" in names
        assert filenames.segment_name(base) + ".index" in names
        assert filenames.segment_name(base) + ".timeindex" in names
    assert all(s.size <= 1024 for s in log.segments)
    # closed segments are trimmed to their data
    for s in log.segments[:-1]:
        assert os.path.getsize(filenames.log_file(str(tmp_path / "orders-0"), s.base_offset)) == s.size
    assert values(read_all(log)) == [(b"v%d-" % i).ljust(100, b".") for i in range(40)]


def test_segments_roll_on_segment_ms(open_log, clock):
    log = open_log(**{"segment.ms": 1000})
    log.append(value_batch(0, 1, timestamp=clock.now))
    clock.advance(500)
    log.append(value_batch(1, 1, timestamp=clock.now))
    assert len(log.segments) == 1
    clock.advance(600)
    log.append(value_batch(2, 1, timestamp=clock.now))
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_a_batch_larger_than_segment_bytes_gets_a_segment_of_its_own(open_log):
    log = open_log(**{"segment.bytes": 256})
    log.append(value_batch(0, 1, size=50))
    log.append(value_batch(1, 1, size=1000))
    log.append(value_batch(2, 1, size=50))
    assert [s.base_offset for s in log.segments] == [0, 1, 2]
    assert [r.offset for r in read_all(log)] == [0, 1, 2]


def test_index_gets_an_entry_every_index_interval_bytes_and_lookups_use_it(open_log):
    log = open_log(**{"index.interval.bytes": 1000})
    for i in range(100):
        log.append(value_batch(i, 1, size=100))
    segment = log.active
    assert 10 <= segment.index.entries <= 20
    for slot in range(segment.index.entries):
        offset, position = segment.index.entry(slot)
        assert segment.batch_at(position).last_offset == offset
    for target in (0, 1, 37, 99):
        assert log.read(target, 1).first_offset == target


def test_offset_for_timestamp_finds_the_first_record_at_or_after(open_log):
    log = open_log(**{"index.interval.bytes": 200, "segment.bytes": 2048})
    for i in range(60):
        log.append(make_batch([b"a" * 40, b"b" * 40], timestamp=1000 + 10 * i))
    # batch i holds timestamps 1000+10i and 1000+10i+1 at offsets 2i and 2i+1
    assert log.offset_for_timestamp(0) == (0, 1000)
    assert log.offset_for_timestamp(1001) == (1, 1001)
    assert log.offset_for_timestamp(1002) == (2, 1010)
    assert log.offset_for_timestamp(1000 + 10 * 45 + 1) == (91, 1451)
    assert log.offset_for_timestamp(1000 + 10 * 59 + 2) is None


def test_offset_for_timestamp_handles_out_of_order_timestamps(open_log):
    log = open_log(**{"index.interval.bytes": 0})
    for i, ts in enumerate([100, 500, 200, 300, 700, 600]):
        log.append(make_batch([b"x"], timestamp=ts))
    assert log.offset_for_timestamp(250) == (1, 500)
    assert log.offset_for_timestamp(550) == (4, 700)
    assert log.offset_for_timestamp(650) == (4, 700)


def test_log_append_time_stamps_batches_with_the_broker_clock(open_log, clock):
    log = open_log(**{"message.timestamp.type": "LogAppendTime"})
    log.append(make_batch([b"a", b"b"], timestamp=5))
    (batch,) = batches_in(log)
    assert batch.max_timestamp == clock.now and batch.crc_valid()
    assert [r.timestamp for r in batch.records()] == [clock.now, clock.now]


def test_leader_epoch_is_written_into_each_batch(open_log):
    log = open_log()
    log.append(value_batch(0, 1) + value_batch(1, 1), leader_epoch=7)
    assert [b.partition_leader_epoch for b in batches_in(log)] == [7, 7]
    assert all(b.crc_valid() for b in batches_in(log))


# -- bad input is refused and changes nothing ---------------------------------------

def corrupt(data, position, byte=None):
    out = bytearray(data)
    out[position] = (out[position] ^ 0xFF) if byte is None else byte
    return bytes(out)


@pytest.mark.parametrize("damage, error, message", [
    (lambda b: corrupt(b, len(b) - 1), CorruptRecord, "CRC"),
    (lambda b: corrupt(b, MAGIC_OFFSET, 1), CorruptRecord, "magic 1"),
    (lambda b: b[:-3], CorruptRecord, "truncated"),
    (lambda b: b[:8] + (2 ** 31 - 1).to_bytes(4, "big") + b[12:], CorruptRecord, "truncated"),
    (lambda b: b[:8] + (10).to_bytes(4, "big") + b[12:], CorruptRecord, "impossible length"),
    (lambda b: b"\0" * 12, CorruptRecord, "impossible length"),
    (lambda b: b + b[:20], CorruptRecord, "truncated"),
    (lambda b: corrupt(b, CRC_OFFSET), CorruptRecord, "CRC"),
])
def test_an_invalid_batch_is_refused_and_the_log_is_unchanged(open_log, damage, error, message):
    log = open_log()
    log.append(value_batch(0, 2))
    before = (log.log_end_offset, log.active.size, log.active.index.entries)
    with pytest.raises(error, match=message):
        log.append(value_batch(2, 1) + damage(value_batch(3, 2)))
    assert (log.log_end_offset, log.active.size, log.active.index.entries) == before
    log.append(value_batch(2, 1))
    assert [r.offset for r in read_all(log)] == [0, 1, 2]


def test_an_empty_buffer_is_refused(open_log):
    log = open_log()
    with pytest.raises(CorruptRecord, match="empty"):
        log.append(b"")
    assert log.log_end_offset == 0


def test_a_batch_over_max_message_bytes_is_refused(open_log):
    log = open_log(**{"max.message.bytes": 200})
    with pytest.raises(MessageTooLarge, match="max.message.bytes is 200"):
        log.append(value_batch(0, 1, size=300))
    assert log.log_end_offset == 0


def test_a_batch_whose_count_disagrees_with_its_last_offset_delta_is_refused(open_log):
    log = open_log()
    data = bytearray(value_batch(0, 3))
    data[23:27] = (5).to_bytes(4, "big")  # lastOffsetDelta 5 for 3 records
    from odradek.client import native
    data[17:21] = native.crc32c(bytes(data[21:])).to_bytes(4, "big")
    with pytest.raises(InvalidRecord, match="3 records but lastOffsetDelta 5"):
        log.append(bytes(data))


def test_batches_of_every_codec_are_taken_and_a_compression_id_that_is_no_codec_is_refused(open_log):
    log = open_log()
    for i, codec in enumerate((Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD)):
        log.append(make_batch([b"%s %d" % (codec.label.encode(), i) * 20], compression=codec))
    assert [r.value for r in read_all(log)] == [b"%s %d" % (c.encode(), i) * 20
                                                for i, c in enumerate(("gzip", "snappy", "lz4", "zstd"))]
    assert [b.compression for b in batches_in(log)] == [1, 2, 3, 4]
    data = bytearray(value_batch(0, 1))
    data[22] |= 5  # attributes low byte: compression id 5, no codec
    from odradek.client import native
    data[17:21] = native.crc32c(bytes(data[21:])).to_bytes(4, "big")
    with pytest.raises(UnsupportedCompression, match="compression id 5, which is no codec; expected 0-4 "
                                                     "\\(none, gzip, snappy, lz4, zstd\\)"):
        log.append(bytes(data))
    assert log.log_end_offset == 4


# -- follower appends and truncation -----------------------------------------------

def test_follower_append_keeps_offsets_and_refuses_going_backwards(open_log, tmp_path, clock):
    leader = open_log()
    leader.append(value_batch(0, 2) + value_batch(2, 3))
    follower = PartitionLog(str(tmp_path / "orders-1"), LogConfig(), clock)
    try:
        data = bytes(leader.read(0, 1 << 20).view)
        follower.append(data, assign_offsets=False)
        assert follower.log_end_offset == 5
        with pytest.raises(CorruptRecord, match="baseOffset 0; expected at least 5"):
            follower.append(data, assign_offsets=False)
    finally:
        follower.close()


def test_truncate_to_removes_whole_batches_across_segments(open_log):
    log = open_log(**{"segment.bytes": 512})
    for i in range(20):
        log.append(value_batch(i, 1, size=100))
    log.truncate_to(7)
    assert log.log_end_offset == 7
    assert [r.offset for r in read_all(log)] == list(range(7))
    log.append(value_batch(7, 1))
    assert [r.offset for r in read_all(log)] == list(range(8))


def test_truncate_to_deletes_producer_state_snapshots_above_the_new_log_end(open_log):
    from odradek.daemon.storage import producer_snapshot
    log = open_log(**{"segment.bytes": 512})
    for i in range(20):
        log.append(value_batch(i, 1, size=100))
    for offset in (5, 7, 12):
        producer_snapshot.write(log.directory, offset, [], keep=3)
    log.truncate_to(7)
    assert producer_snapshot.offsets(log.directory) == [5, 7]


# -- retention -----------------------------------------------------------------------

def test_retention_bytes_deletes_oldest_segments_but_never_the_active_one(open_log, tmp_path):
    log = open_log(**{"segment.bytes": 600, "retention.bytes": 1000})
    for i in range(30):
        log.append(value_batch(i, 1, size=100))
    deleted = log.delete_old_segments()
    assert deleted > 0
    assert log.size_in_bytes - log.active.size < 1000
    assert log.log_start_offset == log.segments[0].base_offset > 0
    assert LogDirCheckpoints(str(tmp_path)).read(("orders", 0))[1] == log.log_start_offset
    assert read_all(log)[0].offset == log.log_start_offset
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)


def test_retention_cut_between_its_checkpoint_and_the_unlinks_is_finished_at_the_next_open(open_log, tmp_path):
    log = open_log(**{"segment.bytes": 300})
    for i in range(10):
        log.append(value_batch(i, 1, size=100))
    bases = [s.base_offset for s in log.segments]
    log.close()
    # the log start checkpointed past two whole segments, their files still there (a crash
    # in _delete_oldest between the checkpoint and the unlinks)
    LogDirCheckpoints(str(tmp_path)).update(("orders", 0), log_start_offset=bases[2])
    log = open_log(**{"segment.bytes": 300})
    assert [s.base_offset for s in log.segments] == bases[2:] and log.log_start_offset == bases[2]
    assert not any(n.startswith(f"{bases[0]:020d}.") for n in os.listdir(log.directory))
    assert read_all(log)[0].offset == bases[2]


def test_retention_ms_deletes_segments_whose_newest_record_is_older(open_log, clock):
    log = open_log(**{"segment.bytes": 300, "retention.ms": 10_000})
    for i in range(10):
        log.append(value_batch(i, 1, size=100, timestamp=clock.now))
        clock.advance(1000)
    assert log.delete_old_segments() == 0
    clock.advance(5_500)  # records up to ~4.5 s after the first are now older than 10 s
    deleted = log.delete_old_segments()
    assert deleted > 0
    first = read_all(log)[0]
    assert first.timestamp > clock.now - 10_000 - 1000
    # everything expired: the active segment still stays
    clock.advance(60_000)
    log.delete_old_segments()
    assert len(log.segments) == 1 and log.log_end_offset == 10


def test_retention_start_offset_survives_reopen(open_log, tmp_path, clock):
    log = open_log(**{"segment.bytes": 300, "retention.bytes": 400})
    for i in range(10):
        log.append(value_batch(i, 1, size=100))
    log.delete_old_segments()
    start = log.log_start_offset
    log.close()
    again = open_log(**{"segment.bytes": 300})
    assert again.log_start_offset == start and again.log_end_offset == 10


# -- DeleteRecords (Kafka's key 21): delete_records_before ----------------------------

def test_records_below_the_offset_become_unreadable_and_whole_segments_go(open_log, tmp_path):
    log = open_log(**{"segment.bytes": 300})
    for i in range(0, 20, 2):
        log.append(value_batch(i, 2, size=40))
    bases = [s.base_offset for s in log.segments]
    assert len(bases) > 3 and bases[3] - bases[2] > 1
    cut = bases[2] + 1                       # inside the third segment
    log.delete_records_before(cut)
    assert log.log_start_offset == cut
    assert [s.base_offset for s in log.segments] == bases[2:]
    assert LogDirCheckpoints(str(tmp_path)).read(("orders", 0))[1] == cut
    with pytest.raises(OffsetOutOfRange):
        log.read(cut - 1, 100)
    assert log.read(cut, 100).first_offset <= cut


def test_a_lower_offset_changes_nothing_and_one_past_the_end_is_refused(open_log):
    log = open_log()
    for i in range(4):
        log.append(value_batch(i, 1))
    log.delete_records_before(3)
    log.delete_records_before(1)
    assert log.log_start_offset == 3
    with pytest.raises(OffsetOutOfRange):
        log.delete_records_before(5)
    log.delete_records_before(4)             # the log end: every record gone, appends go on
    assert log.log_start_offset == log.log_end_offset == 4
    assert log.append(value_batch(4, 1)).first_offset == 4


def test_the_new_log_start_survives_reopen(open_log):
    log = open_log(**{"segment.bytes": 300})
    for i in range(6):
        log.append(value_batch(i, 1, size=100))
    log.delete_records_before(4)
    log.close()
    again = open_log(**{"segment.bytes": 300})
    assert (again.log_start_offset, again.log_end_offset) == (4, 6)


# -- flush policy -------------------------------------------------------------------

@pytest.mark.parametrize("config, appends_before_flush", [
    ({}, None),
    ({"flush.messages": 3}, 3),
    ({"flush.messages": 1}, 1),
])
def test_flush_messages_moves_the_recovery_point(open_log, tmp_path, config, appends_before_flush):
    log = open_log(**config)
    for i in range(1, 5):
        log.append(value_batch(i, 1))
        recovery_point = LogDirCheckpoints(str(tmp_path)).read(("orders", 0))[0]
        if appends_before_flush and i % appends_before_flush == 0:
            assert recovery_point == i
        else:
            assert recovery_point < i


def test_flush_ms_flushes_once_the_time_has_passed(open_log, tmp_path, clock):
    log = open_log(**{"flush.ms": 1000})
    log.append(value_batch(0, 1))
    assert log.recovery_point == 0
    clock.advance(1000)
    log.maybe_flush()
    assert log.recovery_point == 1
    assert LogDirCheckpoints(str(tmp_path)).read(("orders", 0))[0] == 1


def test_close_then_reopen_keeps_everything_and_appends_continue(open_log, clock):
    log = open_log(**{"segment.bytes": 1024, "index.interval.bytes": 100})
    for i in range(30):
        log.append(value_batch(i, 1, size=50))
    entries = log.active.index.entries
    log.close()
    again = open_log(**{"segment.bytes": 1024, "index.interval.bytes": 100})
    assert again.log_end_offset == 30 and again.active.index.entries == entries
    again.append(value_batch(30, 1, size=50))
    assert values(read_all(again)) == [(b"v%d-" % i).ljust(50, b".") for i in range(31)]


def test_an_append_of_more_than_a_scan_chunk_of_batches_counts_every_record(open_log):
    log = open_log()
    info = log.append(b"".join(value_batch(i, 2) for i in range(1500)))
    assert (info.batches, info.records, info.last_offset) == (1500, 3000, 2999)


def test_a_wrong_index_entry_makes_reads_fail_clearly_instead_of_looping(open_log):
    from odradek.client.errors import InvalidSegment
    log = open_log(**{"index.interval.bytes": 0})
    for i in range(10):
        log.append(value_batch(i, 1))
    index = log.active.index
    index._file.buffer[4 * 8 + 4:4 * 8 + 8] = (7).to_bytes(4, "big")  # entry 4 -> position 7
    index._reload_last()
    with pytest.raises(InvalidSegment, match="no batch at position 7"):
        log.read(5, 100)


def test_locate_gives_the_bytes_a_reader_may_take_from_each_segment(open_log):
    log = open_log(**{"segment.bytes": "2000"})
    for i in range(30):
        log.append(value_batch(i * 5, 5, size=40))
    assert len(log.segments) > 2
    offset, seen = 0, []
    for _ in range(100):                      # bounded: one step per segment or stop
        if offset >= log.log_end_offset:
            break
        loc = log.locate(offset)
        data = bytes(loc.segment.view(loc.position, loc.end))
        seen += [r.offset for r in read_all_bytes(data)]
        assert loc.next_offset > offset
        offset = loc.next_offset
    assert seen == list(range(150))


def test_locate_stops_at_max_offset_and_outside_the_log_is_out_of_range(open_log):
    log = open_log()
    for i in range(4):
        log.append(value_batch(i * 5, 5))
    loc = log.locate(7, max_offset=10)
    assert loc.position > 0 and loc.next_offset == 10
    assert [r.offset for r in read_all_bytes(bytes(loc.segment.view(loc.position, loc.end)))] == list(range(5, 10))
    at_end = log.locate(20)
    assert at_end.position == at_end.end and at_end.next_offset == 20
    with pytest.raises(OffsetOutOfRange):
        log.locate(21)


def read_all_bytes(data):
    return [r for _, b in iter_batches(data) for r in b.records()]
