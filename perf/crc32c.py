"""How fast is CRC-32C, next to a plain memory copy of the same bytes?

    python perf/crc32c.py [--mib 64] [--kib 1 16 256 1024] [--runs 5]

Every produced batch is checksummed once by the leader (and again by recovery), so
CRC-32C should run near memory speed. Prints GB/s (median of --runs) for the path
crc32c() takes (SSE4.2 when available), for the table path crc32c_sw(), and for a
memmove of the same buffer in the same run, plus their ratios. Uses only the public
odradek.client.native facade (ODRADEK_PURE=1 measures the pure-Python reference, on a
smaller buffer: it runs at a few MB/s). --kib measures each of several buffer sizes
instead, each timed run calling the path over and over for ~64 MiB: below ~16 KiB the
Python call (~0.1-0.3 µs, more for ctypes.memmove) is a large part of what is measured.
"""
import argparse
import ctypes
import os
import statistics
import time

from odradek.client import native


def gbps(fn, nbytes, runs, calls=1):
    """Median throughput of `calls` calls of fn() over `runs` timed runs, after one warm-up
    call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append(time.perf_counter() - t0)
    return nbytes * calls / statistics.median(times) / 1e9


def measure(size, runs):
    """(crc32c, crc32c_sw, memmove) GB/s on a random buffer of `size` bytes."""
    src = bytearray(os.urandom(size))
    dst = bytearray(size)           # preallocated and touched: memmove measures copying only
    src_addr = ctypes.addressof((ctypes.c_char * size).from_buffer(src))
    dst_addr = ctypes.addressof((ctypes.c_char * size).from_buffer(dst))
    calls = max(1, (64 << 20) // size)
    assert native.crc32c(src) == native.crc32c_sw(src)
    return (gbps(lambda: native.crc32c(src), size, runs, calls),
            gbps(lambda: native.crc32c_sw(src), size, runs, calls),
            gbps(lambda: ctypes.memmove(dst_addr, src_addr, size), size, runs, calls))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="buffer size in MiB (default 64)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per path (default 5)")
    ap.add_argument("--kib", type=int, nargs="+", metavar="KIB",
                    help="buffer sizes in KiB, one line each (instead of --mib)")
    args = ap.parse_args()
    path = "sse4.2" if native.crc32c_hw_available() else "table"
    if args.kib:
        print(f"crc32c implementation={native.IMPLEMENTATION} path={path} runs={args.runs} "
              "(median)")
        for kib in args.kib:
            hw, sw, cp = measure(kib << 10, args.runs)
            print(f"  {kib:6d} KiB  crc32c {hw:7.2f} GB/s {hw / cp:5.2f}x memcpy   "
                  f"crc32c_sw {sw:6.2f} GB/s   memcpy {cp:7.2f} GB/s")
        return
    size = args.mib << 20
    if native.IMPLEMENTATION == "python":
        size = min(size, 1 << 20)   # the reference does a few MB/s
    hw, sw, cp = measure(size, args.runs)
    print(f"crc32c implementation={native.IMPLEMENTATION} buffer={size >> 20} MiB "
          f"runs={args.runs} (median)")
    print(f"  crc32c    ({path:6s}) {hw:7.2f} GB/s   {hw / cp:5.2f}x memcpy")
    print(f"  crc32c_sw (table ) {sw:7.2f} GB/s   {sw / cp:5.2f}x memcpy")
    print(f"  memcpy             {cp:7.2f} GB/s")
    print(f"  crc32c / crc32c_sw = {hw / sw:.1f}x")


if __name__ == "__main__":
    main()
