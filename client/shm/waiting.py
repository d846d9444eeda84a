"""Sleeping on several futex words at once: one futex_waitv(2) (Linux 5.16+).

A WaitSet is a snapshot of up to WAIT_MANY_MAX words, each with the value it was seen
at; wait() sleeps until any of them differs. The words are those of the structures
here, each the word its wakers wake (LAYOUT.md, "Waiting"):

    Doorbell        its counter (every ring adds one and wakes)
    Ring            the low half of tail (the reader's word: a commit moves it; the
                    writer wakes it when data_waiter is set, else by its doorbell)
    PartitionState  seq (every publish changes it and wakes)

So a sleeper can wait on words that only its polite peers write, next to shared ones
a hostile peer may rewrite (the partition worker: LAYOUT.md, "The worker's sleep").

Spin, then sleep: waking a sleeping process costs microseconds, tens when the machine
is busy (the futex wake, the scheduler, on a VM an inter-processor interrupt;
perf/spin_wait.py measures a round trip). So a waiter with a Spinner first re-reads its words for a short, adaptive time
(odk_futex_spin_wait_any: a pause instruction between reads, no system call) and sleeps
only if nothing changed by then. The budget follows the gaps the waiter sees between
"started waiting" and "a word changed": a change the spin caught (or, when not
spinning, one within SPIN_MAX_NS, which a spin could catch) sets the budget just past
its gap; a spin that missed, or a timeout, halves it, down to zero. So a waiter spins
only while its spins keep finding changes, and an idle one spins at most a few times
after its last change, then only sleeps (~0% CPU). A spinner that loses its CPU while spinning (the machine is busier
than its cores: then spinning only delays the process it waits for, and sleepers get
the CPU first when woken) stops at once and does not spin for the next
QUIET_AFTER_PREEMPTION_NS (a Spinner's `quiet_ns`: the gateway's completion waits take a
shorter one, produce_rings.py). SPIN_MAX_NS is short (the dev VM has 2 cores for producer,
worker and consumer): the environment variable ODRADEK_SPIN_US sets it in microseconds
(default 50; 0 turns spinning off).

Ownership: a WaitSet belongs to the thread that made it. While it lives it keeps each
mapping it refers to mapped (a buffer export), so a structure closed meanwhile cannot
turn its pointers into a fault: waiting on it then merely costs a needless wake-up.
A Spinner belongs to one waiting thread (wait_for_any keeps one per thread). A Sleeper
(wait_for_any with its WaitSet kept for the next wait on the same sources: a consumer's)
belongs to one thread too, and keeps those mappings until its sources change or it closes.
"""
import os
import threading
import time

from odradek.client.shm._lib import BYTES, ffi, lib, wait_until

__all__ = ["WaitSet", "Spinner", "Sleeper", "wait_for_any", "WAIT_MANY_MAX", "SPIN_MAX_NS"]

WAIT_MANY_MAX = lib.ODK_WAIT_MANY_MAX


def _spin_max_ns():
    """ODRADEK_SPIN_US in ns, within 0..ODK_SPIN_MAX_NS; a value that is no number warns
    (RuntimeWarning) and leaves the default: a typo must not stop every import."""
    default_us = 50.0
    value = os.environ.get("ODRADEK_SPIN_US", "").strip()
    try:
        us = float(value) if value else default_us
        if us != us:
            raise ValueError("NaN")
    except ValueError:
        import warnings
        warnings.warn(f"ODRADEK_SPIN_US must be a number of microseconds, not {value!r}: using "
                      f"{default_us:g}", RuntimeWarning, stacklevel=2)
        us = default_us
    return int(max(0.0, min(us * 1000, lib.ODK_SPIN_MAX_NS)))


SPIN_MAX_NS = _spin_max_ns()

QUIET_AFTER_PREEMPTION_NS = 100_000_000

_wait_any = lib.odk_futex_wait_any
_spin_wait_any = lib.odk_futex_spin_wait_any
_monotonic_ns = time.monotonic_ns
_load_u32 = lib.odk_atomic_load_u32
_load_words = lib.odk_futex_words_load
_from_buffer = ffi.from_buffer
_cast = ffi.cast
_NULL = ffi.NULL


class WaitSet:
    """The futex words of `sources` (Doorbell, Ring, PartitionState: at most
    WAIT_MANY_MAX), each with its value in `seen`, or with its value now when seen is
    None. Take it before looking at the work; wait() after finding none."""

    __slots__ = ("_keep", "_words", "_seen", "_n")

    def __init__(self, sources, seen=None):
        n = len(sources)
        if not 1 <= n <= WAIT_MANY_MAX:
            raise ValueError(f"a WaitSet holds 1..{WAIT_MANY_MAX} futex words, not {n}")
        keep, words, now = [], [], []
        for source in sources:
            mm, off = source._futex_word()
            buf = _from_buffer(BYTES, mm)
            keep.append(buf)
            words.append(_cast("uint32_t *", buf + off))
            if seen is None:
                now.append(_load_u32(buf, off))
        self._keep = keep
        self._words = ffi.new("uint32_t *[]", words)
        self._seen = ffi.new("uint32_t[]", now if seen is None else list(seen))
        self._n = n

    def retake(self):
        """Take each word's value now as its seen value: a new snapshot of the same
        words, without mapping them again. Returns self."""
        _load_words(self._words, self._seen, self._n)
        return self

    def set_seen(self, seen):
        """New seen values for the same words (one per word, in order). Returns self."""
        if len(seen) != self._n:
            raise ValueError(f"{len(seen)} seen values for {self._n} futex words")
        self._seen[0:self._n] = seen
        return self

    def wait(self, timeout=None, spinner=None):
        """Sleep until a word differs from its seen value (True) or `timeout` seconds
        pass (False). Returns at once if one already differs. With a Spinner, spin for
        its budget first (and tell it how long the wait took)."""
        if spinner is not None:
            return spinner.wait(self._words, self._seen, self._n, timeout)
        words, seen, n = self._words, self._seen, self._n

        def step(ns):
            return _wait_any(words, seen, n, ns) == 1
        return wait_until(step, timeout)


