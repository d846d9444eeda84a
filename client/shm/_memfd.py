"""memfd creation, sealing and mapping: the one way shared memory is made in odradek.

Shared memory is a memfd (anonymous, so nothing named can leak: it is freed when the
last process holding an fd or a mapping of it goes away), handed to other processes as
a file descriptor over the Unix control socket (SCM_RIGHTS). The creator seals its size
(F_SEAL_SHRINK | F_SEAL_GROW, then F_SEAL_SEAL), and every attacher checks the seal: an
unsealed peer could ftruncate the memfd and turn our next access into SIGBUS.

Memory that many read and one writes (a partition state) is also sealed against writes
(seal_writes: F_SEAL_FUTURE_WRITE) once its creator has mapped it: from then on no
write() and no new writable shared mapping succeeds through any fd of it, not even one
a reader reopens read-write through /proc/self/fd, whoever the reader is (root too).
The creator's mapping, and the copies fork() gives its children, are the only writers.
Readers also get a read-only fd (readonly_fd), so mmap refuses them PROT_WRITE at once.
"""
import errno
import fcntl
import mmap
import os

from odradek.client.shm._lib import BYTES, ffi
from odradek.client.errors import BadLayout, SealUnsupported

__all__ = ["create_memfd", "seal_writes", "readonly_fd", "Mapping", "F_SEAL_FUTURE_WRITE"]

# Linux 5.1 (include/uapi/linux/fcntl.h); Python's fcntl names it from 3.14 on.
F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)
_SIZE_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW


def create_memfd(name, size, *, final=True):
    """A new memfd of `size` zero bytes, sealed against resizing, close-on-exec; if
    `final`, against any further seal too (F_SEAL_SEAL). A creator that will seal writes
    once its own mapping is made passes final=False, then calls seal_writes. The caller
    owns the fd."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SIZE_SEALS | (fcntl.F_SEAL_SEAL if final else 0))
    except BaseException:
        os.close(fd)
        raise
    return fd


def seal_writes(fd):
    """Seal the memfd of `fd` (from create_memfd(final=False)) against writes from now on
    (F_SEAL_FUTURE_WRITE) and against further seals. Mappings made before keep writing,
    and fork() copies them: make the writer's mapping first. Raises SealUnsupported if
    the kernel does not know the seal (Linux before 5.1)."""
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SEAL)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        raise SealUnsupported(
            f"the kernel refused F_SEAL_FUTURE_WRITE on fd {fd} (EINVAL): odradek needs Linux "
            f"5.1 or later (this is {os.uname().release}) to give readers shared memory they "
            f"cannot write") from None


def readonly_fd(fd):
    """A new read-only fd of the same memfd (reopened through /proc/self/fd), for a
    process that may read it but must not write it. The caller owns it. Only a memfd
    sealed with seal_writes stays unwritable: its holder could reopen it read-write."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def fd_is_writable(fd):
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY


class Mapping:
    """A MAP_SHARED mapping of a sealed memfd: `mm` (the mmap), `ptr` (a uint8_t * for C),
    `view` (a memoryview; read-only if the mapping is), `size`, `writable`, `seals` (of
    the memfd when mapped).

    writable=None maps read-write if that is possible (a read-write fd of a memfd not
    sealed against writes), else read-only; True insists (BadLayout if it cannot be).

    Owned by one object in one process. The fd is not kept: once mapped, the memory
    lives as long as the mapping, so the caller may close the fd.
    """

    __slots__ = ("mm", "ptr", "view", "size", "writable", "seals")

    def __init__(self, fd, writable=None):
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as e:
            raise BadLayout(f"fd {fd} is not a memfd ({e}); shared memory must come from "
                            f"memfd_create") from None
        if not seals & fcntl.F_SEAL_SHRINK:
            raise BadLayout(f"memfd {fd} is not sealed against shrinking; a peer could "
                            f"truncate it under us")
        can_write = fd_is_writable(fd) and not seals & F_SEAL_FUTURE_WRITE
        if writable is None:
            writable = can_write
        elif writable and not can_write:
            why = ("is sealed against writes: only its creator's mapping writes it"
                   if seals & F_SEAL_FUTURE_WRITE else "is read-only")
            raise BadLayout(f"fd {fd} {why}, and this structure must be mapped read-write")
        size = os.fstat(fd).st_size
        if size == 0:
            raise BadLayout(f"memfd {fd} is empty")
        # ACCESS_WRITE is MAP_SHARED + PROT_WRITE; ACCESS_READ also marks the buffer
        # read-only, so a stray write through a view raises instead of faulting.
        self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        self.size = size
        self.writable = writable
        self.seals = seals
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
