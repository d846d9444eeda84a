"""The gateway's produce rings: Kafka Produce batches into partition leaders' rings, as the
Python Producer's go (client/producer.py; layouts in client/shm/LAYOUT.md).

A RingAttachment is one produce ring, one completion ring and one doorbell of ours,
attached to a partition's leader for one (producer id, epoch, acks) with OpenProducer
(`attach_rings`, shared with the Producer) over a control connection of its own: the
broker keeps the attachment as long as that connection, and gives the same rings to the
leader's successor when a worker dies. A batch is copied once, from the request into the
ring; the leader validates it, checks its sequence, assigns its offsets and writes a
completion (base offset, error code) unless acks=0. If the broker itself restarts, the
next submit notices (client/_liveness.py, as the Producer's sender does), connects again
and attaches the same rings; the idempotence check turns a batch taken twice into a
duplicate with its first offsets.

Who shares an attachment (Attachments): an idempotent or transactional client's batches
carry its producer id and epoch, which the leader checks against the attachment's, so it
gets attachments of its own, per TCP connection (closed with it); clients without a
producer id share one per (partition, acks) per gateway process. Several connection
threads may then write one ring (a lock makes them one writer) and wait on one
completion ring: whichever waiter holds the reader role reads every completion and
hands each to the thread waiting for its tag (a Condition), sleeping on our doorbell,
which the leader rings after it writes completions: no polling. A partition deleted under
an attachment never completes its batches (the broker drops the attachment): a reader
that waited GONE_CHECK_S asks the broker whether the topic (by id) and partition still
exist, and if not the batch is answered UNKNOWN_TOPIC_OR_PARTITION and the attachment
dropped, instead of the request waiting out its timeout.

The reader spins before it sleeps (client/shm/waiting.py's Spinner, up to
COMPLETION_SPIN_MAX_NS): a leader answers a lone batch in tens of microseconds, about
what waking a sleeping thread costs on a VM, so a waiter that sleeps pays that wake,
and the leader the FUTEX_WAKE, on every request (perf/gateway_pipeline.py, one request
in flight: the wait took ~140 us asleep, ~55 us spinning, 98% of spins caught the
completion). It spins on the completion ring's tail as well as our doorbell: the tail
moves as the leader commits the completion, the doorbell only once the leader's round
over its rings ends (~10 us later); it sleeps on both, and the doorbell's ring wakes it
(the leader rings after every completion it writes; nobody wakes the tail's word, whose
waiter flag we leave unset). The budget adapts as everywhere: it follows the gaps it sees and falls to
zero when completions come later than it (an fsync, acks=all), so an idle or slow
partition costs no CPU. A spin that loses its CPU (the leader woken on the reader's
vCPU, a busy machine) stops at once, and the next ones wait COMPLETION_SPIN_QUIET_NS,
not the 100 ms a client's spinner waits: on two vCPUs the scheduler puts the woken
leader on the spinning gateway's one every few dozen requests, and 100 ms quiet after
each turned the spin off for most of a run. Only a waiter whose client has nothing
else in flight spins (produce.py's _Finish: a pipelining client is busy making its next
requests, and the CPU a spin takes is its). ODRADEK_SPIN_US=0 turns it off, as every
spin.

What they cost, and the cap (RingBudget): each RingAttachment holds 8 fds in the gateway
(its control connection, its three memfds, and one per mapping: Python's mmap keeps a
dup of its file) and 4 mappings (RING_BYTES + COMPLETION_RING_BYTES of shared memory,
resident as far as batches were written, and two doorbell pages), one connection in the
broker and 3 fds in the leader worker. So one gateway process holds at most
`listener.max.produce.rings` of them in all (DEFAULT_MAX_PRODUCE_RINGS;
`--max-produce-rings`), every connection's own and the shared ones together, besides
MAX_ATTACHMENTS per registry. The cap bounds what 1000
connections naming ever new partitions or producer ids can take; a partition that would
need one more gets NOT_ENOUGH_REPLICAS: the one retriable Produce error that every Kafka
client takes as "not written, nothing wrong with the metadata: retry the same batch after
a backoff" (no metadata refresh storm as NOT_LEADER_OR_FOLLOWER or KAFKA_STORAGE_ERROR
make, no "may be written" as REQUEST_TIMED_OUT says, which an idempotent producer must
then resolve), so a client beyond the cap keeps its records, sequence numbers included,
and delivers them once attachments are released (a connection closing releases all of
its own), or fails them after its delivery.timeout.ms. Attachments already made are
never taken away: the clients that hold them go on producing. Each refusal is counted,
and one line per client_log.WINDOW_S says how many there were (the gateway's ClientLog).
"""
import logging
import os
import threading
import time
from collections import OrderedDict

