"""The listener's own behaviour, on an in-process Gateway (no broker is asked: ApiVersions
and the test's handlers answer): a handler's bug answered, TCP_NODELAY at accept, requests
sent back to back started before the first is answered (pipelining) and answered in order, and clients' errors logged at most once per connection per window with
a budget for the process (client_log.py, also on a fake clock)."""
import logging
import socket
import struct
import threading

import kio.serial
import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.describe_cluster.v0.request import DescribeClusterRequest as DescribeClusterV0
from kio.schema.describe_cluster.v0.response import DescribeClusterResponse as DescribeClusterV0Response
from kio.schema.errors import ErrorCode

from odradek.daemon.gateway import apis, client_log, server
from odradek.daemon.gateway.broker_link import BrokerLinks
from odradek.daemon.gateway.client_log import ClientLog, LogSource
from odradek.daemon.gateway.error_response import error_response
from odradek.daemon.gateway.server import Gateway
from odradek.daemon.gateway.stats import Counters
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


def test_each_new_connection_goes_to_the_gateway_with_fewer_open(tmp_path):
    """Two gateways on one listening socket and one Counters, as two listener processes:
    each connection, opened one at a time, is taken by the one with fewer open
    (serve_forever leaves it ACCEPT_DEFER_S), where their race alone picks either."""
    listen = socket.create_server(("127.0.0.1", 0))
    port = listen.getsockname()[1]
    counters = Counters(2)
    gateways = [Gateway(sock, BrokerLinks(str(tmp_path / "unused.sock")), counters=counters, slot=slot)
                for slot, sock in enumerate((listen, listen.dup()))]
    threads = [threading.Thread(target=g.serve_forever, daemon=True) for g in gateways]
    for t in threads:
        t.start()
    wires = []
    try:
        for i in range(8):
            before = counters.open_counts()
            wires.append(KafkaWire(port))
            assert wires[-1].call(ApiVersionsV0()).error_code == ErrorCode.none
            after = counters.open_counts()
            assert sum(after) == i + 1
            if before[0] != before[1]:
                fewer = before.index(min(before))
                assert after[fewer] == before[fewer] + 1, (before, after)
        assert counters.open_counts() == [4, 4]
    finally:
        for w in wires:
            w.close()
        for g in gateways:
            g.stop()
        for t in threads:
            t.join(10)
        # the connections' threads count their closes before the counters go
        wait_until(lambda: counters.open_counts() == [0, 0], timeout=10, what="the connections' closes")
        counters.close()
    assert not any(t.is_alive() for t in threads)


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


class _Pipelined:
    """DescribeCluster (key 60) as a pipelined API for the test: start() notes the request
    and returns a finish that notes its wait for `go`, then its end, and answers with the request's
    correlation id in the error message (a start on the client id "fail" raises)."""

    def __init__(self):
        self.events, self.go = [], threading.Event()
        self.coalesce = True         # a finish is ready() once `go` is set

    def start(self, ctx, request):
        cid = request.correlation_id
        if request.header.client_id == "fail":
            raise RuntimeError(f"start {cid} broke")
        self.events.append(("start", cid))

        def finish():
            self.events.append(("waiting", cid))
            assert self.go.wait(10)
            self.events.append(("finish", cid))
            return error_response(60, 0, ErrorCode.none, request.body, f"answer {cid}")
        finish.ready = lambda: self.coalesce and self.go.is_set()    # ready together: one send
        finish.abandon = lambda: self.events.append(("abandon", cid))
        return finish

    def handler(self, ctx, request):
        return self.start(ctx, request)()


@pytest.fixture
def pipelined(tmp_path):
    api = _Pipelined()
    table = apis.table(["odradek.daemon.gateway.apis"])
    table[60] = apis.Api(60, 0, 2, api.handler, api.start)
    listen = socket.create_server(("127.0.0.1", 0))
    g = Gateway(listen, BrokerLinks(str(tmp_path / "unused.sock")), table=table)
    t = threading.Thread(target=g.serve_forever, daemon=True)
    t.start()
    yield listen.getsockname()[1], api
    api.go.set()
    g.stop()
    t.join(10)


def _describe_cluster(cid, client_id=b"t"):
    return frame(60, 0, cid, b"\0\0", client_id=client_id, flexible=True)     # v0 is flexible


def _frame_body(sock):
    """The next response frame's body (exactly its bytes: nothing after it is read)."""
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "the gateway closed the connection"
            buf += chunk
        return buf
    return exactly(struct.unpack(">i", exactly(4))[0])


def _answers(sock, n):
    """(correlation id, error code, error message) of the next `n` DescribeCluster v0 answers."""
    out = []
    for _ in range(n):
        body = _frame_body(sock)
        header, k = kio.serial.entity_reader(DescribeClusterV0Response.__header_schema__)(body, 0)
        r, _ = kio.serial.entity_reader(DescribeClusterV0Response)(body, k)
        out.append((header.correlation_id, r.error_code, r.error_message))
    return out


