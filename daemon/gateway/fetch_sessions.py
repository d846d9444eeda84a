"""Fetch sessions (KIP-227): a consumer names its partitions once, then fetches with
only what changed.

A request's (session_id, session_epoch):
- (0, -1): a full fetch with no session (FINAL_EPOCH);
- (0, 0): a full fetch that opens a session: the answer carries its new id;
- (id, 0): closes session `id` and opens a new one, as (0, 0);
- (id, -1): closes session `id`; a full fetch with no session;
- (id, n > 0): an incremental fetch in session `id`, whose epoch must be n
  (INVALID_FETCH_SESSION_EPOCH otherwise; FETCH_SESSION_ID_NOT_FOUND for an id the
  cache does not hold): the request's partitions are added to the session or update
  its fetch offset and max bytes, `forgotten_topics_data` leaves it, and every other
  partition of the session is fetched as it was. The answer lists only the partitions
  with something new: records, an error, or a high watermark, last stable offset or log
  start offset other than the one last sent.
- (0, n > 0): INVALID_FETCH_SESSION_EPOCH.
A successful fetch moves the session's epoch on by one (wrapping from 2^31-1 to 1).

The cache holds at most MAX_SESSIONS per gateway; opening one more evicts the least
recently used (its consumer then gets FETCH_SESSION_ID_NOT_FOUND and opens a new one, as
Kafka's clients do).
"""
import random
import threading
from collections import OrderedDict

from odradek.daemon.gateway.codec import ErrorCode
from odradek.daemon.gateway.gateway_state import per_gateway

__all__ = ["FetchSessions", "Session", "SessionPartition", "sessions", "MAX_SESSIONS"]

MAX_SESSIONS = 1000
_INT32_MAX = (1 << 31) - 1
_SESSIONLESS = (None, False, ErrorCode.none)


class SessionPartition:
    """One partition of a session: where its consumer fetches, and what it was last told."""
    __slots__ = ("topic_key", "fetch_offset", "max_bytes", "leader_epoch", "last_epoch", "sent")

    def __init__(self, topic_key, fetch_offset, max_bytes, leader_epoch, last_epoch=-1):
        self.topic_key = topic_key       # the topic as the request names it (name, or id at v13+)
        self.fetch_offset, self.max_bytes, self.leader_epoch = fetch_offset, max_bytes, leader_epoch
        self.last_epoch = last_epoch     # last_fetched_epoch (KIP-320; -1: none)
        self.sent = None                 # (high watermark, last stable offset, log start) last answered


class Session:
    __slots__ = ("id", "epoch", "partitions", "lock")

    def __init__(self, session_id):
        self.id, self.epoch = session_id, 1
        self.partitions = OrderedDict()    # (topic name, partition) -> SessionPartition
        self.lock = threading.Lock()

    def changed(self, key, error_code, has_records, marks):
        """Whether an incremental answer lists this partition; records `marks` as sent."""
        part = self.partitions[key]
        new = bool(has_records) or error_code != ErrorCode.none or part.sent != marks
        part.sent = marks
        return new

    def advance(self):
        self.epoch = 1 if self.epoch >= _INT32_MAX else self.epoch + 1


class FetchSessions:
    """The gateway's sessions by id; thread-safe."""

    def __init__(self, max_sessions=MAX_SESSIONS, rng=None):
        self._by_id = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_sessions
        self._rng = rng or random.SystemRandom()

    def __len__(self):
        return len(self._by_id)

    def resolve(self, session_id, epoch):
        """(session or None, incremental, error code): what a request's session fields
        mean (the module docstring). A new session is empty: the caller fills it."""
        if session_id == 0 and epoch == -1:      # the usual fetch without a session: no lock
            return _SESSIONLESS
        with self._lock:
            if session_id == 0:
                if epoch != 0:
                    return None, False, ErrorCode.invalid_fetch_session_epoch
                return self._open(), False, ErrorCode.none
            if epoch in (0, -1):
                self._by_id.pop(session_id, None)
                return (self._open() if epoch == 0 else None), False, ErrorCode.none
            session = self._by_id.get(session_id)
            if session is None:
                return None, False, ErrorCode.fetch_session_id_not_found
            if session.epoch != epoch:
                return None, False, ErrorCode.invalid_fetch_session_epoch
            self._by_id.move_to_end(session_id)
            return session, True, ErrorCode.none

    def _open(self):
        for _ in range(64):
            sid = self._rng.randint(1, _INT32_MAX)
            if sid not in self._by_id:
                break
        session = self._by_id[sid] = Session(sid)
        while len(self._by_id) > self._max:
            self._by_id.popitem(last=False)
        return session


def sessions(gateway):
    """The gateway's FetchSessions (made on first use)."""
    return per_gateway(gateway, "fetch_sessions", lambda g: FetchSessions())
