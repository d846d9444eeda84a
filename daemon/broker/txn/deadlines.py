"""When the coordinator's transactions time out and its idle transactional ids expire,
found without looking at every id: two heaps of (due ms, seq, TxnMetadata), kept by
lazy invalidation.

- A transaction Ongoing with no change under way is due to time out at
  start_ms + timeout_ms + 1 (the first ms at which start_ms + timeout_ms < now).
- An id in Empty, CompleteCommit or CompleteAbort with no change under way is due to
  expire at update_ms + transactional.id.expiration.ms.

Every change of a TxnMetadata that can make it due (a change completed or abandoned,
the epoch taken for a fence's abort) calls watch(meta), which pushes its current due
time. An entry is valid while its id still maps to that TxnMetadata, which still
qualifies with that very due time; others are dropped when they reach the top (or when
the heap holds more than twice the ids: then it is rebuilt from its valid entries, so
it never grows past O(ids)). Peeking is O(1) amortized, popping O(log n).
"""
import heapq
import itertools

from odradek.daemon.broker.txn.state import EXPIRABLE_STATES, TxnState

__all__ = ["TxnDeadlines"]

_SLACK = 64     # entries a heap may hold above twice the number of ids before a rebuild


class TxnDeadlines:
    def __init__(self, txns, id_expiration_ms):
        """`txns`: the coordinator's {transactional id: TxnMetadata} (read, never changed)."""
        self._txns = txns
        self._id_expiration_ms = id_expiration_ms
        self._timeouts = []     # (due, seq, meta)
        self._expiries = []
        self._seq = itertools.count()

    def clear(self):
        self._timeouts.clear()
        self._expiries.clear()

    def watch(self, meta):
        """`meta` changed: schedule it by its present state (nothing if none is due)."""
        if meta.pending is not None:
            return
        if meta.state is TxnState.ONGOING:
            self._push(self._timeouts, meta.start_ms + meta.timeout_ms + 1, meta)
        elif meta.state in EXPIRABLE_STATES:
            self._push(self._expiries, meta.update_ms + self._id_expiration_ms, meta)

    def first_timeout(self):
        """The earliest due time of a timeout, or None."""
        return self._first(self._timeouts, self._times_out_at)

    def first_expiry(self):
        """The earliest due time of an expiry, or None."""
        return self._first(self._expiries, self._expires_at)

    def timed_out(self, now):
        """The transactions due to time out at `now`, earliest first; taken off the heap."""
        return self._take(self._timeouts, self._times_out_at, now)

    def expired(self, now):
        """The idle ids due to expire at `now`, earliest first; taken off the heap."""
        return self._take(self._expiries, self._expires_at, now)

    # ---- the heaps -----------------------------------------------------------------------
    def _times_out_at(self, meta):
        if self._txns.get(meta.transactional_id) is not meta or meta.pending is not None \
                or meta.state is not TxnState.ONGOING:
            return None
        return meta.start_ms + meta.timeout_ms + 1

    def _expires_at(self, meta):
        if self._txns.get(meta.transactional_id) is not meta or meta.pending is not None \
                or meta.state not in EXPIRABLE_STATES:
            return None
        return meta.update_ms + self._id_expiration_ms

    def _push(self, heap, due, meta):
        heapq.heappush(heap, (due, next(self._seq), meta))
        if len(heap) > 2 * len(self._txns) + _SLACK:
            due_of = self._times_out_at if heap is self._timeouts else self._expires_at
            seen = set()
            valid = []
            for entry in heap:
                if due_of(entry[2]) == entry[0] and id(entry[2]) not in seen:
                    seen.add(id(entry[2]))
                    valid.append(entry)
            heapq.heapify(valid)
            heap[:] = valid

    @staticmethod
    def _first(heap, due_of):
        while heap and due_of(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    @staticmethod
    def _take(heap, due_of, now):
        out, seen = [], set()
        while heap and heap[0][0] <= now:
            due, _, meta = heapq.heappop(heap)
            if due_of(meta) == due and id(meta) not in seen:
                seen.add(id(meta))
                out.append(meta)
        return out
