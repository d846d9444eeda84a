"""Produce throughput per codec: compression.type none, gzip, snappy, lz4 and zstd side by
side on one broker, with 1 KiB compressible records.

    python perf/codec_perf.py                       # 50000 records a codec, 3 runs
    python perf/codec_perf.py --num-records 50000 --runs 5 --producer-props linger.ms=5

Each run sends --num-records records of --record-size bytes of text (words from a fixed
vocabulary of 500: zstd and gzip store them in ~40%, snappy and lz4 in ~55%) with each codec
in turn, into a fresh one-partition topic per codec and run, and times produce() of the
first record to flush() returning (acks=1, the Producer's defaults otherwise: batch.size
16384, linger.ms 5). Codecs run interleaved within a run, so the machine's load hits them
alike. Prints per codec: the median MB/s over the runs (uncompressed bytes / 2**20 per
second, as Kafka counts), the median of each run's ratio to none in that same run, and
the bytes on disk per byte produced (the partition's size from DescribeLogDirs: batch
headers included). Without --socket a throwaway broker is started (perf/_broker.py).

A benchmark, not a test.
"""
import argparse
import os
import random
import statistics
import time

from _broker import MB, broker_socket, log, parse_props, run, topic

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def records(count, size, seed=7):
    """`count` distinct values of `size` bytes of space-separated words."""
    rng = random.Random(seed)
    vocabulary = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(500)]
    out = []
    for i in range(count):
        text = b"%d " % i + b" ".join(rng.choices(vocabulary, k=size // 4))
        out.append(text[:size].ljust(size, b"."))
    return out


def produce_all(socket_path, name, values, codec, props):
    from odradek.client import Producer
    config = {"socket": socket_path, "acks": 1, "compression.type": codec, **props}
    with Producer(config) as p:
        p.attach(name)
        start = time.perf_counter()
        for v in values:
            p.produce(name, v, partition=0)
        left = p.flush(120)
        seconds = time.perf_counter() - start
    if left:
        raise SystemExit(f"{codec}: {left} records not delivered within 120 s")
    return seconds


def stored_bytes(socket_path, name):
    from odradek.client import Admin
    with Admin(socket_path) as admin:
        return sum(r.size for d in admin.describe_log_dirs([name]) for r in d.replicas if r.topic == name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-records", type=int, default=50000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--socket", default=None)
    parser.add_argument("--producer-props", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    props = parse_props(args.producer_props)
    values = records(args.num_records, args.record_size)
    total = args.num_records * args.record_size
    rates = {c: [] for c in CODECS}
    ratios = {c: [] for c in CODECS}
    on_disk = {}
    with broker_socket(args.socket) as sock:
        for run_no in range(args.runs):
            this_run = {}
            for codec in CODECS:
                with topic(sock, partitions=1, prefix=f"codec-{codec}") as name:
                    seconds = produce_all(sock, name, values, codec, props)
                    this_run[codec] = total / MB / seconds
                    if run_no == 0:
                        on_disk[codec] = stored_bytes(sock, name) / total
            for codec in CODECS:
                rates[codec].append(this_run[codec])
                ratios[codec].append(this_run[codec] / this_run["none"])
            log(f"run {run_no + 1}: " + ", ".join(f"{c} {this_run[c]:.1f} MB/s" for c in CODECS))
    load = os.getloadavg()[0]
    print(f"{args.num_records} records of {args.record_size} B, {args.runs} runs, load average {load:.2f}")
    print(f"{'codec':8s} {'MB/s (median)':>14s} {'vs none (median)':>17s} {'bytes on disk / byte':>21s}")
    for codec in CODECS:
        print(f"{codec:8s} {statistics.median(rates[codec]):14.1f} {statistics.median(ratios[codec]):17.2f} "
              f"{on_disk[codec]:21.3f}")


if __name__ == "__main__":
    run(main)
