"""The reference point for the client benchmarks: the same workloads against Redis
Streams with redis-py over loopback TCP, so that odradek's figures can be read as a
ratio to a network broker measured in the same run (perf/compare.py does that).

    python perf/redis_streams.py produce --num-records 1000000 --record-size 100
    python perf/redis_streams.py produce --num-records 500000 --record-size 1024 --processes 2
    python perf/redis_streams.py consume --messages 500000 --record-size 1024
    python perf/redis_streams.py latency --num-records 50000 --rate 10000 --record-size 100

Each run starts its own redis-server (the Debian package's binary) on a free loopback
port with no persistence (--save '' --appendonly no) in a temp dir, waits (bounded) until
it answers PING, and stops it by pid at the end. One stream stands for one partition;
each record is one entry with one field, its value of --record-size random bytes (A-Z).

- produce: XADD pipelined (no MULTI), a pipeline sent when it holds --batch-bytes of
  values (default 65536, as batch.size=65536 for the odradek producer): the replies are
  the acks (acks=1). --processes 2: two producer processes on the same stream, each
  sending half; records/sec over the wall time of the slower one (as producer_perf.py).
- consume: fills the stream first (pipelined, untimed), then times one connection
  reading it from the start with XREAD COUNT 1000, counting the value bytes of each
  entry that redis-py decoded (as consumer_perf.py counts Record values).
- latency: as perf/end_to_end_latency.py: a consumer process blocks in XREAD (COUNT
  1000, BLOCK 500 ms) from the start of the empty stream and says it is ready; this
  process then XADDs one record at a time (no pipeline: linger.ms=0) paced at --rate
  (record i due at start + i/rate, time.sleep when ahead), each value starting with
  time.monotonic_ns() taken just before XADD; the consumer subtracts it from the time
  its XREAD returned. Printed in microseconds as end_to_end_latency.py prints them.

MB = 2**20 bytes, as the odradek perf tools count. --json adds one JSON line with the
figures at the end of stdout. Needs redis-server (`apt-get install -y redis-server`)
and redis-py (`pip install redis`); `make perf-deps` installs both. A benchmark, not a
test.
"""
import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array

from _broker import MB, join_or_terminate, log, percentile, run, paced, stop_process, with_reader_process

HOST = "127.0.0.1"
KEY = "perf"
FIELD = b"v"
READ_COUNT = 1000
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 600.0
STAMP = struct.Struct("<q")


