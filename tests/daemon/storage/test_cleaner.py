"""Log compaction (storage/cleaner.py, PartitionLog.replace_segments and swap recovery):
Kafka's rules, with a FakeClock.

Each test builds a small log of keyed records, runs the cleaner, and checks what survived
against a model of what was appended (`Model`), plus the storage invariants `check_log`
checks after every clean: offsets strictly increasing, every CRC valid, every index
entry consistent (dump-log's checks), each surviving record identical (key, value,
headers, timestamp) to what was appended at its offset.
"""
import os
import re

import pytest

from odradek.client import native
from odradek.client.errors import InvalidConfig, StorageError
from odradek.client.records import ATTRIBUTES_OFFSET, COMPRESSION_MASK, CRC_OFFSET, BatchBuilder, Compression
from odradek.daemon.storage import LogConfig, PartitionLog, filenames
from odradek.daemon.storage import log as log_module
from odradek.daemon.storage.checkpoint import CleanerCheckpoint
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.filenames import CLEANER_CHECKPOINT
from odradek.daemon.storage.config import NO_LIMIT
from support.clock import FakeClock
from support.compaction import Model, append, check_latest_present, check_log, fill
from support.records import batches_in, read_all

DAY = 86_400_000
BASE = {"cleanup.policy": "compact", "segment.bytes": 1024, "index.interval.bytes": 128}


# ==== fixtures (helpers: tests/support/compaction.py) ========================================
@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def open_log(tmp_path, clock):
    opened = []

    def _open(name="topic-0", **config):
        log = PartitionLog(str(tmp_path / name), LogConfig({**BASE, **config}), clock)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        if not log._closed:
            log.close()


def active_bytes(log):
    seg = log.active
    return bytes(seg.view(0, seg.size))


# ==== configuration ===========================================================================
def test_compaction_configs_have_kafkas_names_and_defaults():
    c = LogConfig()
    assert (c.min_cleanable_dirty_ratio, c.delete_retention_ms, c.min_compaction_lag_ms,
            c.max_compaction_lag_ms) == (0.5, 86_400_000, 0, NO_LIMIT)
    assert c.delete and not c.compact
    for policy, compact, delete in (("compact", True, False), ("delete", False, True),
                                    ("compact,delete", True, True), ("delete, compact", True, True)):
        c = LogConfig({"cleanup.policy": policy})
        assert (c.compact, c.delete) == (compact, delete), policy
    assert LogConfig({"min.cleanable.dirty.ratio": "0.25"}).min_cleanable_dirty_ratio == 0.25


@pytest.mark.parametrize("values, message", [
    ({"cleanup.policy": "compacted"}, "cleanup.policy='compacted' is not valid; expected a comma-separated "
                                      "list of compact, delete"),
    ({"cleanup.policy": ""}, "cleanup.policy='' is not valid"),
    ({"cleanup.policy": "compact,compact"}, "cleanup.policy='compact,compact' is not valid"),
    ({"cleanup.policy": "compact,"}, "is not valid"),
    ({"min.cleanable.dirty.ratio": 1.5}, "min.cleanable.dirty.ratio=1.5 is out of range; expected a number "
                                         ">= 0.0 and <= 1.0"),
    ({"min.cleanable.dirty.ratio": -0.1}, "out of range"),
    ({"min.cleanable.dirty.ratio": "nan"}, "min.cleanable.dirty.ratio='nan' is not valid"),
    ({"min.cleanable.dirty.ratio": "half"}, "is not valid"),
    ({"min.cleanable.dirty.ratio": True}, "is not valid"),
    ({"delete.retention.ms": -1}, "delete.retention.ms=-1 is out of range"),
    ({"min.compaction.lag.ms": -1}, "min.compaction.lag.ms=-1 is out of range"),
    ({"max.compaction.lag.ms": 0}, "max.compaction.lag.ms=0 is out of range"),
    ({"min.compaction.lag.ms": 10, "max.compaction.lag.ms": 5},
     "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"),
])
def test_compaction_configs_are_validated_naming_the_key(values, message):
    with pytest.raises(InvalidConfig, match=re.escape(message)):
        LogConfig(values)


