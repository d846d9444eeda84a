"""The gateway processes' counters, in a memfd the broker creates and reads (`odradek status`).

One slot per gateway process (its index among listener.processes), three int64 in
native byte order: connections open now, accepted since it started, refused since it
started (max.connections, the peer uid check). The process writes its own slot after
every change; the broker reads it for Status and zeroes it when it starts the process
again. A reader may see one counter updated and not yet another: they are figures
for a human, never decisions.
"""
import mmap
import os
import struct

__all__ = ["Counters", "SLOT"]

SLOT = struct.Struct("=qqq")


class Counters:
    """`slots` slots in the memfd `fd` (None: create one); `fd` is passed to the gateways."""

    def __init__(self, slots, fd=None):
        self.slots = slots
        if fd is None:
            fd = os.memfd_create("odradek-gateway-stats", os.MFD_CLOEXEC)
            os.ftruncate(fd, SLOT.size * slots)
        self.fd = fd
        self._map = mmap.mmap(fd, SLOT.size * slots)

    def read(self, slot):
        """(open, accepted, refused) of process `slot`."""
        return SLOT.unpack_from(self._map, slot * SLOT.size)

    def write(self, slot, open_, accepted, refused):
        SLOT.pack_into(self._map, slot * SLOT.size, open_, accepted, refused)

    def slot(self, index):
        """A writer bound to one slot: `.set(open, accepted, refused)` (server.Gateway.stats)."""
        return _Slot(self, index)

    def close(self):
        self._map.close()
        os.close(self.fd)


class _Slot:
    def __init__(self, counters, index):
        self.counters, self.index = counters, index

    def set(self, open_, accepted, refused):
        self.counters.write(self.index, open_, accepted, refused)
