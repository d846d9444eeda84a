"""The gateway's TCP listener: Kafka clients connect here, one thread per connection.

A connection thread reads a request frame, hands it to its API's handler (apis.py) and
writes the answer before reading the next, so answers leave in request order, as Kafka's
do (a long-polling Fetch holds its own connection only). The exception is an API with a
`start` (Produce): a client that sends such requests back to back (librdkafka keeps many
in flight, Kafka's Java producer five) has each one started (its batches written into
the leaders' rings) as it is read, while another request is already here (frames.py's
ready(); a request with nothing behind it is answered at once, as any other) and fewer
than PIPELINE_MAX wait; their answers are finished and sent oldest first as soon as
nothing more is waiting, and any other request first has every started one answered.
Answers that are ready together (the finish's ready()) leave in one send. So a burst
costs one wait for the leaders and one send, not one of each per request, and the order
of the answers, and of the batches in each partition, is the order of the requests. A
request answered at once whose API reads that shape itself (Api.lone: Produce of one
batch to one partition, native.parse_produce_one) skips kio's decoding; one `lone`
declines, or breaks on (logged as a gateway bug), goes the general way. A
thread waits on its own socket and on the broker, never on another connection: a slow or
hostile client costs its own thread, and a bounded one:
- `admit` (auth.py) decides who may connect, before a byte of a request is served (a
  refused peer's first request is answered CLUSTER_AUTHORIZATION_FAILED, then closed);
  on a SASL_PLAINTEXT listener a client must authenticate before any request but
  ApiVersions (sasl.py);
- at most `max_connections` at once in all the listener's processes (stats.py): one
  more is closed as it is accepted;
- a connection that sends nothing, or takes nothing of its answer, for `idle_s`
  (connections.max.idle.ms) is closed: both directions run with SO_RCVTIMEO and
  SO_SNDTIMEO, so a client that never reads its responses ends its own thread only.

Frames (frames.py): `size:int32` then the request (codec.py). A size below 8 or above
`socket.request.max.bytes` closes the connection before anything is allocated
(Kafka's InvalidReceiveException); within it, memory follows the bytes that arrive, so
announced sizes alone cost nothing. What cannot be served is answered, never hung up
on in silence, where an answer can be built (error_response.py):
- ApiVersions at a version kio does not know: KIP-511's v0 answer, connection kept;
- a key and version kio knows but the gateway does not serve: that version's response
  with UNSUPPORTED_VERSION, then the connection closes (Kafka closes it too);
- a handler raising RequestError (bad input): its response with INVALID_REQUEST, then close;
- a handler raising anything else, or returning an answer that does not encode (a gateway
  bug): logged, answered with UNKNOWN_SERVER_ERROR, the connection goes on;
- a tagged field kio's schema lacks (Kafka says skip it, kio refuses it): the frame is
  read again without it (tagged_fields.py) and served;
- bytes that do not decode: the response with INVALID_REQUEST (top-level error code,
  where the API has one), then close. A key kio does not know at all: close.

Every accepted socket gets TCP_NODELAY (as Kafka's broker does: answers leave in parts).
Lines about clients (a request refused, a connection closed on it, a refused peer, a
request that hit a gateway bug) go through client_log.py: at most one per connection per
10 s, and a budget for the process, so a hostile client cannot flood the log; the
gateway's start is one line with its pid and address (__main__.py).

The listening socket may be shared by several gateway processes (listener.processes,
the broker binds it and passes it on): each polls it and accepts without blocking, so a
connection taken by a sibling costs nothing and stop() never waits on accept. A new
connection goes to the process with the fewest open, as Kafka's acceptor deals them out
to its network threads: a process with more open than a sibling leaves the sibling
ACCEPT_DEFER_S to take it, and takes it itself if it is still waiting then. So a
producer's and a consumer's connections run in different processes, in parallel,
instead of taking turns in one interpreter (Python runs one thread at a time).
"""
import collections
import logging
import os
import select
import socket
import struct
import threading
import time

from odradek.daemon.gateway import apis as apis_mod, sasl
from odradek.daemon.gateway.apis import CLOSE_CONNECTION, NO_RESPONSE, FileSlice, Reply, RequestContext
from odradek.daemon.gateway.client_log import ClientLog, LogSource
from odradek.daemon.gateway.codec import (
    ErrorCode, MalformedRequest, RequestError, UnsupportedRequest, build, decode_request,
    encode_response, peek_header, request_class, response_class)
