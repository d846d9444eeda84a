"""The gateway's TCP listener: Kafka clients connect here, one thread per connection.

A connection thread reads one request frame at a time, hands it to its API's handler
(apis.py) and writes the answer before reading the next, so answers leave in request
order, as Kafka's do (a long-polling Fetch holds its own connection only). A thread
waits on its own socket and on the broker, never on another connection: a slow or
hostile client costs its own thread.

Frames: `size:int32` then the request (codec.py). A size below 8 or above
`socket.request.max.bytes` closes the connection (Kafka's InvalidReceiveException).
"""
import logging
import os
import socket
import struct
import threading

from odradek.daemon.gateway import apis as apis_mod
from odradek.daemon.gateway.apis import NO_RESPONSE, FileSlice, Reply, RequestContext
from odradek.daemon.gateway.codec import (
    ErrorCode, MalformedRequest, RequestError, UnsupportedRequest, build, decode_request,
    encode_response, peek_header, response_class)

__all__ = ["Gateway", "Connection", "DEFAULT_MAX_REQUEST_BYTES"]

log = logging.getLogger("odradek.gateway")

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024      # Kafka's socket.request.max.bytes
_SIZE = struct.Struct(">i")


class Gateway:
    """The process-wide state: the listening socket, the broker links, the API table."""

    def __init__(self, listen_sock, links, *, table=None, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES):
        self.sock = listen_sock
        self.links = links
        self.table = table if table is not None else apis_mod.table()
        self.max_request_bytes = max_request_bytes
        self.stopping = threading.Event()
        self._conns = set()
        self._lock = threading.Lock()

    def serve_forever(self):
        """Accept connections until stop(); each runs on a daemon thread of its own."""
        while not self.stopping.is_set():
            try:
                sock, peer = self.sock.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                raise
            conn = Connection(self, sock, peer)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.run, name=f"kafka-conn-{peer[1]}", daemon=True).start()

    def forget(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def stop(self):
        self.stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        self.links.close()


class Connection:
    """One Kafka client connection: read a request, answer it, repeat."""

    def __init__(self, gateway, sock, peer):
        self.gateway, self.sock, self.peer = gateway, sock, peer
        self.state = {}           # what handlers keep per connection ("closer:*": closed with it)
        self.ctx = RequestContext(gateway=gateway, conn=self, table=gateway.table)

    def run(self):
        try:
            while True:
                frame = self._read_frame()
                if frame is None:
                    return
                if not self._handle(frame):
                    return
        except OSError:
            pass
        finally:
            self.close()
            self.gateway.forget(self)

    def close(self):
        """Close the socket, then whatever handlers left to close with the connection
        (objects with .close() under `state` keys starting with "closer:")."""
        try:
            self.sock.close()
        except OSError:
            pass
        for key in [k for k in self.state if k.startswith("closer:")]:
            closer = self.state.pop(key, None)
            if closer is not None:
                try:
                    closer.close()
                except Exception:      # a handler's cleanup failing must not stop the others
                    log.exception("%s: closing %s", self.peer, key)

    # ---- one request -------------------------------------------------------------

    def _handle(self, frame):
        """Answer one frame; False when the connection must close."""
        try:
            request = decode_request(frame)
        except RequestError as e:
            return self._refuse(frame, e)
        api = self.gateway.table.get(request.api_key)
        if api is None or not api.min_version <= request.api_version <= api.max_version:
            return self._refuse(frame, UnsupportedRequest(
                f"api key {request.api_key} v{request.api_version} is not served",
                request.api_key, request.api_version, request.correlation_id))
        try:
            answer = api.handler(self.ctx, request)
        except RequestError as e:
            log.info("%s: %s", self.peer, e)
            return False
        if answer is NO_RESPONSE:
            return True
        if isinstance(answer, Reply):
            self._send_parts(answer.parts)
        else:
            self.sock.sendall(encode_response(request.correlation_id, answer))
        return True

    def _refuse(self, frame, error):
        """A request the gateway does not serve or cannot read. ApiVersions at a version it
        does not know gets KIP-511's answer (a v0 body, UNSUPPORTED_VERSION and the table),
        so a newer client learns what to use; anything else closes the connection, as
        Kafka does, since its answer's layout is unknown."""
        try:
            api_key, _, cid = peek_header(frame)
        except MalformedRequest:
            return False
        if api_key == apis_mod.API_VERSIONS and isinstance(error, UnsupportedRequest):
            cls = response_class(apis_mod.API_VERSIONS, 0)
            body = build(cls, error_code=ErrorCode.unsupported_version,
                         api_keys=[dict(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
                                   for a in sorted(self.gateway.table.values(), key=lambda a: a.key)])
            self.sock.sendall(encode_response(cid, body))
            return True
        log.info("%s: closing: %s", self.peer, error)
        return False

    # ---- bytes -----------------------------------------------------------------

    def _read_exact(self, n):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                return None
            got += k
        return bytes(buf)

    def _read_frame(self):
        head = self._read_exact(4)
        if head is None:
            return None
        (size,) = _SIZE.unpack(head)
        if size < 8 or size > self.gateway.max_request_bytes:
            log.info("%s: closing: a request of %d bytes (allowed: 8 to %d)", self.peer, size,
                     self.gateway.max_request_bytes)
            return None
        return self._read_exact(size)

    def _send_parts(self, parts):
        for part in parts:
            if isinstance(part, FileSlice):
                offset, left = part.offset, part.length
                while left > 0:
                    sent = os.sendfile(self.sock.fileno(), part.fd, offset, left)
                    if sent == 0:
                        raise OSError("the file ended before its slice was sent")
                    offset += sent
                    left -= sent
            else:
                self.sock.sendall(part)
