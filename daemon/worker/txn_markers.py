"""The partition leader's side of transactions (KIP-98): the markers the transaction
coordinator asks for, the transactions its appends open, the last stable offset it
publishes.

- WriteTxnMarker (client/protocol/_messages_txn.py, the contract with the broker's
  coordinator): the leader checks the producer epoch (below the producer's: refused with
  INVALID_PRODUCER_EPOCH, nothing written) and the coordinator epoch (below the one of
  the producer's last marker: TRANSACTION_COORDINATOR_FENCED, nothing written), builds the control batch
  (client/records/control.py) and appends it as any leader append (the same log path,
  _append_local, and so the same producer-state and .txnindex bookkeeping as below);
  the answer (the marker's offset) waits until the high watermark passes the marker, as
  AppendRecords from the broker does (Kafka's coordinator writes markers with acks=all).
- Every append: a batch that opens a transaction (transactional, from a producer with
  none open) stores the first unstable offset in the partition state before the append
  publishes a high watermark past it; after the append, the producer state
  (producer_txns.py) opens or completes transactions, and each ABORT's AbortedTxn goes
  into the segment's .txnindex (daemon/storage/txn_index.py).
- The high watermark moving: transactions decided below it leave the first unstable
  offset, which is raised and published (client/shm/LAYOUT.md, "Last stable offset"),
  and markers below it are answered.
- The log start moving (retention) past an open transaction's first offset: the first
  unstable offset published, and so the last stable offset everywhere (partition state,
  ListOffsets read_committed, status), is never below the log start (Kafka's
  UnifiedLog.maybeIncrementFirstUnstableOffset); the transaction stays open.
- Killed between a marker's append and its answer: the coordinator retries (it has no
  answer); the successor's replay of the log reopens what was open and writes the
  .txnindex entry again if it was lost (daemon/worker/producer_keeping.py); a retried
  marker for a producer whose transaction is already ended is written again and ends
  nothing, as Kafka does.

A helper of LeaderWorker (daemon/worker/leader.py), in its loop thread.
"""
import logging
import struct
from collections import deque

from odradek.client.errors import OdradekError, StorageError
from odradek.client.protocol import messages as m
from odradek.client.records import (ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, CONTROL_MASK,
                                    LOG_OVERHEAD, MIN_BATCH_LENGTH, TRANSACTIONAL_MASK, ControlRecordType,
                                    marker_batch)
from odradek.daemon.storage.log import wall_clock_ms
from odradek.daemon.worker.producer_state import batches_from_buffer
from odradek.daemon.worker.producers import Abdication

__all__ = ["LeaderTransactions"]

log = logging.getLogger(__name__)

_TXN_BITS = TRANSACTIONAL_MASK | CONTROL_MASK     # both in the attributes' low byte
_LENGTH = struct.Struct(">i")


def holds_transactions(data, _attributes=ATTRIBUTES_OFFSET + 1, _bits=_TXN_BITS, _length=_LENGTH.unpack_from):
    """Whether any batch in `data` (whole batches) is transactional or a control batch:
    one byte looked at per batch (~0.3 us for one batch, on every leader append)."""
    if len(data) < BATCH_HEADER_SIZE:
        return False                 # not a batch: the append refuses it
    if not data[_attributes] & _bits:
        size = LOG_OVERHEAD + _length(data, BATCH_LENGTH_OFFSET)[0]
        if size == len(data):        # one batch, not transactional: the common case
            return False
    else:
        return True
    position, end = 0, len(data)
    while position + BATCH_HEADER_SIZE <= end:
        if data[position + _attributes] & _bits:
            return True
        length = _length(data, position + BATCH_LENGTH_OFFSET)[0]
        if length < MIN_BATCH_LENGTH:
            return False
        position += LOG_OVERHEAD + length
    return False


