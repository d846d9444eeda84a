"""An exclusive lock on each log dir, so two brokers never share data.

flock(LOCK_EX | LOCK_NB) on `<log.dir>/.lock`, held for the broker's life by an open fd
(the kernel drops it when the process dies, however it dies: no stale lock files).
"""
import fcntl
import os

from odradek.client.errors import StorageError
from odradek.daemon.storage import filenames
from odradek.daemon.storage.modes import open_file

__all__ = ["DirLocks"]


class DirLocks:
    def __init__(self, log_dirs):
        self._fds = []
        try:
            for d in log_dirs:   # existing dirs (a missing one is offline, not created: log_dirs.py)
                self.add(d)
        except BaseException:
            self.release()
            raise

    def add(self, d):
        """Lock one more dir (StorageError if another process holds it)."""
        path = os.path.join(d, filenames.BROKER_LOCK)
        fd = open_file(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageError(f"log dir {d} is in use by another odradek broker (lock {path} is "
                               f"held); stop that broker or choose other log.dirs") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fds.append(fd)

    @property
    def fds(self):
        return list(self._fds)

    def release(self):
        for fd in self._fds:
            os.close(fd)
        self._fds = []
