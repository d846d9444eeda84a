"""What a Fetch costs beyond its bytes, through a gateway run in this process (its broker
links counted, every call still going to the real broker): a read_committed consumer of
data without transactions asks the leader nothing per fetch, one that meets an aborted
transaction still gets it; a small answer leaves as one part, a large one with sendfile."""
import io
import os
import socket
import threading

import kio.index
import kio.serial
import pytest
from kio.schema.errors import ErrorCode

from odradek.client import Admin, Producer
from odradek.client.protocol import messages as m
from odradek.daemon.gateway import fetch as fetch_mod
from odradek.daemon.gateway import fetch_views
from odradek.daemon.gateway.apis import FileSlice, RequestContext
from odradek.daemon.gateway.broker_link import BrokerLinks
from odradek.daemon.gateway.codec import build, decode_request
from odradek.daemon.gateway.server import Gateway
from support.broker import BrokerProcess, stop_cleanly, wait_until
from support.gateway import KafkaWire


class CountingLinks(BrokerLinks):
    """BrokerLinks that count the GetSegment calls asking for aborted transactions."""

    def __init__(self, path):
        super().__init__(path)
        self.aborted_asks = 0

    def call(self, request, fds=(), *, timeout=None):
        if isinstance(request, m.GetSegmentRequest) and request.aborted_upper_bound >= 0:
            self.aborted_asks += 1
        return super().call(request, fds, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    broker = BrokerProcess(tmp_path_factory.mktemp("gwcosts") / "data").start()
    listen = socket.create_server(("127.0.0.1", 0))
    links = CountingLinks(broker.socket_path)
    gateway = Gateway(listen, links)
    server = threading.Thread(target=gateway.serve_forever, daemon=True)
    server.start()
    yield broker, gateway, listen.getsockname()[1]
    gateway.stop()
    server.join(10)
    stop_cleanly(broker)


def fetch_request(topic, offset, isolation, max_bytes=1 << 20, version=12):
    return build(kio.index.load_request_schema(1, version), replica_id=-1, max_wait=0, min_bytes=0,
                 max_bytes=max_bytes, isolation_level=isolation, session_id=0, session_epoch=-1, topics=[
                     dict(topic=topic, partitions=[dict(partition=0, fetch_offset=offset, current_leader_epoch=-1,
                                                        last_fetched_epoch=-1, log_start_offset=-1,
                                                        partition_max_bytes=max_bytes)])],
                 forgotten_topics_data=[], rack_id="")


def produce_batches(broker, topic, values):
    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        for v in values:
            p.produce(topic, v, partition=0)
            assert p.flush(20) == 0


def test_read_committed_fetches_of_data_without_transactions_ask_the_leader_nothing(env):
    broker, gateway, port = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("plain", num_partitions=1)
    before = gateway.links.aborted_asks
    with KafkaWire(port) as wire, Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        for offset in range(10):       # a consumer trailing a producer: one new batch per fetch
            p.produce("plain", b"v%d" % offset, partition=0)
            assert p.flush(20) == 0
            part = wire.call(fetch_request("plain", offset, isolation=1)).responses[0].partitions[0]
            assert part.error_code == ErrorCode.none and part.last_stable_offset == offset + 1
            assert part.records and part.aborted_transactions == ()
    assert gateway.links.aborted_asks == before


def test_a_small_answer_of_many_batches_without_transactions_asks_the_leader_nothing(env):
    """A consumer that fell behind a producer of one-record batches: more batches in one
    small answer than a header-by-header walk looks at, all of them looked at in memory."""
    broker, gateway, port = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("behind", num_partitions=1)
    count = fetch_views.SCAN_MAX_BATCHES + 20
    produce_batches(broker, "behind", [b"r%d" % i for i in range(count)])
    before = gateway.links.aborted_asks
    with KafkaWire(port) as wire:
        part = wire.call(fetch_request("behind", 0, isolation=1)).responses[0].partitions[0]
    assert part.error_code == ErrorCode.none and part.last_stable_offset == count
    assert part.records and len(part.records) <= fetch_mod.INLINE_MAX and part.aborted_transactions == ()
    assert gateway.links.aborted_asks == before


def test_a_read_committed_fetch_past_an_aborted_transaction_still_gets_it(env):
    broker, gateway, port = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("aborted", num_partitions=1)
    produce_batches(broker, "aborted", [b"before"])
    with Producer({"socket": broker.socket_path, "transactional.id": "costs"}) as p:
        p.init_transactions()
        p.begin_transaction()
        p.produce("aborted", b"undone", partition=0)
        assert p.flush(10) == 0
        p.abort_transaction()
    produce_batches(broker, "aborted", [b"after"])
    with KafkaWire(port) as wire:
        def whole():      # the marker is written after abort_transaction() returns
            part = wire.call(fetch_request("aborted", 0, isolation=1)).responses[0].partitions[0]
            return part if part.last_stable_offset == part.high_watermark == 4 else None
        part = wait_until(whole, timeout=10, what="the abort marker and the last batch")
        assert [(a.producer_id >= 0, a.first_offset) for a in part.aborted_transactions] == [(True, 1)]
        # from the last batch alone (past the transaction): nothing to skip, nothing asked
        asks = gateway.links.aborted_asks
        last = wire.call(fetch_request("aborted", 3, isolation=1)).responses[0].partitions[0]
        assert last.records and last.aborted_transactions == () and gateway.links.aborted_asks == asks


class _Conn:
    """What the Fetch handler uses of a connection: its socket and per-connection state."""

    def __init__(self, sock):
        self.sock, self.state = sock, {}


def _frame_body(request):
    """A request frame's bytes after its size, as decode_request takes them."""
    header_cls = type(request).__header_schema__
    buf = io.BytesIO()
    kio.serial.entity_writer(header_cls)(buf, header_cls(request_api_key=1, request_api_version=request.__version__,
                                                         correlation_id=7, client_id="t"))
    kio.serial.entity_writer(type(request))(buf, request)
    return buf.getvalue()


def test_a_small_answer_is_one_part_and_a_large_one_is_sent_from_the_file(env):
    broker, gateway, _ = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("parts", num_partitions=1)
    produce_batches(broker, "parts", [b"x" * 100, b"y" * (fetch_mod.INLINE_MAX + 1000)])
    a, b = socket.socketpair()
    try:
        ctx = RequestContext(gateway=gateway, conn=_Conn(a), table=gateway.table)
        small = fetch_mod.fetch(ctx, decode_request(_frame_body(fetch_request("parts", 0, 0, max_bytes=1))))
        assert len(small.parts) == 1 and isinstance(small.parts[0], bytes)
        body = small.parts[0][4:]
        assert int.from_bytes(small.parts[0][:4], "big") == len(body) and b"x" * 100 in body
        large = fetch_mod.fetch(ctx, decode_request(_frame_body(fetch_request("parts", 1, 0))))
        assert [type(p) for p in large.parts] == [bytes, FileSlice, bytes]
    finally:
        a.close()
        b.close()


def test_a_small_read_committed_answer_reads_the_segment_once(env, monkeypatch):
    """Its batch headers are looked at (for transactions) in the bytes the answer sends:
    one pread, not one per batch and one more for the answer."""
    broker, gateway, _ = env
    with Admin(broker.socket_path) as admin:
        admin.create_topic("once", num_partitions=1)
    produce_batches(broker, "once", [b"one", b"two", b"three"])
    reads = []
    pread = os.pread

    def counting(fd, n, offset):
        reads.append(n)
        return pread(fd, n, offset)
    monkeypatch.setattr(os, "pread", counting)
    a, b = socket.socketpair()
    try:
        ctx = RequestContext(gateway=gateway, conn=_Conn(a), table=gateway.table)
        reply = fetch_mod.fetch(ctx, decode_request(_frame_body(fetch_request("once", 0, isolation=1))))
        assert len(reply.parts) == 1 and all(v in reply.parts[0] for v in (b"one", b"two", b"three"))
        assert len(reads) == 1
    finally:
        a.close()
        b.close()
