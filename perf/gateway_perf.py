"""Produce and consume MB/s through the Kafka gateway (confluent-kafka over loopback TCP)
next to odradek's own shared-memory Producer and Consumer, in the same run.

    python perf/gateway_perf.py                       # 1 KiB and 100 B records, 3 runs each
    python perf/gateway_perf.py --sizes 1024 --records 200000 --runs 5

For each record size and each run, four timed legs, each on a fresh one-partition topic
(so every run starts cold the same way): confluent-kafka produces --records records
of random bytes through the gateway (acks=1, linger.ms=5, batch.size=1 MiB, until
flush() returns), then consumes them back with assign() from offset 0 (consume() in
batches of 1000, until the last one); odradek's Producer and Consumer do the same
through shared memory. MB/s is record bytes / 2**20 per second, as Kafka's tools count;
the gateway's CPU use during each TCP leg (user + system, in % of one core) is printed
beside it: where the TCP figures are bound by the client rather than the gateway.
Prints each run, then per size the median of the runs and the ratios shared memory /
TCP. With no --socket a throwaway broker is started (perf/_broker.py), and a gateway
beside it (`python -m odradek.daemon.gateway`), stopped at the end.

A benchmark, not a test: on a shared machine, compare the ratios of one run, and read
the absolute figures with the load average printed beside them.
"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer as CKConsumer, Producer as CKProducer, TopicPartition as CKTopicPartition

from _broker import MB, broker_socket, log, stop_process, topic
from odradek.client import Consumer, Producer, TopicPartition

START_TIMEOUT_S = 30
LEG_TIMEOUT_S = 300


def start_gateway(socket_path):
    """(process, bootstrap) of a gateway for the broker at socket_path, on a free port."""
    err = tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".err", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.gateway", "--socket", socket_path,
                             "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with open(err.name, errors="replace") as f:
            m = re.search(r"bootstrap\.servers=([\d.]+:\d+)", f.read())
        if m:
            return proc, m.group(1), err.name
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(proc, 10)
    raise SystemExit(f"the gateway did not start; its stderr is in {err.name}")


def values(size, count=256):
    rng = random.Random(size)
    return [bytes(rng.getrandbits(8) for _ in range(size)) for _ in range(count)]


def tcp_produce(bootstrap, name, n, vals):
    p = CKProducer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 5, "batch.size": 1 << 20,
                    "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1 << 20})
    k = len(vals)
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(name, vals[i % k], partition=0)
                break
            except BufferError:
                p.poll(0.001)
    if p.flush(LEG_TIMEOUT_S):
        raise SystemExit("confluent-kafka did not deliver every record")
    return time.perf_counter() - start


def tcp_consume(bootstrap, name, n):
    c = CKConsumer({"bootstrap.servers": bootstrap, "group.id": "gateway-perf", "enable.auto.commit": False,
                    "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 16 << 20})
    c.assign([CKTopicPartition(name, 0, 0)])
    got, deadline = 0, time.monotonic() + LEG_TIMEOUT_S
    start = time.perf_counter()
    while got < n and time.monotonic() < deadline:
        for msg in c.consume(1000, 1.0):
            if msg.error() is None:
                got += 1
    took = time.perf_counter() - start
    c.close()
    if got < n:
        raise SystemExit(f"confluent-kafka consumed {got} of {n} records")
    return took


def shm_produce(socket_path, name, n, vals):
    k = len(vals)
    with Producer({"socket": socket_path, "acks": 1, "linger.ms": 5, "batch.size": 1 << 20}) as p:
        p.attach(name)
        start = time.perf_counter()
        for i in range(n):
            p.produce(name, vals[i % k], partition=0)
        if p.flush(LEG_TIMEOUT_S):
            raise SystemExit("the Producer did not deliver every record")
        return time.perf_counter() - start


def shm_consume(socket_path, name, n):
    with Consumer({"socket": socket_path}) as c:
        c.assign([TopicPartition(name, 0, 0)])
        got, deadline = 0, time.monotonic() + LEG_TIMEOUT_S
        start = time.perf_counter()
        while got < n and time.monotonic() < deadline:
            got += len(c.consume(10_000, 1.0))
        took = time.perf_counter() - start
    if got < n:
        raise SystemExit(f"the Consumer consumed {got} of {n} records")
    return took


def cpu_seconds(pid):
    """User + system CPU seconds the process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(socket_path, bootstrap, gateway_pid, size, n):
    vals = values(size)
    mb = n * size / MB
    out = {}
    with topic(socket_path, partitions=1, prefix="gwperf") as name:
        cpu = cpu_seconds(gateway_pid)
        took = tcp_produce(bootstrap, name, n, vals)
        out["tcp produce"] = mb / took
        out["gateway CPU% produce"] = 100 * (cpu_seconds(gateway_pid) - cpu) / took
        cpu = cpu_seconds(gateway_pid)
        took = tcp_consume(bootstrap, name, n)
        out["tcp consume"] = mb / took
        out["gateway CPU% consume"] = 100 * (cpu_seconds(gateway_pid) - cpu) / took
    with topic(socket_path, partitions=1, prefix="gwperf") as name:
        out["shm produce"] = mb / shm_produce(socket_path, name, n, vals)
        out["shm consume"] = mb / shm_consume(socket_path, name, n)
    return out


def _figure(name, value):
    return f"{name} {value:.0f}" if "CPU" in name else f"{name} {value:.1f} MB/s"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", help="a running broker's socket (default: a throwaway broker)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 100], help="record sizes in bytes")
    ap.add_argument("--records", type=int, default=None,
                    help="records per leg (default: 100 MiB of 1 KiB records' worth, capped at 500000)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    with broker_socket(args.socket) as sock:
        gw, bootstrap, err_path = start_gateway(sock)
        try:
            log(f"gateway at {bootstrap} (pid {gw.pid}); load average {os.getloadavg()[0]:.2f}")
            for size in args.sizes:
                n = args.records or min(500_000, (100 * MB) // size)
                runs = []
                for r in range(args.runs):
                    res = one_run(sock, bootstrap, gw.pid, size, n)
                    runs.append(res)
                    print(f"size {size} B run {r + 1}: " + ", ".join(_figure(k, v) for k, v in res.items())
                          + f" (load {os.getloadavg()[0]:.2f})", flush=True)
                med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
                print(f"size {size} B, {n} records, median of {args.runs}: "
                      + ", ".join(_figure(k, v) for k, v in med.items()))
                print(f"size {size} B ratios shm/tcp: produce {med['shm produce'] / med['tcp produce']:.2f}x, "
                      f"consume {med['shm consume'] / med['tcp consume']:.2f}x", flush=True)
        finally:
            stop_process(gw, 20)
            os.unlink(err_path)


if __name__ == "__main__":
    main()
