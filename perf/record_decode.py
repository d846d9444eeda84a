"""How fast do fetched batches become records? records(), record_fields() rows, memcpy.

    python perf/record_decode.py [--mib 8] [--runs 5] [--key-size 0] [--sizes 100,1024]

For each record size (--sizes, value bytes; keys of --key-size bytes, 0 = null keys as
kafka-producer-perf-test sends), builds --mib MiB of v2 batches the way the producer
does (BatchBuilder, up to batch.size = 16384 bytes a batch, offsets assigned as the
leader assigns them), then times, in the same run, over the same bytes:

  records  iter_batches, CRC-32C, RecordBatch.records(): a BatchRecord per record (the
           consumer's path for gzip batches)
  rows     iter_batches, CRC-32C, RecordBatch.record_fields() (native.decode_records:
           one C call per batch), then a plain tuple of the same fields made straight
           from each row (the consumer's path before it decoded whole fetches in C,
           odradek._hotpath.decode_fetch: perf/consumer_perf.py measures that one)
  memcpy   a bytearray slice assignment of the same bytes: the floor for touching them

and prints records/s, MB/s (MB = 2**20 bytes of keys and values, as Kafka's perf tools
count) and us/record, the median of --runs timed passes after one warm-up each.
check.crcs is on (the consumer's default) for records and rows. ODRADEK_PURE=1 measures
the pure-Python twin of decode_records (the Python record decoder) in both.

A benchmark, not a test.
"""
import argparse
import os
import statistics
import sys
import time

from odradek.client import native
from odradek.client.errors import CorruptRecord
from odradek.client.records import ATTRIBUTES_OFFSET, BatchBuilder, iter_batches, write_base_offset

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


def _crc_checked(batch):
    if native.crc32c(batch.buffer[ATTRIBUTES_OFFSET:]) != batch.crc:
        raise CorruptRecord(f"the batch at offset {batch.base_offset} fails its CRC-32C")


def by_records(data, pos=0):
    """(offset, timestamp, key, value, headers) of the records of the batches in `data`
    with offsets >= pos, through RecordBatch.records() (BatchRecord is such a tuple)."""
    out = []
    for _, batch in iter_batches(data):
        _crc_checked(batch)
        if not batch.is_control:
            out.extend(r for r in batch.records() if r.offset >= pos)
    return out


def by_rows(data, pos=0):
    """The same tuples through RecordBatch.record_fields()."""
    out = []
    append = out.append
    for _, batch in iter_batches(data):
        _crc_checked(batch)
        if batch.is_control:
            continue
        append_time = batch.timestamp_type
        base_offset, base_ts, max_ts = batch.base_offset, batch.base_timestamp, batch.max_timestamp
        buf, rows = batch.record_fields()
        skip = pos - base_offset
        for od, td, kp, kl, vp, vl, hp, hc in rows:
            if od >= skip:
                append((base_offset + od, max_ts if append_time else base_ts + td,
                        buf[kp:kp + kl] if kl >= 0 else None, buf[vp:vp + vl] if vl >= 0 else None,
                        tuple(batch.read_headers(buf, hp, hc)) if hc else ()))
    return out


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
            records = decode(view)
            assert len(records) == count
            return records

        assert run(by_records) == run(by_rows), "records() and rows disagree"
        dst = bytearray(len(data))

        def copy():
            dst[:] = data

        results = [("records", timed(lambda: run(by_records), args.runs)),
                   ("rows", timed(lambda: run(by_rows), args.runs)),
                   ("memcpy", timed(copy, args.runs))]
        batches = sum(1 for _ in iter_batches(view))
        print(f"value={size} B: {count} records in {batches} batches, "
              f"{len(data) / MB:.1f} MiB of batches ({count / batches:.0f} records a batch)")
        base = results[0][1]
        for name, secs in results:
            print(f"  {name:8s} {count / secs:12,.0f} records/s {payload / MB / secs:9.1f} MB/s "
                  f"{secs / count * 1e6:8.3f} us/record {base / secs:7.1f}x records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
