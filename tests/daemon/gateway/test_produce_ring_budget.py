"""The gateway's cap on produce ring attachments (produce_rings.py, listener.max.produce.rings),
through the broker's own listener: a client that names ever new producer ids and
partitions gets NOT_ENOUGH_REPLICAS for each partition beyond the cap (per partition, in
one request), holds no more fds for it, and is logged on a rate-limited line; a client
that attached before goes on producing; confluent-kafka's idempotent producer, refused
meanwhile, retries and delivers once the hog's connection closes."""
import json

import kio.index
import psutil
import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin
from odradek.client.records import BatchBuilder
from odradek.daemon.gateway.codec import build
from support.broker import stop_cleanly, wait_until
from support.gateway import KafkaWire, gateways, listener_broker

CAP = 4
TOPIC = "cap"
PARTITIONS = 8
FDS_PER_RING = 8      # produce_rings.py's module docstring
LINE = f"produce rings: all {CAP} of listener.max.produce.rings are in use"


@pytest.fixture
def broker(tmp_path):
    b = listener_broker(tmp_path / "data", **{"listener.max.produce.rings": CAP})
    with Admin(b.socket_path) as admin:
        admin.create_topic(TOPIC, PARTITIONS)
    yield b
    stop_cleanly(b)


def req(key, version, **values):
    return build(kio.index.load_request_schema(key, version), values)


def batch(value, pid=-1, epoch=-1, seq=-1):
    b = BatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    b.append(1_700_000_000_000, None, value)
    return b.build()


def produce(wire, batches):
    """{partition: (error code, base offset)} of one Produce v9 request, `batches` {partition: bytes}."""
    r = wire.call(req(0, 9, acks=-1, timeout=5000, transactional_id=None, topic_data=[dict(
        name=TOPIC, partition_data=[dict(index=p, records=b) for p, b in batches.items()])]))
    return {p.index: (p.error_code, p.base_offset) for p in r.responses[0].partition_responses}


def new_producer(wire):
    init = wire.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                         producer_epoch=-1))
    assert init.error_code == ErrorCode.none
    return init.producer_id, init.producer_epoch


def test_beyond_the_cap_partitions_get_not_enough_replicas_and_others_go_on(broker):
    ck = pytest.importorskip("confluent_kafka")
    gateway = psutil.Process(gateways(broker)[0].pid)
    with KafkaWire(broker.port) as bystander, KafkaWire(broker.port) as hog, KafkaWire(broker.port) as plain:
        pid, epoch = new_producer(bystander)
        assert produce(bystander, {0: batch(b"b0", pid, epoch, 0)}) == {0: (ErrorCode.none, 0)}   # 1 of 4
        fds = gateway.num_fds()

        # one request naming 7 partitions: the first 3 fill the cap, the other 4 are refused
        hog_pid, hog_epoch = new_producer(hog)
        answers = produce(hog, {p: batch(b"h", hog_pid, hog_epoch, 0) for p in range(1, PARTITIONS)})
        assert answers == {**{p: (ErrorCode.none, 0) for p in (1, 2, 3)},
                           **{p: (ErrorCode.not_enough_replicas, -1) for p in range(4, PARTITIONS)}}
        # ever new producer ids: each refused, none costs the gateway an fd
        for _ in range(20):
            p, e = new_producer(hog)
            assert produce(hog, {1: batch(b"again", p, e, 0)}) == {1: (ErrorCode.not_enough_replicas, -1)}
        assert gateway.num_fds() <= fds + 3 * FDS_PER_RING, "more fds than the 3 attachments the hog was given"
        # a client without a producer id needs a shared attachment: refused too
        assert produce(plain, {5: batch(b"plain")}) == {5: (ErrorCode.not_enough_replicas, -1)}
        # the client that attached before the cap was reached goes on
        for seq in (1, 2):
            assert produce(bystander, {0: batch(b"b%d" % seq, pid, epoch, seq)}) == {0: (ErrorCode.none, seq)}

        # confluent-kafka's idempotent producer, refused meanwhile, sends its batch again and again ...
        reports, stats = [], []
        producer = ck.Producer({"bootstrap.servers": f"127.0.0.1:{broker.port}", "enable.idempotence": True,
                                "linger.ms": 0, "statistics.interval.ms": 50, "stats_cb": stats.append})
        producer.produce(TOPIC, b"patient", partition=6, on_delivery=lambda err, msg: reports.append((err, msg)))

        def sent_twice():     # librdkafka's statistics: the partition's messages transmitted
            producer.poll(0.05)
            last = json.loads(stats[-1]) if stats else {}
            return last.get("topics", {}).get(TOPIC, {}).get("partitions", {}).get("6", {}).get("txmsgs", 0) >= 2
        wait_until(sent_twice, 30, interval=0, what="confluent-kafka to send its refused batch again")
        assert reports == [] and len(producer) == 1                  # not failed: retried
        hog.close()                                                  # ... until the hog's rings are released
        assert producer.flush(30) == 0
        [(err, msg)] = reports
        assert err is None and msg.offset() == 0
        assert wait_until(lambda: produce(plain, {5: batch(b"plain")}) == {5: (ErrorCode.none, 0)}, 10,
                          interval=0.05, what="the plain client's retry to be taken")
    stderr = broker.stderr(tail=None)
    lines = stderr.count(LINE)
    assert 1 <= lines <= 3, f"{lines} lines for 26+ refusals, rate-limited to one per 10 s: {stderr[-3000:]}"
    assert "NOT_ENOUGH_REPLICAS since the last such line" in stderr


def test_the_cap_is_a_broker_config_key(tmp_path):
    from odradek.client.errors import InvalidConfig
    from odradek.daemon.broker.config import BrokerConfig
    assert BrokerConfig.for_data_dir(tmp_path, {}).listener.max_produce_rings == 1024
    assert BrokerConfig.for_data_dir(tmp_path, {"listener.max.produce.rings": 4}).listener.max_produce_rings == 4
    with pytest.raises(InvalidConfig, match="listener.max.produce.rings"):
        BrokerConfig.for_data_dir(tmp_path, {"listener.max.produce.rings": 0})
