"""Recovery on open: torn and corrupt tails, missing and wrong indexes."""
import os

import pytest

from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage import filenames
from support.clock import FakeClock
from support.records import assert_nothing_past_the_recovered_end, read_all, value_batch

CONFIG = {"segment.bytes": 4096, "index.interval.bytes": 64}


def build_log(tmp_path, batches=12, crash=True):
    """A log of `batches` one-record batches; crash=True leaves it as a SIGKILL would
    (no close: preallocated files, unflushed recovery point)."""
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(CONFIG), FakeClock())
    sizes = []
    for i in range(batches):
        data = value_batch(i, 1, size=40)
        sizes.append(len(data))
        log.append(data)
    if crash:
        for s in log.segments:
            s.close()  # drop the maps without flush, trim or checkpoint
    else:
        log.close()
    return sizes


def reopen(tmp_path):
    return PartitionLog(str(tmp_path / "t-0"), LogConfig(CONFIG), FakeClock())


def active_log_file(tmp_path):
    d = tmp_path / "t-0"
    return d / sorted(n for n in os.listdir(d) if n.endswith(".log"))[-1]


def test_recovery_after_a_crash_keeps_every_batch(tmp_path):
    build_log(tmp_path)
    log = reopen(tmp_path)
    assert [r.offset for r in read_all(log)] == list(range(12))
    assert_nothing_past_the_recovered_end(log)
    log.close()


def test_recovery_truncates_a_torn_tail_at_every_byte_of_the_last_batch(tmp_path):
    sizes = build_log(tmp_path, batches=3, crash=False)
    path = active_log_file(tmp_path)
    whole = path.read_bytes()
    last_start = len(whole) - sizes[-1]
    for cut in range(last_start, len(whole)):
        path.write_bytes(whole[:cut])
        log = reopen(tmp_path)
        try:
            assert log.log_end_offset == 2, cut
            assert [r.offset for r in read_all(log)] == [0, 1]
            assert_nothing_past_the_recovered_end(log)
        finally:
            log.close()
        path.write_bytes(whole)  # close() trimmed the file: restore for the next cut
        for leftover in (tmp_path / "t-0").iterdir():
            if leftover.suffix in (".index", ".timeindex"):
                leftover.unlink()


@pytest.mark.parametrize("where", ["header", "crc", "records", "last byte"])
def test_recovery_truncates_a_corrupt_last_batch(tmp_path, where):
    sizes = build_log(tmp_path, batches=4, crash=False)
    path = active_log_file(tmp_path)
    data = bytearray(path.read_bytes())
    start = len(data) - sizes[-1]
    position = {"header": start + 16, "crc": start + 18, "records": start + 70,
                "last byte": len(data) - 1}[where]
    data[position] ^= 0x5A
    path.write_bytes(bytes(data))
    # the checkpoint says all was flushed, but the bytes disagree: a fresh recovery point
    (tmp_path / filenames.RECOVERY_POINT_CHECKPOINT).unlink()
    log = reopen(tmp_path)
    assert log.log_end_offset == 3
    assert_nothing_past_the_recovered_end(log)
    log.append(value_batch(3, 1, size=40))
    assert [r.offset for r in read_all(log)] == [0, 1, 2, 3]
    log.close()


def test_recovery_removes_stale_bytes_after_the_valid_prefix(tmp_path):
    sizes = build_log(tmp_path, batches=4)
    path = active_log_file(tmp_path)
    data = bytearray(path.read_bytes())
    start = sum(sizes[:2])
    data[start + 30] ^= 0xFF  # batch 2 is corrupt; batch 3 after it is intact
    path.write_bytes(bytes(data))
    log = reopen(tmp_path)
    assert log.log_end_offset == 2
    assert_nothing_past_the_recovered_end(log)
    log.append(value_batch(2, 1, size=20))  # shorter than what stood there before
    for s in log.segments:
        s.close()
    log = reopen(tmp_path)  # the old batch 3 must not come back after the new batch
    assert [r.value[:3] for r in read_all(log)] == [b"v0-", b"v1-", b"v2-"]
    assert log.log_end_offset == 3
    log.close()


@pytest.mark.parametrize("damage", ["delete", "zero", "garbage"])
def test_a_missing_or_wrong_index_is_rebuilt(tmp_path, damage):
    build_log(tmp_path, batches=40, crash=False)
    d = tmp_path / "t-0"
    for name in os.listdir(d):
        if name.endswith(".index") or name.endswith(".timeindex"):
            p = d / name
            if damage == "delete":
                p.unlink()
            elif damage == "zero":
                p.write_bytes(b"\0" * os.path.getsize(p))
            else:
                p.write_bytes(b"\xff" * 24)
    log = reopen(tmp_path)
    assert [r.offset for r in read_all(log)] == list(range(40))
    for s in log.segments:
        for slot in range(s.index.entries):
            offset, position = s.index.entry(slot)
            assert s.batch_at(position).last_offset == offset
    for target in range(40):
        assert log.read(target, 1).first_offset == target
    log.close()


