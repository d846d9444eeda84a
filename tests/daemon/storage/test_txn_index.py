"""The aborted-transaction index (storage/txn_index.py): Kafka's 34-byte entries, lookup
for a fetch range, and its life with its segment (roll, retention, truncation,
compaction swap, recovery of a torn tail)."""
import os

import pytest

from odradek.client.records import ControlRecordType, marker_batch
from odradek.daemon.storage import LogConfig, PartitionLog, filenames
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.txn_index import (ENTRY_SIZE, AbortedTxn, CorruptIndex, TransactionIndex,
                                              decode_entries, encode_entry)
from support.clock import FakeClock
from support.records import make_batch, value_batch


def test_an_entry_is_kafkas_34_big_endian_bytes():
    data = encode_entry(AbortedTxn(7, 100, 105, 106))
    assert ENTRY_SIZE == 34 and len(data) == 34
    assert data == bytes.fromhex("0000" "0000000000000007" "0000000000000064" "0000000000000069"
                                 "000000000000006a")
    assert decode_entries(data + data[:10]) == [AbortedTxn(7, 100, 105, 106)]   # a partial tail is not read
    with pytest.raises(CorruptIndex, match="version 1"):
        decode_entries(b"\x00\x01" + data[2:])


def test_write_read_truncate_and_the_file_exists_only_once_written(tmp_path):
    index = TransactionIndex(str(tmp_path / "00000000000000000000.txnindex"))
    assert index.entries() == [] and not os.path.exists(index.path)
    index.flush()                                  # nothing to sync: fine
    txns = [AbortedTxn(1, 0, 5, 6), AbortedTxn(2, 3, 9, 10), AbortedTxn(1, 7, 12, 13)]
    for t in txns:
        index.append(t)
    assert index.entries() == txns and os.path.getsize(index.path) == 3 * 34
    with pytest.raises(ValueError):
        index.append(AbortedTxn(3, 0, 12, 13))     # markers go forward
    assert index.has(9) and not index.has(8)
    index.truncate_to(9)
    assert index.entries() == txns[:1]
    index.append(AbortedTxn(4, 8, 10, 11))         # the cut entry's offset may be used again
    index.truncate_to(0)
    assert not os.path.exists(index.path)


def test_collect_is_kafkas_collect_aborted_txns(tmp_path):
    index = TransactionIndex(str(tmp_path / "x.txnindex"))
    for t in [AbortedTxn(1, 0, 5, 2), AbortedTxn(2, 2, 9, 12), AbortedTxn(3, 10, 15, 16)]:
        index.append(t)
    # overlapping [6, 10): ends at or after 6 and starts before 10; complete once an
    # entry's last stable offset reaches 10
    assert index.collect(6, 10) == ([AbortedTxn(2, 2, 9, 12)], True)
    assert index.collect(0, 3) == ([AbortedTxn(1, 0, 5, 2), AbortedTxn(2, 2, 9, 12)], True)
    assert index.collect(16, 20) == ([], False)    # go on into the next segment


def test_recover_cuts_a_partial_entry_and_entries_past_the_log(tmp_path):
    index = TransactionIndex(str(tmp_path / "x.txnindex"))
    for t in [AbortedTxn(1, 0, 5, 6), AbortedTxn(2, 3, 9, 10)]:
        index.append(t)
    with open(index.path, "ab") as f:
        f.write(encode_entry(AbortedTxn(3, 10, 11, 12))[:20])    # a crash cut this append
    fresh = TransactionIndex(index.path)
    assert fresh.recover(next_offset=100) == 20
    assert fresh.entries() == [AbortedTxn(1, 0, 5, 6), AbortedTxn(2, 3, 9, 10)]
    fresh.append(AbortedTxn(3, 10, 11, 12))
    assert TransactionIndex(index.path).recover(next_offset=9) == 2 * 34   # markers 9 and 11 are gone
    assert TransactionIndex(index.path).entries() == [AbortedTxn(1, 0, 5, 6)]


# ==== with the log ==========================================================================
@pytest.fixture
def open_log(tmp_path):
    """open_log(**config): the log t-0 (segment.bytes 600 unless given), closed after the test."""
    logs = []
    yield lambda **config: logs.append(PartitionLog(str(tmp_path / "t-0"), LogConfig({"segment.bytes": 600, **config}),
                                                    FakeClock())) or logs[-1]
    for log in logs:
        if not log._closed:
            log.close()


def fill_with_aborts(log, batches=30, every=4, data=lambda i: value_batch(i, 1, size=100)):
    """data(i) for each batch i, but an ABORT marker of producer 5 for every `every`-th,
    indexed as the worker does. Returns the AbortedTxn entries."""
    out = []
    for i in range(batches):
        if i % every == every - 1:
            info = log.append(marker_batch(ControlRecordType.ABORT, 5, 0, 1, 1_700_000_000_000))
            txn = AbortedTxn(5, info.first_offset - 1, info.first_offset, info.first_offset + 1)
            log.append_aborted_txn(txn)
            out.append(txn)
        else:
            log.append(data(i))
    return out


