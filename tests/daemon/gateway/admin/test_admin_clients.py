"""Unmodified Kafka admin clients through the gateway: kafka-python's KafkaAdminClient and
confluent-kafka's AdminClient create, describe, alter and delete topics and configs,
delete records, describe log dirs and list transactions; Admin sees what they did and
they see what Admin did. They bootstrap with Metadata, which the data family serves."""
import pytest

pytest.importorskip("odradek.daemon.gateway.metadata_api")
confluent = pytest.importorskip("confluent_kafka")
from confluent_kafka import TopicPartition as ConfluentTopicPartition   # noqa: E402
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,  # noqa: E402
                                   NewPartitions, NewTopic)
from kafka import KafkaAdminClient, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType  # noqa: E402
from kafka.admin import NewPartitions as KNewPartitions, NewTopic as KNewTopic  # noqa: E402
from kafka.errors import TopicAlreadyExistsError  # noqa: E402

from odradek.client import Producer  # noqa: E402
from odradek.client.errors import OdradekError  # noqa: E402
from support.broker import wait_until  # noqa: E402
from support.txn_client import begin  # noqa: E402
from odradek.client.protocol import ControlClient  # noqa: E402

TIMEOUT = 15


@pytest.fixture
def kafka_admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.gateway.bootstrap, request_timeout_ms=TIMEOUT * 1000)
    yield client
    client.close()


@pytest.fixture
def confluent_admin(broker):
    return AdminClient({"bootstrap.servers": broker.gateway.bootstrap})


def serving(admin, topic, partition):
    """Whether the partition's leader answers (a config change restarts it)."""
    try:
        admin.list_offsets(topic, partition, "earliest")
        return True
    except OdradekError as e:
        if e.retriable:
            return False
        raise


def done(futures):
    """{key: result} once every future of a confluent-kafka call has its answer."""
    return {k: f.result(TIMEOUT) for k, f in futures.items()}


def test_confluent_admin_client_topics_and_configs(confluent_admin, admin, broker):
    done(confluent_admin.create_topics([NewTopic("cf-topic", 2, 1, config={"retention.ms": "3600000"})]))
    assert len(admin.describe_topic("cf-topic").partitions) == 2
    assert admin.describe_configs("cf-topic")["retention.ms"] == ("3600000", "topic")
    with pytest.raises(confluent.KafkaException) as failed:
        done(confluent_admin.create_topics([NewTopic("cf-topic", 1, 1)]))
    assert failed.value.args[0].code() == confluent.KafkaError.TOPIC_ALREADY_EXISTS

    (configs,) = done(confluent_admin.describe_configs([ConfigResource("topic", "cf-topic")])).values()
    assert configs["retention.ms"].value == "3600000" and configs["cleanup.policy"].value == "delete"
    done(confluent_admin.incremental_alter_configs([ConfigResource("topic", "cf-topic", incremental_configs=[
        ConfigEntry("segment.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])]))
    described = admin.describe_configs("cf-topic")
    assert described["segment.ms"] == ("7200000", "topic") and described["retention.ms"][1] != "topic"

    done(confluent_admin.create_partitions([NewPartitions("cf-topic", 3)]))
    assert len(admin.describe_topic("cf-topic").partitions) == 3
    with Producer({"socket": broker.socket_path}) as producer:
        for i in range(5):
            producer.produce("cf-topic", b"%d" % i, partition=0)
        producer.flush(10)
    (deleted,) = done(confluent_admin.delete_records([ConfluentTopicPartition("cf-topic", 0, 3)])).values()
    assert deleted.low_watermark == 3 and admin.list_offsets("cf-topic", 0, "earliest")[0] == 3

    done(confluent_admin.delete_topics(["cf-topic"]))
    assert "cf-topic" not in admin.list_topics()


def test_confluent_admin_client_sees_what_admin_made(confluent_admin, admin):
    admin.create_topic("made-by-admin", 1, config={"max.message.bytes": 2000000})
    (configs,) = done(confluent_admin.describe_configs([ConfigResource("topic", "made-by-admin")])).values()
    assert configs["max.message.bytes"].value == "2000000"
    assert configs["max.message.bytes"].source == confluent.admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    (broker_configs,) = done(confluent_admin.describe_configs([ConfigResource("broker", "0")])).values()
    assert broker_configs["num.partitions"].value == "8" and broker_configs["num.partitions"].is_read_only


def test_kafka_python_admin_client_topics_configs_log_dirs(kafka_admin, admin):
    kafka_admin.create_topics([KNewTopic("kp-topic", 2, 1, topic_configs={"cleanup.policy": "compact"})])
    assert len(admin.describe_topic("kp-topic").partitions) == 2
    with pytest.raises(TopicAlreadyExistsError):
        kafka_admin.create_topics([KNewTopic("kp-topic", 1, 1)])
    described = kafka_admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-topic")],
                                             config_filter="all")
    (configs,) = described.values()
    entries = configs["kp-topic"]
    assert "compact" in str(entries["cleanup.policy"]) and "retention.ms" in entries
    kafka_admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-topic",
                                               configs={"retention.ms": "120000"})], incremental=False)
    overrides = {k: v for k, (v, src) in admin.describe_configs("kp-topic").items() if src == "topic"}
    # AlterConfigs replaces every override; kafka-python sends the ones the topic has along
    assert overrides == {"retention.ms": "120000", "cleanup.policy": "compact"}
    kafka_admin.create_partitions({"kp-topic": KNewPartitions(3)})
    assert len(admin.describe_topic("kp-topic").partitions) == 3
    dirs = str(kafka_admin.describe_log_dirs())
    assert "kp-topic" in dirs
    wait_until(lambda: serving(admin, "kp-topic", 0), what="kp-topic-0's leader, restarted for its new config")
    kafka_admin.delete_records({TopicPartition("kp-topic", 0): 0})
    kafka_admin.delete_topics(["kp-topic"])
    assert "kp-topic" not in admin.list_topics()


def test_kafka_python_lists_and_describes_a_transaction(kafka_admin, admin, broker):
    pytest.importorskip("odradek.daemon.gateway.groups_api")     # FindCoordinator: the groups family's
    admin.create_topic("kp-txn", 1)
    client = ControlClient(broker.socket_path)
    try:
        producer = begin(client, "kp-txn-1", [("kp-txn", 0)])
    finally:
        client.close()
    listed = str(kafka_admin.list_transactions())
    assert "kp-txn-1" in listed and "Ongoing" in listed
    described = str(kafka_admin.describe_transactions(["kp-txn-1"]))
    assert "kp-txn-1" in described and str(producer.producer_id) in described
