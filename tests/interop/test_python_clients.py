"""confluent-kafka (librdkafka 2.x), kafka-python and aiokafka, unmodified, against the listener:
keyed placement, headers, every codec, groups with two members and a rebalance, commit and
resume, admin calls."""
import asyncio
import time

import pytest

from support.broker import wait_until
from support.interop import create_topic

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource  # noqa: E402

POLL_DEADLINE = 30.0


def ck_consume(consumer, n, deadline=POLL_DEADLINE):
    """n messages from a confluent-kafka consumer, failing on an error or after `deadline` s."""
    out, end = [], time.monotonic() + deadline
    while len(out) < n:
        assert time.monotonic() < end, f"got {len(out)} of {n}"
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        out.append(msg)
    return out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_keys_headers_codecs(bootstrap, topic_name, codec):
    create_topic(bootstrap, topic_name, partitions=3)
    producer = ck.Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "enable.idempotence": True,
                            "linger.ms": 20})
    for i in range(60):
        producer.produce(topic_name, key=f"key-{i % 7}", value=f"{codec}-{i}".encode() * 20,
                         headers=[("n", str(i).encode())])
    assert producer.flush(30) == 0
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic_name}",
                            "auto.offset.reset": "earliest"})
    consumer.subscribe([topic_name])
    msgs = ck_consume(consumer, 60)
    consumer.close()
    partition_of = {}
    for m in msgs:
        assert m.value() == f"{codec}-{dict(m.headers())['n'].decode()}".encode() * 20
        partition_of.setdefault(m.key(), set()).add(m.partition())
    assert all(len(ps) == 1 for ps in partition_of.values())          # one key, one partition
    assert len(partition_of) == 7


def test_confluent_group_rebalance_commit_and_resume(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, partitions=4)
    group = f"g-{topic_name}"
    producer = ck.Producer({"bootstrap.servers": bootstrap})
    for i in range(40):
        producer.produce(topic_name, value=str(i).encode(), partition=i % 4)
    assert producer.flush(30) == 0

    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500}
    first = ck.Consumer(conf)
    first.subscribe([topic_name])
    got = ck_consume(first, 40)
    first.commit(asynchronous=False)
    assert len(first.assignment()) == 4

    second = ck.Consumer(conf)
    second.subscribe([topic_name])
    end = time.monotonic() + POLL_DEADLINE                          # both poll until the group splits
    while not (len(first.assignment()) == 2 and len(second.assignment()) == 2):
        assert time.monotonic() < end, (first.assignment(), second.assignment())
        first.poll(0.2)
        second.poll(0.2)
    for i in range(40, 48):
        producer.produce(topic_name, value=str(i).encode(), partition=i % 4)
    assert producer.flush(30) == 0
    later, end = [], time.monotonic() + POLL_DEADLINE
    while len(later) < 8:                                           # only the new ones: offsets resumed
        assert time.monotonic() < end, later
        for c in (first, second):
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                later.append(int(m.value()))
    assert sorted(later) == list(range(40, 48))
    assert sorted(int(m.value()) for m in got) == list(range(40))
    first.close()
    second.close()


def test_confluent_admin(bootstrap, topic_name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(bootstrap, topic_name, partitions=2)
    md = admin.list_topics(timeout=10)
    assert len(md.topics[topic_name].partitions) == 2
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)

    def retention():    # Kafka applies a config change through its metadata log: seen soon, not at once
        described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)])
        return next(iter(described.values())).result(timeout=30)["retention.ms"].value == "7200000"
    wait_until(retention, timeout=10, what="the altered retention.ms")
    admin.delete_topics([topic_name], operation_timeout=30)[topic_name].result(timeout=30)


def test_kafka_python_produce_group_consume_admin(bootstrap, topic_name):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
    assert topic_name in admin.list_topics()
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", acks="all")
    for i in range(25):
        producer.send(topic_name, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("h", b"1")])
    producer.flush(30)
    producer.close()
    group = f"g-{topic_name}"
    consumer = KafkaConsumer(topic_name, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=15000)
    seen = []
    for record in consumer:
        seen.append((record.key, record.value, record.headers))
        if len(seen) == 25:
            break
    consumer.commit()
    consumer.close()
    assert sorted(seen) == sorted((f"k{i}".encode(), f"v{i}".encode(), [("h", b"1")]) for i in range(25))
    offsets = admin.list_group_offsets(group)
    assert sum(o.offset for o in offsets[group].values()) == 25
    admin.close()


def test_aiokafka_produce_and_group_consume(bootstrap, topic_name):
    aiokafka = pytest.importorskip("aiokafka")
    create_topic(bootstrap, topic_name, partitions=2)

    async def go():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(topic_name, key=f"k{i}".encode(), value=f"v{i}".encode())
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(topic_name, bootstrap_servers=bootstrap, group_id=f"g-{topic_name}",
                                             auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        seen = []
        try:
            async with asyncio.timeout(POLL_DEADLINE):
                async for record in consumer:
                    seen.append((record.key, record.value))
                    if len(seen) == 20:
                        break
            await consumer.commit()
        finally:
            await consumer.stop()
        return seen

    seen = asyncio.run(go())
    assert sorted(seen) == sorted((f"k{i}".encode(), f"v{i}".encode()) for i in range(20))
