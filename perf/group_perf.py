"""Consumer groups: how long a rebalance takes, how many commits a second, and what a
group of consumers reads against one consumer.

    python perf/group_perf.py                      # all three, on a throwaway broker
    python perf/group_perf.py --members 10 --partitions 100 --runs 3

1. Rebalance: --members consumer processes (each imported and connected first) subscribe
   to a topic of --partitions partitions at the same moment; the time from that moment
   until every partition is assigned to some member (on_assign), median of --runs.
   The throwaway broker runs with group.initial.rebalance.delay.ms=0 (Kafka's default of
   3 s would be most of the figure; say --initial-delay-ms 3000 to see it).
2. Commits: one member commits its position synchronously --commits times: commits/s
   and the round trip per commit (each is an OffsetCommit over the Unix socket, appended
   to __consumer_offsets by its worker before the answer).
3. Group consume: a topic of 8 partitions filled with --records records of
   --record-size bytes; one consumer (a group of one) reads them all, then --group-size
   member processes share them; MB/s of each, as a ratio, in the same run.

Without --socket and $ODRADEK_SOCKET a throwaway broker is started (perf/_broker.py).
A benchmark, not a test.
"""
import argparse
import multiprocessing as mp
import statistics
import time
import uuid

from _broker import MB, broker_socket, log, run, topic

READY_TIMEOUT_S = 60.0


def _member(conn, sock, name, group, mode):
    """A member process: connect, say ready, wait for 'go', subscribe, then report."""
    from odradek.client import Consumer
    assigned = set()
    consumed = [0, 0]
    c = Consumer({"socket": sock, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000,
                  "heartbeat.interval.ms": 500})
    try:
        conn.send("ready")
        conn.recv()                                           # go
        c.subscribe([name], on_assign=lambda _c, parts: assigned.update((p.topic, p.partition) for p in parts),
                    on_revoke=lambda _c, parts: assigned.difference_update((p.topic, p.partition)
                                                                             for p in parts))
        deadline = time.monotonic() + 120
        last = None
        while time.monotonic() < deadline:
            got = c.consume(1000, 0.05)
            if mode == "rebalance":
                conn.send(("assigned", time.monotonic(), sorted(assigned)))
                if conn.poll(0) and conn.recv() == "stop":
                    break
            else:
                for r in got:
                    consumed[0] += 1
                    consumed[1] += len(r.value())
                if got:
                    last = time.monotonic()
                conn.send(("consumed", consumed[0], consumed[1], last))
                if conn.poll(0) and conn.recv() == "stop":
                    break
    finally:
        c.close()
        conn.close()


def _start_members(n, sock, name, group, mode):
    ctx = mp.get_context("fork")
    members = []
    for _ in range(n):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_member, args=(child, sock, name, group, mode), daemon=True)
        proc.start()
        members.append((proc, parent))
    for proc, parent in members:
        if not parent.poll(READY_TIMEOUT_S) or parent.recv() != "ready":
            raise SystemExit("a member process did not start")
    return members


def _stop(members):
    for proc, parent in members:
        try:
            parent.send("stop")
        except OSError:
            pass
    for proc, parent in members:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(10)


def _workers_ready(sock, name):
    """Wait until every partition's worker answers (they start when the topic is made,
    and 100 of them starting would be timed as part of the rebalance otherwise)."""
    from odradek.client import Admin
    with Admin(sock) as admin:
        for _ in range(600):
            if all(p.log_end_offset >= 0 for p in admin.status([name]).partitions):
                return
            time.sleep(0.05)
    raise SystemExit(f"the workers of {name} did not start")


