"""The real broker in a subprocess, for integration tests: start, wait until it answers,
stop with SIGTERM, and check that it left no process and no socket behind."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil

from odradek.client.protocol import ControlClient, messages as m

START_TIMEOUT_S = 30
INTERNAL_PARTITIONS = 2   # __consumer_offsets, __transaction_state: their workers run beside the topics' ones


def wait_until(predicate, timeout=10.0, interval=0.005, what="condition"):
    """Re-check `predicate` until it returns a true value, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def consume_n(consumer, n, timeout=10.0):
    """Exactly n records from `consumer` (fails on timeout), waiting on it, not sleeping."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(out)} of {n} records"
        out += consumer.consume(n - len(out), left)
    return out


class BrokerProcess:
    def __init__(self, data_dir, env=None, args=(), umask=None, config=None, listener=False):
        """config: a TOML file to serve with (`serve --config`) instead of `--data-dir
        data_dir`; it must put socket.path at data_dir/odradek.sock. listener: run the
        Kafka listener on an ephemeral loopback port (`kafka_port()`); without it a
        --data-dir broker runs none (dev mode's 9092 is for people, not tests)."""
        self.data_dir = str(data_dir)
        self.config = config
        self.umask = -1 if umask is None else umask   # the broker's umask (-1: the test's)
        self.socket_path = os.path.join(self.data_dir, "odradek.sock")
        self.env = dict(os.environ, **(env or {}))
        self.args = list(args)
        if config is None:
            self.args[:0] = ["--override", "listeners=PLAINTEXT://127.0.0.1:0" if listener else "listeners="]
        self.proc = None
        self.stderr_path = os.path.join(os.path.dirname(os.path.abspath(self.data_dir)),
                                        f"broker-{os.path.basename(self.data_dir)}.err")
        self._descendants = set()

    def start(self, wait=True):
        os.makedirs(os.path.dirname(self.stderr_path), exist_ok=True)   # the broker makes the data dir
        self._stderr = open(self.stderr_path, "ab")
        where = ["--config", str(self.config)] if self.config else ["--data-dir", self.data_dir]
        self.proc = subprocess.Popen([sys.executable, "-m", "odradek.daemon.cli", "serve", *where,
                                      *self.args], stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=self.env, umask=self.umask)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        def answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited with {self.proc.returncode}: {self.stderr()}")
            try:
                with ControlClient(self.socket_path, timeout=5) as c:
                    c.call(m.ApiVersionsRequest())
                return True
            except Exception:
                return False
        wait_until(answers, START_TIMEOUT_S, interval=0.01, what="the broker to answer")

    def kafka_port(self, timeout=30):
        """The Kafka listener's port, from the broker's last `bootstrap.servers=` line."""
        def announced():
            ports = re.findall(r"bootstrap\.servers=\S+:(\d+)", self.stderr(None))
            return int(ports[-1]) if ports else None
        return wait_until(announced, timeout, interval=0.02, what="the broker's bootstrap.servers line")

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        """pids of the broker's worker processes now."""
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        self._descendants.update(k.pid for k in kids)
        return [k.pid for k in kids]

    def stderr(self, tail=4000):
        """The broker's log (stderr) so far: its last `tail` characters (None: all)."""
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode(errors="replace")
                return text if tail is None else text[-tail:]
        except OSError:
            return ""

    def stop(self, timeout=30):
        """SIGTERM, wait, and return the exit status; SIGKILL if it does not stop."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.workers()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"broker did not stop within {timeout}s: {self.stderr()}")
        finally:
            self._stderr.close()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.workers()
            self.proc.kill()
            self.proc.wait(10)
        self._reap_descendants()

    def _reap_descendants(self):
        """Workers die with the broker (PR_SET_PDEATHSIG); make sure, by pid, and wait."""
        for pid in self._descendants:
            try:
                p = psutil.Process(pid)
                if p.ppid() in (self.proc.pid, 1):
                    p.wait(5)
            except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                pass

    def leftovers(self):
        alive = []
        for pid in self._descendants:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive


def stop_cleanly(broker):
    """A test's teardown: stop `broker`, which must exit 0 and leave no process behind."""
    try:
        code = broker.stop()
        assert code == 0, f"broker exit status {code}: {broker.stderr()}"
        assert not broker.leftovers(), f"processes left behind: {broker.leftovers()}"
    finally:
        broker.kill()


def multi_dir_broker(tmp_path, names):
    """A BrokerProcess (not started) serving the log dirs tmp_path/<name> for each of
    `names` from a config file, its socket in tmp_path/run; `.dirs` lists the dirs."""
    dirs = [str(tmp_path / n) for n in names]
    run = tmp_path / "run"
    run.mkdir()
    config = tmp_path / "odradek.toml"
    config.write_text("log.dirs = [" + ", ".join(f'"{d}"' for d in dirs) + "]\n"
                      f'socket.path = "{run}/odradek.sock"\n')
    b = BrokerProcess(run, config=config)
    b.dirs = dirs
    return b


def raw_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s