def test_segments_after_a_corrupt_segment_are_deleted(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({"segment.bytes": 300}), FakeClock())
    for i in range(20):
        log.append(value_batch(i, 1, size=60))
    bases = [s.base_offset for s in log.segments]
    for s in log.segments:
        s.close()
    assert len(bases) >= 4
    victim = filenames.log_file(str(tmp_path / "t-0"), bases[1])
    data = bytearray(open(victim, "rb").read())
    data[40] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    (tmp_path / filenames.RECOVERY_POINT_CHECKPOINT).unlink()
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({"segment.bytes": 300}), FakeClock())
    assert log.log_end_offset == bases[1]
    assert [s.base_offset for s in log.segments] == bases[:2]
    assert_nothing_past_the_recovered_end(log)
    assert not os.path.exists(filenames.log_file(str(tmp_path / "t-0"), bases[2]))
    log.close()


def test_reopen_after_clean_close_trusts_the_indexes_without_a_full_scan(tmp_path, monkeypatch):
    build_log(tmp_path, batches=30, crash=False)
    from odradek.daemon.storage import segment as segment_module
    calls = []
    monkeypatch.setattr(segment_module.LogSegment, "recover",
                        lambda self, *a, **k: calls.append(self.base_offset))
    log = reopen(tmp_path)
    assert calls == [] and log.log_end_offset == 30
    log.close()


def test_garbage_after_a_zeroed_header_is_corruption_not_padding(tmp_path, caplog):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({"segment.bytes": 400}), FakeClock())
    for i in range(12):
        log.append(value_batch(i, 1, size=60))
    log.flush()        # the rolls' background fsyncs done (and the checkpoint written, unlinked below)
    bases = [s.base_offset for s in log.segments]
    for s in log.segments:
        s.close()
    victim = filenames.log_file(str(tmp_path / "t-0"), bases[1])
    data = bytearray(open(victim, "rb").read())
    data[:12] = bytes(12)                  # a zeroed frame...
    data[12:112] = b"\xff" * 100           # ...with garbage behind it
    open(victim, "wb").write(bytes(data))
    (tmp_path / filenames.RECOVERY_POINT_CHECKPOINT).unlink()
    with caplog.at_level("WARNING"):
        log = PartitionLog(str(tmp_path / "t-0"), LogConfig({"segment.bytes": 400}), FakeClock())
    assert log.log_end_offset == bases[1]
    assert "follows a corrupt one" in caplog.text
    assert_nothing_past_the_recovered_end(log)
    log.close()


def test_a_multi_batch_append_larger_than_the_free_index_rolls_and_reopens(tmp_path):
    config = {"segment.index.bytes": 48, "index.interval.bytes": 0}
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(config), FakeClock())
    log.append(b"".join(value_batch(i, 1) for i in range(4)))
    log.append(b"".join(value_batch(i, 1) for i in range(4, 10)))  # needs 6 entries, 3 are free
    assert log.log_end_offset == 10 and [s.base_offset for s in log.segments] == [0, 4]
    from odradek.client.errors import InvalidConfig
    with pytest.raises(InvalidConfig, match="raise segment.index.bytes"):
        log.append(b"".join(value_batch(i, 1) for i in range(10, 30)))  # more than a whole index
    for s in log.segments:
        s.close()
    again = PartitionLog(str(tmp_path / "t-0"), LogConfig(config), FakeClock())
    assert [r.offset for r in read_all(again)] == list(range(10))
    again.close()


def test_an_untrimmed_index_of_zeros_is_not_trusted(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(CONFIG), FakeClock())
    for i in range(20):
        log.append(value_batch(i, 1, size=40))
    log.close()
    index = filenames.index_file(str(tmp_path / "t-0"), 0)
    with open(index, "ab") as f:
        f.write(bytes(8 * 100))            # as if a crash left it preallocated
    log = reopen(tmp_path)
    assert [r.offset for r in read_all(log)] == list(range(20))
    for slot in range(log.active.index.entries):
        offset, position = log.active.index.entry(slot)
        assert log.active.batch_at(position).last_offset == offset
    log.close()


def recovery_lines(caplog):
    return [r for r in caplog.records if r.name.startswith("odradek.daemon.storage")]


def test_a_torn_tail_is_reported_in_one_line_with_position_offset_and_bytes_cut(tmp_path, caplog):
    sizes = build_log(tmp_path, batches=3)          # crashed: untrimmed, zeros after the data
    path = active_log_file(tmp_path)
    end = sum(sizes)
    with open(path, "r+b") as f:                    # the last batch's end never written: its CRC fails
        f.seek(end - 10)
        f.write(bytes(10))
    with caplog.at_level("INFO", logger="odradek.daemon.storage"):
        log = reopen(tmp_path)
    (line,) = recovery_lines(caplog)
    start = end - sizes[-1]
    message = line.getMessage()
    assert line.levelname == "WARNING"
    assert message.startswith(f"partition t-0: segment 0 cut at position {start} (after offset 1): BAD_CRC "
                              f"(expected "), message
    assert message.endswith(f"; truncated {sizes[-1] - 10} bytes"), message
    assert log.log_end_offset == 2
    log.close()
    assert os.path.getsize(path) == start


def test_zeros_after_the_last_batch_of_a_crashed_log_are_recovered_without_a_line(tmp_path, caplog):
    build_log(tmp_path, batches=3)
    with caplog.at_level("INFO", logger="odradek.daemon.storage"):
        log = reopen(tmp_path)
    assert recovery_lines(caplog) == []
    assert log.log_end_offset == 3
    log.close()
