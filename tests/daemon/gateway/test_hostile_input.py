"""Hostile TCP input through the broker's own listener: every case closes (or answers)
the offender's connection only; another client keeps being answered and the broker
serves its control socket throughout."""
import os
import socket
import struct
import threading

import psutil
import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest as DescribeClusterV1
from kio.schema.errors import ErrorCode

from support.broker import stop_cleanly, wait_until
from support.gateway import KafkaWire, answers, closed_by_peer, connect, frame, gateways, listener_broker

IDLE_MS = 1500


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = listener_broker(tmp_path_factory.mktemp("hostile") / "data",
                        **{"connections.max.idle.ms": IDLE_MS, "max.connections": 600})
    yield b
    stop_cleanly(b)


@pytest.fixture
def bystander(broker):
    """A client connected before the hostile one that keeps calling ApiVersions (more
    often than the idle time) while it acts, and must be answered every time."""
    wire = KafkaWire(broker.port)
    stop, calls, failures = threading.Event(), [], []

    def keep_calling():
        while not stop.wait(IDLE_MS / 5000):
            try:
                calls.append(wire.call(ApiVersionsV0()).error_code)
            except Exception as e:     # reported below, in the test's thread
                failures.append(e)
                return
    assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none
    t = threading.Thread(target=keep_calling, daemon=True)
    t.start()
    yield wire
    stop.set()
    t.join(20)
    assert not failures, f"the other client was not answered: {failures}"
    assert all(c == ErrorCode.none for c in calls)
    assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none
    wire.close()
    status = gateways(broker)[0]      # the broker answers too, with its gateway the same
    assert status.state == "running" and status.restarts == 0


def _response(sock):
    """(correlation id, body after it) of one response frame, or None at end of file."""
    sock.settimeout(10)
    head = sock.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        return None
    body = sock.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
    return struct.unpack_from(">i", body)[0], body[4:]


