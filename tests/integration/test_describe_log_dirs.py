"""DescribeLogDirs (Admin.describe_log_dirs, `odradek log-dirs describe`) and the
under-min-ISR count against the real broker with two log dirs: each dir's replicas with
their data size (the sum of their batches' sizes, as dump-log reads them, not the
preallocated file size), statvfs bytes, an offline dir's KAFKA_STORAGE_ERROR; a topic
whose min.insync.replicas is above its ISR counted under min ISR by status and Admin."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from odradek.client import Admin, Producer
from odradek.daemon.cli import cli
from odradek.daemon.storage import filenames
from support.broker import multi_dir_broker

PARTITIONS = 4


@pytest.fixture
def two_dirs(tmp_path):
    b = multi_dir_broker(tmp_path, "ab")
    yield b
    b.kill()
    assert not b.leftovers(), f"processes left behind: {b.leftovers()}"


def fill(b):
    """Topic t over both dirs, partition p gets 3 * (p + 1) records: {partition: leader dir}."""
    with Admin(b.socket_path) as admin:
        admin.create_topic("t", PARTITIONS, replication_factor=1)
        admin.create_topic("other", 1, replication_factor=1)
        leaders = {p.partition: p.leader for p in admin.describe_topic("t").partitions}
    assert set(leaders.values()) == {0, 1}
    p = Producer({"socket": b.socket_path})
    try:
        for part in range(PARTITIONS):
            for i in range(3 * (part + 1)):
                p.produce("t", value=b"x" * (10 + 37 * i), partition=part)
                assert p.flush(10) == 0   # one batch per record: sizes differ per partition
    finally:
        p.close()
    return leaders


def batch_bytes(partition_dir):
    """Sum of the batches' sizes dump-log reads in a partition dir (12 bytes of offset and
    length framing plus each batch's length)."""
    out = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "dump-log", partition_dir],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    sizes = [int(s) for s in re.findall(r"^baseOffset: .* size: (\d+) ", out.stdout, re.M)]
    assert sizes
    return sum(sizes)


def cli_run(b, *args):
    r = CliRunner().invoke(cli, list(args) + ["--socket", b.socket_path])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_describe_log_dirs_gives_each_dirs_replicas_with_their_data_size(two_dirs):
    b = two_dirs
    b.start()
    leaders = fill(b)
    with Admin(b.socket_path) as admin:
        dirs = admin.describe_log_dirs(["t"])
    assert [d.path for d in dirs] == b.dirs
    for i, d in enumerate(dirs):
        assert d.error is None and d.directory_id and d.total_bytes > 0 and 0 < d.usable_bytes <= d.total_bytes
        assert [(r.topic, r.partition) for r in d.replicas] == \
            [("t", p) for p in sorted(leaders) if leaders[p] == i]
        for r in d.replicas:
            assert r.offset_lag == 0 and r.is_future is False
            path = os.path.join(d.path, filenames.partition_dir_name("t", r.partition))
            assert r.size == batch_bytes(path), r
    sizes = {r.partition: r.size for d in dirs for r in d.replicas}
    assert len(set(sizes.values())) == PARTITIONS   # each its own, not a preallocated file size

    doc = json.loads(cli_run(b, "log-dirs", "describe", "--topic", "t", "--json"))
    assert doc["version"] == 1 and [x["broker"] for x in doc["brokers"]] == [0]
    got = {p["partition"]: (x["logDir"], p["size"], p["offsetLag"], p["isFuture"])
           for x in doc["brokers"][0]["logDirs"] for p in x["partitions"]}
    assert got == {f"t-{p}": (b.dirs[leaders[p]], sizes[p], 0, False) for p in range(PARTITIONS)}
    assert all(x["error"] is None for x in doc["brokers"][0]["logDirs"])

    table = cli_run(b, "log-dirs", "describe").splitlines()
    assert table[0].split() == ["DIR", "PATH", "DIRECTORY-ID", "STATE", "TOTAL", "USABLE", "REPLICAS", "SIZE"]
    for p in range(PARTITIONS):
        row = next(line.split() for line in table if f" t-{p} " in f" {line} ")
        assert row == [str(leaders[p]), f"t-{p}", str(sizes[p]), "0", "false", "leader"]
    assert any(" other-0 " in f" {line} " for line in table)   # no --topic: every topic
    assert b.stop() == 0


def test_an_offline_log_dir_is_described_with_its_storage_error(two_dirs):
    b = two_dirs
    b.start()
    leaders = fill(b)
    assert b.stop() == 0
    os.rename(b.dirs[1], b.dirs[1] + ".away")
    b.start()
    with Admin(b.socket_path) as admin:
        dirs = admin.describe_log_dirs()
    assert dirs[0].error is None and dirs[0].replicas
    assert {(r.topic, r.partition) for r in dirs[0].replicas if r.topic == "t"} == \
        {("t", p) for p, d in leaders.items() if d == 0}
    assert dirs[1].error == "KAFKA_STORAGE_ERROR" and "missing" in dirs[1].error_message
    assert dirs[1].replicas == [] and dirs[1].total_bytes == dirs[1].usable_bytes == -1
    doc = json.loads(cli_run(b, "log-dirs", "describe", "--json"))
    assert [x["error"] for x in doc["brokers"][0]["logDirs"]] == [None, "KAFKA_STORAGE_ERROR"]
    table = cli_run(b, "log-dirs", "describe")
    assert "KAFKA_STORAGE_ERROR: missing" in table
    assert b.stop() == 0


def test_log_dirs_describe_of_an_unknown_topic_is_one_line_on_stderr(two_dirs):
    b = two_dirs
    b.start()
    out = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "log-dirs", "describe", "--topic", "nope",
                          "--socket", b.socket_path], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "nope" in out.stderr, out.stderr
    assert b.stop() == 0


def test_a_topic_with_min_insync_above_its_isr_counts_under_min_isr(two_dirs):
    b = two_dirs
    b.start()
    with Admin(b.socket_path) as admin:
        admin.create_topic("strict", 2, replication_factor=1, config={"min.insync.replicas": "2"})
        admin.create_topic("loose", 1, replication_factor=1)
        h = admin.partition_health()
        assert sorted(h.under_min_isr) == ["strict-0", "strict-1"]
        assert h.under_replicated == [] and h.offline == []
        assert all(p.min_insync_replicas == 2 for p in admin.status(["strict"]).partitions)
    status = cli_run(b, "status")
    assert f"{h.partitions} partitions, 0 under-replicated, 2 under min ISR, 0 offline" in status
    assert "under min ISR (ISR below min.insync.replicas: acks=all refused): strict-0, strict-1" in status
    rows = [line.split() for line in cli_run(b, "topics", "describe", "strict", "loose").splitlines()
            if re.match(r"\s+\d+\s", line)]
    assert [r[-1] for r in rows] == ["under-min-ISR", "under-min-ISR", "-"]
    assert b.stop() == 0

    notify = str(b.dirs[0]) + ".notify"   # the readiness status line (systemd) counts them too
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify)
    sock.settimeout(20)
    try:
        b.env["NOTIFY_SOCKET"] = notify
        b.start()
        ready = next(msg for msg in (sock.recv(4096).decode() for _ in range(50)) if "READY=1" in msg)
        assert "2 under min ISR" in ready, ready
        with Admin(b.socket_path) as admin:
            admin.alter_configs("strict", {"min.insync.replicas": "1"})
            assert admin.partition_health().under_min_isr == []
        assert b.stop() == 0
    finally:
        sock.close()
