"""The worker's sleep (daemon/worker/wakeups.py) on real shared memory: a snapshot of the
same rings reuses its WaitSet with the values of now, a new set of rings gets a new one,
and either way a commit or a ring after the snapshot ends the wait; the worker spins
only while work keeps coming."""
import os
import threading

import pytest

from odradek.client.shm import Doorbell, Ring
from odradek.daemon.worker.wakeups import Wakeups

DEADLINE = 10.0


@pytest.fixture
def parts():
    doorbell, bell_fd = Doorbell.create()
    rings, fds = [], [bell_fd]
    for _ in range(2):
        ring, fd = Ring.create(1 << 16)
        ring.set_doorbell(doorbell)              # as a producer's ring rings the leader's
        rings.append(ring)
        fds.append(fd)
    wakeups = Wakeups(doorbell)
    yield wakeups, doorbell, rings
    wakeups.close()
    for ring in rings:
        ring.set_doorbell(None)
        ring.close()
    doorbell.close()
    for fd in fds:
        os.close(fd)


def test_a_snapshot_of_the_same_rings_is_retaken_and_still_sees_the_next_commit(parts):
    wakeups, _, rings = parts
    first = wakeups.snapshot(rings)
    rings[0].write(b"one")                         # moves the tail the snapshot saw
    assert wakeups.wait(first, 0) is True
    second = wakeups.snapshot(list(rings))
    assert second[0] is first[0]                   # the same words: no new WaitSet
    assert wakeups.wait(second, 0) is False        # retaken: the commit is in the values now
    rings[1].write(b"two")
    assert wakeups.wait(second, DEADLINE) is True


def test_another_set_of_rings_gets_its_own_waitset(parts):
    wakeups, _, rings = parts
    both = wakeups.snapshot(rings)
    one = wakeups.snapshot(rings[:1])
    assert one[0] is not both[0]
    rings[1].set_doorbell(None)                    # its tail alone: not among the words now
    rings[1].write(b"not watched any more")
    assert wakeups.wait(one, 0) is False
    rings[0].write(b"watched")
    assert wakeups.wait(one, 0) is True


def test_the_same_tuple_is_retaken_and_a_list_changed_since_its_snapshot_is_not(parts):
    wakeups, _, rings = parts
    served = tuple(rings)                          # what the leader passes while nobody (de)attaches
    first = wakeups.snapshot(served)
    assert wakeups.snapshot(served)[0] is first[0]
    words = [rings[0]]
    one = wakeups.snapshot(words)
    words.append(rings[1])                         # the caller's list changed after its snapshot
    both = wakeups.snapshot(words)
    assert both[0] is not one[0]
    rings[1].set_doorbell(None)                    # only its tail tells now
    rings[1].write(b"seen by the new words")
    assert wakeups.wait(both, 0) is True


def test_a_sleeping_worker_is_woken_by_a_commit_from_another_thread(parts):
    wakeups, _, rings = parts
    snap = wakeups.snapshot(rings)
    woke = []
    sleeper = threading.Thread(target=lambda: woke.append(wakeups.wait(snap, DEADLINE)))
    sleeper.start()
    rings[1].write(b"late")
    sleeper.join(DEADLINE)
    assert woke == [True]


def test_the_worker_spins_after_close_work_and_stops_when_it_stops(parts):
    wakeups, doorbell, rings = parts
    assert wakeups.spinner.budget_ns == 0
    for _ in range(3):                              # work found at once: spin next time
        snap = wakeups.snapshot(rings)
        doorbell.ring()
        assert wakeups.wait(snap, DEADLINE) is True
    assert wakeups.spinner.budget_ns > 0
    for _ in range(20):                             # idle: timeouts halve it to zero
        if wakeups.spinner.budget_ns == 0:
            break
        assert wakeups.wait(wakeups.snapshot(rings), 0.001) is False
    assert wakeups.spinner.budget_ns == 0
