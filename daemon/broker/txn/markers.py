"""Ending a transaction on its partitions (Kafka's TransactionMarkerChannelManager): once
PrepareCommit/PrepareAbort is durable, a WriteTxnMarker goes to the leader of every
partition of the transaction; each partition leaves the transaction when its marker is
written; when none is left, the CompleteCommit/CompleteAbort record is written (retried
until it is).

A marker that fails is sent again after a backoff that doubles from RETRY_BACKOFF_MS to
MAX_RETRY_BACKOFF_MS (a leader restarting, a follower behind: the partition's worker
answers once it can); a partition that no longer exists (its topic was deleted) is
skipped, as Kafka skips it. A leader that refuses the marker's epoch
(INVALID_PRODUCER_EPOCH: it holds a newer epoch of the producer, so this transaction is
over there) counts as done, with a note. A leader that answers
TRANSACTION_COORDINATOR_FENCED has a marker of this producer from a coordinator of a
newer epoch: this coordinator is a zombie for the transaction and stops ending it, as
Kafka's TransactionMarkerRequestCompletionHandler does (removeMarkersForTxn): no marker
of the round is sent or retried again and no Complete record is written; the
transaction stays Prepare* here until a coordinator of a newer epoch loads
__transaction_state and completes it (load() sends its markers again).
"""
import heapq
import itertools
from dataclasses import dataclass, field

from odradek.client.errors import InvalidProducerEpoch, TransactionCoordinatorFenced, UnknownTopicOrPartition
from odradek.client.protocol import messages as m
from odradek.daemon.broker.txn.effects import WriteMarkers
from odradek.daemon.broker.txn.state import TxnState

__all__ = ["Markers", "RETRY_BACKOFF_MS", "MAX_RETRY_BACKOFF_MS"]

RETRY_BACKOFF_MS = 100
MAX_RETRY_BACKOFF_MS = 10_000


@dataclass
class _Round:
    """The markers of one transaction's end, and its Complete record."""
    meta: object                 # the TxnMetadata (its state is PrepareCommit/PrepareAbort)
    complete: object             # the TxnTransit to CompleteCommit/CompleteAbort, pending
    waiting: set                 # (topic, partition) whose marker is not written yet
    in_flight: set = field(default_factory=set)
    retry_at: dict = field(default_factory=dict)     # (topic, partition) -> ms
    backoff: dict = field(default_factory=dict)      # (topic, partition) -> ms
    complete_retry_at: int | None = None
    complete_backoff: int = RETRY_BACKOFF_MS
    writing_complete: bool = False


