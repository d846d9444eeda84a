"""Idempotent-producer state of one partition leader: which batches are new, which are
re-sent duplicates, which are out of order or from a fenced producer. Sans-IO.

Kafka's ProducerStateManager, simplified to one leader and no transactions. Per producer
id the leader keeps the producer epoch and the (first_seq, last_seq) -> (first_offset,
last_offset) of its last few appended batches (Kafka keeps 5: a producer has at most 5
batches in flight per partition, so a retried batch is always among them).

    state = ProducerState()
    verdict = state.check(pid, epoch, first_seq, last_seq)       # before appending
    if verdict.outcome is Outcome.APPEND:
        ... append, assigning first_offset..last_offset ...
        state.record(pid, epoch, first_seq, last_seq, first_offset, last_offset)
    elif verdict.outcome is Outcome.DUPLICATE:
        ... acknowledge again with verdict.first_offset / verdict.last_offset ...
    else:
        raise verdict.exception()                                # OutOfOrderSequenceNumber, ...

    # at open: load the newest snapshot (storage/producer_snapshot.py), then replay the
    # batch headers of the log from its offset on, remembering more than 5 per producer
    # so batches re-delivered after a crash are still recognised as duplicates
    state = ProducerState(remember=4096)
    state.load(entries)                                           # or nothing: no snapshot
    state.replay(batches_from_buffer(segment_view, position))     # rebuild() = clear + replay
    state.last_batches()                                          # what a snapshot holds

Rules of check (Kafka's UnifiedLog.analyzeAndValidateProducerState and
ProducerAppendInfo.checkProducerEpoch / checkSequence):
- producer id -1 (not idempotent): always APPEND.
- a producer id never seen (or whose state was lost): APPEND, whatever first_seq.
- epoch below the known one: INVALID_PRODUCER_EPOCH (a newer instance fenced it).
- epoch above the known one: APPEND if first_seq is 0, else OUT_OF_ORDER_SEQUENCE_NUMBER.
- same epoch: APPEND if first_seq follows the last batch's last_seq; DUPLICATE (with
  the offsets it was written at) if (first_seq, last_seq) is a remembered batch;
  otherwise OUT_OF_ORDER_SEQUENCE_NUMBER (a gap, or an old batch no longer remembered).
Sequences are int32 >= 0 and wrap from 2^31-1 to 0, as Kafka's do. A batch that carries
a producer id but no sequence (-1) is INVALID_RECORD, as Kafka's LogValidator says.
Batches with no sequence (non-idempotent ones, transaction markers) are not recorded.

Snapshots hold one batch per producer, as Kafka's do, and that is enough. A duplicate
after a crash is a ring entry the killed leader appended but never released; the leader
takes, appends and releases one entry at a time (worker/producers.py), so at any instant
at most the entry being appended is such an entry. A snapshot is written between
entries (at a refusal, at close) or at a roll, before the entry that rolled is
recorded and with that entry's batch in the new segment: either way every batch a
successor can be handed again lies at or above the snapshot's offset, and the replay
from that offset (with remember=4096) recognises it. Batches below the offset are
answered from the snapshot's last batch (a retry of it is a DUPLICATE) or, older, are
OUT_OF_ORDER as at a live leader that remembers 5.

Refused batches: a batch the log refuses uses up its sequences (recorded with offsets
-1, in snapshots as last_offset -1). The log does not hold it, so the leader writes a
snapshot right after a refusal, before releasing the entry: killed before the snapshot
is renamed into place, the successor is handed the same entry and refuses it again.
That snapshot is written without fsyncs (a process crash keeps it; a power loss may
not). Only a snapshot that cannot be written (a full or failing disk, logged), or a
power loss before the page cache reached the disk, loses the refusal; so does a change
of leader, since a refusal is never replicated. The producer's next batch then comes
with a forward gap in its sequence, and check() calls it OUT_OF_ORDER_SEQUENCE_NUMBER;
odradek's producer does not bump its epoch (unlike Kafka's since KIP-360), so the leader
decides (worker/leader.py): the first batch a producer sends a new leader (a new
process, or a new tenure) may skip ahead (is_gap_ahead), because the only sequences a
producer's ring can skip are ones a previous leader answered with an error.

Transactions (KIP-98): `state.txns` (producer_txns.py) follows each producer's open
transaction, the markers that end them and the last stable offset; replay() feeds it the
transaction fields of batches_from_buffer(..., transactions=True), and a snapshot entry's
current_txn_first_offset (Kafka's) reopens a transaction at load.

Not here: producer-id expiry (producer.id.expiration.ms).
"""
import itertools
import struct
from collections import OrderedDict
from enum import Enum
from typing import NamedTuple, Optional

