import json
import os
import signal

import pytest

from support.broker import BrokerProcess, stop_cleanly

GROUP_TEST_ARGS = ["--override", "group.initial.rebalance.delay.ms=0"]
LAG_MS = 600   # replica.lag.time.max.ms of `three_dirs`: a stopped follower leaves the ISR after it


@pytest.fixture
def broker(tmp_path):
    """A running broker on a temp data dir; stopped (exit 0 required) after the test.
    Groups rebalance without Kafka's 3 s initial delay, so tests run fast."""
    b = BrokerProcess(tmp_path / "data", args=GROUP_TEST_ARGS).start()
    yield b
    stop_cleanly(b)


@pytest.fixture
def three_dirs(tmp_path):
    """(data dir holding the socket, [three log dirs], config path); the broker is
    started by the test (after it wrote what it wants found)."""
    data = tmp_path / "data"
    dirs = [tmp_path / f"disk{i}" for i in range(3)]
    for d in (data, *dirs):
        d.mkdir()
    config = tmp_path / "odradek.toml"
    config.write_text(f"log.dirs = {json.dumps([str(d) for d in dirs])}\n"
                      f"socket.path = {json.dumps(str(data / 'odradek.sock'))}\n"
                      f"replica.lag.time.max.ms = {LAG_MS}\n")
    return data, dirs, config


@pytest.fixture
def start(three_dirs):
    started, stopped = [], []

    def start():
        data, _, config = three_dirs
        started.append(BrokerProcess(data, config=config).start())
        return started[-1]
    yield start
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
    for b in started:
        stop_cleanly(b)
