"""DeleteRecords (Kafka's key 21) on the control socket: the leader's log start offset
moves up at once and consumers' earliest offset with it; the follower replicas drop the
same records at their next retention check."""
import pytest

from odradek.client import Admin, Producer
from odradek.client.errors import OffsetOutOfRange
from odradek.client.protocol import ControlClient, messages as m
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from support.broker import multi_dir_broker, stop_cleanly, wait_until


@pytest.fixture
def broker(tmp_path):
    b = multi_dir_broker(tmp_path, ["a", "b"])
    b.args = ["--override", "log.retention.check.interval.ms=100"]
    b.start()
    yield b
    stop_cleanly(b)


def delete_records(socket_path, topic, partition, offset):
    client = ControlClient(socket_path)
    try:
        response, _ = client.call(m.DeleteRecordsRequest(topics=[m.DeleteRecordsTopic(
            name=topic, partitions=[m.DeleteRecordsPartition(partition_index=partition, offset=offset)])]))
    finally:
        client.close()
    (t,) = response.topics
    (p,) = t.partitions
    return p.low_watermark, p.error_code


def test_delete_records_moves_the_log_start_of_leader_and_followers(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("trimmed", 1, replication_factor=2)
        with Producer({"socket": broker.socket_path, "acks": "all"}) as producer:
            for i in range(20):
                producer.produce("trimmed", b"v%d" % i, partition=0)
            producer.flush(10)
        assert delete_records(broker.socket_path, "trimmed", 0, 12) == (12, 0)
        assert admin.list_offsets("trimmed", 0, "earliest")[0] == 12
        assert delete_records(broker.socket_path, "trimmed", 0, 5) == (12, 0)        # lower: nothing changes
        assert delete_records(broker.socket_path, "trimmed", 0, 21) == (-1, OffsetOutOfRange.code)
        (p,) = admin.describe_topic("trimmed").partitions
    follower_dir = broker.dirs[[r for r in p.replicas if r != p.leader][0]]
    wait_until(lambda: LogDirCheckpoints(follower_dir).read(("trimmed", 0))[1] == 12, timeout=15,
               what="the follower's log start offset to follow the leader's")
    assert LogDirCheckpoints(broker.dirs[p.leader]).read(("trimmed", 0))[1] == 12
