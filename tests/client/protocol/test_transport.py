"""The socket shells: fds over a real socketpair, ControlClient deadlines, Channel writes.

Nothing here sleeps: a silent peer is a socketpair end nobody writes to, and every wait
is a ControlClient deadline of a few tens of milliseconds or a bounded select.
"""
import os
import selectors
import socket
import threading
import time

import pytest

from odradek.client import errors
from odradek.client.protocol import (
    CLIENT, SERVER, Channel, Connection, ControlClient, FdMismatch, LocalProtocolError,
    ProtocolErrorEvent, RemoteProtocolError, Request, Response, messages as m)
from odradek.client.protocol import transport
from odradek.client.protocol._framing import FLAG_FDS, FLAG_RESPONSE, encode_frame


def memfd_with(data):
    fd = os.memfd_create("odradek-test", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


@pytest.fixture
def sockets():
    """A connected AF_UNIX stream pair: (client end, server end, non-blocking)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def answer_for(request, response=None, error=None, cid_hint=1):
    """The bytes a server would send for the client's `cid_hint`-th request, made by a
    scratch pair of Connections (a new ControlClient numbers its requests 1, 2, ...)."""
    scratch_client, scratch_server = Connection(CLIENT), Connection(SERVER)
    for _ in range(cid_hint):
        scratch_server.receive_data(scratch_client.send_request(request))
    if error is not None:
        return scratch_server.send_error(cid_hint, error)
    return scratch_server.send_response(cid_hint, response)


def recv_events(sock, conn, deadline_s=2.0):
    """Blocking read on a client socket until `conn` yields events (bounded wait)."""
    sock.settimeout(deadline_s)
    while True:
        events = conn.receive_data(*transport._recv(sock, 65536)[:2])
        if events:
            return events


# ---- fd passing ------------------------------------------------------------------------

def test_a_memfd_sent_by_the_channel_is_readable_on_the_other_side_and_nothing_leaks(
        sockets, no_fd_leak):
    a, b = sockets
    client, channel = Connection(CLIENT), Channel()
    a.sendall(client.send_request(m.OpenFetchRequest(topic="orders", partition=0)))
    request = channel.feed(b)[0]
    assert isinstance(request, Request) and request.fds == ()

    memfd = memfd_with(b"partition state")
    channel.respond(request.correlation_id, m.OpenFetchResponse(
        topic="orders", fds=[m.PassedFd(kind=m.FdKind.PARTITION_STATE, size=15)]),
        fds=[memfd], close_fds=True)
    assert channel.flush(b) is True
    response = recv_events(a, client)[0]
    assert isinstance(response, Response)
    (received,) = response.fds
    assert os.pread(received, 15, 0) == b"partition state"
    assert os.get_inheritable(received) is False          # MSG_CMSG_CLOEXEC
    assert response.message.fds[0].size == os.fstat(received).st_size == 15
    os.close(received)


def test_fds_with_a_frame_that_does_not_announce_them_are_closed_at_once(sockets, no_fd_leak):
    a, b = sockets
    channel = Channel()
    frame = Connection(CLIENT).send_request(m.StatusRequest())   # no FDS flag
    fd = memfd_with(b"x")
    socket.send_fds(a, [frame], [fd])
    os.close(fd)
    event = channel.feed(b)[0]
    assert isinstance(event, ProtocolErrorEvent) and isinstance(event.error, FdMismatch)
    assert channel.should_close is False       # the error reply is queued first
    channel.flush(b)
    assert channel.should_close is True
    channel.close()


def test_fds_sent_with_a_request_the_server_refuses_are_closed(sockets, no_fd_leak):
    a, b = sockets
    channel = Channel()
    fd = memfd_with(b"x")
    socket.send_fds(a, [encode_frame(999, 0, 5, FLAG_FDS, b"")], [fd])
    os.close(fd)
    event = channel.feed(b)[0]
    assert isinstance(event, ProtocolErrorEvent) and not event.fatal
    channel.flush(b)
    client = Connection(CLIENT)
    client._in_flight[5] = (m.APIS[m.ApiKey.STATUS], 0, None)   # read the reply as its id
    a.settimeout(1)
    assert client.receive_data(a.recv(4096))[0].correlation_id == 5
    channel.close()


def test_a_large_frame_with_fds_survives_partial_writes_and_keeps_its_fds(sockets, no_fd_leak):
    a, b = sockets
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client, channel = Connection(CLIENT), Channel()
    a.sendall(b"".join(client.send_request(m.StatusRequest()) for _ in range(3)))
    requests = channel.feed(b)
    big = m.StatusResponse(version="big", partitions=[
        m.PartitionStatus(topic="t" * 100, partition=i) for i in range(2000)])
    fds = [memfd_with(b"one"), memfd_with(b"two")]
    channel.respond(1, m.StatusResponse(version="small"))
    channel.respond(2, big, fds=fds, close_fds=True)
    channel.respond(3, m.StatusResponse(version="after"))
    got = []
    a.settimeout(2)
    deadline = time.monotonic() + 5
    while len(got) < 3:
        assert time.monotonic() < deadline
        channel.flush(b)
        got += client.receive_data(*transport._recv(a, 65536)[:2])
    assert [r.message.version for r in got] == ["small", "big", "after"]
    assert [len(r.fds) for r in got] == [0, 2, 0]
    assert [os.pread(fd, 3, 0) for fd in got[1].fds] == [b"one", b"two"]
    assert got[1].message == big and len(requests) == 3
    for fd in got[1].fds:
        os.close(fd)
    assert channel.pending_bytes == 0 and not channel.wants_write


def test_closing_a_channel_closes_fds_it_had_not_sent_yet(sockets, no_fd_leak):
    a, b = sockets
    client, channel = Connection(CLIENT), Channel()
    a.sendall(client.send_request(m.OpenFetchRequest()))
    channel.feed(b)
    channel.respond(1, m.OpenFetchResponse(), fds=[memfd_with(b"x")], close_fds=True)
    channel.close()


def test_a_channel_refuses_fds_for_a_frame_not_built_to_carry_them(sockets):
    a, b = sockets
    channel = Channel()
    a.sendall(Connection(CLIENT).send_request(m.StatusRequest()))
    channel.feed(b)
    frame = channel.connection.send_response(1, m.StatusResponse())
    with pytest.raises(LocalProtocolError, match="fds must go with the frame"):
        channel.send(frame, fds=[0])
    assert not channel.wants_write


def test_a_channel_refuses_a_blocking_socket(sockets):
    a, _ = sockets
    with pytest.raises(LocalProtocolError, match="non-blocking"):
        Channel().feed(a)


def test_a_channel_reports_the_peer_hanging_up(sockets):
    a, b = sockets
    channel = Channel()
    a.close()
    events = channel.feed(b)
    assert events and events[-1].unanswered == ()
    assert channel.should_close


# ---- ControlClient ---------------------------------------------------------------------

def test_a_call_to_a_silent_peer_times_out_within_its_deadline(sockets):
    a, b = sockets
    client = ControlClient.from_socket(a, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(errors.RequestTimedOut, match="no answer to StatusRequest"):
        client.call(m.StatusRequest())
    assert time.monotonic() - started < 1.0
    assert client.closed
    with pytest.raises(errors.NetworkException, match="earlier failure"):
        client.call(m.StatusRequest())


def test_half_an_answer_then_silence_still_times_out(sockets):
    a, b = sockets
    b.sendall(answer_for(m.StatusRequest(), m.StatusResponse(version="x"))[:10])
    client = ControlClient.from_socket(a, timeout=0.05)
    with pytest.raises(errors.RequestTimedOut):
        client.call(m.StatusRequest())


def test_a_per_call_timeout_overrides_the_clients(sockets):
    a, _ = sockets
    client = ControlClient.from_socket(a, timeout=60)
    started = time.monotonic()
    with pytest.raises(errors.RequestTimedOut):
        client.call(m.StatusRequest(), timeout=0.02)
    assert time.monotonic() - started < 1.0


def test_an_answer_already_waiting_is_returned(sockets):
    a, b = sockets
    b.sendall(answer_for(m.StatusRequest(), m.StatusResponse(broker_pid=4242)))
    with ControlClient.from_socket(a, timeout=1) as client:
        response, fds = client.call(m.StatusRequest())
    assert response.broker_pid == 4242 and fds == []
    assert a.fileno() == -1                  # the context manager closed the socket


def test_an_error_response_raises_its_class_and_the_client_stays_usable(sockets):
    a, b = sockets
    b.sendall(answer_for(m.MetadataRequest(), error=errors.UnknownTopicOrPartition("no t")))
    client = ControlClient.from_socket(a, timeout=1)
    with pytest.raises(errors.UnknownTopicOrPartition, match="no t"):
        client.call(m.MetadataRequest())
    assert not client.closed
    b.sendall(answer_for(m.MetadataRequest(), m.MetadataResponse(cluster_id="c"), cid_hint=2))
    assert client.call(m.MetadataRequest())[0].cluster_id == "c"
    client.close()
    with pytest.raises(LocalProtocolError, match="closed ControlClient"):
        client.call(m.MetadataRequest())


def test_garbage_from_the_broker_raises_remote_protocol_error_and_closes(sockets):
    a, b = sockets
    b.sendall(encode_frame(1003, 1, 1, FLAG_RESPONSE, b"\x01"))
    client = ControlClient.from_socket(a, timeout=1)
    with pytest.raises(RemoteProtocolError, match="StatusResponse"):
        client.call(m.StatusRequest())
    assert client.closed


def test_a_broker_that_hangs_up_gives_network_exception(sockets):
    a, b = sockets
    b.shutdown(socket.SHUT_WR)
    client = ControlClient.from_socket(a, timeout=1)
    with pytest.raises(errors.NetworkException, match="closed the connection"):
        client.call(m.StatusRequest())
    assert client.closed


def test_a_broker_that_is_gone_gives_network_exception(sockets):
    a, b = sockets
    b.close()
    client = ControlClient.from_socket(a, timeout=1)
    with pytest.raises(errors.NetworkException):
        client.call(m.StatusRequest())


def test_connecting_to_a_missing_socket_says_to_start_the_broker(tmp_path, no_fd_leak):
    with pytest.raises(errors.NetworkException, match="is 'odradek serve' running"):
        ControlClient(tmp_path / "missing.sock", timeout=1)


# ---- A real round trip: ControlClient against a Channel-driven server loop ------------

class ServerLoop:
    """The broker's loop in miniature: a listening socket, a selector, one Channel per
    connection, a handler. Runs in a thread; stop() ends it through a pipe."""

    def __init__(self, path, handler):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.listener.setblocking(False)
        self.handler = handler
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        channels = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            sel.register(self.stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select(timeout=10):
                    if key.fileobj == self.stop_r:
                        for sock, channel in channels.items():
                            channel.close()
                            sock.close()
                        return
                    if key.fileobj is self.listener:
                        sock, _ = self.listener.accept()
                        sock.setblocking(False)
                        channels[sock] = Channel()
                        sel.register(sock, selectors.EVENT_READ)
                        continue
                    sock, channel = key.fileobj, channels[key.fileobj]
                    for event in channel.feed(sock):
                        if isinstance(event, Request):
                            self.handler(channel, event)
                    channel.flush(sock)
                    if channel.should_close:
                        sel.unregister(sock)
                        channel.close()
                        sock.close()
                        del channels[sock]

    def stop(self):
        os.write(self.stop_w, b"x")
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.listener.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def handle(channel, request):
    msg = request.message
    if isinstance(msg, m.ApiVersionsRequest):
        channel.respond(request.correlation_id, m.api_versions_response())
    elif isinstance(msg, m.GetSegmentRequest):
        # a client sent us an fd: read it, close it, answer with a segment fd of our own
        seen = b"".join(os.pread(fd, 64, 0) for fd in request.fds)
        for fd in request.fds:
            os.close(fd)
        segment = memfd_with(b"segment bytes:" + seen)
        channel.respond(request.correlation_id, m.GetSegmentResponse(
            topic=msg.topic, base_offset=msg.offset, size=14 + len(seen),
            fds=[m.PassedFd(kind=m.FdKind.SEGMENT, base_offset=msg.offset)]),
            fds=[segment], close_fds=True)
    else:
        channel.respond_error(request.correlation_id,
                              errors.UnknownTopicOrPartition(f"no answer for {msg!r}"))


def test_control_client_and_channel_round_trip_with_fds_both_ways(tmp_path, no_fd_leak):
    server = ServerLoop(tmp_path / "odradek.sock", handle)
    try:
        with ControlClient(tmp_path / "odradek.sock", timeout=5) as client:
            versions, _ = client.call(m.ApiVersionsRequest(client_software_name="test"))
            assert {v.api_key for v in versions.api_keys} == {a.key for a in m.APIS}

            mine = memfd_with(b"hello")
            response, fds = client.call(
                m.GetSegmentRequest(topic="t", offset=100), fds=[mine])
            os.close(mine)
            assert response.fds[0].kind == "segment" and response.base_offset == 100
            assert os.pread(fds[0], 64, 0) == b"segment bytes:hello"
            assert os.get_inheritable(fds[0]) is False
            os.close(fds[0])

            with pytest.raises(errors.UnknownTopicOrPartition):
                client.call(m.StatusRequest())
            assert client.call(m.ApiVersionsRequest())[0] == versions
    finally:
        server.stop()


def test_call_many_pipelines_and_matches_answers_given_out_of_order(tmp_path, no_fd_leak):
    """call_many sends every request before reading; the server may answer in any order
    (PROTOCOL.md): each answer goes to its request, with its own fd, and an error answer
    is that item's alone (the connection goes on)."""
    pending = []

    def reverse_after_five(channel, request):
        pending.append(request)
        if len(pending) < 5:
            return
        for req in reversed(pending):
            msg = req.message
            if isinstance(msg, m.GetSegmentRequest):
                channel.respond(req.correlation_id, m.GetSegmentResponse(
                    topic=msg.topic, base_offset=msg.offset, size=8,
                    fds=[m.PassedFd(kind=m.FdKind.SEGMENT, base_offset=msg.offset)]),
                    fds=[memfd_with(b"seg %04d" % msg.offset)], close_fds=True)
            else:
                channel.respond_error(req.correlation_id, errors.UnknownTopicOrPartition("none here"))
        pending.clear()

    server = ServerLoop(tmp_path / "odradek.sock", reverse_after_five)
    try:
        with ControlClient(tmp_path / "odradek.sock", timeout=5) as client:
            requests = [m.GetSegmentRequest(topic="t", offset=o) for o in (10, 20)] + [m.StatusRequest()] + \
                [m.GetSegmentRequest(topic="t", offset=o) for o in (30, 40)]
            got = client.call_many(requests)
            assert isinstance(got[2], errors.UnknownTopicOrPartition)
            for (response, fds), offset in zip(got[:2] + got[3:], (10, 20, 30, 40)):
                assert response.base_offset == offset and len(fds) == 1
                assert os.pread(fds[0], 64, 0) == b"seg %04d" % offset
                os.close(fds[0])
            assert not client.closed
            again = client.call_many([m.GetSegmentRequest(topic="t", offset=o) for o in range(5)])
            assert [r.base_offset for r, _ in again] == list(range(5))
            for _, fds in again:
                os.close(fds[0])
    finally:
        server.stop()
