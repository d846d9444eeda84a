"""Fetch from older data through the gateway: offsets before the shared-memory window
(GetSegment and runs read with pread), across segment files, and segment fds let go of
once retention deleted their files; and Metadata's auto-creation, on this module's broker
(auto.create.topics.enable=true)."""
import os

import kio.index
import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin, Producer
from odradek.daemon.gateway.codec import build
from support.broker import BrokerProcess, stop_cleanly, wait_until
from support.gateway import GatewayProcess, KafkaWire

WINDOW = 1023      # the partition state's descriptors: DEFAULT_SLOTS - 1 batches


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwsegs")
    broker = BrokerProcess(tmp / "data", args=["--override", "log.retention.check.interval.ms=100",
                                                       "--override", "auto.create.topics.enable=true"]).start()
    gw = GatewayProcess(broker.socket_path, tmp).start()
    yield broker, gw
    gw.stop()
    stop_cleanly(broker)


def fetch(wire, topic, offset, max_bytes):
    r = wire.call(build(kio.index.load_request_schema(1, 12), replica_id=-1, max_wait=0, min_bytes=0,
                        max_bytes=max_bytes, isolation_level=0, session_id=0, session_epoch=-1, topics=[
                            dict(topic=topic, partitions=[dict(partition=0, fetch_offset=offset,
                                                               current_leader_epoch=-1, last_fetched_epoch=-1,
                                                               log_start_offset=-1, partition_max_bytes=max_bytes)])],
                        forgotten_topics_data=[], rack_id=""))
    return r.responses[0].partitions[0]


def log_start(wire, topic):
    """The partition's log start offset, by ListOffsets (EARLIEST): a Fetch answered
    OFFSET_OUT_OF_RANGE says -1 there, as Kafka's does."""
    r = wire.call(build(kio.index.load_request_schema(2, 7), replica_id=-1, isolation_level=0, topics=[
        dict(name=topic, partitions=[dict(partition_index=0, current_leader_epoch=-1, timestamp=-2)])]))
    return r.topics[0].partitions[0].offset


def batches(records):
    """[(base offset, last offset)] of the whole batches in `records`."""
    out, pos, data = [], 0, bytes(records)
    while pos < len(data):
        base = int.from_bytes(data[pos:pos + 8], "big")
        size = int.from_bytes(data[pos + 8:pos + 12], "big") + 12
        assert pos + size <= len(data), "a partial batch"
        out.append((base, base + int.from_bytes(data[pos + 23:pos + 27], "big")))
        pos += size
    return out


def produce_batches(broker, topic, n):
    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        for i in range(n):
            p.produce(topic, b"value-%05d" % i, partition=0)
            if i % 100 == 99:
                assert p.flush(20) == 0
        assert p.flush(20) == 0


def test_reading_the_whole_log_from_before_the_window(env):
    broker, gw = env
    n = WINDOW + 400
    with Admin(broker.socket_path) as admin:
        admin.create_topic("old", num_partitions=1, config={"segment.bytes": "8192"})
    produce_batches(broker, "old", n)
    seen = []
    with KafkaWire(gw.port) as wire:
        offset = 0
        for _ in range(n):
            part = fetch(wire, "old", offset, max_bytes=2000)
            assert part.error_code == ErrorCode.none and part.high_watermark == n
            got = batches(part.records)
            assert got and got[0][0] == offset
            seen += got
            offset = got[-1][1] + 1
            if offset == n:
                break
        assert [b for b, _ in seen] == list(range(n))      # every batch once, in order, whole
        one = fetch(wire, "old", 5, max_bytes=1)              # mid-log, at least one batch
        assert batches(one.records) == [(5, 5)]


def _deleted_fds(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".log (deleted)"):
            out.append(target)
    return out


def test_segment_fds_are_let_go_once_retention_deleted_their_files(env):
    broker, gw = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("gone", num_partitions=1, config={"segment.bytes": "4096", "retention.bytes": "8192"})
    produce_batches(broker, "gone", 200)
    with KafkaWire(gw.port) as wire:
        start = fetch(wire, "gone", 0, 1 << 20)
        assert start.error_code in (ErrorCode.none, ErrorCode.offset_out_of_range)
        first = log_start(wire, "gone")
        assert fetch(wire, "gone", first, 100).records       # the gateway now holds the oldest segment's fd
        produce_batches(broker, "gone", 300)                  # retention deletes it
        wait_until(lambda: log_start(wire, "gone") > first + 100, timeout=15,
                   what="retention to delete old segments")
        # a fetch after SWEEP_S looks at the fds it holds and lets go of deleted files
        wait_until(lambda: fetch(wire, "gone", log_start(wire, "gone"), 100).records is not None
                   and not _deleted_fds(gw.proc.pid), timeout=10, what="the deleted segments' fds closed")


def test_metadata_creates_a_topic_when_the_client_and_the_broker_allow_it(env):
    broker, gw = env
    cls = kio.index.load_request_schema(3, 12)
    with KafkaWire(gw.port) as wire:
        made = wire.call(build(cls, topics=[dict(name="auto-made")], allow_auto_topic_creation=True,
                               include_topic_authorized_operations=False)).topics[0]
        assert made.error_code == ErrorCode.none and made.partitions
        kept = wire.call(build(cls, topics=[dict(name="not-made")], allow_auto_topic_creation=False,
                               include_topic_authorized_operations=False)).topics[0]
        assert kept.error_code == ErrorCode.unknown_topic_or_partition
    with Admin(broker.socket_path) as admin:
        assert "auto-made" in admin.list_topics() and "not-made" not in admin.list_topics()