class Spinner:
    """The adaptive spin budget of one waiting thread (the module's docstring has the
    rule). budget_ns: how long the next wait spins before it sleeps."""

    __slots__ = ("budget_ns", "max_ns", "quiet_ns", "_spun", "_quiet_until")

    def __init__(self, max_ns=None, quiet_ns=None):
        """`max_ns`: the longest spin (default SPIN_MAX_NS, capped at ODK_SPIN_MAX_NS);
        `quiet_ns`: how long a spin that lost its CPU stops the next ones (default
        QUIET_AFTER_PREEMPTION_NS)."""
        self.max_ns = SPIN_MAX_NS if max_ns is None else max(0, min(int(max_ns), lib.ODK_SPIN_MAX_NS))
        self.quiet_ns = QUIET_AFTER_PREEMPTION_NS if quiet_ns is None else max(0, int(quiet_ns))
        self.budget_ns = 0
        self._spun = ffi.new("int64_t *")
        self._quiet_until = 0    # monotonic ns: no spinning before (the CPU was contended)

    def observe(self, gap_ns, now_ns=None):
        """A wait that spun budget_ns ended: the change came gap_ns after it began (None:
        it timed out). A change the spin caught, or one a first spin could catch, sets
        the budget just past its gap (never lower); a miss or a timeout halves it."""
        budget = self.budget_ns
        if now_ns is not None and now_ns < self._quiet_until:
            self.budget_ns = 0
        elif gap_ns is not None and gap_ns <= self.max_ns and (budget == 0 or gap_ns <= budget):
            self.budget_ns = max(budget, min(self.max_ns, gap_ns + (gap_ns >> 1) + 2000))
        else:
            self.budget_ns >>= 1
            if self.budget_ns < 1000:
                self.budget_ns = 0

    def wait(self, words, seen, n, timeout):
        """odk_futex_spin_wait_any over the words (a WaitSet's): spin the budget, then
        sleep as WaitSet.wait. True if a word changed."""
        spun, budget = self._spun, self.budget_ns
        spun[0] = 0
        start = _monotonic_ns()
        ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        changed = _spin_wait_any(words, seen, n, budget, ns, spun if budget else _NULL) == 1
        if not changed and ns:
            # woken early (for an earlier change, by a signal) or timed out: sleep out what
            # is left, without spinning again (nor overwriting what the spin said of itself:
            # a later call's 0 would hide a spin cut short by losing the CPU)
            left = None if timeout is None else timeout - (_monotonic_ns() - start) / 1e9
            if left is None or left > 0:
                changed = wait_until(lambda ns: _wait_any(words, seen, n, ns) == 1, left)
        end = _monotonic_ns()
        if spun[0] < 0:    # descheduled while spinning: leave the CPU to the others a while
            self._quiet_until = end + self.quiet_ns
        self.observe(end - start if changed else None, end)
        return changed


class Sleeper:
    """wait_for_any for one thread that sleeps again and again on (mostly) the same
    sources, a consumer's partition states: their WaitSet is made once and reused while
    the sources are the same objects, with only the seen values new (making one costs
    microseconds a wait). It keeps those mappings mapped until the sources change or
    close() (WaitSet's ownership rule). Owned by one thread."""

    __slots__ = ("_sources", "_waitset")

    def __init__(self):
        self._sources = self._waitset = None

    def wait(self, sources, seen, timeout=None, spinner=None):
        """wait_for_any(sources, seen, timeout, spinner)."""
        waitset, last = self._waitset, self._sources
        if last is not None and len(last) == len(sources) and all(a is b for a, b in zip(last, sources)):
            waitset.set_seen(seen)
        else:
            waitset = self._waitset = WaitSet(sources, seen)
            self._sources = tuple(sources)
        return waitset.wait(timeout, _thread_spinner() if spinner is None else spinner)

    def close(self):
        """Let go of the WaitSet (and so of the mappings it kept)."""
        self._sources = self._waitset = None


_per_thread = threading.local()


def _thread_spinner():
    spinner = getattr(_per_thread, "spinner", None)
    if spinner is None:
        spinner = _per_thread.spinner = Spinner()
    return spinner


def wait_for_any(sources, seen, timeout=None, spinner=None):
    """Sleep until the futex word of any of `sources` differs from its entry in `seen`
    (True), or `timeout` seconds pass (False). For partition states, seen is each one's
    snapshot `change`: so a consumer of many partitions sleeps without polling. It
    spins first while changes come close together (`spinner`, by default this
    thread's: the module's docstring)."""
    return WaitSet(sources, seen).wait(timeout, _thread_spinner() if spinner is None else spinner)
