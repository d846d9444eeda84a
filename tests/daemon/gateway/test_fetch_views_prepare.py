"""A fetch opens the partition views it lacks together (Views.prepare): OpenFetch and then
GetSegment pipelined on one control connection, so that a consumer's first fetch of many
partitions costs a few round trips instead of two per partition; a partition that does
not exist is left for the read to answer."""
import os

import kio.index
import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin, Producer
from odradek.client.records import RecordBatch
from odradek.daemon.gateway.broker_link import BrokerLinks
from odradek.daemon.gateway.codec import build
from odradek.daemon.gateway.fetch_views import PREPARE_BATCH, Views
from support.broker import BrokerProcess, stop_cleanly
from support.gateway import GatewayProcess, KafkaWire

TOPIC, PARTITIONS = "many", PREPARE_BATCH + 6     # two batches of pipelined requests


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = BrokerProcess(tmp_path_factory.mktemp("prepare") / "data").start()
    with Admin(b.socket_path) as admin:
        admin.create_topic(TOPIC, num_partitions=PARTITIONS)
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p:
        for i in range(PARTITIONS):
            p.produce(TOPIC, b"record of %d" % i, partition=i)
        assert p.flush(10) == 0
    yield b
    stop_cleanly(b)


class CountingLinks(BrokerLinks):
    """BrokerLinks that count the calls made on them (each one round trip)."""

    def __init__(self, path):
        super().__init__(path)
        self.calls, self.batches = 0, []

    def call(self, request, fds=(), *, timeout=None):
        self.calls += 1
        return super().call(request, fds, timeout=timeout)

    def call_many(self, requests, *, timeout=None):
        self.batches.append(len(requests))
        return super().call_many(requests, timeout=timeout)


def test_prepare_opens_every_view_and_segment_in_pipelined_batches(broker):
    links = CountingLinks(broker.socket_path)
    views = Views(links)
    try:
        wants = [(TOPIC, p, 0) for p in range(PARTITIONS)] + [("no-such-topic", 0, 0), (TOPIC, PARTITIONS + 3, 0)]
        views.prepare(iter(wants))
        assert links.calls == 0
        # OpenFetch in two batches, each followed by the GetSegments of the views it opened
        assert links.batches == [PREPARE_BATCH, PREPARE_BATCH, 8, 6]
        for p in range(PARTITIONS):
            view = views.peek(TOPIC, p)
            assert view is not None and view.needs_segment(0) is None       # its segment fd is here
            piece = view.read(0, view.snapshot().high_watermark, 1 << 20)
            data = piece.data or os.pread(piece.fd, piece.length, piece.offset)
            assert [r.value for r in RecordBatch(data).records()] == [b"record of %d" % p]
        assert links.calls == 0                                              # the reads asked nothing more
        assert views.peek("no-such-topic", 0) is None and views.peek(TOPIC, PARTITIONS + 3) is None
        views.prepare(iter(wants[:PARTITIONS]))
        assert len(links.batches) == 4                                      # all open: nothing asked
    finally:
        links.close()


def test_a_first_fetch_of_many_partitions_answers_each_and_the_missing_one(broker, tmp_path):
    with GatewayProcess(broker.socket_path, tmp_path) as gw, KafkaWire(gw.port) as wire:
        parts = list(range(PARTITIONS)) + [PARTITIONS + 1]
        r = wire.call(build(kio.index.load_request_schema(1, 12), replica_id=-1, max_wait=0, min_bytes=0,
                            max_bytes=50 << 20, isolation_level=0, session_id=0, session_epoch=-1, topics=[
                                dict(topic=TOPIC, partitions=[
                                    dict(partition=p, fetch_offset=0, current_leader_epoch=-1, last_fetched_epoch=-1,
                                         log_start_offset=-1, partition_max_bytes=1 << 20) for p in parts])],
                            forgotten_topics_data=[], rack_id=""))
        answers = r.responses[0].partitions
        for a in answers[:PARTITIONS]:
            assert a.error_code == ErrorCode.none
            assert [rec.value for rec in RecordBatch(bytes(a.records)).records()] == [b"record of %d" % a.partition_index]
        assert answers[-1].error_code == ErrorCode.unknown_topic_or_partition
