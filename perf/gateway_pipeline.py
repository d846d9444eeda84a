"""Time per Produce (or Fetch) request through a Kafka listener, with 1, 8 or 64 requests
in flight on one connection: what the gateway's pipelining (server.py) buys, and what one
request costs it, against Apache Kafka in the same run when --kafka-bootstrap names one.

    python perf/gateway_pipeline.py                                   # odradek only
    python perf/gateway_pipeline.py --kafka-bootstrap 127.0.0.1:19092 --runs 5
    python perf/gateway_pipeline.py --api fetch --kafka-bootstrap 127.0.0.1:19092

A raw-socket client sends one pre-encoded Produce v9 request (one partition, one 100 B
record, acks=1) over and over, keeping `depth` unanswered, and reads each answer whole:
the client costs almost nothing, so the time per request is the broker's. --api fetch:
the same with one pre-encoded Fetch v12 request (read_committed, as librdkafka asks by
default; no fetch session; min_bytes 1) for offset 0 of a partition holding one such
record, answered at once with it: a consumer's fetch, without the wait for data. Each depth is
timed --requests requests after 200 untimed ones, --runs times, on a new one-partition
topic per run (perf/wire_compare.py's brokers and topics: a throwaway odradek broker
with its listener). Prints the median us per request per broker and depth, and the
ratio odradek/Kafka (below 1: odradek is faster). A benchmark, not a test.
"""
import argparse
import io
import os
import socket
import statistics
import struct
import sys
import time

import kio.index
import kio.serial

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire_compare as wc  # noqa: E402  (perf/ is not a package)
from odradek.client.records import BatchBuilder  # noqa: E402
from odradek.daemon.gateway.codec import build  # noqa: E402

DEPTHS = (1, 8, 64)
WARMUP = 200


def _framed(api_key, version, body, correlation_id):
    cls = kio.index.load_request_schema(api_key, version)
    header = cls.__header_schema__
    buf = io.BytesIO()
    kio.serial.entity_writer(header)(buf, header(request_api_key=api_key, request_api_version=version,
                                                 correlation_id=correlation_id, client_id="pipeline"))
    kio.serial.entity_writer(cls)(buf, build(cls, body))
    data = buf.getvalue()
    return struct.pack(">i", len(data)) + data


def produce_frame(topic, correlation_id=7):
    """A framed Produce v9 request of one 100 B record to partition 0."""
    b = BatchBuilder()
    b.append(int(time.time() * 1000), None, b"x" * 100, [])
    return _framed(0, 9, dict(acks=1, timeout=5000, transactional_id=None,
                              topic_data=[dict(name=topic, partition_data=[dict(index=0, records=b.build())])]),
                   correlation_id)


def fetch_frame(topic, correlation_id=8):
    """A framed Fetch v12 request for offset 0 of partition 0 (read_committed, no session)."""
    partition = dict(partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1,
                     log_start_offset=-1, partition_max_bytes=1 << 20)
    return _framed(1, 12, dict(replica_id=-1, max_wait=500, min_bytes=1, max_bytes=50 << 20, isolation_level=1,
                               session_id=0, session_epoch=-1, topics=[dict(topic=topic, partitions=[partition])],
                               forgotten_topics_data=[], rack_id=""), correlation_id)


def _answer(sock, answers):
    """The next response frame's bytes after its size."""
    (size,) = struct.unpack(">i", answers.read(4))
    data = answers.read(size)
    if len(data) != size:
        raise RuntimeError("the broker closed the connection")
    return data


def _produced(data):
    """Raise unless the Produce v9 answer `data` took the one record (else every timed
    Fetch would find nothing and wait out its max_wait)."""
    cls = kio.index.load_response_schema(0, 9)
    header, n = kio.serial.entity_reader(cls.__header_schema__)(data, 0)
    body, _ = kio.serial.entity_reader(cls)(data, n)
    code = body.responses[0].partition_responses[0].error_code
    if code != 0:
        raise RuntimeError(f"the record the fetches are to read was refused: {code!r}")


def us_per_request(bootstrap, depth, n, api="produce"):
    topic = wc.new_topic(bootstrap)
    host, port = bootstrap.rsplit(":", 1)
    frame = produce_frame(topic) if api == "produce" else fetch_frame(topic)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        answers = sock.makefile("rb")
        if api == "fetch":              # the one record every fetch answers with
            sock.sendall(produce_frame(topic))
            _produced(_answer(sock, answers))
        for total, timed in ((WARMUP, False), (n, True)):
            start, sent, got = time.perf_counter(), 0, 0
            while got < total:
                k = min(total - sent, depth - (sent - got))
                if k > 0:
                    sock.sendall(frame * k)
                    sent += k
                _answer(sock, answers)
                got += 1
            if timed:
                return (time.perf_counter() - start) / n * 1e6
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=5000, help="timed requests per run and depth")
    ap.add_argument("--kafka-bootstrap", help="an Apache Kafka broker to compare with (default: none)")
    ap.add_argument("--data-root", default="/var/tmp")
    ap.add_argument("--api", choices=("produce", "fetch"), default="produce", help="the request timed")
    args = ap.parse_args()
    results = {}
    with wc.odradek_broker(args.data_root) as (bootstrap, _):
        brokers = [("odradek", bootstrap)] + ([("Kafka", args.kafka_bootstrap)] if args.kafka_bootstrap else [])
        for _ in range(args.runs):
            for name, where in brokers:              # interleaved, run by run
                for depth in DEPTHS:
                    results.setdefault((name, depth), []).append(us_per_request(where, depth, args.requests, args.api))
    print(f"us per {args.api.capitalize()} request, median of {args.runs} runs, load average {os.getloadavg()[0]:.1f}")
    for depth in DEPTHS:
        ours = statistics.median(results["odradek", depth])
        line = f"  {depth:3d} in flight: odradek {ours:7.1f}"
        if args.kafka_bootstrap:
            theirs = statistics.median(results["Kafka", depth])
            line += f"  Kafka {theirs:7.1f}  odradek/Kafka {ours / theirs:.2f}"
        print(line)


if __name__ == "__main__":
    main()
