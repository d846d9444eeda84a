"""Producer-state snapshot files (Kafka's ProducerStateManager format, version 1): the
codec against bytes built by hand from Kafka's schema, and the files in a partition dir."""
import os

import pytest
from support.records import bitwise_crc32c as crc32c

from odradek.daemon.storage import filenames, producer_snapshot as ps
from odradek.daemon.storage.producer_snapshot import CorruptSnapshot, SnapshotEntry


ENTRY = SnapshotEntry(producer_id=7, epoch=0, last_seq=4, last_offset=104, offset_delta=4,
                      timestamp=1700000000000)
# the entries array: int32 count, then per entry producer_id int64, producer_epoch int16,
# last_sequence int32, last_offset int64, offset_delta int32, timestamp int64,
# coordinator_epoch int32, current_txn_first_offset int64 (all big-endian)
BODY = bytes.fromhex(
    "00000001"
    "0000000000000007" "0000" "00000004" "0000000000000068" "00000004"
    "0000018bcfe56800" "ffffffff" "ffffffffffffffff")


def golden():
    return bytes.fromhex("0001") + crc32c(BODY).to_bytes(4, "big") + BODY


def test_crc32c_reference():
    assert crc32c(b"123456789") == 0xE3069283


def test_encode_gives_kafkas_bytes_and_decode_reads_them():
    assert ps.encode([ENTRY]) == golden()
    assert len(golden()) == 2 + 4 + 4 + 46
    assert golden()[2:6].hex() == "6ae397de"          # the worked example in FORMAT.md
    assert ps.decode(golden()) == [ENTRY]


def test_round_trip_of_many_entries_and_of_none():
    entries = [SnapshotEntry(pid, pid % 5, (pid * 7) & 0x7fffffff, pid * 100 if pid % 3 else -1, pid % 4,
                             1_700_000_000_000 + pid) for pid in range(0, 3000, 7)]
    assert ps.decode(ps.encode(entries)) == entries
    assert ps.decode(ps.encode([])) == []


@pytest.mark.parametrize("damage, named", [
    (lambda b: b[:-1], "CRC-32C"),
    (lambda b: b[:2] + crc32c(b"\0\0\0\2" + b[10:]).to_bytes(4, "big") + b"\0\0\0\2" + b[10:],
     "do not hold 2 entries"),
    (lambda b: b[:5], "shorter"),
    (lambda b: b"\x00\x02" + b[2:], "version 2"),
    (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], "CRC-32C"),
    (lambda b: b[:2] + b"\x00\x00\x00\x00" + b[6:], "CRC-32C"),
])
def test_a_damaged_snapshot_is_corrupt_and_named(damage, named):
    with pytest.raises(CorruptSnapshot, match=named):
        ps.decode(damage(golden()), "00000000000000000105.snapshot")


def test_write_keeps_the_newest_two_and_load_takes_the_newest_in_range(tmp_path):
    d = str(tmp_path)
    for offset in (10, 20, 30):
        ps.write(d, offset, [ENTRY._replace(last_offset=offset - 1)])
    assert ps.offsets(d) == [20, 30]
    assert sorted(os.listdir(d)) == ["00000000000000000020.snapshot", "00000000000000000030.snapshot"]
    assert oct(os.stat(filenames.snapshot_file(d, 30)).st_mode & 0o777) == "0o640"
    assert ps.load_latest(d, 0, 100) == (30, [ENTRY._replace(last_offset=29)])
    assert ps.load_latest(d, 0, 29) == (20, [ENTRY._replace(last_offset=19)])
    assert ps.load_latest(d, 21, 29) is None


def test_a_corrupt_newest_snapshot_is_skipped_for_the_older_one(tmp_path, caplog):
    d = str(tmp_path)
    ps.write(d, 20, [ENTRY])
    ps.write(d, 30, [ENTRY._replace(last_seq=9)])
    with open(filenames.snapshot_file(d, 30), "r+b") as f:
        f.seek(12)
        f.write(b"\xff")
    assert ps.load_latest(d, 0, 100) == (20, [ENTRY])
    assert "corrupt producer-state snapshot" in caplog.text and "00000000000000000030.snapshot" in caplog.text
    assert ps.offsets(d) == [20]                       # deleted, as Kafka does


def test_delete_above_removes_snapshots_past_a_recovery_cut(tmp_path):
    d = str(tmp_path)
    ps.write(d, 20, [ENTRY])
    ps.write(d, 30, [ENTRY])
    assert ps.delete_above(d, 25) == [30]
    assert ps.offsets(d) == [20]
    assert ps.delete_above(d, 20) == []


def test_a_snapshot_written_without_durability_makes_no_fsync(tmp_path, monkeypatch):
    """The roll's snapshot (durable=False): the fsyncs are the background flusher's
    (PartitionLog.sync_with_roll), none on the appending thread, the deletion of the
    oldest included; the path written is returned."""
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    for offset in (10, 20, 30):
        path = ps.write(str(tmp_path), offset, [ENTRY], durable=False)
        assert path == filenames.snapshot_file(str(tmp_path), offset)
    assert calls == []
    assert ps.offsets(str(tmp_path)) == [20, 30]
    assert ps.load_latest(str(tmp_path), 0, 100) == (30, [ENTRY])
