"""A leader's large appends (>= segment.PWRITE_MIN bytes) are pwritten into the segment
and validated where they land (LogSegment._append_pwritten, odk_append_in_place); the
small ones are copied into the map. Both must leave byte-identical .log, .index and
.timeindex files, and a refused large append must leave nothing behind."""
import os

import pytest

from odradek.client.errors import CorruptRecord
from odradek.client.records import CRC_OFFSET
from odradek.daemon.storage import LogConfig, PartitionLog, filenames, segment
from support.clock import FakeClock
from support.records import read_all, value_batch

CONFIG = {"segment.bytes": 1 << 20, "index.interval.bytes": 4096}


def big_buffer(first, batches=8, count=40, size=200):
    """Several batches of at least PWRITE_MIN bytes in all."""
    data = b"".join(value_batch(first + i * count, count, size=size) for i in range(batches))
    assert len(data) >= segment.PWRITE_MIN
    return data


def files(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))
            if name.endswith((".log", ".index", ".timeindex"))}


def append_all(directory, buffers):
    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())
    try:
        for data in buffers:
            log.append(data, leader_epoch=3)
        log.flush()
        return [r.value for r in read_all(log)], log.log_end_offset
    finally:
        log.close()


def test_pwritten_appends_are_byte_identical_to_copied_ones(tmp_path, monkeypatch):
    buffers = [big_buffer(0), value_batch(320, 3), big_buffer(323, batches=20), value_batch(1123, 1)]
    pwritten = append_all(tmp_path / "a" / "t-0", buffers)
    monkeypatch.setattr(segment, "PWRITE_MIN", 1 << 62)      # every append copied into the map
    copied = append_all(tmp_path / "b" / "t-0", buffers)
    assert pwritten == copied and pwritten[1] == 1124
    assert files(tmp_path / "a" / "t-0") == files(tmp_path / "b" / "t-0")


def test_a_refused_large_append_leaves_nothing(tmp_path):
    directory = tmp_path / "t-0"
    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())
    try:
        log.append(value_batch(0, 2))
        end = log.active.size
        bad = bytearray(big_buffer(2))
        bad[len(bad) - 40 + CRC_OFFSET % 7] ^= 0xFF        # the last batch damaged
        with pytest.raises(CorruptRecord):
            log.append(bytes(bad))
        assert log.active.size == end and log.log_end_offset == 2
        log.append(value_batch(2, 1))
        assert [r.value for r in read_all(log)] == [b"v0-.............", b"v1-.............",
                                                    b"v2-............."]
        log.flush()
        path = filenames.log_file(str(directory), 0)
        with open(path, "rb") as f:
            tail = f.read()[log.active.size:]
        assert tail == bytes(len(tail))                      # the pwritten copy was zeroed
    finally:
        log.close()


