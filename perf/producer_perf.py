"""How fast does odradek's Producer send records? Apache Kafka's kafka-producer-perf-test,
for odradek.

    python perf/producer_perf.py --num-records 100000 --record-size 1024
    python perf/producer_perf.py --topic perf --partitions 6 --num-records 1000000 --record-size 100 \\
        --throughput -1 --producer-props acks=1 linger.ms=5 batch.size=65536 --processes 2 --runs 3

Sends --num-records records of --record-size random bytes (A-Z, as Kafka's tool) to
--topic, at most --throughput records/s (-1: as fast as it can), and prints what
kafka-producer-perf-test prints: a progress line about every 5 s for the last window,
then a summary line with records/sec, MB/sec (bytes / 2**20 per second, as Kafka counts)
and the latency, from produce() to the record's delivery callback: avg, max and the
50th/95th/99th/99.9th percentiles. Delivery callbacks are served by poll(0) after every
produce(), as a confluent-kafka program does, so the latency includes the time until
the program next polls; with --latency-every K (and no --throughput limit) after every
K records instead, the first of which has the callback (wire_compare.py's confluent-kafka
loop polls every 1,024).

--processes 2 runs two producer processes side by side, each sending half the records
at half the throughput; their windows and results are added up (records/sec over the
wall time of the slower one). --runs K repeats the whole measurement and ends with the
median of each figure. Also prints the machine's memcpy rate (a 64 MiB bytearray slice
assignment, median of 5) and the producer's MB/sec as a fraction of it: the ceiling for
moving bytes on this box is one copy.

Without --topic a temporary topic is created (--partitions, default the broker's
num.partitions; --topic-config its configs) and deleted at the end; a --topic that does
not exist is created with them. Without --socket and $ODRADEK_SOCKET a throwaway broker is started on a
temp dir for the run (perf/_broker.py). Set-up chatter goes to stderr.

A benchmark, not a test.
"""
import argparse
import multiprocessing as mp
import queue
import random
import statistics
import sys
import time
from array import array

from _broker import MB, broker_socket, join_or_terminate, memcpy_mb_per_s, parse_props, percentile, run, topic

REPORT_INTERVAL_S = 5.0
FLUSH_TIMEOUT_S = 120.0
MAX_ERRORS_SHOWN = 5


class Window:
    """kafka-producer-perf-test's reporting window: records, bytes, latency sum and max."""
    __slots__ = ("count", "bytes", "lat_sum", "lat_max", "start")

    def __init__(self, start):
        self.count = self.bytes = self.lat_sum = self.lat_max = 0
        self.start = start

    def add(self, size, lat_ns, weight=1):
        self.count += weight
        self.bytes += size * weight
        self.lat_sum += lat_ns
        if lat_ns > self.lat_max:
            self.lat_max = lat_ns

    def as_tuple(self):
        return self.count, self.bytes, self.lat_sum, self.lat_max


def window_line(count, nbytes, lat_sum, lat_max, seconds):
    seconds = max(seconds, 1e-9)
    return (f"{count} records sent, {count / seconds:.1f} records/sec ({nbytes / MB / seconds:.2f} MB/sec), "
            f"{lat_sum / max(count, 1) / 1e6:.3f} ms avg latency, {lat_max / 1e6:.3f} ms max latency.")


def run_producer(socket_path, topic_name, num_records, record_size, throughput, props, on_window,
                 latency_every=1):
    """Send the records; call on_window(count, bytes, lat_sum_ns, lat_max_ns, seconds)
    about every REPORT_INTERVAL_S. Returns (records, bytes, seconds, latencies_ns array,
    errors). latency_every=K: only every K-th record has a delivery callback (latency
    sampled); the records delivered are then counted from len(producer)."""
    from odradek.client import Producer
    payload = bytes(random.choices(range(ord("A"), ord("Z") + 1), k=record_size))
    latencies = array("q")
    errors = []
    now = time.perf_counter_ns
    config = {"socket": socket_path}
    config.update(props)
    producer = Producer(config)
    try:
        start = now()
        window = Window(start)
        interval_ns = int(REPORT_INTERVAL_S * 1e9)
        per_record_ns = 1e9 / throughput if throughput > 0 else 0.0

        def delivered(t0):
            def on_delivery(err, _record):
                if err is not None:
                    if len(errors) < MAX_ERRORS_SHOWN:
                        errors.append(str(err))
                    else:
                        errors.append(None)
                    return
                lat = now() - t0
                latencies.append(lat)
                window.add(record_size, lat, latency_every)
            return on_delivery

        # Unthrottled, the records go in runs of latency_every: the first with a callback,
        # the others bare produce() calls, then one poll(0) (as wire_compare's
        # confluent-kafka loop polls every 1,024 records); throttled, one at a time.
        produce, poll = producer.produce, producer.poll
        run_len = 1 if per_record_ns else latency_every
        i = 0
        while i < num_records:
            t = now()
            if per_record_ns:
                # Kafka's ThroughputThrottler: when ahead of the target rate, wait (serving
                # delivery callbacks meanwhile) until this record's slot comes
                due = start + int(i * per_record_ns)
                while t < due:
                    poll((due - t) / 1e9)
                    t = now()
            n = min(run_len, num_records - i)
            if i % latency_every == 0:
                produce(topic_name, payload, on_delivery=delivered(t))
            else:
                produce(topic_name, payload)
            for _ in range(n - 1):
                produce(topic_name, payload)
            i += n
            poll(0)
            if t - window.start >= interval_ns:
                on_window(*window.as_tuple(), (t - window.start) / 1e9)
                window = Window(t)
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while producer.flush(1.0) and time.monotonic() < deadline:
            pass
        left = len(producer)
        elapsed = (now() - start) / 1e9
        if left:
            errors.append(f"{left} records still undelivered after {FLUSH_TIMEOUT_S:.0f} s")
    finally:
        producer.close(timeout=5)
    count = len(latencies) if latency_every == 1 else num_records - left - len(errors) * latency_every
    return count, count * record_size, elapsed, latencies, errors


