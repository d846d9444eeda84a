"""The I/O shell around the transaction coordinator (daemon/broker/txn, sans-IO).

The broker's loop calls in here; this module turns the coordinator's effects into I/O:
    Reply        -> Broker.reply on the client's connection (dropped if it closed)
    Persist      -> one v2 batch appended to __transaction_state by that partition's
                    worker (internal_topics.append: AppendRecords, FIFO); persisted(token)
                    follows the worker's answer
    WriteMarkers -> one WriteTxnMarkerRequest to the leader worker of each partition
                    (worker_request); marker_written(token, ...) follows each answer: an
                    error if the partition has no running leader (it restarts, or a new
                    one is being elected) or its topic is gone; the coordinator retries.
                    A marker written to __consumer_offsets also tells the group
                    coordinator (txn_completed: the offsets committed in the transaction)
    Note         -> the broker's log
and its deadlines (timeouts, expiry, retries) into the loop's timers (call_later).
__transaction_state is an internal topic with one partition and cleanup.policy=compact,
created at the first start; its records are read once at start, before any worker runs,
and loaded into the coordinator, which then completes any transaction it finds half
ended (PrepareCommit/PrepareAbort) once the partitions' workers answer.
"""
import logging

from odradek.client.errors import OdradekError, UnknownTopicOrPartition
from odradek.daemon.broker import internal_topics
from odradek.daemon.broker.groups import OFFSETS_TOPIC
from odradek.daemon.broker.internal_topics import now_ms
from odradek.daemon.broker.txn import TXN_TOPIC, Note, Persist, Reply, TransactionCoordinator, WriteMarkers

__all__ = ["TxnShell", "TXN_TOPIC"]

log = logging.getLogger(__name__)


class TxnShell:
    def __init__(self, broker):
        """The coordinator of `broker`, with the transaction settings of its config; the
        producer ids come from the broker's metadata, the one allocator."""
        self.broker = broker
        self.coordinator = TransactionCoordinator(broker.config.txn, broker.metadata.allocate_producer_id,
                                                  self._partition_exists)
        self._timer_due = None      # ms: the earliest tick the loop has been asked for

    def _partition_exists(self, topic, partition):
        return internal_topics.partition_exists(self.broker, topic, partition)

    # == start ============================================================================
    def ensure_topic(self):
        """Create __transaction_state (metadata only; its worker starts with the others)."""
        internal_topics.ensure(self.broker, TXN_TOPIC)

    def load(self):
        """Read every record of __transaction_state (before its worker starts) and give
        them to the coordinator, with the partition's leader epoch as its epoch."""
        records = internal_topics.read_records(self.broker, TXN_TOPIC)
        if records is None:
            log.error("%s is offline (its log dir is): transactions start with no state", TXN_TOPIC)
            return
        records = [r[:2] for r in records if isinstance(r, tuple)]   # nobody writes it in transactions
        epoch = self.broker.metadata.topics[TXN_TOPIC].partitions[0].leader_epoch
        self.apply(self.coordinator.load(records, now_ms(), epoch))
        log.info("loaded %d records of %s: %d transactional ids", len(records), TXN_TOPIC,
                 len(self.coordinator.txns))

    # == the loop's calls =================================================================
    def handle(self, conn, request):
        self.apply(self.coordinator.handle(conn, request.correlation_id, request.message, now_ms()))

    def verify(self, request):
        """The error for a TxnOffsetCommit whose producer is not current or whose
        transaction does not hold the offsets partition (AddOffsetsToTxn), else None."""
        return self.coordinator.verify(request.transactional_id, request.producer_id, request.producer_epoch,
                                       (OFFSETS_TOPIC, 0))

    def _tick(self):
        self._timer_due = None
        if not self.broker.stopping:
            self.apply(self.coordinator.tick(now_ms()))

    def _schedule(self):
        due = self.coordinator.next_deadline()
        if due is None or (self._timer_due is not None and self._timer_due <= due) or self.broker.stopping:
            return
        self._timer_due = due
        self.broker.call_later(max(0, due - now_ms()) / 1000 + 0.001, self._tick)

    # == effects ==========================================================================
    def apply(self, effects):
        for effect in effects:
            if isinstance(effect, Reply):
                self.broker.reply(effect.conn, effect.handle, effect.result)
            elif isinstance(effect, Persist):
                self._persist(effect)
            elif isinstance(effect, WriteMarkers):
                for marker in effect.markers:
                    self._write_marker(effect.token, marker)
            elif isinstance(effect, Note):
                log.info("transactional id %s: %s", effect.transactional_id, effect.text)
        self._schedule()

    def _persist(self, effect):
        def done(result):
            error = result if isinstance(result, OdradekError) else None
            self.apply(self.coordinator.persisted(effect.token, now_ms(), error))
        internal_topics.append(self.broker, TXN_TOPIC, effect.records, done)

    def _write_marker(self, token, marker):
        def done(result):
            error = result if isinstance(result, OdradekError) else None
            if error is None and marker.topic == OFFSETS_TOPIC:   # the group coordinator's turn
                self.broker.groups.txn_completed(marker.producer_id, marker.committed)
            self.apply(self.coordinator.marker_written(token, marker.topic, marker.partition, now_ms(), error))
        if not self._partition_exists(marker.topic, marker.partition):
            done(UnknownTopicOrPartition(f"partition {marker.topic}-{marker.partition} does not exist"))
            return
        self.broker.worker_request((marker.topic, marker.partition), marker, done)
