"""The listener's own behaviour, on an in-process Gateway (no broker is asked: ApiVersions
and the test's handlers answer): a handler's bug answered, TCP_NODELAY at accept, request frames received whole
into one buffer, and clients' errors logged at most once per connection per window with
a budget for the process (client_log.py, also on a fake clock)."""
import logging
import socket
import struct
import threading

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.describe_cluster.v0.request import DescribeClusterRequest as DescribeClusterV0
from kio.schema.errors import ErrorCode

from odradek.daemon.gateway import apis, client_log, server
from odradek.daemon.gateway.broker_link import BrokerLinks
from odradek.daemon.gateway.client_log import ClientLog, LogSource
from odradek.daemon.gateway.server import Connection, Gateway
from support.broker import wait_until
from support.gateway import KafkaWire, closed_by_peer, connect, frame


@pytest.fixture
def gateway(tmp_path):
    """A serving Gateway whose DescribeCluster (key 60) is a gateway bug."""
    def broken(ctx, request):
        raise RuntimeError("a bug")
    table = apis.table(["odradek.daemon.gateway.apis"])
    table[60] = apis.Api(60, 0, 2, broken)
    listen = socket.create_server(("127.0.0.1", 0))
    g = Gateway(listen, BrokerLinks(str(tmp_path / "unused.sock")), table=table)
    t = threading.Thread(target=g.serve_forever, daemon=True)
    t.start()
    g.port = listen.getsockname()[1]
    yield g
    g.stop()
    t.join(10)
    assert not t.is_alive()


def test_a_handler_that_raises_is_answered_and_the_connection_goes_on(gateway):
    """A gateway bug: the client gets UNKNOWN_SERVER_ERROR for that request (top-level
    error code) and its connection keeps being served."""
    with KafkaWire(gateway.port) as wire:
        r = wire.call(DescribeClusterV0(include_cluster_authorized_operations=False))
        assert r.error_code == ErrorCode.unknown_server_error and "a bug" in r.error_message
        assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none


def test_every_accepted_connection_has_tcp_nodelay(gateway):
    with KafkaWire(gateway.port) as wire:
        assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none
        (conn,) = list(gateway._conns)
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("size", [8, server.ONE_RECV_MAX, server.ONE_RECV_MAX + 1, server.READ_CHUNK,
                                  server.READ_CHUNK + 1, 2 * server.READ_CHUNK + 12345])
def test_a_frame_arrives_whole_in_one_read_only_buffer(tmp_path, size):
    """Sent in pieces smaller than a chunk, any size comes back byte for byte, as bytes
    or the read-only memoryview kio decodes without a copy."""
    listen = socket.create_server(("127.0.0.1", 0))
    ours, theirs = socket.socketpair()
    try:
        conn = Connection(Gateway(listen, BrokerLinks(str(tmp_path / "unused.sock"))), ours, ("test", 0))
        body = bytes(i % 251 for i in range(size))
        data = struct.pack(">i", size) + body
        sender = threading.Thread(target=lambda: [theirs.sendall(data[i:i + 100_000])
                                                  for i in range(0, len(data), 100_000)], daemon=True)
        sender.start()
        got = conn._read_frame()
        sender.join(10)
        assert (isinstance(got, bytes) or got.readonly) and got == body
    finally:
        for s in (ours, theirs, listen):
            s.close()


def test_a_client_that_closes_mid_frame_is_end_of_file(tmp_path):
    listen = socket.create_server(("127.0.0.1", 0))
    ours, theirs = socket.socketpair()
    try:
        conn = Connection(Gateway(listen, BrokerLinks(str(tmp_path / "unused.sock"))), ours, ("test", 0))
        def send_part_and_close():
            theirs.sendall(struct.pack(">i", 3 * server.READ_CHUNK) + bytes(server.READ_CHUNK + 5))
            theirs.close()
        sender = threading.Thread(target=send_part_and_close, daemon=True)
        sender.start()
        assert conn._read_frame() is None
        sender.join(10)
    finally:
        for s in (ours, theirs, listen):
            s.close()


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def lines():
    logger = logging.getLogger("odradek.tests.client_log")
    handler = _Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler.lines
    logger.removeHandler(handler)


def test_one_line_per_source_per_window_and_the_held_back_are_counted(lines):
    logger, out = lines
    clock = _Clock()
    log = ClientLog(logger, window_s=10, budget=100, clock=clock)
    a, b = LogSource(), LogSource()
    assert log.info(a, "a %d", 1)
    assert not log.info(a, "a %d", 2)
    assert log.info(b, "b %d", 1)             # another source has its own window
    clock.now += 9.9
    assert not log.info(a, "a %d", 3)
    clock.now += 0.1
    assert log.info(a, "a %d", 4)
    assert out == ["a 1", "b 1 (1 more client error lines held back before this one)",
                   "a 4 (1 more client error lines held back before this one)"]


def test_the_process_has_a_budget_of_lines_per_window(lines):
    logger, out = lines
    clock = _Clock()
    log = ClientLog(logger, window_s=10, budget=3, clock=clock)
    sources = [LogSource() for _ in range(10)]
    assert [log.info(s, "x") for s in sources] == [True] * 3 + [False] * 7
    clock.now += 10
    assert log.info(sources[9], "y")
    assert out == ["x"] * 3 + ["y (7 more client error lines held back before this one)"]


def test_a_hostile_client_does_not_flood_the_log(gateway, caplog):
    """A connection that hits a gateway bug again and again is answered every time and
    logged once; 3 x BUDGET connections sending garbage are each closed, and the log
    gets at most BUDGET lines for all of it."""
    caplog.set_level(logging.INFO, logger="odradek.gateway")
    with KafkaWire(gateway.port) as wire:
        for _ in range(5):
            r = wire.call(DescribeClusterV0(include_cluster_authorized_operations=False))
            assert r.error_code == ErrorCode.unknown_server_error
    bug_lines = [r for r in caplog.records if "a gateway bug" in r.getMessage()]
    assert len(bug_lines) == 1 and bug_lines[0].exc_info is not None
    for _ in range(3 * client_log.BUDGET):
        with connect(gateway.port) as sock:
            sock.sendall(frame(60, 0, 1, b"\xff\xff\xff"))     # truncated DescribeCluster v0
            assert closed_by_peer(sock)
    wait_until(lambda: not gateway._conns, timeout=10, what="the connections to end")
    client_lines = [r for r in caplog.records if r.name == "odradek.gateway"]
    assert len(client_lines) <= client_log.BUDGET