def test_a_pwrite_failing_partway_leaves_none_of_its_bytes_for_recovery(tmp_path, monkeypatch):
    import errno

    from odradek.client.errors import StorageError
    from odradek.daemon.storage import mapped_file
    directory = tmp_path / "t-0"
    real_pwrite, calls = os.pwrite, []

    def half_then_eio(fd, data, offset):
        calls.append(offset)
        if len(calls) == 1:
            return real_pwrite(fd, bytes(data[:len(data) // 2]), offset)
        raise OSError(errno.EIO, "Input/output error")

    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())
    try:
        log.append(value_batch(0, 2))
        end = log.active.size
        monkeypatch.setattr(mapped_file.os, "pwrite", half_then_eio)
        with pytest.raises(StorageError, match="Input/output error"):
            log.append(big_buffer(2))
        monkeypatch.undo()
        assert len(calls) == 2 and log.active.size == end
        with open(filenames.log_file(str(directory), 0), "rb") as f:
            tail = f.read()[end:]
        assert tail == bytes(len(tail))          # the half written is gone
    finally:
        with pytest.raises(StorageError):
            log.close()                          # its flush refuses after the I/O error
        for seg in log.segments:                 # (and close() stops there)
            seg.close()
    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())   # recovery
    try:
        assert log.log_end_offset == 2 and len(read_all(log)) == 2
    finally:
        log.close()


# ---- append_parts: a leader's run of batches, one per ring entry, with one pwritev ------

def run_of(first, batches=8, count=40, size=200):
    """A run of single batches (as ring entries hold them), at least PWRITE_MIN bytes."""
    parts = [memoryview(value_batch(first + i * count, count, size=size)) for i in range(batches)]
    assert sum(map(len, parts)) >= segment.PWRITE_MIN
    return parts


def test_a_run_appended_in_parts_is_byte_identical_to_its_batches_joined(tmp_path):
    runs = [run_of(0), run_of(320, batches=20), run_of(1120, batches=3, size=4000)]
    a = PartitionLog(str(tmp_path / "a" / "t-0"), LogConfig(CONFIG), FakeClock())
    try:
        infos = [a.append_parts(parts, sum(map(len, parts)), leader_epoch=3) for parts in runs]
        assert all(info is not None for info in infos)
        assert [(i.first_offset, i.last_offset, i.batches) for i in infos] == [(0, 319, 8), (320, 1119, 20),
                                                                            (1120, 1239, 3)]
        a.flush()
        got = [r.value for r in read_all(a)], a.log_end_offset
    finally:
        a.close()
    joined = append_all(tmp_path / "b" / "t-0", [b"".join(parts) for parts in runs])
    assert got == joined and got[1] == 1240
    assert files(tmp_path / "a" / "t-0") == files(tmp_path / "b" / "t-0")


def test_a_run_that_does_not_go_into_the_active_segment_as_it_is_is_not_appended(tmp_path):
    clock = FakeClock()
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({**CONFIG, "segment.ms": 60_000}), clock)
    try:
        small = [memoryview(value_batch(0, 2)), memoryview(value_batch(2, 2))]
        assert log.append_parts(small, sum(map(len, small))) is None             # below PWRITE_MIN
        assert log.log_end_offset == 0 and log.active.size == 0
        for _ in range(100):          # ~40 KB at a time, to less than a run's size from the end
            if log.active.size >= CONFIG["segment.bytes"] - 2 * segment.PWRITE_MIN:
                break
            log.append(value_batch(log.log_end_offset, 40, size=1000))
        assert len(log.segments) == 1
        parts = run_of(log.log_end_offset, batches=16, size=1000)   # more than the room left
        end, size = log.log_end_offset, log.active.size
        assert log.append_parts(parts, sum(map(len, parts))) is None
        assert (log.log_end_offset, log.active.size, len(log.segments)) == (end, size, 1)
        parts = run_of(end, batches=2, size=2000)
        clock.advance(60_001)                                        # segment.ms: a roll is due
        assert log.append_parts(parts, sum(map(len, parts))) is None
        assert (log.log_end_offset, log.active.size, len(log.segments)) == (end, size, 1)
        assert log.append(b"".join(bytes(p) for p in parts)).first_offset == end   # which rolls
        assert len(log.segments) == 2
    finally:
        log.close()


def test_a_run_with_a_damaged_batch_is_refused_and_leaves_nothing(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(CONFIG), FakeClock())
    try:
        log.append(value_batch(0, 2))
        end = log.active.size
        parts = run_of(2)
        bad = bytearray(parts[5])
        bad[len(bad) - 10] ^= 0xFF
        parts[5] = memoryview(bytes(bad))
        with pytest.raises(CorruptRecord):
            log.append_parts(parts, sum(map(len, parts)))
        assert log.active.size == end and log.log_end_offset == 2
        with open(log.active.log.path, "rb") as f:
            assert f.read()[end:end + 4096] == bytes(4096)
        assert [r.value for r in read_all(log)] == [b"v0-".ljust(16, b"."), b"v1-".ljust(16, b".")]
    finally:
        log.close()


def test_a_pwritev_failing_partway_leaves_none_of_the_runs_bytes(tmp_path, monkeypatch):
    import errno

    from odradek.client.errors import StorageError
    from odradek.daemon.storage import mapped_file
    directory = tmp_path / "t-0"

    def half_then_eio(fd, buffers, offset):
        os.pwrite(fd, bytes(buffers[0]), offset)     # the first batch lands, then the disk fails
        raise OSError(errno.EIO, "Input/output error")

    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())
    try:
        log.append(value_batch(0, 2))
        end = log.active.size
        monkeypatch.setattr(mapped_file.os, "pwritev", half_then_eio)
        parts = run_of(2)
        with pytest.raises(StorageError, match="Input/output error"):
            log.append_parts(parts, sum(map(len, parts)))
        monkeypatch.undo()
        assert log.active.size == end and log.log_end_offset == 2
        with open(filenames.log_file(str(directory), 0), "rb") as f:
            tail = f.read()[end:]
        assert tail == bytes(len(tail))
    finally:
        with pytest.raises(StorageError):
            log.close()
        for seg in log.segments:
            seg.close()