class Markers:
    def __init__(self, coordinator):
        self.coord = coordinator
        self.rounds = {}                 # token -> _Round (in token order: the order they began)
        self._tokens = itertools.count(1)
        # (ms, seq, token, (topic, partition) or None for the Complete record): the retries,
        # valid while the round still has that retry time for it (lazy invalidation)
        self._retries = []
        self._seq = itertools.count()

    def reset(self):
        self.rounds.clear()
        self._retries.clear()

    def send(self, meta, complete):
        """Write the markers of `meta`'s transaction (PrepareCommit/PrepareAbort, durable),
        then `complete`, the pending transit to CompleteCommit/CompleteAbort."""
        token = next(self._tokens)
        rnd = _Round(meta, complete, set(meta.partitions))
        self.rounds[token] = rnd
        if rnd.waiting:
            self._write(token, rnd, sorted(rnd.waiting))
        else:
            self._write_complete(token, rnd)

    def _write(self, token, rnd, partitions):
        meta = rnd.meta
        commit = meta.state is TxnState.PREPARE_COMMIT
        rnd.in_flight.update(partitions)
        for tp in partitions:
            rnd.retry_at.pop(tp, None)
        self.coord.emit(WriteMarkers(tuple(
            m.WriteTxnMarkerRequest(topic=topic, partition=partition, producer_id=meta.producer_id,
                                    producer_epoch=meta.producer_epoch, committed=commit,
                                    coordinator_epoch=self.coord.coordinator_epoch)
            for topic, partition in partitions), token))

    def answered(self, token, tp, now, error):
        rnd = self.rounds.get(token)
        if rnd is None or tp not in rnd.in_flight:
            return   # an answer for a round reloaded away
        rnd.in_flight.discard(tp)
        tid = rnd.meta.transactional_id
        if error is not None:
            if isinstance(error, UnknownTopicOrPartition) and not self.coord.partition_exists(*tp):
                self.coord.note(tid, f"{tp[0]}-{tp[1]} no longer exists: its marker is skipped")
            elif isinstance(error, TransactionCoordinatorFenced):
                del self.rounds[token]
                self.coord.note(tid, f"{tp[0]}-{tp[1]} refused the marker ({error}): a coordinator of a newer "
                                     f"epoch ends this transaction; this one stops sending its markers")
                return
            elif isinstance(error, InvalidProducerEpoch):
                self.coord.note(tid, f"{tp[0]}-{tp[1]} refused the marker ({error}): it holds a newer epoch, "
                                     f"the transaction is over there")
            else:
                backoff = rnd.backoff.get(tp, RETRY_BACKOFF_MS)
                rnd.retry_at[tp] = now + backoff
                heapq.heappush(self._retries, (now + backoff, next(self._seq), token, tp))
                rnd.backoff[tp] = min(backoff * 2, MAX_RETRY_BACKOFF_MS)
                if backoff == RETRY_BACKOFF_MS:   # the first failure of this partition only
                    self.coord.note(tid, f"writing the marker to {tp[0]}-{tp[1]} failed ({error}); retrying")
                return
        rnd.waiting.discard(tp)
        rnd.meta.partitions.discard(tp)
        if not rnd.waiting:
            self._write_complete(token, rnd)

    def _write_complete(self, token, rnd):
        rnd.writing_complete = True
        rnd.complete_retry_at = None

        def written(now, error):
            rnd.writing_complete = False
            tid = rnd.meta.transactional_id
            if error is None:
                self.rounds.pop(token, None)
                self.coord.note(tid, f"{rnd.complete.state.display}: producer {rnd.meta.producer_id} epoch "
                                     f"{rnd.meta.producer_epoch}")
            elif self.rounds.get(token) is rnd and rnd.meta.pending is rnd.complete.state:
                rnd.complete_retry_at = now + rnd.complete_backoff
                heapq.heappush(self._retries, (rnd.complete_retry_at, next(self._seq), token, None))
                rnd.complete_backoff = min(rnd.complete_backoff * 2, MAX_RETRY_BACKOFF_MS)
                self.coord.note(tid, f"writing {rnd.complete.state.display} failed ({error}); retrying")
        self.coord.persist_transit(rnd.meta, rnd.complete, written, retry_on_error=True)

    def _is_due(self, entry):
        at, _, token, tp = entry
        rnd = self.rounds.get(token)
        return rnd is not None and (rnd.complete_retry_at if tp is None else rnd.retry_at.get(tp)) == at

    def next_retry(self):
        """The earliest retry time (ms), or None; O(1) amortized."""
        retries = self._retries
        while retries and not self._is_due(retries[0]):
            heapq.heappop(retries)
        return retries[0][0] if retries else None

    def retry_due(self, now):
        """Send again what is due at `now`: per round, in the order the rounds began, its
        partitions' markers (one WriteMarkers), then its Complete record."""
        due = {}
        retries = self._retries
        while retries and retries[0][0] <= now:
            entry = heapq.heappop(retries)
            if self._is_due(entry):
                due.setdefault(entry[2], set()).add(entry[3])
        for token in sorted(due):
            rnd = self.rounds[token]
            partitions = sorted(tp for tp in due[token] if tp is not None)
            if partitions:
                self._write(token, rnd, partitions)
            if None in due[token] and not rnd.writing_complete:
                self._write_complete(token, rnd)
