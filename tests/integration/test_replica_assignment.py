"""Replica assignments on the control socket (CreateTopics v1, CreatePartitions): the
replicas of each partition named by log dir id, the first its preferred leader, as
Kafka's replica assignments name brokers."""
import pytest

from odradek.client import Admin
from odradek.client.errors import InvalidReplicaAssignment
from odradek.client.protocol import ControlClient, messages as m
from support.broker import multi_dir_broker, stop_cleanly


@pytest.fixture
def broker(tmp_path):
    b = multi_dir_broker(tmp_path, ["a", "b", "c"]).start()
    yield b
    stop_cleanly(b)


def create(client, name, placement):
    response, _ = client.call(m.CreateTopicsRequest(topics=[m.CreatableTopic(name=name, assignments=[
        m.CreatableReplicaAssignment(partition_index=i, broker_ids=r) for i, r in enumerate(placement)])]))
    (r,) = response.topics
    return r


def test_topics_and_partitions_go_where_the_assignments_say(broker):
    client = ControlClient(broker.socket_path)
    try:
        r = create(client, "placed", [[2, 0], [0, 1]])
        assert (r.error_code, r.num_partitions, r.replication_factor) == (0, 2, 2)
        bad = [create(client, "twice", [[1, 1]]), create(client, "uneven", [[0, 1], [2]]),
               create(client, "nowhere", [[0, 3]])]
        assert [b.error_code for b in bad] == [InvalidReplicaAssignment.code] * 3
        response, _ = client.call(m.CreatePartitionsRequest(topics=[m.CreatePartitionsTopic(
            name="placed", count=3, assignments=[m.CreatePartitionsAssignment(broker_ids=[1, 2])])]))
        assert response.results[0].error_code == 0
    finally:
        client.close()
    with Admin(broker.socket_path) as admin:
        described = admin.describe_topic("placed").partitions
        assert [(p.replicas, p.leader) for p in described] == [([2, 0], 2), ([0, 1], 0), ([1, 2], 1)]
        assert "twice" not in admin.list_topics()