from odradek.client._liveness import Liveness, connect_again
from odradek.client.errors import NotEnoughReplicas, OdradekError, RingFull
from odradek.client.protocol import messages as m
from odradek.client.producer import attach_rings
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm.waiting import SPIN_MAX_NS, Spinner, WaitSet
from odradek.daemon.gateway.client_log import LogSource
from odradek.daemon.gateway.gateway_state import per_gateway

__all__ = ["RingAttachment", "Attachments", "RingBudget", "ring_budget", "RING_BYTES", "DEFAULT_MAX_PRODUCE_RINGS",
           "GONE"]

RING_BYTES = 4 << 20          # produce ring: batches up to 2 MiB (half of it; Kafka's default limit is 1 MiB)
COMPLETION_RING_BYTES = 256 << 10
GONE_CHECK_S = 0.25           # a wait for a completion this long asks whether the partition still exists
GONE = object()               # wait(): the partition was deleted
ATTACH_TIMEOUT_S = 10.0       # a partition without a leader for longer: LEADER_NOT_AVAILABLE
MAX_ATTACHMENTS = 256         # per Attachments (a connection's own; the gateway's shared ones)
DEFAULT_MAX_PRODUCE_RINGS = 1024   # RingAttachments per gateway process in all (listener.max.produce.rings)
_TAG_MOD = 1 << 32
COMPLETION_SPIN_MAX_NS = 250_000 if SPIN_MAX_NS else 0   # the reader's longest spin (module docstring)
COMPLETION_SPIN_QUIET_NS = 5_000_000                     # no spin for this long after one lost its CPU


