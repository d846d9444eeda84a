"""Group calls through the Kafka gateway against the same calls on the Unix socket: what
the extra hop (TCP, Kafka's codec, the gateway's control connection) costs a consumer.

    python perf/gateway_group_perf.py
    python perf/gateway_group_perf.py --calls 5000 --runs 5

Two synchronous round trips, each --calls times by one client, in interleaved runs:
  commit     a standalone OffsetCommit of one partition (appended to __consumer_offsets
             by its worker before the answer)
  heartbeat  a Heartbeat of the only member of a Stable group (answered from memory)
once as odradek's clients send them (a ControlClient on the Unix socket) and once as a
Kafka client does (OffsetCommit v9 / Heartbeat v4 on TCP to a gateway process). Printed:
calls/s and microseconds per call of each, the median of --runs, and gateway/Unix as a
ratio of the per-call times. Without --socket and $ODRADEK_SOCKET a throwaway broker is
started (perf/_broker.py); the gateway is always a process of its own, started here.
A benchmark, not a test.
"""
import argparse
import io
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import kio.index
import kio.serial

from _broker import broker_socket, log, run, stop_process, topic

from odradek.client.errors import MemberIdRequired
from odradek.client.protocol import ControlClient
from odradek.client.protocol import messages as m
from odradek.daemon.gateway.codec import build

_SIZE = struct.Struct(">i")
GROUP_SESSION_MS = 30_000


class KafkaConnection:
    """One TCP connection speaking Kafka's protocol with kio entities (requests built from
    plain values with the gateway's own codec.build). `request(...)` prepares a call made
    many times, so that the client's own encoding stays out of the figures."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cid = 0

    def request(self, api_key, version, **values):
        """A callable sending this request (its bytes encoded once) and returning the response."""
        cls = kio.index.load_request_schema(api_key, version)
        header_cls = cls.__header_schema__
        out = io.BytesIO()
        kio.serial.entity_writer(header_cls)(out, header_cls(request_api_key=api_key, request_api_version=version,
                                                             correlation_id=0, client_id="perf"))
        kio.serial.entity_writer(cls)(out, build(cls, values))
        frame = bytearray(_SIZE.pack(out.tell()) + out.getvalue())
        response_cls = kio.index.load_response_schema(api_key, version)
        read_header = kio.serial.entity_reader(response_cls.__header_schema__)
        read_body = kio.serial.entity_reader(response_cls)

        def call():
            self.cid += 1
            struct.pack_into(">i", frame, 8, self.cid)       # size, api key, version, then the correlation id
            self.sock.sendall(frame)
            body = self._read(_SIZE.unpack(self._read(4))[0])
            header, n = read_header(body, 0)
            assert header.correlation_id == self.cid
            return read_body(body, n)[0]
        return call

    def call(self, api_key, version, **values):
        return self.request(api_key, version, **values)()

    def _read(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise SystemExit("the gateway closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self):
        self.sock.close()


def start_gateway(sock, err):
    proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.gateway", "--socket", sock,
                             "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(err.name) as f:
            found = re.search(r"bootstrap\.servers=[\d.]+:(\d+)", f.read())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with status {proc.returncode}")
        time.sleep(0.02)
    stop_process(proc, 10)
    raise SystemExit("the gateway did not listen within 30 s")


def timed(call, count):
    start = time.perf_counter()
    for _ in range(count):
        call()
    return time.perf_counter() - start


def unix_calls(sock, name, group):
    """(commit, heartbeat) callables on the Unix socket; the heartbeat's member joined."""
    client = ControlClient(sock)
    commit = m.OffsetCommitRequest(group_id=f"{group}-commits", topics=[m.OffsetCommitRequestTopic(
        name=name, partitions=[m.OffsetCommitRequestPartition(partition_index=0, committed_offset=1)])])
    join = dict(group_id=group, session_timeout_ms=GROUP_SESSION_MS, rebalance_timeout_ms=GROUP_SESSION_MS,
                protocol_type="consumer", client_id="perf",
                protocols=[m.JoinGroupRequestProtocol(name="range", metadata=b"")])
    first, _ = client.call(m.JoinGroupRequest(**join))
    assert first.error_code == MemberIdRequired.code
    joined, _ = client.call(m.JoinGroupRequest(**join, member_id=first.member_id))
    client.call(m.SyncGroupRequest(group_id=group, generation_id=joined.generation_id, member_id=joined.member_id))
    beat = m.HeartbeatRequest(group_id=group, generation_id=joined.generation_id, member_id=joined.member_id)
    return client, (lambda: client.call(commit)), (lambda: client.call(beat))


def kafka_calls(port, name, group):
    """(commit, heartbeat) callables through the gateway; the heartbeat's member joined."""
    conn = KafkaConnection(port)
    join = dict(group_id=group, session_timeout=GROUP_SESSION_MS, rebalance_timeout=GROUP_SESSION_MS,
                protocol_type="consumer", protocols=[dict(name="range", metadata=b"")])
    first = conn.call(11, 9, member_id="", **join)
    joined = conn.call(11, 9, member_id=first.member_id, **join)
    conn.call(14, 5, group_id=group, generation_id=joined.generation_id, member_id=joined.member_id)
    topics = [dict(name=name, partitions=[dict(partition_index=0, committed_offset=1, committed_leader_epoch=-1)])]
    commit = conn.request(8, 9, group_id=f"{group}-commits", generation_id_or_member_epoch=-1, member_id="",
                          topics=topics)
    beat = conn.request(12, 4, group_id=group, generation_id=joined.generation_id, member_id=joined.member_id)
    return conn, commit, beat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", help="a running broker's control socket (default: a throwaway broker)")
    ap.add_argument("--calls", type=int, default=2000, help="round trips per measurement")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with broker_socket(args.socket) as sock, topic(sock, partitions=1, prefix="gwgroups") as name, \
            tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".err") as err:
        gateway, port = start_gateway(sock, err)
        try:
            unix_client, unix_commit, unix_beat = unix_calls(sock, name, f"{name}-unix")
            kafka_conn, kafka_commit, kafka_beat = kafka_calls(port, name, f"{name}-kafka")
            times = {k: [] for k in ("commit unix", "commit gateway", "heartbeat unix", "heartbeat gateway")}
            for i in range(args.runs):
                times["commit unix"].append(timed(unix_commit, args.calls))
                times["commit gateway"].append(timed(kafka_commit, args.calls))
                times["heartbeat unix"].append(timed(unix_beat, args.calls))
                times["heartbeat gateway"].append(timed(kafka_beat, args.calls))
                log(f"run {i + 1}/{args.runs} done")
            unix_client.close()
            kafka_conn.close()
        finally:
            stop_process(gateway, 10)
    medians = {k: statistics.median(v) / args.calls for k, v in times.items()}
    for what in ("commit", "heartbeat"):
        unix, gw = medians[f"{what} unix"], medians[f"{what} gateway"]
        print(f"{what:9s}  unix socket {1 / unix:8,.0f}/s {unix * 1e6:6.0f} us   gateway {1 / gw:8,.0f}/s "
              f"{gw * 1e6:6.0f} us   gateway/unix {gw / unix:4.2f}x  (median of {args.runs} x {args.calls})")


if __name__ == "__main__":
    run(main)
