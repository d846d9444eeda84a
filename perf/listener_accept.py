"""What the Kafka listener's door costs a new connection: connect, one ApiVersions, close,
through the broker's own listener, with the peer uid check (auth.py: a sock_diag
lookup per connection) on and off, and with IDLE other connections open.

    python perf/listener_accept.py
    python perf/listener_accept.py --connections 300 --idle 500 --runs 3

Each run starts one broker per setting (dev mode in a temp dir, an ephemeral port) and
interleaves the settings; printed: the median over runs of each setting's median
microseconds per connection, and its ratio to the check off.
"""
import argparse
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

APIVERSIONS_V0 = struct.pack(">hhih", 18, 0, 1, 1) + b"p"


def start(data_dir, uid_check):
    err = open(os.path.join(os.path.dirname(data_dir), f"{os.path.basename(data_dir)}.err"), "wb+")
    proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.cli", "serve", "--data-dir", data_dir,
                             "--override", "listeners=PLAINTEXT://127.0.0.1:0",
                             "--override", f"listener.peer.uid.check={str(uid_check).lower()}",
                             "--override", "max.connections=5000"], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        err.seek(0)
        text = err.read().decode(errors="replace")
        m = re.search(r"bootstrap\.servers=\S+:(\d+)", text)
        if m and "serving Kafka clients" in text:
            return proc, int(m.group(1))
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the broker did not start: {text[-2000:]}")


def one(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(struct.pack(">i", len(APIVERSIONS_V0)) + APIVERSIONS_V0)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        s.recv(size, socket.MSG_WAITALL)


def measure(port, connections, idle):
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    try:
        for _ in range(20):
            one(port)
        times = []
        for _ in range(connections):
            t = time.perf_counter_ns()
            one(port)
            times.append((time.perf_counter_ns() - t) / 1000)
        return statistics.median(times)
    finally:
        for s in held:
            s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    settings = [(check, idle) for check in (False, True) for idle in (0, args.idle)]
    results = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        brokers = {check: start(os.path.join(tmp, f"check-{check}"), check) for check in (False, True)}
        try:
            for _ in range(args.runs):
                for check, idle in settings:
                    results[(check, idle)].append(measure(brokers[check][1], args.connections, idle))
        finally:
            for proc, _ in brokers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.connections} connections per run, {args.runs} runs")
    for check, idle in settings:
        med = statistics.median(results[(check, idle)])
        base = statistics.median(results[(False, idle)])
        print(f"uid check {'on ' if check else 'off'}  {idle:4d} other connections open: {med:8.0f} us per "
              f"connect+ApiVersions+close  ({med / base:.2f}x the check off)")


if __name__ == "__main__":
    main()
