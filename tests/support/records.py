"""Factories for record batches (built with the real codec) and readers of whole logs."""
import contextlib
import mmap
import os

from click.testing import CliRunner

from odradek.client.records import BatchBuilder, iter_batches
from odradek.daemon.cli import cli


def bitwise_crc32c(data):
    """CRC-32C (Castagnoli, reflected 0x82F63B78), bit by bit: independent of the C core,
    for bytes derived by hand from Kafka's schemas."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def make_batch(values, timestamp=1_700_000_000_000, keys=None, headers=(), **builder_args):
    """One v2 batch holding `values` (bytes each), timestamps `timestamp`, +1, +2, ..."""
    b = BatchBuilder(**builder_args)
    for i, value in enumerate(values):
        b.append(timestamp + i, None if keys is None else keys[i], value, headers)
    return b.build()


def value_batch(first, count, size=16, timestamp=1_700_000_000_000):
    """A batch of `count` records whose values name their index: b'v<first+i>' padded to
    at least `size` bytes, so tests can check which records survived."""
    return make_batch([(b"v%d-" % (first + i)).ljust(size, b".") for i in range(count)], timestamp)


def read_all(log, start=None, max_bytes=1 << 20):
    """Every record of the log from `start` (default: the log start), in order."""
    offset = log.log_start_offset if start is None else start
    records = []
    while offset < log.log_end_offset:
        data = log.read(offset, max_bytes)
        if not len(data):
            break
        for _, batch in iter_batches(data.view):
            records.extend(r for r in batch.records() if r.offset >= offset)
        offset = data.next_offset
    return records


def batches_in(log):
    """RecordBatch of every batch in every segment, in order."""
    out = []
    for segment in log.segments:
        for _, batch in iter_batches(segment.view(0, segment.size)):
            out.append(batch)
    return out


def assert_nothing_past_the_recovered_end(log):
    """What recovery cut is gone: every byte of each .log file past its segment's data is
    zero (the file may be longer than the data: preallocated, or not yet trimmed), and
    `odradek dump-log --verify` finds the partition clean."""
    for s in log.segments:
        with open(s.log.path, "rb") as f:
            f.seek(s.size)
            tail = f.read()
        assert tail.count(0) == len(tail), \
            f"{s.log.path}: {len(tail) - tail.count(0)} non-zero bytes past the recovered end {s.size}"
    result = CliRunner().invoke(cli, ["dump-log", "--verify", "-q", log.directory])
    assert result.exit_code == 0, result.output


@contextlib.contextmanager
def mapped_segment(path):
    """A segment file's bytes, mapped read-only (b"" when the file is empty), for
    iter_batches: a segment file is preallocated and its batches end at its first zero
    bytes, where iter_batches stops, so the file is not read whole. Let go of every
    batch taken from it before the block ends (the mapping closes then)."""
    if not os.path.getsize(path):
        yield b""
        return
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        yield mm