def require_redis():
    """Refuse in one line (exit status 2) when redis-server or redis-py is missing."""
    server = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        redis = None
    missing = [what for what, ok in (("redis-server (apt-get install -y redis-server)", server),
                                     (f"redis-py ({sys.executable} -m pip install 'redis[hiredis]')", redis)) if not ok]
    if missing:
        print(f"redis_streams.py: missing {' and '.join(missing)}; `make perf-deps` installs both",
              file=sys.stderr)
        sys.exit(2)
    return server


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server(binary):
    """Yield the port of a redis-server (`binary`) started here (see the module doc)."""
    import redis
    workdir = tempfile.mkdtemp(prefix="odradek-perf-redis-")
    port = free_port()
    with open(os.path.join(workdir, "redis.log"), "wb") as out:
        proc = subprocess.Popen([binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                                 "--dir", workdir, "--daemonize", "no"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                with open(os.path.join(workdir, "redis.log"), "rb") as f:
                    tail = f.read()[-1000:].decode(errors="replace")
                raise SystemExit(f"redis-server exited with status {proc.returncode} at start:\n{tail}")
            try:
                if redis.Redis(host=HOST, port=port, socket_timeout=2).ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"redis-server (pid {proc.pid}) did not answer within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure-Python (pip install hiredis: faster)"
        log(f"started redis-server (pid {proc.pid}) on {HOST}:{port}, no persistence, in {workdir}; "
            f"redis-py {redis.__version__} with the {parser} parser")
        yield port
    finally:
        stop_process(proc, STOP_TIMEOUT_S)
        shutil.rmtree(workdir, ignore_errors=True)


def connect(port):
    import redis
    return redis.Redis(host=HOST, port=port)


def payload(size):
    return bytes(random.choices(range(ord("A"), ord("Z") + 1), k=size))


def xadd_pipelined(client, num_records, value, batch_bytes):
    """XADD num_records entries, a pipeline of batch_bytes of values at a time."""
    per_batch = max(1, batch_bytes // len(value))
    pipe = client.pipeline(transaction=False)
    sent = 0
    while sent < num_records:
        n = min(per_batch, num_records - sent)
        for _ in range(n):
            pipe.xadd(KEY, {FIELD: value})
        pipe.execute()
        sent += n
    return sent


# -- produce ------------------------------------------------------------------------------------

def produce_once(port, num_records, record_size, batch_bytes):
    """(records, bytes, seconds), the connection set-up in the time as the Producer's is."""
    value = payload(record_size)
    t0 = time.perf_counter()
    client = connect(port)
    sent = xadd_pipelined(client, num_records, value, batch_bytes)
    elapsed = time.perf_counter() - t0
    client.close()
    return sent, sent * record_size, elapsed


def _producer_child(go, results, port, num_records, record_size, batch_bytes):
    try:
        results.put(("ready", None))
        if go.wait(READY_TIMEOUT_S):
            results.put(("done", produce_once(port, num_records, record_size, batch_bytes)))
    except BaseException as e:     # report, don't hang the parent
        results.put(("failed", f"{type(e).__name__}: {e}"))


def produce_processes(n, port, num_records, record_size, batch_bytes):
    ctx = mp.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    shares = [num_records // n + (1 if i < num_records % n else 0) for i in range(n)]
    procs = [ctx.Process(target=_producer_child, args=(go, results, port, shares[i], record_size, batch_bytes),
                         daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    try:
        done, ready = [], 0
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(done) < n:
            try:
                kind, res = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit("the redis producer processes did not finish in time") from None
            if kind == "failed":
                raise SystemExit(f"a redis producer process failed: {res}")
            if kind == "ready":
                ready += 1
                if ready == n:
                    go.set()
                    deadline = time.monotonic() + RUN_TIMEOUT_S
            else:
                done.append(res)
    finally:
        join_or_terminate(procs)
    return sum(d[0] for d in done), sum(d[1] for d in done), max(d[2] for d in done)


def cmd_produce(args, port):
    if args.processes == 1:
        records, nbytes, seconds = produce_once(port, args.num_records, args.record_size, args.batch_bytes)
    else:
        records, nbytes, seconds = produce_processes(args.processes, port, args.num_records, args.record_size,
                                                     args.batch_bytes)
    s = max(seconds, 1e-9)
    print(f"{records} records sent, {records / s:.1f} records/sec ({nbytes / MB / s:.2f} MB/sec) "
          f"with XADD pipelined {max(1, args.batch_bytes // args.record_size)} at a time, "
          f"{args.processes} process{'es' if args.processes > 1 else ''}", flush=True)
    return {"records": records, "rps": records / s, "mbps": nbytes / MB / s, "seconds": seconds}


# -- consume ------------------------------------------------------------------------------------

def cmd_consume(args, port):
    client = connect(port)
    t0 = time.perf_counter()
    xadd_pipelined(client, args.messages, payload(args.record_size), args.batch_bytes)
    log(f"filled the stream with {args.messages} records of {args.record_size} B in "
        f"{time.perf_counter() - t0:.1f} s")
    client.close()
    records = nbytes = 0
    t0 = time.perf_counter()
    client = connect(port)
    last = b"0-0"
    while records < args.messages:
        reply = client.xread({KEY: last}, count=READ_COUNT)
        if not reply:
            break
        entries = reply[0][1]
        for _id, fields in entries:
            nbytes += len(fields[FIELD])
        records += len(entries)
        last = entries[-1][0]
    elapsed = max(time.perf_counter() - t0, 1e-9)
    client.close()
    print(f"{records} records read, {records / elapsed:.1f} records/sec ({nbytes / MB / elapsed:.2f} MB/sec) "
          f"with XREAD COUNT {READ_COUNT}", flush=True)
    if records < args.messages:
        raise SystemExit(f"read only {records} of {args.messages} records")
    return {"records": records, "rps": records / elapsed, "mbps": nbytes / MB / elapsed, "seconds": elapsed}


# -- latency ------------------------------------------------------------------------------------

def latency_consumer(conn, port, num_records):
    """Block in XREAD from the start of the stream; send back (receive - send) ns per record."""
    try:
        client = connect(port)
        client.ping()
        conn.send(("ready", None))
        latencies = array("q")
        now = time.monotonic_ns
        unpack = STAMP.unpack_from
        last_id = b"0-0"
        last = time.monotonic()
        while len(latencies) < num_records:
            reply = client.xread({KEY: last_id}, count=READ_COUNT, block=500)
            t = now()
            if not reply:
                if time.monotonic() - last > IDLE_TIMEOUT_S:
                    break
                continue
            last = time.monotonic()
            entries = reply[0][1]
            for _id, fields in entries:
                latencies.append(t - unpack(fields[FIELD])[0])
            last_id = entries[-1][0]
        client.close()
        conn.send(("done", latencies.tobytes()))
    except BaseException as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))


def produce_paced(port, num_records, rate, record_size):
    """XADD one record at a time at `rate` records/s; seconds from first to last send."""
    client = connect(port)
    buf = bytearray(b"x" * record_size)
    now = time.monotonic_ns
    pack = STAMP.pack_into
    start = now()
    for _ in paced(num_records, rate):
        pack(buf, 0, now())
        client.xadd(KEY, {FIELD: bytes(buf)})
    sent = (now() - start) / 1e9
    client.close()
    return sent


def cmd_latency(args, port):
    sent, payload_ = with_reader_process(
        latency_consumer, (port, args.num_records),
        lambda: produce_paced(port, args.num_records, args.rate, args.record_size),
        READY_TIMEOUT_S, IDLE_TIMEOUT_S + 30 + args.num_records / args.rate)
    lat = array("q")
    lat.frombytes(payload_)
    lat = sorted(lat)
    achieved = args.num_records / sent if sent > 0 else float("inf")
    print(f"{args.num_records} records of {args.record_size} B sent at {achieved:.1f} records/s "
          f"(target {args.rate:.0f}) with XADD one at a time; {len(lat)} received")
    if len(lat) < args.num_records:
        raise SystemExit(f"lost: {args.num_records - len(lat)} records were not received")
    us = 1e3
    figures = {"avg": sum(lat) / len(lat) / us, "p50": percentile(lat, 0.5) / us, "p99": percentile(lat, 0.99) / us,
               "p999": percentile(lat, 0.999) / us, "max": lat[-1] / us, "rate": achieved}
    print(f"end-to-end latency: avg {figures['avg']:.1f} us, p50 {figures['p50']:.1f} us, "
          f"p99 {figures['p99']:.1f} us, p99.9 {figures['p999']:.1f} us, max {figures['max']:.1f} us")
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    sub = ap.add_subparsers(dest="workload", required=True)
    p = sub.add_parser("produce", help="XADD pipelined: records/sec and MB/sec")
    p.add_argument("--num-records", type=int, required=True)
    p.add_argument("--record-size", type=int, required=True)
    p.add_argument("--processes", type=int, default=1, choices=[1, 2])
    p.add_argument("--batch-bytes", type=int, default=65536, help="value bytes per pipeline (default 65536)")
    c = sub.add_parser("consume", help="fill, then XREAD from the start: records/sec and MB/sec")
    c.add_argument("--messages", type=int, required=True)
    c.add_argument("--record-size", type=int, default=100)
    c.add_argument("--batch-bytes", type=int, default=65536, help="value bytes per pipeline when filling")
    lt = sub.add_parser("latency", help="paced XADD, XREAD BLOCK in another process: microseconds")
    lt.add_argument("--num-records", type=int, default=50000)
    lt.add_argument("--rate", type=float, default=10000)
    lt.add_argument("--record-size", type=int, default=100)
    args = ap.parse_args()
    counts = [getattr(args, k) for k in ("num_records", "messages", "record_size", "batch_bytes") if hasattr(args, k)]
    if min(counts) < 1:
        ap.error("counts and sizes must be at least 1")
    if args.workload == "latency" and (args.record_size < STAMP.size or args.rate <= 0):
        ap.error(f"--record-size must be at least {STAMP.size} and --rate positive")
    with redis_server(require_redis()) as port:
        figures = {"produce": cmd_produce, "consume": cmd_consume, "latency": cmd_latency}[args.workload](args, port)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    run(main)
