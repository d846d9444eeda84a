"""The gateway processes' connection counts, in a memfd the broker creates: max.connections
across all of them, and the figures `odradek status` shows.

One slot per gateway process (its index among listener.processes), three int64 in
native byte order: connections open now, accepted since it started, refused since it
started (max.connections, the peer uid check). Every change is made under an exclusive
lockf() of the memfd, so a process taking a connection sees every sibling's open count
and max.connections holds for the listener as a whole, however the kernel spreads the
connections among the processes. The broker reads the slots for Status and zeroes one
when it starts that process again (a process that died kept no connection). The
processes also read each other's open counts to spread new connections (server.py,
Gateway.serve_forever).
"""
import contextlib
import fcntl
import mmap
import os
import struct
import threading

__all__ = ["Counters", "SLOT"]

SLOT = struct.Struct("=qqq")


class Counters:
    """`slots` slots in the memfd `fd` (None: create one, for the broker or a gateway run
    by hand); `fd` is what the broker passes to the gateways."""

    def __init__(self, slots, fd=None):
        self.slots = slots
        if fd is None:
            fd = os.memfd_create("odradek-gateway-stats", os.MFD_CLOEXEC)
            os.ftruncate(fd, SLOT.size * slots)
        self.fd = fd
        self._map = mmap.mmap(fd, SLOT.size * slots)
        self._threads = threading.Lock()

    def read(self, slot):
        """(open, accepted, refused) of process `slot`."""
        return SLOT.unpack_from(self._map, slot * SLOT.size)

    def open_counts(self):
        """The connections open now in each slot, read without the lock: a moment's
        picture for spreading new connections (server.py), not for max.connections."""
        return [self.read(i)[0] for i in range(self.slots)]

    def reset(self, slot):
        with self._locked():
            SLOT.pack_into(self._map, slot * SLOT.size, 0, 0, 0)

    def try_open(self, slot, max_open):
        """Count a connection open in `slot` if fewer than `max_open` are open in all
        slots together; else count it refused. True if it may stay."""
        with self._locked():
            total = sum(self.read(i)[0] for i in range(self.slots))
            opened, accepted, refused = self.read(slot)
            ok = total < max_open
            SLOT.pack_into(self._map, slot * SLOT.size, opened + ok, accepted + ok, refused + (not ok))
            return ok

    def refuse(self, slot):
        """Count a connection refused for another reason (the peer check)."""
        with self._locked():
            opened, accepted, refused = self.read(slot)
            SLOT.pack_into(self._map, slot * SLOT.size, opened, accepted, refused + 1)

    def close_one(self, slot):
        with self._locked():
            opened, accepted, refused = self.read(slot)
            SLOT.pack_into(self._map, slot * SLOT.size, opened - 1, accepted, refused)

    @contextlib.contextmanager
    def _locked(self):
        with self._threads:        # lockf is per process: this orders the process's own threads
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self):
        self._map.close()
        os.close(self.fd)

