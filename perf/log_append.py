"""How fast does PartitionLog.append take batches, next to a raw copy of the same bytes?

    python perf/log_append.py [--mib 256] [--batch-size 16384] [--runs 5] [--dir DIR] [--follower]

    e.g.  python perf/log_append.py --batch-size 1024 --mib 64 --runs 7 --dir /data/odradek

Appends --mib MiB of v2 record batches of --batch-size bytes each (records of
--record-size bytes of value, built with BatchBuilder BEFORE timing: the producer builds
batches, not the log) to one PartitionLog in a fresh temp dir (under --dir, default the
system temp dir: put it on the filesystem your log.dirs live on). In the same run, and on
the same filesystem, the same byte sequence goes through the baselines:
  raw mmap       one memcpy per batch into an mmap of a file preallocated (fallocate) to
                 the total size, nothing else: the target is ours >= 0.5x this;
  (sparse file)  the same into a file only extended by ftruncate, as the log's active
                 segment is (MappedFile: extended sparsely to segment.bytes);
  os.write       one write() syscall per batch to a fresh file;
  os.pwrite      one pwrite() per batch into a file preallocated (fallocate) to the
                 total size: the raw cost of writing without the map.
--follower appends as a follower does (PartitionLog.append_as_follower: batches with
their offsets, stored as they are; LogSegment.append_written, pwrite) instead of as a
leader (offsets assigned, copied into the map). CPU seconds (process_time: this
process's every thread, the prefault thread included) are printed beside the wall
times: on a shared box they move less than wall time.
Each path runs --runs times, interleaved in a rotating order, each time on a fresh file
(first-touch page faults included, as for a fresh segment) and after recycling as much
page cache (see recycle_page_cache); the MEDIAN is printed, with the median per-run
ratio ours/raw-mmap: the number to watch on a shared, noisy box. The log uses Kafka's
default topic config (segment.bytes 1 GiB: no roll; flush.messages never: no fsync), so
the timing is the append path only: validation (native scan + CRC-32C), the copy,
offset rewrite and index maintenance (plus ~0.2 us an append for timing each call, for
the latency figures). Files are deleted without fsync after each run.

Also prints CRC-32C GB/s (native.crc32c over a 64 MiB buffer: every appended byte is
checksummed once) and whether the SSE4.2 instruction is used, and ends with a
kafka-producer-perf-test-like summary line (records/sec, MB/sec = MiB/s as Kafka's tool
computes it, and per-append latency percentiles over all runs of the log path).
"""
import argparse
import mmap
import os
import shutil
import statistics
import tempfile
import time

from odradek.client import native
from odradek.client.records import BATCH_HEADER_SIZE, BatchBuilder, size_of_record, write_base_offset
from odradek.daemon.storage import LogConfig, PartitionLog

MiB = 1 << 20
_TS = 1_700_000_000_000


# == building the batches (untimed) =================================================
def batch_layout(target, record_size):
    """Value lengths of the records of a batch of exactly `target` bytes (when the size
    allows): values of `record_size` bytes, the last one sized to fill the batch. Every
    record of a batch gets the same timestamp, so every batch built from this layout has
    the same size."""
    record_size = max(1, min(record_size, target - 80))  # a tiny batch holds one record
    lengths = []
    size = BATCH_HEADER_SIZE
    while not lengths or size + size_of_record(None, bytes(record_size), offset_delta=len(lengths)) <= target:
        size += size_of_record(None, bytes(record_size), offset_delta=len(lengths))
        lengths.append(record_size)
    for _ in range(16):  # grow the last value until the batch is exactly target bytes
        n = len(build_batch(lengths, 0, bytes(target)))
        if n >= target:
            break
        lengths[-1] += target - n
    return lengths


def build_batch(lengths, ts, payload, start=0):
    """A batch of records whose values are slices of `payload` of `lengths` bytes (from
    `start`, wrapping), all with timestamp `ts`."""
    b = BatchBuilder()
    span = len(payload)
    for n in lengths:
        if start + n > span:
            start = 0
        b.append(ts, None, payload[start:start + n])
        start += n
    return b.build()


