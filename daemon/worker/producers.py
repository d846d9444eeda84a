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
- acks=all on a replicated partition (`hold`): an appended entry is taken, not released
  (client/shm/LAYOUT.md, "Reader holding entries"), and its completion waits until the
  high watermark passes its last offset (complete_held, in order). A leader killed
  meanwhile leaves the held entries in the ring: its successor takes them again, finds
  them duplicates and acknowledges them with their original offsets once replicated.
- Backpressure: an entry is taken only when its completion fits, so a producer that
  stops reading completions stalls only itself. Its ring then fills and it blocks.
- Fairness: `drain(budget)` takes at most `budget` entries, so the leader's loop goes
  round every producer and its broker link between rounds.
- One wake-up per round: the completion ring has no doorbell of its own; drain and
  complete_held ring the producer's doorbell once, after the last completion they
  wrote (the counter scheme of LAYOUT.md: the completions are in the ring before the
  count moves and the wake goes out). Waking the producer's sender thread is a real
  wake-up (tens of microseconds of the worker's time on the dev VM) that used to come
  after every completion, between one batch and the next.
"""
import logging
from collections import deque

from odradek.client.errors import CorruptRecord, InvalidProducerEpoch, OdradekError, ShmCorrupt
from odradek.client.records import BATCH_HEADER_SIZE, LOG_OVERHEAD, read_header
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm.ring import COMPLETION_SIZE, ENTRY_HEADER_SIZE

__all__ = ["ProducerAttachment", "Abdication"]

log = logging.getLogger(__name__)

_COMPLETION_ENTRY = ENTRY_HEADER_SIZE + COMPLETION_SIZE


class Abdication(Exception):
    """Raised by an append when the leader gives up leadership (its log dir failed and
    another in-sync replica can lead): drain stops with the entry neither released nor
    completed, so the next leader takes it from the ring as if this one had never seen it."""


class ProducerAttachment:
    """The leader's end of one producer's rings. Owned by the worker's main thread."""

    __slots__ = ("attach_id", "acks", "producer_id", "producer_epoch", "requests",
                 "completions", "doorbell", "broken", "held")

    def __init__(self, attach_id, request, fds):
        """`fds`: produce ring, completion ring, producer doorbell (ours to close)."""
        self.attach_id = attach_id
        self.acks = request.acks
        self.producer_id = request.producer_id
        self.producer_epoch = request.producer_epoch
        self.requests = self.completions = self.doorbell = None
        self.broken = None       # why we stopped serving it (a corrupt ring)
        # taken, not yet completed: (tag, base offset, last offset, error code, ring position)
        self.held = deque()
        try:
            self.requests = Ring.attach(fds[0])
            self.completions = Ring.attach(fds[1])
            self.doorbell = Doorbell.attach(fds[2])     # rung once per round (the module doc)
        except BaseException:
            self.close()
            raise

    def drain(self, append, budget, hold=False):
        """Take up to `budget` entries. `append(view, header)` appends one batch (header:
        its BatchHeader) and
        returns its base offset, raising OdradekError to refuse it. hold: keep the
        completions of appended entries (and of any entry behind one) until
        complete_held. Returns (entries taken, blocked on completion space)."""
        requests, completions, held = self.requests, self.completions, self.held
        acks = self.acks
        # bound once per round, not per entry: the loop runs once per one-record batch
        # at low rates, where each attribute lookup is a measurable share of its cost
        peek, release, complete = requests.peek, requests.release, requests.release_completing
        producer_id, producer_epoch = self.producer_id, self.producer_epoch
        taken = written = 0
        try:
            while taken < budget:
                try:
                    got = peek()
                except ShmCorrupt as e:
                    self.broken = str(e)
                    log.warning("producer attachment %d: %s; no longer served", self.attach_id, e)
                    return taken, False
                if got is None:
                    return taken, False
                # the writer's own view of the free space: capacity - (tail - head), with
                # room kept for the completions of the held entries. Asked once there is
                # an entry (peeked, not taken: the next round peeks it again), so that
                # the round that finds the ring empty makes one C call, not two.
                if acks and completions.free < (len(held) + 2) * _COMPLETION_ENTRY:
                    return taken, not held   # held ones free room when replicated: that wakes us
                tag, view = got
                size = len(view)
                try:
                    if size < BATCH_HEADER_SIZE:
                        raise CorruptRecord(f"a produce entry of {size} bytes is shorter than a batch header")
                    header = read_header(view)
                    if header.batch_length + LOG_OVERHEAD != size:
                        raise CorruptRecord(f"a produce entry holds exactly one batch: batchLength "
                                            f"{header.batch_length} + {LOG_OVERHEAD} != entry size {size}")
                    if header.producer_id != producer_id or (producer_id >= 0
                                                             and header.producer_epoch != producer_epoch):
                        raise InvalidProducerEpoch(
                            f"batch of producer {header.producer_id} epoch {header.producer_epoch} on the "
                            f"rings of producer {producer_id} epoch {producer_epoch}")
                    base_offset, code = append(view, header), 0
                except OdradekError as e:
                    base_offset, code = -1, e.code
                if hold and (held or not code):
                    last_offset = base_offset + header.last_offset_delta if not code else -1
                    held.append((tag, base_offset, last_offset, code, requests.take()))
                elif acks:   # the completion, then the release: a worker killed between
                    complete(completions, base_offset, code)   # them leaves the entry to its successor
                    written += 1
                else:
                    release()
                taken += 1
            return taken, False
        finally:
            if written:
                self.doorbell.ring()

    def complete_held(self, high_watermark, error_code=0):
        """Complete the held entries whose last offset is below `high_watermark`, in
        order (a refused one as soon as those before it are), and give their ring space
        back. error_code: what an appended one gets instead of success (Kafka's
        NOT_ENOUGH_REPLICAS_AFTER_APPEND: the ISR shrank below min.insync.replicas).
        Returns how many."""
        held, n = self.held, 0
        while held and held[0][2] < high_watermark:
            tag, base_offset, _, code, position = held.popleft()
            if not code and error_code:
                base_offset, code = -1, error_code
            self.completions.write_completion(tag, base_offset, code)   # then the release, as in drain
            self.requests.release_to(position)
            n += 1
        if n:
            self.doorbell.ring()
        return n

    def close(self):
        for ring in (self.requests, self.completions):
            if ring is not None:
                ring.close()
        if self.doorbell is not None:
            self.doorbell.close()
        self.requests = self.completions = self.doorbell = None

