"""Issue 8, defect 8: dev mode left the data world-readable (dirs 0755, segments 0644,
from the umask), which bypassed the socket's 0660. Whatever the broker's umask, every
dir it creates is 0750 and every file 0640 (daemon/storage/modes.py)."""
import os
import stat

import pytest

from odradek.client import Admin, Producer
from support.broker import BrokerProcess, wait_until


def modes_under(top):
    """{path relative to top: (kind, permission bits)} of top and everything in it."""
    out = {".": ("dir", stat.S_IMODE(os.lstat(top).st_mode))}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "file"
            out[os.path.relpath(path, top)] = (kind, stat.S_IMODE(st.st_mode))
    return out


def wrong_modes(top):
    want = {"dir": 0o750, "file": 0o640, "socket": 0o660}
    return {path: oct(mode) for path, (kind, mode) in modes_under(top).items() if mode != want[kind]}


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_everything_the_broker_makes_is_0750_or_0640_whatever_the_umask(tmp_path, umask):
    data = tmp_path / "data"
    broker = BrokerProcess(data, umask=umask, args=["--override", "log.cleaner.backoff.ms=100"]).start()
    try:
        with Admin(broker.socket_path) as admin:
            admin.create_topic("plain", 2)
            admin.create_topic("table", 1, config={"cleanup.policy": "compact", "segment.bytes": "4096",
                                                   "min.cleanable.dirty.ratio": "0.01"})
        with Producer({"socket": broker.socket_path, "linger.ms": 0, "enable.idempotence": True}) as p:
            for i in range(400):
                p.produce("plain", b"v%d" % i, key=b"k%d" % i)
                p.produce("table", b"v%d" % i, key=b"k%d" % (i % 10))
            assert p.flush(20) == 0
        wait_until(lambda: os.path.exists(data / "cleaner-offset-checkpoint"), 30, interval=0.05,
                   what="the cleaner to compact 'table'")
        made = modes_under(data)
        assert {"table-0", "plain-1", "cluster-metadata.json", ".lock", "odradek.sock",
                "recovery-point-offset-checkpoint"} <= set(made), sorted(made)
        assert sum(p.startswith("table-0/") and p.endswith(".log") for p in made) > 1   # rolled
        assert wrong_modes(data) == {}
    finally:
        code = broker.stop()
        broker.kill()
    assert code == 0, broker.stderr()
    assert wrong_modes(data) == {}      # and what a clean stop writes (checkpoints, trims)
