"""The fsync of rolled segments, off the appending thread.

A roll (PartitionLog.roll) trims the old segment's files to their data (ftruncate: cheap)
and hands their descriptors here, instead of fsyncing up to a whole segment (1 GiB by
default: ~0.6 s on the dev box) between two appends. One thread per log fsyncs them,
oldest roll first, and marks the job done. The recovery point is the log's owner
thread's: it moves to a job's next offset when that thread next looks
(PartitionLog.collect_flushes), never past a job not done, as Apache Kafka's
UnifiedLog.roll schedules the old segment's flush ("flush-log") and moves the recovery
point only once that flush ran. A power loss before then leaves the recovery point
below the segment, so the next open scans it.

    flusher = SegmentFlusher("orders-0")
    flusher.submit(base_offset, next_offset, fds)   # the fds are the flusher's now
    flusher.submit(base_offset, next_offset, fds, what="the snapshot ...")   # more of that roll
    flusher.collect()        # (next offset of the last segment done, in order, or None; a failed job or None)
    flusher.forget(bases)    # those segments were deleted: what is not fsynced yet is skipped
    flusher.wait_all()       # every job submitted so far is done
    flusher.close()          # wait_all, then stop the thread

An fsync of the file covers the pages written through its map as well: on Linux a
store into a shared file mapping dirties the page in the page cache, which fsync
writes back (msync(MS_SYNC) itself is an fsync of the range).

Threads: every method is the log owner's (`pending` too); the flusher's thread
only fsyncs and closes a job's descriptors and then sets its outcome (error, then done,
under the lock). `on_done` (settable, e.g. a Doorbell's ring) is called from that
thread after each job, so an owner sleeping on it can collect at once.
"""
import logging
import os
import threading
from collections import deque

__all__ = ["SegmentFlusher", "FlushJob"]

log = logging.getLogger(__name__)

_fsync = os.fsync   # the one system call that blocks; tests replace it (a slow or failing disk)


class FlushJob:
    """One rolled segment's files waiting for fsync (or other files written at its roll,
    `what` names them). `error` (an exception) is set, then `done`, by the flusher's
    thread; `cancelled` by the owner (the segment is gone)."""
    __slots__ = ("base_offset", "next_offset", "fds", "what", "cancelled", "error", "done")

    def __init__(self, base_offset, next_offset, fds, what=None):
        self.base_offset, self.next_offset, self.fds = base_offset, next_offset, fds
        self.what = what or f"rolled segment {base_offset}"
        self.cancelled = self.done = False
        self.error = None

    def __repr__(self):
        state = "done" if self.done else "pending"
        return f"FlushJob(segment {self.base_offset}..{self.next_offset - 1}, {state})"


class SegmentFlusher:
    def __init__(self, name, on_done=None):
        self.name = name
        self.on_done = on_done
        self.pending = deque()          # the owner's view: submitted, not collected, oldest first
        self._jobs = deque()            # submitted, not done; the thread works on the first
        self._cond = threading.Condition()
        self._thread = None             # started at the first submit
        self._stopping = False

    def submit(self, base_offset, next_offset, fds, what=None):
        """Queue the fsync (and close) of `fds`, the files of segment [base_offset,
        next_offset), or (`what` names them) other files written at its roll, which the
        recovery point must not pass before they are synced either; returns its FlushJob.
        The descriptors are the flusher's from now on."""
        job = FlushJob(base_offset, next_offset, list(fds), what)
        self.pending.append(job)
        with self._cond:
            self._jobs.append(job)
            self._stopping = False
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=f"flush-{self.name}", daemon=True)
                try:
                    thread.start()
                except RuntimeError:   # no thread to be had (a process at its limit): fsync here
                    self._jobs.pop()
                    _flush(job)
                    job.done = True
                    return job
                self._thread = thread
            self._cond.notify_all()
        return job

    def collect(self):
        """Take the done jobs off `pending`, oldest first, up to one not done or failed.
        Returns (the next offset of the last roll whose jobs were all taken, or None; the
        failed job, left first in `pending`, or None). A roll's jobs (its segment's, then
        any submitted for the same roll) are consecutive: its next offset counts only
        once the last of them is taken."""
        pending, flushed_to = self.pending, None
        while pending and pending[0].done:
            if pending[0].error is not None:
                return flushed_to, pending[0]
            job = pending.popleft()
            if not pending or pending[0].next_offset != job.next_offset:
                flushed_to = job.next_offset
        return flushed_to, None

    def forget(self, bases):
        """The segments at these base offsets are being deleted: their jobs leave
        `pending` and skip the fsyncs not begun (their descriptors are still closed)."""
        if self.pending and bases:
            for job in self.pending:
                if job.base_offset in bases:
                    job.cancelled = True
            self.pending = deque(job for job in self.pending if job.base_offset not in bases)

    def wait_all(self):
        """Return once every job submitted so far is done (failed ones too)."""
        with self._cond:
            while self._jobs:
                self._cond.wait()

    def close(self):
        """wait_all, then stop the thread. A later submit starts a new one."""
        self.wait_all()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self):
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs[0]
            _flush(job)
            with self._cond:
                self._jobs.popleft()
                job.done = True
                self._cond.notify_all()
            listener = self.on_done
            if listener is not None:
                try:
                    listener()
                except Exception:   # a wake-up that failed must not stop the fsyncs
                    log.exception("%s: the background flush's listener failed", self.name)


def _flush(job):
    """fsync the job's descriptors (until one fails or the job is cancelled) and close
    them all. The outcome goes in job.error: this runs on the flusher's thread, where an
    exception would end the thread unseen."""
    try:
        for fd in job.fds:
            if job.cancelled:
                break
            _fsync(fd)
    except Exception as e:   # OSError (EIO, ENOSPC), or anything else: the owner raises it
        if not job.cancelled:
            job.error = e
    finally:
        for fd in job.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        job.fds = ()
