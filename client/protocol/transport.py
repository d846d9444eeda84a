"""The I/O shells around Connection: a blocking client and a server-side channel.

Both speak AF_UNIX SOCK_STREAM and pass file descriptors with SCM_RIGHTS through
socket.send_fds / socket.recv_fds. The fd rule (PROTOCOL.md, "File descriptors"):

- Sending: a frame with fds goes out in a sendmsg of its own, the fds attached; if that
  sendmsg is partial, the rest follows without fds. Frames without fds may share a
  sendmsg. (Linux attaches the fds to the first byte sent.)
- Receiving: every recvmsg's data and fds go to Connection.receive_data together; the
  fds ride on the event of the last frame starting in those bytes. Fds are received
  close-on-exec (MSG_CMSG_CLOEXEC), so a broker spawning workers cannot leak them.
- Whoever handles a Request/Response event owns its fds. Everything else received
  (fds of a failed frame, of a broken connection, of an answer nobody waits for) is
  closed here, at once: no fd leaks.

ControlClient is for user programs and the CLI: one call at a time, every call bounded
by a deadline. Channel is for the broker's selector loop: non-blocking, never waits,
queues what the socket will not take yet.
"""
import array
import os
import select
import socket
import time
from collections import deque

from odradek.client.errors import NetworkException, RequestTimedOut
from odradek.client.protocol._connection import (
    CLIENT, MAX_FDS_PER_FRAME, SERVER, Connection, ConnectionClosed, ProtocolErrorEvent,
    Response, State)
from odradek.client.protocol._errors import LocalProtocolError
from odradek.client.protocol._framing import DEFAULT_MAX_FRAME_SIZE, FLAG_FDS, FLAGS_OFFSET
from odradek.client.protocol.messages import APIS

__all__ = ["ControlClient", "Channel", "DEFAULT_TIMEOUT", "RECV_SIZE", "close_fds"]

DEFAULT_TIMEOUT = 30.0     # seconds; Kafka's request.timeout.ms is 30 s too
RECV_SIZE = 64 * 1024      # bytes asked of each recvmsg


