"""How much CPU do an idle broker, its partition worker, an idle consumer and an idle
producer use? Measured while idle, and right after a burst (waiters that spin after
recent activity must stop spinning once it ends: client/shm/waiting.py).

    python perf/idle_cpu.py
    python perf/idle_cpu.py --seconds 10 --burst 200000

A throwaway broker (perf/_broker.py) gets a one-partition topic; a consumer process
assigns itself its end and consumes in a loop (consume(timeout=0.5)); this process
attaches a producer (one record, flushed). Then the CPU time (psutil: user + system) of
each process is taken over --seconds while nothing is produced ("idle"); then --burst
records are produced as fast as produce() goes and flushed, and the CPU is taken over
the next --seconds ("after a burst": the first of those seconds includes the consumer
finishing the burst). Printed as % of one core per process: the broker, each of its
workers (the partition's leader among them), the consumer, and this process (the
producer, its sender thread sleeping; the measuring loop sleeps too).

A benchmark, not a test (timing on a shared machine).
"""
import argparse
import multiprocessing as mp
import os
import time

import psutil

from _broker import broker_socket, log, run, topic

READY_TIMEOUT_S = 60.0


def consumer_process(conn, sock, name):
    """Assign at the end, say ready, consume until told to stop; report the count."""
    from odradek.client import OFFSET_END, Consumer, TopicPartition
    count = 0
    with Consumer({"socket": sock, "auto.offset.reset": "latest"}) as consumer:
        consumer.assign([TopicPartition(name, 0, OFFSET_END)])
        consumer.position([TopicPartition(name, 0)])
        conn.send(os.getpid())
        while not conn.poll():
            count += len(consumer.consume(num_messages=1000, timeout=0.5))
    conn.send(count)


def cpu_seconds(procs):
    out = {}
    for label, p in procs.items():
        try:
            t = p.cpu_times()
            out[label] = t.user + t.system
        except psutil.Error:
            out[label] = None
    return out


def measure(procs, seconds):
    """% of one core per process over the next `seconds`."""
    before, t0 = cpu_seconds(procs), time.monotonic()
    time.sleep(seconds)
    after, wall = cpu_seconds(procs), time.monotonic() - t0
    return {k: (None if before[k] is None or after[k] is None else 100 * (after[k] - before[k]) / wall)
            for k in procs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each window (default 5)")
    ap.add_argument("--burst", type=int, default=100000, help="records in the burst (default 100000)")
    ap.add_argument("--record-size", type=int, default=100)
    args = ap.parse_args()
    from odradek.client import Producer
    with broker_socket() as sock, topic(sock, None, 1, "perf-idle") as name:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=consumer_process, args=(child, sock, name), daemon=True)
        proc.start()
        try:
            if not parent.poll(READY_TIMEOUT_S):
                raise SystemExit("the consumer process did not get ready")
            consumer_pid = parent.recv()
            producer = Producer({"socket": sock, "linger.ms": 0})
            try:
                producer.produce(name, b"attach", partition=0)
                producer.flush(30)
                me = psutil.Process()
                daemon = [p for p in me.children() if "odradek.daemon.cli" in " ".join(p.cmdline())]
                procs = {}
                for broker in daemon:
                    procs[f"broker {broker.pid}"] = broker
                    for w in broker.children(recursive=True):
                        procs[f"  worker {w.pid}"] = w
                procs[f"consumer {consumer_pid}"] = psutil.Process(consumer_pid)
                procs[f"producer {me.pid} (this process)"] = me
                time.sleep(1.0)     # settle: the attach and its first fetches are over
                idle = measure(procs, args.seconds)
                value = b"x" * args.record_size
                t0 = time.monotonic()
                for _ in range(args.burst):
                    producer.produce(name, value, partition=0)
                producer.flush(120)
                log(f"burst: {args.burst} records in {time.monotonic() - t0:.2f} s")
                after = measure(procs, args.seconds)
            finally:
                producer.close(timeout=5)
            parent.send("stop")
            got = parent.recv() if parent.poll(30) else None
        finally:
            if proc.is_alive():
                proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
    print(f"CPU, % of one core, over {args.seconds:.0f} s windows (consumer received {got} records):")
    print(f"{'process':<34} {'idle':>8} {'after a burst':>14}")
    for label in procs:
        print(f"{label:<34} {_percent(idle[label]):>8} {_percent(after[label]):>14}")


def _percent(value):
    return "gone" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    run(main)