from odradek.daemon.gateway.error_response import error_response
from odradek.daemon.gateway.frames import FrameReader, FrameSizeError
from odradek.daemon.gateway.stats import Counters
from odradek.daemon.gateway.tagged_fields import MalformedTags, strip_unknown_tags

__all__ = ["Gateway", "Connection", "DEFAULT_MAX_REQUEST_BYTES", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_IDLE_S"]

log = logging.getLogger("odradek.gateway")

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024      # Kafka's socket.request.max.bytes
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_IDLE_S = 600.0                             # Kafka's connections.max.idle.ms
TURNING_AWAY, TURN_AWAY_S, TURN_AWAY_MAX_BYTES = 16, 5.0, 64 * 1024   # refused peers answered: see _turn_away
_SIZE = struct.Struct(">i")
PIPELINE_MAX = 8              # started requests of a connection waiting for their answers
PIPELINE_FRAME_MAX = 1 << 20  # a larger request is not started while others wait (memory held)
_TIMEVAL = struct.Struct("ll")
ACCEPT_DEFER_S = 0.01         # a busier process's wait before it takes a new connection (serve_forever)


class Gateway:
    """The process-wide state: the listening socket, the broker links, the API table, the
    limits, `advertised` = (host, port) Metadata and FindCoordinator return."""

    def __init__(self, listen_sock, links, *, table=None, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES,
                 max_connections=DEFAULT_MAX_CONNECTIONS, idle_s=DEFAULT_IDLE_S, admit=None, advertised=None,
                 counters=None, slot=0, sasl=None):
        self.sock = listen_sock
        self.links = links
        self.table = table if table is not None else apis_mod.table()
        self.lone = {key: api.lone for key, api in self.table.items() if api.lone is not None}
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.admit = admit            # admit(sock, peer) -> (ok, uid, why); None: everyone
        self.advertised = advertised or listen_sock.getsockname()[:2]
        # connections open in every process of the listener (stats.py): max.connections
        self.counters, self.slot = counters or Counters(1), slot
        self.sasl = sasl              # sasl.PlainUsers on a SASL_PLAINTEXT listener, else None
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._conns = set()
        self._lock = threading.Lock()
        self.client_log = ClientLog(log)        # clients' errors, rate-limited (client_log.py)
        self._refused = LogSource()             # the refused peers' lines, together
        self._turning_away = 0        # refused peers being answered (_turn_away)

    def serve_forever(self):
        """Accept connections until stop(); each runs on a daemon thread of its own."""
        self.sock.setblocking(False)
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self.stopping.is_set():
                poller.poll()
                if self.stopping.is_set():
                    break
                if self._busier_than_a_sibling() and self.stopping.wait(ACCEPT_DEFER_S):
                    break
                try:
                    sock, peer = self.sock.accept()   # one per wake-up: siblings get their share
                except BlockingIOError:
                    continue         # a sibling process took it
                except OSError as e:
                    log.error("accept: %s", e)   # EMFILE and the like: the open connections go on
                    self.stopping.wait(0.1)
                    continue
                self._take(sock, peer)
        finally:
            self._close_all()

    def _busier_than_a_sibling(self):
        """Whether another process of the listener has fewer connections open than this one."""
        counts = self.counters.open_counts()
        return len(counts) > 1 and counts[self.slot] > min(counts)

    def _take(self, sock, peer):
        sock.setblocking(True)
        uid = None
        if self.admit is not None:
            ok, uid, why = self.admit(sock, peer)
            if not ok:
                self.counters.refuse(self.slot)
                self._log_refusal(peer, why)
                return self._turn_away(sock)
        if not self.counters.try_open(self.slot, self.max_connections):
            self._log_refusal(peer, f"max.connections={self.max_connections} reached")
            return sock.close()
        _set_timeouts(sock, self.idle_s)
        _no_delay(sock)
        conn = Connection(self, sock, peer, uid)
        with self._lock:
            self._conns.add(conn)
        try:
            threading.Thread(target=conn.run, name=f"kafka-conn-{peer[1]}", daemon=True).start()
        except RuntimeError as e:    # no thread to be had (the process's limits)
            self.client_log.line(self._refused, logging.ERROR, "%s: closing: %s", _addr(peer), e)
            conn.close()
            self.forget(conn)

    def _turn_away(self, sock):
        """A peer the door refused gets an answer to its first request before the close:
        that request's error response with CLUSTER_AUTHORIZATION_FAILED, so the client
        says why (kcat: "Broker: Cluster authorization failed") instead of "disconnected".
        At most TURNING_AWAY at once, each for TURN_AWAY_S; beyond that, closed at once."""
        with self._lock:
            busy = self._turning_away >= TURNING_AWAY
            self._turning_away += not busy
        if busy:
            return sock.close()

        def answer():
            deadline = time.monotonic() + TURN_AWAY_S
            try:
                head = _recv_by(sock, 4, deadline)
                size = _SIZE.unpack(head)[0] if head else 0
                frame = _recv_by(sock, size, deadline) if 8 <= size <= TURN_AWAY_MAX_BYTES else None
                if frame is not None:
                    api_key, api_version, cid = peek_header(frame)
                    request_class(api_key, api_version)       # a layout to answer in, or UnsupportedRequest
                    sock.sendall(encode_response(cid, error_response(api_key, api_version,
                                                                     ErrorCode.cluster_authorization_failed)))
            except (OSError, RequestError):
                pass
            finally:
                sock.close()
                with self._lock:
                    self._turning_away -= 1

        try:
            threading.Thread(target=answer, name="kafka-refused", daemon=True).start()
        except RuntimeError:         # no thread to be had: closed without the answer
            sock.close()
            with self._lock:
                self._turning_away -= 1

    def _log_refusal(self, peer, why):
        """One line for all refused peers per client_log.WINDOW_S (a flood of refusals is
        one line, with the number held back)."""
        self.client_log.line(self._refused, logging.WARNING, "%s: connection refused: %s", _addr(peer), why)

    def forget(self, conn):
        with self._lock:
            self._conns.discard(conn)
        self.counters.close_one(self.slot)

    def stop(self):
        """Stop accepting and close every connection; safe from a signal handler."""
        self.stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _close_all(self):
        self.sock.close()      # this process's descriptor only: siblings go on listening
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        self.links.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class Connection:
    """One Kafka client connection: read a request, answer it, repeat."""

    def __init__(self, gateway, sock, peer, uid=None):
        self.gateway, self.sock, self.peer, self.uid = gateway, sock, peer, uid
        self.state = {}           # what handlers keep per connection ("closer:*": closed with it)
        self.principal = None     # the SASL user, once authenticated
        self.close_after = False  # a handler's answer is the connection's last (sasl.py)
        self.ctx = RequestContext(gateway=gateway, conn=self, table=gateway.table)
        self.logged_at = None     # when this connection's last line went out (note)
        self._closed = False
        self._frames = FrameReader(sock, gateway.max_request_bytes)
        self._started = collections.deque()    # (request, finish) of started requests, oldest first
        self._held = None                      # answers held for one send (_finish_due), or None

    def note(self, fmt, *args, level=logging.INFO, exc_info=False):
        """Log a line about this client (its address first), at most one per
        client_log.WINDOW_S for this connection and a budget for the gateway's."""
        self.gateway.client_log.line(self, level, "%s: " + fmt, _addr(self.peer), *args, exc_info=exc_info)

    def run(self):
        try:
            while True:
                if self._started and not self._frames.ready():   # nothing more waiting: answer the oldest
                    if not self._finish_due():
                        return
                    continue
                frame = self._read_frame()
                if frame is None:
                    return
                if not self._handle(frame):
                    return
        except BlockingIOError:
            self.note("closing: idle or not reading its answers for %.0fs (connections.max.idle.ms)",
                      self.gateway.idle_s)
        except OSError:
            pass
        finally:
            self.close()
            self.gateway.forget(self)

    def close(self):
        """Close the socket (waking this connection's thread), then whatever handlers left
        to close with the connection (objects with .close() under `state` keys starting
        with "closer:")."""
        self._abandon_started()
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for key in [k for k in self.state if k.startswith("closer:")]:
            closer = self.state.pop(key, None)
            if closer is not None:
                try:
                    closer.close()
                except Exception:      # a handler's cleanup failing must not stop the others
                    self.note("closing %s", key, level=logging.ERROR, exc_info=True)

    def _abandon_started(self):
        """Started requests never to be answered: what they hold is let go. Each close()
        does it (Gateway.stop's, from another thread, and then the connection thread's
        own, which catches one started meanwhile); an entry is popped by one thread only."""
        while True:
            try:
                _, finish = self._started.popleft()
            except IndexError:
                return
            abandon = getattr(finish, "abandon", None)
            if abandon is not None:
                abandon()

    # ---- one request -------------------------------------------------------------

    def _handle(self, frame):
        """Answer one frame, or start it (see the module docstring); False when the
        connection must close."""
        if not self._started:
            lone = self._lone(frame)
            if lone is not None:
                return self._answer(*lone)
        try:
            request = decode_request(frame)
        except MalformedRequest as e:
            request = self._without_unknown_tags(frame)
            if request is None:
                return self._answer_started() and self._refuse(frame, e)
        except RequestError as e:
            return self._answer_started() and self._refuse(frame, e)
        api = self.gateway.table.get(request.api_key)
        if api is None or not api.min_version <= request.api_version <= api.max_version:
            return self._answer_started() and self._refuse(frame, UnsupportedRequest(
                f"api key {request.api_key} v{request.api_version} is not served",
                request.api_key, request.api_version, request.correlation_id), request)
        if not sasl.allowed(self.ctx, request):
            if not self._answer_started():
                return False
            self.note("closing: api key %d before SASL authentication", request.api_key)
            self._answer_error(request.api_key, request.api_version, request.correlation_id,
                               ErrorCode.illegal_sasl_state, request.body, "authenticate first (SASL)")
            return False
        if (api.start is not None and len(frame) <= PIPELINE_FRAME_MAX and len(self._started) < PIPELINE_MAX
                and (self._started or self._frames.ready())):    # alone: answered at once, no machinery
            self._started.append((request, _started(api.start, self.ctx, request)))
            return True
        if not self._answer_started():
            return False
        return self._answer(request, lambda: api.handler(self.ctx, request))

    def _lone(self, frame):
        """(request, call) of a frame its API's `lone` reads (apis.py), when the request is
        to be answered at once: nothing started, nothing behind it, allowed (SASL); else
        None, and nothing was done."""
        api_key = frame[0] << 8 | frame[1] if len(frame) >= 2 else None
        lone = self.gateway.lone.get(api_key)
        if lone is None or not sasl.allowed_key(self.ctx, api_key) or self._frames.ready():
            return None
        try:
            return lone(self.ctx, frame)
        except Exception:      # a gateway bug: logged; the general way still serves the request
            self.note("api key %d: lone reading failed", api_key, level=logging.ERROR, exc_info=True)
            return None

    def _answer_started(self):
        """Answer every started request, oldest first; False when the connection must close."""
        while self._started:
            if not self._finish_due():
                return False
        return True

    def _finish_due(self):
        """Answer the oldest started request (waiting for it), and after it every next one
        whose answer is ready without a wait (its finish's ready()), in one send; False
        when the connection must close."""
        self._held = []
        try:
            ok = self._answer(*self._started.popleft())
            while ok and self._started and getattr(self._started[0][1], "ready", _never)():
                ok = self._answer(*self._started.popleft())
        finally:
            held, self._held = self._held, None
            if held:
                self.sock.sendall(held[0] if len(held) == 1 else b"".join(held))
        return ok

    def _answer(self, request, call):
        """Send the answer `call()` returns to `request` (or the error it raises);
        False when the connection must close."""
        try:
            answer = call()
            if not (answer is NO_RESPONSE or answer is CLOSE_CONNECTION or isinstance(answer, Reply)):
                answer = encode_response(request.correlation_id, answer)   # a value it cannot carry: a bug too
        except RequestError as e:
            self.note("closing: %s", e)
            self._answer_error(request.api_key, request.api_version, request.correlation_id,
                               ErrorCode.invalid_request, request.body, str(e))
            return False
        except Exception as e:     # a gateway bug: answered and logged; the process goes on
            self.note("api key %d v%d: a gateway bug", request.api_key, request.api_version, level=logging.ERROR,
                      exc_info=True)
            return self._answer_error(request.api_key, request.api_version, request.correlation_id,
                                      ErrorCode.unknown_server_error, request.body, f"internal error: {e}")
        if answer is NO_RESPONSE:
            return True
        if answer is CLOSE_CONNECTION:
            self.note("closing: api key %d v%d asked for it", request.api_key, request.api_version)
            return False
        if isinstance(answer, Reply):
            self._send_parts(answer.parts)
        else:
            self._send(answer)
        return not self.close_after

    def _without_unknown_tags(self, frame):
        """The request of a frame kio refused, read again without the tagged fields its
        schema lacks (tagged_fields.py); None if that was not why, or it still fails."""
        api_key, api_version, _ = peek_header(frame)
        try:
            stripped, dropped = strip_unknown_tags(frame, request_class(api_key, api_version))
            if not dropped:
                return None
            request = decode_request(stripped)
        except (MalformedTags, RequestError):
            return None
        log.debug("%s: api key %d v%d: skipped %d unknown tagged fields", _addr(self.peer), api_key, api_version,
                  dropped)
        return request

    def _refuse(self, frame, error, request=None):
        """A request the gateway does not serve or cannot read. ApiVersions at a version
        it does not know gets KIP-511's answer (a v0 body, UNSUPPORTED_VERSION and the
        table), so a newer client learns what to use; any other gets its version's error
        response where kio knows that version, then the connection closes, as Kafka's."""
        try:
            api_key, api_version, cid = peek_header(frame)
        except MalformedRequest:
            self.note("closing: %s", error)
            return False
        if api_key == apis_mod.API_VERSIONS and isinstance(error, UnsupportedRequest):
            cls = response_class(apis_mod.API_VERSIONS, 0)
            body = build(cls, error_code=ErrorCode.unsupported_version,
                         api_keys=[dict(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
                                   for a in sorted(self.gateway.table.values(), key=lambda a: a.key)])
            self._send(encode_response(cid, body))
            return True
        self.note("closing: %s", error)
        code = ErrorCode.unsupported_version if isinstance(error, UnsupportedRequest) else ErrorCode.invalid_request
        try:
            request_class(api_key, api_version)
        except UnsupportedRequest:
            return False           # no layout to answer in
        self._answer_error(api_key, api_version, cid, code, request.body if request is not None else None)
        return False

    def _answer_error(self, api_key, api_version, cid, code, body, message=None):
        """Send the error response of `api_key` v`api_version` (error_response.py); False
        if none can be built."""
        try:
            data = encode_response(cid, error_response(api_key, api_version, code, body, message))
        except Exception:
            self.note("no error response for api key %d v%d", api_key, api_version, level=logging.ERROR,
                      exc_info=True)
            return False
        self._send(data)
        return True

    # ---- bytes -----------------------------------------------------------------

    def _read_frame(self):
        """The next request frame (frames.py); None at end of file or a size out of bounds."""
        try:
            return self._frames.next()
        except FrameSizeError as e:
            self.note("closing: %s (socket.request.max.bytes)", e)
            return None

    def _send(self, data):
        """Send `data`, or hold it for the one send of _finish_due."""
        if self._held is not None:
            self._held.append(data)
        else:
            self.sock.sendall(data)

    def _send_parts(self, parts):
        for part in parts:
            if isinstance(part, FileSlice):
                if self._held:                   # what is held goes first
                    self.sock.sendall(b"".join(self._held))
                    self._held = []
                offset, left = part.offset, part.length
                while left > 0:
                    sent = os.sendfile(self.sock.fileno(), part.fd, offset, left)
                    if sent == 0:
                        raise OSError("the file ended before its slice was sent")
                    offset += sent
                    left -= sent
            else:
                self._send(part)


def _never():
    return False


def _started(start, ctx, request):
    """`start(ctx, request)`'s finish; if start raised, a finish that raises the same (so
    the error is answered in its turn)."""
    try:
        return start(ctx, request)
    except Exception as e:
        def fail(error=e):
            raise error
        return fail


def _recv_by(sock, n, deadline):
    """`n` bytes from `sock` before `deadline` (monotonic), or None."""
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _no_delay(sock):
    """TCP_NODELAY, as Kafka's broker sets on every socket: answers leave in parts (a
    Fetch: bytes, then sendfile, then bytes), and Nagle's algorithm would hold each last
    small part until the client's delayed ACK (40 ms on Linux)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def _set_timeouts(sock, idle_s):
    """Blocking calls on `sock` give up after `idle_s` without progress (BlockingIOError)."""
    sec = int(idle_s)
    tv = _TIMEVAL.pack(sec, int((idle_s - sec) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _addr(peer):
    return f"{peer[0]}:{peer[1]}"
