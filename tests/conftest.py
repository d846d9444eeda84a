"""Suite-wide guard: after the whole run, no process this test session started is still
running, and no odradek object is left in /dev/shm (the data plane uses memfds, which
cannot leak; this catches any named object that would)."""
import os

import psutil
import pytest


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    yield
    me = psutil.Process()
    alive = []
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{child.pid} {' '.join(child.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    shm = [n for n in os.listdir("/dev/shm") if "odradek" in n.lower()] if os.path.isdir("/dev/shm") else []
    assert not alive, f"processes left running after the suite: {alive}"
    assert not shm, f"/dev/shm objects left after the suite: {shm}"