def summary(count, nbytes, seconds, latencies):
    lat = sorted(latencies)
    return {
        "records": count, "rps": count / max(seconds, 1e-9), "mbps": nbytes / MB / max(seconds, 1e-9),
        "avg": (sum(lat) / len(lat) / 1e6) if lat else 0.0, "max": (lat[-1] / 1e6) if lat else 0.0,
        "p50": percentile(lat, 0.5) / 1e6, "p95": percentile(lat, 0.95) / 1e6,
        "p99": percentile(lat, 0.99) / 1e6, "p999": percentile(lat, 0.999) / 1e6,
    }


def summary_line(s):
    return (f"{s['records']:.0f} records sent, {s['rps']:.1f} records/sec ({s['mbps']:.2f} MB/sec), "
            f"{s['avg']:.3f} ms avg latency, {s['max']:.3f} ms max latency, {s['p50']:.3f} ms 50th, "
            f"{s['p95']:.3f} ms 95th, {s['p99']:.3f} ms 99th, {s['p999']:.3f} ms 99.9th.")


# -- several processes ----------------------------------------------------------------------

def _child(index, go, results, socket_path, topic_name, num_records, record_size, throughput, props,
           latency_every=1):
    try:
        results.put(("ready", index, None))
        if not go.wait(60):
            return
        windows = iter(range(1 << 30))   # numbered, so the parent adds up the same windows
        res = run_producer(socket_path, topic_name, num_records, record_size, throughput, props,
                           lambda *w: results.put(("window", index, (next(windows),) + w)), latency_every)
        count, nbytes, seconds, lat, errors = res
        results.put(("done", index, (count, nbytes, seconds, lat.tobytes(), errors)))
    except BaseException as e:     # report, don't hang the parent
        results.put(("failed", index, f"{type(e).__name__}: {e}"))


