"""A size-limited filesystem for tests of a disk filling up: a tmpfs mounted with size=,
made by the test and unmounted after. A store into a MAP_SHARED page of a full tmpfs is
a SIGBUS, and fallocate there fails with ENOSPC: the failure the log must turn into an
error. Skips the test, with the reason, where mounting is not allowed."""
import contextlib
import os
import shutil
import subprocess

import pytest


@contextlib.contextmanager
def mounted_tmpfs(path, size):
    """Mount a tmpfs of `size` bytes on the (existing, empty) directory `path`; unmount
    it (lazily, so an fd a failing test left open cannot keep it) on the way out."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory, name="filler", chunk=1 << 20):
    """Write zeros into directory/name until the filesystem is full; returns its path."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (chunk, 4096, 1):   # big chunks, then the last pages and bytes
            view = memoryview(bytes(size))
            for _ in range(1 << 20):    # bounded: 1 TiB of 1 MiB chunks
                try:
                    os.write(fd, view)
                except OSError:
                    break
    finally:
        os.close(fd)
    return path