def rebalance_once(sock, members, partitions):
    with topic(sock, partitions=partitions, prefix="rebalance") as name:
        _workers_ready(sock, name)
        group = f"perf-{uuid.uuid4().hex[:8]}"
        procs = _start_members(members, sock, name, group, "rebalance")
        try:
            start = time.monotonic()
            for _, parent in procs:
                parent.send("go")
            owned = {}
            deadline = start + 120
            done_at = None
            while time.monotonic() < deadline and done_at is None:
                for i, (_, parent) in enumerate(procs):
                    while parent.poll(0):
                        _, t, parts = parent.recv()
                        owned[i] = (t, set(map(tuple, parts)))
                union = set().union(*(p for _, p in owned.values())) if owned else set()
                if len(union) == partitions and len(owned) == members:
                    done_at = max(t for t, _ in owned.values())
                time.sleep(0.005)
            if done_at is None:
                raise SystemExit("the group did not assign every partition within 120 s")
            return done_at - start
        finally:
            _stop(procs)


def commits(sock, count):
    from odradek.client import Consumer, TopicPartition
    with topic(sock, partitions=1, prefix="commits") as name:
        with Consumer({"socket": sock, "group.id": f"perf-{uuid.uuid4().hex[:8]}",
                       "enable.auto.commit": False}) as c:
            c.subscribe([name])
            for _ in range(2000):        # until assigned (bounded)
                c.poll(0.05)
                if c.assignment():
                    break
            t0 = time.perf_counter()
            for i in range(count):
                c.commit([TopicPartition(name, 0, i)])
            dt = time.perf_counter() - t0
    return count / dt, dt / count * 1e6


def fill(sock, name, records, size):
    from odradek.client import Producer
    value = b"x" * size
    with Producer({"socket": sock, "acks": 1, "linger.ms": 5, "batch.size": 65536}) as p:
        for i in range(records):
            p.produce(name, value, partition=i % 8)
            if i % 10000 == 0:
                p.poll(0)
        p.flush(120)


def group_consume(sock, name, size, records):
    group = f"perf-{uuid.uuid4().hex[:8]}"
    procs = _start_members(size, sock, name, group, "consume")
    try:
        start = time.monotonic()
        for _, parent in procs:
            parent.send("go")
        state = {}
        deadline = start + 300
        while time.monotonic() < deadline:
            for i, (_, parent) in enumerate(procs):
                while parent.poll(0):
                    _, n, nbytes, last = parent.recv()
                    state[i] = (n, nbytes, last)
            if sum(n for n, _, _ in state.values()) >= records:
                break
            time.sleep(0.01)
        total = sum(n for n, _, _ in state.values())
        nbytes = sum(b for _, b, _ in state.values())
        end = max(last for _, _, last in state.values() if last is not None)
        return total, nbytes, end - start
    finally:
        _stop(procs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: perf/group_perf.py --members 10 --partitions 100 --runs 3")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--commits", type=int, default=5000)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--initial-delay-ms", type=int, default=0)
    ap.add_argument("--socket")
    args = ap.parse_args()
    overrides = [f"group.initial.rebalance.delay.ms={args.initial_delay_ms}"]
    with broker_socket(args.socket, overrides) as sock:
        times = [rebalance_once(sock, args.members, args.partitions) for _ in range(args.runs)]
        print(f"rebalance: {args.members} members over {args.partitions} partitions, join to all-assigned: "
              f"median {statistics.median(times) * 1000:.0f} ms (runs: "
              f"{', '.join(f'{t * 1000:.0f}' for t in times)} ms)")
        rates = [commits(sock, args.commits) for _ in range(args.runs)]
        rate = statistics.median(r for r, _ in rates)
        us = statistics.median(u for _, u in rates)
        print(f"commits: {rate:,.0f} commits/s, {us:.0f} us each (synchronous, one member), median of {args.runs}")
        with topic(sock, partitions=8, prefix="groupread") as name:
            fill(sock, name, args.records, args.record_size)
            one = group_consume(sock, name, 1, args.records)
            many = group_consume(sock, name, args.group_size, args.records)
        mb1, mbn = one[1] / MB / one[2], many[1] / MB / many[2]
        print(f"consume: 1 consumer {one[0]} records in {one[2]:.2f} s = {mb1:.1f} MB/s; "
              f"{args.group_size}-member group {many[0]} records in {many[2]:.2f} s = {mbn:.1f} MB/s; "
              f"ratio {mbn / mb1:.2f}x ({args.record_size} B records, 8 partitions)")
    log("done")


if __name__ == "__main__":
    run(main)
