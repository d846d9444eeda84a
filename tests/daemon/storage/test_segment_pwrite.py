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
