"""demo: write a small partition log with PartitionLog and say what happened.

    run("./data", print)      # what `make run` does until the broker exists

Each run rolls the demo partition (DATA/demo-0) to a new segment, appends three keyed
batches, reads them back, finds an offset by timestamp, applies retention once and
closes the log. Re-running appends more; retention.bytes keeps the partition small, so
after a few runs the oldest segments go. Uses the wall clock (the records' timestamps
are real); runs in the CLI's process and owns the log only while it runs.
"""
import os
from datetime import datetime, timezone

from odradek.client.records import BatchBuilder, iter_batches
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage import filenames
from odradek.daemon.storage.log import wall_clock_ms

__all__ = ["run", "TOPIC", "PARTITION", "CONFIG"]

TOPIC, PARTITION = "demo", 0
# Small numbers so that a few runs show segments, index entries and retention at work.
CONFIG = {"segment.bytes": 4096, "segment.index.bytes": 4096, "index.interval.bytes": 256,
          "retention.bytes": 2048}
# (key, value) of each record; one batch per key, as a producer batches per partition
EVENTS = [("user-1", ["login", "view /home", "logout"]),
          ("user-2", ["login", "add-to-cart sku-42"]),
          ("user-3", ["login", "view /help", "search odradek", "logout"])]


def _segments(n):
    return f"{n} segment" if n == 1 else f"{n} segments"


def _utc(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def run(data_dir, out, clock=wall_clock_ms):
    """Do the demo in `data_dir`, writing a few lines with `out(line)`."""
    directory = os.path.join(data_dir, filenames.partition_dir_name(TOPIC, PARTITION))
    log = PartitionLog(directory, LogConfig(CONFIG), clock)
    try:
        _run(log, directory, out, clock)
    finally:
        log.close()
    out(f"look at the files: odradek dump-log {directory}")
    out(f"with the records:  odradek dump-log --print-records {directory}")


def _run(log, directory, out, clock):
    held = f"offsets {log.log_start_offset}..{log.log_end_offset - 1}" \
        if log.log_end_offset > log.log_start_offset else "no records yet"
    out(f"partition log {TOPIC}-{PARTITION} in {directory}: {held} ({log.size_in_bytes} bytes "
        f"in {_segments(len(log.segments))})")
    log.roll()  # each run starts a segment, so that retention has whole segments to drop
    now = clock()
    first = None
    batch_times = []
    for i, (key, values) in enumerate(EVENTS):
        timestamp = now - (len(EVENTS) - 1 - i)   # a millisecond apart, the last one now
        builder = BatchBuilder()
        for value in values:
            builder.append(timestamp, key.encode(), value.encode(), [("source", b"odradek demo")])
        info = log.append(builder.build())
        first = info.first_offset if first is None else first
        batch_times.append((timestamp, info.first_offset))
        out(f"appended a batch of {info.records} records for key {key} at offsets "
            f"{info.first_offset}..{info.last_offset}")
    fetched = log.read(first, max_bytes=1 << 20)
    records = [r for _, batch in iter_batches(fetched.view) for r in batch.records()]
    del fetched  # its view pins the segment's map, which close() unmaps
    shown = ", ".join(f"{r.offset}:{r.key.decode()}={r.value.decode()}" for r in records[:4])
    out(f"read back from offset {first}: {len(records)} records ({shown}, ...)")
    wanted = batch_times[1][0]
    found = log.offset_for_timestamp(wanted)
    out(f"first record at or after {_utc(wanted)}: offset {found[0]} (timestamp lookup, "
        f"as ListOffsets by time does)" if found else f"no record at or after {_utc(wanted)}")
    before = len(log.segments)
    deleted = log.delete_old_segments()
    out(f"retention (retention.bytes={log.config.retention_bytes}): deleted {deleted} of "
        f"{_segments(before)}; the log now holds offsets {log.log_start_offset}.."
        f"{log.log_end_offset - 1} in {_segments(len(log.segments))} ({log.size_in_bytes} bytes)")
