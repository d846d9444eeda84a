"""The floor under odradek's end-to-end latency on this machine: what handing a timestamp
from one process to another costs through shared memory and futex wake-ups alone, with
no broker, no log and no records.

    python perf/wake_floor.py
    python perf/wake_floor.py --rate 10000 --num-records 50000 --runs 3

A record's way through odradek crosses two processes: the producer commits to its ring
and rings the partition's doorbell, the leader worker wakes, appends and publishes, the
consumer wakes and reads. Here process A stamps CLOCK_MONOTONIC into slot i of a shared
page and rings doorbell AB; B wakes, copies the stamp to its own slot i and rings BC; C
wakes and takes the time. A is paced exactly as end_to_end_latency.py paces its
producer (perf/_broker.py paced(): record i due at start + i/rate, time.sleep when
ahead). Each waiter waits as odradek's do, with wait_for_any over the doorbell's word
(client/shm/waiting.py: one futex_waitv), and handles every record that arrived before
it waits again, ringing once per record as the worker publishes once per batch.

Ways of waiting (--spin-us, each in the same interleaved runs), as a Spinner with that cap:
  0       no budget: straight to futex_waitv (ODRADEK_SPIN_US=0)
  50      the Spinner odradek uses by default (SPIN_MAX_NS): an adaptive spin, then futex_waitv
  200     (say) a cap above the gap between stamps (100 us at 10,000/s): the spin can catch
          every stamp, so that no hop sleeps, at the price of a CPU kept busy by each waiter
          (on a busy 2-core box it loses its CPU instead, and stops spinning a while)
and two topologies: one hop (A -> B, the time B has the stamp) and two (A -> B -> C,
producer -> leader worker -> consumer). --relay-work-us gives B work per stamp (a leader's
append, ~15 us of Python); --pipelined adds A => B => C: B rings C a heads-up (a second
doorbell) as soon as it wakes, before its work, and C, woken by that alone, spins (up to
CATCH_NS) for the stamp instead of sleeping again, so C's wake-up overlaps B's work (what
a leader could do for its consumers; odradek does not). Printed: p50/p99/p99.9 in microseconds, the
median of --runs runs each, after dropping the first --warmup-records records of each
run (as end_to_end_latency.py's "after warm-up" row). odradek's latency as a multiple
of the two-hop row: end_to_end_latency.py --floor (measured right after, same load).

The waiters and the hand-off are Python calling odradek._native's atomics and futexes,
as odradek's own waiters are: the ~1-2 us of Python per hop is in the floor, as it is in
every odradek process on the path. A benchmark, not a test.
"""
import argparse
import mmap
import multiprocessing as mp
import os
import statistics
import struct
import time

from _broker import paced, percentile
from odradek.client.shm import Doorbell, WaitSet
from odradek.client.shm._lib import ffi, lib
from odradek.client.shm.waiting import SPIN_MAX_NS, Spinner, wait_for_any

STAMP = struct.Struct("<q")
WAIT_S = 5.0          # a peer silent this long has failed: the run stops
JOIN_S = 10.0
CATCH_NS = 200_000    # pipelined: how long C spins after a heads-up for the stamp itself


def _handle_arrived(inbox, seen, done, count, handle):
    """handle(i) for each record rung on `inbox` since its counter was `seen` (records
    done.. of count); returns (the counter now, records done)."""
    now_seen = inbox.value
    arrived = (now_seen - seen) & 0xFFFFFFFF
    for i in range(done, min(count, done + arrived)):
        handle(i)
    return now_seen, done + arrived


def _waiter(inbox, seen, max_ns, count, handle):
    """Wait on doorbell `inbox` (its counter at `seen` before the first record) and call
    handle(i) for records 0..count-1 as they arrive; False if a wait timed out."""
    spinner = Spinner(max_ns)
    done = 0
    while done < count:
        if not wait_for_any([inbox], [seen], WAIT_S, spinner):
            return False
        seen, done = _handle_arrived(inbox, seen, done, count, handle)
    return True


def relay(inbox_fd, seen, outbox_fd, slots, max_ns, count, work_ns, headsup_fd):
    """B: take each stamp from slots[0] and pass it on in slots[1] (ringing outbox),
    after work_ns of busy work per stamp (a leader's append). With a heads-up doorbell,
    ring it first, as soon as a stamp is there, so that C wakes while B works."""
    inbox, outbox = Doorbell.attach(inbox_fd), Doorbell.attach(outbox_fd)
    headsup = Doorbell.attach(headsup_fd) if headsup_fd is not None else None
    src, dst = slots
    unpack, pack, now = STAMP.unpack_from, STAMP.pack_into, time.monotonic_ns

    def handle(i):
        if headsup is not None:
            headsup.ring()
        until = now() + work_ns
        while now() < until:
            pass
        pack(dst, i * 8, unpack(src, i * 8)[0])
        outbox.ring()
    _waiter(inbox, seen, max_ns, count, handle)


