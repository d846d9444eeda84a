"""How long does a partition leader take to get its idempotence state at open?

    python perf/producer_state_open.py [--mib 256] [--producers 8] [--records 16] [--runs 3] [--dir DIR]

Writes --mib MiB of idempotent batches (--records records of 1000 bytes each, from
--producers producer ids in turn)
to one partition with Kafka's default segment.bytes (1 GiB: one segment) and writes the
producer-state snapshot a clean close writes. Then opens the worker's
state --runs times each way and prints the median:
  snapshot    as a restart after a clean stop: load the snapshot, replay nothing;
  tail scan   the .snapshot files deleted: replay the last 64 MiB of the log, as every
              open did before snapshots (and as an open still does without one).
Only the producer-state step is timed (LeaderWorker.rebuild_producer_state), not the
log's own open.
"""
import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time

from odradek.client.records import BatchBuilder
from odradek.daemon.storage import LogConfig, PartitionLog, producer_snapshot
from odradek.daemon.worker.leader import LeaderWorker
from odradek.daemon.worker.spec import WorkerSpec


def build(partition_dir, mib, producers, records):
    log = PartitionLog(partition_dir, LogConfig({}))
    seqs = [0] * producers
    i = 0
    while log.size_in_bytes < mib << 20:
        pid = i % producers
        b = BatchBuilder(producer_id=1000 + pid, producer_epoch=0, base_sequence=seqs[pid])
        for _ in range(records):
            b.append(1_700_000_000_000, None, b"x" * 1000)
        seqs[pid] += records
        log.append(b.build())
        i += 1
    log.close()


def open_state(log_dir, snapshot=False):
    a, b = socket.socketpair()
    worker = LeaderWorker(a, WorkerSpec("perf", 0, 0, log_dir, {}, 0))
    worker.log = PartitionLog(worker.spec.partition_dir, LogConfig({}))
    started = time.perf_counter()
    worker.rebuild_producer_state()
    took = time.perf_counter() - started
    if snapshot:
        worker.snapshot_producer_state("a clean close")
    worker.log.close()
    a.close()
    b.close()
    return took, len(worker.producer_state)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--producers", type=int, default=8)
    ap.add_argument("--records", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(dir=args.dir)
    try:
        pdir = os.path.join(log_dir, "perf-0")
        build(pdir, args.mib, args.producers, args.records)
        open_state(log_dir, snapshot=True)       # the snapshot a clean close writes
        with_snap = [open_state(log_dir) for _ in range(args.runs)]
        for offset in producer_snapshot.offsets(pdir):
            os.unlink(os.path.join(pdir, "%020d.snapshot" % offset))
        without = [open_state(log_dir) for _ in range(args.runs)]
        for name, runs in (("snapshot", with_snap), ("tail scan", without)):
            print(f"{name:10s} {statistics.median(t for t, _ in runs) * 1000:8.2f} ms  "
                  f"({runs[0][1]} producers, log {args.mib} MiB)")
    finally:
        shutil.rmtree(log_dir)


if __name__ == "__main__":
    main()
