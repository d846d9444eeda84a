"""A size-limited filesystem filling up under the broker (issue 8, defect 3).

The data dir is a tmpfs mounted with size=, made by the test and unmounted after. A
store into a MAP_SHARED page of a full tmpfs is a SIGBUS, the failure this guards
against: space must be a checked error (KAFKA_STORAGE_ERROR on the delivery callback),
workers must live, acknowledged records must stay readable, and the partition must take
produces again by itself once space is freed.
"""
import itertools
import os
import subprocess
import sys
import time

import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.errors import StorageError
from support.broker import INTERNAL_PARTITIONS, BrokerProcess, consume_n, wait_until
from support.small_fs import mounted_tmpfs

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

FS_BYTES = 48 << 20
FILLER_BYTES = 12 << 20          # deleted to free space
VALUE = 16000                    # one record per 16 KiB batch
MAX_RECORDS = (FS_BYTES // VALUE) * 2   # bounds the filling loop
MAX_BLOCK_MS = 3000             # produce() raising RingFull after this is the old stall
PROMPT_S = 5.0                   # every record's report, error or not, comes sooner


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "data"
    mnt.mkdir()
    with mounted_tmpfs(mnt, FS_BYTES):
        yield mnt


@pytest.fixture
def full_broker(small_fs):
    b = BrokerProcess(small_fs, args=["--override", "group.initial.rebalance.delay.ms=0"])
    b.start()
    try:
        yield b
        code = b.stop()
        assert code == 0, f"broker exit status {code}: {b.stderr()}"
        assert not b.leftovers(), f"processes left behind: {b.leftovers()}"
    finally:
        b.kill()


def create(broker, name):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(name, num_partitions=1)


def _value(i):
    return i.to_bytes(8, "big") * (VALUE // 8)


def _produce(p, topic, n, acked, errors, numbers=itertools.count()):
    """Produce n records (values numbered across the test); their reports go into
    acked {offset: value} or errors."""
    def report(err, rec):
        if err is None:
            acked[rec.offset()] = rec.value()
        else:
            errors.append(err)
    for _ in range(n):
        p.produce(topic, _value(next(numbers)), partition=0, on_delivery=report)


def _read_all(broker, topic, acked):
    """Every acknowledged record of `topic`, checked byte for byte."""
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        recs = consume_n(c, max(acked) + 1)
    got = {r.offset(): r.value() for r in recs}
    missing = [o for o in acked if got.get(o) != acked[o]]
    assert not missing, f"{len(missing)} acknowledged records of {topic} unreadable, first {missing[:5]}"


def test_a_full_filesystem_fails_produces_cleanly_and_recovers_when_space_is_freed(full_broker, small_fs):
    b = full_broker
    started = time.monotonic()
    create(b, "fill")
    create(b, "other")
    # the internal topics' workers and one for each partition (they start a few per loop turn)
    workers = sorted(wait_until(lambda: len(b.workers()) == 2 + INTERNAL_PARTITIONS and b.workers(),
                                what="the workers"))
    with open(small_fs / "filler", "wb") as f:
        f.write(bytes(FILLER_BYTES))
    fill, other, errors = {}, {}, []
    config = {"socket": b.socket_path, "acks": 1, "linger.ms": 0, "max.block.ms": MAX_BLOCK_MS}
    p = Producer(config)
    try:
        _produce(p, "other", 50, other, errors)
        assert p.flush(10) == 0 and not errors and len(other) == 50
        # fill the filesystem: produce until the broker says it is out of space
        for _ in range(MAX_RECORDS // 64):
            _produce(p, "fill", 64, fill, errors)
            left = p.flush(PROMPT_S)
            assert left == 0, f"{left} records without a report {PROMPT_S}s after they were sent"
            if errors:
                break
        assert errors, f"{len(fill)} records of {VALUE} bytes fit a {FS_BYTES >> 20} MiB filesystem"
        assert all(isinstance(e.exception, StorageError) for e in errors), errors[:3]
        # a full disk stays a prompt, named error, never a stall or a dead worker
        t0, before = time.monotonic(), len(errors)
        _produce(p, "fill", 20, fill, errors)
        assert p.flush(PROMPT_S) == 0
        assert len(errors) - before == 20 and time.monotonic() - t0 < PROMPT_S
        assert sorted(b.workers()) == workers, f"a worker died: {b.stderr()}"
        assert "killed by signal" not in b.stderr()
        # acknowledged records stay readable, on this partition and the other
        _read_all(b, "fill", fill)
        _read_all(b, "other", other)

        # a new producer can still start (producer ids need no metadata write each)
        p2 = Producer(config)
        os.unlink(small_fs / "filler")

        # the partition takes produces again by itself, without a restart
        def accepted():
            errors.clear()
            before = len(fill)
            _produce(p2, "fill", 1, fill, errors)
            assert p2.flush(PROMPT_S) == 0
            return len(fill) > before
        wait_until(accepted, timeout=10, interval=0.05, what="a produce accepted after space was freed")
        errors.clear()
        _produce(p2, "fill", 100, fill, errors)
        _produce(p2, "other", 10, other, errors)
        assert p2.flush(10) == 0 and not errors, errors[:3]
        p2.close(5)
    finally:
        p.close(5)   # bounded: a stuck partition must fail the test, not hang it
    _read_all(b, "fill", fill)
    _read_all(b, "other", other)
    assert sorted(b.workers()) == workers and "killed by signal" not in b.stderr()
    assert b.stop() == 0, b.stderr()
    # the clean stop trimmed the segments: nothing past the data, every index right
    verify = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "dump-log", "--verify", "-q",
                             str(small_fs / "fill-0"), str(small_fs / "other-0")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    for name in os.listdir(small_fs / "fill-0"):   # and no allocated space left past it
        st = os.stat(small_fs / "fill-0" / name)
        assert st.st_blocks * 512 <= st.st_size + 4095, (name, st.st_size, st.st_blocks)
    assert time.monotonic() - started < 30
