"""The transactional Producer's state machine (KIP-98), sans-IO: Kafka's TransactionManager
states, confluent-kafka's error classification. The Producer (client/producer.py) is its
I/O shell; tests drive it with a fake clock (tests/client/test_txn_manager.py).

Theory of operation
  States (Kafka's TransactionManager.State) and what moves them:

    UNINITIALIZED --init_transactions--> INITIALIZING --InitProducerId answered--> READY
    READY --begin_transaction--> IN_TRANSACTION
    IN_TRANSACTION --commit_transaction--> COMMITTING_TRANSACTION --EndTxn answered--> READY
    IN_TRANSACTION, ABORTABLE_ERROR --abort_transaction--> ABORTING_TRANSACTION --EndTxn--> READY
    IN_TRANSACTION, COMMITTING_TRANSACTION --abortable failure--> ABORTABLE_ERROR
    any --fatal failure--> FATAL_ERROR (for good: every later call raises that error)

  Each of the Producer's transactional calls is an operation: start it (start_init,
  start_add, start_send_offsets, start_commit, start_abort) with `now` and its timeout
  (seconds; None: no limit); the core returns the first action, the shell performs it
  and hands the outcome to step(outcome, now), which returns the next one, until Done:

    Request(request)   send this control request; outcome: the response, or the
                       OdradekError it raised
    Flush(timeout)     wait for every record produced to be delivered, up to timeout
                       (None: no limit); outcome: how many are still undelivered
    Purge()            fail the records not yet in a ring with TransactionAborted; outcome: None
    Wait(seconds)      back off, then step(None) (a retriable answer: the request again)
    Done(result)       the operation is over

  One operation runs at a time (the shell serialises them); batch_failed() comes from
  the sender thread between steps, which is why step() looks at the state again.

  Errors: a call not valid in the state raises IllegalState and changes nothing (in
  ABORTABLE_ERROR or FATAL_ERROR it raises the error that caused it instead). A failure
  raises the error with its flags set, after moving the state: retriable answers
  (errors.py's `retriable`: CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, ...) are
  retried until the timeout, which then raises RequestTimedOut(retriable=True) leaving
  the state as it was, so the same call resumes the operation; fenced (PRODUCER_FENCED,
  INVALID_PRODUCER_EPOCH: a newer instance has the transactional.id) is fatal; a batch
  refused, or an offset commit refused by the group, is abortable (txn_requires_abort);
  any other coordinator answer is fatal, as in Kafka's TransactionManager handlers.
"""
import enum
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from odradek.client.errors import (FencedInstanceId, IllegalGeneration, IllegalState,
                                   InvalidProducerEpoch, OdradekError, OperationNotAttempted, ProducerFenced, RebalanceInProgress,
                                   RequestTimedOut, UnknownMemberId, error_for_code)
from odradek.client.message import GroupMetadata, TopicPartition
from odradek.client.protocol import messages as m

__all__ = ["TxnState", "TxnManager", "Request", "Flush", "Purge", "Wait", "Done", "backoff"]

# Retry backoff: 0.25 ms, doubling to 20 ms (Kafka's producer retries CONCURRENT_TRANSACTIONS
# after 20 ms). A transaction's first AddPartitionsToTxn meets CONCURRENT_TRANSACTIONS
# while the previous commit's markers are written (a few ms): a flat 20 ms would cost
# each transaction of a busy producer ~20 ms (perf/transactions_perf.py).
RETRY_BACKOFF_MIN_S, RETRY_BACKOFF_MAX_S = 0.00025, 0.02
_FENCED = (ProducerFenced, InvalidProducerEpoch)
_GROUP_FENCED = (UnknownMemberId, IllegalGeneration, FencedInstanceId, RebalanceInProgress)


class TxnState(enum.Enum):
    UNINITIALIZED = "UNINITIALIZED"
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    IN_TRANSACTION = "IN_TRANSACTION"
    COMMITTING_TRANSACTION = "COMMITTING_TRANSACTION"
    ABORTING_TRANSACTION = "ABORTING_TRANSACTION"
    ABORTABLE_ERROR = "ABORTABLE_ERROR"
    FATAL_ERROR = "FATAL_ERROR"


_S = TxnState


@dataclass(frozen=True)
class Request:
    request: Any


@dataclass(frozen=True)
class Flush:
    timeout: Optional[float]


@dataclass(frozen=True)
class Purge:
    pass


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Done:
    result: Any = None


Action = Any   # one of Request, Flush, Purge, Wait, Done


def backoff(attempt: int) -> float:
    """The wait before retry number `attempt` (0, 1, ...)."""
    return min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_MIN_S * (1 << min(attempt, 10)))


def _refused(results: list) -> Optional[OdradekError]:
    """The error of a per-partition answer [(where, error code, message)], or None: the
    cause, not OPERATION_NOT_ATTEMPTED (what the other partitions of the request get)."""
    failed = sorted((r for r in results if r[1]), key=lambda r: r[1] == OperationNotAttempted.code)
    if not failed:
        return None
    where, code, message = failed[0]
    cls = error_for_code(code)
    return cls(f"{where}: {message or (cls.__doc__ or cls.name).rstrip('.')}")


