"""Connection: the control-plane protocol state of one socket, for either end. Sans-IO.

Theory of operation
-------------------
A Connection turns bytes (and the file descriptors that came with them) into events, and
messages into bytes. It never touches a socket, a clock or an fd: the transport (or a
test) moves the bytes, passes received fds in as plain ints, and closes what the
Connection hands back as unclaimed.

    client:  send_request(msg, fds) -> bytes        receive_data(data, fds) -> [Response,
                                                        ProtocolErrorEvent, ConnectionClosed]
    server:  receive_data(data, fds) -> [Request,    send_response(cid, msg, fds) -> bytes
               ProtocolErrorEvent, ConnectionClosed]  send_error(cid, exc) -> bytes
                                                      data_to_send() -> automatic replies

States: OPEN -> BROKEN (the peer broke the framing; close after flushing) or CLOSED (the
peer closed, or close() was called). Only OPEN accepts bytes; a client only sends
requests while OPEN; a server may answer requests it already received in any state.

Rules:
- The client numbers requests 1, 2, 3 ... (wrapping below 2**32, skipping ids in
  flight); any number may be in flight (pipelining). A response is matched by its
  correlation id alone; answers may come in any order. A response to no request in
  flight is fatal (BROKEN): the two ends no longer agree on the stream.
- The server answers by itself, and keeps the connection open, when the framing is intact
  but the request cannot be served: unknown api_key -> INVALID_REQUEST, version out of
  range -> UNSUPPORTED_VERSION, body that does not decode -> INVALID_REQUEST. The reply
  waits in data_to_send(); a ProtocolErrorEvent (fatal=False) reports it.
- Framing errors are fatal: a length above max_frame_size (answered MESSAGE_TOO_LARGE
  with the frame's correlation id, since the whole 13-byte header is read first), a
  length shorter than the header, unknown flag bits, a frame going the wrong way, a
  reused correlation id, fds that do not match the FDS flag.
- File descriptors: the sender sends each frame that carries fds in its own sendmsg,
  with the fds, and sets FLAG_FDS; Linux delivers them with the first byte of that
  sendmsg and never merges a later frame into the same recvmsg. So fds received by one
  recvmsg belong to the LAST frame that STARTS within the bytes that recvmsg returned.
  They ride on that frame's Request/Response event, whose handler then owns them.
  Fds that no event claims (frame failed, connection broken, no frame starts in those
  bytes) are returned by take_unclaimed_fds() for the transport to close.
"""
import enum
from dataclasses import dataclass, field

from odradek.client.protocol._errors import (
    BadFrame, DuplicateCorrelationId, FdMismatch, InvalidValue, LocalProtocolError,
    RemoteProtocolError, Truncated, UnknownApiKey, UnknownCorrelationId,
    UnsupportedApiVersion, error_from_wire, error_to_wire)
from odradek.client.protocol._framing import (
    DEFAULT_MAX_FRAME_SIZE, FLAG_ERROR, FLAG_FDS, FLAG_RESPONSE, MAX_CORRELATION_ID,
    MIN_LENGTH, FrameSplitter, encode_frame)
from odradek.client.protocol.messages import APIS, ErrorBody

__all__ = ["Role", "CLIENT", "SERVER", "State", "Connection", "Event", "Request",
           "Response", "ProtocolErrorEvent", "ConnectionClosed", "MAX_FDS_PER_FRAME"]

# Linux's SCM_MAX_FD: the most fds one sendmsg may carry.
MAX_FDS_PER_FRAME = 253


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


CLIENT = Role.CLIENT
SERVER = Role.SERVER


class State(enum.Enum):
    OPEN = "open"
    BROKEN = "broken"
    CLOSED = "closed"


# ---- Events ----------------------------------------------------------------------------

class Event:
    """Base of what receive_data returns."""
    __slots__ = ()


@dataclass(slots=True)
class Request(Event):
    """A decoded request (server side). Whoever handles it owns `fds`."""
    correlation_id: int
    api_key: int
    api_version: int
    message: object
    fds: tuple = ()


