"""What does the transaction coordinator's next_deadline() cost with many open transactions?

    python perf/txn_deadlines.py [--open 10000] [--idle 0] [--calls 2000] [--runs 5]

Builds a TransactionCoordinator (sans-IO, its writes acknowledged at once) holding --open
transactional ids with a transaction Ongoing (timeouts spread over 1..60 s) and --idle ids
with none, then times --calls calls of:
  next_deadline()  as installed (deadlines.py: O(1) amortized)
  scan             the same answer found by looking at every id and marker round, as
                   next_deadline did before the heaps (tests/support/txn.py deadline_by_scan)
in alternating runs, and prints the median microseconds per call of each and their ratio.
The broker calls next_deadline() after every batch of coordinator effects (txn_shell.py).
"""
import argparse
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from support.txn import deadline_by_scan  # noqa: E402  (the tests' reference)

from odradek.client.protocol import messages as m  # noqa: E402
from odradek.daemon.broker.txn import Persist, TransactionCoordinator, TxnConfig  # noqa: E402

NOW = 1_700_000_000_000


def run(coord, effects):
    """Acknowledge every Persist at once, as a healthy __transaction_state does."""
    pending = list(effects)
    while pending:
        effect = pending.pop(0)
        if isinstance(effect, Persist):
            pending.extend(coord.persisted(effect.token, NOW))


def build(open_txns, idle):
    pids = itertools.count(1000)
    coord = TransactionCoordinator(TxnConfig(), lambda: next(pids))
    handles = itertools.count()
    for i in range(open_txns + idle):
        tid = f"tx-{i}"
        run(coord, coord.handle("c", next(handles), m.InitProducerIdRequest(
            transactional_id=tid, transaction_timeout_ms=1_000 + (i * 7919) % 59_000), NOW))
        meta = coord.txns[tid]
        if i < open_txns:
            run(coord, coord.handle("c", next(handles), m.AddPartitionsToTxnRequest(
                transactional_id=tid, producer_id=meta.producer_id, producer_epoch=meta.producer_epoch,
                topics=[m.AddPartitionsToTxnTopic(name="t", partitions=[i % 8])]), NOW))
    return coord


def per_call_us(fn, coord, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn(coord)
    return (time.perf_counter() - start) / calls * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--open", type=int, default=10_000)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--calls", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    coord = build(args.open, args.idle)
    assert coord.next_deadline() == deadline_by_scan(coord)
    heaps, scan = [], []
    for _ in range(args.runs):
        heaps.append(per_call_us(TransactionCoordinator.next_deadline, coord, args.calls))
        scan.append(per_call_us(deadline_by_scan, coord, max(1, args.calls // 20)))
    h, s = statistics.median(heaps), statistics.median(scan)
    print(f"{args.open} open transactions, {args.idle} idle ids, median of {args.runs} runs "
          f"(load average {os.getloadavg()[0]:.1f}):")
    print(f"  next_deadline()         {h:10.2f} us/call")
    print(f"  scan of every id        {s:10.2f} us/call")
    print(f"  scan / next_deadline    {s / h:10.0f}x")


if __name__ == "__main__":
    main()
