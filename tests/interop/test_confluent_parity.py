"""odradek's Python client behaves as confluent-kafka does where a program can tell: each
test runs one scenario twice, with odradek's client over shared memory and with
confluent-kafka through the listener (or ODRADEK_INTEROP_BOOTSTRAP's broker), and checks
the same outcome of both: what a failed delivery's callback gets, position() before a
partition is read, produce(timestamp=0) and produce(partition=-1)."""
import time
from types import SimpleNamespace

import pytest

from odradek.client import Admin
from odradek.client.errors import InvalidRecord
from odradek.client.partitioner import partition_for_key
from support.interop import create_topic

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import odradek.client as od  # noqa: E402

WAIT_S = 30.0
PARTITIONS = 3


@pytest.fixture(params=["odradek", "confluent"])
def kit(request, bootstrap, topic_name):
    """The client under test: its module, a config naming the broker, a topic factory."""
    if request.param == "odradek":
        sock = request.getfixturevalue("odradek_broker").socket_path

        def topic(suffix, partitions=PARTITIONS, config=None):
            with Admin(sock) as admin:
                admin.create_topic(f"{topic_name}-{suffix}", partitions, config=config)
            return f"{topic_name}-{suffix}"
        return SimpleNamespace(name="odradek", mod=od, conf={"socket": sock}, topic=topic)

    def topic(suffix, partitions=PARTITIONS, config=None):
        if config is None:
            return create_topic(bootstrap, f"{topic_name}-{suffix}", partitions)
        name = f"{topic_name}-{suffix}"
        admin = AdminClient({"bootstrap.servers": bootstrap})      # kept until the result: it ends with its handle
        admin.create_topics([NewTopic(name, partitions, 1, config=config)], operation_timeout=30)[name].result(WAIT_S)
        return name
    return SimpleNamespace(name="confluent", mod=ck, conf={"bootstrap.servers": bootstrap}, topic=topic)


def deliver(kit, topic, produce_kwargs, conf=None):
    """Produce records ({kwargs} each) and flush; their (err, message) delivery reports."""
    reports = []
    p = kit.mod.Producer({**kit.conf, **(conf or {})})
    try:
        for kwargs in produce_kwargs:
            p.produce(topic, on_delivery=lambda err, msg: reports.append((err, msg)), **kwargs)
        assert p.flush(WAIT_S) == 0
    finally:
        if kit.name == "odradek":
            p.close()
    assert len(reports) == len(produce_kwargs)
    return reports


def test_a_failed_delivery_reports_a_kafka_error_not_an_exception(kit):
    """A keyless record to a compacted topic: the broker refuses it (INVALID_RECORD), and
    on_delivery's err is a KafkaError, as the message's error() is."""
    topic = kit.topic("compacted", 1, {"cleanup.policy": "compact"})
    [(err, msg)] = deliver(kit, topic, [{"value": b"no key"}])
    assert isinstance(err, kit.mod.KafkaError) and not isinstance(err, BaseException), type(err)
    assert err.code() == kit.mod.KafkaError.INVALID_RECORD == 87 and err.name() == "INVALID_RECORD"
    assert (err.retriable(), err.fatal(), err.txn_requires_abort()) == (False, False, False)
    assert isinstance(err.str(), str) and err.str() and "INVALID_RECORD" in str(err)
    assert err == kit.mod.KafkaError.INVALID_RECORD and msg.error() == err
    assert msg.value() == b"no key" and msg.topic() == topic
    if kit.name == "odradek":       # odradek's own error stays reachable
        assert isinstance(err.exception, InvalidRecord) and err.exception.args[0] is err
        assert f"{topic}-0" in err.exception.message


def test_position_is_offset_invalid_until_a_record_of_the_partition_is_returned(kit):
    """confluent-kafka's position() is the offset after the last record poll() returned
    since the partition's assign() or seek(), OFFSET_INVALID before one."""
    topic = kit.topic("pos")
    deliver(kit, topic, [{"value": b"v%d" % i, "partition": 0} for i in range(5)])
    tp = kit.mod.TopicPartition
    invalid = kit.mod.OFFSET_INVALID
    c = kit.mod.Consumer({**kit.conf, "group.id": f"g-{topic}", "enable.auto.commit": False})
    try:
        def position(partition=0):
            return c.position([tp(topic, partition)])[0].offset

        c.assign([tp(topic, 0, 0), tp(topic, 1, 0)])
        assert (position(0), position(1)) == (invalid, invalid)          # assigned, not read
        rec = c.poll(WAIT_S)
        assert rec is not None and rec.error() is None and (rec.partition(), rec.offset()) == (0, 0)
        assert (position(0), position(1)) == (1, invalid)                # 1 is empty: still not read
        c.seek(tp(topic, 0, 3))
        assert position(0) == invalid                                     # a seek: not read since
        rec = c.poll(WAIT_S)
        assert rec is not None and rec.offset() == 3 and position(0) == 4
        rec = c.poll(WAIT_S)
        assert rec is not None and rec.offset() == 4 and position(0) == 5
        assert c.poll(0.2) is None and position(0) == 5                  # read to the end: stays
    finally:
        c.close()


def test_timestamp_zero_is_now_and_partition_minus_one_is_the_partitioners(kit):
    """librdkafka: a timestamp of 0 means the current time; partition -1
    (RD_KAFKA_PARTITION_UA) means unassigned, so the partitioner places the record."""
    topic = kit.topic("ts")
    before = int(time.time() * 1000)
    reports = deliver(kit, topic, [{"value": b"zero", "timestamp": 0},
                                   {"value": b"keyed", "key": b"user-7", "partition": -1},
                                   {"value": b"keyless", "partition": -1},
                                   {"value": b"given", "timestamp": 1_700_000_000_000}],
                      conf={"partitioner": "murmur2_random", "linger.ms": 0})
    after = int(time.time() * 1000)
    assert all(err is None for err, _ in reports), reports
    by_value = {msg.value(): msg for _, msg in reports}
    ts_type, ts = by_value[b"zero"].timestamp()
    assert ts_type == kit.mod.TIMESTAMP_CREATE_TIME and before <= ts <= after, (ts_type, ts, before, after)
    assert by_value[b"given"].timestamp() == (kit.mod.TIMESTAMP_CREATE_TIME, 1_700_000_000_000)
    assert by_value[b"keyed"].partition() == partition_for_key(b"user-7", PARTITIONS)
    assert 0 <= by_value[b"keyless"].partition() < PARTITIONS

    c = kit.mod.Consumer({**kit.conf, "group.id": f"g-{topic}", "enable.auto.commit": False})
    try:
        c.assign([kit.mod.TopicPartition(topic, p, kit.mod.OFFSET_BEGINNING) for p in range(PARTITIONS)])
        stored, deadline = {}, time.monotonic() + WAIT_S
        while len(stored) < len(reports):
            assert time.monotonic() < deadline, stored
            rec = c.poll(0.5)
            if rec is not None and rec.error() is None:
                stored[rec.value()] = rec.timestamp()
    finally:
        c.close()
    assert stored[b"zero"] == (kit.mod.TIMESTAMP_CREATE_TIME, ts)        # the log holds the time, not 0