@pytest.mark.parametrize("size", [2 ** 31 - 1, 2 ** 31 // 2, -1, 0, 7])
def test_sizes_out_of_bounds_close_before_any_allocation(broker, bystander, size):
    gateway = psutil.Process(gateways(broker)[0].pid)
    rss = gateway.memory_info().rss
    with connect(broker.port) as sock:
        sock.sendall(struct.pack(">i", size) + b"\0" * 16)
        assert closed_by_peer(sock)
    assert gateway.memory_info().rss < rss + 64 * 1024 * 1024


def test_announced_sizes_alone_take_no_memory(broker, bystander):
    """Requests announced at the largest size allowed whose bytes never come: the gateway
    holds what arrived (a chunk), not what was announced."""
    gateway = psutil.Process(gateways(broker)[0].pid)
    rss = gateway.memory_info().rss
    socks = [connect(broker.port) for _ in range(8)]
    try:
        for s in socks:
            s.sendall(struct.pack(">i", 100 * 2 ** 20) + frame(18, 0, 1)[4:])
        wait_until(lambda: gateways(broker)[0].connections >= 9, what="the connections to be taken")
        for s in socks:     # each is read: one more round trip on a fresh connection proves the reads ran
            assert answers(broker.port)
        assert gateway.memory_info().rss < rss + 100 * 2 ** 20
    finally:
        for s in socks:
            s.close()


def test_garbage_in_a_known_request_is_answered_invalid_request_then_closed(broker, bystander):
    with connect(broker.port) as sock:
        sock.sendall(frame(60, 1, 5, b"\xff\xff\xff", flexible=True))
        cid, body = _response(sock)
        assert cid == 5
        # DescribeCluster v1 response: header tagged fields, throttle_time_ms, error_code
        assert struct.unpack_from(">bih", body)[2] == ErrorCode.invalid_request.value
        assert closed_by_peer(sock)


def test_an_unknown_tagged_field_is_skipped_as_kafka_says(broker, bystander):
    """kio refuses a tagged field its schema lacks (KAFKA-PROTOCOL.md pitfall 1); the
    gateway drops it and serves the request, and the connection goes on."""
    body = b"\x00" + b"\x01" + b"\x01" + bytes([99, 1, 0])    # include_ops=false, type=1, one tag (99, 1 byte)
    with KafkaWire(broker.port) as wire:
        wire.send_raw(frame(60, 1, 6, body, flexible=True)[4:])
        cid, rest = _response(wire.sock)
        assert cid == 6 and struct.unpack_from(">bih", rest)[2] == ErrorCode.none.value
        assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none


def test_a_version_kio_knows_but_the_gateway_does_not_serve_gets_unsupported_version(broker, bystander):
    with KafkaWire(broker.port) as wire:
        from kio.schema.vote.v1.request import VoteRequest    # a KRaft controller API: never served
        cid = wire.send(VoteRequest(cluster_id=None, voter_id=0, topics=()))
        got = _response(wire.sock)
        assert got[0] == cid
        # Vote v1 response: header tagged fields, then error_code
        assert struct.unpack_from(">bh", got[1])[1] == ErrorCode.unsupported_version.value
        assert closed_by_peer(wire.sock)


@pytest.mark.parametrize("api_key,api_version", [(9999, 0), (-1, 0), (3, 999), (60, -5)])
def test_unknown_keys_and_versions_close_the_connection(broker, bystander, api_key, api_version):
    with connect(broker.port) as sock:
        sock.sendall(frame(api_key, api_version, 7))
        assert closed_by_peer(sock)


def test_a_client_that_never_reads_is_closed_after_the_idle_time(broker, bystander):
    """It sends requests and takes none of the answers: the gateway's send blocks, for at
    most connections.max.idle.ms, then the connection closes; meanwhile others are served."""
    sock = connect(broker.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = frame(18, 0, 1)
    stop = threading.Event()

    def flood():
        sock.setblocking(False)
        chunk = request * 512
        while not stop.is_set():
            try:
                sock.send(chunk)
            except BlockingIOError:
                stop.wait(0.01)          # both directions full: the gateway has stopped reading
            except OSError:
                return                   # closed by the gateway
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        assert wait_until(lambda: answers(broker.port), what="another client answered while one is stuck")
        assert wait_until(lambda: gateways(broker)[0].connections <= 1, timeout=IDLE_MS / 1000 + 20,
                          what="the non-reading connection to be closed")
    finally:
        stop.set()
        t.join(10)
        sock.close()


def test_an_idle_connection_is_closed(broker, bystander):
    with connect(broker.port) as sock:
        assert closed_by_peer(sock, timeout=IDLE_MS / 1000 + 10)


def test_500_connections_opened_and_dropped(broker, bystander):
    socks = []
    try:
        for i in range(500):
            s = connect(broker.port)
            if i % 3 == 1:
                s.sendall(struct.pack(">i", 100) + b"\0\x12")      # half a frame
            elif i % 3 == 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # reset on close
            socks.append(s)
        assert answers(broker.port)
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: gateways(broker)[0].connections == 1, timeout=30, what="the dropped connections to be closed")
    assert gateways(broker)[0].refused == 0


def test_describe_cluster_is_this_broker(broker):
    from odradek.client.protocol import ControlClient, messages as m
    with ControlClient(broker.socket_path) as c:
        cluster_id = c.call(m.MetadataRequest(topics=[]))[0].cluster_id
    with KafkaWire(broker.port) as wire:
        r = wire.call(DescribeClusterV1(include_cluster_authorized_operations=False, endpoint_type=1))
        assert r.error_code == ErrorCode.none and r.cluster_id == cluster_id and cluster_id
        assert [(b.broker_id, b.host, b.port) for b in r.brokers] == [(0, "127.0.0.1", broker.port)]
        assert r.controller_id == 0
        r = wire.call(DescribeClusterV1(include_cluster_authorized_operations=False, endpoint_type=2))
        assert r.error_code == ErrorCode.mismatched_endpoint_type and not r.brokers


def test_the_gateway_is_the_brokers_child(broker):
    assert psutil.Process(gateways(broker)[0].pid).ppid() == broker.pid
    assert os.path.exists(broker.socket_path)
