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

Ownership: a WaitSet belongs to the thread that made it. While it lives it keeps each
mapping it refers to mapped (a buffer export), so a structure closed meanwhile cannot
turn its pointers into a fault: waiting on it then merely costs a needless wake-up.
"""
from odradek.client.shm._lib import BYTES, ffi, lib, wait_until

__all__ = ["WaitSet", "wait_for_any", "WAIT_MANY_MAX"]

WAIT_MANY_MAX = lib.ODK_WAIT_MANY_MAX

_wait_any = lib.odk_futex_wait_any
_load_u32 = lib.odk_atomic_load_u32
_from_buffer = ffi.from_buffer
_cast = ffi.cast


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

    def wait(self, timeout=None):
        """Sleep until a word differs from its seen value (True) or `timeout` seconds
        pass (False). Returns at once if one already differs."""
        words, seen, n = self._words, self._seen, self._n

        def step(ns):
            return _wait_any(words, seen, n, ns) == 1
        return wait_until(step, timeout)


def wait_for_any(sources, seen, timeout=None):
    """Sleep until the futex word of any of `sources` differs from its entry in `seen`
    (True), or `timeout` seconds pass (False). For partition states, seen is each one's
    snapshot `change`: so a consumer of many partitions sleeps without polling."""
    return WaitSet(sources, seen).wait(timeout)