from odradek.client.errors import CorruptRecord, InvalidProducerEpoch, InvalidRecord, OutOfOrderSequenceNumber
from odradek.client.records import (
    ATTRIBUTES_OFFSET, BASE_SEQUENCE_OFFSET, BATCH_LENGTH_OFFSET, CONTROL_MASK, LAST_OFFSET_DELTA_OFFSET,
    LOG_OVERHEAD, MAGIC, MAGIC_OFFSET, MAX_SEQUENCE, MIN_BATCH_LENGTH, NO_PRODUCER_EPOCH, NO_SEQUENCE,
    PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET, RECORDS_COUNT_OFFSET, TRANSACTIONAL_MASK, RecordBatch)
from odradek.daemon.worker.producer_txns import NO_OFFSET, Transactions

__all__ = ["ProducerState", "Outcome", "Verdict", "ProducerEntry", "batches_from_buffer",
           "next_sequence", "NUM_BATCHES_TO_RETAIN", "MAX_SEQUENCE"]

NUM_BATCHES_TO_RETAIN = 5        # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
_GAP_AHEAD_LIMIT = 1 << 30       # a sequence this far ahead or more counts as behind (wrap)


def next_sequence(sequence, increment=1):
    """sequence + increment, wrapping past 2^31-1 to 0 (Kafka's
    DefaultRecordBatch.incrementSequence, for sequence and increment >= 0)."""
    return (sequence + increment) & MAX_SEQUENCE


class Outcome(Enum):
    """What the leader does with a produced batch. Error outcomes name the error class
    the producer is answered with (`Outcome.X.error`; None for APPEND and DUPLICATE)."""

    APPEND = "APPEND"
    DUPLICATE = "DUPLICATE"
    OUT_OF_ORDER_SEQUENCE_NUMBER = "OUT_OF_ORDER_SEQUENCE_NUMBER"
    INVALID_PRODUCER_EPOCH = "INVALID_PRODUCER_EPOCH"
    INVALID_RECORD = "INVALID_RECORD"

    @property
    def error(self):
        return _ERRORS.get(self)


_ERRORS = {
    Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER: OutOfOrderSequenceNumber,
    Outcome.INVALID_PRODUCER_EPOCH: InvalidProducerEpoch,
    Outcome.INVALID_RECORD: InvalidRecord,
}


class Verdict(NamedTuple):
    """The answer of ProducerState.check.

    outcome: an Outcome. first_offset, last_offset: where a DUPLICATE was written
    (-1 otherwise). error: the odradek error class of an error outcome, else None.
    message: what happened, for the error (empty otherwise).
    """

    outcome: Outcome
    first_offset: int = -1
    last_offset: int = -1
    error: Optional[type] = None
    message: str = ""

    def exception(self):
        """The error to raise or send back (an instance of self.error); None if the
        verdict is not an error."""
        return None if self.error is None else self.error(self.message)


class ProducerEntry(NamedTuple):
    """A snapshot of one producer's state: its epoch, the last sequence it wrote and the
    batches remembered, oldest first, as (first_seq, last_seq, first_offset, last_offset)."""

    epoch: int
    last_seq: int
    batches: tuple


_APPEND = Verdict(Outcome.APPEND)


def _error(outcome, message):
    return Verdict(outcome, -1, -1, outcome.error, message)


class _Producer:
    """Mutable per-producer state: epoch, last sequence, remembered batches in order, and
    its transaction on this partition (the first offset of the open one, -1 if none; the
    epoch of the coordinator that wrote its last marker, -1 if none)."""

    __slots__ = ("epoch", "last_seq", "batches", "txn_first_offset", "coordinator_epoch")

    def __init__(self, epoch):
        self.epoch = epoch
        self.last_seq = NO_SEQUENCE
        self.batches = OrderedDict()   # (first_seq, last_seq) -> (first_offset, last_offset)
        self.txn_first_offset = NO_OFFSET
        self.coordinator_epoch = NO_OFFSET


