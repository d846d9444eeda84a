"""A partition leader worker in its own process, forked as the broker's Supervisor forks
it (daemon/broker/supervisor.py: signals blocked across the fork, leader.run in the
child) with the broker's shared memory (PartitionShm), and driven over its link as the
broker drives it (a CLIENT Channel on a non-blocking socketpair). Followers are played by
the test: it publishes their log end in the replica progress page, which moves the
leader's high watermark."""
import os
import select
import signal
import time
import traceback

from odradek.client.protocol import CLIENT, Channel, Response
from odradek.client.protocol import messages as m
from odradek.daemon.broker.data_plane import PartitionShm
from odradek.daemon.worker import leader
from odradek.daemon.worker.spec import WorkerSpec


class WorkerProcess:
    def __init__(self, log_dir, topic="t", partition=0, replicas=(0,), leader_epoch=1, configs=None, shm=None):
        self.shm = shm if shm is not None else PartitionShm(64, replicas=len(replicas))
        self.spec = WorkerSpec(topic, partition, 0, str(log_dir), configs or {}, leader_epoch,
                                      shm=self.shm, replicas=list(replicas), isr=list(replicas))
        self.pid = self.sock = self.channel = None
        self.responses = {}

    def start(self, timeout=10.0):
        parent_sock, child_sock = leader.socketpair()
        parent_pid = os.getpid()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, leader.BROKER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                parent_sock.close()
                code = leader.run(child_sock, self.spec, parent_pid)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_sock.close()
        parent_sock.setblocking(False)
        self.pid, self.sock, self.channel = pid, parent_sock, Channel(role=CLIENT)
        self.responses = {}
        self.call(m.StatusRequest(), timeout)      # answered once the log is open
        return self

    def send(self, message):
        cid = self.channel.request(message)
        deadline = time.monotonic() + 5
        while not self.channel.flush(self.sock):
            assert time.monotonic() < deadline, "the worker does not read its link"
            select.select([], [self.sock], [], 0.1)
        return cid

    def response(self, cid, timeout):
        """The Response to request `cid`, or None if none came within `timeout` s."""
        deadline = time.monotonic() + timeout
        while cid not in self.responses:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([self.sock], [], [], left)
            if readable:
                for event in self.channel.feed(self.sock):
                    if isinstance(event, Response):
                        self.responses[event.correlation_id] = event
        return self.responses.pop(cid)

    def call(self, message, timeout=10.0):
        response = self.response(self.send(message), timeout)
        assert response is not None, f"no answer to {type(message).__name__} within {timeout} s"
        return response.result()

    def follower_at(self, log_end_offset, replica=1):
        """Play follower `replica`: its log ends at log_end_offset."""
        self.shm.progress.publish(replica, log_end_offset, 0)

    def offsets(self):
        """(last stable offset, high watermark, log end offset) as a consumer reads them."""
        state = self.shm.state
        snap = state.read()
        return state.last_stable_offset(snap), snap.high_watermark, snap.log_end_offset

    def wait_for(self, predicate, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.offsets()}"
            self.shm.state.wait_for_change(self.shm.state.read().change, 0.05)

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        self._reap(10)

    def stop(self, timeout=10.0):
        os.kill(self.pid, signal.SIGTERM)
        return self._reap(timeout)

    def _reap(self, timeout):
        pidfd = os.pidfd_open(self.pid)
        try:
            if not select.select([pidfd], [], [], timeout)[0]:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError("the worker did not exit")
        finally:
            os.close(pidfd)
        _, status = os.waitpid(self.pid, 0)
        self.channel.close()
        self.sock.close()
        self.pid = None
        return os.waitstatus_to_exitcode(status)

    def close(self):
        """Kill the worker if it runs; the shared memory goes with the last holder."""
        if self.pid is not None:
            self.kill()