def test_max_compaction_lag_bounds_how_long_the_active_segment_lives(open_log, clock):
    assert LogConfig({"cleanup.policy": "compact", "max.compaction.lag.ms": 1000}).max_segment_ms == 1000
    assert LogConfig({"cleanup.policy": "delete", "max.compaction.lag.ms": 1000}).max_segment_ms == \
        LogConfig().segment_ms
    log = open_log(**{"segment.bytes": 1 << 20, "max.compaction.lag.ms": 1000})
    model = Model()
    append(log, model, [(b"a", b"1")])
    clock.advance(1001)
    append(log, model, [(b"a", b"2")])
    assert len(log.segments) == 2   # rolled by the lag, long before segment.ms


# ==== what is kept ==========================================================================
def test_the_latest_record_of_each_key_stays_at_its_offset_and_older_ones_go(open_log):
    log = open_log()
    model = Model()
    fill(log, model, 200, keys=7)
    before_active = active_bytes(log)
    stats = LogCleaner(log).clean()
    assert stats.state == "done"
    records = check_log(log, model)
    check_latest_present(log, model, records, allow_dropped_tombstones=False)
    cleaned_end = log.active.base_offset
    below = [r for r in records if r.offset < cleaned_end]
    assert len({r.key for r in below}) == len(below) <= 7    # one record per key at most
    assert active_bytes(log) == before_active                  # the active segment untouched
    assert [r.offset for r in records if r.offset >= cleaned_end] == list(range(cleaned_end, 200))
    assert log.log_end_offset == 200 and log.log_start_offset == 0


