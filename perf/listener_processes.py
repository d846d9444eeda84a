"""End-to-end latency through the Kafka listener with 1 and with 2 gateway processes
(listener.processes), interleaved in one run: what serving a producer's and a consumer's
connections in different processes buys (server.py: a new connection goes to the process
with the fewest open).

    python perf/listener_processes.py                 # 4 rounds
    python perf/listener_processes.py --rounds 6 --processes 1 2 3

Each round starts a throwaway odradek broker per setting (perf/wire_compare.py's, with
listener.processes overridden) and runs wire_compare's two latency workloads on new
topics: ck_roundtrip (one 100 B record at a time: produce, flush, poll; --roundtrip
records) and ck_latency (a stream at --rate records/s, --stream records, the consumer in
another process). Prints each round's p50/p99 in ms and, per setting, the medians over
the rounds. A benchmark, not a test.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire_compare as wc  # noqa: E402  (perf/ is not a package)


def one(processes, args, base):
    wc.ODRADEK_OVERRIDES = base + [f"listener.processes={processes}"]
    with wc.odradek_broker(args.data_root) as (bootstrap, _):
        roundtrip = wc.ck_roundtrip(bootstrap, wc.new_topic(bootstrap), args.roundtrip)
        stream = wc.ck_latency(bootstrap, wc.new_topic(bootstrap), args.stream, args.rate)
    return roundtrip, stream


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="listener.processes settings")
    ap.add_argument("--roundtrip", type=int, default=2000, help="records one at a time per round")
    ap.add_argument("--stream", type=int, default=6000, help="records of the stream per round")
    ap.add_argument("--rate", type=int, default=2000, help="the stream's records/s")
    ap.add_argument("--data-root", default="/var/tmp")
    args = ap.parse_args()
    base = list(wc.ODRADEK_OVERRIDES)
    results = {n: [] for n in args.processes}
    for r in range(args.rounds):
        for n in args.processes:
            (rt50, rt99), (st50, st99) = one(n, args, base)
            results[n].append((rt50, rt99, st50, st99))
            print(f"round {r + 1}, listener.processes={n}: one at a time p50/p99 {rt50:.3f}/{rt99:.3f} ms, "
                  f"stream p50/p99 {st50:.3f}/{st99:.3f} ms, load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"medians of {args.rounds} rounds (ms):")
    for n in args.processes:
        med = [statistics.median(row[i] for row in results[n]) for i in range(4)]
        print(f"  listener.processes={n}: one at a time p50 {med[0]:.3f} p99 {med[1]:.3f}; "
              f"stream p50 {med[2]:.3f} p99 {med[3]:.3f}")


if __name__ == "__main__":
    main()
