"""The I/O shell around the group coordinator (daemon/broker/groups, sans-IO).

The broker's loop calls in here; this module turns the coordinator's effects into I/O:
    Reply    -> Broker.reply on the client's connection (dropped if it closed)
    Persist  -> one v2 batch of the (key, value) records (a transactional one for a
                TxnOffsetCommit), appended to __consumer_offsets
                by that partition's worker (AppendRecords over its link, FIFO, so
                persists land in the order they were emitted); persisted(token) follows
                the worker's answer (with the batch's offset), and the replies that waited
                for it go out then
    Note     -> the broker's log
__consumer_offsets is an internal topic with one partition and cleanup.policy=compact,
created at the first start. Its records are read once at start, before any worker runs,
and loaded into the coordinator.
"""
import logging
import time

from odradek.client.errors import OdradekError
from odradek.daemon.broker import internal_topics
from odradek.daemon.broker.groups import OFFSETS_TOPIC, GroupCoordinator, Note, Peer, Persist, Reply
from odradek.daemon.broker.internal_topics import now_ms

__all__ = ["GroupShell", "OFFSETS_TOPIC"]

log = logging.getLogger(__name__)


class GroupShell:
    def __init__(self, broker):
        """The coordinator of `broker`, with the group settings of its config."""
        self.broker = broker
        self.coordinator = GroupCoordinator(broker.config.group, partition_exists=self._partition_exists)

    def _partition_exists(self, topic, partition):
        return internal_topics.partition_exists(self.broker, topic, partition)

    # == start ============================================================================
    def ensure_offsets_topic(self):
        """Create __consumer_offsets (metadata only; its worker starts with the others)."""
        internal_topics.ensure(self.broker, OFFSETS_TOPIC)

    def load(self):
        """Read every record of __consumer_offsets (before its worker starts) and give
        them to the coordinator."""
        records = internal_topics.read_records(self.broker, OFFSETS_TOPIC)
        if records is None:
            log.error("%s is offline (its log dir is): consumer groups start with no committed offsets",
                      OFFSETS_TOPIC)
            return
        self.apply(self.coordinator.load(records, now_ms()))
        log.info("loaded %d records of %s: %d groups", len(records), OFFSETS_TOPIC,
                 len(self.coordinator.groups))

    # == the loop's calls =================================================================
    def handle(self, conn, request):
        message = request.message
        peer = Peer(conn, getattr(message, "client_id", ""), conn.pid, conn.uid, getattr(message, "client_host", None))
        self.apply(self.coordinator.handle(peer, request.correlation_id, request.message, now_ms()))

    def txn_completed(self, producer_id, commit):
        """A transaction's marker is written to __consumer_offsets (txn_shell.py)."""
        self.apply(self.coordinator.txn_completed(producer_id, commit, now_ms()))

    def connection_closed(self, conn):
        self.apply(self.coordinator.connection_closed(conn, now_ms()))

    def topic_deleted(self, name):
        self.apply(self.coordinator.topic_deleted(name, now_ms()))

    def next_deadline_s(self):
        """The coordinator's next deadline as a time.monotonic() value, or None."""
        due = self.coordinator.next_deadline()
        if due is None:
            return None
        return time.monotonic() + max(0, due - now_ms()) / 1000

    def tick(self):
        due = self.coordinator.next_deadline()
        if due is not None and now_ms() >= due:
            self.apply(self.coordinator.tick(now_ms()))

    # == effects ==========================================================================
    def apply(self, effects):
        for effect in effects:
            if isinstance(effect, Reply):
                self.broker.reply(effect.conn, effect.handle, effect.result)
            elif isinstance(effect, Persist):
                self._persist(effect)
            elif isinstance(effect, Note):
                log.info("group %s: %s", effect.group_id, effect.text)

    def _persist(self, effect):
        token = effect.token

        def done(result):
            if token is None:
                if isinstance(result, OdradekError):
                    log.error("appending to %s failed: %s", OFFSETS_TOPIC, result)
                return
            if isinstance(result, OdradekError):
                self.apply(self.coordinator.persisted(token, now_ms(), result))
            else:   # where the batch landed: the order of offsets committed (groups/txn_offsets.py)
                self.apply(self.coordinator.persisted(token, now_ms(), None, result.base_offset))
        internal_topics.append(self.broker, OFFSETS_TOPIC, effect.records, done, effect.producer)
