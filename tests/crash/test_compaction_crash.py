"""SIGKILL a process that appends to a compacted log and cleans it in small steps, at
random moments and exactly on each rename/unlink of a segment swap; after every kill
the reopened log must be whole: nothing acknowledged lost, every key's latest value at
its original offset, no record removed unless a later one of its key exists (or it is a
tombstone), no compaction litter (*.cleaned, *.swap), dump-log finding no problem (CRCs,
framing, increasing offsets, both indexes consistent with the log)."""
import importlib.util
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys

import pytest

from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.tools.dump_log import dump
from support.records import assert_nothing_past_the_recovered_end, batches_in, read_all

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

CHILD = os.path.join(os.path.dirname(__file__), "log_compactor.py")
_spec = importlib.util.spec_from_file_location("log_compactor", CHILD)
compactor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compactor)

BASE = {"cleanup.policy": "compact", "segment.bytes": 2048, "index.interval.bytes": 256,
        "min.cleanable.dirty.ratio": 0.2}
CONFIGS = {
    # tombstones kept a day: they survive every pass of the test
    "keep-tombstones": dict(BASE),
    # tombstones dropped by the second pass that sees them
    "drop-tombstones": dict(BASE, **{"delete.retention.ms": 0}),
}
KILLS = 15            # per configuration: 30 in all; every other one lands on a swap step
STEP_BYTES = 1500     # cleaner work per append: passes span many appends
ACK_TIMEOUT_S = 20    # a child that stops acknowledging fails the test, never hangs it


def run_until_killed(directory, config, seed, kill_at, acks, stderr_path):
    """Start a child, let it acknowledge up to `acks` appends (or kill itself), SIGKILL it.
    Returns the last acknowledged offset (-1 if none)."""
    with open(stderr_path, "w") as stderr:
        child = subprocess.Popen([sys.executable, CHILD, directory, json.dumps(config), str(seed),
                                  str(STEP_BYTES), str(kill_at)],
                                 stdout=subprocess.PIPE, stderr=stderr, bufsize=0)  # select sees every line
    acked = -1
    try:
        lines = 0
        while lines <= acks:
            ready, _, _ = select.select([child.stdout], [], [], ACK_TIMEOUT_S)
            assert ready, f"the child stopped answering: {open(stderr_path).read()[-2000:]}"
            line = child.stdout.readline().split()
            if not line:
                break     # it killed itself
            if line[0] == b"ack":
                acked = int(line[1])
            lines += 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=ACK_TIMEOUT_S)
        child.stdout.close()
    if child.returncode != -signal.SIGKILL:
        pytest.fail(f"the child exited with {child.returncode}: {open(stderr_path).read()[-2000:]}")
    return acked


def check_reopened(directory, config, highest_acked, kill):
    names = os.listdir(directory)
    log = PartitionLog(directory, LogConfig(config))
    try:
        litter = [n for n in os.listdir(directory) if n.endswith((".cleaned", ".swap"))]
        assert not litter, f"kill {kill}: {litter}"
        problems = []
        report = dump([directory], out=lambda line: problems.append(line) if "WARNING" in line else None,
                      quiet=True)
        assert report.problems == 0, f"kill {kill}: {problems[:3]} (files before open: {sorted(names)})"
        assert_nothing_past_the_recovered_end(log)
        end = log.log_end_offset
        assert end >= highest_acked + 1, f"kill {kill}: acknowledged records lost"
        records = read_all(log)
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets)), f"kill {kill}: offsets not strictly increasing"
        wrong = [r.offset for r in records if (r.key, r.value) != compactor.record_for(r.offset)]
        assert not wrong, f"kill {kill}: wrong bytes at offsets {wrong[:5]}"
        assert all(b.crc_valid() for b in batches_in(log)), f"kill {kill}"
        present = set(offsets)
        latest, superseded = {}, set()
        for offset in range(end):
            key, _ = compactor.record_for(offset)
            if key is not None:
                if key in latest:
                    superseded.add(latest[key])
                latest[key] = offset
        for key, offset in latest.items():
            if compactor.record_for(offset)[1] is not None:
                assert offset in present, f"kill {kill}: the latest value of {key!r} (offset {offset}) is gone"
        for offset in range(log.log_start_offset, end):
            if offset not in present:
                key, value = compactor.record_for(offset)
                assert key is not None, f"kill {kill}: record {offset} (no key) removed"
                assert offset in superseded or value is None, \
                    f"kill {kill}: record {offset} removed though it is its key's latest"
        return len(records), end
    finally:
        for segment in log.segments:  # leave it as a crash would: no close
            segment.close()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigkill_during_compaction_leaves_every_latest_value(tmp_path, name, caplog):
    config = CONFIGS[name]
    directory = str(tmp_path / "compacted-0")
    rng = random.Random(f"odradek-compaction-crash-{name}")
    highest_acked = -1
    for kill in range(KILLS):
        kill_at = rng.randint(1, 24) if kill % 2 else 0   # a swap group is ~10-20 calls
        acks = rng.randint(20, 150)
        acked = run_until_killed(directory, config, seed=kill, kill_at=kill_at, acks=acks,
                                 stderr_path=str(tmp_path / "compactor.err"))
        highest_acked = max(highest_acked, acked)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="odradek.daemon.storage"):
            kept, end = check_reopened(directory, config, highest_acked, kill)
        worse = [r.getMessage() for r in caplog.records if "follows a corrupt" in r.getMessage()]
        assert not worse, f"kill {kill}: {worse[:3]}"
    assert highest_acked > 500, "the child never got going; the test proved nothing"
    assert kept < end * 0.6, f"compaction hardly ran: {kept} records kept of {end}"
