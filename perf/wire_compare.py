"""Issue 13's figures: odradek through its Kafka listener against a real Apache Kafka broker on
the same machine, with the same clients, in one run; and odradek's shared-memory clients
beside both.

    python perf/wire_compare.py                    # 3 interleaved runs of everything
    python perf/wire_compare.py --runs 1 --scale 0.1 --skip java
    python perf/wire_compare.py --kafka-bootstrap 127.0.0.1:19092   # a Kafka already running

Brokers: odradek, a throwaway broker on a temp dir with its own listener (port 0); Apache Kafka, single
node (KRaft), started and stopped here with shared/tools/kafka-peer/start.sh and stop.sh
(their setup.sh assembles it from Maven Central once; JDK 17), unless --kafka-bootstrap.
Both keep their data under the same --data-root (default /var/tmp), one partition per topic,
a new topic per workload and run. Each broker runs in a session of its own (start.sh starts
Kafka with setsid; odradek's is started with start_new_session), as a service would: with
the kernel's autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled, on by default)
each session is a group that shares the CPUs fairly with the others, so a broker left in
this script's session competes, thread by thread, with the very clients loading it, while
the other gets a group's share. Until 2026-12-07 odradek's did, and Kafka's
ProducerPerformance ran at 0.86x on it (4 rounds interleaved, 70-77 MB/s against 83-89);
in a session of its own 0.98x and 1.00x (two such sets of rounds), and 0.94x and 0.95x in
this script's two invocations after.

Workloads, each through both brokers (MB = 2**20 bytes, as Kafka's tools count):
  ck_produce_1k, ck_consume_1k    confluent-kafka: 200,000 x 1 KiB, acks=1 linger.ms=5
                                  batch.size=65536; then read back from the beginning
                                  (fetch.queue.backoff.ms=1, see below)
  ck_produce_100, ck_consume_100  the same with 1,000,000 x 100 B
  ck_replay_small                 confluent-kafka reading from the beginning a log of 100,000
                                  one-record batches of 100 B (as a producer at a low rate
                                  leaves it; written untimed with linger.ms=0 and
                                  batch.num.messages=1): a consumer replaying history
  ck_latency                      end to end, producer (linger.ms=0, acks=1) at 2,000 records/s
                                  for 20,000 records of 100 B, a consumer in another process
                                  (fetch.wait.max.ms=100), both warmed up by one untimed record;
                                  p50 and p99 in ms (the consumer's clock minus the producer's
                                  stamp in the value, CLOCK_MONOTONIC)
  ck_roundtrip                    one 100 B record at a time, as Kafka's EndToEndLatency tool:
                                  produce, flush (acks=1), poll until consumed; 2,000 records,
                                  p50 and p99 in ms
  java_produce_1k, java_consume_1k   Kafka's ProducerPerformance / ConsumerPerformance
                                  (kafka-producer-perf-test / kafka-consumer-perf-test), 200,000 x
                                  1 KiB, acks=1 linger.ms=5 batch.size=65536 (.cache/interop/java:
                                  `make interop-tools`)
and odradek's own shared-memory clients on the same odradek broker (perf/producer_perf.py and
consumer_perf.py, the same counts and producer settings): shm_produce_1k, shm_consume_1k,
shm_produce_100, shm_consume_100. No producer runs a Python callback per record:
confluent-kafka reports errors only (delivery.report.only.error), odradek's Producer calls
back for every 1,000th record (producer_perf.py --latency-every 1000).

The consumers set librdkafka's fetch.queue.backoff.ms to 1 (default 1000): whenever its queue
holds queued.min.messages (100,000), librdkafka stops fetching for that long, so with the default
a read of 1,000,000 records of 100 B takes ~6 s on either broker, most of it the client asleep
(~1.3 s of its CPU), and the figure is a count of those backoffs, not of what a broker does.

Before each workload, untimed, sync(2) writes back every dirty page on the machine
(--no-sync: not): otherwise a workload pays for the writeback of what the ones before it
wrote (a few hundred MB, on whichever broker), flushed while it runs by the kernel's threads on
the same cores, and its figure depends on the order of the workloads more than on the broker.

--scale multiplies every count. The runs interleave (odradek, Kafka, odradek, ...); the table
shows medians, and the ratios odradek/Kafka (above 1 is better for throughput, below 1 for
latency) and shm/TCP for odradek's clients. Progress (each workload's figure as it ends)
goes to stderr, the table to stdout.
A benchmark, not a test.
"""
import argparse
import contextlib
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER = os.path.join(os.path.dirname(ROOT), "shared", "tools", "kafka-peer")
JAVA_LIBS = os.path.join(ROOT, ".cache", "interop", "java")
MB = 1024 * 1024
PRODUCER = {"acks": 1, "linger.ms": 5, "batch.size": 65536, "compression.type": "none"}
STAMP = struct.Struct(">d")
# The Kafka peer's start.sh sets group.initial.rebalance.delay.ms=0 (as Kafka's own
# config/server.properties does for development); odradek gets the same, else every group
# consumer (ConsumerPerformance) waits 3 s more to join. Its listener is the broker's own, on
# an ephemeral loopback port.
ODRADEK_OVERRIDES = ("group.initial.rebalance.delay.ms=0", "listeners=PLAINTEXT://127.0.0.1:0")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- brokers ------------------------------------------------------------------------------