def build_appends(args):
    """--mib MiB of distinct batches, one millisecond apart (the log's time index then
    gets an entry beside each offset-index entry, as with a live producer), grouped
    --per-append to a buffer. Returns (appends, records per append, batch count, value
    size of the first record)."""
    lengths = batch_layout(args.batch_size, args.record_size)
    nbatches = max(1, (args.mib * MiB) // args.batch_size)
    payload = os.urandom(4 * MiB)
    batches = [build_batch(lengths, _TS + i, payload, (i * 7919) % (3 * MiB)) for i in range(nbatches)]
    if args.follower:   # as a leader stored them: dense offsets from 0
        batches = [bytearray(b) for b in batches]
        for i, b in enumerate(batches):
            write_base_offset(b, 0, i * len(lengths))
        batches = [bytes(b) for b in batches]
    appends, records = [], []
    for i in range(0, nbatches, args.per_append):
        group = batches[i:i + args.per_append]
        appends.append(b"".join(group) if len(group) > 1 else group[0])
        records.append(len(group) * len(lengths))
    return appends, records, nbatches, lengths[0]


# == the three paths: each returns elapsed seconds (and latencies for ours) ============
def run_log(base, appends, lat, follower=False):
    d = tempfile.mkdtemp(prefix="odradek-bench-", dir=base)
    try:
        log = PartitionLog(os.path.join(d, "bench-0"), LogConfig())
        append = log.append
        if follower:
            append = lambda data: log.append_as_follower(data, 0)   # noqa: E731 (one segment)
        clock = time.perf_counter_ns
        c0, t0 = time.process_time(), time.perf_counter()
        prev = clock()
        for data in appends:
            append(data)
            now = clock()
            lat.append(now - prev)
            prev = now
        elapsed = time.perf_counter() - t0, time.process_time() - c0
        assert log.log_end_offset > 0
        for segment in log.segments:  # not log.close(): that would fsync what we delete
            segment.close()
        return elapsed
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_mmap(base, appends, nbytes, preallocate=True):
    fd, path = tempfile.mkstemp(prefix="odradek-bench-", suffix=".mmap", dir=base)
    try:
        os.ftruncate(fd, nbytes)
        if preallocate:
            os.posix_fallocate(fd, 0, nbytes)
        m = mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(m)
        c0, t0 = time.process_time(), time.perf_counter()
        pos = 0
        for data in appends:
            n = len(data)
            view[pos:pos + n] = data
            pos += n
        elapsed = time.perf_counter() - t0, time.process_time() - c0
        view.release()
        m.close()
        return elapsed
    finally:
        os.close(fd)
        os.unlink(path)


def run_write(base, appends):
    fd, path = tempfile.mkstemp(prefix="odradek-bench-", suffix=".write", dir=base)
    try:
        write = os.write
        c0, t0 = time.process_time(), time.perf_counter()
        for data in appends:
            write(fd, data)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        os.close(fd)
        os.unlink(path)


def run_pwrite(base, appends, nbytes):
    fd, path = tempfile.mkstemp(prefix="odradek-bench-", suffix=".pwrite", dir=base)
    try:
        os.ftruncate(fd, nbytes)
        os.posix_fallocate(fd, 0, nbytes)
        pwrite = os.pwrite
        c0, t0 = time.process_time(), time.perf_counter()
        pos = 0
        for data in appends:
            pos += pwrite(fd, data, pos)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        os.close(fd)
        os.unlink(path)


def recycle_page_cache(base, nbytes):
    """Write and delete `nbytes` of file, so that the next path gets page-cache pages
    the kernel has just freed. On the dev VM, a path that started after >= 2 s of idle
    ran up to 3x slower (first touch of guest memory the host had taken back, as with
    free page reporting), whichever path it was; this levels the field."""
    fd, path = tempfile.mkstemp(prefix="odradek-bench-", suffix=".warm", dir=base)
    try:
        chunk = bytes(MiB)
        for _ in range(0, nbytes, MiB):
            os.write(fd, chunk)
    finally:
        os.close(fd)
        os.unlink(path)


def crc_gbps(runs):
    buf = bytearray(os.urandom(64 * MiB))
    native.crc32c(buf)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        native.crc32c(buf)
        times.append(time.perf_counter() - t0)
    return len(buf) / statistics.median(times) / 1e9


def pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


def main():
    summary, _, rest = __doc__.partition("\n\n")
    ap = argparse.ArgumentParser(description=summary, epilog=rest,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256, help="MiB appended per run (default 256)")
    ap.add_argument("--batch-size", type=int, default=16384, help="bytes per batch (default 16384)")
    ap.add_argument("--record-size", type=int, default=100, help="value bytes per record (default 100)")
    ap.add_argument("--per-append", type=int, default=1,
                    help="batches per append call (default 1: one produce = one batch)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per path; median shown (default 5)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run's times")
    ap.add_argument("--dir", default=None, help="where the temp dir goes (default: the system temp dir)")
    ap.add_argument("--follower", action="store_true",
                    help="append as a follower (append_as_follower: pwrite) instead of as a leader")
    args = ap.parse_args()
    if args.batch_size < 128:
        ap.error("--batch-size must be at least 128")
    if args.runs < 1 or args.per_append < 1 or args.mib < 1:
        ap.error("--runs, --per-append and --mib must be at least 1")
    base = tempfile.mkdtemp(prefix="odradek-perf-", dir=args.dir)
    try:
        appends, records, nbatches, value_size = build_appends(args)
        nbytes = sum(len(a) for a in appends)
        nrecords = sum(records)
        # one untimed warm-up of each path (imports, allocator, first segment files)
        warm = appends[:max(1, len(appends) // 16)]
        run_log(base, warm, [], args.follower)
        run_mmap(base, warm, sum(len(a) for a in warm))
        run_write(base, warm)
        run_pwrite(base, warm, sum(len(a) for a in warm))

        lat = []
        paths = {"log": lambda: run_log(base, appends, lat, args.follower),
                 "mmap": lambda: run_mmap(base, appends, nbytes),
                 "sparse": lambda: run_mmap(base, appends, nbytes, preallocate=False),
                 "write": lambda: run_write(base, appends),
                 "pwrite": lambda: run_pwrite(base, appends, nbytes)}
        times = {name: [] for name in paths}
        cpu = {name: [] for name in paths}
        order = list(paths)
        for run in range(args.runs):
            # rotate the order each run: no path always follows the same one
            for name in order[run % len(order):] + order[:run % len(order)]:
                recycle_page_cache(base, nbytes)
                wall, cpu_s = paths[name]()
                times[name].append(wall)
                cpu[name].append(cpu_s)
        ratios = [m / t for m, t in zip(times["mmap"], times["log"])]
        t_log, t_mmap, t_write = times["log"], times["mmap"], times["write"]
        t_pwrite = times["pwrite"]
        crc = crc_gbps(args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    fs = os.statvfs(args.dir or tempfile.gettempdir())
    print(f"log append{' as a follower' if args.follower else ''}: {nbytes / MiB:.0f} MiB as {nbatches} "
          f"batches of {args.batch_size} B "
          f"({nrecords // nbatches} records of {value_size} B values), {args.per_append} "
          f"batch(es)/append, native={native.IMPLEMENTATION}, runs={args.runs} (median), "
          f"dir={args.dir or tempfile.gettempdir()} (bsize {fs.f_bsize})")
    print(f"  {'path':22s} {'MiB/s':>9s} {'batches/s':>11s} {'appends/s':>11s} {'us/append':>10s} "
          f"{'CPU-s':>7s}")
    ours = "append_as_follower" if args.follower else "PartitionLog.append"
    for name, key in ((ours, "log"), ("raw mmap memcpy", "mmap"), ("  (sparse file)", "sparse"),
                      ("os.write", "write"), ("os.pwrite", "pwrite")):
        t = statistics.median(times[key])
        print(f"  {name:22s} {nbytes / MiB / t:9.0f} {nbatches / t:11.0f} {len(appends) / t:11.0f} "
              f"{t / len(appends) * 1e6:10.2f} {statistics.median(cpu[key]):7.3f}")
    if args.verbose:
        for name in paths:
            print(f"  {name:8s} us/append by run: " +
                  " ".join(f"{t / len(appends) * 1e6:6.2f}" for t in times[name]) +
                  "   CPU-s: " + " ".join(f"{c:.3f}" for c in cpu[name]))
    ratio = statistics.median(ratios)
    print(f"  ours / raw mmap = {ratio:.2f} (median of per-run ratios; min {min(ratios):.2f}, "
          f"max {max(ratios):.2f})   ours / os.write = "
          f"{statistics.median(t_write) / statistics.median(t_log):.2f}   raw pwrite / raw mmap = "
          f"{statistics.median(t_mmap) / statistics.median(t_pwrite):.2f}")
    hw = native.crc32c_hw_available()
    print(f"  crc32c: {crc:.2f} GB/s over 64 MiB ({'SSE4.2 crc32 instruction' if hw else 'table, no SSE4.2'})")
    lat.sort()
    t = statistics.median(t_log)
    us = [x / 1000 for x in (statistics.fmean(lat), lat[-1], pct(lat, 50), pct(lat, 95), pct(lat, 99),
                             pct(lat, 99.9))]
    print(f"{nrecords} records sent, {nrecords / t:.1f} records/sec ({nbytes / MiB / t:.2f} MB/sec), "
          f"{us[0]:.1f} us avg latency, {us[1]:.1f} us max latency, {us[2]:.1f} us 50th, "
          f"{us[3]:.1f} us 95th, {us[4]:.1f} us 99th, {us[5]:.1f} us 99.9th (per append).")


if __name__ == "__main__":
    main()