def test_batches_keep_their_offsets_producer_fields_and_last_offset_delta(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1"), (b"d", b"1")], producer=(7, 3, 100))
    append(log, model, [(b"a", b"2"), (b"d", b"2")], producer=(8, 0, 0))  # supersedes a and d
    append(log, model, [(b"x", b"1")])
    log.roll()
    append(log, model, [(b"y", b"1")])
    LogCleaner(log).clean(force=True)
    check_log(log, model)
    first = batches_in(log)[0]
    assert (first.base_offset, first.last_offset, first.records_count) == (0, 3, 2)
    assert (first.producer_id, first.producer_epoch, first.base_sequence, first.last_sequence) == (7, 3, 100, 103)
    assert [r.offset for r in first.records()] == [1, 2]      # offsetDelta 1 and 2, kept
    assert first.crc_valid() and first.base_timestamp == model.records[1][2]


def test_a_batch_that_loses_nothing_is_copied_byte_for_byte(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1"), (b"b", b"1")])
    append(log, model, [(b"c", b"1")], compression=Compression.GZIP)
    log.roll()
    before = [bytes(b.buffer) for b in batches_in(log)]
    append(log, model, [(b"z", b"1")])
    LogCleaner(log).clean(force=True)
    assert [bytes(b.buffer) for b in batches_in(log)][:2] == before


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_compressed_batches_are_read_and_rebuilt_in_their_codec(open_log, codec):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1" * 50), (b"b", b"1" * 50), (b"c", b"1" * 50)], compression=codec)
    append(log, model, [(b"b", b"2")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    LogCleaner(log).clean(force=True)
    check_log(log, model)
    first = batches_in(log)[0]
    assert first.compression == codec and first.crc_valid()
    assert [(r.offset, r.key) for r in first.records()] == [(0, b"a"), (2, b"c")]


def test_records_with_a_null_key_are_kept(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(None, b"no key 1"), (b"a", b"1"), (None, b"no key 2")])
    append(log, model, [(b"a", b"2"), (None, b"no key 3")])
    log.roll()
    append(log, model, [(b"a", b"3")])
    LogCleaner(log).clean(force=True)
    records = check_log(log, model)
    assert [r.offset for r in records] == [0, 2, 3, 4, 5]


def test_headers_and_timestamps_survive_a_rebuild(open_log, clock):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1"), (b"b", b"1"), (b"c", None)], headers=[("h", b"v"), ("n", None)])
    clock.advance(5000)
    append(log, model, [(b"a", b"2")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    LogCleaner(log).clean(force=True)
    check_log(log, model)   # compares headers and timestamps of every survivor


def test_log_append_time_batches_keep_their_timestamp(open_log, clock):
    log = open_log(**{"segment.bytes": 4096, "message.timestamp.type": "LogAppendTime"})
    model = Model()
    append(log, model, [(b"a", b"1"), (b"b", b"1")])
    append(log, model, [(b"a", b"2")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    stamped = {r.offset: r.timestamp for r in read_all(log)}
    LogCleaner(log).clean(force=True)
    assert {r.offset: r.timestamp for r in read_all(log)} == {o: stamped[o] for o in (1, 2, 3)}


# ==== tombstones ===========================================================================
def test_tombstones_go_only_after_delete_retention_ms(open_log, clock):
    log = open_log(**{"segment.bytes": 4096, "delete.retention.ms": 1000})
    model = Model()
    append(log, model, [(b"a", b"1"), (b"b", b"1")])
    append(log, model, [(b"a", None)])               # tombstone of a, at offset 2
    log.roll()
    append(log, model, [(b"z", b"1")])
    cleaner = LogCleaner(log)
    cleaner.clean(force=True)                          # first sight: horizon = now + 1000
    assert [r.offset for r in read_all(log)] == [1, 2, 3]
    horizon_batch = next(b for b in batches_in(log) if b.base_offset == 2)
    assert horizon_batch.delete_horizon == clock() + 1000
    assert [r.timestamp for r in horizon_batch.records()] == [model.records[2][2]]
    clock.advance(999)
    cleaner.clean(force=True)
    assert [r.offset for r in read_all(log)] == [1, 2, 3]
    clock.advance(1)
    stats = cleaner.clean(force=True)
    assert stats.pass_totals["tombstones_dropped"] == 1
    assert [r.offset for r in read_all(log)] == [1, 3]
    check_log(log, model)
    # the emptied batch was the segment's last: kept empty, so the segment still ends at 3
    assert [(b.base_offset, b.last_offset, b.records_count) for b in batches_in(log)][:2] == [(0, 1, 1), (2, 2, 0)]


def test_a_tombstone_superseded_by_a_value_goes_at_once(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", None)])
    append(log, model, [(b"a", b"back")])
    append(log, model, [(b"b", b"1")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    LogCleaner(log).clean(force=True)
    assert [r.offset for r in read_all(log)] == [1, 2, 3]


# ==== producers and control batches ============================================================
def test_the_last_batch_of_a_producer_is_kept_empty_and_others_dropped(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1")], producer=(5, 0, 0))   # 0: producer 5, superseded later
    append(log, model, [(b"b", b"1")], producer=(5, 0, 1))   # 1: producer 5's last, superseded
    append(log, model, [(b"a", b"2"), (b"b", b"2")])          # 2, 3
    append(log, model, [(b"c", b"1")])                        # 4: the segment's last batch
    log.roll()
    append(log, model, [(b"z", b"1")])
    LogCleaner(log).clean(force=True)
    check_log(log, model)
    shapes = [(b.base_offset, b.records_count, b.producer_id, b.producer_epoch, b.base_sequence)
              for b in batches_in(log)]
    assert shapes[:3] == [(1, 0, 5, 0, 1), (2, 2, -1, -1, -1), (4, 1, -1, -1, -1)]
    empty = batches_in(log)[0]
    assert empty.size == 61 and empty.base_timestamp == -1 and empty.crc_valid()
    assert empty.max_timestamp == model.records[1][2]


def test_active_producers_can_be_given_instead_of_walked(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1")], producer=(5, 0, 0))
    append(log, model, [(b"a", b"2")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    LogCleaner(log, active_producers=lambda: {}).clean(force=True)   # producer 5 expired
    assert [b.base_offset for b in batches_in(log)] == [1, 2]


def test_an_expired_producers_last_batch_is_not_kept(open_log, clock):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1")], producer=(5, 0, 0))
    append(log, model, [(b"a", b"2")])
    append(log, model, [(b"b", b"1")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    cleaner = LogCleaner(log, producer_expiration_ms=1000)
    cleaner.clean(force=True)
    assert [b.base_offset for b in batches_in(log)] == [0, 1, 2, 3]   # producer 5: kept empty
    clock.advance(1001)
    cleaner.clean(force=True)
    assert [b.base_offset for b in batches_in(log)] == [1, 2, 3]      # expired: gone


def test_a_delete_retention_of_forever_keeps_tombstones(open_log, clock):
    log = open_log(**{"segment.bytes": 4096, "delete.retention.ms": NO_LIMIT})
    model = Model()
    append(log, model, [(b"a", b"1")])
    append(log, model, [(b"a", None)])
    log.roll()
    append(log, model, [(b"z", b"1")])
    cleaner = LogCleaner(log)
    cleaner.clean(force=True)
    assert batches_in(log)[0].delete_horizon == NO_LIMIT     # now + forever, capped to int64
    clock.advance(10 * DAY)
    cleaner.clean(force=True)
    assert [r.offset for r in check_log(log, model)] == [1, 2]


def control_batch(kind, producer_id, epoch, timestamp):
    """A transaction marker: control record key (version 0, type), value (version 0,
    coordinator epoch 0)."""
    b = BatchBuilder(producer_id=producer_id, producer_epoch=epoch, transactional=True, control=True)
    b.append(timestamp, (0).to_bytes(2, "big") + kind.to_bytes(2, "big"), bytes(6))
    return b.build()


def test_a_transaction_marker_stays_while_its_transaction_has_data_then_gets_a_horizon(open_log, clock):
    log = open_log(**{"segment.bytes": 4096, "delete.retention.ms": 100})
    b = BatchBuilder(producer_id=9, producer_epoch=0, base_sequence=0, transactional=True)
    b.append(clock(), b"a", b"1")
    log.append(b.build())                                        # 0: transactional data
    log.append(control_batch(1, 9, 0, clock()))                  # 1: COMMIT
    log.append(_plain(b"a", b"2", clock()))                      # 2: supersedes 0
    log.append(_plain(b"q", b"1", clock()))                      # 3
    log.roll()
    log.append(_plain(b"z", b"1", clock()))
    cleaner = LogCleaner(log, active_producers=lambda: {})
    cleaner.clean(force=True)
    # the data batch went (superseded), the marker saw it: kept, no horizon yet
    shapes = [(b.base_offset, b.is_control, b.delete_horizon) for b in batches_in(log)]
    assert shapes[:2] == [(1, True, None), (2, False, None)]
    cleaner.clean(force=True)   # no data of its transaction left: horizon set
    marker = batches_in(log)[0]
    assert marker.is_control and marker.delete_horizon == clock() + 100
    clock.advance(100)
    cleaner.clean(force=True)   # past the horizon: gone
    assert [b.base_offset for b in batches_in(log)][:1] == [2]


def _plain(key, value, ts):
    b = BatchBuilder()
    b.append(ts, key, value)
    return b.build()


# ==== when a pass runs ========================================================================
def test_a_pass_runs_when_the_dirty_ratio_passes_min_cleanable_dirty_ratio(open_log):
    log = open_log()
    model = Model()
    fill(log, model, 120, keys=4)
    cleaner = LogCleaner(log)
    c = cleaner.cleanable()
    assert c.first_dirty == 0 and c.clean_bytes == 0 and c.ratio == 1.0
    cleaner.clean()
    assert CleanerCheckpoint(log.log_dir).read(("topic", 0)) == log.active.base_offset
    fill(log, model, 60, keys=4)
    c = cleaner.cleanable()
    assert 0 < c.ratio < 1 and c.dirty_bytes == sum(s.size for s in log.segments[:-1]) - c.clean_bytes
    assert cleaner.dirty_ratio() == c.ratio
    # strictly above the ratio, as Kafka: equal is not enough
    log.config = log.config.with_overrides({"min.cleanable.dirty.ratio": c.ratio})
    assert cleaner.maybe_clean().state == "idle"
    log.config = log.config.with_overrides({"min.cleanable.dirty.ratio": c.ratio - 1e-9})
    assert cleaner.clean().state == "done"
    check_log(log, model)
    check_latest_present(log, model)


def test_nothing_is_cleaned_for_a_delete_only_log_and_a_pass_stops_when_compaction_is_turned_off(open_log):
    log = open_log(**{"cleanup.policy": "delete"})
    model = Model()
    fill(log, model, 100)
    cleaner = LogCleaner(log)
    assert cleaner.maybe_clean(force=True).state == "idle"
    log.config = log.config.with_overrides({"cleanup.policy": "compact"})
    assert cleaner.maybe_clean(max_bytes=100).state == "cleaning"
    log.config = log.config.with_overrides({"cleanup.policy": "delete"})
    assert cleaner.maybe_clean().state == "aborted"
    assert not [n for n in os.listdir(log.directory) if n.endswith((".cleaned", ".swap"))]
    check_log(log, model)


def test_min_compaction_lag_keeps_young_segments_dirty(open_log, clock):
    log = open_log(**{"min.compaction.lag.ms": 10_000})
    model = Model()
    fill(log, model, 60, keys=3)        # old
    log.roll()
    old_end = log.active.base_offset
    clock.advance(20_000)
    fill(log, model, 60, keys=3)        # young: inside the lag
    cleaner = LogCleaner(log)
    c = cleaner.cleanable()
    assert c.first_uncleanable == old_end
    cleaner.clean()
    records = read_all(log)
    assert [r.offset for r in records if r.offset >= old_end] == list(range(old_end, 120))
    assert CleanerCheckpoint(log.log_dir).read(("topic", 0)) == old_end
    clock.advance(10_003)     # the young segments' records are now older than the lag
    cleaner.clean()
    assert len([r for r in read_all(log) if r.offset < log.active.base_offset]) <= 3


def test_max_compaction_lag_forces_a_pass_below_the_dirty_ratio(open_log, clock):
    log = open_log(**{"min.cleanable.dirty.ratio": 0.99, "max.compaction.lag.ms": 60_000})
    model = Model()
    fill(log, model, 60, keys=3)
    log.roll()
    cleaner = LogCleaner(log)
    cleaner.clean(force=True)
    fill(log, model, 9, keys=3)
    log.roll()
    assert cleaner.maybe_clean().state == "idle"        # ratio well below 0.99
    clock.advance(60_000)
    assert not cleaner.cleanable().need_compaction_now  # the first batch's timestamp is now + 2
    clock.advance(3)
    assert cleaner.cleanable().need_compaction_now
    assert cleaner.clean().state == "done"


def test_max_offset_keeps_the_cleaner_below_it(open_log):
    log = open_log()
    model = Model()
    fill(log, model, 200, keys=5)
    bases = [s.base_offset for s in log.segments]
    limit = bases[3] + 1                                # inside the fourth segment
    cleaner = LogCleaner(log)
    before = {s.base_offset: bytes(s.view(0, s.size)) for s in log.segments[3:]}
    cleaner.clean(max_offset=limit)
    assert {s.base_offset: bytes(s.view(0, s.size)) for s in log.segments if s.base_offset >= bases[3]} == before
    assert CleanerCheckpoint(log.log_dir).read(("topic", 0)) == bases[3]


# ==== steps, the map, the checkpoint ============================================================
def test_maybe_clean_works_in_bounded_steps_while_appends_go_on(open_log):
    log = open_log()
    model = Model()
    fill(log, model, 300, keys=11, tombstone_every=13)
    cleaner = LogCleaner(log)
    budget = 700
    largest = max(b.size for b in batches_in(log))
    steps = 0
    stats = cleaner.maybe_clean(max_bytes=budget)
    while stats.in_progress:
        assert stats.bytes_read <= budget + largest
        fill(log, model, 3, keys=11)                       # the worker appends between steps
        steps += 1
        stats = cleaner.maybe_clean(max_bytes=budget)
    assert stats.state == "done" and steps > 5
    check_log(log, model)
    check_latest_present(log, model)


def test_a_full_offset_map_cleans_part_of_the_dirty_tail_per_pass(open_log):
    log = open_log()
    model = Model()
    for i in range(40):
        append(log, model, [(b"key-%d" % i, b"v1")])
    for i in range(40):
        append(log, model, [(b"key-%d" % i, b"v2")])
    log.roll()
    cleaner = LogCleaner(log, max_map_entries=10)
    stats = cleaner.clean()
    end = stats.pass_totals["end_offset"]
    assert 0 < end < 80 and stats.pass_totals["keys"] == 10
    assert CleanerCheckpoint(log.log_dir).read(("topic", 0)) == end
    check_log(log, model)
    while cleaner.cleanable().dirty_bytes:
        cleaner.clean(force=True)
    records = check_log(log, model)
    assert sorted(r.offset for r in records) == list(range(40, 80))


def test_checkpoint_file_is_kafkas_format_and_follows_truncation(open_log, tmp_path):
    log = open_log()
    model = Model()
    fill(log, model, 100, keys=3)
    LogCleaner(log).clean()
    end = log.active.base_offset
    text = (tmp_path / CLEANER_CHECKPOINT).read_text()
    assert text == f"0\n1\ntopic 0 {end}\n"
    log.truncate_to(end - 5)
    assert CleanerCheckpoint(str(tmp_path)).read(("topic", 0)) == end - 5
    checkpoint = CleanerCheckpoint(str(tmp_path))
    checkpoint.update(("other", 3), 7)
    checkpoint.remove(("topic", 0))
    assert (tmp_path / CLEANER_CHECKPOINT).read_text() == "0\n1\nother 3 7\n"


def test_a_checkpoint_outside_the_log_restarts_from_the_log_start(open_log, caplog):
    log = open_log()
    model = Model()
    fill(log, model, 100, keys=3)
    CleanerCheckpoint(log.log_dir).update(("topic", 0), 10_000)
    cleaner = LogCleaner(log)
    c = cleaner.cleanable()
    assert c.first_dirty == 0 and c.checkpoint_reset
    assert "outside the log" in caplog.text
    cleaner.clean()
    check_log(log, model)


def test_truncation_during_a_pass_aborts_it(open_log):
    log = open_log()
    model = Model()
    fill(log, model, 200, keys=5)
    cleaner = LogCleaner(log)
    assert cleaner.maybe_clean(max_bytes=500).in_progress
    log.truncate_to(150)
    for o in range(150, 200):
        del model.records[o]
    assert cleaner.maybe_clean().state == "aborted"
    assert not [n for n in os.listdir(log.directory) if n.endswith((".cleaned", ".swap"))]
    cleaner.clean()
    check_log(log, model)
    check_latest_present(log, model)


def test_retention_during_a_pass_of_a_compact_delete_log(open_log, clock):
    log = open_log(**{"cleanup.policy": "compact,delete", "retention.ms": 50_000})
    model = Model()
    fill(log, model, 90, keys=4)
    clock.advance(100_000)
    fill(log, model, 90, keys=4)
    cleaner = LogCleaner(log)
    stats = cleaner.maybe_clean(max_bytes=2000)
    assert stats.in_progress
    assert log.delete_old_segments() > 0
    cleaner.clean()
    records = check_log(log, model)
    assert records[0].offset >= log.log_start_offset
    check_latest_present(log, model, [r for r in records])


# ==== grouping, swapping, readers ==================================================================
def test_small_cleaned_segments_are_grouped_into_one(open_log):
    log = open_log(**{"segment.bytes": 512})
    model = Model()
    fill(log, model, 200, keys=2)
    assert len(log.segments) > 10
    cleaner = LogCleaner(log)
    cleaner.clean()
    assert len(log.segments) > 10      # grouped by their sizes before cleaning (512 each)
    cleaner.clean(force=True)
    assert len(log.segments) == 4      # 16 cleaned 61-byte segments: groups of 8 (Kafka's rule)
    cleaner.clean(force=True)
    assert len(log.segments) == 2
    names = sorted(os.listdir(log.directory))
    assert not [n for n in names if not filenames.parse_segment_file(n)]
    check_log(log, model)
    check_latest_present(log, model)


def test_readers_of_a_replaced_segment_keep_the_old_bytes(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    fill(log, model, 60, keys=2)
    log.roll()
    append(log, model, [(b"z", b"1")])
    segment = log.segments[0]
    path = segment.log.path
    fd = os.open(path, os.O_RDONLY)
    try:
        old_inode = os.fstat(fd).st_ino
        old = os.pread(fd, segment.size, 0)
        view = log.read(0, 1 << 20).view          # a mapped reader inside the worker
        LogCleaner(log).clean(force=True)
        assert os.stat(path).st_ino != old_inode
        assert os.pread(fd, len(old) + 1, 0) == old   # the old inode, untouched
        assert bytes(view[:16]) == old[:16]
        del view
    finally:
        os.close(fd)
    check_log(log, model)


class _Crash(Exception):
    pass


def _count_ops(monkeypatch):
    calls = []
    for name in ("rename", "unlink"):
        real = getattr(os, name)

        def wrapped(*args, _real=real, **kwargs):
            calls.append(args[0])
            return _real(*args, **kwargs)
        monkeypatch.setattr(log_module.os, name, wrapped)
    return calls


SWAP_CONFIG = {**BASE, "segment.bytes": 300, "delete.retention.ms": 0}


def build_for_swap(tmp_path, clock, name):
    """~10 small segments, cleaned in groups of about four (segment.bytes raised after
    writing), so swaps replace several segments."""
    log = PartitionLog(str(tmp_path / name), LogConfig(SWAP_CONFIG), clock)
    model = Model()
    fill(log, model, 60, keys=4, tombstone_every=7)
    log.config = log.config.with_overrides({"segment.bytes": 1200})
    return log, model


def test_a_crash_at_any_step_of_a_swap_leaves_a_log_that_opens_whole(tmp_path, clock, monkeypatch):
    """Every rename and unlink of replace_segments fails in turn (the disk state a SIGKILL
    there leaves); the reopened log must hold every key's latest value and pass dump-log."""
    log, model = build_for_swap(tmp_path, clock, "probe-0")
    calls = _count_ops(monkeypatch)
    LogCleaner(log).clean()
    total = len(calls)
    monkeypatch.undo()
    log.close()
    assert total >= 8
    for crash_at in range(total):
        name = f"crash{crash_at}-0"
        log, model = build_for_swap(tmp_path, clock, name)
        count = [0]
        for op in ("rename", "unlink"):
            real = getattr(os, op)

            def failing(*args, _real=real, **kwargs):
                count[0] += 1
                if count[0] == crash_at + 1:
                    raise _Crash(args[0])
                return _real(*args, **kwargs)
            monkeypatch.setattr(log_module.os, op, failing)
        with pytest.raises(_Crash):
            LogCleaner(log).clean()
        monkeypatch.undo()
        for segment in log.segments:   # abandoned, as a killed process leaves it
            segment.close()
        reopened = PartitionLog(str(tmp_path / name), LogConfig(SWAP_CONFIG), clock)
        try:
            assert not [n for n in os.listdir(reopened.directory) if n.endswith((".cleaned", ".swap"))]
            records = check_log(reopened, model)
            check_latest_present(reopened, model, records, allow_dropped_tombstones=False)
            assert reopened.log_end_offset == 60
            LogCleaner(reopened).clean(force=True)     # and it cleans on
            check_latest_present(reopened, model, check_log(reopened, model),
                                 allow_dropped_tombstones=False)
        finally:
            reopened.close()


def test_open_drops_uncommitted_output_and_orphan_swaps(open_log, tmp_path):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    fill(log, model, 60, keys=2)
    log.roll()
    append(log, model, [(b"z", b"1")])
    log.close()
    d = tmp_path / "topic-0"
    (d / "00000000000000000000.log.cleaned").write_bytes(b"garbage")
    (d / "00000000000000000000.index.swap").write_bytes(b"")
    (d / "00000000000000000000.timeindex.cleaned").write_bytes(b"")
    log = open_log()
    assert sorted(os.listdir(d)) == sorted(n for n in os.listdir(d) if filenames.parse_segment_file(n)
                                           or n == filenames.LEADER_EPOCH_CHECKPOINT)
    records = check_log(log, model)
    assert [r.offset for r in records] == list(range(61))


def test_a_damaged_committed_swap_is_recovered_like_any_damaged_segment(open_log, tmp_path, clock, monkeypatch,
                                                                       caplog):
    log = PartitionLog(str(tmp_path / "topic-0"), LogConfig({**BASE, "segment.bytes": 4096}), clock)
    model = Model()
    fill(log, model, 60, keys=20)
    log.roll()
    fill(log, model, 30, keys=20)
    log.roll()
    append(log, model, [(b"z", b"1")])
    real = os.rename

    def stop_before_the_final_rename(src, dst, *args, **kwargs):
        if src.endswith(".log.swap"):
            raise _Crash(src)
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(log_module.os, "rename", stop_before_the_final_rename)
    with pytest.raises(_Crash):
        LogCleaner(log).clean(force=True)
    monkeypatch.undo()
    for segment in log.segments:
        segment.close()
    swap = tmp_path / "topic-0" / "00000000000000000000.log.swap"
    data = swap.read_bytes()
    swap.write_bytes(data[:-7])                   # a torn last batch: only a bad disk does this
    log = open_log(**{"segment.bytes": 4096})
    check_log(log, model)
    # the torn batch is cut and, as after any corrupt segment, the ones after it go
    assert "TRUNCATED" in caplog.text and "follows a corrupt one" in caplog.text
    assert len(log.segments) == 1 and log.log_end_offset < 90


def test_replace_segments_refuses_segments_that_are_not_consecutive_inactive_ones(open_log):
    log = open_log()
    model = Model()
    fill(log, model, 100)
    with pytest.raises(StorageError, match="not consecutive inactive"):
        log.replace_segments([log.segments[0], log.segments[2]])
    with pytest.raises(StorageError, match="not consecutive inactive"):
        log.replace_segments([log.active])


def test_a_batch_odradek_cannot_decode_is_kept_as_it_is(open_log):
    log = open_log(**{"segment.bytes": 4096})
    model = Model()
    append(log, model, [(b"a", b"1")])
    # a snappy-marked batch whose records are not snappy, copied from elsewhere (a
    # follower takes what its leader has)
    b = bytearray(_plain(b"a", b"x", 1))
    b[ATTRIBUTES_OFFSET + 1] |= Compression.SNAPPY
    b[CRC_OFFSET:CRC_OFFSET + 4] = native.crc32c(memoryview(b)[ATTRIBUTES_OFFSET:]).to_bytes(4, "big")
    b[0:8] = (1).to_bytes(8, "big")
    log.append(bytes(b), assign_offsets=False)
    append(log, model, [(b"a", b"2")])
    log.roll()
    append(log, model, [(b"z", b"1")])
    stats = LogCleaner(log).clean(force=True)
    assert stats.pass_totals["batches_unreadable"] >= 1
    stored = batches_in(log)
    assert [bt.base_offset for bt in stored] == [1, 2, 3]
    assert stored[0].attributes & COMPRESSION_MASK == Compression.SNAPPY