class ProducerState:
    """Sequence and epoch bookkeeping for every idempotent producer of one partition.

    remember: batches kept per producer for duplicate detection (Kafka keeps 5; pass
    more when rebuilding from the log, so re-delivered batches are recognised). One
    owner (the partition's worker loop); not thread-safe.
    """

    __slots__ = ("_remember", "_producers", "txns")

    def __init__(self, remember=NUM_BATCHES_TO_RETAIN):
        if remember < 1:
            raise ValueError(f"remember must be at least 1, not {remember}")
        self._remember = remember
        self._producers = {}   # producer id -> _Producer
        # open and decided transactions, the last stable offset (producer_txns.py)
        self.txns = Transactions(self._producers, self._producer_for)

    def _producer_for(self, producer_id, epoch):
        p = self._producers.get(producer_id)
        if p is None:
            p = self._producers[producer_id] = _Producer(epoch)
        return p

    @property
    def remember(self):
        return self._remember

    def __len__(self):
        """Number of producer ids with state."""
        return len(self._producers)

    def __contains__(self, producer_id):
        return producer_id in self._producers

    def entry(self, producer_id):
        """A ProducerEntry snapshot of the producer's state, or None if unknown."""
        p = self._producers.get(producer_id)
        if p is None:
            return None
        return ProducerEntry(p.epoch, p.last_seq,
                             tuple(k + v for k, v in p.batches.items()))

    def check(self, producer_id, epoch, first_seq, last_seq):
        """The Verdict for a batch about to be appended (the module doc has the rules).
        Changes nothing: call record() once the batch is appended."""
        if producer_id < 0:
            return _APPEND
        if first_seq < 0:
            return _error(Outcome.INVALID_RECORD,
                          f"producer {producer_id} sent a batch with a producer id but no "
                          f"sequence number ({first_seq}); an idempotent producer numbers "
                          f"every batch")
        p = self._producers.get(producer_id)
        if p is None:
            return _APPEND
        if epoch == p.epoch:
            if first_seq == (p.last_seq + 1) & MAX_SEQUENCE:
                return _APPEND
            offsets = p.batches.get((first_seq, last_seq))
            if offsets is not None:
                return Verdict(Outcome.DUPLICATE, offsets[0], offsets[1])
            if p.epoch == NO_PRODUCER_EPOCH:    # Kafka accepts any sequence then
                return _APPEND
            return _error(Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER,
                          f"producer {producer_id} epoch {epoch} sent sequence {first_seq}.."
                          f"{last_seq}, expected {next_sequence(p.last_seq)} (the last batch "
                          f"written ended at {p.last_seq}); the producer must reset its "
                          f"sequences with a new epoch")
        if epoch < p.epoch:
            return _error(Outcome.INVALID_PRODUCER_EPOCH,
                          f"producer {producer_id} epoch {epoch} is fenced: epoch {p.epoch} "
                          f"has written since; a newer instance of this producer is active")
        if first_seq == 0 or p.epoch == NO_PRODUCER_EPOCH:
            return _APPEND
        return _error(Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER,
                      f"producer {producer_id} started new epoch {epoch} (was {p.epoch}) at "
                      f"sequence {first_seq}; a new epoch must start at sequence 0")

    def is_gap_ahead(self, producer_id, epoch, first_seq):
        """Whether first_seq lies ahead of the producer's next sequence in its current
        epoch (a forward gap, wrap included), not behind it."""
        p = self._producers.get(producer_id)
        if p is None or epoch != p.epoch or p.last_seq == NO_SEQUENCE:
            return False
        ahead = (first_seq - next_sequence(p.last_seq)) & MAX_SEQUENCE
        return 0 < ahead < _GAP_AHEAD_LIMIT

    def record(self, producer_id, epoch, first_seq, last_seq, first_offset, last_offset):
        """Note a batch appended at first_offset..last_offset. A new epoch forgets the
        batches of the old one (as Kafka's ProducerStateEntry.maybeUpdateProducerEpoch).
        Batches without a producer id or sequence are ignored."""
        if producer_id < 0 or first_seq < 0:
            return
        p = self._producers.get(producer_id)
        if p is None:
            p = self._producers[producer_id] = _Producer(epoch)
        elif p.epoch != epoch:
            p.epoch = epoch
            p.batches.clear()
        batches = p.batches
        batches[(first_seq, last_seq)] = (first_offset, last_offset)
        if len(batches) > self._remember:
            batches.popitem(last=False)
        p.last_seq = last_seq

    def last_batches(self):
        """Each producer's state as Kafka's snapshot holds it: (producer_id, epoch,
        last_seq, last_offset, offset_delta) of its last batch, offset_delta being
        last_seq - first_seq (= last_offset - first_offset); last_offset -1 for a refused
        batch; last_seq and last_offset -1, offset_delta 0 for a producer known only by its
        transaction markers. In producer id order."""
        out = []
        for producer_id in sorted(self._producers):
            p = self._producers[producer_id]
            if not p.batches:
                out.append((producer_id, p.epoch, NO_SEQUENCE, NO_OFFSET, 0))
                continue
            (first_seq, last_seq), (_, last_offset) = next(reversed(p.batches.items()))
            out.append((producer_id, p.epoch, last_seq, last_offset, (last_seq - first_seq) & MAX_SEQUENCE))
        return out

    def snapshot_entries(self, timestamp):
        """last_batches() with the fields of Kafka's snapshot entry after them: timestamp,
        coordinator_epoch, current_txn_first_offset (storage/producer_snapshot.py's
        SnapshotEntry order)."""
        producers = self._producers
        return [e + (timestamp, producers[e[0]].coordinator_epoch, producers[e[0]].txn_first_offset)
                for e in self.last_batches()]

    def load(self, entries):
        """Replace the state by a snapshot's: entries as last_batches() or
        snapshot_entries() give them. Each producer remembers its last batch; one whose
        current_txn_first_offset is set has that transaction open again. A snapshot
        written before transactions existed carries -1 there (no transaction)."""
        self._producers.clear()
        self.txns.clear()
        for producer_id, epoch, last_seq, last_offset, offset_delta, *rest in entries:
            p = self._producers[producer_id] = _Producer(epoch)
            if last_seq != NO_SEQUENCE:
                first_offset = last_offset - offset_delta if last_offset >= 0 else -1
                p.batches[((last_seq - offset_delta) & MAX_SEQUENCE, last_seq)] = (first_offset, last_offset)
                p.last_seq = last_seq
            if len(rest) >= 3:
                p.coordinator_epoch = rest[1]
                if rest[2] >= 0:
                    self.txns.reopen(producer_id, rest[2])
        self.txns.sort()

    def rebuild(self, batches, aborted=None):
        """Replace the state by that of the given batches, recorded in order.

        batches: iterable of (producer_id, epoch, first_seq, last_seq, first_offset,
        last_offset) from the log, in offset order (batches_from_buffer gives them), or
        with their (attributes, marker) after them (batches_from_buffer(...,
        transactions=True)): then transactions are followed too (replay).
        Returns how many were idempotent batches (recorded)."""
        self._producers.clear()
        self.txns.clear()
        return self.replay(batches, aborted)

    def replay(self, batches, aborted=None, sequences=True):
        """Record the given batches (as for rebuild) on top of the present state, e.g.
        the log from a snapshot's offset on, or what a follower copied. Batches with
        transaction fields open and complete transactions as a replica does (a stale
        epoch is taken, not refused: the leader decided); `aborted`, a list, receives the
        AbortedTxn of each ABORT marker met. sequences=False: transactions only (the
        leader records a produced batch's sequences itself). Returns how many batches
        were recorded."""
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return 0
        batches = itertools.chain((first,), batches)
        record, txns = self.record, self.txns
        n = 0
        if len(first) == 6:
            for producer_id, epoch, first_seq, last_seq, first_offset, last_offset in batches:
                if sequences and producer_id >= 0 and first_seq >= 0:
                    record(producer_id, epoch, first_seq, last_seq, first_offset, last_offset)
                    n += 1
            return n
        for producer_id, epoch, first_seq, last_seq, first_offset, last_offset, attributes, marker in batches:
            if sequences and producer_id >= 0 and first_seq >= 0:
                record(producer_id, epoch, first_seq, last_seq, first_offset, last_offset)
                n += 1
            if attributes & _TXN_BITS:
                done = txns.apply(producer_id, epoch, first_offset, attributes, marker)
                if done is not None and aborted is not None:
                    aborted.append(done)
        return n


