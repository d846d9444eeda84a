"""What do idempotence and transactions cost the Producer? Issue 12's benchmark.

    python perf/transactions_perf.py --num-records 200000 --record-size 100 --partitions 3 --runs 3

Sends --num-records records of --record-size bytes (keyless: sticky partitions) to a
temporary topic, once per mode, the modes interleaved within each run so that they see
the same machine load:

    plain          enable.idempotence=false
    idempotent     the default (InitProducerId; each batch carries producer id, epoch, sequence)
    txn-N          transactional.id: begin_transaction, N records, commit_transaction, ...
                   (N from --txn-sizes, default 100 and 1000)

Prints, per mode, records/sec and MB/sec (from the first produce() to the last record's
delivery, or the last commit's end) as the median of the --runs runs, and as ratios to
`plain` and to `idempotent` measured in the same run (median of the per-run ratios);
for the transactional modes also commit_transaction()'s latency, p50 and p99 over every
commit of every run. Without --socket and $ODRADEK_SOCKET a throwaway broker is started
(perf/_broker.py); set-up chatter goes to stderr. A benchmark, not a test.
"""
import argparse
import statistics
import sys
import time

from _broker import MB, broker_socket, log, parse_props, percentile, run, topic

FLUSH_TIMEOUT_S = 120.0
COMMIT_TIMEOUT_S = 60.0


def _plain(socket_path, name, n, payload, props, idempotent):
    from odradek.client import Producer
    p = Producer({"socket": socket_path, "enable.idempotence": idempotent, **props})
    try:
        p.attach(name)
        start = time.perf_counter()
        produce, poll = p.produce, p.poll
        for i in range(n):
            produce(name, payload)
            if i & 1023 == 0:
                poll(0)
        left = p.flush(FLUSH_TIMEOUT_S)
        seconds = time.perf_counter() - start
    finally:
        p.close(FLUSH_TIMEOUT_S)
    if left:
        raise SystemExit(f"{left} records not delivered within {FLUSH_TIMEOUT_S} s")
    return seconds, []


def _transactional(socket_path, name, n, payload, props, per_txn, tid):
    from odradek.client import Producer
    p = Producer({"socket": socket_path, "transactional.id": tid, **props})
    commits = []
    try:
        p.init_transactions(COMMIT_TIMEOUT_S)
        p.attach(name)
        start = time.perf_counter()
        produce, poll = p.produce, p.poll
        for first in range(0, n, per_txn):
            p.begin_transaction()
            for i in range(first, min(n, first + per_txn)):
                produce(name, payload)
                if i & 1023 == 0:
                    poll(0)
            t0 = time.perf_counter()
            p.commit_transaction(COMMIT_TIMEOUT_S)
            commits.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - start
    finally:
        p.close(FLUSH_TIMEOUT_S)
    return seconds, commits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-records", type=int, default=200_000)
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--txn-sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--producer-props", nargs="*", default=[], help="KEY=VALUE producer configs for every mode")
    ap.add_argument("--socket")
    args = ap.parse_args()
    props = parse_props(args.producer_props)
    payload = b"x" * args.record_size
    modes = ["plain", "idempotent"] + [f"txn-{k}" for k in args.txn_sizes]
    rates = {mode: [] for mode in modes}
    ratios = {mode: ([], []) for mode in modes}
    commits = {mode: [] for mode in modes}
    with broker_socket(args.socket) as sock, topic(sock, partitions=args.partitions) as name:
        for r in range(args.runs):
            got = {}
            for mode in modes:
                if mode == "plain" or mode == "idempotent":
                    seconds, lat = _plain(sock, name, args.num_records, payload, props, mode == "idempotent")
                else:
                    size = int(mode.split("-")[1])
                    seconds, lat = _transactional(sock, name, args.num_records, payload, props, size,
                                                  f"perf-{mode}-{r}")
                got[mode] = args.num_records / seconds
                rates[mode].append(got[mode])
                commits[mode].extend(lat)
                log(f"run {r + 1}/{args.runs} {mode}: {got[mode]:.0f} records/sec")
            for mode in modes:
                ratios[mode][0].append(got[mode] / got["plain"])
                ratios[mode][1].append(got[mode] / got["idempotent"])
    print(f"{args.num_records} records of {args.record_size} bytes, {args.partitions} partitions, "
          f"median of {args.runs} runs")
    for mode in modes:
        rate = statistics.median(rates[mode])
        line = (f"{mode:>11}: {rate:.1f} records/sec ({rate * args.record_size / MB:.2f} MB/sec), "
                f"x{statistics.median(ratios[mode][0]):.3f} of plain, "
                f"x{statistics.median(ratios[mode][1]):.3f} of idempotent")
        if commits[mode]:
            lat = sorted(commits[mode])
            line += (f"; commit_transaction {len(lat)} commits: {percentile(lat, 0.5) * 1e3:.2f} ms p50, "
                     f"{percentile(lat, 0.99) * 1e3:.2f} ms p99")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