def txnindex_files(log):
    return sorted(n for n in os.listdir(log.directory) if n.endswith(filenames.TXNINDEX_SUFFIX))


def test_entries_go_to_the_segment_of_their_marker_and_a_fetch_range_finds_them(open_log):
    log = open_log()
    txns = fill_with_aborts(log)
    assert len(log.segments) > 3
    for t in txns:
        segment = log.segments[log.segment_index(t.last_offset)]
        assert t in segment.txn_index.entries()
    assert log.collect_aborted_txns(0, log.log_end_offset) == txns
    assert log.collect_aborted_txns(8, 12) == [t for t in txns if t.last_offset >= 8 and t.first_offset < 12]
    log.close()
    reopened = open_log()
    assert reopened.collect_aborted_txns(0, reopened.log_end_offset) == txns


def test_retention_and_truncation_delete_the_index_with_its_segment(open_log, tmp_path):
    log = open_log(**{"retention.bytes": 800})
    txns = fill_with_aborts(log)
    before = txnindex_files(log)
    log.delete_old_segments()
    bases = {s.base_offset for s in log.segments}
    assert txnindex_files(log) == [n for n in before if int(n[:20]) in bases] != before
    assert log.collect_aborted_txns(log.log_start_offset, log.log_end_offset) == \
        [t for t in txns if t.last_offset >= log.log_start_offset]
    cut = txns[-2].last_offset
    log.truncate_to(cut)                           # the marker at `cut` goes, and its entry
    assert log.collect_aborted_txns(0, cut + 10) == [t for t in txns[:-2] if t.last_offset >= log.log_start_offset]
    assert all(int(n[:20]) in {s.base_offset for s in log.segments} for n in txnindex_files(log))


def test_aborted_transactions_ended_below_a_log_start_inside_a_segment_are_not_collected(open_log, tmp_path):
    log = open_log()
    txns = fill_with_aborts(log, every=3)       # markers inside segments, not only at their ends
    # a log start inside a segment, after an aborted transaction's marker there (the state
    # a DeleteRecords leaves): that entry stays in the segment's .txnindex
    t = next(t for t in txns[1:] if log.segment_index(t.last_offset) == log.segment_index(t.last_offset + 1))
    start = t.last_offset + 1
    log.close()
    LogDirCheckpoints(str(tmp_path)).update(("t", 0), log_start_offset=start)
    log = open_log()
    assert log.log_start_offset == start and t in log.segments[0].txn_index.entries()
    later = [x for x in txns if x.last_offset >= start]
    assert log.collect_aborted_txns(0, log.log_end_offset) == later
    assert log.collect_aborted_txns(start, log.log_end_offset) == later


def test_a_segment_recreated_at_a_deleted_base_does_not_inherit_an_index(open_log):
    log = open_log()
    fill_with_aborts(log, 8)
    log.truncate_fully_and_start_at(0)
    assert txnindex_files(log) == [] and log.collect_aborted_txns(0, 100) == []


def test_a_torn_index_is_cut_at_open(open_log):
    log = open_log()
    txns = fill_with_aborts(log, 12)
    path = log.active.txn_index.path if txnindex_files(log) else None
    last = log.segments[log.segment_index(txns[-1].last_offset)].txn_index.path
    log.close()
    with open(last, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00")           # a partial entry
    reopened = open_log()
    assert os.path.getsize(last) % 34 == 0
    assert reopened.collect_aborted_txns(0, reopened.log_end_offset) == txns
    assert path is None or os.path.exists(path)


def test_compaction_swap_carries_the_indexes_of_the_segments_it_replaces(open_log):
    log = open_log(**{"cleanup.policy": "compact", "segment.bytes": 2048})
    def keyed(i):
        return make_batch([b"v%d" % i], keys=[b"k%d" % (i % 3)])
    txns = fill_with_aborts(log, 200, 5, keyed)
    cleaner = LogCleaner(log)
    assert cleaner.clean().state == "done"      # each segment shrinks, in place
    txns += fill_with_aborts(log, 200, 5, keyed)   # dirty again: the next pass groups the small ones
    before = len(log.segments)
    assert cleaner.clean().state == "done" and len(log.segments) < before
    assert any(len(s.txn_index.entries()) > 3 for s in log.segments)   # merged from several
    kept = {b for b in (s.base_offset for s in log.segments)}
    assert all(int(n[:20]) in kept for n in txnindex_files(log))
    # every marker the cleaner kept still has its entry, in the segment that holds it
    assert log.collect_aborted_txns(0, log.log_end_offset) == txns
    log.close()
    assert open_log(**{"cleanup.policy": "compact", "segment.bytes": 2048}).collect_aborted_txns(0, 1000) == txns
