"""How much of the partition leader's CPU does one produce entry cost, at low rates where
every drain round takes one?

    python perf/leader_drain.py [--records 20000] [--record-size 100] [--runs 3] [--not-idempotent] [--profile]

In this process, with no broker: a LeaderWorker (daemon/worker/leader.py) opened on a
temp dir with the broker's shared memory (PartitionShm: the descriptor window consumers
read), and one producer attachment (acks=1, idempotent unless --not-idempotent) on real
rings, as OpenProducer makes it. Per record: the producer's one-record batch (built
before timing) is written into the produce ring, then the leader's
_drain_producers() is timed: take, check (producer state), append (the C append into
the segment), publish (descriptor, log end, high watermark), complete and release, ring
the producer's doorbell. Then an empty round is timed too: what a loop turn that finds
the rings empty costs (the leader's loop took one after every round that took entries,
until it slept on the snapshot it took before the round). Printed: the median, p90 and
mean per round in microseconds, the median of --runs runs; --profile adds a cProfile of
the taking rounds of one run.

Nobody waits on the words the leader wakes here (the consumer's seq, the producer's
doorbell): each futex wake finds no sleeper (~0.3 us). In a live broker those wakes wake
a process, which costs the leader microseconds more each on the dev VM (tens when busy),
as does its own sleep in futex_waitv between records: end_to_end_latency.py measures
the whole. A benchmark, not a test.
"""
import argparse
import cProfile
import os
import pstats
import shutil
import socket
import statistics
import tempfile
import time

from odradek.client.protocol import messages as m
from odradek.client.records import BatchBuilder
from odradek.client.shm import Doorbell, Ring
from odradek.daemon.broker.data_plane import PartitionShm
from odradek.daemon.worker.leader import LeaderWorker
from odradek.daemon.worker.spec import WorkerSpec
from odradek.daemon.worker.producers import ProducerAttachment

PRODUCER_ID = 7
WARMUP = 1000


def batches(count, size, idempotent):
    out = []
    for i in range(count):
        b = BatchBuilder(producer_id=PRODUCER_ID if idempotent else -1, producer_epoch=0 if idempotent else -1,
                         base_sequence=i if idempotent else -1)
        b.append(1_700_000_000_000 + i, None, b"x" * size)
        out.append(bytes(b.build()))
    return out


def one_run(data, idempotent, profile=None):
    """(taking round ns, empty round ns) per record, over the records after the warm-up."""
    log_dir = tempfile.mkdtemp()
    shm = PartitionShm(1024)
    ours, theirs = socket.socketpair()
    worker = LeaderWorker(ours, WorkerSpec("perf", 0, 0, log_dir, {}, 1, shm=shm))
    rings = []
    try:
        worker.open()
        requests, req_fd = Ring.create(1 << 20)
        completions, comp_fd = Ring.create(1 << 16)
        bell, bell_fd = Doorbell.create()
        rings = [requests, completions, bell]
        request = m.OpenProducerRequest(topic="perf", partition=0, acks=1,
                                        producer_id=PRODUCER_ID if idempotent else -1,
                                        producer_epoch=0 if idempotent else -1)
        att = ProducerAttachment(1, request, [req_fd, comp_fd, bell_fd])
        for fd in (req_fd, comp_fd, bell_fd):
            os.close(fd)
        worker.producers[1] = att
        worker._served = None
        drain, clock = worker._drain_producers, time.perf_counter_ns
        taking, empty = [], []
        for i, batch in enumerate(data):
            requests.write(batch)
            if profile is not None:
                profile.enable()
            t0 = clock()
            taken = drain()[0]
            t1 = clock()
            if profile is not None:
                profile.disable()
            drain()
            t2 = clock()
            if taken != 1:
                raise SystemExit(f"record {i}: a round took {taken} entries, not 1")
            done = att.completions.read_completion()
            if done is None or done.error_code or done.base_offset != i:
                raise SystemExit(f"record {i}: completion {done}")
            if i >= WARMUP:
                taking.append(t1 - t0)
                empty.append(t2 - t1)
        return taking, empty
    finally:
        worker.close()
        theirs.close()
        for thing in rings:
            thing.close()
        shm.close()
        shutil.rmtree(log_dir)


def summary(ns):
    ns = sorted(ns)
    return ns[len(ns) // 2] / 1000, ns[int(len(ns) * 0.9)] / 1000, statistics.fmean(ns) / 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--not-idempotent", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.records <= WARMUP:
        raise SystemExit(f"--records must be above the {WARMUP} warm-up records")
    idempotent = not args.not_idempotent
    data = batches(args.records, args.record_size, idempotent)
    profile = cProfile.Profile() if args.profile else None
    results = [one_run(data, idempotent, profile if run == 0 else None) for run in range(args.runs)]
    print(f"leader drain, one {args.record_size} B record a round ({'idempotent' if idempotent else 'plain'}), "
          f"median of {args.runs} runs, load average {os.getloadavg()[0]:.2f}:")
    for name, k in (("taking round", 0), ("empty round", 1)):
        figures = [summary(r[k]) for r in results]
        p50, p90, mean = (statistics.median(f[i] for f in figures) for i in range(3))
        print(f"  {name:13s} p50 {p50:6.2f} us  p90 {p90:6.2f} us  mean {mean:6.2f} us")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