class RingAttachment:
    """One producer's rings to one partition leader (see the module docstring)."""

    def __init__(self, links, topic, partition, acks, producer_id, producer_epoch, deadline=None):
        """Attach now, retrying while the partition has no leader until `deadline`
        (time.monotonic(); default ATTACH_TIMEOUT_S from now): then LeaderNotAvailable."""
        self.topic, self.partition, self.acks = topic, partition, acks
        self.producer_id, self.producer_epoch = producer_id, producer_epoch
        self._links = links
        self._client = links.open()
        self._fds = []
        self._leaders = []          # leader doorbells: kept until close (a ring may still ring one)
        self.requests = self.completions = self.doorbell = None
        self._waitset = None        # the reader's words (wait): our doorbell's count, the completion ring's tail
        self._spinner = Spinner(COMPLETION_SPIN_MAX_NS, COMPLETION_SPIN_QUIET_NS)
        try:
            self.requests, fd = Ring.create(RING_BYTES)
            self._fds.append(fd)
            self.completions, fd = Ring.create(COMPLETION_RING_BYTES)
            self._fds.append(fd)
            self.doorbell, fd = Doorbell.create()
            self._fds.append(fd)
            self._waitset = WaitSet([self.doorbell, self.completions])
            max_batch, leader = self._attach(time.monotonic() + ATTACH_TIMEOUT_S if deadline is None else deadline)
            self.topic_id = self._topic_id()
        except BaseException:
            self.close()
            raise
        self.max_batch_bytes = min(self.requests.max_payload, max_batch or self.requests.max_payload)
        self._write_lock = threading.Lock()
        self._row = False           # a row of deferred batches is open (submit)
        self._owed = False          # a batch written without ringing the leader (submit)
        self._cond = threading.Condition()
        self._done = {}             # tag -> Completion, for its waiter
        self._abandoned = set()     # tags whose waiter gave up: their completions are dropped
        self._reading = False       # a waiter holds the reader role
        self._next_tag = 0
        self._liveness = Liveness()
        self.broken = False
        self.gone = False           # the partition was deleted (see wait)

    def _attach(self, deadline):
        max_batch, leader = attach_rings(self._client, self.topic, self.partition, self.acks, self.producer_id,
                                         self.producer_epoch, self._fds, deadline)
        self._leaders.append(leader)
        self.requests.set_doorbell(leader)
        return max_batch, leader

    def submit(self, batch, timeout, defer=False):
        """Write one batch into the ring (waiting up to `timeout` s for room: RingFull);
        returns its tag. `defer`: the batch is one of a row (pipelined requests): the
        first of a row rings the leader's doorbell, the next ones leave it owed until
        ring_owed(), which whoever waits for their completions calls first. The leader
        starts on the first at once, takes without a wake-up those that arrive while it
        is busy (it drains the ring again before it sleeps), and the rest with one wake."""
        with self._write_lock:
            self._check_broker()
            tag = self._next_tag
            self._next_tag = (tag + 1) % _TAG_MOD
            ring = not (defer and self._row)
            self.requests.write(batch, tag, timeout, ring)
            if ring:
                self._row = defer
            else:
                self._owed = True
            return tag

    def ring_owed(self):
        """End the row (submit): ring the leader's doorbell if a deferred batch left it owed.
        Several threads may call it: one that sees the debt and clears it rings after
        the write that made it (the GIL orders them), so no batch is left unrung."""
        self._row = False
        if self._owed:
            self._owed = False
            requests = self.requests
            if requests is not None:
                requests.ring_doorbell()

    def _check_broker(self):
        """The broker restarted (our control connection's end closed): connect again and
        give the new leader the same rings (the write lock held)."""
        now = time.monotonic()
        if not self._liveness.broker_gone(self._client, now):
            return
        client = connect_again(self._links.path, now + ATTACH_TIMEOUT_S, 0.2)
        if client is None:
            return
        self._client.close()
        self._client = client
        _, leader = self._attach(now + ATTACH_TIMEOUT_S)
        leader.ring()   # take what waited in the ring meanwhile

    def wait(self, tag, deadline, spin=True):
        """The Completion of `tag`, or None at `deadline` (time.monotonic()), or GONE once
        the partition is found deleted: its leader is gone for good and the broker has
        dropped our attachment, so nothing will complete. The reader looks (a Metadata
        round trip) after each GONE_CHECK_S without a completion: a wait that long is rare
        but for a deleted partition, which would otherwise hold the request to its timeout.
        `spin`: spin before sleeping (the module docstring; produce.py's _Finish says when)."""
        reader = False
        checked = time.monotonic()
        try:
            while True:
                with self._cond:
                    done = self._done.pop(tag, None)
                    if done is not None:
                        return done
                    left = deadline - time.monotonic()
                    if left <= 0 or self.gone:
                        self._abandoned.add(tag)
                        return GONE if self.gone else None
                    if not reader:
                        if self._reading:
                            self._cond.wait(left)
                            continue
                        self._reading = reader = True
                waitset = self._waitset.retake()     # the words' values before we look
                if not self._read_completions():
                    # no look at the broker's liveness from here: submit() does, under the
                    # write lock, which a writer waiting for ring space may hold until its deadline
                    waitset.wait(min(left, GONE_CHECK_S), self._spinner if spin else None)
                    if time.monotonic() - checked >= GONE_CHECK_S and not self._read_completions():
                        checked = time.monotonic()
                        self.gone = self._topic_id() != self.topic_id
        finally:
            if reader:
                with self._cond:
                    self._reading = False
                    self._cond.notify_all()

    def _topic_id(self):
        """The broker's id of our topic now; None if it or our partition does not exist
        (the id it had when we attached, as far as we know, if the broker cannot say)."""
        try:
            res = self._links.ask(m.MetadataRequest(topics=[self.topic]))
        except (OdradekError, OSError):
            return getattr(self, "topic_id", None)
        for t in res.topics:
            if t.name == self.topic and not t.error_code and 0 <= self.partition < len(t.partitions):
                return t.topic_id
        return None

    def completed(self, tag):
        """Whether the completion of `tag` is here (reading the completion ring unless a
        waiter holds the reader role); never waits."""
        with self._cond:
            if tag in self._done:
                return True
            if self._reading:
                return False
            self._reading = True
        try:
            self._read_completions()
        finally:
            with self._cond:
                self._reading = False
                self._cond.notify_all()
        with self._cond:
            return tag in self._done

    def abandon(self, tag):
        """Nobody will wait for `tag`: its completion is dropped (now, or when it comes)."""
        with self._cond:
            if self._done.pop(tag, None) is None:
                self._abandoned.add(tag)

    def _read_completions(self):
        """Hand out every completion in the ring (reader role held); True if any."""
        got = []
        for _ in range(1 << 16):
            c = self.completions.read_completion()
            if c is None:
                break
            got.append(c)
        if got:
            with self._cond:
                for c in got:
                    if c.tag in self._abandoned:
                        self._abandoned.discard(c.tag)
                    else:
                        self._done[c.tag] = c
                self._cond.notify_all()
        return bool(got)

    def close(self):
        """Detach (our control connection closes) and unmap; callers are done with it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._waitset = None        # its exports of our mappings go before they are unmapped
        for ring in (self.requests, self.completions):
            if ring is not None:
                ring.close()
        for d in (self.doorbell, *self._leaders):
            if d is not None:
                d.close()
        for fd in self._fds:
            os.close(fd)
        self._fds, self._leaders = [], []
        self.requests = self.completions = self.doorbell = None


class RingBudget:
    """How many RingAttachments one gateway process may hold at once, in all its
    Attachments (the module docstring); thread-safe. `log`: the gateway's ClientLog, for
    the refusals' line (None: not logged)."""

    def __init__(self, limit, log=None):
        self.limit = limit
        self.in_use = 0
        self._log, self._source = log, LogSource()
        self._lock = threading.Lock()
        self._refused = 0         # refusals since the last line that went out

    def take(self):
        """One attachment's share, if one is left (True)."""
        with self._lock:
            if self.in_use >= self.limit:
                return False
            self.in_use += 1
            return True

    def give_back(self):
        with self._lock:
            self.in_use -= 1

    def refused(self, topic, partition, producer_id):
        """The error for a partition that would need an attachment beyond the cap; counted,
        and logged at most once per the ClientLog's window."""
        with self._lock:
            self._refused += 1
            refused = self._refused
        if self._log is not None and self._log.line(
                self._source, logging.WARNING, "produce rings: all %d of listener.max.produce.rings are in use; "
                "%d new attachments refused with NOT_ENOUGH_REPLICAS since the last such line (the latest: "
                "%s-%d, producer id %d); the clients retry", self.limit, refused, topic, partition, producer_id):
            with self._lock:
                self._refused -= refused
        return NotEnoughReplicas(f"{topic}-{partition}: the Kafka listener's produce rings are all in use "
                                 f"({self.limit}, listener.max.produce.rings); retry later")


