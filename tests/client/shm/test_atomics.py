"""The C atomics and futex calls of odradek._native (daemon/c_ext/shm.c), directly."""
import mmap
import os
import threading

import pytest

from odradek.client.shm._lib import ffi, lib
from odradek.client.shm._memfd import Mapping, create_memfd, readonly_fd

DEADLINE = 30.0


@pytest.fixture
def shared(fds_to_close):
    fd = create_memfd("atomics", 4096)
    fds_to_close.append(fd)
    m = Mapping(fd, writable=True)
    yield m, fd
    m.close()


def futex_word(m, off):
    return ffi.cast("uint32_t *", m.ptr + off)


def test_loads_stores_fetch_add_and_cas_behave_as_c11_says(shared):
    m, _ = shared
    p = m.ptr
    lib.odk_atomic_store_u64(p, 8, (1 << 64) - 1)
    assert lib.odk_atomic_load_u64(p, 8) == (1 << 64) - 1
    assert lib.odk_atomic_fetch_add_u64(p, 8, 2) == (1 << 64) - 1
    assert lib.odk_atomic_load_u64(p, 8) == 1                     # wrapped
    assert lib.odk_atomic_cas_u64(p, 8, 5, 9) == 1                # failed: found 1
    assert lib.odk_atomic_load_u64(p, 8) == 1
    assert lib.odk_atomic_cas_u64(p, 8, 1, 9) == 1                # succeeded
    assert lib.odk_atomic_load_u64(p, 8) == 9
    lib.odk_atomic_store_u32(p, 16, 7)
    assert lib.odk_atomic_fetch_add_u32(p, 16, 1) == 7
    assert lib.odk_atomic_cas_u32(p, 16, 8, 3) == 8
    assert lib.odk_atomic_load_u32(p, 16) == 3
    assert bytes(m.view[8:20]) == (9).to_bytes(8, "little") + (3).to_bytes(4, "little")


def test_fetch_add_from_two_processes_loses_no_increment(shared, spawn):
    m, fd = shared
    children = [spawn("fetch-add", fd, 50000, fds=(fd,)) for _ in range(2)]
    for c in children:
        c.expect("ready")
    for c in children:
        c.send("go\n")
    for c in children:
        c.expect("done")
    assert lib.odk_atomic_load_u64(m.ptr, 64) == 100000
    assert lib.odk_atomic_load_u32(m.ptr, 72) == 100000


def test_futex_wait_reports_a_changed_value_without_sleeping(shared):
    m, _ = shared
    lib.odk_atomic_store_u32(m.ptr, 0, 5)
    assert lib.odk_futex_wait(futex_word(m, 0), 4, -1) == 2


def test_futex_wait_times_out(shared):
    m, _ = shared
    assert lib.odk_futex_wait(futex_word(m, 0), 0, 10_000_000) == 1
    assert lib.odk_futex_wait(futex_word(m, 0), 0, 0) == 1


def test_futex_wake_wakes_a_waiter_and_counts_it(shared):
    m, _ = shared
    result = []
    t = threading.Thread(target=lambda: result.append(
        lib.odk_futex_wait(futex_word(m, 0), 0, int(DEADLINE * 1e9))))
    t.start()
    woken = 0
    while not woken and t.is_alive():   # until the thread is queued on the futex
        woken = lib.odk_futex_wake(futex_word(m, 0), 1)
    t.join(DEADLINE)
    assert woken == 1 and result == [0]
    assert lib.odk_futex_wake(futex_word(m, 0), 1) == 0


def test_futex_wait_works_on_a_read_only_mapping(shared, fds_to_close):
    _, fd = shared
    ro = readonly_fd(fd)
    fds_to_close.append(ro)
    m = Mapping(ro)
    assert not m.writable
    with pytest.raises(TypeError):
        m.view[0] = 1
    with pytest.raises(PermissionError):
        mmap.mmap(ro, 4096, access=mmap.ACCESS_WRITE)
    assert lib.odk_futex_wait(futex_word(m, 0), 0, 1_000_000) == 1
    assert lib.odk_futex_wait(futex_word(m, 0), 1, 1_000_000) == 2
    m.close()


def test_memfds_are_sealed_and_close_on_exec(shared):
    import fcntl
    _, fd = shared
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW and seals & fcntl.F_SEAL_SEAL
    assert not os.get_inheritable(fd)
    with pytest.raises(PermissionError):
        os.ftruncate(fd, 0)