def run_processes(n, socket_path, topic_name, num_records, record_size, throughput, props, timeout_s,
                  latency_every=1):
    ctx = mp.get_context("spawn")  # children start clean: no inherited sockets or producer state
    go, results = ctx.Event(), ctx.Queue()
    shares = [num_records // n + (1 if i < num_records % n else 0) for i in range(n)]
    rate = throughput / n if throughput > 0 else throughput
    procs = [ctx.Process(target=_child, args=(i, go, results, socket_path, topic_name, shares[i], record_size,
                                              rate, props, latency_every), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    try:
        ready = 0
        deadline = time.monotonic() + 60
        while ready < n:
            try:
                kind, index, payload = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit("the producer processes did not start within 60 s") from None
            if kind == "failed":
                raise SystemExit(f"producer process {index} failed: {payload}")
            ready += kind == "ready"
        go.set()
        done = {}
        windows = {}                # window number -> [reports, count, bytes, lat sum, lat max, seconds]
        deadline = time.monotonic() + timeout_s
        while len(done) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"producer processes did not finish within {timeout_s:.0f} s")
            try:
                kind, index, payload = results.get(timeout=1.0)
            except queue.Empty:
                if any(not p.is_alive() and p.exitcode for p in procs):
                    raise SystemExit("a producer process died: " +
                                     ", ".join(f"pid {p.pid} status {p.exitcode}" for p in procs))
                continue
            if kind == "failed":
                raise SystemExit(f"producer process {index} failed: {payload}")
            if kind == "window":
                k, c, b, s, m, secs = payload
                w = windows.setdefault(k, [0, 0, 0, 0, 0, 0.0])
                windows[k] = w = [w[0] + 1, w[1] + c, w[2] + b, w[3] + s, max(w[4], m), max(w[5], secs)]
            elif kind == "done":
                done[index] = payload
            # a window is printed once every process still sending has reported it
            for k in sorted(windows):
                if windows[k][0] < n - len(done):
                    break
                print(window_line(*windows.pop(k)[1:]), flush=True)
    finally:
        join_or_terminate(procs)
    latencies = array("q")
    errors = []
    for count, nbytes, seconds, lat, errs in done.values():
        part = array("q")
        part.frombytes(lat)
        latencies.extend(part)
        errors += errs
    return (sum(d[0] for d in done.values()), sum(d[1] for d in done.values()),
            max(d[2] for d in done.values()), latencies, errors)


# -- main ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: perf/producer_perf.py --num-records 100000 --record-size 1024 "
                                        "--throughput -1 --producer-props acks=1 linger.ms=5")
    ap.add_argument("--topic", help="topic to send to (default: a temporary one, deleted at the end)")
    ap.add_argument("--num-records", type=int, required=True, help="records to send (in all processes)")
    ap.add_argument("--record-size", type=int, required=True, help="bytes of value per record")
    ap.add_argument("--throughput", type=float, default=-1,
                    help="at most this many records/sec in all (-1: unthrottled; the default)")
    ap.add_argument("--producer-props", nargs="*", default=[], metavar="KEY=VALUE",
                    help="Producer config, e.g. acks=1 linger.ms=5 batch.size=65536")
    ap.add_argument("--partitions", type=int, help="partitions of a topic created here")
    ap.add_argument("--topic-config", nargs="*", default=[], metavar="KEY=VALUE",
                    help="configs of a topic created here (e.g. segment.bytes=16777216: many rolls)")
    ap.add_argument("--processes", type=int, default=1, choices=[1, 2], help="producer processes (1 or 2)")
    ap.add_argument("--latency-every", type=int, default=1, metavar="K",
                    help="a delivery callback (and a latency sample) on every K-th record only "
                         "(default 1: every record, as kafka-producer-perf-test)")
    ap.add_argument("--runs", type=int, default=1, help="repeat K times and print the median")
    ap.add_argument("--socket", help="the broker's control socket (default: $ODRADEK_SOCKET, else a "
                                     "throwaway broker started for the run)")
    args = ap.parse_args()
    if args.num_records < 1 or args.record_size < 1 or args.runs < 1 or args.latency_every < 1:
        ap.error("--num-records, --record-size, --runs and --latency-every must be at least 1")
    props = parse_props(args.producer_props)
    # bound the whole run: generous for the throttled rate, and for a slow box
    expected = args.num_records / args.throughput if args.throughput > 0 else 0
    timeout_s = 600 + 2 * expected

    configs = {key: str(value).lower() if isinstance(value, bool) else str(value)     # as the broker reads them
               for key, value in parse_props(args.topic_config).items()} or None
    with broker_socket(args.socket) as sock, \
            topic(sock, args.topic, args.partitions, "perf-producer", configs=configs) as name:
        memcpy = memcpy_mb_per_s()
        runs = []
        for i in range(args.runs):
            if args.runs > 1:
                print(f"run {i + 1} of {args.runs}:", flush=True)
            if args.processes == 1:
                res = run_producer(sock, name, args.num_records, args.record_size, args.throughput, props,
                                   lambda *w: print(window_line(*w), flush=True), args.latency_every)
            else:
                res = run_processes(args.processes, sock, name, args.num_records, args.record_size,
                                    args.throughput, props, timeout_s, args.latency_every)
            count, nbytes, seconds, latencies, errors = res
            for e in [e for e in errors if e is not None]:
                print(f"error: {e}", file=sys.stderr)
            if errors:
                print(f"{len(errors)} records failed (or were not delivered)", file=sys.stderr)
            s = summary(count, nbytes, seconds, latencies)
            runs.append(s)
            print(summary_line(s), flush=True)
        if args.runs > 1:
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"median of {args.runs} runs: {summary_line(med)}")
        else:
            med = runs[0]
        print(f"memcpy: {memcpy:.0f} MB/sec (64 MiB bytearray slice assignment, median of 5); "
              f"producer {med['mbps']:.2f} MB/sec = {med['mbps'] / memcpy:.4f}x memcpy "
              f"({args.processes} process{'es' if args.processes > 1 else ''}, "
              f"{args.record_size} B records, props {props or 'default'})")
        if any(r["records"] < args.num_records for r in runs):
            sys.exit(1)


if __name__ == "__main__":
    run(main)
