"""The native module, for the shared-memory classes: `ffi`, `lib`, and the deadline loop
every blocking call shares.

There is no pure-Python twin of this part of odradek._native: atomics with acquire and
release ordering and futexes cannot be written in Python. So odradek.client.shm needs
the module built, and says so at import instead of failing later.
"""
import time

try:
    from odradek._native import ffi, lib
except ImportError as e:   # pragma: no cover - depends on the build
    raise ImportError("odradek.client.shm needs the native module odradek._native: install "
                      "odradek (pip install .) or, in the dev tree, run build-native") from e

if not hasattr(lib, "odk_ring_reserve"):   # pragma: no cover
    raise ImportError("odradek._native was built without daemon/c_ext/shm.c; rebuild it")

__all__ = ["ffi", "lib", "wait_until", "BYTES"]

BYTES = ffi.typeof("uint8_t[]")
_monotonic = time.monotonic


def wait_until(step, timeout):
    """Call step(timeout_ns) until it returns true or `timeout` seconds have passed.

    step checks its condition, sleeps on a futex for at most timeout_ns (-1: no limit)
    and returns whether the condition now holds. It may return early (a wake-up for an
    earlier change, a signal): then it is called again with the time left. Between two
    calls the interpreter runs signal handlers, so Ctrl-C interrupts an endless wait.
    timeout None waits forever; 0 only checks. Returns True if the condition held.
    """
    if timeout is None:
        while not step(-1):
            pass
        return True
    deadline = _monotonic() + timeout
    ns = max(0, int(timeout * 1e9))
    while True:
        if step(ns):
            return True
        remaining = deadline - _monotonic()
        if remaining <= 0:
            return False
        ns = int(remaining * 1e9)