# Only the header fields the state needs, in one unpack: baseOffset, batchLength, magic,
# lastOffsetDelta, producerId, producerEpoch, baseSequence (big-endian, FORMAT.md).
_FIELDS = struct.Struct(
    ">qi%dxb%dxi%dxqhi" % (
        MAGIC_OFFSET - (BATCH_LENGTH_OFFSET + 4),
        LAST_OFFSET_DELTA_OFFSET - (MAGIC_OFFSET + 1),
        PRODUCER_ID_OFFSET - (LAST_OFFSET_DELTA_OFFSET + 4)))
assert PRODUCER_EPOCH_OFFSET == PRODUCER_ID_OFFSET + 8
assert BASE_SEQUENCE_OFFSET == PRODUCER_EPOCH_OFFSET + 2
assert _FIELDS.size == RECORDS_COUNT_OFFSET
# The same and the attributes, for batches_from_buffer(..., transactions=True).
_TXN_FIELDS = struct.Struct(
    ">qi%dxb%dxhi%dxqhi" % (
        MAGIC_OFFSET - (BATCH_LENGTH_OFFSET + 4),
        ATTRIBUTES_OFFSET - (MAGIC_OFFSET + 1),
        PRODUCER_ID_OFFSET - (LAST_OFFSET_DELTA_OFFSET + 4)))
