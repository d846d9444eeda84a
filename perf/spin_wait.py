"""What does spinning before the futex sleep buy? A ping-pong between two processes over
two doorbells, each side waiting with wait_for_any (client/shm/waiting.py), once with
spinning off and once with the Spinner's default budget, in the same run.

    python perf/spin_wait.py
    python perf/spin_wait.py --round-trips 20000 --gap-us 20 --runs 5

The parent rings the child's doorbell and waits on its own; the child waits on its
doorbell and rings the parent's back. The parent pauses --gap-us between round trips
(busy-waiting, as a producer would be busy producing), so the child's waits have that
gap: a gap within the spin budget is caught by the spin. Printed: round-trip time
p50/p99/p99.9 in microseconds (median of --runs runs) for spin off and spin on, and
their ratio. No broker: this measures the wait alone, without Python per record.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import time

from odradek.client.shm import Doorbell
from odradek.client.shm.waiting import SPIN_MAX_NS, Spinner, wait_for_any

WAIT_S = 5.0


def child(ping_fd, pong_fd, max_ns, count, seen):
    """Answer `count` pings; `seen`: the ping counter before the first."""
    ping, pong = Doorbell.attach(ping_fd), Doorbell.attach(pong_fd)
    spinner = Spinner(max_ns)
    for _ in range(count):
        if not wait_for_any([ping], [seen], WAIT_S, spinner):
            return
        seen = ping.value
        pong.ring()


def one_run(max_ns, count, gap_ns):
    ping, ping_fd = Doorbell.create()
    pong, pong_fd = Doorbell.create()
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=child, args=(ping_fd, pong_fd, max_ns, count, ping.value))
    proc.start()
    spinner = Spinner(max_ns)
    rtt = []
    try:
        now = time.monotonic_ns
        for _ in range(count):
            until = now() + gap_ns
            while now() < until:
                pass
            seen = pong.value
            t0 = now()
            ping.ring()
            if not wait_for_any([pong], [seen], WAIT_S, spinner):
                raise SystemExit("the child did not answer")
            rtt.append(now() - t0)
    finally:
        proc.join(WAIT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(WAIT_S)
        for bell, fd in ((ping, ping_fd), (pong, pong_fd)):
            bell.close()
            os.close(fd)
    rtt.sort()
    n = len(rtt)
    return [rtt[min(n - 1, int(p * n))] / 1e3 for p in (0.5, 0.99, 0.999)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--round-trips", type=int, default=10000)
    ap.add_argument("--gap-us", type=float, default=20.0, help="pause between round trips (default 20)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = {"off": [], "on": []}
    for _ in range(args.runs):      # interleaved: the machine's load hits both alike
        results["off"].append(one_run(0, args.round_trips, int(args.gap_us * 1000)))
        results["on"].append(one_run(SPIN_MAX_NS, args.round_trips, int(args.gap_us * 1000)))
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
    print(f"{args.round_trips} round trips, {args.gap_us:g} us apart, median of {args.runs} runs; "
          f"spin budget up to {SPIN_MAX_NS / 1000:g} us (ODRADEK_SPIN_US)")
    for k in ("off", "on"):
        p50, p99, p999 = med[k]
        print(f"spin {k:<3}: round trip p50 {p50:.1f} us, p99 {p99:.1f} us, p99.9 {p999:.1f} us")
    ratio = [a / b if b else float("inf") for a, b in zip(med["off"], med["on"])]
    print(f"off/on: p50 {ratio[0]:.2f}x, p99 {ratio[1]:.2f}x, p99.9 {ratio[2]:.2f}x")


if __name__ == "__main__":
    main()
