"""A partition leader's producers: the rings each producer attached, drained in turn.

One ProducerAttachment per (producer, partition): the producer writes batches into its
produce ring and rings our doorbell; we take each entry, append it to the log (one copy:
ring -> segment, validated after the copy by odk_append), release it, and write a
completion (base offset, error code) into its completion ring, which rings the
producer's doorbell. Layouts: client/shm/LAYOUT.md; the request: OpenProducer in
client/protocol/messages.py.

Rules
- An entry is exactly one v2 batch (as a Kafka produce request holds one batch per
  partition for idempotent producers). Its producerId/epoch must be the producer's own.
- Idempotence: each batch's (producer id, epoch, sequence range) is checked against
  ProducerState first (daemon/worker/producer_state.py). A duplicate (a ring entry we appended before a crash and
  take again, since the crashed worker never released it) is acknowledged with its
  original offsets and not appended again.
- acks=0: no completions are written.
- Backpressure: an entry is taken only when its completion fits, so a producer that
  stops reading completions stalls only itself. Its ring then fills and it blocks.
- Fairness: `drain(budget)` takes at most `budget` entries, so the leader's loop goes
  round every producer and its broker link between rounds.
"""
import logging
import struct

from odradek.client.errors import CorruptRecord, InvalidProducerEpoch, OdradekError, ShmCorrupt
from odradek.client.records import LOG_OVERHEAD
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm.ring import COMPLETION_SIZE, ENTRY_HEADER_SIZE

__all__ = ["ProducerAttachment", "BATCH_HEADER"]

log = logging.getLogger(__name__)

# The fixed v2 batch header up to recordsCount (client/records/FORMAT.md), big-endian:
# baseOffset batchLength partitionLeaderEpoch magic crc attributes lastOffsetDelta
# baseTimestamp maxTimestamp producerId producerEpoch baseSequence recordsCount
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
_unpack_header = BATCH_HEADER.unpack_from
_COMPLETION_ENTRY = ENTRY_HEADER_SIZE + COMPLETION_SIZE


class ProducerAttachment:
    """The leader's end of one producer's rings. Owned by the worker's main thread."""

    __slots__ = ("attach_id", "acks", "producer_id", "producer_epoch", "requests",
                 "completions", "doorbell", "broken")

    def __init__(self, attach_id, request, fds):
        """`fds`: produce ring, completion ring, producer doorbell (ours to close)."""
        self.attach_id = attach_id
        self.acks = request.acks
        self.producer_id = request.producer_id
        self.producer_epoch = request.producer_epoch
        self.requests = self.completions = self.doorbell = None
        self.broken = None       # why we stopped serving it (a corrupt ring)
        try:
            self.requests = Ring.attach(fds[0])
            self.completions = Ring.attach(fds[1])
            self.doorbell = Doorbell.attach(fds[2])
            self.completions.set_doorbell(self.doorbell)
        except BaseException:
            self.close()
            raise

    def drain(self, append, budget):
        """Take up to `budget` entries. `append(view, producer_id, epoch)` appends one
        batch and returns its base offset, raising OdradekError to refuse it. Returns
        (entries taken, blocked on completion space)."""
        requests, completions = self.requests, self.completions
        acks = self.acks
        taken = 0
        while taken < budget:
            if acks and not _has_room(completions):
                return taken, True
            try:
                got = requests.peek()
            except ShmCorrupt as e:
                self.broken = str(e)
                log.warning("producer attachment %d: %s; no longer served", self.attach_id, e)
                return taken, False
            if got is None:
                return taken, False
            tag, view = got
            try:
                base_offset, code = self._append_one(view, append), 0
            except OdradekError as e:
                base_offset, code = -1, e.code
            requests.release()
            if acks:
                completions.write_completion(tag, base_offset, code)
            taken += 1
        return taken, False

    def _append_one(self, view, append):
        if len(view) < BATCH_HEADER.size:
            raise CorruptRecord(f"a produce entry of {len(view)} bytes is shorter than a batch header")
        header = _unpack_header(view)
        if header[1] + LOG_OVERHEAD != len(view):
            raise CorruptRecord(f"a produce entry holds exactly one batch: batchLength {header[1]} "
                                f"+ {LOG_OVERHEAD} != entry size {len(view)}")
        producer_id, epoch = header[9], header[10]
        if producer_id != self.producer_id or (producer_id >= 0 and epoch != self.producer_epoch):
            raise InvalidProducerEpoch(f"batch of producer {producer_id} epoch {epoch} on the rings of "
                                       f"producer {self.producer_id} epoch {self.producer_epoch}")
        return append(view, header)

    def close(self):
        for ring in (self.requests, self.completions):
            if ring is not None:
                ring.close()
        if self.doorbell is not None:
            self.doorbell.close()
        self.requests = self.completions = self.doorbell = None


def _has_room(ring):
    # the writer's own view of the free space: capacity - (tail - head)
    return ring.capacity - (ring.tail - ring.head) >= 2 * _COMPLETION_ENTRY
