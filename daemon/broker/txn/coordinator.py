"""The transaction coordinator (KIP-98) as a sans-IO state machine, shaped like Kafka's
TransactionCoordinator and TransactionStateManager for one broker that leads the one
partition of __transaction_state.

Driving it (the broker loop does this through daemon/broker/txn_shell.py; tests with a
FakeClock):

    coord = TransactionCoordinator(TxnConfig(...), allocate_producer_id, partition_exists)
    effects = coord.load(records_of___transaction_state, now, coordinator_epoch)   # once
    effects = coord.handle(conn, handle, request, now)
    effects = coord.persisted(token, now, error)            # a Persist is durable (or failed)
    effects = coord.marker_written(token, topic, partition, now, error)   # a marker answered
    effects = coord.tick(now)              # whenever now >= coord.next_deadline()

and apply each effect in order (effects.py). Nothing here reads a clock, sleeps or does
I/O; `now` is ms since the epoch.

The rules are Kafka's:
- InitProducerId with a transactional id: the first one allocates a producer id (from
  the broker's one allocator) at epoch 0; each later one bumps the epoch, which fences
  the previous instance (its requests get PRODUCER_FENCED). If that instance left a
  transaction Ongoing, the coordinator first aborts it under the bumped epoch and
  answers CONCURRENT_TRANSACTIONS: the new instance retries and gets the epoch after.
  At epoch 32766 the producer id is used up and a new one is allocated at epoch 0.
  transaction.timeout.ms must be in 1..transaction.max.timeout.ms
  (INVALID_TRANSACTION_TIMEOUT). A producer that passes its id and epoch (a retry after
  an error) keeps its id if they are current, or the previous epoch of a bump it never
  heard of; anything else is PRODUCER_FENCED.
- AddPartitionsToTxn / AddOffsetsToTxn (the group's __consumer_offsets partition): the
  transaction becomes Ongoing (it starts now, if it was not open). Unknown producer id:
  INVALID_PRODUCER_ID_MAPPING; old epoch: PRODUCER_FENCED; a change under way, or a
  commit or abort still writing its markers: CONCURRENT_TRANSACTIONS.
- EndTxn: Ongoing -> PrepareCommit/PrepareAbort is written, the client answered, then a
  marker is written to every partition of the transaction (WriteMarkers; failures are
  retried with backoff; a partition of a deleted topic is skipped) and the
  CompleteCommit/CompleteAbort record follows. EndTxn in Empty, or the other outcome of a
  finished or finishing transaction: INVALID_TXN_STATE; the same outcome again:
  CONCURRENT_TRANSACTIONS while its markers are written, success once complete.
- Every change is written to __transaction_state before it takes effect (the answer
  waits for it); a failed write changes nothing and answers COORDINATOR_NOT_AVAILABLE or
  NOT_COORDINATOR (retriable), except the Complete record, which is retried until written.
- A transaction Ongoing for longer than its timeout is aborted under a bumped epoch
  (checked every transaction.abort.timed.out.transaction.cleanup.interval.ms); a
  transactional id with nothing open and no change for transactional.id.expiration.ms
  is forgotten (a tombstone), checked every
  transaction.remove.expired.transaction.cleanup.interval.ms.
- load(): the last record of each id wins; a transaction found PrepareCommit or
  PrepareAbort is completed (its markers written again), as after a coordinator
  failover in Kafka; one found Ongoing keeps its start time, so its timeout runs on.

The parts: state.py (TxnMetadata, the transitions), transaction_log.py (the record
bytes), markers.py (writing markers, then the Complete record), deadlines.py (when
transactions time out and ids expire, without a scan of every id), views.py
(DescribeTransactions, ListTransactions). Of several transactions timed out (or ids
expired) at one tick, the earliest due is handled first.
"""
import itertools