def sink(inbox_fd, seen, slots, results, max_ns, count, headsup_fd, headsup_seen):
    """The last process: latency = its clock when it has the stamp - the stamp (ns),
    written to `results`. With a heads-up doorbell it sleeps on both, and after a
    heads-up alone spins (up to CATCH_NS) for the stamp instead of sleeping again."""
    inbox = Doorbell.attach(inbox_fd)
    src = slots[-1]
    unpack, now = STAMP.unpack_from, time.monotonic_ns

    def handle(i):
        STAMP.pack_into(results, i * 8, now() - unpack(src, i * 8)[0])
    if headsup_fd is None:
        _waiter(inbox, seen, max_ns, count, handle)
        return
    headsup, spinner, done = Doorbell.attach(headsup_fd), Spinner(max_ns), 0
    both, mine = WaitSet([headsup, inbox], [headsup_seen, seen]), WaitSet([inbox], [seen])
    while done < count:
        if not both.wait(WAIT_S, spinner):
            return
        if inbox.value == seen:     # a heads-up alone: the stamp is on its way
            mine.set_seen([seen])
            if not lib.odk_futex_spin_wait_any(mine._words, mine._seen, 1, CATCH_NS, int(WAIT_S * 1e9),
                                               ffi.NULL) == 1:
                return
        seen, done = _handle_arrived(inbox, seen, done, count, handle)
        both.set_seen([headsup.value, seen])


def one_run(hops, max_ns, count, rate, work_ns=0, pipelined=False):
    """Latencies (ns) of one paced run of `count` stamps over `hops` hops (1 or 2); B
    works work_ns per stamp; pipelined: B rings C a heads-up first (two hops only)."""
    bells = [Doorbell.create() for _ in range(hops + pipelined)]
    slots = [mmap.mmap(-1, count * 8) for _ in range(hops)]    # shared, inherited by the fork
    results = mmap.mmap(-1, count * 8)
    ctx = mp.get_context("fork")
    procs = []
    try:
        (first, first_fd), (last, last_fd) = bells[0], bells[hops - 1]
        headsup, headsup_fd = bells[2] if pipelined else (None, None)
        if hops == 2:
            procs.append(ctx.Process(target=relay, args=(first_fd, first.value, last_fd, slots, max_ns, count,
                                                         work_ns, headsup_fd)))
        procs.append(ctx.Process(target=sink, args=(last_fd, last.value, slots, results, max_ns, count, headsup_fd,
                                                    None if headsup is None else headsup.value)))
        for p in procs:
            p.start()
        time.sleep(0.2)      # the children are attached and waiting (a hint only: no record is lost before)
        pack, now, out = STAMP.pack_into, time.monotonic_ns, slots[0]
        for i in paced(count, rate):
            pack(out, i * 8, now())
            first.ring()
        for p in procs:
            p.join(JOIN_S + WAIT_S)
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit(f"a waiter failed: exit codes {[p.exitcode for p in procs]}")
        return [STAMP.unpack_from(results, i * 8)[0] for i in range(count)]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(JOIN_S)
        for bell, fd in bells:
            bell.close()
            os.close(fd)
        for m in (*slots, results):
            m.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-records", type=int, default=50000)
    ap.add_argument("--rate", type=float, default=10000, help="stamps/s A sends (default 10000)")
    ap.add_argument("--warmup-records", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--spin-us", default=f"0,{SPIN_MAX_NS / 1000:g}",
                    help="the waiters' spin caps to compare, us, comma-separated (default 0 and "
                         "ODRADEK_SPIN_US's, 50 unless set); 0 = futex only")
    ap.add_argument("--relay-work-us", type=float, default=0.0,
                    help="busy work B does per stamp before passing it on (a leader's append; default 0)")
    ap.add_argument("--pipelined", action="store_true",
                    help="also two hops where B rings C a heads-up as soon as it wakes, and C, woken by "
                         "it, spins for the stamp: C's wake-up overlaps B's work")
    args = ap.parse_args()
    if not 0 <= args.warmup_records < args.num_records:
        ap.error("--warmup-records must be at least 0 and below --num-records")
    try:
        caps = [float(x) for x in args.spin_us.split(",")]
    except ValueError:
        ap.error(f"--spin-us takes microseconds separated by commas, not {args.spin_us!r}")
    cases = [(hops, cap, False) for hops in (1, 2) for cap in caps]
    cases += [(2, cap, True) for cap in caps if args.pipelined]
    results = {case: [] for case in cases}
    load, work_ns = os.getloadavg()[0], int(args.relay_work_us * 1000)
    for _ in range(args.runs):        # interleaved: the machine's noise hits every case alike
        for hops, cap, pipelined in cases:
            lat = sorted(one_run(hops, int(cap * 1000), args.num_records, args.rate, work_ns,
                                 pipelined)[args.warmup_records:])
            results[hops, cap, pipelined].append([percentile(lat, p) / 1e3 for p in (0.5, 0.99, 0.999)])
    print(f"{args.num_records} stamps at {args.rate:.0f}/s, first {args.warmup_records} left out, B works "
          f"{args.relay_work_us:g} us a stamp, median of {args.runs} runs; load average {load:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    for case in cases:
        hops, cap, pipelined = case
        p50, p99, p999 = (statistics.median(r[i] for r in results[case]) for i in range(3))
        path = "A -> B     " if hops == 1 else "A => B => C" if pipelined else "A -> B -> C"
        how = "futex" if cap == 0 else f"spin <= {cap:g} us"
        print(f"{path} {how:<16}: p50 {p50:.1f} us, p99 {p99:.1f} us, p99.9 {p999:.1f} us")


if __name__ == "__main__":
    main()