def test_requests_sent_back_to_back_are_all_started_before_the_first_is_answered(pipelined):
    """Pipelining (server.py): while more requests are here, each is started; their
    answers then leave oldest first. A request of another API waits for all of them."""
    port, api = pipelined
    with connect(port) as sock:
        sock.sendall(b"".join(_describe_cluster(cid) for cid in range(1, 6)) + frame(18, 0, 6))
        wait_until(lambda: ("waiting", 1) in api.events, 10, what="the first answer awaited")
        assert api.events == [("start", cid) for cid in range(1, 6)] + [("waiting", 1)]
        api.go.set()
        assert _answers(sock, 5) == [(cid, ErrorCode.none, f"answer {cid}") for cid in range(1, 6)]
        assert [e for e in api.events if e[0] == "finish"] == [("finish", cid) for cid in range(1, 6)]
        assert struct.unpack(">ih", _frame_body(sock)[:6]) == (6, 0)     # the ApiVersions, last: no error


def test_at_most_pipeline_max_requests_wait_at_once(pipelined):
    port, api = pipelined
    n = server.PIPELINE_MAX + 3
    with connect(port) as sock:
        sock.sendall(b"".join(_describe_cluster(cid) for cid in range(1, n + 1)))
        wait_until(lambda: ("waiting", 1) in api.events, 10, what="the first answer awaited")
        assert api.events == [("start", cid) for cid in range(1, server.PIPELINE_MAX + 1)] + [("waiting", 1)]
        api.go.set()
        assert [a[0] for a in _answers(sock, n)] == list(range(1, n + 1))


def test_started_requests_of_a_closed_connection_are_abandoned_not_finished(pipelined):
    port, api = pipelined
    api.coalesce = False
    with connect(port) as sock:
        sock.sendall(b"".join(_describe_cluster(cid) for cid in range(1, 4)))
        wait_until(lambda: ("waiting", 1) in api.events, 10, what="the first answer awaited")
    api.go.set()                     # the client is gone: answering 1 fails, 2 and 3 are let go
    wait_until(lambda: ("abandon", 3) in api.events, 10, what="the started requests abandoned")
    assert api.events[-2:] == [("abandon", 2), ("abandon", 3)]
    assert ("finish", 2) not in api.events and ("finish", 3) not in api.events


def test_a_start_that_raises_is_answered_in_its_turn(pipelined):
    """The error of request 2's start is its answer, after request 1's and before 3's; the
    connection goes on (a gateway bug is answered UNKNOWN_SERVER_ERROR, as a handler's)."""
    port, api = pipelined
    api.go.set()
    with connect(port) as sock:
        sock.sendall(_describe_cluster(1) + _describe_cluster(2, b"fail") + _describe_cluster(3))
        got = _answers(sock, 3)
        assert [(cid, code) for cid, code, _ in got] == [(1, ErrorCode.none), (2, ErrorCode.unknown_server_error),
                                                         (3, ErrorCode.none)]
        assert "start 2 broke" in got[1][2]


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


def test_a_lone_request_goes_through_its_apis_lone_reading_and_a_burst_the_general_way(tmp_path):
    """Api.lone (apis.py): a request with nothing started and nothing behind it is read by
    the API's `lone` and answered at once; requests sent back to back are started the
    general way (pipelining), and a frame `lone` declines (None) is decoded as before."""
    api = _Pipelined()
    api.go.set()

    def lone(ctx, frame):
        (cid,) = struct.unpack_from(">i", frame, 4)
        if bytes(frame[8:]).startswith(b"\0\x07general"):     # client id "general": not this shape
            return None
        if bytes(frame[8:]).startswith(b"\0\x04oops"):        # a bug in lone: the general way serves it
            raise RuntimeError("lone broke")
        api.events.append(("lone", cid))
        return apis.LoneRequest(60, 0, cid, frame), lambda: error_response(60, 0, ErrorCode.none, None,
                                                                            f"lone {cid}")
    table = apis.table(["odradek.daemon.gateway.apis"])
    table[60] = apis.Api(60, 0, 2, api.handler, api.start, lone)
    listen = socket.create_server(("127.0.0.1", 0))
    g = Gateway(listen, BrokerLinks(str(tmp_path / "unused.sock")), table=table)
    t = threading.Thread(target=g.serve_forever, daemon=True)
    t.start()
    try:
        with connect(listen.getsockname()[1]) as sock:
            sock.sendall(_describe_cluster(1))
            assert _answers(sock, 1) == [(1, ErrorCode.none, "lone 1")]
            sock.sendall(_describe_cluster(2, b"general"))
            assert _answers(sock, 1) == [(2, ErrorCode.none, "answer 2")]
            sock.sendall(_describe_cluster(6, b"oops"))
            assert _answers(sock, 1) == [(6, ErrorCode.none, "answer 6")]
            sock.sendall(b"".join(_describe_cluster(cid) for cid in (3, 4, 5)))
            got = _answers(sock, 3)
            assert [cid for cid, _, _ in got] == [3, 4, 5]
            assert got[0][2] == "answer 3"     # behind it were two more: started, not lone
        assert ("lone", 1) in api.events and ("start", 2) in api.events and ("start", 3) in api.events
        assert not any(e == ("lone", c) for e in api.events for c in (2, 3))
    finally:
        g.stop()
        t.join(10)


def test_a_lone_requests_body_is_kios_reading_or_none_when_kio_cannot_read_the_frame():
    good = frame(60, 0, 5, b"\0\0", flexible=True)[4:]            # DescribeCluster v0
    assert apis.LoneRequest(60, 0, 5, good).body is not None
    assert apis.LoneRequest(60, 0, 5, good[:9]).body is None       # cut inside the header
