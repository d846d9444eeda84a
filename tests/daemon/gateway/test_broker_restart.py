"""The gateway outlives a broker restart: its produce rings are attached again
(produce_rings.py) and its Fetch maps the restarted leaders' new states (fetch_views.py)."""
import time

import kio.index
from kio.schema.errors import ErrorCode

from odradek.client import Admin, Producer
from odradek.daemon.gateway.codec import build
from support.broker import BrokerProcess, stop_cleanly, wait_until
from support.gateway import GatewayProcess, KafkaWire
from odradek.client.records import BatchBuilder


def batch(n):
    b = BatchBuilder()
    for i in range(n):
        b.append(1_700_000_000_000 + i, None, b"v%d" % i)
    return b.build()


def _produce(wire, records):
    r = wire.call(build(kio.index.load_request_schema(0, 9), acks=1, timeout=5000, transactional_id=None,
                        topic_data=[dict(name="r", partition_data=[dict(index=0, records=records)])]))
    return r.responses[0].partition_responses[0]


def _fetch(wire, offset, max_wait=0):
    r = wire.call(build(kio.index.load_request_schema(1, 12), replica_id=-1, max_wait=max_wait, min_bytes=1,
                        max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1, topics=[
                            dict(topic="r", partitions=[dict(partition=0, fetch_offset=offset, current_leader_epoch=-1,
                                                             last_fetched_epoch=-1, log_start_offset=-1,
                                                             partition_max_bytes=1 << 20)])],
                        forgotten_topics_data=[], rack_id=""))
    return r.responses[0].partitions[0]


def test_produce_and_fetch_go_on_after_the_broker_is_killed_and_restarted(tmp_path):
    broker = BrokerProcess(tmp_path / "data").start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("r", num_partitions=1)
    gw = GatewayProcess(broker.socket_path, tmp_path).start()
    try:
        with KafkaWire(gw.port) as wire:
            assert _produce(wire, batch(2)).base_offset == 0
            assert _fetch(wire, 0).high_watermark == 2
            broker.kill()      # SIGKILL: no worker is left to fence its partition state
            broker = BrokerProcess(tmp_path / "data").start()
            with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
                p.produce("r", b"after", partition=0)
                assert p.flush(10) == 0
            # the gateway's Fetch sees the new leader's offsets, not the old state's
            wait_until(lambda: _fetch(wire, 2, max_wait=200).high_watermark == 3, timeout=15,
                       what="the restarted leader's high watermark through the gateway")
            deadline = time.monotonic() + 15
            p = _produce(wire, batch(1))
            while p.error_code != ErrorCode.none and time.monotonic() < deadline:   # retriable while re-attaching
                p = _produce(wire, batch(1))
            assert p.error_code == ErrorCode.none and p.base_offset == 3
            assert _fetch(wire, 3).high_watermark == 4
    finally:
        gw.stop()
        stop_cleanly(broker)
