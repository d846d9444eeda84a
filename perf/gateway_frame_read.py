"""How fast the gateway's connection reads request frames (server.Connection._read_frame, frames.py)
over a Unix socketpair, against the way it read them before (chunks of READ_CHUNK, then
one join into bytes), in the same run, as a ratio.

    .venv/bin/python perf/gateway_frame_read.py [--runs 5]

One line per frame size: MB/s of each (the median of --runs runs) and new/old. No broker.
"""
import argparse
import socket
import statistics
import struct
import threading
import time

from odradek.daemon.gateway import frames as frames_mod, server
from odradek.daemon.gateway.broker_link import BrokerLinks

SIZES = [(1 << 10, 50_000), (16 << 10, 20_000), (1 << 20, 1_000), (4 << 20, 250)]   # (bytes, frames)


def chunks_then_join(sock, n):
    """The reference: the read before this benchmark's change."""
    chunks = []
    while n > 0:
        chunk = bytearray(min(n, frames_mod.READ_CHUNK))
        view, got = memoryview(chunk), 0
        while got < len(chunk):
            k = sock.recv_into(view[got:])
            if k == 0:
                return None
            got += k
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def mb_per_s(size, frames, current):
    ours, theirs = socket.socketpair()
    listen = socket.create_server(("127.0.0.1", 0))
    conn = server.Connection(server.Gateway(listen, BrokerLinks("/nonexistent")), ours, ("bench", 0))
    data = struct.pack(">i", size) + bytes(size)
    sender = threading.Thread(target=lambda: [theirs.sendall(data) for _ in range(frames)])
    sender.start()
    start = time.perf_counter()
    for _ in range(frames):
        if current:
            conn._read_frame()
        else:
            chunks_then_join(ours, struct.unpack(">i", chunks_then_join(ours, 4))[0])
    elapsed = time.perf_counter() - start
    sender.join()
    for s in (ours, theirs, listen):
        s.close()
    return frames * size / elapsed / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for size, frames in SIZES:
        runs = {False: [], True: []}
        for _ in range(args.runs):
            for current in (False, True):
                runs[current].append(mb_per_s(size, frames, current))
        old, new = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"{size >> 10:6d} KiB frames: before {old:7.0f} MB/s  now {new:7.0f} MB/s  now/before {new / old:.2f}")


if __name__ == "__main__":
    main()
