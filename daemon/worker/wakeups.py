"""What a partition leader's main thread sleeps on: one futex_waitv over

    its own bell       a Doorbell nobody else maps, rung by the LinkWatcher thread when
                       the broker link or the signal pipe is readable
    trusted words      others only the broker's processes write: the replica progress
                       counter its followers ring (daemon/replication/progress.py)
    the doorbell       the partition's, which every producer rings after a commit
    each ring's tail   the low half of every served producer ring's tail

The doorbell is mapped read-write by every producer, so a hostile one can write its
counter back to the value we saw (ABA) while a polite producer's wake-up goes by before
we are queued: on the doorbell alone that wake-up would be lost. A ring's tail is
written by its own producer only, and a commit moves it before the producer rings, so
futex_waitv finds it changed or is queued on the doorbell before the ring's wake: a
hostile producer costs needless wake-ups, never a lost one. The argument, and the model
check of every interleaving: client/shm/LAYOUT.md, "The worker's sleep";
tests/client/shm/test_wait_model.py.

futex_waitv takes at most WAIT_MANY_MAX words: the bell, the trusted words, the
doorbell and the first rings (RINGS_IN_WAIT of them when there is one trusted word). Rings past those rely on the doorbell alone; while there are
any, the worker sleeps at most SHARED_DOORBELL_BACKSTOP_S at a time, which bounds what a
hostile producer can cost them.

The worker spins before it sleeps while the words it sleeps on keep changing within a
short time of each other (a Spinner: client/shm/waiting.py; commits, but also the shared
doorbell, which a hostile producer can write: each spin stays within the Spinner's cap),
so a busy partition's batches are taken without a futex wake-up, and an idle one sleeps
at ~0% CPU.

Ownership: the worker's main thread; the bell may be rung from any thread.
"""
import os

from odradek.client.shm import Doorbell, WaitSet
from odradek.client.shm.waiting import WAIT_MANY_MAX, Spinner

__all__ = ["Wakeups", "SHARED_DOORBELL_BACKSTOP_S", "RINGS_IN_WAIT"]

SHARED_DOORBELL_BACKSTOP_S = 0.05
RINGS_IN_WAIT = WAIT_MANY_MAX - 3    # the bell, the doorbell and a replica progress counter


class Wakeups:
    """Snapshot before looking at the work, wait on the snapshot after finding none:

        snap = wakeups.snapshot(rings)
        ...serve the link, drain every ring...
        wakeups.wait(snap, timeout)
    """

    def __init__(self, doorbell, trusted=()):
        self.doorbell = doorbell
        self.trusted = list(trusted)
        if len(self.trusted) > WAIT_MANY_MAX - 2 - RINGS_IN_WAIT:
            raise ValueError(f"at most {WAIT_MANY_MAX - 2 - RINGS_IN_WAIT} trusted words")
        self.bell, fd = Doorbell.create()
        os.close(fd)
        self.spinner = Spinner()
        self._rings = None       # the rings of the last snapshot, and its WaitSet
        self._waitset = None

    def snapshot(self, rings):
        """The words to sleep on and their values now. It keeps their mappings alive,
        so a ring detached before the wait costs at most a needless wake-up. `rings`: a
        sequence; passing the same tuple as last time skips the comparison."""
        last = self._rings
        if rings is not last:
            rings = tuple(rings)
            if last is not None and len(last) == len(rings) and all(a is b for a, b in zip(last, rings)):
                rings = last
        if rings is last:
            waitset = self._waitset.retake()   # the same words: no new mappings, buffers (per batch)
        else:
            waitset = WaitSet([self.bell, *self.trusted, self.doorbell, *rings[:RINGS_IN_WAIT]])
            self._rings, self._waitset = rings, waitset
        return waitset, len(rings) > RINGS_IN_WAIT

    def wait(self, snapshot, timeout):
        """Sleep until a word of the snapshot changes or `timeout` seconds pass."""
        waitset, overflow = snapshot
        if overflow:
            timeout = min(timeout, SHARED_DOORBELL_BACKSTOP_S)
        return waitset.wait(timeout, self.spinner)

    def close(self):
        self._rings = self._waitset = None
        self.bell.close()
