"""Apache Kafka's own CLI tools (kafka-topics, kafka-console-producer/consumer,
kafka-consumer-groups, kafka-producer-perf-test; Kafka 4.4's Java client underneath, on the
machine's JDK) against the listener."""
import re
import shutil

import pytest

from support.interop import java

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="no JDK: install a JDK 17+")

TOOLS = "org.apache.kafka.tools."


def topics(bootstrap, *args):
    return java(TOOLS + "TopicCommand", "--bootstrap-server", bootstrap, *args).stdout


def test_kafka_topics_create_describe_alter_delete(bootstrap, topic_name):
    topics(bootstrap, "--create", "--topic", topic_name, "--partitions", "3", "--config", "retention.ms=3600000")
    assert topic_name in topics(bootstrap, "--list").split()
    described = topics(bootstrap, "--describe", "--topic", topic_name)
    assert re.search(rf"Topic: {re.escape(topic_name)}\s.*PartitionCount: 3", described), described
    assert "retention.ms=3600000" in described
    assert len(re.findall(r"Partition: \d+\s+Leader: \d+", described)) == 3
    topics(bootstrap, "--alter", "--topic", topic_name, "--partitions", "4")
    assert "PartitionCount: 4" in topics(bootstrap, "--describe", "--topic", topic_name)
    topics(bootstrap, "--delete", "--topic", topic_name)


def test_console_producer_to_console_consumer_in_a_group(bootstrap, topic_name):
    topics(bootstrap, "--create", "--topic", topic_name, "--partitions", "2")
    lines = [f"key{i}:value {i}" for i in range(20)]
    java(TOOLS + "ConsoleProducer", "--bootstrap-server", bootstrap, "--topic", topic_name,
         "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
         input="\n".join(lines) + "\n")
    group = f"g-{topic_name}"
    out = java(TOOLS + "consumer.ConsoleConsumer", "--bootstrap-server", bootstrap, "--topic", topic_name,
               "--group", group, "--from-beginning", "--max-messages", "20",
               "--formatter-property", "print.key=true", "--formatter-property", "key.separator=:").stdout
    assert sorted(out.splitlines()) == sorted(lines)
    described = java(TOOLS + "consumer.group.ConsumerGroupCommand", "--bootstrap-server", bootstrap,
                     "--describe", "--group", group).stdout
    rows = [line.split() for line in described.splitlines() if line.startswith(group)]
    assert len(rows) == 2, described          # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    assert sum(int(r[3]) for r in rows) == 20 and all(r[5] == "0" for r in rows), described
    listed = java(TOOLS + "consumer.group.ConsumerGroupCommand", "--bootstrap-server", bootstrap, "--list").stdout
    assert group in listed.split()


def test_producer_perf_test(bootstrap, topic_name):
    topics(bootstrap, "--create", "--topic", topic_name, "--partitions", "1")
    out = java(TOOLS + "ProducerPerformance", "--topic", topic_name, "--num-records", "20000",
               "--record-size", "100", "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
               "acks=all").stdout
    assert re.search(r"^20000 records sent", out, re.M), out
