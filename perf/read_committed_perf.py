"""What does isolation.level=read_committed cost a Consumer? The same records read with
read_uncommitted and read_committed, alternately, from one broker and one topic.

    python perf/read_committed_perf.py --messages 1000000 --runs 9

Fills a temporary one-partition topic with --messages non-transactional records of
--record-size bytes (consumer_perf.py's fill), then reads them all from the beginning
--runs times per level, alternating which goes first, and prints each level's median
time and the ratio read_committed / read_uncommitted (1.0: no cost). Non-transactional
data is the case every read_committed consumer pays for: the decoder's one attribute test
a batch, the last stable offset read per fetch; transactional data adds one GetSegment
per fetch that reaches a new transaction (client/_committed_read.py).

A benchmark, not a test.
"""
import argparse
import statistics

from _broker import broker_socket, log, run, topic
from consumer_perf import consume_once, fill

LEVELS = ("read_uncommitted", "read_committed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000, help="records to read (default 1000000)")
    ap.add_argument("--record-size", type=int, default=100, help="bytes per record (default 100)")
    ap.add_argument("--runs", type=int, default=9, help="reads per level (default 9)")
    ap.add_argument("--timeout", type=float, default=10.0, help="give up after this long without a record")
    args = ap.parse_args()
    if min(args.messages, args.record_size, args.runs) < 1:
        ap.error("--messages, --record-size and --runs must be at least 1")
    with broker_socket() as sock, topic(sock, None, 1, "perf-isolation") as name:
        fill(sock, name, [0], args.messages, args.record_size)
        times = {level: [] for level in LEVELS}
        for i in range(args.runs):
            for level in (LEVELS if i % 2 == 0 else LEVELS[::-1]):
                _, _, elapsed, records, _ = consume_once(sock, name, [0], args.messages,
                                                         {"isolation.level": level}, args.timeout)
                if records < args.messages:
                    raise SystemExit(f"{level}: read {records} of {args.messages} records")
                times[level].append(elapsed)
        med = {level: statistics.median(t) for level, t in times.items()}
        for level in LEVELS:
            log(f"{level}: {[round(t, 4) for t in times[level]]}")
            print(f"{level}: median {med[level] * 1000:.1f} ms for {args.messages} records "
                  f"({args.messages / med[level] / 1e6:.2f} M records/s)")
        print(f"read_committed / read_uncommitted time: {med['read_committed'] / med['read_uncommitted']:.3f}")


if __name__ == "__main__":
    run(main)
