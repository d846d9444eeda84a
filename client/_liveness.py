"""Whether the broker is still there, and connecting to it again: the one loop the
Producer's sender thread and the Consumer's fetch rounds share.

Both hold a control connection (a Unix socket) to a broker that may restart or crash.
Twice a second at most they look whether its end has closed (broker_gone); if so they
connect again (connect_again, trying for a bounded time) and then re-attach what they
use (the producer its rings, the consumer its partitions' shared state). Both also
sleep no longer than LIVENESS_CHECK_S at a time, so the look happens while idle too.
"""
import time

from odradek.client.errors import OdradekError
from odradek.client.protocol import ControlClient

__all__ = ["LIVENESS_CHECK_S", "Liveness", "connect_again"]

LIVENESS_CHECK_S = 0.5     # how often a client looks whether the broker is still there


class Liveness:
    """When the next look is due. Owned by one thread at a time (its user's lock)."""

    def __init__(self):
        self._next = 0.0

    def due(self, now):
        return now >= self._next

    def broker_gone(self, client, now):
        """If a look is due (now: time.monotonic()): schedule the next, and say whether
        `client`'s broker closed its end. False when no look is due."""
        if now < self._next:
            return False
        self._next = now + LIVENESS_CHECK_S
        return client.peer_closed()

    def look_again_soon(self):
        """Make the next broker_gone() look (a reconnect that is not complete yet)."""
        self._next = 0.0


def connect_again(path, deadline, pause_s, give_up=None):
    """A new ControlClient to the broker at `path`, tried every pause_s until `deadline`
    (time.monotonic()); None if it did not answer by then or give_up() said stop."""
    for _ in range(100_000):   # bounded by the deadline
        try:
            return ControlClient(path)
        except (OSError, OdradekError):
            if time.monotonic() >= deadline or (give_up is not None and give_up()):
                return None
            time.sleep(pause_s)
    return None
