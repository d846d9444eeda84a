"""The Kafka gateway in a subprocess beside a BrokerProcess, a broker running its own
listener (listener_broker), and a raw Kafka-protocol client (kio entities over one TCP
connection) for tests that speak the wire themselves."""
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys

import kio.serial
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.errors import ErrorCode

from odradek.client.admin import Admin
from odradek.daemon.gateway.codec import response_class
from support.broker import BrokerProcess, wait_until

_SIZE = struct.Struct(">i")


class GatewayProcess:
    """`python -m odradek.daemon.gateway` for the broker at `socket_path`, on an ephemeral
    loopback port (`port` once started)."""

    def __init__(self, socket_path, work_dir, listen="127.0.0.1:0"):
        self.socket_path, self.listen = str(socket_path), listen
        self.stderr_path = os.path.join(str(work_dir), "gateway.err")
        self.proc, self.port = None, None

    def start(self):
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.gateway", "--socket", self.socket_path,
                                      "--listen", self.listen], stdout=subprocess.DEVNULL, stderr=self._stderr)
        self.port = wait_until(self._announced_port, timeout=20, what="the gateway to listen")
        return self

    def _announced_port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode}: {self.stderr()}")
        m = re.search(r"bootstrap\.servers=[\d.]+:(\d+)", self.stderr())
        return int(m.group(1)) if m else None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class KafkaWire:
    """One TCP connection speaking Kafka's protocol with kio entities: `call(request)`
    sends a request entity and returns the response entity."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, client_id="odradek-tests"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.client_id, self._cid = client_id, 0

    def send(self, request):
        """Send `request` (a kio request entity); returns its correlation id."""
        self._cid += 1
        header_cls = type(request).__header_schema__
        buf = io.BytesIO()
        kio.serial.entity_writer(header_cls)(buf, header_cls(
            request_api_key=request.__api_key__, request_api_version=request.__version__,
            correlation_id=self._cid, client_id=self.client_id))
        kio.serial.entity_writer(type(request))(buf, request)
        self.send_raw(buf.getvalue())
        return self._cid

    def send_raw(self, body):
        self.sock.sendall(_SIZE.pack(len(body)) + body)

    def receive_raw(self):
        """One response frame's body (after its size); None once the gateway closed the
        connection (end of file, or a reset when it closed with our bytes unread)."""
        try:
            head = self._read(4)
        except ConnectionResetError:
            return None
        return None if head is None else self._read(_SIZE.unpack(head)[0])

    def receive(self, request_cls):
        """The response entity answering a request of `request_cls`."""
        body = self.receive_raw()
        assert body is not None, "the gateway closed the connection"
        cls = response_class(request_cls.__api_key__, request_cls.__version__)    # kio's, or newer_layouts'
        header, n = kio.serial.entity_reader(cls.__header_schema__)(body, 0)
        assert header.correlation_id == self._cid, (header.correlation_id, self._cid)
        response, m = kio.serial.entity_reader(cls)(body, n)
        assert n + m == len(body)
        return response

    def call(self, request):
        self.send(request)
        return self.receive(type(request))

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def listener_broker(data_dir, **overrides):
    """A started BrokerProcess with the listener on an ephemeral port and `overrides`
    (dotted keys as Python names are not possible: pass {"max.connections": 3}); one
    gateway process unless `overrides` says otherwise (listener.processes), so that a
    test can name it (gateways()) and knows which process every connection is in."""
    overrides.setdefault("listener.processes", 1)
    args = []
    for key, value in overrides.items():
        args += ["--override", f"{key}={value}"]
    broker = BrokerProcess(data_dir, args=args, listener=True).start()
    broker.port = broker.kafka_port()
    return broker


def gateways(broker):
    """The Status v1 rows of the broker's listener processes."""
    with Admin(broker.socket_path) as admin:
        return list(admin.status(topics=[]).listeners)


def answers(port):
    """Whether a new connection gets ApiVersions answered."""
    with KafkaWire(port) as wire:
        return wire.call(ApiVersionsV0()).error_code == ErrorCode.none


def closed_by_peer(sock, timeout=10.0):
    """Whether the gateway closed `sock` (end of file or reset) within `timeout`,
    reading and dropping whatever it sent before."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def frame(api_key, api_version, correlation_id, body=b"", client_id=b"t", flexible=False):
    """A request frame with a v1 header (v2 when `flexible`: no tagged fields) and `body`."""
    head = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    head += b"\0" if flexible else b""
    return struct.pack(">i", len(head) + len(body)) + head + body


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)
