"""How long from produce() in one process until a Consumer in another process has the
record? Apache Kafka's EndToEndLatency tool, for odradek, with a paced producer.

    python perf/end_to_end_latency.py
    python perf/end_to_end_latency.py --rate 2000 --num-records 20000 --record-size 1024 --acks 1

A consumer process assigns itself the partition at its end (the offset Admin.list_offsets
gives, so no first fetch has to resolve OFFSET_END) and says so; only then does this process start producing --num-records
records of --record-size bytes at --rate records/s: record i is due at start + i/rate,
the producer sleeps (time.sleep) when it is ahead and sends at once when it is behind
(a deadline loop: the achieved rate is printed). Each value starts with the
CLOCK_MONOTONIC time (time.monotonic_ns, one clock for every process on Linux) taken
just before produce(); the consumer subtracts it from the time its consume() call
returned with the record. Printed in microseconds: avg, p50, p99, p99.9, max, as
EndToEndLatency prints avg and percentiles, twice: over the full run, and after the
warm-up, without the first --warmup-records records (default 1,000: 100 ms at the
default rate). The producer attaches to the partition before the first timed record
(Producer.attach: the OpenProducer round trip to the broker and the worker, ~2-17 ms,
which on the first produce() stalled the records sent meanwhile), so the full run shows
no attach stall; --attach-on-first-record measures it the old way (an odradek from
before attach() always does). The full run still holds the first record's one-time
costs, printed on their own line: the leader's first produce request (~2-4 ms: its
append state, the segment's first disk blocks, the prefault thread) and the consumer's
first read of the partition (~1.5 ms); 6-12 ms in all on the busy 2-core dev box.

Both processes gc.freeze() what their set-up made before the timed records (as a
latency-sensitive program does; --no-gc-freeze: not), and the Python GC's pauses in
each while sending are printed; --show-slow K lists the K slowest records with their
send times and the GC pauses that began meanwhile.

The producer sends with linger.ms=0 (as EndToEndLatency does) and --acks (default 1)
unless --producer-props say otherwise, and serves its delivery callbacks with poll(0)
after each record. Without --topic a temporary one-partition topic is created and
deleted at the end; without --socket and $ODRADEK_SOCKET a throwaway broker is started
on a temp dir (perf/_broker.py). Set-up chatter goes to stderr.

--floor also measures, right after, the floor under these figures on this machine as it
is now: perf/wake_floor.py's A -> B -> C (a timestamp handed through two processes by
shared memory and futex wake-ups alone, the waiters spinning as ODRADEK_SPIN_US says),
with the same record count, rate and warm-up, and prints the after-warm-up figures as
multiples of it. On a shared machine only such ratios compare across runs.

A benchmark, not a test.
"""
import argparse
import gc
import struct
import sys
import time
from array import array

from _broker import broker_socket, log, paced, parse_props, percentile, run, topic, with_reader_process
try:
    from odradek.client.shm.waiting import SPIN_MAX_NS
except ImportError:     # an odradek from before spinning (to compare against)
    SPIN_MAX_NS = 0

STAMP = struct.Struct("<q")
IDLE_TIMEOUT_S = 10.0       # the consumer gives up after this long without a record
READY_TIMEOUT_S = 60.0


class GcPauses:
    """The Python GC's collections in this process while started: (start ns
    CLOCK_MONOTONIC, duration ns, generation) each, through gc.callbacks. With freeze,
    first collect and move every object made so far (the imports, the set-up) to the
    permanent generation (gc.freeze), as a latency-sensitive program does after its
    set-up: otherwise the first collections go through them (~1 ms, in the first
    seconds)."""

    def __init__(self, freeze):
        if freeze:
            gc.collect()
            gc.freeze()
        self.pauses, self._start = [], None
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._start = time.monotonic_ns()
        elif self._start is not None:
            self.pauses.append((self._start, time.monotonic_ns() - self._start, info["generation"]))
            self._start = None

    def stop(self):
        gc.callbacks.remove(self._callback)
        return self.pauses


def gc_summary(who, pauses):
    if not pauses:
        return f"{who}: no collection"
    return (f"{who}: {len(pauses)} collections ({sum(g == 2 for _, _, g in pauses)} full), "
            f"{sum(d for _, d, _ in pauses) / 1e3:.0f} us in all, the longest {max(d for _, d, _ in pauses) / 1e3:.0f} us")


