"""Worker processes: fork one per partition leader, notice each death at once, restart.

Owned by the broker loop (single-threaded, so fork is safe: no other thread can hold a
lock the child would inherit). A worker's death is seen through its pidfd becoming
readable, the moment the kernel knows, not by a timeout. Restarts back off
exponentially (0, 0.1, 0.2, ... up to 5 s) while a worker keeps dying young.

Children are forked from the already-imported broker, so a worker costs a fork and the
pages it writes (copy-on-write), not an interpreter start. The child keeps only stdin,
stdout, stderr, its link and its partition's shared memory and closes every other fd
the broker held (one close_range, whatever the number of partitions): no worker holds
another partition's memory, a client's socket or the listener (another partition's
mappings stay mapped, fd-less). The broker's signals are blocked across the fork and
stay blocked in the child until the worker has installed its own handlers: a worker
stopped right after the fork gets its SIGTERM then, and none reaches the broker's pipe.
"""
import logging
import os
import signal
import sys
import time
import traceback

from odradek.client.protocol import Channel, CLIENT
from odradek.daemon.worker import leader

__all__ = ["Supervisor", "WorkerHandle"]

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
HEALTHY_AFTER_S = 10.0  # a worker that lived this long resets its backoff


class WorkerHandle:
    """The broker's side of one worker: pid, pidfd, link and its pending requests."""

    def __init__(self, spec):
        self.spec = spec
        # a leader's key is its partition; a follower's adds its replica id
        self.key = ((spec.topic, spec.partition) if spec.role == "leader"
                    else (spec.topic, spec.partition, spec.replica_id))
        self.pid = None
        self.pidfd = None
        self.sock = None
        self.channel = None
        self.pending = {}         # correlation id -> (callback(result[, fds]), with_fds)
        self.shm = None           # its PartitionShm: created once, kept across restarts
        self.started_at = None
        self.restarts = 0
        self.backoff = 0.0
        self.state = "new"        # starting/running, stopping, dead
        self.restart_at = None    # monotonic time of the next start, when dead
        self.retire = False       # do not restart (topic deleted, broker stopping)
        self.linked = False       # its link socket is registered with the broker's selector
        self.handover_to = None   # a leader asked to stop for this replica to lead (preferred leader)

    @property
    def is_follower(self):
        return self.spec.role == "follower"

    @property
    def alive(self):
        return self.pid is not None

    def request(self, message, callback, fds=(), with_fds=False):
        """Send a request (with `fds`, closed once sent); `callback(result)` gets the
        response or an OdradekError, `callback(result, fds)` if with_fds (then the fds
        the worker passed back are the callback's)."""
        cid = self.channel.request(message, fds, close_fds=True)
        self.pending[cid] = (callback, with_fds)

    def __repr__(self):
        return f"Worker({'-'.join(map(str, self.key))}, {self.spec.role}, pid={self.pid}, {self.state})"


class Supervisor:
    def __init__(self):
        self.workers = {}         # (topic, partition) -> WorkerHandle

    def start(self, handle):
        """Fork the worker of `handle`; returns its pid."""
        parent_sock, child_sock = leader.socketpair()
        parent_pid = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        # The broker's signals stay blocked in the child until leader.run has installed
        # the worker's handlers and unblocks them. One sent to the child in between (a
        # topic deleted as its workers start) would run the broker's inherited handler:
        # written into the broker's own signal pipe (the broker stopped or reloaded) and
        # lost to the worker (it ran on, and its files stayed).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, leader.BROKER_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # the child: never returns
            code = 1
            try:
                signal.set_wakeup_fd(-1)   # the broker's pipe: leader.run sets its own
                _close_fds_except({0, 1, 2, child_sock.fileno(), *(handle.spec.shm.fds if handle.spec.shm else ())})
                code = leader.run(child_sock, handle.spec, parent_pid)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_sock.close()
        parent_sock.setblocking(False)
        handle.pid = pid
        handle.pidfd = os.pidfd_open(pid)
        handle.sock = parent_sock
        handle.channel = Channel(role=CLIENT)
        handle.started_at = time.monotonic()
        handle.state = "running"
        handle.restart_at = None
        handle.retire = False
        self.workers[handle.key] = handle
        log.info("started %s %d for %s-%d%s", "worker" if handle.spec.role == "leader" else "follower", pid,
                 handle.spec.topic, handle.spec.partition,
                 f" replica {handle.spec.replica_id}" if handle.spec.role != "leader" else "")
        return pid

    def reap(self, handle):
        """The worker's pidfd is readable: collect its status and clean up the link.
        Returns a human description of how it ended."""
        _, status = os.waitpid(handle.pid, 0)
        os.close(handle.pidfd)
        handle.channel.close()
        handle.sock.close()
        lived = time.monotonic() - handle.started_at
        handle.pid = handle.pidfd = handle.sock = handle.channel = None
        handle.state = "dead"
        how = (f"killed by signal {signal.Signals(-os.waitstatus_to_exitcode(status)).name}"
               if os.WIFSIGNALED(status) else f"exit status {os.waitstatus_to_exitcode(status)}")
        if not handle.retire:
            handle.backoff = 0.0 if lived >= HEALTHY_AFTER_S else min(MAX_BACKOFF_S, max(0.1, handle.backoff * 2))
            handle.restart_at = time.monotonic() + handle.backoff
            handle.restarts += 1
        return how

    def stop(self, handle, sig=signal.SIGTERM):
        """Ask a worker to stop (SIGTERM: it closes its log cleanly); it is reaped later."""
        handle.retire = True
        if handle.pid is not None:
            handle.state = "stopping"
            try:
                os.kill(handle.pid, sig)  # our own child: its pid cannot be reused before we reap it
            except ProcessLookupError:
                pass

    def forget(self, handle):
        self.workers.pop(handle.key, None)


def _close_fds_except(keep):
    """Close every fd of this process but those in `keep` (close_range between them)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