from odradek.client.errors import (
    ConcurrentTransactions, CoordinatorNotAvailable, InvalidGroupId, InvalidProducerIdMapping, InvalidRequest,
    InvalidTransactionTimeout, InvalidTxnState, MessageTooLarge, NotCoordinator, NotLeaderOrFollower,
    OdradekError, OperationNotAttempted, ProducerFenced, StorageError, UnknownServerError, UnknownTopicOrPartition)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import OFFSETS_TOPIC
from odradek.daemon.broker.txn import transaction_log as tlog
from odradek.daemon.broker.txn.config import TxnConfig
from odradek.daemon.broker.txn.deadlines import TxnDeadlines
from odradek.daemon.broker.txn.effects import Note, Persist, Reply
from odradek.daemon.broker.txn.markers import Markers
from odradek.daemon.broker.txn.state import (
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, IllegalTransition, TxnMetadata, TxnState,
    is_epoch_exhausted)
from odradek.daemon.broker.txn.views import describe_transactions, list_transactions

__all__ = ["TransactionCoordinator", "store_error"]

_S = TxnState


def store_error(error, transactional_id):
    """Kafka's mapping of a failed __transaction_state append to what the client sees."""
    what = f"writing transactional id {transactional_id} to __transaction_state failed: {error}"
    if isinstance(error, (NotLeaderOrFollower, StorageError)):
        return NotCoordinator(what + "; retry")
    if isinstance(error, MessageTooLarge) or not (isinstance(error, OdradekError) and error.retriable):
        return UnknownServerError(what)
    return CoordinatorNotAvailable(what + "; retry")


