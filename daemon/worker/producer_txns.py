"""The transactions of one partition's producers (KIP-98): which are open, which are
decided but not yet replicated, the last stable offset, the aborted ones. Sans-IO; part
of ProducerState (producer_state.py), whose per-producer entries hold each producer's
`txn_first_offset` and `coordinator_epoch`.

Kafka's ProducerStateManager and ProducerAppendInfo, for transactions:
- A transactional data batch from a producer with no open transaction opens one at the
  batch's first offset (`begin`): Kafka's currentTxnFirstOffset, and an entry in the
  ongoing transactions, ordered by first offset.
- A marker (a control batch, client/records/control.py) ends the producer's transaction
  (`complete`): COMMIT or ABORT, whatever the producer's transaction held. Its epoch
  becomes the producer's (a coordinator that aborts a fenced producer's transaction
  writes the marker with the bumped epoch; the old epoch's batches are forgotten) and
  the coordinator epoch is kept. A marker for a producer with no open transaction
  changes only those (Kafka writes it, and indexes nothing: the transaction had no data
  here). An ABORT of an open transaction gives an AbortedTxn (producer id, first offset,
  the marker's offset, and the last stable offset once it is completed: the first offset
  of the next open transaction of another producer, else the marker's offset + 1), which
  goes into the segment's .txnindex (daemon/storage/txn_index.py).
- A completed transaction stays undecided for readers until the high watermark passes
  its marker (Kafka's unreplicatedTxns): a change of leader before then could lose the
  marker and reopen it.
- The first unstable offset is the smallest first offset of the open and the
  unreplicated transactions, raised to the log start if retention removed that offset
  (Kafka's UnifiedLog.maybeIncrementFirstUnstableOffset); the last stable offset is that,
  or the high watermark when it is lower or there is none. A read_committed consumer
  reads below it.
- The leader refuses a marker whose producer epoch is below the producer's
  (check_marker: INVALID_PRODUCER_EPOCH), or whose coordinator epoch is below the one of
  the producer's last marker (TRANSACTION_COORDINATOR_FENCED: a coordinator that lost its
  place); a refused marker is written nowhere. A replica takes what the leader wrote.
"""
from collections import deque
from typing import NamedTuple

from odradek.client.errors import InvalidProducerEpoch, TransactionCoordinatorFenced
from odradek.client.records import CONTROL_MASK, ControlRecordType, NO_SEQUENCE
from odradek.daemon.storage.txn_index import AbortedTxn

__all__ = ["Transactions", "NO_OFFSET"]

NO_OFFSET = -1


class _Decided(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int    # the marker's


class Transactions:
    """Open and unreplicated transactions. `producer_for(producer_id, epoch)` gives the
    producer's mutable entry, made if it is new. One owner, like ProducerState."""

    __slots__ = ("_producers", "_producer_for", "_ongoing", "_unreplicated")

    def __init__(self, producers, producer_for):
        self._producers = producers
        self._producer_for = producer_for
        self._ongoing = {}              # producer id -> first offset, in first-offset order
        self._unreplicated = deque()    # _Decided, in marker order

    def clear(self):
        for p in self._producers.values():
            p.txn_first_offset = NO_OFFSET
        self._ongoing.clear()
        self._unreplicated.clear()

    def ongoing(self):
        """[(producer id, first offset)] of the open transactions, oldest first."""
        return list(self._ongoing.items())

    def is_open(self, producer_id):
        return producer_id in self._ongoing

    def has_unreplicated(self):
        """Whether a decided transaction waits for the high watermark to pass its marker."""
        return bool(self._unreplicated)

    # ---- changes -----------------------------------------------------------------------
    def begin(self, producer_id, epoch, first_offset):
        """A transactional data batch at first_offset: opens the producer's transaction
        unless one is open."""
        p = self._producer_for(producer_id, epoch)
        if p.txn_first_offset < 0:
            p.txn_first_offset = first_offset
            self._ongoing[producer_id] = first_offset

    def reopen(self, producer_id, first_offset):
        """A snapshot's open transaction (call sort() after the last one)."""
        self._producers[producer_id].txn_first_offset = first_offset
        self._ongoing[producer_id] = first_offset

    def sort(self):
        self._ongoing = dict(sorted(self._ongoing.items(), key=lambda kv: kv[1]))

    def check_marker(self, producer_id, epoch, coordinator_epoch):
        """The error refusing a marker for (producer_id, epoch) sent by the coordinator of
        `coordinator_epoch`, or None (Kafka's ProducerAppendInfo.appendEndTxnMarker): an
        epoch below the producer's is INVALID_PRODUCER_EPOCH; a coordinator epoch below
        the one of the producer's last marker here is TRANSACTION_COORDINATOR_FENCED (a
        newer coordinator has written for this producer: the sender is a zombie)."""
        p = self._producers.get(producer_id)
        if p is None:
            return None
        if epoch < p.epoch:
            return InvalidProducerEpoch(f"transaction marker for producer {producer_id} epoch {epoch} is fenced: "
                                        f"epoch {p.epoch} has written since")
        if coordinator_epoch < p.coordinator_epoch:
            return TransactionCoordinatorFenced(
                f"transaction marker for producer {producer_id} from coordinator epoch {coordinator_epoch} is "
                f"fenced: a coordinator of epoch {p.coordinator_epoch} has written a marker since")
        return None

    def complete(self, producer_id, epoch, marker, offset):
        """The marker (an EndTxnMarker) at `offset` ends the producer's transaction.
        Returns the AbortedTxn for an ABORT that ended an open transaction, else None."""
        p = self._producer_for(producer_id, epoch)
        if p.epoch != epoch:          # Kafka's maybeUpdateProducerEpoch
            p.epoch = epoch
            p.batches.clear()
            p.last_seq = NO_SEQUENCE
        p.coordinator_epoch = marker.coordinator_epoch
        first = p.txn_first_offset
        if first < 0:
            return None
        p.txn_first_offset = NO_OFFSET
        del self._ongoing[producer_id]
        self._unreplicated.append(_Decided(producer_id, first, offset))
        if marker.control_type is not ControlRecordType.ABORT:
            return None
        return AbortedTxn(producer_id, first, offset, next(iter(self._ongoing.values()), offset + 1))

    def apply(self, producer_id, epoch, first_offset, attributes, marker):
        """One batch read from the log (replay): a transactional data batch begins, a
        control batch with a marker completes (an empty one, left by compaction, does
        nothing). Returns what complete() returns."""
        if attributes & CONTROL_MASK:
            return None if marker is None else self.complete(producer_id, epoch, marker, first_offset)
        self.begin(producer_id, epoch, first_offset)
        return None

    def on_high_watermark(self, high_watermark):
        """Forget the decided transactions whose marker is below the high watermark.
        Returns whether any was."""
        decided = self._unreplicated
        n = len(decided)
        while decided and decided[0].last_offset < high_watermark:
            decided.popleft()
        return len(decided) != n

    # ---- readers -----------------------------------------------------------------------
    def first_unstable_offset(self, log_start_offset=0):
        """The smallest first offset of the open and unreplicated transactions, not below
        `log_start_offset`; None if there is no such transaction."""
        first = next(iter(self._ongoing.values()), None)
        for d in self._unreplicated:
            if first is None or d.first_offset < first:
                first = d.first_offset
        return first if first is None else max(first, log_start_offset)

    def last_stable_offset(self, high_watermark, log_start_offset=0):
        first = self.first_unstable_offset(log_start_offset)
        return high_watermark if first is None else min(first, high_watermark)
