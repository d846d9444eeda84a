"""How long is a replicated partition without a leader? The time from SIGKILL of its
leader worker to the first acknowledged produce on the new leader (issue 9's goal:
under 100 ms), and whether any acknowledged record was lost on the way.

    python perf/failover_perf.py
    python perf/failover_perf.py --kills 50 --interval-ms 0

A throwaway broker with three log dirs (perf/_broker.py, --log-level info, its stderr
kept in a file to read the timestamps from) serves a one-partition topic with
replication factor 3 and min.insync.replicas=2. A thread of this process produces a
steady stream through one idempotent acks=all Producer (linger.ms=0): record i (its
value is i) every --interval-ms (0: back to back), serving its delivery callbacks in
between with poll() until the next is due, so each callback's time is taken when the
report arrives. The produce and callback times are CLOCK_MONOTONIC.

First, as the reference, the delivery latency (produce() -> report) of the records
produced over one second with every replica in sync. Then for each of --kills kills:
wait until every replica is in the ISR, its follower is running and the stream has an
acknowledgement newer than that; then SIGKILL the partition's leader worker (its pid
from Admin.status(): the running worker with role "leader"; only a child of the broker
started here) and wait for the first delivery report without error of a record
produced after the kill. Its callback time minus the kill time is the failover time.
From the broker's log (ms timestamps, wall clock; matched by leader epoch) its parts:
  kill -> "leader N died; replica M leads"   the broker saw the death and saved the
                                             election (metadata in every log dir)
  -> the follower's "leading from offset"    it got LeaderAndIsr and hands over
  -> the same process's "open at offsets"    it leads: epoch assigned, state taken over
  -> first ack                               the broker re-attaches the producers'
                                             rings, the new leader takes them, the other
                                             follower follows it and copies, the high
                                             watermark passes the record, the producer
                                             gets the completion
--broker-log FILE keeps the log for a closer look.

At the end the producer is flushed and closed and the partition is read from its start
to its high watermark: every acknowledged record must be there at the offset its
report gave, with its value, once. Per-kill lines, then median, p90 and max of each
time, the reference and the record counts. A lost or duplicated record makes the exit
status 1. Set-up chatter goes to stderr. A benchmark, not a test.
"""
import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime

from _broker import broker_socket, log, percentile, run, topic

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition

LOG_DIRS = 3
REPLICATION_FACTOR = 3
MIN_INSYNC = 2
GOAL_MS = 100.0
IN_SYNC_TIMEOUT_S = 60.0
FAILOVER_TIMEOUT_S = 30.0
READ_IDLE_TIMEOUT_S = 10.0
STEADY_S = 1.0              # the reference: delivery latency over this long before the first kill
ELECTED = re.compile(r"^(\S+ \S+) WARNING .*: (\S+)-0: leader (\d+) died; replica (\d+) leads in epoch (\d+)")
LEADING = re.compile(r"^(\S+ \S+) INFO .*\[(\d+)\]: (\S+)-0 replica \d+: leading from offset (\d+) in epoch (\d+)")
OPEN = re.compile(r"^(\S+ \S+) INFO .*\[(\d+)\]: (\S+)-0: open at offsets")


