"""SIGKILL a process appending to a partition log at random moments; after every kill the
reopened log must hold a prefix of what was appended, including every acknowledged batch,
with valid CRCs and consistent indexes."""
import json
import logging
import os
import random
import signal
import subprocess
import sys

import pytest

from odradek.daemon.storage import LogConfig, PartitionLog
from support.records import assert_nothing_past_the_recovered_end, batches_in, read_all

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

APPENDER = os.path.join(os.path.dirname(__file__), "log_appender.py")
CONFIGS = {
    "replication-durability": {"segment.bytes": 16384, "index.interval.bytes": 256},
    "flush-every-message": {"segment.bytes": 16384, "index.interval.bytes": 256, "flush.messages": 1},
    "small-segments-with-retention": {"segment.bytes": 1024, "index.interval.bytes": 128,
                                      "retention.bytes": 8192},
}
KILLS = 17          # per configuration: 51 in all
ACK_TIMEOUT_S = 30  # a child that stops acknowledging fails the test, never hangs it


def expected_value(offset):
    return (b"rec-%d|" % offset) + b"x" * (offset % 97)


def run_until_killed(directory, config, seed, rng, stderr_path):
    """Start an appender, let it acknowledge a random number of appends, SIGKILL it.
    Returns the last acknowledged offset (-1 if none) and the recovery point it reported."""
    with open(stderr_path, "w") as stderr:
        child = subprocess.Popen([sys.executable, APPENDER, directory, json.dumps(config), str(seed)],
                                 stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        acked, recovery_point = -1, 0
        ready = child.stdout.readline().split()
        assert ready and ready[0] == "ready", open(stderr_path).read()
        for _ in range(rng.randint(0, 300)):
            line = child.stdout.readline().split()
            if not line:
                break
            acked, recovery_point = int(line[1]), int(line[2])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=ACK_TIMEOUT_S)
        child.stdout.close()
    return acked, recovery_point


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path, name, caplog):
    config = CONFIGS[name]
    directory = str(tmp_path / "crash-0")
    rng = random.Random(f"odradek-crash-{name}")
    highest_acked = -1
    for kill in range(KILLS):
        acked, _ = run_until_killed(directory, config, seed=kill, rng=rng,
                                    stderr_path=str(tmp_path / "appender.err"))
        highest_acked = max(highest_acked, acked)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="odradek.daemon.storage"):
            log = PartitionLog(directory, LogConfig(config))
        # a process crash can tear only the last batch: anything more is a recovery bug
        worse = [r.getMessage() for r in caplog.records if "follows a corrupt" in r.getMessage()]
        assert not worse, f"kill {kill}: {worse[:3]}"
        try:
            records = read_all(log)
            assert log.log_end_offset >= highest_acked + 1, f"kill {kill}: acknowledged records lost"
            assert [r.offset for r in records] == list(range(log.log_start_offset, log.log_end_offset)), \
                f"kill {kill}: offsets not dense from the log start"
            bad = [r.offset for r in records if r.value != expected_value(r.offset)]
            assert not bad, f"kill {kill}: wrong bytes at offsets {bad[:5]}"
            assert all(b.crc_valid() for b in batches_in(log)), f"kill {kill}"
            assert_nothing_past_the_recovered_end(log)
            for segment in log.segments:
                for slot in range(segment.index.entries):
                    offset, position = segment.index.entry(slot)
                    assert segment.batch_at(position).last_offset == offset, f"kill {kill}: index"
        finally:
            for segment in log.segments:  # leave it as a crash would: no close
                segment.close()
    assert highest_acked > 100, "the appender never got going; the test proved nothing"