@contextlib.contextmanager
def odradek_broker(data_root):
    """(bootstrap, control socket) of a throwaway odradek broker with its Kafka listener on an
    ephemeral loopback port (learnt from the broker's status), as `make run` serves it."""
    from odradek.client import Admin
    data = tempfile.mkdtemp(prefix="odradek-wire-", dir=data_root)
    sock = os.path.join(data, "odradek.sock")
    err = open(os.path.join(data, "broker.err"), "wb")
    broker = subprocess.Popen([sys.executable, "-m", "odradek.daemon.cli", "serve", "--data-dir", data,
                               "--log-level", "warning", *[a for kv in ODRADEK_OVERRIDES for a in ("--override", kv)]],
                              stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        _wait(lambda: os.path.exists(sock), 60, "the odradek broker's socket")

        def listening():
            try:
                with Admin(sock, timeout=5) as admin:
                    rows = admin.status().listeners
            except Exception:
                return None
            return rows and rows[0].pid and rows[0].address
        bootstrap = _wait(listening, 60, "the broker's Kafka listener")
        _wait(lambda: _answers(bootstrap), 60, "the listener to answer")
        yield bootstrap, sock
    finally:
        if broker.poll() is None:
            broker.send_signal(signal.SIGTERM)
            try:
                broker.wait(60)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()
        err.close()
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def kafka_broker(data_root, bootstrap=None, port=19392):
    """bootstrap of an Apache Kafka broker: `bootstrap` if given, else one started here."""
    if bootstrap:
        yield bootstrap
        return
    data = tempfile.mkdtemp(prefix="kafka-wire-", dir=data_root)
    subprocess.run([os.path.join(PEER, "setup.sh")], check=True, stdout=sys.stderr)
    subprocess.run([os.path.join(PEER, "start.sh"), data, str(port)], check=True, stdout=sys.stderr)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([os.path.join(PEER, "stop.sh"), str(port)], stdout=sys.stderr)
        shutil.rmtree(data, ignore_errors=True)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _answers(bootstrap):
    from confluent_kafka.admin import AdminClient
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
        return True
    except Exception:
        return False


def new_topic(bootstrap):
    from confluent_kafka.admin import AdminClient, NewTopic
    name = f"wire-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=30)[name].result(timeout=60)
    _wait(lambda: (t := admin.list_topics(name, timeout=10).topics.get(name)) and not t.error
          and all(p.leader >= 0 for p in t.partitions.values()), 30, f"a leader for {name}")
    return name


# ---- confluent-kafka workloads ------------------------------------------------------------

def ck_produce(bootstrap, topic, n, size):
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, **PRODUCER, "queue.buffering.max.messages": 1_000_000,
                  "queue.buffering.max.kbytes": 1_048_576, "delivery.report.only.error": True,
                  "on_delivery": lambda err, msg: errors.append(err)})
    t0 = time.perf_counter()
    _send(p, topic, os.urandom(size), n, 1024)
    left = p.flush(300)
    wall = time.perf_counter() - t0
    if left or errors:
        raise RuntimeError(f"{left} undelivered, {len(errors)} errors, first {errors[:1]}")
    return n * size / MB / wall