class Stream(threading.Thread):
    """Produces record i (value b"i") every `interval` s to partition 0 and keeps
    sent[i] (monotonic s before produce()) and acked[i] = (offset, callback time);
    failed: [(i, error)]."""

    def __init__(self, sock, name, interval):
        super().__init__(name="failover-stream", daemon=True)
        self.topic, self.interval = name, interval
        self.producer = Producer({"socket": sock, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
        self.sent, self.acked, self.failed = [], {}, []
        self.stop = threading.Event()
        self.error = None

    def _delivered(self, err, record):
        t = time.monotonic()
        i = int(record.value())
        if err is None:
            self.acked[i] = (record.offset(), t)
        else:
            self.failed.append((i, err))

    def run(self):
        try:
            producer, sent, now = self.producer, self.sent, time.monotonic
            due = now()
            while not self.stop.is_set():
                sent.append(now())
                producer.produce(self.topic, str(len(sent) - 1).encode(), partition=0, on_delivery=self._delivered)
                due += self.interval
                left = due - now()
                if left <= 0:
                    producer.poll(0)
                    due = now() if left < -0.1 else due    # far behind: no burst to catch up
                for _ in range(1000):                      # bounded: each poll waits until `due`
                    left = due - now()
                    if left <= 0:
                        break
                    producer.poll(left)
        except BaseException as e:
            self.error = e

    def first_ack_after(self, t0):
        """The earliest callback time of an acknowledged record produced after t0, or None."""
        times = [t for i, (_off, t) in list(self.acked.items()) if self.sent[i] > t0]
        return min(times) if times else None

    def finish(self):
        self.stop.set()
        self.join(30)
        left = self.producer.flush(30)
        self.producer.close(timeout=5)
        return left


def partition_status(admin, name):
    status = admin.status([name])
    (p,) = [p for p in status.partitions if p.topic == name and p.partition == 0]
    leaders = [w for w in status.workers if w.topic == name and w.partition == 0 and w.role == "leader"]
    return status, p, leaders


def wait_in_sync(admin, name, stream):
    """Until the ISR is every replica, every follower and the leader run, and the stream
    has an acknowledgement of a record produced after that; returns (leader id, leader
    epoch, leader pid, broker pid)."""
    deadline = time.monotonic() + IN_SYNC_TIMEOUT_S
    while True:
        status, p, leaders = partition_status(admin, name)
        if (sorted(p.isr_nodes) == sorted(p.replica_nodes) and all(f.state == "running" for f in p.followers)
                and len(leaders) == 1 and leaders[0].state == "running" and leaders[0].replica_id == p.leader_id):
            t0 = time.monotonic()
            while stream.first_ack_after(t0) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no acknowledgement within {IN_SYNC_TIMEOUT_S:.0f} s with the ISR full")
                time.sleep(0.001)
            return p.leader_id, p.leader_epoch, leaders[0].pid, status.broker_pid
        if stream.error is not None:
            raise SystemExit(f"the producing thread failed: {stream.error!r}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}-0 not back in sync within {IN_SYNC_TIMEOUT_S:.0f} s: ISR {p.isr_nodes} "
                             f"of {p.replica_nodes}, followers {[f.state for f in p.followers]}")
        time.sleep(0.005)


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def kill_leader(admin, name, stream):
    """One kill: (dict of what it measured) after the first acknowledged record
    produced after it."""
    leader, epoch, pid, broker_pid = wait_in_sync(admin, name, stream)
    if parent_pid(pid) != broker_pid:
        raise SystemExit(f"pid {pid} is not a child of the broker (pid {broker_pid}) started here; not killing it")
    wall, t_kill = time.time(), time.monotonic()
    os.kill(pid, 9)
    deadline = t_kill + FAILOVER_TIMEOUT_S
    while (t_ack := stream.first_ack_after(t_kill)) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"no record produced after the kill was acknowledged within {FAILOVER_TIMEOUT_S:.0f} s")
        time.sleep(0.0005)
    return {"leader": leader, "pid": pid, "epoch": epoch + 1, "wall": wall, "failover": (t_ack - t_kill) * 1e3}


def log_time(stamp):
    """The broker log's asctime ('2026-12-06 03:44:40,123', local time) as epoch s."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def add_log_times(kills, name, err_path):
    """Give each kill, in ms from the broker's log (matched by leader epoch), 'elected'
    (kill -> election logged), 'leading' (election -> the follower's 'leading from
    offset') and 'open' (that -> the same process's leader 'open at offsets': ready to
    take the rings)."""
    elected, leading, opened, pid_epoch = {}, {}, {}, {}
    with open(err_path, errors="replace") as f:
        for line in f:
            if (mt := ELECTED.match(line)) and mt.group(2) == name:
                elected.setdefault(int(mt.group(5)), (log_time(mt.group(1)), int(mt.group(4))))
            elif (mt := LEADING.match(line)) and mt.group(3) == name:
                leading.setdefault(int(mt.group(5)), log_time(mt.group(1)))
                pid_epoch[mt.group(2)] = int(mt.group(5))
            elif (mt := OPEN.match(line)) and mt.group(3) == name and mt.group(2) in pid_epoch:
                opened.setdefault(pid_epoch.pop(mt.group(2)), log_time(mt.group(1)))
    for k in kills:
        e = elected.get(k["epoch"])
        if e is None:
            continue
        k["new"] = e[1]
        k["elected"] = (e[0] - k["wall"]) * 1e3
        if k["epoch"] in leading:
            k["leading"] = (leading[k["epoch"]] - e[0]) * 1e3
            if k["epoch"] in opened:
                k["open"] = (opened[k["epoch"]] - leading[k["epoch"]]) * 1e3
                k["ack"] = k["failover"] - k["elected"] - k["leading"] - k["open"]


def read_back(sock, name, end):
    """{offset: value} of partition 0 from its start up to `end` (its high watermark)."""
    out = {}
    with Consumer({"socket": sock, "auto.offset.reset": "earliest", "fetch.min.bytes": 1}) as consumer:
        consumer.assign([TopicPartition(name, 0, OFFSET_BEGINNING)])
        last = time.monotonic()
        while len(out) < end:
            batch = consumer.consume(num_messages=10000, timeout=0.5)
            if not batch:
                if time.monotonic() - last > READ_IDLE_TIMEOUT_S:
                    break
                continue
            last = time.monotonic()
            for r in batch:
                out[r.offset()] = r.value()
    return out


def check(stream, records):
    """(lost, duplicated): acknowledged records not at their offset with their value;
    values present more than once."""
    lost = [i for i, (off, _t) in stream.acked.items() if records.get(off) != str(i).encode()]
    seen = {}
    for v in records.values():
        seen[v] = seen.get(v, 0) + 1
    return lost, sum(1 for n in seen.values() if n > 1)


def stats(values):
    v = sorted(values)
    if not v:
        return "n/a"
    return f"median {statistics.median(v):.1f} ms, p90 {percentile(v, 0.9):.1f} ms, max {v[-1]:.1f} ms"


def fmt(k, key):
    return f"{k[key]:.1f} ms" if key in k else "?"


def report(kills, args, latencies, produced, acked, failed, lost, dup):
    for n, k in enumerate(kills, 1):
        print(f"kill {n:>2}: leader {k['leader']} (pid {k['pid']}) -> replica {k.get('new', '?')} in epoch "
              f"{k['epoch']}: failover {k['failover']:.1f} ms (kill -> elected {fmt(k, 'elected')}, "
              f"-> leading {fmt(k, 'leading')}, -> open {fmt(k, 'open')}, -> first ack {fmt(k, 'ack')})")
    rate = "back to back" if args.interval_ms == 0 else f"one record every {args.interval_ms:g} ms"
    print(f"\n{len(kills)} leader kills, RF={REPLICATION_FACTOR} min.insync.replicas={MIN_INSYNC}, idempotent "
          f"acks=all linger.ms=0, {rate}:")
    print(f"failover (SIGKILL -> first ack of a record produced after it): {stats(k['failover'] for k in kills)}")
    print(f"  kill -> election logged:               {stats(k['elected'] for k in kills if 'elected' in k)}")
    print(f"  election -> 'leading from offset':     {stats(k['leading'] for k in kills if 'leading' in k)}")
    print(f"  'leading' -> leader 'open at offsets': {stats(k['open'] for k in kills if 'open' in k)}")
    print(f"  'open at offsets' -> first ack:        {stats(k['ack'] for k in kills if 'ack' in k)}")
    print(f"reference: delivery latency (produce() -> report) over {STEADY_S:g} s before the first kill: "
          f"{stats(latencies)}")
    print(f"records: {produced} produced, {acked} acknowledged, {failed} failed; acknowledged and lost: {lost}, "
          f"duplicated: {dup}")
    med = statistics.median(k["failover"] for k in kills)
    print(f"goal: failover under {GOAL_MS:.0f} ms: median {med:.1f} ms, {'met' if med < GOAL_MS else 'NOT met'} "
          f"(max {max(k['failover'] for k in kills):.1f} ms)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: perf/failover_perf.py --kills 20 --interval-ms 1")
    ap.add_argument("--kills", type=int, default=20, help="leader kills (default 20)")
    ap.add_argument("--interval-ms", type=float, default=1.0,
                    help="one record every this many ms (0: back to back; default 1)")
    ap.add_argument("--broker-log", metavar="FILE", help="keep the broker's log (--log-level info) in FILE "
                                                         "(default: a temp file removed at the end)")
    args = ap.parse_args()
    if args.kills < 1 or args.interval_ms < 0:
        ap.error("--kills must be at least 1 and --interval-ms not negative")

    if args.broker_log:
        err_path = args.broker_log
    else:
        fd, err_path = tempfile.mkstemp(prefix="odradek-failover-", suffix=".log")
        os.close(fd)
    try:
        with broker_socket(None, log_dirs=LOG_DIRS, log_level="info", stderr_path=err_path) as sock, \
                topic(sock, None, 1, "perf-failover", REPLICATION_FACTOR,
                      {"min.insync.replicas": MIN_INSYNC}) as name, Admin(sock, timeout=30) as admin:
            stream = Stream(sock, name, args.interval_ms / 1000)
            stream.start()
            kills = []
            try:
                wait_in_sync(admin, name, stream)
                t0 = time.monotonic()
                time.sleep(STEADY_S)
                steady = [(t - stream.sent[i]) * 1e3 for i, (_off, t) in list(stream.acked.items())
                          if t0 <= stream.sent[i] < t0 + STEADY_S]
                for n in range(args.kills):
                    kills.append(kill_leader(admin, name, stream))
                    log(f"kill {n + 1}: {kills[-1]['failover']:.1f} ms")
            finally:
                undelivered = stream.finish()
            if undelivered:
                log(f"{undelivered} records still undelivered at close")
            _, p, _ = partition_status(admin, name)
            records = read_back(sock, name, p.high_watermark)
            lost, dup = check(stream, records)
            add_log_times(kills, name, err_path)
        report(kills, args, steady, len(stream.sent), len(stream.acked), len(stream.failed), len(lost), dup)
        for i, err in stream.failed[:3]:
            log(f"record {i} failed: {err}")
        if lost or dup:
            log(f"lost (acknowledged, not read back at their offset): {sorted(lost)[:20]}")
            sys.exit(1)
    finally:
        if not args.broker_log:
            os.unlink(err_path)


if __name__ == "__main__":
    run(main)
