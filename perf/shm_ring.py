"""How fast does the shared-memory ring move produce requests between two processes,
next to a plain memory copy, and how soon does a sleeping reader wake up?

    python perf/shm_ring.py [--runs 5] [--mib 128] [--samples 2000]

Throughput: a child process writes entries of 1 KiB and of 16 KiB (Ring.write: one copy
into the ring) while this process reads them (peek/release: zero copy; and again with
one copy out, as the leader worker copies a batch into its segment). Printed as
entries/sec and MB/sec, the median of --runs runs, next to a memmove of the same
entry size (one Python-level memmove per entry, and one big memmove) in the same run.

Wake-up latency: this process writes one entry only once the reader in the child is
asleep in FUTEX_WAIT (its waiter flag set and its state 'S' in /proc), stamped with
CLOCK_MONOTONIC; the child takes the time when its wait returns. p50/p95/p99/p99.9/max
of --samples samples.

Uses odradek.client.shm only (the structures the client and the worker share).
"""
import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time

from odradek.client.shm import Ring

RING_CAPACITY = 4 << 20
SIZES = (1024, 16384)


# ---- the child ------------------------------------------------------------------------

def child_writer(fd, size, count):
    ring = Ring.attach(fd)
    payload = os.urandom(size)
    print("ready", flush=True)
    for _ in runs_from_stdin():
        for _ in range(count):
            ring.write(payload, 1, timeout=None)


def runs_from_stdin():
    """Yield once per 'go' line on stdin (the parent starts each run)."""
    n = 0
    for line in sys.stdin:
        if line.strip() != "go":
            return n
        yield n
        n += 1
    return n


def child_ponger(ping_fd, pong_fd, samples):
    ping, pong = Ring.attach(ping_fd), Ring.attach(pong_fd)
    print("ready", flush=True)
    for _ in range(samples):
        ping.wait(timeout=None)
        woke = time.monotonic_ns()
        tag, view = ping.peek()
        sent = int.from_bytes(view, "little")
        ping.release()
        pong.write_completion(tag, woke - sent)


# ---- the parent -----------------------------------------------------------------------

def spawn(*args, fds):
    return subprocess.Popen([sys.executable, __file__, "--child", *map(str, args)],
                            pass_fds=fds, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def throughput(size, total_bytes, runs):
    """(zero-copy MB/s, copy-out MB/s), medians over runs; entries per run."""
    count = max(1000, total_bytes // size)
    ring, fd = Ring.create(RING_CAPACITY)
    child = spawn("writer", fd, size, count, fds=(fd,))
    os.close(fd)
    assert child.stdout.readline().strip() == "ready"
    sink = bytearray(size)
    results = {"zero-copy read": [], "read + copy out": []}
    for _ in range(runs):
        for mode, times in results.items():
            child.stdin.write("go\n")
            child.stdin.flush()
            t0 = time.perf_counter()
            peek, release, wait = ring.peek, ring.release, ring.wait
            copy = mode != "zero-copy read"
            for _ in range(count):
                got = peek()
                if got is None:
                    wait(None)
                    got = peek()
                if copy:
                    sink[:] = got[1]
                release()
            times.append(time.perf_counter() - t0)
    child.stdin.close()
    child.wait()
    ring.close()
    return count, {mode: count * size / statistics.median(t) / 1e6 for mode, t in results.items()}


def memcpy_rates(size, total_bytes, runs):
    """MB/s of a per-entry memmove loop (Python-driven, like the ring) and of one big
    memmove of the same bytes."""
    count = max(1000, total_bytes // size)
    src = bytearray(os.urandom(size))
    dst = bytearray(RING_CAPACITY)
    slots = RING_CAPACITY // size
    a_src = (ctypes.c_char * size).from_buffer(src)
    a_dst = ctypes.addressof((ctypes.c_char * RING_CAPACITY).from_buffer(dst))
    memmove = ctypes.memmove
    loop, big = [], []
    big_src = bytearray(os.urandom(min(count * size, 256 << 20)))
    big_dst = bytearray(len(big_src))
    for _ in range(runs):
        t0 = time.perf_counter()
        for i in range(count):
            memmove(a_dst + (i % slots) * size, a_src, size)
        loop.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        big_dst[:] = big_src
        big.append(time.perf_counter() - t0)
    return (count * size / statistics.median(loop) / 1e6,
            len(big_src) / statistics.median(big) / 1e6)


def wake_latency(samples):
    ping, ping_fd = Ring.create(1 << 16)
    pong, pong_fd = Ring.create(1 << 16)
    child = spawn("ponger", ping_fd, pong_fd, samples, fds=(ping_fd, pong_fd))
    os.close(ping_fd)
    os.close(pong_fd)
    assert child.stdout.readline().strip() == "ready"
    stat = f"/proc/{child.pid}/stat"
    lat = []
    for i in range(samples):
        while not ping.reader_waiting:         # the child announced its sleep ...
            pass
        while open(stat).read().rsplit(")", 1)[1].split()[0] != "S":   # ... and sleeps
            pass
        ping.write(time.monotonic_ns().to_bytes(8, "little"), i)
        pong.wait(None)
        lat.append(pong.read_completion().base_offset)
    child.wait()
    ping.close()
    pong.close()
    return sorted(lat)


def pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        role, *args = sys.argv[2:]
        if role == "writer":
            child_writer(*map(int, args))
        else:
            child_ponger(*map(int, args))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    ap.add_argument("--mib", type=int, default=128, help="MiB moved per run (default 128)")
    ap.add_argument("--samples", type=int, default=2000, help="wake-up samples (default 2000)")
    args = ap.parse_args()
    total = args.mib << 20
    print(f"ring capacity {RING_CAPACITY >> 20} MiB, {args.mib} MiB per run, median of "
          f"{args.runs} runs, {os.cpu_count()} CPUs")
    for size in SIZES:
        count, rates = throughput(size, total, args.runs)
        loop, big = memcpy_rates(size, total, args.runs)
        for mode, mbps in rates.items():
            print(f"{size // 1024:>3} KiB entries, {mode:<16}: {mbps / size * 1e6:>10,.0f} "
                  f"entries/sec, {mbps:>8,.1f} MB/sec  ({mbps / loop:.2f}x the memmove "
                  f"loop, {mbps / big:.2f}x one big memmove)")
        print(f"{size // 1024:>3} KiB memmove, same run       : per-entry loop "
              f"{loop:>8,.1f} MB/sec, one big memmove {big:>8,.1f} MB/sec")
    lat = wake_latency(args.samples)
    us = [v / 1000 for v in lat]
    print(f"cross-process wake-up (reader asleep in FUTEX_WAIT), {len(us)} samples: "
          f"avg {statistics.mean(us):.1f} us, p50 {pct(us, 50):.1f} us, p95 {pct(us, 95):.1f} us, "
          f"p99 {pct(us, 99):.1f} us, p99.9 {pct(us, 99.9):.1f} us, max {us[-1]:.1f} us")


if __name__ == "__main__":
    main()
