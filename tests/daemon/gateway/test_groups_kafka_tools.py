"""Kafka's own kafka-consumer-groups (org.apache.kafka.tools.consumer.group.ConsumerGroupCommand,
Kafka 4.x jars on the JDK) against odradek's groups through the gateway: --describe shows a
member that joined over TCP with its partitions and the offsets odradek's Admin committed,
--delete-offsets removes them (OffsetDelete).

The jars are those shared/tools/kafka-peer/setup.sh assembles ($KAFKA_LIBS, default
~/.cache/kafka-peer/libs); without them or java the test is skipped."""
import os
import shutil
import subprocess

import pytest

from odradek.client import Admin
from odradek.client.protocol.consumer_protocol import (
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicPartition)
from support.gateway import KafkaWire
from support.group_gateway import group_gateway, join_new, req, sync

pytest.importorskip("odradek.daemon.gateway.metadata_api", reason="the gateway has no metadata_api yet")
LIBS = os.environ.get("KAFKA_LIBS", os.path.expanduser("~/.cache/kafka-peer/libs"))
if not shutil.which("java") or not os.path.isdir(LIBS):
    pytest.skip(f"no java or no Kafka jars in {LIBS} (shared/tools/kafka-peer/setup.sh)", allow_module_level=True)
LEAVE_GROUP = 13


def consumer_groups(bootstrap, *args):
    """kafka-consumer-groups' stdout (its log goes to stderr)."""
    done = subprocess.run(["java", "-cp", os.path.join(LIBS, "*"),
                           "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                           "--bootstrap-server", bootstrap, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def test_kafka_consumer_groups_describes_and_deletes_offsets(tmp_path):
    with group_gateway(tmp_path, {"orders": 2}) as gw, KafkaWire(gw.port, client_id="tcp-app") as wire:
        with Admin(gw.broker.socket_path) as admin:
            admin.alter_group_offsets("billing", {("orders", 0): 1, ("orders", 1): 0})
        joined = join_new(wire, "billing", metadata=ConsumerProtocolSubscription(topics=["orders"]).encode_versioned(0))
        assignment = ConsumerProtocolAssignment(assigned_partitions=[
            TopicPartition(topic="orders", partitions=[0, 1])]).encode_versioned(0)
        sync(wire, "billing", joined.generation_id, joined.member_id, [(joined.member_id, assignment)])
        rows = [line.split() for line in consumer_groups(gw.bootstrap, "--describe", "--group", "billing").splitlines()]
        owned = {(r[1], r[2]): r for r in rows if r[:1] == ["billing"]}
        assert set(owned) == {("orders", "0"), ("orders", "1")}
        group, topic, partition, current, end, lag, consumer_id, host, client_id = owned[("orders", "0")][:9]
        assert (current, consumer_id, client_id) == ("1", joined.member_id, "tcp-app")
        assert host == "/127.0.0.1:%d" % wire.sock.getsockname()[1]
        wire.call(req(LEAVE_GROUP, 5, group_id="billing", members=[dict(member_id=joined.member_id)]))   # Empty now
        out = consumer_groups(gw.bootstrap, "--delete-offsets", "--group", "billing", "--topic", "orders:0")
        assert "Successful" in out
        with Admin(gw.broker.socket_path) as admin:
            assert admin.list_group_offsets("billing") == {("orders", 1): (0, "")}
