"""How fast does odradek's Consumer read records? Apache Kafka's kafka-consumer-perf-test,
for odradek.

    python perf/consumer_perf.py --messages 100000
    python perf/consumer_perf.py --topic perf --messages 1000000 --record-size 100 --partitions 0,1 --runs 3

Makes sure the partitions to read (--partitions, default every partition of --topic)
hold at least --messages records, producing the missing ones first (--record-size
random bytes each, with odradek's Producer, spread evenly over those partitions), then
times one Consumer assigned to them reading --messages records from the beginning, and
prints what kafka-consumer-perf-test prints:

    start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec

(MB = 2**20 bytes of keys and values, as Kafka counts; rebalance.time.ms is 0: the
consumer is assigned, there is no group). The clock starts before assign(), so the
first fetch's set-up is in the time, as Kafka's tool counts its first poll. --runs K
reads again K times (the page cache is warm after the first) and ends with the median.
Also prints the machine's memcpy rate (a 64 MiB bytearray slice assignment, median of
5) and MB.sec as a fraction of it.

Without --topic a temporary topic is created (--num-partitions, default the broker's
num.partitions) and deleted at the end; a --topic that does not exist is created the
same way. Without --socket and $ODRADEK_SOCKET a throwaway broker is started on a temp
dir for the run (perf/_broker.py). Set-up chatter goes to stderr.

A benchmark, not a test.
"""
import argparse
import datetime
import random
import statistics
import sys
import time

from _broker import MB, broker_socket, log, memcpy_mb_per_s, parse_props, run, topic

FILL_FLUSH_TIMEOUT_S = 300.0
BATCH = 1000


def stamp(t):
    """Kafka's date format: yyyy-MM-dd HH:mm:ss:SSS."""
    d = datetime.datetime.fromtimestamp(t)
    return d.strftime("%Y-%m-%d %H:%M:%S:") + f"{d.microsecond // 1000:03d}"


def count_records(admin, name, partitions):
    total = 0
    for p in partitions:
        start, _ = admin.list_offsets(name, p, "earliest")
        end, _ = admin.list_offsets(name, p, "latest")
        total += max(0, end - start)
    return total


def fill(sock, name, partitions, missing, record_size):
    """Produce `missing` records spread evenly over `partitions`."""
    from odradek.client import Producer
    payload = bytes(random.choices(range(ord("A"), ord("Z") + 1), k=record_size))
    failed = []

    def on_delivery(err, _record):
        if err is not None:
            failed.append(err)

    log(f"producing {missing} records of {record_size} B to {name} partitions {partitions} first ...")
    t0 = time.perf_counter()
    producer = Producer({"socket": sock, "acks": 1, "linger.ms": 5, "batch.size": 262144})
    try:
        n = len(partitions)
        for i in range(missing):
            producer.produce(name, payload, partition=partitions[i % n], on_delivery=on_delivery)
            producer.poll(0)
            if failed:
                raise SystemExit(f"filling the topic failed: {failed[0]}")
        deadline = time.monotonic() + FILL_FLUSH_TIMEOUT_S
        while producer.flush(1.0) and time.monotonic() < deadline:
            pass
        if len(producer) or failed:
            raise SystemExit(f"filling the topic failed: {failed[0] if failed else f'{len(producer)} undelivered'}")
    finally:
        producer.close(timeout=5)
    log(f"... done in {time.perf_counter() - t0:.1f} s")


def consume_once(sock, name, partitions, messages, props, timeout_s):
    """Read `messages` records from the beginning; (start, end, records, bytes)."""
    from odradek.client import OFFSET_BEGINNING, Consumer, TopicPartition
    config = {"socket": sock, "auto.offset.reset": "earliest"}
    config.update(props)
    records = nbytes = 0
    start = time.time()
    t0 = time.perf_counter()
    with Consumer(config) as consumer:
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        last = time.monotonic()
        while records < messages:
            batch = consumer.consume(num_messages=min(BATCH, messages - records), timeout=0.5)
            if not batch:
                if time.monotonic() - last > timeout_s:
                    log(f"no record for {timeout_s} s after {records} records: stopping")
                    break
                continue
            last = time.monotonic()
            records += len(batch)
            for r in batch:     # each accessor called once
                k, v = r.key(), r.value()
                if v is not None:
                    nbytes += len(v)
                if k is not None:
                    nbytes += len(k)
        elapsed = time.perf_counter() - t0
    return start, start + elapsed, elapsed, records, nbytes


