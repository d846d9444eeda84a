"""A WaitSet taken again (retake: odk_futex_words_load, one C call for every word) and a
WaitSet reused with new seen values (set_seen, the Sleeper a consumer keeps): the same
snapshot the per-word Python reference takes, the same waits, and no mapping kept once
the Sleeper lets go."""
import os
import threading

import pytest
from hypothesis import given, settings, strategies as st

from odradek.client.shm import Doorbell, WaitSet
from odradek.client.shm._lib import lib
from odradek.client.shm.doorbell import OFF_COUNTER
from odradek.client.shm.waiting import Sleeper, Spinner

DEADLINE = 30.0
WORDS = 5


@pytest.fixture(scope="module")
def bells():
    made = [Doorbell.create() for _ in range(WORDS)]
    yield [b for b, _ in made]
    for b, fd in made:
        b.close()
        os.close(fd)


def reference_snapshot(sources):
    """What retake must equal: each word loaded on its own (odk_atomic_load_u32)."""
    out = []
    for source in sources:
        mm, off = source._futex_word()
        out.append(lib.odk_atomic_load_u32(source._ptr, off))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=WORDS, max_size=WORDS),
       st.lists(st.integers(0, WORDS - 1), min_size=1, max_size=WORDS))
def test_retake_snapshots_every_word_as_the_per_word_reference_does(bells, values, which):
    sources = [bells[i] for i in which]
    waitset = WaitSet(sources, [0] * len(sources))
    for bell, value in zip(bells, values):
        lib.odk_atomic_store_u32(bell._ptr, OFF_COUNTER, value)
    waitset.retake()
    assert list(waitset._seen[0:len(sources)]) == reference_snapshot(sources)
    assert waitset.wait(0) is False          # nothing moved since the snapshot
    sources[-1].ring()
    assert waitset.wait(0) is True


def test_set_seen_decides_what_the_reused_waitset_waits_for(bells):
    waitset = WaitSet(bells[:2])
    now = [bells[0].value, bells[1].value]
    assert waitset.set_seen([now[0], (now[1] - 1) & 0xFFFFFFFF]).wait(0) is True    # the second "moved"
    assert waitset.set_seen(now).wait(0.01) is False
    with pytest.raises(ValueError):
        waitset.set_seen(now[:1])


def test_a_sleeper_reuses_its_waitset_for_the_same_sources_only(bells):
    sleeper = Sleeper()
    spinner = Spinner(0)
    a, b = bells[0], bells[1]
    assert sleeper.wait([a], [a.value], 0, spinner) is False
    first = sleeper._waitset
    assert sleeper.wait([a], [(a.value - 1) & 0xFFFFFFFF], 0, spinner) is True      # new seen values, same WaitSet
    assert sleeper._waitset is first
    assert sleeper.wait([a, b], [a.value, b.value], 0, spinner) is False
    assert sleeper._waitset is not first                               # other sources: a new one
    sleeper.close()
    assert sleeper._waitset is None


def test_a_sleeper_is_woken_by_a_ring_from_another_thread(bells):
    bell = bells[2]
    sleeper = Sleeper()
    seen = bell.value
    sleeper.wait([bell], [seen], 0)           # made; the next wait reuses it
    started = threading.Event()

    def ring():
        started.wait(DEADLINE)
        bell.ring()
    t = threading.Thread(target=ring)
    t.start()
    started.set()
    try:
        assert sleeper.wait([bell], [seen], DEADLINE) is True
    finally:
        t.join(DEADLINE)
        sleeper.close()


def _maps_of(name):
    with open("/proc/self/maps") as f:
        return sum(f"memfd:{name}" in line for line in f)


def test_a_closed_sleeper_keeps_no_mapping_of_a_closed_source():
    bell, fd = Doorbell.create()
    os.close(fd)
    before = _maps_of("odradek-doorbell")
    sleeper = Sleeper()
    sleeper.wait([bell], [bell.value], 0)
    bell.close()                               # the sleeper's WaitSet still maps it
    assert _maps_of("odradek-doorbell") == before
    sleeper.close()
    assert _maps_of("odradek-doorbell") == before - 1


@pytest.mark.parametrize("timeout", [None, DEADLINE])
def test_a_wake_up_that_changed_nothing_sends_the_waiter_back_to_sleep(bell, futex_sleep, timeout):
    """FUTEX_WAKE on the word with its value unchanged (a peer's needless wake, or one
    for an earlier change): Spinner.wait sleeps again for the time left and returns
    only once the word changes."""
    bell, _ = bell
    waitset = WaitSet([bell])
    tid, woke, started = [], [], threading.Event()

    def sleeper():
        tid.append(threading.get_native_id())
        started.set()
        woke.append(waitset.wait(timeout, Spinner(0)))
    t = threading.Thread(target=sleeper)
    t.start()
    try:
        assert started.wait(DEADLINE)
        futex_sleep(os.getpid(), tid[0])
        assert lib.odk_futex_wake(waitset._words[0], 1) == 1   # woken, nothing changed
        t.join(0.2)                                             # it would return at once
        assert t.is_alive() and woke == []
        bell.ring()
    finally:
        t.join(DEADLINE)
    assert woke == [True]
