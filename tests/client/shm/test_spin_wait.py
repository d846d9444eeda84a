"""Spin, then sleep (odk_futex_spin_wait_any and the Spinner of client/shm/waiting.py),
on real shared memory: a change ends the wait (seen while spinning, or by the futex
after it), a wait with no change times out, the spin never lasts longer than its budget
(nor ODK_SPIN_MAX_NS, nor the timeout), and a waiter whose changes stop coming stops
spinning."""
import threading
import time

import pytest

from odradek.client.shm import WaitSet
from odradek.client.shm._lib import ffi, lib
from odradek.client.shm.waiting import Spinner, wait_for_any
from support.broker import wait_until

DEADLINE = 30.0
MS = 1_000_000
# a spin reads the clock every 16 pause instructions: it may overrun its budget by that
# much; descheduled for longer than ODK_SPIN_PREEMPTED_NS, it stops and says so (a
# negative time), so a spin that reports a positive time overran by less than that
SLACK_NS = 2 * MS


def spin_wait(waitset, spin_ns, timeout_ns):
    """odk_futex_spin_wait_any on a WaitSet's words: (result, ns spun, ns it took)."""
    spun = ffi.new("int64_t *")
    start = time.monotonic_ns()
    rc = lib.odk_futex_spin_wait_any(waitset._words, waitset._seen, waitset._n, spin_ns, timeout_ns, spun)
    return rc, spun[0], time.monotonic_ns() - start


def test_a_word_changed_before_the_wait_returns_at_once_without_spinning(bell):
    bell, _ = bell
    waitset = WaitSet([bell])
    bell.ring()
    rc, spun, _ = spin_wait(waitset, 500_000, int(DEADLINE * 1e9))
    assert (rc, spun) == (1, 0)


def test_a_change_made_while_it_spins_ends_the_wait_within_the_spin(bell):
    """A thread rings without pause: the spinner sees a change long before its budget
    ends (the call releases the GIL) and returns without sleeping."""
    bell, _ = bell
    stop = threading.Event()

    def ring():
        while not stop.is_set():
            bell.ring()
    ringer = threading.Thread(target=ring)
    ringer.start()
    try:
        for _ in range(20):
            # 0 is a wake-up that found no change, which callers wait again after: a
            # ringer preempted between its increment and its FUTEX_WAKE wakes a waiter
            # whose snapshot already has that increment
            for _ in range(100):
                rc, spun, _ = spin_wait(WaitSet([bell]), lib.ODK_SPIN_MAX_NS, int(DEADLINE * 1e9))
                assert spun < 0 or spun <= lib.ODK_SPIN_MAX_NS + SLACK_NS
                if rc != 0:
                    break
            assert rc == 1
    finally:
        stop.set()
        ringer.join(DEADLINE)


def test_with_no_change_it_spins_its_budget_then_sleeps_to_the_timeout(bell):
    bell, _ = bell
    rc, spun, took = spin_wait(WaitSet([bell]), 300_000, 30 * MS)
    assert rc == 0
    assert spun < 0 or 300_000 <= spun <= 300_000 + SLACK_NS   # < 0: it lost its CPU, stopped
    assert took >= 30 * MS


@pytest.mark.parametrize("spin_ns, timeout_ns, bound", [
    (10**10, 50 * MS, lib.ODK_SPIN_MAX_NS),    # a huge budget: capped at ODK_SPIN_MAX_NS
    (lib.ODK_SPIN_MAX_NS, 100_000, 100_000),   # a budget past the timeout: capped by it
    (-5, 5 * MS, 0),                            # a negative one: no spin
])
def test_the_spin_never_outlasts_its_cap_or_the_timeout(bell, spin_ns, timeout_ns, bound):
    bell, _ = bell
    rc, spun, took = spin_wait(WaitSet([bell]), spin_ns, timeout_ns)
    assert rc == 0
    assert spun < 0 or spun <= bound + SLACK_NS
    assert took >= timeout_ns


