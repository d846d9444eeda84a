"""The doorbell: counts every ring, wakes a sleeper in another process whatever a peer
wrote beside the counter, and loses no wake-up to ringers in a tight loop."""
import os

import pytest

from odradek.client.shm import BadLayout, Doorbell
from odradek.client.shm import doorbell as doorbell_module

DEADLINE = 30.0


def test_each_ring_adds_one_and_a_waiter_returns_at_once_after_it(bell):
    bell, _ = bell
    seen = bell.value
    assert bell.wait(seen, timeout=0) is False
    bell.ring()
    bell.ring()
    assert bell.value == seen + 2
    assert bell.wait(seen, timeout=0) is True
    assert bell.wait(seen + 2, timeout=0.01) is False


def test_a_sleeper_in_another_process_is_woken_by_a_ring(bell, spawn):
    bell, fd = bell
    child = spawn("doorbell-wait", fd, fds=(fd,))
    seen = int(child.expect("waiting")[0])
    bell.ring()
    got, value = child.expect("done")
    assert got == "True" and int(value) == seen + 1


def test_a_sleeper_is_woken_whatever_a_peer_wrote_to_the_other_words(bell, spawn, futex_sleep):
    """Issue 8, defect 1: the old ringer skipped FUTEX_WAKE when the word at 68 (the
    waiting flag) was 0, and a ringer whose wake had gone by, or any peer, could leave
    it 0 under a sleeper: then no later ring woke it. Here the sleeper is in FUTEX_WAIT
    (its process is in a futex wait, by /proc) when a peer zeroes every byte but the
    magic, version and counter; rings must still wake it, at once."""
    bell, fd = bell
    child = spawn("doorbell-wait", fd, fds=(fd,))
    seen = int(child.expect("waiting")[0])
    futex_sleep(child.pid)
    view = bell._map.view
    view[8:64] = bytes(56)
    view[68:] = bytes(len(view) - 68)
    for _ in range(1000):
        bell.ring()
    got, value = child.expect("done", timeout=2.0)
    assert got == "True" and int(value) != seen


def test_rings_from_many_processes_are_all_counted(bell, spawn):
    bell, fd = bell
    seen = bell.value
    ringers = [spawn("doorbell-ringer", fd, 20000, fds=(fd,)) for _ in range(3)]
    for r in ringers:
        r.expect("ready")
    for r in ringers:
        r.send("go\n")
    for r in ringers:
        r.expect("done")
    assert bell.value == (seen + 60000) & 0xFFFFFFFF


def test_attach_refuses_a_ring_or_a_readonly_fd(fds_to_close):
    from odradek.client.shm import Ring, readonly_fd
    ring, fd = Ring.create(64)
    fds_to_close.append(fd)
    with pytest.raises(BadLayout):
        Doorbell.attach(fd)
    bell, bell_fd = Doorbell.create()
    ro = readonly_fd(bell_fd)
    fds_to_close.extend((bell_fd, ro))
    with pytest.raises(BadLayout):
        Doorbell.attach(ro)
    ring.close()
    bell.close()
    assert os.fstat(ro).st_size == doorbell_module.SIZE


def test_ringers_in_a_tight_loop_never_leave_the_sleeper_asleep(bell, spawn):
    """Three processes ring as fast as they can while we sleep and wake, for 2 s: every
    sleep ends with a wake-up, none with the 0.5 s timeout while the counter moved."""
    import time
    bell, fd = bell
    ringers = [spawn("doorbell-ring-forever", fd, fds=(fd,)) for _ in range(3)]
    for r in ringers:
        r.expect("ready")
    rounds, end = 0, time.monotonic() + 2.0
    while time.monotonic() < end:
        seen = bell.value
        if not bell.wait(seen, timeout=0.5):
            assert bell.value == seen, (
                f"lost wake-up after {rounds} sleeps: the counter moved from {seen} to "
                f"{bell.value} while the sleeper slept out its timeout")
        rounds += 1
    assert rounds > 100