class TransactionCoordinator:
    """Every transactional id of the broker. Not thread-safe: one loop drives it."""

    def __init__(self, config=None, allocate_producer_id=None, partition_exists=None):
        """`allocate_producer_id()` hands out a new producer id (the broker's metadata
        owns them, for idempotent and transactional producers alike).
        `partition_exists(topic, partition)` tells a partition that does not exist:
        AddPartitionsToTxn refuses it, and a marker for it is skipped."""
        self.config = config or TxnConfig()
        self.allocate_producer_id = allocate_producer_id
        self.partition_exists = partition_exists or (lambda topic, partition: True)
        self.txns = {}                     # transactional id -> TxnMetadata
        self.coordinator_epoch = 0
        self.markers = Markers(self)
        self.deadlines = TxnDeadlines(self.txns, self.config.id_expiration_ms)   # timeouts, expiry
        self._continuations = {}           # Persist token -> continuation(now, error)
        self._tokens = itertools.count(1)
        self._last_abort_scan = None
        self._last_expiry_scan = None
        self._out = None
        self._dispatch = {
            m.InitProducerIdRequest: self._init_producer_id,
            m.AddPartitionsToTxnRequest: self._add_partitions_to_txn,
            m.AddOffsetsToTxnRequest: self._add_offsets_to_txn,
            m.EndTxnRequest: self._end_txn,
            m.DescribeTransactionsRequest: self._describe_transactions,
            m.ListTransactionsRequest: self._list_transactions,
        }

    # == the loop's interface ===========================================================
    def handle(self, conn, handle, request, now):
        """Any transaction request (InitProducerId with a transactional id). Returns effects."""
        handler = self._dispatch.get(type(request))
        if handler is None:
            raise TypeError(f"the transaction coordinator does not handle {type(request).__name__}")
        return self._run(handler, conn, handle, request, now)

    def persisted(self, token, now, error=None):
        """The Persist carrying `token` is durable (error None) or failed (an OdradekError)."""
        continuation = self._continuations.pop(token, None)
        if continuation is None:
            raise KeyError(f"no Persist is waiting with token {token}")
        return self._run(continuation, now, error)

    def marker_written(self, token, topic, partition, now, error=None):
        """The leader of (topic, partition) answered the WriteMarkers carrying `token`."""
        return self._run(self.markers.answered, token, (topic, partition), now, error)

    def tick(self, now):
        """Retry what failed, abort timed-out transactions, expire idle ids (what is due)."""
        return self._run(self._tick, now)

    def next_deadline(self):
        """The earliest time (ms) at which tick() has something to do; None if nothing.
        O(1) amortized (deadlines.py, and the markers' retry heap)."""
        dues = []
        retry = self.markers.next_retry()
        if retry is not None:
            dues.append(retry)
        open_due = self.deadlines.first_timeout()
        if open_due is not None:
            dues.append(_not_before(open_due, self._last_abort_scan,
                                    self.config.abort_timed_out_transaction_cleanup_interval_ms))
        idle_due = self.deadlines.first_expiry()
        if idle_due is not None:
            dues.append(_not_before(idle_due, self._last_expiry_scan,
                                    self.config.remove_expired_transaction_cleanup_interval_ms))
        return min(dues) if dues else None

    def verify(self, tid, producer_id, producer_epoch, partition):
        """None if `partition` (topic, partition) is in the open transaction of this
        producer (its current id and epoch), else the error to answer: how a write in
        the transaction is checked before it is made (TxnOffsetCommit: KIP-890's
        verification), so a fenced producer cannot write."""
        meta = self.txns.get(tid)
        try:
            self._check_producer(meta, tid, producer_id, producer_epoch)
        except OdradekError as e:
            return e
        if meta.state is not _S.ONGOING or partition not in meta.partitions:
            return InvalidTxnState(f"{partition[0]}-{partition[1]} is not in an open transaction of {tid} "
                                   f"({meta.state.display}); add it first")
        return None

    def load(self, records, now, coordinator_epoch=0):
        """Rebuild every transactional id from the records of __transaction_state, oldest
        first: (key bytes, value bytes or None). Replaces all state; call before serving.
        `coordinator_epoch` (the leader epoch of __transaction_state) goes in every marker."""
        return self._run(self._load, records, now, coordinator_epoch)

    # == effects ========================================================================
    def _run(self, fn, *args):
        self._out = []
        try:
            fn(*args)
            return self._out
        finally:
            self._out = None

    def reply(self, conn, handle, result):
        self._out.append(Reply(conn, handle, result))

    def note(self, transactional_id, text):
        self._out.append(Note(transactional_id, text))

    def emit(self, effect):
        self._out.append(effect)

    def persist_transit(self, meta, transit, then, retry_on_error=False):
        """Write `transit` for `meta` (a tombstone for Dead); once durable, `meta` takes it
        (Dead: the id is forgotten) and then(now, None) runs; if the write fails, the
        change is dropped (kept pending with `retry_on_error`) and then(now, error) runs
        with the error the client should see."""
        key = tlog.encode_key(meta.transactional_id)
        value = None if transit.state is _S.DEAD else tlog.encode_value(transit.record(), transit.state is _S.EMPTY)

        def done(now, error):
            if self.txns.get(meta.transactional_id) is not meta or meta.pending is not transit.state:
                then(now, error or NotCoordinator(f"transactional id {meta.transactional_id} was reloaded; retry"))
                return
            if error is not None:
                if not retry_on_error:
                    meta.abandon()
                then(now, store_error(error, meta.transactional_id))
            elif transit.state is _S.DEAD:
                del self.txns[meta.transactional_id]
                then(now, None)
            else:
                meta.complete(transit)
                then(now, None)
        token = next(self._tokens)
        self._continuations[token] = done
        self._out.append(Persist(((key, value),), token))

    # == InitProducerId =================================================================
    def _init_producer_id(self, conn, handle, req, now):
        tid = req.transactional_id
        if not tid:
            return self.reply(conn, handle, InvalidRequest("transactional_id is empty; leave it null for an "
                                                           "idempotent producer"))
        if not 0 < req.transaction_timeout_ms <= self.config.max_timeout_ms:
            return self.reply(conn, handle, InvalidTransactionTimeout(
                f"transaction.timeout.ms={req.transaction_timeout_ms} is not in 1..{self.config.max_timeout_ms} "
                f"(the broker's transaction.max.timeout.ms)"))
        meta = self.txns.get(tid)
        if meta is None:
            meta = TxnMetadata(tid, self.allocate_producer_id(), NO_PRODUCER_EPOCH, req.transaction_timeout_ms,
                               _S.EMPTY, now)
            self._adopt(meta)
        expected = (req.producer_id, req.producer_epoch) if req.producer_id != NO_PRODUCER_ID else None
        try:
            transit = self._init_transit(meta, req.transaction_timeout_ms, expected, now)
        except OdradekError as e:
            return self.reply(conn, handle, e)
        if transit.state is _S.PREPARE_EPOCH_FENCE:
            self.note(tid, f"a new instance fences producer {meta.producer_id} epoch {meta.producer_epoch}: "
                           f"its open transaction is aborted")

            def fenced(now, error):
                self.reply(conn, handle, error or ConcurrentTransactions(
                    f"the previous instance of {tid} left a transaction open; it is being aborted: retry"))
            self.end_transaction(tid, transit.producer_id, transit.producer_epoch, False, False, now, fenced)
            return

        def initialised(now, error):
            self.reply(conn, handle, error or m.InitProducerIdResponse(producer_id=meta.producer_id,
                                                                        producer_epoch=meta.producer_epoch))
        self.persist_transit(meta, transit, initialised)

    def _init_transit(self, meta, timeout_ms, expected, now):
        if meta.pending is not None or meta.state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
            raise ConcurrentTransactions(f"transactional id {meta.transactional_id} is {meta.state.display} with "
                                         f"a change under way; retry")
        if expected is not None and not (
                meta.producer_epoch == NO_PRODUCER_EPOCH or expected[0] == meta.producer_id
                or (expected[0] == meta.last_producer_id and is_epoch_exhausted(expected[1]))):
            raise ProducerFenced(f"producer id {expected[0]} is not {meta.transactional_id}'s any more")
        if meta.state is _S.ONGOING:
            return meta.prepare_fence_epoch()
        if meta.state not in (_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT):
            raise UnknownServerError(f"transactional id {meta.transactional_id} is {meta.state.display}")
        if meta.epoch_exhausted and (expected is None or expected[1] == meta.producer_epoch):
            return meta.prepare_rotate_producer_id(self.allocate_producer_id(), timeout_ms, now, expected is not None)
        transit = meta.prepare_increment_epoch(timeout_ms, None if expected is None else expected[1], now)
        if transit is None:
            raise ProducerFenced(f"epoch {expected[1]} of producer {meta.producer_id} is neither the current "
                                 f"({meta.producer_epoch}) nor the previous one: a newer instance fenced it")
        return transit

    # == AddPartitionsToTxn, AddOffsetsToTxn ============================================
    def _add_partitions_to_txn(self, conn, handle, req, now):
        if not req.transactional_id:
            return self.reply(conn, handle, InvalidRequest("transactional_id is empty"))
        wanted = sorted({(t.name, p) for t in req.topics for p in t.partitions})
        unknown = {tp for tp in wanted if not self.partition_exists(*tp)}

        def answer(now, error=None):
            by_topic = {}
            for tp in wanted:
                e = error
                if unknown:
                    e = UnknownTopicOrPartition(f"partition {tp[0]}-{tp[1]} does not exist") if tp in unknown \
                        else OperationNotAttempted("another partition of the request does not exist")
                by_topic.setdefault(tp[0], []).append(m.AddPartitionsToTxnPartitionResult(
                    partition_index=tp[1], **({"error_code": e.code, "error_message": e.message} if e else {})))
            self.reply(conn, handle, m.AddPartitionsToTxnResponse(results=[
                m.AddPartitionsToTxnTopicResult(name=t, results=rs) for t, rs in by_topic.items()]))
        if unknown or not wanted:
            return answer(now)
        self._add(req.transactional_id, req.producer_id, req.producer_epoch, wanted, now, answer)

    def _add_offsets_to_txn(self, conn, handle, req, now):
        if not req.transactional_id:
            return self.reply(conn, handle, InvalidRequest("transactional_id is empty"))
        if not req.group_id:
            return self.reply(conn, handle, InvalidGroupId("group_id is empty"))

        def answer(now, error=None):
            self.reply(conn, handle, error or m.AddOffsetsToTxnResponse())
        self._add(req.transactional_id, req.producer_id, req.producer_epoch, [(OFFSETS_TOPIC, 0)], now, answer)

    def _add(self, tid, producer_id, producer_epoch, partitions, now, answer):
        meta = self.txns.get(tid)
        try:
            self._check_producer(meta, tid, producer_id, producer_epoch)
            if meta.pending is not None or meta.state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
                raise ConcurrentTransactions(f"transaction {tid} is {meta.state.display} with a change under way; "
                                             f"retry")
        except OdradekError as e:
            return answer(now, e)
        if meta.state is _S.ONGOING and set(partitions) <= meta.partitions:
            return answer(now)
        self.persist_transit(meta, meta.prepare_add_partitions(partitions, now), answer)

    def _check_producer(self, meta, tid, producer_id, producer_epoch):
        if meta is None or meta.producer_id != producer_id:
            raise InvalidProducerIdMapping(f"producer id {producer_id} is not the one of transactional id {tid}; "
                                           f"call InitProducerId")
        if meta.producer_epoch != producer_epoch:
            raise ProducerFenced(f"epoch {producer_epoch} of producer {producer_id} is not current "
                                 f"({meta.producer_epoch}): a newer instance of {tid} fenced it")

    # == EndTxn =========================================================================
    def _end_txn(self, conn, handle, req, now):
        if not req.transactional_id:
            return self.reply(conn, handle, InvalidRequest("transactional_id is empty"))

        def answer(now, error):
            self.reply(conn, handle, error or m.EndTxnResponse())
        self.end_transaction(req.transactional_id, req.producer_id, req.producer_epoch, req.committed, True, now,
                             answer)

    def end_transaction(self, tid, producer_id, producer_epoch, commit, from_client, now, done):
        """Commit or abort `tid`'s transaction; done(now, error or None) once the Prepare
        record is durable (or at once if there is nothing to do or it is refused). Not
        from a client: the coordinator's own abort (a fence, a timeout), whose epoch is
        the pending fence's."""
        meta = self.txns.get(tid)
        outcome = "commit" if commit else "abort"
        try:
            if meta is None or meta.producer_id != producer_id:
                raise InvalidProducerIdMapping(f"producer id {producer_id} is not the one of transactional id {tid}")
            if (from_client and producer_epoch != meta.producer_epoch) or producer_epoch < meta.producer_epoch:
                raise ProducerFenced(f"epoch {producer_epoch} of producer {producer_id} is not current "
                                     f"({meta.producer_epoch}): a newer instance of {tid} fenced it")
            if meta.pending is not None and meta.pending is not _S.PREPARE_EPOCH_FENCE:
                raise ConcurrentTransactions(f"transaction {tid} has a change under way; retry")
            if meta.state in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT, _S.PREPARE_COMMIT, _S.PREPARE_ABORT):
                if (meta.state in (_S.COMPLETE_COMMIT, _S.PREPARE_COMMIT)) != commit:
                    raise InvalidTxnState(f"transaction {tid} is {meta.state.display}: it cannot {outcome}")
                if meta.state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
                    raise ConcurrentTransactions(f"transaction {tid} is {meta.state.display}: its markers are "
                                                 f"being written; retry")
                return done(now, None)   # a retry of an end that completed
            if meta.state is not _S.ONGOING:
                raise InvalidTxnState(f"transactional id {tid} has no open transaction to {outcome} "
                                      f"({meta.state.display})")
        except OdradekError as e:
            if meta is not None and meta.pending is _S.PREPARE_EPOCH_FENCE:
                meta.abandon()
            return done(now, e)
        fence = meta.pending is _S.PREPARE_EPOCH_FENCE
        if fence:
            meta.begin_abort_after_fence(producer_epoch)
        transit = meta.prepare_end(commit, now)

        def prepared(now, error):
            if error is not None:
                if fence:
                    meta.failed_epoch_fence = True   # the bumped epoch was never given out: reuse it
                return done(now, error)
            complete = meta.prepare_complete(now)
            done(now, None)
            self.markers.send(meta, complete)
        self.persist_transit(meta, transit, prepared)

    # == Describe and List ==============================================================
    def _describe_transactions(self, conn, handle, req, now):
        self.reply(conn, handle, describe_transactions(self.txns, req))

    def _list_transactions(self, conn, handle, req, now):
        self.reply(conn, handle, list_transactions(self.txns, req, now))

    # == time ===========================================================================
    def _tick(self, now):
        self.markers.retry_due(now)
        every = self.config.abort_timed_out_transaction_cleanup_interval_ms
        if self._last_abort_scan is None or now >= self._last_abort_scan + every:
            timed_out = self.deadlines.timed_out(now)   # start_ms + timeout_ms < now
            if timed_out:
                self._last_abort_scan = now
            for meta in timed_out:
                self._abort_timed_out(meta, now)
        every = self.config.remove_expired_transaction_cleanup_interval_ms
        if self._last_expiry_scan is None or now >= self._last_expiry_scan + every:
            idle = self.deadlines.expired(now)          # update_ms <= now - transactional.id.expiration.ms
            if idle:
                self._last_expiry_scan = now
            for meta in idle:
                self._expire(meta)

    def _abort_timed_out(self, meta, now):
        tid = meta.transactional_id
        self.note(tid, f"transaction of producer {meta.producer_id} open for {now - meta.start_ms} ms, more than "
                       f"its transaction.timeout.ms {meta.timeout_ms}: aborting it")
        transit = meta.prepare_fence_epoch()

        def aborted(now, error):
            if error is not None:
                self.note(tid, f"aborting the timed-out transaction failed: {error}")
        self.end_transaction(tid, transit.producer_id, transit.producer_epoch, False, False, now, aborted)

    def _expire(self, meta):
        tid = meta.transactional_id

        def expired(now, error):
            self.note(tid, f"expired after transactional.id.expiration.ms {self.config.id_expiration_ms} ms"
                      if error is None else f"expiring failed: {error}")
        self.persist_transit(meta, meta.prepare_dead(), expired)

    # == load ===========================================================================
    def _adopt(self, meta):
        """`meta` joins the ids: its deadlines are followed from now on."""
        self.txns[meta.transactional_id] = meta
        meta.watcher = self.deadlines.watch
        self.deadlines.watch(meta)

    def _load(self, records, now, coordinator_epoch):
        self.txns.clear()
        self.deadlines.clear()
        self._continuations.clear()
        self.markers.reset()
        self.coordinator_epoch = coordinator_epoch
        latest = {}
        for key, value in records:
            try:
                tid = tlog.decode_key(key)
                latest[tid] = None if value is None else tlog.decode_value(value)
            except tlog.FormatError as e:
                self.note("", f"skipped a record of __transaction_state that does not decode: {e}")
        for tid, record in latest.items():
            meta = None if record is None else TxnMetadata.from_record(tid, record)
            if meta is None or meta.state in (_S.DEAD, _S.PREPARE_EPOCH_FENCE):
                if record is not None:
                    self.note(tid, f"skipped: status {record.status} is not a state written to the log")
                continue
            self._adopt(meta)
        for meta in self.txns.values():
            if meta.state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
                self.note(meta.transactional_id, f"found {meta.state.display}: writing its markers again")
                try:
                    self.markers.send(meta, meta.prepare_complete(now))
                except IllegalTransition as e:
                    self.note(meta.transactional_id, f"cannot complete: {e}")


def _not_before(due, last_scan, every):
    """When a scan run every `every` ms (the last at `last_scan`) finds something due at `due`."""
    return due if last_scan is None else max(due, last_scan + every)
