"""The doorbell: counts every ring, wakes a sleeper in another process, costs no system
call when nobody sleeps, and recovers from a sleeper that died asleep."""
import os

import pytest

from odradek.client.shm import BadLayout, Doorbell
from odradek.client.shm import doorbell as doorbell_module
from odradek.client.shm._lib import lib

DEADLINE = 30.0


@pytest.fixture
def bell(fds_to_close):
    bell, fd = Doorbell.create()
    fds_to_close.append(fd)
    yield bell, fd
    bell.close()


def test_each_ring_adds_one_and_a_waiter_returns_at_once_after_it(bell):
    bell, _ = bell
    seen = bell.value
    assert bell.wait(seen, timeout=0) is False
    bell.ring()
    bell.ring()
    assert bell.value == seen + 2
    assert bell.wait(seen, timeout=0) is True
    assert bell.wait(seen + 2, timeout=0.01) is False


def test_ringing_with_nobody_asleep_leaves_the_waiting_flag_clear(bell):
    bell, _ = bell
    for _ in range(100):
        bell.ring()
    assert not bell.waiting   # so ring() took the no-syscall path every time


def test_a_sleeper_in_another_process_is_woken_by_a_ring(bell, spawn, wait_for):
    bell, fd = bell
    child = spawn("doorbell-wait", fd, fds=(fd,))
    seen = int(child.expect("waiting")[0])
    wait_for(lambda: bell.waiting, what="sleeper announced")
    bell.ring()
    got, value = child.expect("done")
    assert got == "True" and int(value) == seen + 1
    assert not bell.waiting


def test_a_flag_left_by_a_sleeper_that_died_is_cleared_by_the_next_ring(bell):
    bell, _ = bell
    lib.odk_atomic_store_u32(bell._ptr, doorbell_module.OFF_WAITING, 1)   # died asleep
    bell.ring()
    assert not bell.waiting


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
