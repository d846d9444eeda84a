"""Fixtures for the shm tests: child processes (shm_child.py) that report by lines,
forked children that share the test's mappings, and a bounded wait for a condition, so
no test sleeps and none can hang."""
import importlib.util
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import traceback

import pytest

CHILD = os.path.join(os.path.dirname(__file__), "shm_child.py")
DEADLINE = 30.0   # seconds: any single wait in these tests; a failure, never a hang


def load_child_module():
    """shm_child.py as a module (for entry_for), loaded by path."""
    spec = importlib.util.spec_from_file_location("shm_child", CHILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Child:
    """A running shm_child.py: lines it prints arrive in a queue (read by a thread), so
    the test can wait for one with a deadline."""

    def __init__(self, argv, fds):
        self.proc = subprocess.Popen([sys.executable, CHILD, *map(str, argv)], pass_fds=fds,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self):
        for line in self.proc.stdout:
            self._lines.put(line.split())
        self._lines.put(None)

    def line(self, timeout=DEADLINE):
        """The next line the child prints, as words. Fails (with its stderr) if it exits
        first or prints nothing within timeout."""
        try:
            words = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"child {self.pid} said nothing for {timeout} s")
        if words is None:
            self.proc.wait(DEADLINE)
            pytest.fail(f"child {self.pid} exited ({self.proc.returncode}): "
                        f"{self.proc.stderr.read()[-2000:]}")
        return words

    def expect(self, word, timeout=DEADLINE):
        words = self.line(timeout)
        assert words[0] == word, words
        return words[1:]

    def send(self, text):
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def kill(self):
        """SIGKILL and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)

    def close(self):
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        self._reader.join(DEADLINE)


@pytest.fixture
def spawn():
    """spawn(command, *args, fds=(...)) -> Child; every child is killed at teardown."""
    children = []

    def _spawn(*argv, fds=()):
        child = Child(argv, fds)
        children.append(child)
        return child
    yield _spawn
    for child in children:
        child.close()


class Forks:
    """Children forked from the test process: they inherit its mappings, which is the
    only way a second process writes a partition state (sealed against new writable
    mappings, LAYOUT.md). start(fn) runs fn() in a child that then exits (1 if fn
    raised); join(pid) waits for it. Every child is killed and reaped at teardown."""

    def __init__(self):
        self.pids = set()

    def start(self, fn):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fn()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self.pids.add(pid)
        return pid

    def join(self, pid, timeout=DEADLINE):
        """The child's exit status; fails if it is still running after timeout seconds."""
        pidfd = os.pidfd_open(pid)
        try:
            if not select.select([pidfd], [], [], timeout)[0]:
                pytest.fail(f"forked child {pid} still running after {timeout} s")
        finally:
            os.close(pidfd)
        self.pids.discard(pid)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def kill_all(self):
        for pid in self.pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.pids.clear()


@pytest.fixture
def forks():
    """A Forks: children forked from this process, killed at teardown."""
    f = Forks()
    yield f
    f.kill_all()


def wait_for(condition, timeout=DEADLINE, what="condition"):
    """Spin until condition() is true (no sleep: the thing awaited is in another process
    or thread and shows in shared memory at once); fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout} s")


def wait_for_futex_sleep(pid, tid=None, timeout=DEADLINE):
    """Until a thread of process pid (thread tid, if given) sleeps in a futex wait, as
    its /proc wchan says: the moment a wake-up can no longer be caught by a re-check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in [tid] if tid is not None else os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/wchan") as f:
                    if "futex" in f.read():
                        return
            except OSError:
                pass
    pytest.fail(f"process {pid} never slept in a futex wait within {timeout} s")


@pytest.fixture(name="futex_sleep")
def futex_sleep_fixture():
    """The wait_for_futex_sleep function above, for tests."""
    return wait_for_futex_sleep


@pytest.fixture
def fds_to_close():
    """A list: fds appended to it are closed at teardown."""
    fds = []
    yield fds
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def bell(fds_to_close):
    """(a new Doorbell, its fd): closed at teardown."""
    from odradek.client.shm import Doorbell
    bell, fd = Doorbell.create()
    fds_to_close.append(fd)
    yield bell, fd
    bell.close()


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    """The wait_for function above, for tests (conftest is not importable by name)."""
    return wait_for


@pytest.fixture(scope="session")
def child_module():
    """shm_child.py as a module: its entry_for is the writer's content rule."""
    return load_child_module()
