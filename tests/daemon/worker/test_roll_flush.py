"""A leader worker and its rolls' background fsync (storage/background_flush.py), on a
real broker: the fsync's end wakes the worker's loop (the log's flush_listener rings its
bell), which then moves the recovery point and completes what waited for it, with no
produce or timer to wake it otherwise."""
import contextlib
import json
import os

import pytest

from odradek.client import Admin, Producer
from odradek.daemon.storage import filenames, producer_snapshot
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from support.broker import BrokerProcess, stop_cleanly, wait_until

SMALL_SEGMENTS = {"segment.bytes": "4096"}
ROLLED_AT = 6   # the record at this offset, one batch of ~1.1 KiB each, starts a segment


@pytest.fixture
def broker(tmp_path):
    b = BrokerProcess(tmp_path / "data").start()
    yield b
    stop_cleanly(b)


@pytest.fixture
def replicated_broker(tmp_path):
    """A broker with three log dirs: replication factor 3."""
    data, dirs = tmp_path / "data", [tmp_path / f"disk{i}" for i in range(3)]
    for d in (data, *dirs):
        d.mkdir()
    config = tmp_path / "odradek.toml"
    config.write_text(f"log.dirs = {json.dumps([str(d) for d in dirs])}\n"
                      f"socket.path = {json.dumps(str(data / 'odradek.sock'))}\n")
    b = BrokerProcess(data, config=config).start()
    yield b
    stop_cleanly(b)


@contextlib.contextmanager
def producer(broker, acks):
    """A Producer closed with a bound wait: a record never acknowledged fails the test,
    never hangs it in close()."""
    p = Producer({"socket": broker.socket_path, "acks": acks})
    try:
        yield p
    finally:
        p.close(timeout=5)


def produce(producer, topic, first, count, timeout=10):
    """Offsets of `count` 1 KiB records, each sent once the previous one is acknowledged
    (the last one waits alone for what acknowledges it)."""
    offsets = []
    for i in range(first, first + count):
        producer.produce(topic, b"%04d" % i + bytes(1020), partition=0,
                         on_delivery=lambda err, rec: offsets.append(rec.offset() if err is None else err))
        assert producer.flush(timeout) == 0, f"record {i} not acknowledged within {timeout} s"
    return offsets


def segment_bases(partition_dir):
    parsed = [filenames.parse_segment_file(name) for name in os.listdir(partition_dir)]
    return sorted(p[0] for p in parsed if p is not None and p[1] == filenames.LOG_SUFFIX)


def test_an_idle_leader_moves_its_recovery_point_once_a_rolls_fsync_is_done(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, config=SMALL_SEGMENTS)
    partition_dir = os.path.join(broker.data_dir, filenames.partition_dir_name("t", 0))
    checkpoints = LogDirCheckpoints(broker.data_dir)
    with producer(broker, "1") as p:
        assert produce(p, "t", 0, ROLLED_AT) == list(range(ROLLED_AT))
        assert segment_bases(partition_dir)[-1] < ROLLED_AT
        assert produce(p, "t", ROLLED_AT, 1) == [ROLLED_AT]    # this append rolled, and was the last
        assert segment_bases(partition_dir)[-1] == ROLLED_AT
        # no append, no request, no timer comes now (the producer stays attached): the
        # flusher's wake-up alone gets the worker to collect the fsync
        wait_until(lambda: checkpoints.read(("t", 0))[0] == ROLLED_AT, timeout=10,
                   what=f"the recovery point at the last roll, {ROLLED_AT}")
        # the roll's producer-state snapshot, written without an fsync by the append and
        # synced with the rolled segment (PartitionLog.sync_with_roll)
        assert ROLLED_AT in producer_snapshot.offsets(partition_dir)


def test_acks_all_fsync_acknowledges_a_batch_behind_a_rolled_segment_once_its_fsync_is_done(broker):
    """acks.all.fsync: a batch appended after a roll is acknowledged only once the rolled
    segment below it is on disk too; the flusher's wake-up completes it."""
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1, config={**SMALL_SEGMENTS, "acks.all.fsync": "true"})
    partition_dir = os.path.join(broker.data_dir, filenames.partition_dir_name("t", 0))
    with producer(broker, "all") as p:
        assert produce(p, "t", 0, ROLLED_AT + 1) == list(range(ROLLED_AT + 1))
    assert segment_bases(partition_dir)[-1] == ROLLED_AT


def test_followers_publish_what_their_rolls_background_fsync_made_synced(replicated_broker):
    """acks.all.fsync with replication factor 3: the leader acknowledges below the
    smallest synced offset of the ISR, so each follower must publish its synced offset
    again once a roll's background fsync is done (its flusher rings its bell), even with
    nothing new to copy."""
    with Admin(replicated_broker.socket_path) as admin:
        admin.create_topic("t", 1, replication_factor=3,
                           config={**SMALL_SEGMENTS, "acks.all.fsync": "true", "min.insync.replicas": "3"})
    with producer(replicated_broker, "all") as p:
        assert produce(p, "t", 0, ROLLED_AT + 1) == list(range(ROLLED_AT + 1))
    # every replica wrote the roll's producer-state snapshot (the followers before the
    # append that rolled them), synced by the roll's background job
    dirs = [os.path.join(d, filenames.partition_dir_name("t", 0))
            for d in (os.path.join(os.path.dirname(replicated_broker.data_dir), f"disk{i}") for i in range(3))]
    wait_until(lambda: all(ROLLED_AT in producer_snapshot.offsets(d) for d in dirs), timeout=10,
               what="a snapshot at the roll in every replica's dir")
