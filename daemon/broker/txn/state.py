"""One transactional id's state: TxnState (Kafka's eight states, their ids in the log and
their legal predecessors) and TxnMetadata (what the coordinator keeps per id).

A change is made in two steps, as in Kafka's TransactionMetadata: prepare_*() checks the
transition, marks the change pending (no other may start meanwhile: the caller answers
CONCURRENT_TRANSACTIONS) and returns a TxnTransit, the new state to write to
__transaction_state; complete(transit) applies it once the record is durable, or
abandon() drops it if the write failed. A transition that Kafka forbids is a bug here:
IllegalTransition, never a client's fault (the coordinator checks requests first).
"""
from dataclasses import dataclass, replace
from enum import Enum

from odradek.daemon.broker.txn.transaction_log import TxnRecord

__all__ = ["TxnState", "TxnMetadata", "TxnTransit", "IllegalTransition", "NO_PRODUCER_ID", "NO_PRODUCER_EPOCH",
           "is_epoch_exhausted"]

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
_SHORT_MAX = 32767


def is_epoch_exhausted(epoch):
    """Kafka keeps the last epoch (32767) for fencing: at 32766 a producer id is used up."""
    return epoch >= _SHORT_MAX - 1


class IllegalTransition(Exception):
    """A transition the state machine does not allow: a bug in the coordinator."""


class TxnState(Enum):
    """(id in the log, name shown by Describe/ListTransactions)."""
    EMPTY = (0, "Empty")
    ONGOING = (1, "Ongoing")
    PREPARE_COMMIT = (2, "PrepareCommit")
    PREPARE_ABORT = (3, "PrepareAbort")
    COMPLETE_COMMIT = (4, "CompleteCommit")
    COMPLETE_ABORT = (5, "CompleteAbort")
    DEAD = (6, "Dead")                          # expiring: never written (a tombstone is)
    PREPARE_EPOCH_FENCE = (7, "PrepareEpochFence")   # never written (PrepareAbort is)

    @property
    def id(self):
        return self.value[0]

    @property
    def display(self):
        return self.value[1]

    @classmethod
    def from_id(cls, state_id):
        return _BY_ID.get(state_id)

    @classmethod
    def from_name(cls, name):
        return _BY_NAME.get(name)


_BY_ID = {s.id: s for s in TxnState}
_BY_NAME = {s.display: s for s in TxnState}
_S = TxnState

VALID_PREVIOUS = {
    _S.EMPTY: {_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT},
    _S.ONGOING: {_S.ONGOING, _S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT},
    _S.PREPARE_COMMIT: {_S.ONGOING},
    _S.PREPARE_ABORT: {_S.ONGOING, _S.PREPARE_EPOCH_FENCE},
    _S.COMPLETE_COMMIT: {_S.PREPARE_COMMIT},
    _S.COMPLETE_ABORT: {_S.PREPARE_ABORT},
    _S.DEAD: {_S.EMPTY, _S.COMPLETE_ABORT, _S.COMPLETE_COMMIT},
    _S.PREPARE_EPOCH_FENCE: {_S.ONGOING},
}
# states in which a transaction is open: its partitions may hold records not yet decided
OPEN_STATES = frozenset({_S.ONGOING, _S.PREPARE_COMMIT, _S.PREPARE_ABORT})
# states in which an idle transactional id may expire (transactional.id.expiration.ms)
EXPIRABLE_STATES = frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT})


@dataclass(frozen=True)
class TxnTransit:
    """The state a pending change leads to (what its log record says)."""
    producer_id: int
    last_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset        # of (topic, partition)
    start_ms: int                # when the transaction began: its first partition; -1 none
    update_ms: int

    def record(self):
        """The __transaction_state value of this state (PrepareEpochFence never reaches the log)."""
        return TxnRecord(self.producer_id, self.producer_epoch, self.timeout_ms, self.state.id,
                         self.partitions, self.update_ms, self.start_ms)