def _send(p, topic, value, n, poll_every):
    """`n` produce() calls of `value` on confluent-kafka Producer `p`, waiting while its
    queue is full, serving its callbacks every `poll_every` (a power of 2) records."""
    for i in range(n):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.005)
        if not i & (poll_every - 1):
            p.poll(0)


def ck_fill_one_record_batches(bootstrap, topic, n, size=100):
    """`n` records of `size` B, each its own batch (linger.ms=0, batch.num.messages=1);
    untimed: ck_replay_small reads them."""
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 0, "batch.num.messages": 1,
                  "delivery.report.only.error": True, "on_delivery": lambda err, msg: errors.append(err)})
    _send(p, topic, os.urandom(size), n, 256)
    if p.flush(300) or errors:
        raise RuntimeError(f"filling {topic} failed: {errors[:1]}")


def ck_consume(bootstrap, topic, n):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wire-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800, "fetch.queue.backoff.ms": 1})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = nbytes = 0
    t0 = time.perf_counter()
    deadline = t0 + 300
    while got < n and time.perf_counter() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error() is None:
                got += 1
                nbytes += len(m.value())
    wall = time.perf_counter() - t0
    c.close()
    if got < n:
        raise RuntimeError(f"read {got} of {n}")
    return nbytes / MB / wall


WARMUP = -1.0      # the stamp of a record that is not timed


def _latency_consumer(bootstrap, topic, n, ready, out):
    """ck_latency's consumer, a process of its own. It reads the producer's warm-up record
    first, so that its connection, fetch position and long poll are up before anything is
    timed (as EndToEndLatency's seekToEnd + position()), says so, then times `n` records:
    its clock minus the stamp, both CLOCK_MONOTONIC (one clock for every process of the
    host, and no NTP steps)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wire-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    lat, deadline = [], time.monotonic() + 300
    while len(lat) < n and time.monotonic() < deadline:
        m = c.poll(0.2)        # not consume(k, t): it waits for k records or t, batching the times
        if m is None or m.error() is not None:
            continue
        now = time.monotonic()
        stamp = STAMP.unpack_from(m.value())[0]
        if stamp == WARMUP:
            ready.set()
        else:
            lat.append((now - stamp) * 1000)
    c.close()
    out.put(lat)


def _percentiles(lat, n, what):
    if len(lat) < n:
        raise RuntimeError(f"{what}: {len(lat)} of {n} records arrived")
    lat = sorted(lat)
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


def ck_latency(bootstrap, topic, n, rate, size=100):
    """A steady stream: `rate` records/s on a fixed schedule (a producer that fell behind
    catches up, so a stall is not hidden by sending later), each stamped as it is handed
    to produce(); the consumer is up before the first timed record (_latency_consumer)."""
    from confluent_kafka import Producer
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_latency_consumer, args=(bootstrap, topic, n, ready, out))
    child.start()
    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 0})
    pad = b"\0" * (size - STAMP.size)
    p.produce(topic, STAMP.pack(WARMUP) + pad)
    p.flush(60)
    if not ready.wait(120):
        child.kill()
        raise RuntimeError("the latency consumer did not read the warm-up record")
    t0 = time.monotonic()
    for i in range(n):
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        p.produce(topic, STAMP.pack(time.monotonic()) + pad)
        p.poll(0)
    p.flush(60)
    lat = out.get(timeout=400)
    child.join(60)
    return _percentiles(lat, n, "latency")


def ck_roundtrip(bootstrap, topic, n, size=100):
    """One record at a time, as Kafka's EndToEndLatency: produce, flush (acks=1), then poll
    until the consumer (same process, long poll fetch.wait.max.ms=100) has it; the time of
    the whole. After one untimed record (connections, fetch position)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 0})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wire-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    value = b"\0" * size
    lat = []
    try:
        for i in range(n + 1):
            t0 = time.monotonic()
            p.produce(topic, value)
            p.flush(30)
            deadline = t0 + 30
            while time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is not None and m.error() is None:
                    break
            else:
                raise RuntimeError(f"roundtrip: record {i} did not arrive")
            if i:
                lat.append((time.monotonic() - t0) * 1000)
    finally:
        c.close()
    return _percentiles(lat, n, "roundtrip")


