"""How fast does the consumer turn fetched batches into Records? Old path, new path, memcpy.

    python perf/record_decode.py [--mib 8] [--runs 5] [--key-size 0] [--sizes 100,1024]

For each record size (--sizes, value bytes; keys of --key-size bytes, 0 = null keys as
kafka-producer-perf-test sends), builds --mib MiB of v2 batches the way the producer
does (BatchBuilder, up to batch.size = 16384 bytes a batch, offsets assigned as the
leader assigns them), then times, in the same run, over the same bytes:

  old     the consumer's decode as it was: iter_batches, CRC-32C, RecordBatch.records()
          with the pure-Python record decoder (_decode_records), a client Record per
          record (a copy of its code, kept here as the baseline)
  new     Consumer._decode itself (native.decode_records: one C call per batch, then
          Records made straight from its rows), on a stand-in consumer
  memcpy  a bytearray slice assignment of the same bytes: the floor for touching them

and prints records/s, MB/s (MB = 2**20 bytes of keys and values, as Kafka's perf tools
count) and us/record, the median of --runs timed passes after one warm-up each.
check.crcs is on (the consumer's default) for old and new. ODRADEK_PURE=1 measures the
pure-Python twin of decode_records as "new".

A benchmark, not a test.
"""
import argparse
import os
import statistics
import sys
import time
from collections import deque
from types import SimpleNamespace

from odradek.client import native
from odradek.client.consumer import Consumer
from odradek.client.errors import CorruptRecord
from odradek.client.message import LOG_APPEND_TIME, Record, TopicPartition
from odradek.client.records import (ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, BatchBuilder,
                                    iter_batches, write_base_offset)
from odradek.client.records._batch import _decode_records

MB = 1024 * 1024
BATCH_SIZE = 16384


def build_log(total, value_size, key_size):
    """Batches of records (value_size random-ish bytes, keys of key_size bytes or null)
    filling `total` bytes or a little more; returns (bytearray, records, payload bytes)."""
    value = os.urandom(value_size)
    out = bytearray()
    offset = records = payload = 0
    t = 1_700_000_000_000
    while len(out) < total:
        b = BatchBuilder()
        while True:
            key = None if not key_size else (b"%0*d" % (key_size, offset + len(b)))[-key_size:]
            if len(b) and b.estimated_size() + value_size + key_size + 40 > BATCH_SIZE:
                break
            b.append(t + offset, key, value)
            payload += value_size + key_size
        data = bytearray(b.build())
        write_base_offset(data, 0, offset)
        offset += len(b)
        records += len(b)
        out += data
    return out, records, payload


def old_decode(consumer, part, data, pos):
    """Consumer._decode before native.decode_records, with RecordBatch.records() as it
    was (one bytes copy of the records region, then _decode_records)."""
    tp = part.tp
    topic, partition = tp.topic, tp.partition
    out = consumer._buffer
    crc = native.crc32c
    next_offset = pos
    for position, batch in iter_batches(data):
        if consumer._check_crcs and crc(batch.buffer[ATTRIBUTES_OFFSET:]) != batch.crc:
            raise CorruptRecord(f"{topic}-{partition}: the batch at offset {batch.base_offset} "
                                f"fails its CRC-32C")
        if batch.is_control:
            next_offset = batch.last_offset + 1
            continue
        ts_type = int(batch.timestamp_type)
        view = batch.buffer
        append_time = batch.max_timestamp if ts_type == LOG_APPEND_TIME else None
        records = _decode_records(bytes(view[BATCH_HEADER_SIZE:batch.size]), batch.records_count,
                                  batch.base_offset, batch.base_timestamp, "batch", append_time)
        for r in records:
            if r.offset >= pos:
                out.append(Record(topic, partition, r.offset, _b(r.key), _b(r.value),
                                  [(k, _b(v)) for k, v in r.headers] if r.headers else [],
                                  r.timestamp, LOG_APPEND_TIME if ts_type == LOG_APPEND_TIME else 0))
        next_offset = batch.last_offset + 1
    part.fetched = max(next_offset, part.fetched)
    return len(data)


def _b(v):
    return v if v is None or type(v) is bytes else bytes(v)


def stand_in():
    consumer = SimpleNamespace(_buffer=deque(), _check_crcs=True)
    part = SimpleNamespace(tp=TopicPartition("perf", 0), fetched=0)
    return consumer, part


def timed(fn, runs):
    """Median seconds of fn() over `runs` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=8, help="MiB of batches per size (default 8)")
    ap.add_argument("--runs", type=int, default=5, help="timed passes per path (default 5)")
    ap.add_argument("--key-size", type=int, default=0, help="key bytes (default 0: null keys)")
    ap.add_argument("--sizes", default="100,1024", help="value sizes, comma-separated")
    args = ap.parse_args()
    print(f"record_decode implementation={native.IMPLEMENTATION} runs={args.runs} (median) "
          f"batch.size={BATCH_SIZE} key={args.key_size or 'null'} python={sys.version.split()[0]}")
    for size in (int(s) for s in args.sizes.split(",")):
        data, count, payload = build_log(int(args.mib * MB), size, args.key_size)
        view = memoryview(data)

        def run(decode):
            consumer, part = stand_in()
            decode(consumer, part, view, 0)
            assert len(consumer._buffer) == count
            return consumer._buffer

        old = run(old_decode)
        new = run(Consumer._decode)
        assert all(a == b for a, b in zip(old, new)), "old and new paths disagree"
        del old, new
        dst = bytearray(len(data))

        def copy():
            dst[:] = data

        results = [("old", timed(lambda: run(old_decode), args.runs)),
                   ("new", timed(lambda: run(Consumer._decode), args.runs)),
                   ("memcpy", timed(copy, args.runs))]
        batches = sum(1 for _ in iter_batches(view))
        print(f"value={size} B: {count} records in {batches} batches, "
              f"{len(data) / MB:.1f} MiB of batches ({count / batches:.0f} records a batch)")
        base = results[0][1]
        for name, secs in results:
            print(f"  {name:7s} {count / secs:12,.0f} records/s {payload / MB / secs:9.1f} MB/s "
                  f"{secs / count * 1e6:8.3f} us/record {base / secs:7.1f}x old")
    return 0


if __name__ == "__main__":
    sys.exit(main())