def _fatal(error: OdradekError) -> OdradekError:
    error.fatal, error.retriable, error.txn_requires_abort = True, False, False
    return error


def _abortable(error: OdradekError) -> OdradekError:
    error.txn_requires_abort, error.retriable = True, False
    return error


class TxnManager:
    """The transaction state of one transactional Producer. Not thread-safe: the shell
    holds a lock around each call."""

    def __init__(self, transactional_id: str, transaction_timeout_ms: int) -> None:
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.state = _S.UNINITIALIZED
        self.producer_id, self.producer_epoch = -1, -1
        self.partitions: set = set()     # (topic, partition) in the open transaction
        self.started = False             # the coordinator has it open (partitions or offsets added)
        self.error: Optional[OdradekError] = None   # what put us in ABORTABLE_ERROR / FATAL_ERROR
        self._op: Optional[str] = None
        self._deadline: Optional[float] = None
        self._pending: Any = None        # what the operation sends next, or sent last
        self._offsets: Any = None        # send_offsets: the TxnOffsetCommit, after AddOffsetsToTxn
        self._retries = 0                # of the operation's current request

    # == checks ======================================================================
    def _raise_error_state(self) -> None:
        if self.state in (_S.FATAL_ERROR, _S.ABORTABLE_ERROR):
            assert self.error is not None
            raise self.error

    def _require(self, what: str, *states: TxnState) -> None:
        if self.state in states:
            return
        self._raise_error_state()
        raise IllegalState(f"{what} is not valid in state {self.state.value}" + _HINTS.get(self.state, ""))

    def check_produce(self) -> None:
        """produce() is valid only inside a transaction."""
        self._require("produce()", _S.IN_TRANSACTION)

    def begin(self) -> None:
        self._require("begin_transaction()", _S.READY)
        self.state = _S.IN_TRANSACTION
        self.partitions, self.started = set(), False

    # == starting operations ===========================================================
    def _start(self, op: str, now: float, timeout: Optional[float], first: Any) -> Action:
        self._op, self._pending, self._retries = op, first, 0
        self._deadline = None if timeout is None else now + max(0.0, timeout)
        return first if isinstance(first, (Flush, Purge, Done)) else Request(first)

    def start_init(self, now: float, timeout: Optional[float]) -> Action:
        self._require("init_transactions()", _S.UNINITIALIZED, _S.INITIALIZING)
        self.state = _S.INITIALIZING
        return self._start("init", now, timeout, m.InitProducerIdRequest(
            transactional_id=self.transactional_id, transaction_timeout_ms=self.transaction_timeout_ms))

    def start_add(self, partitions: Iterable, now: float, timeout: Optional[float]) -> Action:
        """Add (topic, partition)s to the transaction: AddPartitionsToTxn for those not in it."""
        self.check_produce()
        new = sorted(set(partitions) - self.partitions)
        if not new:
            return Done()
        topics: dict = {}
        for t, p in new:
            topics.setdefault(t, []).append(p)
        return self._start("add", now, timeout, m.AddPartitionsToTxnRequest(
            transactional_id=self.transactional_id, producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            topics=[m.AddPartitionsToTxnTopic(name=t, partitions=ps) for t, ps in topics.items()]))

    def start_send_offsets(self, positions: Iterable[TopicPartition], group: GroupMetadata, now: float,
                           timeout: Optional[float]) -> Action:
        self._require("send_offsets_to_transaction()", _S.IN_TRANSACTION)
        topics: dict = {}
        for tp in positions:
            topics.setdefault(tp.topic, []).append(m.TxnOffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=tp.offset,
                committed_metadata=getattr(tp, "metadata", None) or None))
        self._offsets = m.TxnOffsetCommitRequest(
            transactional_id=self.transactional_id, group_id=group.group_id, producer_id=self.producer_id,
            producer_epoch=self.producer_epoch, generation_id=group.generation_id, member_id=group.member_id,
            group_instance_id=group.group_instance_id,
            topics=[m.TxnOffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in topics.items()])
        return self._start("offsets", now, timeout, m.AddOffsetsToTxnRequest(
            transactional_id=self.transactional_id, producer_id=self.producer_id,
            producer_epoch=self.producer_epoch, group_id=group.group_id))

    def start_commit(self, now: float, timeout: Optional[float]) -> Action:
        """Flush, then EndTxn(commit) if the coordinator has the transaction open."""
        self._require("commit_transaction()", _S.IN_TRANSACTION, _S.COMMITTING_TRANSACTION)
        self.state = _S.COMMITTING_TRANSACTION
        return self._start("commit", now, timeout, Flush(timeout))

    def start_abort(self, now: float, timeout: Optional[float]) -> Action:
        """Purge what is not in a ring, wait for what is, then EndTxn(abort)."""
        if self.state is not _S.ABORTABLE_ERROR:
            self._require("abort_transaction()", _S.IN_TRANSACTION, _S.ABORTING_TRANSACTION)
        self.state = _S.ABORTING_TRANSACTION
        return self._start("abort", now, timeout, Purge())

    # == outcomes ======================================================================
    def step(self, outcome: Any, now: float) -> Action:
        """The outcome of the action returned last: the next action (or an error raised)."""
        op, pending = self._op, self._pending
        if op is None:
            raise IllegalState("step() with no operation under way")
        if isinstance(outcome, OdradekError):
            return self._failed(outcome, now)
        if isinstance(pending, Purge):
            self._pending = Flush(self._left(now))
            return self._pending
        if isinstance(pending, Flush):
            return self._flushed(outcome)
        if outcome is None:    # after a Wait: the request again
            return Request(pending)
        self._retries = 0
        return self._answered(outcome, now)

    def _left(self, now: float) -> Optional[float]:
        return None if self._deadline is None else max(0.0, self._deadline - now)

    def _flushed(self, undelivered: int) -> Action:
        if self.state is not _S.ABORTING_TRANSACTION:
            self._raise_error_state()     # a batch failed meanwhile (batch_failed)
        if undelivered:
            self._op = None
            raise RequestTimedOut(f"{undelivered} records of the transaction were not delivered within the "
                                  f"timeout; call {self._op_name()} again", retriable=True)
        return self._end()

    def _op_name(self) -> str:
        return "abort_transaction()" if self.state is _S.ABORTING_TRANSACTION else "commit_transaction()"

    def _end(self) -> Action:
        if not self.started:             # nothing reached the coordinator: nothing to end there
            return self._ended()
        self._pending = m.EndTxnRequest(transactional_id=self.transactional_id, producer_id=self.producer_id,
                                        producer_epoch=self.producer_epoch,
                                        committed=self.state is _S.COMMITTING_TRANSACTION)
        return Request(self._pending)

    def _answered(self, response: Any, now: float) -> Action:
        op = self._op
        if op == "init":
            self.producer_id, self.producer_epoch = response.producer_id, response.producer_epoch
            self.state = _S.READY
            return self._finish((self.producer_id, self.producer_epoch))
        if op == "add":
            refused = _refused([(f"{t.name}-{r.partition_index}", r.error_code, r.error_message)
                                for t in response.results for r in t.results])
            if refused is not None:
                return self._failed(refused, now)
            self.partitions.update((t.name, r.partition_index) for t in response.results for r in t.results)
            self.started = True
            return self._finish(None)
        if op == "offsets":
            if isinstance(self._pending, m.AddOffsetsToTxnRequest):
                self.started = True
                self._pending = self._offsets
                return Request(self._pending)
            refused = _refused([(f"{t.name}-{p.partition_index}", p.error_code, p.error_message)
                                for t in response.topics for p in t.partitions])
            if refused is not None:
                return self._failed(refused, now)
            return self._finish(None)
        return self._ended()        # EndTxn answered: commit or abort

    def _ended(self) -> Done:
        self.state = _S.READY
        self.partitions, self.started = set(), False
        return self._finish(None)

    def _finish(self, result: Any) -> Done:
        self._op = self._pending = self._offsets = None
        return Done(result)

    def _failed(self, error: OdradekError, now: float) -> Action:
        if isinstance(error, _FENCED):
            return self._fail_fatal(error)
        if error.retriable:
            left, wait = self._left(now), backoff(self._retries)
            if left is None or left > wait:
                self._retries += 1
                return Wait(wait)
            self._op = None
            raise RequestTimedOut(f"{error} (retried until the timeout; call again to resume)", retriable=True)
        if self._op == "offsets" and isinstance(error, _GROUP_FENCED):
            return self._fail_abortable(error)   # the consumer left its generation: KIP-447's abortable case
        return self._fail_fatal(error)

    def _fail_fatal(self, error: OdradekError) -> Action:
        self._op = None
        self.state, self.error = _S.FATAL_ERROR, _fatal(error)
        raise error

    def _fail_abortable(self, error: OdradekError) -> Action:
        self._op = None
        self.state, self.error = _S.ABORTABLE_ERROR, _abortable(error)
        raise error

    # == from the sender ===============================================================
    def batch_failed(self, error: OdradekError) -> None:
        """A batch of the transaction was refused by its partition's leader: fenced is
        fatal; anything else makes the transaction abortable (ignored while aborting)."""
        if self.state is _S.FATAL_ERROR:
            return
        if isinstance(error, _FENCED):
            self.state, self.error = _S.FATAL_ERROR, _fatal(error)
        elif self.state in (_S.IN_TRANSACTION, _S.COMMITTING_TRANSACTION):
            self.state, self.error = _S.ABORTABLE_ERROR, _abortable(error)


_HINTS = {
    _S.UNINITIALIZED: ": call init_transactions() first",
    _S.INITIALIZING: ": init_transactions() has not completed; call it again",
    _S.READY: ": no transaction is open; call begin_transaction() first",
    _S.IN_TRANSACTION: ": a transaction is open; commit_transaction() or abort_transaction() it first",
    _S.COMMITTING_TRANSACTION: ": the transaction is being committed; call commit_transaction() again",
    _S.ABORTING_TRANSACTION: ": the transaction is being aborted; call abort_transaction() again",
}
