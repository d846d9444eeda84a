"""Consumer zero.copy against the real broker: keys and values are read-only views (BytesView)
of the mapped segment, and a view kept past its documented lifetime (the next poll)
never crashes the process: it keeps the mapping, across many polls, retention deleting
its segment, and close()."""
import gc

import pytest

from odradek._hotpath import BytesView
from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.errors import InvalidConfig, LeaderNotAvailable
from support.broker import BrokerProcess, consume_n, wait_until

TOPIC = "zc"


def produce(socket_path, first, n):
    with Producer({"socket": socket_path, "linger.ms": 1000, "batch.size": 1024}) as p:
        for i in range(first, first + n):
            p.produce(TOPIC, b"v%d-" % i + b"." * 90, key=b"k%d" % i, partition=0)
        assert p.flush(10) == 0


def log_start(admin):
    try:
        return admin.list_offsets(TOPIC, 0, "earliest")[0]
    except LeaderNotAvailable:      # the worker restarts with the new config
        return -1


def test_zero_copy_views_outlive_polls_retention_and_close(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=["--override", "log.retention.check.interval.ms=50"]).start()
    try:
        with Admin(b.socket_path) as admin:
            admin.create_topic(TOPIC, 1, config={"segment.bytes": "4096"})
            produce(b.socket_path, 0, 20)
            consumer = Consumer({"socket": b.socket_path, "zero.copy": True})
            consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
            kept = consume_n(consumer, 5)
            assert all(type(r.value()) is BytesView and memoryview(r.value()).readonly for r in kept)
            assert [(bytes(r.key()), bytes(r.value()[:3])) for r in kept] == [(b"k%d" % i, b"v%d-" % i) for i in range(5)]
            with pytest.raises(TypeError):
                kept[0].value()[0] = 0
            produce(b.socket_path, 20, 400)
            got = 5
            for _ in range(1000):            # many polls while the kept views live
                got += len(consumer.consume(7, 5.0))
                if got >= 420:
                    break
            assert got == 420
            admin.alter_configs(TOPIC, {"retention.bytes": "8192"})
            wait_until(lambda: log_start(admin) > 5, what="retention to delete the first segments")
            consumer.close()
        gc.collect()
        # the segment file is gone and the consumer closed: the views still read their bytes
        assert [(bytes(r.key()), bytes(r.value())) for r in kept] == \
            [(b"k%d" % i, b"v%d-" % i + b"." * 90) for i in range(5)]
        assert b.stop() == 0, b.stderr()
    finally:
        b.kill()


def test_zero_copy_is_off_by_default_and_must_be_a_boolean(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(TOPIC, 1)
    produce(broker.socket_path, 0, 3)
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        assert all(type(r.value()) is bytes and type(r.key()) is bytes for r in consume_n(c, 3))
    with pytest.raises(InvalidConfig):
        Consumer({"socket": broker.socket_path, "zero.copy": "sometimes"})