HEADER = ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
          "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")


def row(start, end, elapsed, records, nbytes):
    mb = nbytes / MB
    e = max(elapsed, 1e-9)
    return (f"{stamp(start)}, {stamp(end)}, {mb:.4f}, {mb / e:.4f}, {records}, {records / e:.4f}, "
            f"0, {elapsed * 1000:.0f}, {mb / e:.4f}, {records / e:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: perf/consumer_perf.py --messages 100000 --record-size 1024")
    ap.add_argument("--topic", help="topic to read (default: a temporary one, filled, deleted at the end)")
    ap.add_argument("--messages", type=int, required=True, help="records to read")
    ap.add_argument("--record-size", type=int, default=100, help="bytes per record produced to fill the topic")
    ap.add_argument("--partitions", help="partitions to read, e.g. 0,2 (default: all)")
    ap.add_argument("--num-partitions", type=int, help="partitions of a topic created here")
    ap.add_argument("--consumer-props", nargs="*", default=[], metavar="KEY=VALUE",
                    help="Consumer config, e.g. max.partition.fetch.bytes=4194304")
    ap.add_argument("--zero-copy", action="store_true",
                    help="zero.copy=true: keys and values are read-only views of the segment, not bytes")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="give up after this many seconds without a record (default 10)")
    ap.add_argument("--runs", type=int, default=1, help="repeat K times and print the median")
    ap.add_argument("--socket", help="the broker's control socket (default: $ODRADEK_SOCKET, else a "
                                     "throwaway broker started for the run)")
    args = ap.parse_args()
    if args.messages < 1 or args.record_size < 1 or args.runs < 1:
        ap.error("--messages, --record-size and --runs must be at least 1")
    props = parse_props(args.consumer_props)
    if args.zero_copy:
        props["zero.copy"] = True

    from odradek.client import Admin
    with broker_socket(args.socket) as sock, topic(sock, args.topic, args.num_partitions, "perf-consumer") as name:
        with Admin(sock, timeout=120) as admin:
            every = sorted(p.partition for p in admin.describe_topic(name).partitions)
            if args.partitions:
                try:
                    partitions = sorted({int(p) for p in args.partitions.split(",")})
                except ValueError:
                    ap.error(f"--partitions {args.partitions!r}: give partition numbers like 0,2")
                if not set(partitions) <= set(every):
                    ap.error(f"topic {name} has partitions {every}, not {partitions}")
            else:
                partitions = every
            have = count_records(admin, name, partitions)
        from odradek.client import Consumer
        Consumer({"socket": sock, **props}).close()     # a bad --consumer-props key fails now, not after filling
        if have < args.messages:
            fill(sock, name, partitions, args.messages - have, args.record_size)
        memcpy = memcpy_mb_per_s()
        print(HEADER)
        results = []
        for _ in range(args.runs):
            res = consume_once(sock, name, partitions, args.messages, props, args.timeout)
            results.append(res)
            print(row(*res), flush=True)
        mbps = [r[4] / MB / max(r[2], 1e-9) for r in results]
        rates = [r[3] / max(r[2], 1e-9) for r in results]
        med = statistics.median(mbps)
        if args.runs > 1:
            print(f"median of {args.runs} runs: {med:.4f} MB.sec, {statistics.median(rates):.4f} nMsg.sec")
        print(f"memcpy: {memcpy:.0f} MB/sec (64 MiB bytearray slice assignment, median of 5); "
              f"consumer {med:.2f} MB/sec = {med / memcpy:.4f}x memcpy ({len(partitions)} partition"
              f"{'s' if len(partitions) > 1 else ''}, props {props or 'default'})")
        if any(r[3] < args.messages for r in results):
            sys.exit(1)


if __name__ == "__main__":
    run(main)