assert LAST_OFFSET_DELTA_OFFSET == ATTRIBUTES_OFFSET + 2 and _TXN_FIELDS.size == RECORDS_COUNT_OFFSET
_TXN_BITS = TRANSACTIONAL_MASK | CONTROL_MASK


def batches_from_buffer(view, start_position=0, transactions=False):
    """Yield (producer_id, epoch, first_seq, last_seq, first_offset, last_offset) of each
    v2 batch in `view` (concatenated batches, e.g. a segment), reading headers only.
    transactions=True: each tuple also has (attributes, marker) after those, marker being
    the EndTxnMarker of a control batch (None for others, and for a control batch whose
    record is not a marker: nothing to end).

    Starts at byte start_position; stops at the end, or at the first header that cannot
    be a batch: a batch length of zero (preallocated space) or below the minimum, one
    running past the end, a magic other than 2 or a negative lastOffsetDelta. No CRC
    check: the log was recovered before. first_seq and last_seq are -1 for a batch without
    sequence; last_seq = first_seq + lastOffsetDelta, wrapping past 2^31-1.
    view: bytes-like (bytes, bytearray, mmap, memoryview of bytes).
    """
    with memoryview(view) as whole:
        end = whole.nbytes
    if transactions:
        yield from _txn_batches(view, start_position, end)
        return
    pos = start_position
    unpack = _FIELDS.unpack_from
    size = _FIELDS.size
    while pos + size <= end:
        base_offset, length, magic, last_delta, producer_id, epoch, base_seq = unpack(view, pos)
        if length < MIN_BATCH_LENGTH or pos + LOG_OVERHEAD + length > end \
                or magic != MAGIC or last_delta < 0:
            return
        last_seq = (base_seq + last_delta) & MAX_SEQUENCE if base_seq >= 0 else NO_SEQUENCE
        yield producer_id, epoch, base_seq, last_seq, base_offset, base_offset + last_delta
        pos += LOG_OVERHEAD + length


def _txn_batches(view, pos, end):
    """batches_from_buffer(..., transactions=True): one unpack a batch, the marker's
    record decoded only for a control batch."""
    unpack = _TXN_FIELDS.unpack_from
    size = _TXN_FIELDS.size
    while pos + size <= end:
        base_offset, length, magic, attributes, last_delta, producer_id, epoch, base_seq = unpack(view, pos)
        if length < MIN_BATCH_LENGTH or pos + LOG_OVERHEAD + length > end \
                or magic != MAGIC or last_delta < 0:
            return
        last_seq = (base_seq + last_delta) & MAX_SEQUENCE if base_seq >= 0 else NO_SEQUENCE
        marker = None
        if attributes & CONTROL_MASK:
            try:
                marker = RecordBatch(view[pos:pos + LOG_OVERHEAD + length]).end_txn_marker()
            except CorruptRecord:
                marker = None
        yield producer_id, epoch, base_seq, last_seq, base_offset, base_offset + last_delta, attributes, marker
        pos += LOG_OVERHEAD + length
