"""How cheap is a worker? Start a broker, create one topic with N partitions (one worker
process each), and report the time until every worker answers, the processes, and the
memory per worker: RSS (shared pages counted in each) and USS (pages only it holds, what
a worker really costs; copy-on-write from the pre-imported broker keeps it small).
Also what the partition limits (max.partitions, daemon/broker/limits.py) are derived
from: the drop of MemAvailable per worker (USS plus shared memory, page tables and
kernel stacks), the broker's file descriptors per partition, and each worker's threads.
Then the time for a broker restart to bring the same N partitions back.

    .venv/bin/python perf/broker_start.py --partitions 1000

A benchmark, not a test: it uses only the public Admin client and the `odradek serve`
command, on a temp dir, and stops what it started.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from odradek.client import Admin


def wait_socket(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"broker exited with {proc.returncode}")
        try:
            with Admin(path, timeout=5) as admin:
                admin.list_topics()
            return
        except Exception:
            time.sleep(0.01)
    raise SystemExit("broker did not answer")


def wait_workers(path, n, timeout=600):
    deadline = time.monotonic() + timeout
    with Admin(path, timeout=60) as admin:
        while time.monotonic() < deadline:
            st = admin.status()
            # the topic's own workers: __consumer_offsets has one too
            running = sum(1 for w in st.workers if w.topic == "perf" and w.state == "running" and w.pid)
            answered = sum(1 for p in st.partitions if p.topic == "perf" and p.log_end_offset >= 0)
            if running == n and answered == n:
                return st
            time.sleep(0.05)
    raise SystemExit("workers did not all start")


def mem_available():
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def start(data_dir):
    return subprocess.Popen([sys.executable, "-m", "odradek.daemon.cli", "serve", "--data-dir", data_dir,
                             "--log-level", "warning", "--override", "listeners="],   # no Kafka listener
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: perf/broker_start.py --partitions 1000")
    ap.add_argument("--partitions", type=int, default=1000)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="odradek-perf-")
    data = os.path.join(base, "data")
    sock = os.path.join(data, "odradek.sock")
    proc = start(data)
    try:
        wait_socket(sock, proc)
        broker = psutil.Process(proc.pid)
        fds0, avail0 = broker.num_fds(), mem_available()
        t0 = time.perf_counter()
        with Admin(sock, timeout=600) as admin:
            admin.create_topic("perf", args.partitions)
        created = time.perf_counter() - t0
        wait_workers(sock, args.partitions)
        all_up = time.perf_counter() - t0
        kids = broker.children()
        rss = [k.memory_full_info().rss for k in kids]
        uss = [k.memory_full_info().uss for k in kids]
        b = broker.memory_full_info()
        avail_drop = (avail0 - mem_available()) / args.partitions
        fds = statistics.median(k.num_fds() for k in kids)
        threads = statistics.median(k.num_threads() for k in kids)
        print(f"partitions={args.partitions} processes={len(kids) + 1} (broker + {len(kids)} workers)")
        print(f"create topic answered in {created * 1000:.0f} ms; every worker answering after "
              f"{all_up:.2f} s ({all_up / args.partitions * 1000:.2f} ms per partition)")
        print(f"worker RSS median {statistics.median(rss) / 2**20:.1f} MiB, USS median "
              f"{statistics.median(uss) / 2**20:.2f} MiB (total USS {sum(uss) / 2**20:.0f} MiB); "
              f"broker RSS {b.rss / 2**20:.1f} MiB")
        print(f"MemAvailable dropped {avail_drop / 2**20:.2f} MiB per partition; broker fds "
              f"{(broker.num_fds() - fds0) / args.partitions:.2f} per partition; worker fds median {fds:.0f}, "
              f"threads median {threads:.0f}")
        proc.send_signal(signal.SIGTERM)
        t1 = time.perf_counter()
        proc.wait(600)
        stopped = time.perf_counter() - t1
        proc = start(data)
        t2 = time.perf_counter()
        wait_socket(sock, proc)
        wait_workers(sock, args.partitions)
        print(f"clean stop {stopped:.2f} s; restart to all {args.partitions} partitions recovered and "
              f"answering {time.perf_counter() - t2:.2f} s")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(600)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