class LeaderTransactions:
    """Owned by one LeaderWorker (`worker`: its log, producer_state, state, channel)."""

    __slots__ = ("worker", "_pending", "_published", "_provisional")

    def __init__(self, worker):
        self.worker = worker
        self._pending = deque()     # (correlation id, marker offset), in offset order
        self._published = False     # the first unstable offset last stored (False: not yet)
        self._provisional = False   # stored by before_append for an append that may have failed

    @property
    def waiting(self):
        """Markers to answer, transactions decided above the high watermark, or a first
        unstable offset stored for an append that failed: on_high_watermark has work."""
        return bool(self._pending) or self._provisional or self.worker.producer_state.txns.has_unreplicated()

    def opened(self):
        """The log is open and the producer state rebuilt (or handed over): publish."""
        self._publish(wake=True)

    # == the append path ============================================================
    def before_append(self, data, holds=None):
        """Called before `data` is appended: True if it holds transactional or control
        batches (then after_append must follow a successful append). A batch opening a
        transaction stores the first unstable offset (the log end: where it will land)
        before the append can publish a high watermark past it. `holds`: whether it
        does, from the headers the caller checked (and the append holds the copy to:
        a producer's ring can change after a look here); None: look at data."""
        if not (holds_transactions(data) if holds is None else holds):
            return False
        w = self.worker
        if w.state is not None and w.producer_state.txns.first_unstable_offset() is None:
            w.state.set_first_unstable_offset(w.log.log_end_offset)
            self._published = w.log.log_end_offset
            self._provisional = True
        return True

    def after_append(self, segment, position, size):
        """The batches just appended at segment[position:position + size]: open and
        complete transactions, index the aborted ones, publish."""
        w = self.worker
        aborted = []
        w.producer_state.replay(batches_from_buffer(segment.view(position, position + size), 0, transactions=True),
                                aborted, sequences=False)   # the sequences are _append's to record
        for txn in aborted:
            w.log.append_aborted_txn(txn)
        self._publish(wake=False)

    # == WriteTxnMarker ================================================================
    def write_marker(self, correlation_id, request):
        """Append the marker the request asks for; the answer waits for the high
        watermark (on_high_watermark). An error is answered at once."""
        w = self.worker
        try:
            w._check_partition(request.topic, request.partition)
            refused = w.producer_state.txns.check_marker(request.producer_id, request.producer_epoch,
                                                         request.coordinator_epoch)
            if refused is not None:
                raise refused
            kind = ControlRecordType.COMMIT if request.committed else ControlRecordType.ABORT
            data = marker_batch(kind, request.producer_id, request.producer_epoch, request.coordinator_epoch,
                                wall_clock_ms())
            info = w._append_local(data)
        except (OdradekError, Abdication) as e:
            w.channel.respond_error(correlation_id, e if isinstance(e, OdradekError) else StorageError(str(e)))
            return
        log.info("%s-%d: %s marker for producer %d epoch %d at offset %d (coordinator epoch %d)",
                 w.spec.topic, w.spec.partition, kind.name, request.producer_id, request.producer_epoch,
                 info.first_offset, request.coordinator_epoch)
        self._pending.append((correlation_id, info.first_offset))
        if w.replication is None:
            self.on_high_watermark(w.high_watermark, flush=False)

    def on_high_watermark(self, high_watermark, flush=True):
        """The high watermark is `high_watermark`: decided transactions below it leave
        the first unstable offset (published, waking readers); markers below it are
        answered."""
        w = self.worker
        if w.producer_state.txns.on_high_watermark(high_watermark) or self._provisional:
            self._publish(wake=True)
        pending = self._pending
        answered = False
        while pending and pending[0][1] < high_watermark:
            cid, offset = pending.popleft()
            w.channel.respond(cid, m.WriteTxnMarkerResponse(offset=offset))
            answered = True
        if answered and flush:
            w._flush_link()

    def last_stable_offset(self):
        w = self.worker
        return w.producer_state.txns.last_stable_offset(w.high_watermark, w.log.log_start_offset)

    def log_start_moved(self):
        """Retention moved the log start: the first unstable offset follows it up (stored
        before the caller publishes the new log start, which wakes the readers)."""
        self._publish(wake=False)

    def _publish(self, wake):
        w = self.worker
        self._provisional = False
        if w.state is None:
            return
        first = w.producer_state.txns.first_unstable_offset(w.log.log_start_offset)
        if first == self._published:
            return
        raised = self._published is False or first is None or \
            (self._published is not None and first > self._published)
        w.state.set_first_unstable_offset(first)
        self._published = first
        if wake and raised:
            w.state.update()    # a publish with no other change: sleeping readers look again
