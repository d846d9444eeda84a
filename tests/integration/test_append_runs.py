"""A leader appends a producer's consecutive ring entries in runs (one pwritev, one C
validation: daemon/worker/producers.py drain_runs, leader.py _append_run). Entries that
wait in the ring when the leader comes to them are such a run, deterministically: written
before the ring is attached, or while the leader is stopped (SIGSTOP). What a reader
sees must be what batch-by-batch appends gave: dense offsets, one descriptor per batch (a
consumer resuming inside a run, or seeking into one, starts at the right record), a
damaged batch refused alone, an idempotent producer's batches exactly once, in order,
and a log that `odradek dump-log --verify` passes."""
import os
import signal
import subprocess
import sys

from odradek.client import Admin, Consumer, Producer, TopicPartition
from odradek.client.errors import CorruptRecord
from odradek.client.records import CRC_OFFSET
from support.broker import wait_until
from support.raw_producer import produce_before_attaching
from support.records import make_batch

RECORDS_PER_BATCH, VALUE_BYTES = 20, 1000      # ~20 KB batches: two or more make a run


def batch(i):
    return bytes(make_batch([b"%06d-%03d" % (i, r) + b"." * (VALUE_BYTES - 10) for r in range(RECORDS_PER_BATCH)]))


def read_from(broker, topic, offset, count, **config):
    with Consumer({"socket": broker.socket_path, **config}) as c:
        c.assign([TopicPartition(topic, 0, offset)])
        got = []

        def all_read():
            got.extend(c.consume(count - len(got), 0.1))
            return len(got) >= count
        wait_until(all_read, timeout=20, what=f"{count} records from {offset} (got {len(got)})")
        return [(r.offset(), r.value()) for r in got]


def verify_log(broker, topic):
    odradek = os.path.join(os.path.dirname(sys.executable), "odradek")
    out = subprocess.run([odradek, "dump-log", "--verify", os.path.join(broker.data_dir, f"{topic}-0")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_a_run_reads_as_its_batches_from_any_offset(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("runs", 1)
    n = 40
    got = produce_before_attaching(broker.socket_path, "runs", [batch(i) for i in range(n)])
    assert got == [(i, i * RECORDS_PER_BATCH, 0) for i in range(n)]
    total = n * RECORDS_PER_BATCH
    expect = [(o, b"%06d-%03d" % divmod(o, RECORDS_PER_BATCH) + b"." * (VALUE_BYTES - 10)) for o in range(total)]
    # a small fetch size: each fetch ends inside a run, the next starts at the batch after
    assert read_from(broker, "runs", 0, total, **{"max.partition.fetch.bytes": 50_000}) == expect
    for offset in (RECORDS_PER_BATCH * 7, RECORDS_PER_BATCH * 7 + 13, total - 3):   # into a run
        assert read_from(broker, "runs", offset, total - offset) == expect[offset:]
    verify_log(broker, "runs")


def test_a_damaged_batch_in_a_run_is_refused_alone(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("damaged", 1)
    batches = [batch(i) for i in range(10)]
    bad = bytearray(batches[4])
    bad[CRC_OFFSET + 100] ^= 0xFF        # a byte the CRC covers
    batches[4] = bytes(bad)
    got = produce_before_attaching(broker.socket_path, "damaged", batches)
    bases = [i * RECORDS_PER_BATCH for i in range(9)]
    assert got == [(i, bases[i], 0) for i in range(4)] + [(4, -1, CorruptRecord.code)] + \
        [(i, bases[i - 1], 0) for i in range(5, 10)]
    values = [v for _, v in read_from(broker, "damaged", 0, 9 * RECORDS_PER_BATCH)]
    assert [v[:6] for v in values[::RECORDS_PER_BATCH]] == [b"%06d" % i for i in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
    verify_log(broker, "damaged")


def test_an_idempotent_producers_batches_waiting_in_its_ring_land_once_in_order(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("idem", 1)
    p = Producer({"socket": broker.socket_path, "acks": 1, "linger.ms": 0, "batch.size": 16384,
                  "produce.ring.bytes": 1 << 22})
    try:
        p.attach("idem")
        with Admin(broker.socket_path) as admin:
            status = admin.status()
        leader = [w.pid for w in status.workers if (w.topic, w.partition, w.role) == ("idem", 0, "leader")][0]
        count = 3000
        os.kill(leader, signal.SIGSTOP)     # the leader worker of the broker we started
        try:
            for i in range(count):
                p.produce("idem", b"%06d" % i + b"." * 994)
            p.poll(0)
        finally:
            os.kill(leader, signal.SIGCONT)
        assert p.flush(20) == 0
    finally:
        p.close()
    got = read_from(broker, "idem", 0, count)
    assert got == [(i, b"%06d" % i + b"." * 994) for i in range(count)]
    verify_log(broker, "idem")