# ---- Kafka's Java tools --------------------------------------------------------------------

def _java(*args):
    out = subprocess.run(["java", "-Xmx512m", "-cp", os.path.join(JAVA_LIBS, "*"), *args],
                         capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"{args[0]} failed: {out.stderr[-1500:]}")
    return out.stdout


def java_produce(bootstrap, topic, n, size):
    out = _java("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(n),
                "--record-size", str(size), "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
                *[f"{k}={v}" for k, v in PRODUCER.items()])
    m = re.findall(r"records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)", out)
    return float(m[-1][1])


def java_consume(bootstrap, topic, n):
    out = _java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
                "--messages", str(n), "--timeout", "60000")
    rows = [line for line in out.splitlines() if line.strip()]
    head = next(i for i, line in enumerate(rows) if line.startswith("start.time"))
    fields = dict(zip([h.strip() for h in rows[head].split(",")], [v.strip() for v in rows[head + 1].split(",")]))
    return float(fields["MB.sec"])


# ---- odradek's shared-memory clients ---------------------------------------------------------

def _perf(script, *args):
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(f"{script} failed: {out.stderr[-1500:]}")
    return out.stdout


def shm_produce(sock, n, size):
    out = _perf("producer_perf.py", "--socket", sock, "--partitions", "1", "--num-records", str(n),
                "--record-size", str(size), "--latency-every", "1000",
                "--producer-props", *[f"{k}={v}" for k, v in PRODUCER.items()])
    return float(re.findall(r"records/sec \(([\d.]+) MB/sec\)", out)[-1])


def shm_consume(sock, n, size):
    out = _perf("consumer_perf.py", "--socket", sock, "--num-partitions", "1", "--messages", str(n),
                "--record-size", str(size))
    row = [line for line in out.splitlines() if re.match(r"\d{4}-", line)][-1]
    return float(row.split(",")[3])


# ---- one run, the table ----------------------------------------------------------------------

def run_once(bootstrap, sock, args, skip):
    s = lambda x: max(1000, int(x * args.scale))    # noqa: E731
    res = {}

    def step(name, fn, *a):
        if args.sync:
            os.sync()   # the page cache's dirty pages of the steps before are written back first
        try:
            res[name] = fn(*a)
        except Exception as e:     # one failed workload is reported, the others still run
            log(f"  {name} failed: {e}")
            return
        log(f"  {name}: {res[name]:.1f}" if isinstance(res[name], float) else f"  {name}: {res[name]}")
    if "ck" not in skip:
        for size, n in ((1024, s(200_000)), (100, s(1_000_000))):
            tag = "1k" if size == 1024 else "100"
            t = new_topic(bootstrap)
            step(f"ck_produce_{tag}", ck_produce, bootstrap, t, n, size)
            step(f"ck_consume_{tag}", ck_consume, bootstrap, t, n)
        t = new_topic(bootstrap)
        ck_fill_one_record_batches(bootstrap, t, s(100_000))
        step("ck_replay_small", ck_consume, bootstrap, t, s(100_000))
    if "lat" not in skip:
        step("ck_latency", ck_latency, bootstrap, new_topic(bootstrap), s(20_000), args.rate)
        step("ck_roundtrip", ck_roundtrip, bootstrap, new_topic(bootstrap), s(2_000))
    if "java" not in skip and os.path.isdir(JAVA_LIBS):
        t = new_topic(bootstrap)
        step("java_produce_1k", java_produce, bootstrap, t, s(200_000), 1024)
        step("java_consume_1k", java_consume, bootstrap, t, s(200_000))
    if sock and "shm" not in skip:
        for size, n in ((1024, s(200_000)), (100, s(1_000_000))):
            tag = "1k" if size == 1024 else "100"
            step(f"shm_produce_{tag}", shm_produce, sock, n, size)
            step(f"shm_consume_{tag}", shm_consume, sock, n, size)
    return res