def close_fds(fds):
    """Close every fd in `fds`, ignoring ones already closed."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# Room for the most fds one sendmsg can carry, so a well-behaved peer is never truncated.
_ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FDS_PER_FRAME * array.array("i").itemsize)


def _recv(sock, bufsize):
    """One recvmsg: (data, fds, fds_truncated), fds close-on-exec.

    Not socket.recv_fds: Python 3.11's drops its `flags` argument, so MSG_CMSG_CLOEXEC
    would be lost (tests/client/protocol/test_transport.py checks the fds' flag).
    """
    data, ancillary, flags, _ = sock.recvmsg(bufsize, _ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds), bool(flags & socket.MSG_CTRUNC)


def _feed(conn, data, fds, truncated):
    """conn.receive_data, closing whatever fds the connection gives back."""
    try:
        return conn.receive_data(data, fds, fds_truncated=truncated)
    finally:
        close_fds(conn.take_unclaimed_fds())


# ---- Client ----------------------------------------------------------------------------

class ControlClient:
    """A blocking control-plane client: `call(request, fds) -> (response, fds)`, and
    `call_many(requests)` for several pipelined in one round trip.

    One call at a time, from one thread (not thread-safe: wrap it in a lock to share).
    Each call has a deadline (`timeout` seconds, for sending and answering together); a
    call never waits longer. Errors, all OdradekError:
      - the broker's error response -> its class (UnknownTopicOrPartition ...); the
        connection stays usable;
      - no answer in time -> RequestTimedOut; cannot connect, or the broker hangs up ->
        NetworkException; the broker sent garbage -> RemoteProtocolError. After these
        three the connection is closed (its state is unknown): make a new client.
    The fds returned belong to the caller, who must close them.
    """

    def __init__(self, path, timeout=DEFAULT_TIMEOUT, *, apis=APIS,
                 max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        path = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except TimeoutError:
            sock.close()
            raise RequestTimedOut(f"connecting to {path} took over {timeout:g}s") from None
        except OSError as e:
            sock.close()
            raise NetworkException(f"cannot connect to the broker at {path}: "
                                   f"{e.strerror or e}; is 'odradek serve' running?") from None
        self._setup(sock, path, timeout, apis, max_frame_size)

    @classmethod
    def from_socket(cls, sock, timeout=DEFAULT_TIMEOUT, *, apis=APIS,
                    max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        """A client over an already connected socket (which it then owns)."""
        self = cls.__new__(cls)
        self._setup(sock, "<socket>", timeout, apis, max_frame_size)
        return self

    def _setup(self, sock, path, timeout, apis, max_frame_size):
        self.path = path
        self.timeout = timeout
        self._sock = sock
        self._conn = Connection(CLIENT, apis=apis, max_frame_size=max_frame_size)
        self._closed_by = None     # None while usable; else why it is not

    @property
    def closed(self):
        return self._closed_by is not None

    def call(self, request, fds=(), *, timeout=None, version=None):
        """Send `request` (with `fds`, which stay the caller's) and wait for its answer.

        Returns (response message, list of received fds). Raises the error response's
        OdradekError, RequestTimedOut, NetworkException or RemoteProtocolError (above).
        """
        self._check_usable("call()")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        frame = self._conn.send_request(request, fds, version=version)
        cid = self._conn.last_correlation_id

        def exchange():
            self._send(frame, fds, deadline)
            return self._wait_for(cid, deadline)
        return self._io(exchange, lambda: f"no answer to {type(request).__name__} from {self.path} "
                                          f"within {timeout:g}s")

    def call_many(self, requests, *, timeout=None):
        """Send every request of `requests` before reading any answer (pipelining:
        PROTOCOL.md, "Correlation ids, pipelining, ordering"), then wait for all of them:
        one round trip for the lot, and requests the broker relays to workers are served
        by those workers at once. Returns one item per request, in order: (response
        message, list of received fds) or the OdradekError of its error answer (the
        connection stays usable). RequestTimedOut, NetworkException and
        RemoteProtocolError fail the whole call, as call()'s do (the fds of the answers
        already in are closed)."""
        self._check_usable("call_many()")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        cids = []

        def exchange():
            for request in requests:
                frame = self._conn.send_request(request, ())
                cids.append(self._conn.last_correlation_id)
                self._send(frame, (), deadline)
            return self._wait_for_all(cids, deadline)
        answers = self._io(exchange, lambda: f"no answer to {len(cids)} pipelined requests from {self.path} "
                                             f"within {timeout:g}s")
        out = []
        for cid in cids:
            answer = answers[cid]
            if answer.error is not None:
                close_fds(answer.fds)
                out.append(answer.error)
            else:
                out.append((answer.message, list(answer.fds)))
        return out

    def _check_usable(self, what):
        if self._closed_by is not None:
            if self._closed_by == "user":
                raise LocalProtocolError(f"{what} on a closed ControlClient")
            raise NetworkException(f"the connection to {self.path} was closed after an "
                                   f"earlier failure ({self._closed_by}); open a new client")

    def _io(self, exchange, timed_out):
        """exchange(), its socket's failures as the client's errors (the connection then
        abandoned): a timeout RequestTimedOut (timed_out() says of what), any other OSError
        NetworkException."""
        try:
            return exchange()
        except TimeoutError:
            self._abandon("timeout")
            raise RequestTimedOut(timed_out()) from None
        except OSError as e:
            self._abandon(type(e).__name__)
            raise NetworkException(f"connection to the broker at {self.path} failed: "
                                   f"{e.strerror or e}") from None

    def peer_closed(self):
        """True when the broker has gone (its end closed, or this client failed before):
        a look at the socket, without blocking or reading. Between calls the broker never
        sends anything, so a readable socket means end of file. Not while a call() is in
        flight on another thread."""
        if self._closed_by is not None:
            return True
        try:
            # select first: recv() on a socket with a timeout would wait for it
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return False
            data = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        return not data

    def close(self):
        """Close the connection (idempotent)."""
        if self._closed_by is None:
            self._abandon("user")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_closed_by", "gone") is None:
            self._abandon("user")

    # ---- internals ---------------------------------------------------------------

    def _abandon(self, why):
        self._closed_by = why
        self._conn.close()
        close_fds(self._conn.take_unclaimed_fds())
        self._sock.close()

    def _settimeout(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._sock.settimeout(remaining)

    def _send(self, frame, fds, deadline):
        view = memoryview(frame)
        if fds:
            self._settimeout(deadline)
            sent = socket.send_fds(self._sock, [view], list(fds))
            view = view[sent:]
        if view:
            self._settimeout(deadline)
            self._sock.sendall(view)

    def _wait_for_all(self, cids, deadline):
        """{cid: Response} once every one of `cids` is answered (call_many)."""
        wanted, got = set(cids), {}
        try:
            while len(got) < len(wanted):
                self._settimeout(deadline)
                failure = None
                for event in _feed(self._conn, *_recv(self._sock, RECV_SIZE)):
                    if isinstance(event, Response) and event.correlation_id in wanted:
                        got[event.correlation_id] = event
                    elif isinstance(event, Response):
                        close_fds(event.fds)
                    elif isinstance(event, ProtocolErrorEvent):
                        if event.fatal or event.correlation_id in wanted:
                            failure = failure or event.error
                    elif isinstance(event, ConnectionClosed):
                        failure = failure or NetworkException(
                            f"the broker at {self.path} closed the connection before answering")
                if failure is not None:
                    self._abandon(failure.name)
                    raise failure
        except BaseException:
            for answer in got.values():
                close_fds(answer.fds)
            raise
        return got

    def _wait_for(self, cid, deadline):
        while True:
            self._settimeout(deadline)
            events = _feed(self._conn, *_recv(self._sock, RECV_SIZE))
            answer, failure = None, None
            for event in events:
                if isinstance(event, Response) and event.correlation_id == cid:
                    answer = event
                elif isinstance(event, Response):
                    close_fds(event.fds)    # answers no call of ours (cannot happen)
                elif isinstance(event, ProtocolErrorEvent):
                    if event.fatal or event.correlation_id == cid:
                        failure = failure or event.error
                elif isinstance(event, ConnectionClosed):
                    failure = failure or NetworkException(
                        f"the broker at {self.path} closed the connection before answering")
            if failure is not None:
                if answer is not None:
                    close_fds(answer.fds)
                self._abandon(failure.name)
                raise failure
            if answer is not None:
                if answer.error is not None:
                    close_fds(answer.fds)
                    raise answer.error
                return answer.message, list(answer.fds)


# ---- Server ----------------------------------------------------------------------------

class _Outgoing:
    __slots__ = ("view", "fds", "fds_sent", "close_fds")

    def __init__(self, data, fds, close_after):
        self.view = memoryview(data)
        self.fds = list(fds)
        self.fds_sent = not self.fds
        self.close_fds = close_after


class Channel:
    """One accepted client connection in the broker's selector loop: a SERVER
    Connection plus a queue of outgoing frames and their fds.

    Owned by the loop's thread; not thread-safe. The socket is passed to each call and
    must be non-blocking; the Channel never closes it. The loop:
        readable and channel.wants_read -> for event in channel.feed(sock): handle it
        writable and channel.wants_write -> channel.flush(sock)
        channel.should_close -> channel.close(); sock.close()
    (Select for reading only while wants_read: once the connection is broken or closed,
    feed() reads nothing, and a level-triggered selector would spin on the socket.)
    flush() and feed() let OSError (EPIPE, ECONNRESET ...) through: close the channel.
    """

    def __init__(self, *, apis=APIS, max_frame_size=DEFAULT_MAX_FRAME_SIZE,
                 recv_size=RECV_SIZE, max_reads=16, role=SERVER):
        # role=CLIENT: the broker's non-blocking link to a worker, which serves requests
        # (request() then queues them; feed() returns their Responses)
        self.connection = Connection(role, apis=apis, max_frame_size=max_frame_size)
        self.recv_size = recv_size
        self.max_reads = max_reads         # recvmsg calls per feed(): fairness between peers
        self._queue = deque()
        self.pending_bytes = 0             # queued and not yet written: for backpressure

    @property
    def wants_read(self):
        """The connection is OPEN: feed() will read."""
        return self.connection.state is State.OPEN

    @property
    def wants_write(self):
        return bool(self._queue)

    @property
    def should_close(self):
        """The peer is gone or broke the protocol, and every queued byte is written."""
        return self.connection.state is not State.OPEN and not self._queue

    def feed(self, sock):
        """Read what the socket has (up to max_reads recvmsg calls) and return the events.

        Automatic replies (unknown api, bad version, garbage body) are queued for flush();
        fds no event owns are closed. Returns [] once the connection is not OPEN.
        """
        if sock.gettimeout() != 0.0:
            raise LocalProtocolError("Channel.feed needs a non-blocking socket")
        conn = self.connection
        events = []
        for _ in range(self.max_reads):
            if conn.state is not State.OPEN:
                break
            try:
                data, fds, truncated = _recv(sock, self.recv_size)
            except BlockingIOError:
                break
            except ConnectionResetError:
                data, fds, truncated = b"", [], False
            events += _feed(conn, data, fds, truncated)
            if not data:
                break
        auto = conn.data_to_send()
        if auto:
            self.send(auto)
        return events

    def send(self, frame, fds=(), *, close_fds=False):
        """Queue one frame (from Connection.send_*) with its fds. `close_fds`: close the
        fds once sent (or when the channel closes), for fds opened just for this peer."""
        if bool(fds) != bool(frame[FLAGS_OFFSET] & FLAG_FDS):
            raise LocalProtocolError("fds must go with the frame built for them "
                                     "(Connection.send_response(..., fds))")
        self._queue.append(_Outgoing(frame, fds, close_fds))
        self.pending_bytes += len(frame)

    def respond(self, correlation_id, message, fds=(), *, close_fds=False):
        """Queue the response to request `correlation_id`. On LocalProtocolError (the
        message does not encode) nothing is queued: answer with respond_error()."""
        self.send(self.connection.send_response(correlation_id, message, fds), fds,
                  close_fds=close_fds)

    def request(self, message, fds=(), *, close_fds=False):
        """Queue a request (role=CLIENT); returns its correlation id. `close_fds` as in send()."""
        frame = self.connection.send_request(message, fds)
        self.send(frame, fds, close_fds=close_fds)
        return self.connection.last_correlation_id

    def respond_error(self, correlation_id, error):
        """Queue an error response: an OdradekError keeps its code, others become
        UNKNOWN_SERVER_ERROR."""
        self.send(self.connection.send_error(correlation_id, error))

    def flush(self, sock):
        """Write as much of the queue as the socket takes now. True when all is written.

        A frame with fds starts a sendmsg of its own; frames without fds (and the rest
        of a frame whose fds went already) are written together.
        """
        queue = self._queue
        while queue:
            head = queue[0]
            try:
                if not head.fds_sent:
                    sent = socket.send_fds(sock, [head.view], head.fds)
                    head.fds_sent = True   # sent > 0: the fds went with the first byte
                    if head.close_fds:
                        close_fds(head.fds)
                        head.fds = []
                else:
                    views = []
                    for item in queue:
                        if not item.fds_sent or len(views) == 64:
                            break
                        views.append(item.view)
                    sent = sock.sendmsg(views)
            except BlockingIOError:
                return False
            self.pending_bytes -= sent
            while sent:
                item = queue[0]
                n = min(sent, len(item.view))
                item.view = item.view[n:]
                sent -= n
                if not item.view:
                    queue.popleft()
        return True

    def close(self):
        """Release what the channel holds: fds queued with close_fds and not yet sent,
        fds of a partial frame. Idempotent; the socket is the caller's to close."""
        for item in self._queue:
            if item.close_fds:
                close_fds(item.fds)
                item.fds = []
        self._queue.clear()
        self.pending_bytes = 0
        self.connection.close()
        close_fds(self.connection.take_unclaimed_fds())
