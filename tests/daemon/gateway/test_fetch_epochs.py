"""Fetch after a leader change, as a follower or a KIP-320 client sees it: an older
current_leader_epoch is FENCED_LEADER_EPOCH naming the leader and its epoch
(current_leader; v16+: its address in node_endpoints), and a last_fetched_epoch whose
end here is before the fetch offset gets diverging_epoch instead of records. A broker
with two log dirs (replication factor 2), its leader worker killed once."""
import os
import signal

import kio.index
import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin, Producer
from odradek.daemon.gateway.codec import build
from support.broker import multi_dir_broker, stop_cleanly, wait_until
from support.gateway import GatewayProcess, KafkaWire

TOPIC = "epochs"


@pytest.fixture(scope="module")
def failed_over(tmp_path_factory):
    """(KafkaWire, gateway port, first epoch, its end offset, new epoch, log end)."""
    tmp = tmp_path_factory.mktemp("epochs")
    broker = multi_dir_broker(tmp, ["a", "b"]).start()
    gw = None
    try:
        with Admin(broker.socket_path) as admin:
            admin.create_topic(TOPIC, 1, replication_factor=2)
            produce(broker, 5)
            (before,) = admin.describe_topic(TOPIC).partitions
            (pid,) = [w.pid for w in admin.status().workers
                      if (w.topic, w.partition, w.role) == (TOPIC, 0, "leader") and w.pid]
            os.kill(pid, signal.SIGKILL)       # a worker of the broker this fixture started
            wait_until(lambda: admin.describe_topic(TOPIC).partitions[0].leader_epoch > before.leader_epoch,
                       timeout=20, what="a new leader")
            produce(broker, 3)
            (after,) = admin.describe_topic(TOPIC).partitions
        gw = GatewayProcess(broker.socket_path, tmp).start()
        with KafkaWire(gw.port) as wire:
            yield wire, gw.port, before.leader_epoch, 5, after.leader_epoch, 8
    finally:
        if gw is not None:
            gw.stop()
        stop_cleanly(broker)


def produce(broker, n):
    with Producer({"socket": broker.socket_path, "acks": 1}) as p:
        for i in range(n):
            p.produce(TOPIC, b"v%d" % i, partition=0)
        assert p.flush(20) == 0


def fetch(wire, offset, current_leader_epoch=-1, last_fetched_epoch=-1, version=12):
    r = wire.call(build(kio.index.load_request_schema(1, version), dict(
        replica_id=-1, max_wait=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0, session_id=0,
        session_epoch=-1, forgotten_topics_data=[], rack_id="",
        topics=[dict(topic=TOPIC, topic_id=_topic_id(wire), partitions=[dict(
            partition=0, fetch_offset=offset, current_leader_epoch=current_leader_epoch,
            last_fetched_epoch=last_fetched_epoch, log_start_offset=-1, partition_max_bytes=1 << 20)])])))
    return r, r.responses[0].partitions[0]


def _topic_id(wire):
    r = wire.call(build(kio.index.load_request_schema(3, 12), dict(
        topics=[dict(name=TOPIC)], allow_auto_topic_creation=False, include_topic_authorized_operations=False)))
    return r.topics[0].topic_id


def test_an_older_leader_epoch_is_fenced_and_told_the_leader(failed_over):
    wire, port, old, _, new, _ = failed_over
    assert new > old
    for version in (12, 16):
        r, p = fetch(wire, 0, current_leader_epoch=old, version=version)
        assert p.error_code == ErrorCode.fenced_leader_epoch
        assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (0, new)
        if version >= 16:
            assert [(n.node_id, n.host, n.port) for n in r.node_endpoints] == [(0, "127.0.0.1", port)]
    _, p = fetch(wire, 0, current_leader_epoch=new)
    assert p.error_code == ErrorCode.none and p.current_leader.leader_id == -1 and len(p.records) > 0


def test_a_fetch_past_the_end_of_its_last_epoch_is_told_where_it_diverges(failed_over):
    wire, _, old, old_end, new, end = failed_over
    _, p = fetch(wire, old_end, last_fetched_epoch=old)          # where the old epoch ends: in step
    assert (p.error_code, p.diverging_epoch.epoch) == (ErrorCode.none, -1) and len(p.records) > 0
    _, p = fetch(wire, old_end + 2, last_fetched_epoch=old)      # wrote on in the old epoch: diverged
    assert p.error_code == ErrorCode.none and not p.records
    assert (p.diverging_epoch.epoch, p.diverging_epoch.end_offset) == (old, old_end)
    _, p = fetch(wire, end + 2, last_fetched_epoch=new)          # the current epoch ends at the log end
    assert (p.error_code, p.diverging_epoch.epoch, p.diverging_epoch.end_offset) == (ErrorCode.none, new, end)
    _, p = fetch(wire, 0, last_fetched_epoch=new + 5)             # no end known for a newer epoch
    assert p.error_code == ErrorCode.offset_out_of_range
