"""The gateway's lines about its clients' errors, rate-limited so hostile clients cannot
flood the log.

A client's error (a request refused, a connection closed on it, a refused peer, a
request that hit a gateway bug) is one line, but at most one per WINDOW_S for each
source (a connection; the listener's refused peers together), and at most BUDGET lines
per WINDOW_S for the whole gateway process, however many connections misbehave. What is
held back is counted, and the next line that goes out says how many were.
"""
import logging
import threading
import time

__all__ = ["ClientLog", "LogSource", "WINDOW_S", "BUDGET"]

WINDOW_S = 10.0
BUDGET = 10


class LogSource:
    """What one source of lines (a connection, say) remembers: when its last one went out."""
    __slots__ = ("logged_at",)

    def __init__(self):
        self.logged_at = None


class ClientLog:
    """Lines about clients, through `logger`; thread-safe. `clock`: monotonic seconds."""

    def __init__(self, logger, window_s=WINDOW_S, budget=BUDGET, clock=time.monotonic):
        self._logger, self.window_s, self.budget, self._clock = logger, window_s, budget, clock
        self._lock = threading.Lock()
        self._window_start = None
        self._lines = 0
        self._held = 0

    def line(self, source, level, fmt, *args, exc_info=False):
        """Log `fmt % args` at `level` for `source` (a LogSource) unless it is held back;
        True if it went out."""
        now = self._clock()
        with self._lock:
            if source.logged_at is not None and now - source.logged_at < self.window_s:
                self._held += 1
                return False
            if self._window_start is None or now - self._window_start >= self.window_s:
                self._window_start, self._lines = now, 0
            if self._lines >= self.budget:
                self._held += 1
                return False
            self._lines += 1
            source.logged_at = now
            held, self._held = self._held, 0
        if held:
            fmt, args = fmt + " (%d more client error lines held back before this one)", (*args, held)
        self._logger.log(level, fmt, *args, exc_info=exc_info)
        return True

    def info(self, source, fmt, *args):
        return self.line(source, logging.INFO, fmt, *args)