class TxnMetadata:
    """Everything the coordinator knows of one transactional id. Not thread-safe."""

    def __init__(self, transactional_id, producer_id, producer_epoch, timeout_ms, state, update_ms, *,
                 last_producer_id=NO_PRODUCER_ID, last_producer_epoch=NO_PRODUCER_EPOCH,
                 partitions=(), start_ms=-1):
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.last_producer_id = last_producer_id
        self.producer_epoch = producer_epoch
        self.last_producer_epoch = last_producer_epoch
        self.timeout_ms = timeout_ms
        self.state = state
        self.partitions = set(partitions)
        self.start_ms = start_ms
        self.update_ms = update_ms
        self.pending = None              # the TxnState a change under way leads to
        self.failed_epoch_fence = False  # a fence's record failed: its bumped epoch is reused
        self.watcher = None              # called with self once a change is taken or dropped

    @classmethod
    def from_record(cls, transactional_id, record):
        """The state a __transaction_state value describes (the last epoch is not in the
        log: -1, as Kafka loads it). None if the status is not a state."""
        state = TxnState.from_id(record.status)
        if state is None:
            return None
        return cls(transactional_id, record.producer_id, record.producer_epoch, record.timeout_ms, state,
                   record.last_update_ms, partitions=record.partitions if state is not _S.EMPTY else (),
                   start_ms=record.start_ms)

    def __repr__(self):
        return (f"TxnMetadata({self.transactional_id!r}, pid={self.producer_id}, epoch={self.producer_epoch}, "
                f"state={self.state.display}, pending={self.pending and self.pending.display}, "
                f"partitions={sorted(self.partitions)})")

    @property
    def epoch_exhausted(self):
        return is_epoch_exhausted(self.producer_epoch)

    # ---- preparing a change ------------------------------------------------------------
    def _prepare(self, state, **changes):
        if self.pending is not None:
            raise IllegalTransition(f"{self!r}: a change to {self.pending.display} is under way")
        if self.state not in VALID_PREVIOUS[state]:
            raise IllegalTransition(f"{self!r}: {self.state.display} -> {state.display} is not a legal transition")
        transit = TxnTransit(self.producer_id, self.producer_id, self.producer_epoch, self.last_producer_epoch,
                             self.timeout_ms, state, frozenset(self.partitions), self.start_ms, self.update_ms)
        transit = replace(transit, **changes)
        if transit.producer_id < 0 or (state is not _S.DEAD and transit.producer_epoch < 0):
            raise IllegalTransition(f"{self!r}: producer id {transit.producer_id} epoch {transit.producer_epoch}")
        self.pending = state
        return transit

    def prepare_fence_epoch(self):
        """Ongoing -> PrepareEpochFence: the epoch + 1 (once: after a failed fence the same
        bumped epoch again), to abort the open transaction under it."""
        if self.producer_epoch >= _SHORT_MAX:
            raise IllegalTransition(f"{self!r}: the epoch cannot be bumped past {_SHORT_MAX}")
        epoch = self.producer_epoch if self.failed_epoch_fence else self.producer_epoch + 1
        return self._prepare(_S.PREPARE_EPOCH_FENCE, producer_epoch=epoch, last_producer_epoch=NO_PRODUCER_EPOCH)

    def prepare_increment_epoch(self, timeout_ms, expected_epoch, now):
        """-> Empty with the next epoch (InitProducerId). `expected_epoch` is the caller's
        epoch (None: a new instance). Returns the transit, or None if the caller is fenced
        (its epoch is neither the current nor the previous one)."""
        if self.epoch_exhausted:
            raise IllegalTransition(f"{self!r}: no epoch left for producer id {self.producer_id}")
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            epoch, last = self.producer_epoch, self.last_producer_epoch   # a retry of a bump that was answered
        else:
            return None
        return self._prepare(_S.EMPTY, producer_epoch=epoch, last_producer_epoch=last, timeout_ms=timeout_ms,
                             partitions=frozenset(), start_ms=-1, update_ms=now)

    def prepare_rotate_producer_id(self, new_producer_id, timeout_ms, now, keep_last_epoch):
        """-> Empty under a new producer id at epoch 0 (the old one's epochs are used up)."""
        if self.state in OPEN_STATES:
            raise IllegalTransition(f"{self!r}: cannot change producer id with a transaction open")
        return self._prepare(_S.EMPTY, producer_id=new_producer_id, producer_epoch=0,
                             last_producer_epoch=self.producer_epoch if keep_last_epoch else NO_PRODUCER_EPOCH,
                             timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1, update_ms=now)

    def prepare_add_partitions(self, partitions, now):
        """-> Ongoing with `partitions` added; a new transaction starts now."""
        start = now if self.state in (_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT) else self.start_ms
        return self._prepare(_S.ONGOING, partitions=frozenset(self.partitions) | frozenset(partitions),
                             start_ms=start, update_ms=now)

    def prepare_end(self, commit, now):
        """Ongoing -> PrepareCommit / PrepareAbort."""
        return self._prepare(_S.PREPARE_COMMIT if commit else _S.PREPARE_ABORT, update_ms=now)

    def prepare_complete(self, now):
        """PrepareCommit -> CompleteCommit, PrepareAbort -> CompleteAbort (every marker written)."""
        state = _S.COMPLETE_COMMIT if self.state is _S.PREPARE_COMMIT else _S.COMPLETE_ABORT
        self.failed_epoch_fence = False
        return self._prepare(state, partitions=frozenset(), update_ms=now)

    def prepare_dead(self):
        """-> Dead: the id expires (its tombstone is written)."""
        return self._prepare(_S.DEAD, partitions=frozenset())

    # ---- finishing it ------------------------------------------------------------------
    def begin_abort_after_fence(self, epoch):
        """PrepareEpochFence (pending) -> the bumped epoch is taken at once, so that the
        abort of the fenced transaction can be prepared from Ongoing under it."""
        if self.pending is not _S.PREPARE_EPOCH_FENCE:
            raise IllegalTransition(f"{self!r}: no epoch fence is pending")
        self.pending = None
        self.producer_epoch = epoch
        self.last_producer_epoch = NO_PRODUCER_EPOCH
        self._changed()

    def complete(self, transit):
        """The record of `transit` is durable: take its state."""
        if self.pending is not transit.state or transit.state in (_S.DEAD, _S.PREPARE_EPOCH_FENCE):
            raise IllegalTransition(f"{self!r}: cannot complete a change to {transit.state.display}")
        self.producer_id = transit.producer_id
        self.last_producer_id = transit.last_producer_id
        self.producer_epoch = transit.producer_epoch
        self.last_producer_epoch = transit.last_producer_epoch
        self.timeout_ms = transit.timeout_ms
        self.partitions = set(transit.partitions)
        self.start_ms = transit.start_ms
        self.update_ms = transit.update_ms
        self.state = transit.state
        self.pending = None
        self._changed()

    def abandon(self):
        """The change under way will not happen (its record failed)."""
        self.pending = None
        self._changed()

    def _changed(self):
        if self.watcher is not None:
            self.watcher(self)
