"""memfd creation, sealing and mapping: the one way shared memory is made in odradek.

Shared memory is a memfd (anonymous, so nothing named can leak: it is freed when the
last process holding an fd or a mapping of it goes away), handed to other processes as
a file descriptor over the Unix control socket (SCM_RIGHTS). The creator seals its size
(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), and every attacher checks the seal: an
unsealed peer could ftruncate the memfd and turn our next access into SIGBUS.

Readers that must not write (consumers of a partition state) get a read-only fd, made
by readonly_fd(); mmap then refuses PROT_WRITE, so a consumer cannot corrupt what other
consumers read.
"""
import fcntl
import mmap
import os

from odradek.client.shm._lib import BYTES, ffi
from odradek.client.errors import BadLayout

__all__ = ["create_memfd", "readonly_fd", "Mapping"]

_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def create_memfd(name, size):
    """A new memfd of `size` zero bytes, size sealed, close-on-exec. The caller owns it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def readonly_fd(fd):
    """A new read-only fd of the same memfd (reopened through /proc/self/fd), for a
    process that may read it but must not be able to write it. The caller owns it."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def fd_is_writable(fd):
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY


class Mapping:
    """A MAP_SHARED mapping of a sealed memfd: `mm` (the mmap), `ptr` (a uint8_t * for C),
    `view` (a memoryview; read-only if the mapping is), `size`, `writable`.

    Owned by one object in one process. The fd is not kept: once mapped, the memory
    lives as long as the mapping, so the caller may close the fd.
    """

    __slots__ = ("mm", "ptr", "view", "size", "writable")

    def __init__(self, fd, writable=None):
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as e:
            raise BadLayout(f"fd {fd} is not a memfd ({e}); shared memory must come from "
                            f"memfd_create") from None
        if not seals & fcntl.F_SEAL_SHRINK:
            raise BadLayout(f"memfd {fd} is not sealed against shrinking; a peer could "
                            f"truncate it under us")
        if writable is None:
            writable = fd_is_writable(fd)
        elif writable and not fd_is_writable(fd):
            raise BadLayout(f"fd {fd} is read-only, and this structure must be mapped "
                            f"read-write")
        size = os.fstat(fd).st_size
        if size == 0:
            raise BadLayout(f"memfd {fd} is empty")
        # ACCESS_WRITE is MAP_SHARED + PROT_WRITE; ACCESS_READ also marks the buffer
        # read-only, so a stray write through a view raises instead of faulting.
        self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        self.size = size
        self.writable = writable
        self.ptr = ffi.from_buffer(BYTES, self.mm, require_writable=writable)
        self.view = memoryview(self.mm)

    def close(self):
        """Unmap now if no view into the mapping is alive; else when the last one goes."""
        if self.mm is None:
            return
        ffi.release(self.ptr)
        self.view.release()
        try:
            self.mm.close()
        except BufferError:   # a caller still holds a view: the GC unmaps it later
            pass
        self.mm = self.ptr = self.view = None