def consumer_process(conn, sock, name, partition, num_records, gc_freeze):
    """Assign at the end, report ready, then collect the send time and (receive - send) ns
    per record and send them back as bytes of two arrays('q')."""
    from odradek.client import Admin, Consumer, TopicPartition
    try:
        latencies, sent = array("q"), array("q")
        with Admin(sock) as admin:
            # the end offset now: OFFSET_END would be resolved by the first fetch, which
            # could come after the first records and skip them
            end, _ = admin.list_offsets(name, partition, "latest")
        with Consumer({"socket": sock, "auto.offset.reset": "latest", "fetch.min.bytes": 1}) as consumer:
            consumer.assign([TopicPartition(name, partition, end)])
            conn.send(("ready", None))
            pauses = GcPauses(gc_freeze)
            now = time.monotonic_ns
            unpack = STAMP.unpack_from
            last = time.monotonic()
            while len(latencies) < num_records:
                batch = consumer.consume(num_messages=1000, timeout=0.5)
                t = now()
                if not batch:
                    if time.monotonic() - last > IDLE_TIMEOUT_S:
                        break
                    continue
                last = time.monotonic()
                for r in batch:
                    stamp = unpack(r.value())[0]
                    sent.append(stamp)
                    latencies.append(t - stamp)
        conn.send(("done", (latencies.tobytes(), sent.tobytes(), pauses.stop())))
    except BaseException as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))


def summary(latencies_ns):
    """avg, p50, p99, p99.9 and max in microseconds, as one line."""
    lat = sorted(latencies_ns)
    if not lat:
        return "no records"
    us = 1e3
    return (f"avg {sum(lat) / len(lat) / us:.1f} us, p50 {percentile(lat, 0.5) / us:.1f} us, "
            f"p99 {percentile(lat, 0.99) / us:.1f} us, p99.9 {percentile(lat, 0.999) / us:.1f} us, "
            f"max {lat[-1] / us:.1f} us")


def show_slow(latencies, sent_at, k, gc_pauses):
    """The k slowest records, in the order sent, each with the GC pauses (of either
    process) that began while it was on its way."""
    first = sent_at[0] if sent_at else 0
    slow = sorted(sorted(range(len(latencies)), key=latencies.__getitem__)[-k:])
    for i in slow:
        t0, t1 = sent_at[i], sent_at[i] + latencies[i]
        during = [f"gen{g} {d / 1e3:.0f} us" for start, d, g in gc_pauses if t0 <= start <= t1]
        print(f"slow: record {i} sent at +{(sent_at[i] - first) / 1e6:.3f} ms "
              f"(monotonic {sent_at[i]} ns): {latencies[i] / 1e3:.1f} us"
              + (f"; GC meanwhile: {', '.join(during)}" if during else ""))


def produce_paced(sock, name, partition, num_records, rate, record_size, props, attach, gc_freeze):
    """Send at `rate` records/s, attached first (attach); returns (seconds from first to
    last send, errors, the GC's pauses while sending)."""
    from odradek.client import Producer
    config = {"socket": sock}
    config.update(props)
    errors = []

    def on_delivery(err, _record):
        if err is not None:
            errors.append(err)

    buf = bytearray(b"x" * record_size)
    now = time.monotonic_ns
    pack = STAMP.pack_into
    producer = Producer(config)
    try:
        if attach and hasattr(producer, "attach"):
            producer.attach(name, [partition])
        pauses = GcPauses(gc_freeze)
        start = now()
        for _ in paced(num_records, rate):
            pack(buf, 0, now())
            producer.produce(name, bytes(buf), partition=partition, on_delivery=on_delivery)
            producer.poll(0)
        sent = (now() - start) / 1e9
        pauses = pauses.stop()
        deadline = time.monotonic() + 60
        while producer.flush(1.0) and time.monotonic() < deadline:
            pass
        if len(producer):
            errors.append(f"{len(producer)} records undelivered after 60 s")
    finally:
        producer.close(timeout=5)
    return sent, errors, pauses