@dataclass(slots=True)
class Response(Event):
    """An answer to `request` (client side): `message`, or `error` (an OdradekError)
    when the server sent an error response. Whoever handles it owns `fds`."""
    correlation_id: int
    api_key: int
    api_version: int
    message: object
    error: object
    request: object
    fds: tuple = ()

    def result(self):
        """The response message, or raise its error."""
        if self.error is not None:
            raise self.error
        return self.message


@dataclass(slots=True)
class ProtocolErrorEvent(Event):
    """The peer broke the protocol. `fatal`: the connection is BROKEN, close it once
    data_to_send() is flushed. Else only the frame `correlation_id` failed: on a server
    the error reply is already queued; on a client that request is finished."""
    error: RemoteProtocolError
    correlation_id: object = None
    fatal: bool = False


@dataclass(slots=True)
class ConnectionClosed(Event):
    """The peer closed its end. `unanswered`: correlation ids still in flight."""
    unanswered: tuple = field(default_factory=tuple)


# ---- The connection --------------------------------------------------------------------

class Connection:
    """Protocol state of one control-plane connection, client or server end.

    Owned by one thread (the broker's loop, or the one thread calling ControlClient);
    not thread-safe. `apis` is the ApiTable this end speaks: a server refuses the rest.
    """

    def __init__(self, role, *, apis=APIS, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        if not isinstance(role, Role):
            raise TypeError(f"role must be CLIENT or SERVER, not {role!r}")
        self.role = role
        self.apis = apis
        self.max_frame_size = max_frame_size
        self.state = State.OPEN
        self._frames = FrameSplitter(max_frame_size)
        self._in_flight = {}       # correlation id -> (Api, version, request message)
        self._next_id = 1
        self.last_correlation_id = None
        self._fds_at = {}          # stream position of a frame's first byte -> its fds
        self._unclaimed = []
        self._outbox = []          # automatic error replies (server)

    # ---- introspection -----------------------------------------------------------

    @property
    def in_flight(self):
        """Requests sent and not yet answered (client) or received and not yet
        answered (server)."""
        return len(self._in_flight)

    @property
    def buffered(self):
        """Bytes of a partial frame held: all a silent peer costs (<= max_frame_size+4)."""
        return self._frames.buffered

    # ---- sending -----------------------------------------------------------------

    def send_request(self, message, fds=(), *, version=None):
        """The frame for `message` (client only). Assigns the next correlation id (see
        last_correlation_id). `version` defaults to the api's max_version. The caller
        sends the bytes and the fds together in one sendmsg (the transport does)."""
        if self.role is not CLIENT:
            raise LocalProtocolError("only a client sends requests")
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot send a request on a {self.state.value} connection")
        api = self.apis.for_request(type(message))
        if api is None:
            raise LocalProtocolError(f"{type(message).__name__} is not a request of this "
                                     f"connection's api table")
        version = api.max_version if version is None else version
        if not api.supports(version):
            raise LocalProtocolError(f"{api.name} v{version} is outside "
                                     f"v{api.min_version}..v{api.max_version}")
        correlation_id = self._allocate_id()
        frame = self._frame(api.key, version, correlation_id, 0, message.encode(version), fds)
        self._in_flight[correlation_id] = (api, version, message)
        self._next_id = correlation_id + 1
        self.last_correlation_id = correlation_id
        return frame

    def send_response(self, correlation_id, message, fds=()):
        """The frame answering request `correlation_id` with `message` (server only).
        LocalProtocolError if no such request is in flight or `message` is not its
        response type; the request stays in flight then, so send_error can answer it."""
        api, version = self._answering(correlation_id)
        if type(message) is not api.response:
            raise LocalProtocolError(f"{api.name} is answered with {api.response.__name__}, "
                                     f"not {type(message).__name__}")
        frame = self._frame(api.key, version, correlation_id, FLAG_RESPONSE,
                            message.encode(version), fds)
        del self._in_flight[correlation_id]
        return frame

    def send_error(self, correlation_id, error):
        """The error response answering request `correlation_id` with `error` (server
        only): an OdradekError keeps its code and message, any other exception becomes
        UNKNOWN_SERVER_ERROR (see error_to_wire)."""
        api, version = self._answering(correlation_id)
        frame = self._error_frame(api.key, version, correlation_id, error)
        del self._in_flight[correlation_id]
        return frame

    def data_to_send(self):
        """Bytes this end must send that no caller asked for: the server's automatic
        error replies. Drained by each call; send them like any other frames."""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def take_unclaimed_fds(self):
        """Received fds no event owns; the caller must close them. Drained by each call."""
        fds, self._unclaimed = self._unclaimed, []
        return fds

    def close(self):
        """Stop: no more bytes are accepted, and fds held for a partial frame become
        unclaimed (take_unclaimed_fds). Idempotent."""
        self.state = State.CLOSED if self.state is State.OPEN else self.state
        self._drop_held_fds()

    # ---- receiving ---------------------------------------------------------------

    def receive_data(self, data, fds=(), *, fds_truncated=False):
        """Events for the bytes `data` and the fds that came with them (one recvmsg).

        b"" means the peer closed its end. `fds_truncated`: the recvmsg reported
        MSG_CTRUNC (the kernel dropped fds that did not fit), which is fatal.
        Raises LocalProtocolError if the connection is not OPEN (its fds are unclaimed).
        """
        fds = list(fds)
        if self.state is not State.OPEN:
            self._unclaimed += fds
            raise LocalProtocolError(f"receive_data on a {self.state.value} connection")
        if not data:
            self._unclaimed += fds
            return self._receive_eof()
        chunk_start = self._frames.received
        self._frames.feed(data)
        frames, framing_error = [], None
        try:
            while (frame := self._frames.next_frame()) is not None:
                frames.append(frame)
        except RemoteProtocolError as e:
            framing_error = e
        if fds_truncated and framing_error is None:
            framing_error = FdMismatch("more fds arrived than the receive buffer holds; "
                                       "the kernel dropped some")
        if fds:
            self._claim(fds, chunk_start, frames, framing_error)

        events = []
        for frame in frames:
            events.append(self._handle(frame))
            if self.state is not State.OPEN:
                break
        if framing_error is not None and self.state is State.OPEN:
            events.append(self._fatal(framing_error, framing_error.header))
        if self.state is not State.OPEN:
            self._drop_held_fds()
        return events

    # ---- internals ---------------------------------------------------------------

    def _allocate_id(self):
        cid = self._next_id
        for _ in range(len(self._in_flight) + 1):
            if cid > MAX_CORRELATION_ID:
                cid = 0
            if cid not in self._in_flight:
                return cid
            cid += 1
        raise LocalProtocolError("every correlation id is in flight")  # pragma: no cover

    def _answering(self, correlation_id):
        if self.role is not SERVER:
            raise LocalProtocolError("only a server sends responses")
        try:
            api, version, _ = self._in_flight[correlation_id]
        except KeyError:
            raise LocalProtocolError(f"no request {correlation_id} is waiting for an "
                                     f"answer") from None
        return api, version

    def _frame(self, api_key, version, correlation_id, flags, body, fds):
        if fds:
            if len(fds) > MAX_FDS_PER_FRAME:
                raise LocalProtocolError(f"{len(fds)} fds exceed {MAX_FDS_PER_FRAME} "
                                         f"per frame")
            flags |= FLAG_FDS
        if MIN_LENGTH + len(body) > self.max_frame_size:
            raise LocalProtocolError(f"a frame of {MIN_LENGTH + len(body)} bytes exceeds "
                                     f"max_frame_size {self.max_frame_size}")
        return encode_frame(api_key, version, correlation_id, flags, body)

    def _error_frame(self, api_key, version, correlation_id, error):
        code, message = error_to_wire(error)
        body = ErrorBody(error_code=code, error_message=message).encode(0)
        return self._frame(api_key, version, correlation_id, FLAG_RESPONSE | FLAG_ERROR,
                           body, ())

    def _claim(self, fds, chunk_start, frames, framing_error):
        """Give `fds` to the last frame starting in the bytes they came with."""
        claimer = None
        if framing_error is None:
            if self._frames.buffered and self._frames.head_position >= chunk_start:
                claimer = self._frames.head_position      # a partial frame, still arriving
            elif frames and frames[-1].start >= chunk_start:
                claimer = frames[-1].start
        if claimer is None:
            self._unclaimed += fds
        else:
            # Entries live only until their frame completes (in this call, or when a
            # later chunk finishes the one partial frame), so this dict stays tiny.
            self._fds_at[claimer] = fds

    def _drop_held_fds(self):
        for fds in self._fds_at.values():
            self._unclaimed += fds
        self._fds_at.clear()

    def _receive_eof(self):
        events = []
        if self._frames.buffered:
            events.append(ProtocolErrorEvent(
                Truncated(f"the peer closed the connection inside a frame "
                          f"({self._frames.buffered} bytes buffered)"), None, True))
        unanswered = tuple(self._in_flight)
        if self.role is CLIENT:
            self._in_flight.clear()    # nothing can answer them now
        self.state = State.CLOSED
        self._drop_held_fds()
        events.append(ConnectionClosed(unanswered))
        return events

    def _fatal(self, error, header=None, reply=True):
        """The stream is unusable: BROKEN. A server still answers the frame at fault
        if it was a request whose header could be read."""
        self.state = State.BROKEN
        cid = None
        if header is not None and header.length >= MIN_LENGTH:
            cid = header.correlation_id
            if reply and self.role is SERVER and not header.is_response:
                self._outbox.append(self._error_frame(header.api_key, header.api_version,
                                                      cid, error))
        return ProtocolErrorEvent(error, cid, True)

    def _handle(self, frame):
        header = frame.header
        fds = tuple(self._fds_at.pop(frame.start, ()))
        if header.has_fds != bool(fds):
            self._unclaimed += fds
            what = "FDS flag without fds" if header.has_fds else "fds without the FDS flag"
            return self._fatal(FdMismatch(f"frame {header.correlation_id}: {what}",
                                          header=header), header)
        if self.role is SERVER:
            return self._handle_request(frame, fds)
        return self._handle_response(frame, fds)

    def _handle_request(self, frame, fds):
        header = frame.header
        cid = header.correlation_id
        if header.is_response:
            self._unclaimed += fds
            return self._fatal(BadFrame("a client sent a response frame", header=header),
                               header)
        if cid in self._in_flight:
            self._unclaimed += fds
            return self._fatal(DuplicateCorrelationId(
                f"correlation id {cid} is already in flight", header=header), header,
                reply=False)
        api = self.apis.get(header.api_key)
        try:
            if api is None:
                raise UnknownApiKey(f"api_key {header.api_key} is not served here; "
                                    f"ApiVersions (18) lists those that are", header=header)
            if not api.supports(header.api_version):
                raise UnsupportedApiVersion(
                    f"{api.name} v{header.api_version} is not supported; this broker "
                    f"serves v{api.min_version}..v{api.max_version}", header=header)
            message = api.request.decode(frame.body, header.api_version)
        except RemoteProtocolError as e:
            e.header = header
            self._unclaimed += fds
            self._outbox.append(self._error_frame(header.api_key, header.api_version, cid, e))
            return ProtocolErrorEvent(e, cid, False)
        self._in_flight[cid] = (api, header.api_version, message)
        return Request(cid, header.api_key, header.api_version, message, fds)

    def _handle_response(self, frame, fds):
        header = frame.header
        cid = header.correlation_id
        if not header.is_response:
            self._unclaimed += fds
            return self._fatal(BadFrame("the server sent a request frame", header=header),
                               header)
        pending = self._in_flight.pop(cid, None)
        if pending is None:
            self._unclaimed += fds
            return self._fatal(UnknownCorrelationId(
                f"response {cid} answers no request in flight", header=header), header)
        api, version, request = pending
        try:
            if (header.api_key, header.api_version) != (api.key, version):
                raise BadFrame(f"response {cid} is for api {header.api_key} "
                               f"v{header.api_version}, the request was {api.name} "
                               f"({api.key}) v{version}", header=header)
            if header.is_error:
                body = ErrorBody.decode(frame.body, 0)
                if body.error_code == 0:
                    raise InvalidValue(f"error response {cid} has error_code 0")
                message, error = None, error_from_wire(body.error_code, body.error_message)
            else:
                message, error = api.response.decode(frame.body, version), None
        except RemoteProtocolError as e:
            e.header = header
            self._unclaimed += fds
            return ProtocolErrorEvent(e, cid, False)
        return Response(cid, header.api_key, header.api_version, message, error, request, fds)
