"""Helpers for compaction tests: a model of what was appended to a log, and the checks
every compaction test makes (storage invariants; every key's latest record present)."""
from odradek.client.records import BatchBuilder, Compression
from odradek.daemon.tools.dump_log import dump
from support.records import batches_in, read_all

__all__ = ["Model", "append", "fill", "check_log", "check_latest_present"]


class Model:
    """What was appended: offset -> (key, value, timestamp, headers), and the clock time of
    each append (a tombstone may go only delete.retention.ms after the cleaner saw it,
    which is after its append)."""

    def __init__(self):
        self.records = {}
        self.appended_at = {}

    def latest(self, end=None):
        """key -> offset of its latest record below `end`."""
        out = {}
        for offset in sorted(self.records):
            if end is not None and offset >= end:
                break
            key = self.records[offset][0]
            if key is not None:
                out[key] = offset
        return out


def append(log, model, records, producer=None, compression=Compression.NONE, headers=()):
    """Append one batch of (key, value) pairs; returns its offsets."""
    now = log.clock()
    args = dict(compression=compression)
    if producer is not None:
        args.update(producer_id=producer[0], producer_epoch=producer[1], base_sequence=producer[2])
    b = BatchBuilder(**args)
    for i, (key, value) in enumerate(records):
        b.append(now + i, key, value, headers)
    info = log.append(b.build())
    for i, (key, value) in enumerate(records):
        model.records[info.first_offset + i] = (key, value, now + i, tuple(headers))
        model.appended_at[info.first_offset + i] = now
    return list(range(info.first_offset, info.last_offset + 1))


def fill(log, model, n, keys=5, per_batch=3, tombstone_every=0):
    """n records, keys k0..k{keys-1} in turn, values naming their number."""
    for first in range(0, n, per_batch):
        recs = []
        for i in range(first, min(n, first + per_batch)):
            key = b"k%d" % (i % keys)
            tomb = tombstone_every and i % tombstone_every == tombstone_every - 1
            recs.append((key, None if tomb else b"value-%d" % i))
        append(log, model, recs)


def check_log(log, model):
    """The storage invariants; returns the records read."""
    problems = []
    report = dump([log.directory], out=lambda line: problems.append(line) if "WARNING" in line else None,
                  quiet=True)
    assert report.problems == 0, problems[:5]
    records = read_all(log)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets)), "offsets not strictly increasing"
    for r in records:
        key, value, ts, headers = model.records[r.offset]
        assert (r.key, r.value, r.timestamp, r.headers) == (key, value, ts, headers), r
    assert all(b.crc_valid() for b in batches_in(log))
    for segment in log.segments:
        for slot in range(segment.index.entries):
            offset, position = segment.index.entry(slot)
            assert segment.batch_at(position).last_offset == offset
    return records


def check_latest_present(log, model, records=None, allow_dropped_tombstones=True):
    """Every key's latest record (below the log end) is there at its offset, unless it is
    a tombstone the cleaner may have dropped."""
    records = read_all(log) if records is None else records
    present = {r.offset for r in records}
    for key, offset in model.latest(log.log_end_offset).items():
        if model.records[offset][1] is None and allow_dropped_tombstones:
            continue
        assert offset in present, f"latest record of {key!r} at {offset} is gone"
