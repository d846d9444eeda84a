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
- Runs (drain_runs, for producers answered at once): the consecutive entries of the
  producer's plain batches that are in the ring when the leader comes to it, up to
  RUN_ENTRIES, are appended with one write and one C validation of what landed
  (PartitionLog.append_parts), each still its own batch with its own offsets, index
  entries, descriptor and completion. Per batch the Python of an append costs ~18 us
  on the dev VM, a third of a 64 KiB batch's whole append: runs are what let the
  leader keep up with a producer of 1 KiB records (perf/producer_perf.py). A run the
  log does not take as it is (a roll due, a refused batch in it) goes one by one.
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
from odradek.client.records import (BATCH_HEADER_SIZE, COMPRESSION_MASK, CONTROL_MASK, LOG_OVERHEAD, MAX_SEQUENCE,
                                    TRANSACTIONAL_MASK, read_header)
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm.ring import COMPLETION_SIZE, ENTRY_HEADER_SIZE, drop_view

__all__ = ["ProducerAttachment", "Abdication"]

log = logging.getLogger(__name__)

_COMPLETION_ENTRY = ENTRY_HEADER_SIZE + COMPLETION_SIZE
_NOT_IN_RUNS = TRANSACTIONAL_MASK | CONTROL_MASK | COMPRESSION_MASK


# A run (drain_runs): at most RUN_ENTRIES entries (one iovec each, far below IOV_MAX), and
# no more entries once RUN_BYTES are in it. Runs of up to 8 MiB (32 entries of 256 KiB,
# a 16 MiB ring) made the leader append at ~300 MB/s instead of ~2 GB/s in about half of
# the runs (perf/producer_perf.py --producer-props batch.size=262144
# produce.ring.bytes=16777216): the kernel's copy into the page cache
# (copy_folio_from_iter_atomic) was then 87% of the leader's time, a fraction of memcpy's
# speed, for a reason not found. With 1 MiB runs no run of 6 was slow, and 64 KiB
# batches went as fast as with 2 MiB runs.
RUN_ENTRIES = 32
RUN_BYTES = 1 << 20


def _run_header(view, producer_id, producer_epoch, before):
    """The BatchHeader of a peeked entry if it may join a run whose last batch's header
    is `before` (None: it would start one), else None. A run holds plain batches (not
    transactional, not control, not compressed: the leader decompresses those to check
    their records, one by one) of the ring's own producer and epoch, each exactly one
    entry, their sequences following each other, so that once the first passes the
    producer-state check the others pass too (ProducerState.check: the next sequence
    in the same epoch); everything else goes alone, through drain's checks."""
    if len(view) < BATCH_HEADER_SIZE:
        return None
    header = read_header(view)
    if header.batch_length + LOG_OVERHEAD != len(view) or header.attributes & _NOT_IN_RUNS \
            or header.producer_id != producer_id or header.magic != 2 or header.records_count < 1:
        return None
    if producer_id >= 0:
        if header.producer_epoch != producer_epoch or header.base_sequence < 0:
            return None
        if before is not None and \
                header.base_sequence != (before.base_sequence + before.last_offset_delta + 1) & MAX_SEQUENCE:
            return None
    return header


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

    def drain_runs(self, append, append_run, budget):
        """drain(append, budget) for a producer whose completions are written at once
        (no `hold`), taking its consecutive entries in runs: up to RUN_ENTRIES entries
        (and RUN_BYTES) that may be appended together (_run_header) are taken, their views kept, and
        handed to append_run([(view, header), ...]), which appends them with one write
        and returns their base offsets, or None having appended nothing: then each goes
        through append(view, header) on its own, in order, its completion written and
        its space given back right after it, as drain does, so that a refusal or an
        Abdication part-way leaves what drain would. An entry that cannot join a run
        (the first of a producer's new epoch, a transactional batch, a malformed one)
        goes alone, through drain itself, and so does an entry with nothing committed
        behind it (a producer at a low rate: drain answers it with one C call). Returns
        (entries taken, blocked on completion space)."""
        requests, completions = self.requests, self.completions
        acks = self.acks
        peek, take, more_after = requests.peek, requests.take_keeping_view, requests.more_after_peeked
        producer_id, producer_epoch = self.producer_id, self.producer_epoch
        taken = written = 0
        try:
            while taken < budget:
                try:
                    got = peek()
                    lone = got is not None and not more_after()
                except ShmCorrupt:
                    got = lone = True   # drain meets it again and says so
                if got is None:
                    return taken, False
                if lone:   # no run to make: the entry as drain takes it (one C call to answer it)
                    n, full = self.drain(append, budget - taken)
                    return taken + n, full
                run, blocked, before, nbytes = [], False, None, 0
                while taken + len(run) < budget and len(run) < RUN_ENTRIES and nbytes < RUN_BYTES:
                    try:
                        got = peek()
                    except ShmCorrupt:
                        break     # drain meets it again below and says so
                    if got is None:
                        break
                    if acks and completions.free < (len(run) + 2) * _COMPLETION_ENTRY:
                        blocked = True
                        break
                    tag, view = got
                    before = _run_header(view, producer_id, producer_epoch, before)
                    if before is None:
                        break
                    run.append((tag, view, before, take()))
                    nbytes += len(view)
                if not run:
                    if blocked:
                        return taken, True
                    n, full = self.drain(append, 1)   # the entry no run takes (or none); rings itself
                    taken += n
                    if not n:
                        return taken, full
                    continue
                try:
                    bases = append_run([(view, header) for _, view, header, _ in run]) if len(run) > 1 else None
                    if bases is None:   # one by one, each completed and released as drain does
                        for tag, view, header, position in run:
                            try:
                                base_offset, code = append(view, header), 0
                            except OdradekError as e:
                                base_offset, code = -1, e.code
                            if acks:
                                completions.write_completion(tag, base_offset, code)
                                written += 1
                            drop_view(view)
                            requests.release_to(position)
                    else:
                        if acks:
                            for (tag, _, _, _), base_offset in zip(run, bases):
                                completions.write_completion(tag, base_offset, 0)
                            written += len(run)
                        for _, view, _, _ in run:
                            drop_view(view)
                        requests.release_to(run[-1][3])
                finally:
                    for _, view, _, _ in run:
                        drop_view(view)   # again: nothing, unless an exception left one
                taken += len(run)
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