def _thread_state(tid):
    """The scheduler state of one of this process's threads (R running, S asleep, ...)."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_sleeper_in_the_futex_after_its_spin_is_woken_from_another_process(bell, spawn):
    """The spin does not replace the sleep: a ring after it is over still wakes the waiter."""
    bell, fd = bell
    child = spawn("doorbell-ringer", fd, 1, fds=(fd,))
    child.expect("ready")
    waitset = WaitSet([bell])
    spinner = Spinner(max_ns=200_000)
    spinner.budget_ns = 200_000
    woke, tid = [], []

    def wait():
        tid.append(threading.get_native_id())
        woke.append(waitset.wait(DEADLINE, spinner))

    waiter = threading.Thread(target=wait)
    waiter.start()
    # the spin is over once the thread sleeps (state S): the ring then has to come
    # through the futex
    wait_until(lambda: tid and _thread_state(tid[0]) == "S", DEADLINE, interval=0.001,
               what="the waiter asleep in the futex after its spin")
    child.send("go\n")
    child.expect("done")
    waiter.join(DEADLINE)
    assert woke == [True]


def test_a_bad_word_count_is_refused():
    words = ffi.new("uint32_t *[]", 1)
    seen = ffi.new("uint32_t[]", 1)
    spun = ffi.new("int64_t *", 7)
    assert lib.odk_futex_spin_wait_any(words, seen, 0, 1000, 0, spun) < 0
    assert lib.odk_futex_spin_wait_any(words, seen, lib.ODK_WAIT_MANY_MAX + 1, 1000, 0, spun) < 0
    assert spun[0] == 0


def test_the_budget_follows_gaps_it_could_cover_and_drops_to_zero_without_them():
    spinner = Spinner(max_ns=50_000)
    assert spinner.budget_ns == 0                  # a new waiter does not spin
    spinner.observe(20_000)                        # a change 20 us after the wait began
    assert 20_000 < spinner.budget_ns <= 50_000
    spinner.observe(30_000)                        # caught by the spin: just past it
    assert 30_000 < spinner.budget_ns <= 50_000
    spinner.observe(40_000)
    assert spinner.budget_ns == 50_000             # never past max_ns
    spinner.observe(5 * MS)                        # too far apart for a spin to catch
    assert spinner.budget_ns == 25_000
    spinner.observe(30_000)                        # missed by the 25 us spin: halved again
    assert spinner.budget_ns == 12_500
    for _ in range(8):
        spinner.observe(None)                      # timed out: idle
    assert spinner.budget_ns == 0
    assert Spinner(max_ns=0).max_ns == 0
    off = Spinner(max_ns=0)
    off.observe(1_000)
    assert off.budget_ns == 0                      # ODRADEK_SPIN_US=0: never spins


def test_an_idle_waiter_stops_spinning_and_costs_no_cpu(bell):
    """After a burst of changes the budget is up; idle waits (timeouts) bring it to
    zero, and a wait then takes (nearly) no CPU however long it sleeps."""
    bell, _ = bell
    spinner = Spinner(max_ns=lib.ODK_SPIN_MAX_NS)
    for _ in range(5):                             # a burst: each wait finds a change
        seen = bell.value
        bell.ring()
        assert wait_for_any([bell], [seen], DEADLINE, spinner) is True
    assert spinner.budget_ns > 0
    for _ in range(20):
        if spinner.budget_ns == 0:
            break
        assert wait_for_any([bell], [bell.value], 0.002, spinner) is False
    assert spinner.budget_ns == 0
    cpu = time.thread_time_ns()
    assert wait_for_any([bell], [bell.value], 0.2, spinner) is False
    assert time.thread_time_ns() - cpu < 20 * MS   # it slept: no 200 ms of spinning


def test_after_losing_its_cpu_while_spinning_a_waiter_does_not_spin_for_a_while():
    from odradek.client.shm.waiting import QUIET_AFTER_PREEMPTION_NS
    spinner = Spinner(max_ns=50_000)
    spinner.observe(10_000)
    assert spinner.budget_ns > 0
    now = time.monotonic_ns()
    spinner._quiet_until = now + QUIET_AFTER_PREEMPTION_NS     # as Spinner.wait sets it
    spinner.observe(10_000, now)
    assert spinner.budget_ns == 0
    spinner.observe(10_000, now + QUIET_AFTER_PREEMPTION_NS)   # the quiet time is over
    assert spinner.budget_ns > 0


def test_a_spinner_can_be_quiet_for_less_after_losing_its_cpu():
    from odradek.client.shm.waiting import QUIET_AFTER_PREEMPTION_NS
    assert Spinner(max_ns=50_000).quiet_ns == QUIET_AFTER_PREEMPTION_NS
    spinner = Spinner(max_ns=50_000, quiet_ns=1_000_000)
    spinner.observe(10_000)
    now = time.monotonic_ns()
    spinner._quiet_until = now + spinner.quiet_ns                   # as Spinner.wait sets it
    spinner.observe(10_000, now)
    assert spinner.budget_ns == 0
    spinner.observe(10_000, now + 1_000_000)                        # 1 ms later, not 100
    assert spinner.budget_ns > 0
