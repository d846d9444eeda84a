"""Suite-wide guard: after the whole run, no process this test session started is still
running, and no odradek object appeared in /dev/shm (the data plane uses memfds, which
cannot leak; this catches any named object that would). Only regular files new since
the session started count: on a shared machine, other runs' perf tools keep their
scratch directories there (odradek-perf-*) and other sessions' objects come and go."""
import os

import psutil
import pytest

SHM_DIR = "/dev/shm"


def _shm_objects():
    if not os.path.isdir(SHM_DIR):
        return set()
    with os.scandir(SHM_DIR) as entries:
        return {e.name for e in entries if "odradek" in e.name.lower() and e.is_file(follow_symlinks=False)}


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    before = _shm_objects()
    yield
    me = psutil.Process()
    alive = []
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{child.pid} {' '.join(child.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    shm = sorted(_shm_objects() - before)
    assert not alive, f"processes left running after the suite: {alive}"
    assert not shm, f"/dev/shm objects left after the suite: {shm}"