def ring_budget(gateway, limit=None):
    """The RingBudget of `gateway`, made on first use with `limit` (None:
    DEFAULT_MAX_PRODUCE_RINGS): the gateway's main makes it with listener.max.produce.rings
    before it serves."""
    return per_gateway(gateway, "produce_ring_budget",
                       lambda g: RingBudget(limit or DEFAULT_MAX_PRODUCE_RINGS, g.client_log))


class Attachments:
    """RingAttachments by key, made on first use; close() closes them all. A broken one
    (its partition gone) is dropped and closed once nobody uses it. At most
    MAX_ATTACHMENTS: making one more retires the least recently used (a client naming
    ever new producer ids or partitions costs rings and a connection each). `budget`: the
    gateway's RingBudget every attachment made here counts in (None: no such cap);
    of_gateway(gateway) makes one with the gateway's."""

    def __init__(self, links, budget=None):
        self._links = links
        self._budget = budget
        self._by_key = OrderedDict()
        self._users = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def of_gateway(cls, gateway):
        return cls(gateway.links, budget=ring_budget(gateway))

    def acquire(self, topic, partition, acks, producer_id, producer_epoch, deadline=None):
        key = (topic, partition, acks, producer_id, producer_epoch)
        with self._lock:
            att = self._by_key.get(key)
            if att is not None:
                self._by_key.move_to_end(key)
                self._users[att] = self._users.get(att, 0) + 1
                return att
            oldest = next(iter(self._by_key.values())) if len(self._by_key) >= MAX_ATTACHMENTS else None
        if oldest is not None:
            self._retire(lambda a: a is oldest)
        if producer_id >= 0:    # a new epoch of the producer: its older attachments are done
            self._retire(lambda a: a.producer_id == producer_id and a.producer_epoch != producer_epoch)
        if self._budget is not None and not self._budget.take():
            raise self._budget.refused(topic, partition, producer_id)
        try:
            att = RingAttachment(self._links, topic, partition, acks, producer_id, producer_epoch, deadline)
        except BaseException:
            self._give_back()
            raise
        with self._lock:
            other = self._by_key.get(key)
            if other is not None or self._closed:
                spare, att = att, other
            else:
                spare = None
                self._by_key[key] = att
            if att is not None:
                self._users[att] = self._users.get(att, 0) + 1
        if spare is not None:
            self._close(spare)
        if att is None:
            raise RingFull("the connection closed")
        return att

    def _retire(self, which):
        """Drop the attachments `which(att)` picks; each closes once unused."""
        with self._lock:
            old = [a for a in self._by_key.values() if which(a)]
            for a in old:
                self._users[a] = self._users.get(a, 0) + 1
        for a in old:
            self.release(a, broken=True)

    def release(self, att, broken=False):
        """Done with `att`; `broken`: it no longer works (drop it: the next acquire attaches anew)."""
        with self._lock:
            self._users[att] -= 1
            if broken:
                att.broken = True
                key = (att.topic, att.partition, att.acks, att.producer_id, att.producer_epoch)
                if self._by_key.get(key) is att:
                    del self._by_key[key]
            close = att.broken and self._users[att] == 0
            if close:
                del self._users[att]
        if close:
            self._close(att)

    def _close(self, att):
        att.close()
        self._give_back()

    def _give_back(self):
        if self._budget is not None:
            self._budget.give_back()

    def close(self):
        with self._lock:
            self._closed = True
            atts = list(self._by_key.values())
            self._by_key.clear()
            for att in atts:
                att.broken = True
            idle = [a for a in atts if not self._users.get(a)]
            for a in idle:
                self._users.pop(a, None)
        for att in idle:
            self._close(att)
