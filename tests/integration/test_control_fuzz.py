"""Standing fault injection: fuzzed control frames against the real broker.

Several connections at once send random bytes, mutated valid frames, truncated frames,
huge length prefixes, wrong versions and unknown api keys for a few seconds, while a
well-behaved client keeps asking. The broker must stay up, keep answering the polite
client, leak no file descriptor, and log a bounded number of lines (one line per
malformed frame would be thousands).
"""
import os
import random
import socket
import struct
import threading
import time

import psutil

import pytest

from odradek.client import Admin
from odradek.client.protocol import CLIENT, Connection, messages as m
from support.broker import wait_until

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

FUZZ_S = 3.0
FUZZERS = 4
MAX_LOG_LINES = 40          # whatever the number of frames and connections
MAX_POLITE_LATENCY_S = 1.0
POLITE_INTERVAL_S = 0.01   # between two requests of the polite client

# read-only requests only: a mutation must not be able to create or delete anything
VALID = [m.ApiVersionsRequest(), m.MetadataRequest(topics=None, allow_auto_topic_creation=False),
         m.MetadataRequest(topics=["t"], allow_auto_topic_creation=False), m.StatusRequest(topics=None)]
HEADER = struct.Struct(">IHHIB")   # length, api_key, api_version, correlation_id, flags


def valid_frame(rng):
    return Connection(CLIENT).send_request(rng.choice(VALID))


def fuzzed_frame(rng):
    """One hostile frame, and whether the broker may keep the connection open after it."""
    kind = rng.randrange(7)
    if kind == 0:
        return os.urandom(rng.randrange(1, 200)), False
    if kind == 1:   # a valid frame with a few bytes changed
        frame = bytearray(valid_frame(rng))
        for _ in range(rng.randrange(1, 5)):
            frame[rng.randrange(len(frame))] = rng.choice([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff])
        return bytes(frame), False
    if kind == 2:   # truncated: the header promises more than comes
        frame = valid_frame(rng)
        return frame[:rng.randrange(1, len(frame))], False
    if kind == 3:   # a huge length prefix
        return HEADER.pack(rng.choice([0x7FFFFFFF, 0xFFFFFFFF, 1 << 28]), 3, 0, 1, 0), False
    if kind == 4:   # a version no one serves: answered, connection kept
        return HEADER.pack(9 + 5, 3, 77, rng.randrange(1, 1 << 31), 0) + struct.pack(">iB", -1, 0), True
    if kind == 5:   # an unknown api key: answered, connection kept
        return HEADER.pack(9 + 3, 999, 0, rng.randrange(1, 1 << 31), 0) + b"abc", True
    body = os.urandom(rng.randrange(0, 40))   # a body that does not decode: answered, kept
    return HEADER.pack(9 + len(body), 3, 0, rng.randrange(1, 1 << 31), 0) + body, True


def fuzz(path, seed, deadline, counts):
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.settimeout(0.5)
        try:
            for _ in range(rng.randrange(1, 200)):
                frame, kept = fuzzed_frame(rng)
                s.sendall(frame)
                counts[seed] += 1
                if not kept or time.monotonic() >= deadline:
                    break
                s.recv(65536)   # the broker's error reply: the connection is still served
        except OSError:
            pass   # the broker closed a connection whose framing broke: its right
        finally:
            s.close()


def polite(path, fuzz_over, latencies, failures):
    with Admin(path, timeout=5) as admin:
        while not fuzz_over.is_set():
            t0 = time.monotonic()
            try:
                assert list(admin.list_topics()) == ["t"]
            except Exception as e:   # reported by the test, not lost in the thread
                failures.append(e)
                return
            latencies.append(time.monotonic() - t0)
            # pacing, not waiting for time to pass: this client measures what a well-behaved
            # one sees under the fuzz and must not add a load of its own; the wait ends at
            # once when the fuzzers are done
            fuzz_over.wait(POLITE_INTERVAL_S)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_lines(broker):
    with open(broker.stderr_path, "rb") as f:
        return f.read().count(b"\n")


def test_fuzzed_control_frames_from_many_connections(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("t", 1)
        admin.list_topics()
    fds_before = open_fds(broker.pid)
    lines_before = log_lines(broker)
    deadline = time.monotonic() + FUZZ_S
    counts = {seed: 0 for seed in range(FUZZERS)}
    latencies, failures, fuzz_over = [], [], threading.Event()
    fuzzers = [threading.Thread(target=fuzz, args=(broker.socket_path, seed, deadline, counts))
               for seed in range(FUZZERS)]
    polite_client = threading.Thread(target=polite, args=(broker.socket_path, fuzz_over, latencies, failures))
    threads = fuzzers + [polite_client]
    for t in threads:
        t.start()
    for t in fuzzers:
        t.join(FUZZ_S + 30)
    fuzz_over.set()
    polite_client.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    frames = sum(counts.values())
    assert frames > 500, f"only {frames} fuzzed frames sent"
    assert latencies and max(latencies) < MAX_POLITE_LATENCY_S, max(latencies)
    assert psutil.Process(broker.pid).is_running()
    wait_until(lambda: open_fds(broker.pid) <= fds_before, timeout=10,
               what=f"the broker's fds to return to {fds_before} (now {open_fds(broker.pid)})")
    with Admin(broker.socket_path) as admin:
        assert list(admin.list_topics()) == ["t"]
    lines = log_lines(broker) - lines_before
    assert lines <= MAX_LOG_LINES, f"{lines} log lines for {frames} fuzzed frames:\n{broker.stderr()[-2000:]}"
