"""Logging of malformed control frames, bounded whatever a client sends.

A fuzzing client can send thousands of bad frames a second, over one connection or
over many; one log line each drowned the log (about 4,500 lines for one fuzz run). So:
- a connection's first malformed frame is logged, with the peer's pid and uid
  (SO_PEERCRED);
- after that, at most one line per connection per INTERVAL_S: how many frames were
  not logged since, and the latest error;
- when the connection closes, one line with its total, if some were not logged;
- and over all connections at most LINES_PER_INTERVAL such lines per INTERVAL_S.
  Beyond that, frames are only counted, and one line per interval says how many came
  from how many connections, and which uids (`summary_due` is the loop's timer for it).

Sans-IO apart from the logger: the broker passes each connection's state (a
MalformedCount, kept on the connection) and the clock.
"""
import logging
import time

__all__ = ["MalformedCount", "MalformedLog", "INTERVAL_S", "LINES_PER_INTERVAL"]

log = logging.getLogger("odradek.daemon.broker.server")

INTERVAL_S = 10.0
LINES_PER_INTERVAL = 20


class MalformedCount:
    """One connection's malformed frames: in all, and since its last line."""
    __slots__ = ("total", "unlogged", "logged_at")

    def __init__(self):
        self.total = 0
        self.unlogged = 0
        self.logged_at = None   # monotonic time of its last line; None: none yet


class MalformedLog:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._window_start = clock()
        self._lines = 0             # lines written in the current window
        self._dropped = 0           # frames counted in no line this window
        self._dropped_conns = set() # (pid, uid) of the connections they came from
        self.summary_due = None     # when the dropped frames' line is due, if any

    def frame(self, peer, count, error):
        """A malformed frame from `peer` (an object with pid and uid) whose connection's
        MalformedCount is `count`; `error` says what was wrong with it."""
        now = self._clock()
        count.total += 1
        if count.logged_at is not None and now - count.logged_at < INTERVAL_S:
            count.unlogged += 1
            return
        if not self._may_log(now):
            self._drop(peer, count)
            return
        if count.logged_at is None:
            log.info("client pid %d uid %d: malformed frame: %s (more from this connection are "
                     "summarised every %ds)", peer.pid, peer.uid, error, INTERVAL_S)
        else:
            log.info("client pid %d uid %d: %d more malformed frames in the last %ds, latest: %s",
                     peer.pid, peer.uid, count.unlogged + 1, now - count.logged_at, error)
        count.logged_at = now
        count.unlogged = 0

    def closed(self, peer, count):
        """The connection of `peer` closed: its total, if some of its frames went unlogged."""
        if not count.unlogged:
            return
        if self._may_log(self._clock()):
            log.info("client pid %d uid %d closed its connection after %d malformed frames "
                     "(%d of them not logged before)", peer.pid, peer.uid, count.total, count.unlogged)
        else:
            self._dropped += count.unlogged
            self._dropped_conns.add((peer.pid, peer.uid))
            self.summary_due = self.summary_due or self._window_start + INTERVAL_S
        count.unlogged = 0

    def tick(self):
        """Write the line for frames dropped over the budget, once it is due."""
        if self.summary_due is not None and self._clock() >= self.summary_due:
            self._may_log(self._clock())

    def _drop(self, peer, count):
        self._dropped += 1
        self._dropped_conns.add((peer.pid, peer.uid))
        self.summary_due = self.summary_due or self._window_start + INTERVAL_S
        count.logged_at = count.logged_at or self._clock()   # its later frames wait their interval

    def _may_log(self, now):
        """Whether one more line fits in this window (opening a new one, and writing the
        last window's summary, when it is over)."""
        if now - self._window_start >= INTERVAL_S:
            if self._dropped:
                uids = sorted({uid for _, uid in self._dropped_conns})
                log.info("%d malformed frames from %d connections (uids %s) not logged in the last %ds",
                         self._dropped, len(self._dropped_conns), ", ".join(map(str, uids)),
                         now - self._window_start)
            self._window_start, self._lines = now, 0
            self._dropped, self._dropped_conns, self.summary_due = 0, set(), None
        if self._lines >= LINES_PER_INTERVAL:
            return False
        self._lines += 1
        return True
