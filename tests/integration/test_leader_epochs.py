"""The leader-epoch cache of a real broker's partitions: written when the worker opens
as leader, its epoch stamped into every batch, cut by a torn-tail recovery and moved by
retention (daemon/storage/leader_epoch.py, FORMAT.md "Leader-epoch checkpoint")."""
import os
import struct

from click.testing import CliRunner

from odradek.client import Admin, Producer
from odradek.client.records import iter_batches
from odradek.daemon.cli import cli
from support.broker import BrokerProcess, wait_until
from support.records import mapped_segment

TOPIC = "epochs"


def partition_dir(broker):
    return os.path.join(broker.data_dir, f"{TOPIC}-0")


def epoch_file(broker):
    with open(os.path.join(partition_dir(broker), "leader-epoch-checkpoint"), "rb") as f:
        return f.read()


def produce(broker, first, n, size=100):
    with Producer({"socket": broker.socket_path, "linger.ms": 1000, "batch.size": 1024}) as p:
        for i in range(first, first + n):
            p.produce(TOPIC, (b"v%d-" % i).ljust(size, b"."), partition=0)
        assert p.flush(10) == 0


def segment_files(broker):
    d = partition_dir(broker)
    return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".log")]


def batch_epochs(broker):
    epochs = []
    for path in segment_files(broker):
        with mapped_segment(path) as data:
            epochs += [struct.unpack_from(">i", data, pos + 12)[0] for pos, _ in iter_batches(data)]
    return epochs


def verify(broker):
    result = CliRunner().invoke(cli, ["dump-log", "--verify", "-q", partition_dir(broker)])
    assert result.exit_code == 0, result.output


def test_a_produce_leaves_the_epoch_file_and_stamped_batches(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(TOPIC, 1)
        epoch = admin.describe_topic(TOPIC).partitions[0].leader_epoch
    produce(broker, 0, 30)
    assert epoch_file(broker) == b"0\n1\n%d 0\n" % epoch
    epochs = batch_epochs(broker)
    assert len(epochs) > 1 and set(epochs) == {epoch}
    assert broker.stop() == 0
    verify(broker)


def test_a_torn_tail_recovery_cuts_the_cache(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(TOPIC, 1)
        epoch = admin.describe_topic(TOPIC).partitions[0].leader_epoch
    produce(broker, 0, 50)
    assert broker.stop() == 0
    path = segment_files(broker)[-1]
    with open(path, "rb") as f:
        data = f.read()
    pos, last = list(iter_batches(data))[-1]
    log_end = last.last_offset + 1
    # a leader of the next epoch started at the log end and its first batch was torn
    torn = bytearray(last.buffer[:last.size])
    struct.pack_into(">qii", torn, 0, log_end, struct.unpack_from(">i", torn, 8)[0], epoch + 1)
    with open(path, "ab") as f:
        f.write(bytes(torn[:len(torn) // 2]))
    with open(os.path.join(partition_dir(broker), "leader-epoch-checkpoint"), "wb") as f:
        f.write(b"0\n2\n%d 0\n%d %d\n" % (epoch, epoch + 1, log_end))
    broker.start()
    with Admin(broker.socket_path) as admin:
        assert admin.list_offsets(TOPIC, 0, "latest")[0] == log_end
    assert epoch_file(broker) == b"0\n1\n%d 0\n" % epoch
    produce(broker, 50, 5)
    assert epoch_file(broker) == b"0\n1\n%d 0\n" % epoch
    assert broker.stop() == 0
    verify(broker)


def test_retention_moves_the_cache_to_the_new_log_start(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=["--override", "log.retention.check.interval.ms=50"]).start()
    try:
        with Admin(b.socket_path) as admin:
            admin.create_topic(TOPIC, 1, config={"segment.bytes": "4096", "retention.bytes": "8192"})
            epoch = admin.describe_topic(TOPIC).partitions[0].leader_epoch
            produce(b, 0, 400)
            start = wait_until(lambda: admin.list_offsets(TOPIC, 0, "earliest")[0] or None,
                               what="retention to move the log start")
        assert epoch_file(b) == b"0\n1\n%d %d\n" % (epoch, start)
        assert b.stop() == 0, b.stderr()
        verify(b)
    finally:
        b.kill()