def floor_ratios(latencies, args):
    """Measure the two-hop wake-up floor now and print the latencies as multiples of it."""
    from wake_floor import one_run
    floor = sorted(one_run(2, SPIN_MAX_NS, args.num_records, args.rate)[args.warmup_records:])
    ps = (0.5, 0.99, 0.999)
    ours = [percentile(latencies, p) for p in ps]
    base = [percentile(floor, p) for p in ps]
    print("wake-up floor now (perf/wake_floor.py, A -> B -> C): "
          + ", ".join(f"p{p * 100:g} {b / 1e3:.1f} us" for p, b in zip(ps, base)))
    print("after warm-up, as multiples of the floor: "
          + ", ".join(f"p{p * 100:g} {o / b:.2f}x" if b else f"p{p * 100:g} n/a" for p, o, b in zip(ps, ours, base)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: perf/end_to_end_latency.py --rate 10000 --num-records 50000")
    ap.add_argument("--topic", help="topic to use (default: a temporary one-partition topic)")
    ap.add_argument("--partition", type=int, default=0, help="partition to send to and read (default 0)")
    ap.add_argument("--num-records", type=int, default=50000)
    ap.add_argument("--rate", type=float, default=10000, help="records/s to send (default 10000)")
    ap.add_argument("--record-size", type=int, default=100, help="bytes per value, at least 8 (default 100)")
    ap.add_argument("--warmup-records", type=int, default=1000,
                    help="records left out of the after-warm-up figures (default 1000)")
    ap.add_argument("--acks", default="1", choices=["0", "1", "all", "-1"], help="producer acks (default 1)")
    ap.add_argument("--producer-props", nargs="*", default=[], metavar="KEY=VALUE",
                    help="more Producer config, e.g. linger.ms=1")
    ap.add_argument("--attach-on-first-record", action="store_true",
                    help="do not attach before the first record (its attach stall is then in the full run)")
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="do not gc.freeze() the set-up's objects before the timed records")
    ap.add_argument("--show-slow", type=int, default=0, metavar="K",
                    help="also print the K slowest records: index, send time (ms after the first "
                         "send, and CLOCK_MONOTONIC ns, to correlate with other processes) and latency")
    ap.add_argument("--floor", action="store_true",
                    help="also measure the wake-up floor (perf/wake_floor.py, two hops) and print the ratios")
    ap.add_argument("--socket", help="the broker's control socket (default: $ODRADEK_SOCKET, else a "
                                     "throwaway broker started for the run)")
    args = ap.parse_args()
    if args.record_size < STAMP.size:
        ap.error(f"--record-size must be at least {STAMP.size} (the send time is in the value)")
    if args.num_records < 1 or args.rate <= 0:
        ap.error("--num-records and --rate must be positive")
    if not 0 <= args.warmup_records < args.num_records:
        ap.error("--warmup-records must be at least 0 and below --num-records")
    props = {"acks": args.acks if args.acks == "all" else int(args.acks), "linger.ms": 0}
    props.update(parse_props(args.producer_props))

    with broker_socket(args.socket) as sock, topic(sock, args.topic, 1 if args.topic is None else None,
                                                   "perf-e2e") as name:
        # the consumer starts clean (spawn): nothing inherited from here
        (sent, errors, producer_gc), payload = with_reader_process(
            consumer_process, (sock, name, args.partition, args.num_records, not args.no_gc_freeze),
            lambda: produce_paced(sock, name, args.partition, args.num_records, args.rate, args.record_size,
                                  props, not args.attach_on_first_record, not args.no_gc_freeze),
            READY_TIMEOUT_S, IDLE_TIMEOUT_S + 30 + args.num_records / args.rate)
        received, sent_at = array("q"), array("q")
        received.frombytes(payload[0])     # in the order sent (one partition)
        sent_at.frombytes(payload[1])
        achieved = args.num_records / sent if sent > 0 else float("inf")
        print(f"{args.num_records} records of {args.record_size} B sent at {achieved:.1f} records/s "
              f"(target {args.rate:.0f}), props {props}; {len(received)} received; waiters spin up to "
              f"{SPIN_MAX_NS / 1000:g} us (ODRADEK_SPIN_US)")
        print(f"end-to-end latency, full run:                {summary(received)}")
        print(f"end-to-end latency, after the first {args.warmup_records} records: "
              f"{summary(received[args.warmup_records:])}")
        if received:
            print(f"the first record: {received[0] / 1e3:.1f} us (the one-time costs: the docstring)")
        print(f"Python GC while sending, {gc_summary('producer', producer_gc)}; "
              f"{gc_summary('consumer', payload[2])}")
        if args.show_slow:
            show_slow(received, sent_at, args.show_slow, producer_gc + payload[2])
        if args.floor and len(received) > args.warmup_records:
            floor_ratios(sorted(received[args.warmup_records:]), args)
        if errors:
            print(f"{len(errors)} delivery errors; the first: {errors[0]}", file=sys.stderr)
        if len(received) < args.num_records or errors:
            log(f"lost: {args.num_records - len(received)} records were not received")
            sys.exit(1)


if __name__ == "__main__":
    run(main)
