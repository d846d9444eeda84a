"""DeleteRecords (Kafka's key 21) on the control socket: the leader's log start offset
moves up at once and consumers' earliest offset with it, and the follower replicas' as
soon as they see it; Admin.delete_records and `odradek topics delete-records`."""
import pytest
from click.testing import CliRunner

from odradek.client import Admin, Producer, TopicPartition
from odradek.client.errors import OffsetOutOfRange, UnknownTopicOrPartition
from odradek.daemon.cli import cli
from odradek.client.protocol import ControlClient, messages as m
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from support.broker import multi_dir_broker, stop_cleanly, wait_until


@pytest.fixture
def broker(tmp_path, request):
    """Two log dirs (a follower for replication factor 2), retention checks every 100 ms
    or every `request.param` ms (indirect parametrization)."""
    b = multi_dir_broker(tmp_path, ["a", "b"])
    b.args = ["--override", f"log.retention.check.interval.ms={getattr(request, 'param', 100)}"]
    b.start()
    yield b
    stop_cleanly(b)


# retention checks ten minutes apart: nothing these tests see happens at one
rare_retention = pytest.mark.parametrize("broker", [600_000], indirect=True)


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


def _produce(socket_path, topic, count, partitions):
    with Producer({"socket": socket_path, "acks": "all"}) as producer:
        for i in range(count):
            for p in partitions:
                producer.produce(topic, b"v%d" % i, partition=p)
        assert producer.flush(10) == 0


@rare_retention
def test_a_follower_follows_the_leaders_log_start_at_once(broker):
    b = broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("trimmed", 1, replication_factor=2)
        _produce(b.socket_path, "trimmed", 20, [0])
        tp = TopicPartition("trimmed", 0)
        assert admin.delete_records({tp: 12}) == {tp: 12}
        (p,) = admin.describe_topic("trimmed").partitions
    follower_dir = b.dirs[[r for r in p.replicas if r != p.leader][0]]
    wait_until(lambda: LogDirCheckpoints(follower_dir).read(("trimmed", 0))[1] == 12, timeout=10,
               what="the follower's log start offset to follow the leader's before any retention check")


@pytest.fixture
def two(broker):
    """Topic "two": two partitions of ten records each."""
    with Admin(broker.socket_path) as admin:
        admin.create_topic("two", 2)
    _produce(broker.socket_path, "two", 10, [0, 1])
    return "two"


@rare_retention
def test_admin_delete_records_asks_every_partition_then_raises_the_first_error(broker, two):
    with Admin(broker.socket_path) as admin:
        assert admin.delete_records({("two", 0): 4, ("two", 1): -1}) == {("two", 0): 4, ("two", 1): 10}
        with pytest.raises(OffsetOutOfRange):
            admin.delete_records({("two", 0): 6, ("two", 1): 11})
        assert admin.list_offsets("two", 0, "earliest")[0] == 6        # the good one was done
        with pytest.raises(UnknownTopicOrPartition):
            admin.delete_records({("nope", 0): 1})
        with pytest.raises(ValueError):
            admin.delete_records({("two", 0): 1, TopicPartition("two", 0): 2})


@rare_retention
def test_topics_delete_records_command(broker, two):
    def run(*args):
        return CliRunner().invoke(cli, ["topics", "delete-records", *map(str, args), "--socket", broker.socket_path])
    r = run("two", "--partition", 0, "--partition", 1, "--before", 7)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [f"two-{p}: records below offset 7 deleted (the log start offset)"
                                     for p in (0, 1)]
    with Admin(broker.socket_path) as admin:
        assert [admin.list_offsets("two", p, "earliest")[0] for p in (0, 1)] == [7, 7]
    for args, code, says in [(("two", "--partition", 0, "--before", 11), 1, "high watermark"),
                             (("nope", "--partition", 0, "--before", 1), 1, "nope"),
                             (("two", "--partition", 0, "--before", -2), 2, "--before")]:
        r = run(*args)
        assert r.exit_code == code and r.stdout == "", (args, r.stdout, r.stderr)
        (line,) = r.stderr.splitlines()
        assert line.startswith("odradek: error: ") and says in line, line
