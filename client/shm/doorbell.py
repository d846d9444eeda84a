"""Doorbell: a futex-backed counter that many processes ring and one sleeps on.

Full layout and the futex protocol: LAYOUT.md beside this file.

    Doorbell memfd (one page, native little-endian):
      off size type field
        0   4  u32  magic "ODKD"      creator
        4   4  u32  version (2)       creator
       64   4  u32  counter           every ringer (+1, atomic); the futex word

A partition worker sleeps on one doorbell for all its producer rings; a producer sleeps
on one doorbell for all its completion rings. The pattern that loses no wake-up:

    seen = bell.value            # 1. read the counter
    ...drain every ring...       # 2. look at all the work
    bell.wait(seen, timeout)     # 3. sleep unless someone rang since 1.

ring() is an atomic increment and a FUTEX_WAKE, always: no flag a ringer could clear,
so no ring is ever lost to another ringer (LAYOUT.md, "Waiting"). Every party that
maps a doorbell can also write its counter, so a hostile one could put back a value a
sleeper saw: a sleeper that must not depend on such a party also sleeps on words only
its polite peers write (waiting.WaitSet), as the partition worker does.

Ownership: any number of processes may ring; any number may sleep. Safe to share
between threads.
"""
import os
import struct

from odradek.client.shm._lib import lib, wait_until
from odradek.client.shm._memfd import Mapping, create_memfd
from odradek.client.errors import BadLayout

__all__ = ["Doorbell", "MAGIC", "VERSION", "OFF_MAGIC", "OFF_VERSION", "OFF_COUNTER", "SIZE"]

MAGIC = struct.unpack("<I", b"ODKD")[0]
VERSION = 2
OFF_MAGIC = 0
OFF_VERSION = OFF_MAGIC + 4
OFF_COUNTER = 64
SIZE = 4096

_ring = lib.odk_doorbell_ring
_value = lib.odk_doorbell_value
_wait = lib.odk_doorbell_wait


class Doorbell:
    """A shared counter to ring and to sleep on. Create with Doorbell.create() ->
    (doorbell, fd); other processes map the fd with Doorbell.attach(fd)."""

    __slots__ = ("_map", "_ptr")

    def __init__(self, mapping, check_layout=True):
        """Use Doorbell.create or Doorbell.attach."""
        if not mapping.writable:
            raise BadLayout("a doorbell needs a writable mapping (ringers and sleepers write it)")
        if mapping.size < SIZE or (check_layout and lib.odk_doorbell_check(mapping.ptr, mapping.size)):
            raise BadLayout(f"not an odradek doorbell (version {VERSION})")
        self._map = mapping
        self._ptr = mapping.ptr

    @classmethod
    def create(cls):
        """A new doorbell. Returns (doorbell, fd); the caller owns fd."""
        fd = create_memfd("odradek-doorbell", SIZE)
        try:
            mapping = Mapping(fd, writable=True)
            rc = lib.odk_doorbell_format(mapping.ptr, mapping.size)
            assert rc == 0, rc
            return cls(mapping), fd
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd, shared=False):
        """Map the doorbell behind fd; the caller closes fd. `shared`: a doorbell that
        other, untrusted processes can write too (a partition leader's, which every
        producer rings), taken from the broker: its magic and version prove nothing
        (any ringer could have zeroed them), so only its size is checked; a hostile
        ringer then costs wake-ups, and cannot make later producers refuse it."""
        return cls(Mapping(fd, writable=True), check_layout=not shared)

    @property
    def value(self):
        """The counter now (u32, wraps). Read it before looking for work."""
        return _value(self._ptr)

    def ring(self):
        """Count one ring and wake every sleeper."""
        _ring(self._ptr)

    def wait(self, seen, timeout=None):
        """Sleep until the counter differs from `seen` (True) or `timeout` seconds pass
        (False). Returns at once if it already differs."""
        ptr = self._ptr

        def step(ns):
            return _wait(ptr, seen, ns)
        return wait_until(step, timeout)

    def _futex_word(self):
        """(mmap, offset) of the counter, the futex word (for waiting.WaitSet)."""
        return self._map.mm, OFF_COUNTER

    def close(self):
        """Unmap. A ring that rings this doorbell must drop it first (set_doorbell(None))."""
        if self._map is not None:
            self._map.close()
            self._map = self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