def median(values):
    return statistics.median(values) if values else None


def table(ours, theirs):
    def fmt(v):
        return "n/a" if v is None else (f"{v[0]:.2f} / {v[1]:.2f}" if isinstance(v, tuple) else f"{v:,.1f}")

    def med(runs, key):
        vals = [r[key] for r in runs if key in r]
        if vals and isinstance(vals[0], tuple):
            return tuple(statistics.median(v[i] for v in vals) for i in range(2))
        return median(vals)
    lines = ["| workload | odradek (TCP) | Apache Kafka | odradek/Kafka | odradek shm | shm/odradek TCP | shm/Kafka |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in ("ck_produce_1k", "ck_consume_1k", "ck_produce_100", "ck_consume_100", "ck_replay_small",
                "java_produce_1k",
                "java_consume_1k", "ck_latency", "ck_roundtrip"):
        o, k = med(ours, key), med(theirs, key)
        shm_key = key.replace("ck_", "shm_") if key.startswith(("ck_produce", "ck_consume")) else None
        sh = med(ours, shm_key) if shm_key else None
        if isinstance(o, tuple) and isinstance(k, tuple):
            ratio = f"{o[0] / k[0]:.2f} / {o[1] / k[1]:.2f}"
        else:
            ratio = f"{o / k:.2f}" if o and k else "n/a"
        unit = " (ms p50 / p99)" if key in ("ck_latency", "ck_roundtrip") else " (MB/s)"
        lines.append(f"| {key}{unit} | {fmt(o)} | {fmt(k)} | {ratio} | {fmt(sh)} | "
                     f"{f'{sh / o:.1f}x' if sh and o else 'n/a'} | {f'{sh / k:.1f}x' if sh and k else 'n/a'} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every record count")
    ap.add_argument("--rate", type=int, default=2000, help="records/s of the latency workload")
    ap.add_argument("--sync", action=argparse.BooleanOptionalAction, default=True,
                    help="sync(2) before each workload (default), so that none pays for the writeback of "
                         "the data the ones before it wrote")
    ap.add_argument("--skip", default="", help="comma list of: ck, lat, java, shm")
    ap.add_argument("--data-root", default="/var/tmp", help="where both brokers keep their data")
    ap.add_argument("--kafka-bootstrap", help="an Apache Kafka broker already running (default: start one)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    ours, theirs = [], []
    with odradek_broker(args.data_root) as (ob, sock), kafka_broker(args.data_root, args.kafka_bootstrap) as kb:
        for i in range(args.runs):
            log(f"run {i + 1} of {args.runs}: odradek at {ob}")
            ours.append(run_once(ob, sock, args, skip))
            log(f"run {i + 1} of {args.runs}: Apache Kafka at {kb}")
            theirs.append(run_once(kb, None, args, skip))
    load = os.getloadavg()
    print(f"median of {args.runs} interleaved runs, scale {args.scale}, load average {load[0]:.1f} {load[1]:.1f}")
    print(table(ours, theirs))


if __name__ == "__main__":
    main()
