"""The partition leader worker: one process per partition leader, owning its log.

Forked by the broker (daemon/broker/supervisor.py) with one end of a socketpair and the
partition's shared memory (its doorbell and partition state, which the broker creates
and keeps across worker restarts). It appends what producers put in their rings
(daemon/worker/producers.py), publishes offsets and batch descriptors for consumers,
serves the broker's requests for its partition (ListOffsets, OffsetForLeaderEpoch, Status, OpenProducer,
DetachProducer, GetSegment), runs the log's timers (flush.ms, retention) and exits 0 on
SIGTERM after closing the log (flushed, trimmed, checkpointed, producer state snapshotted:
the next open is instant).

Theory of operation
- The main thread does all the work and sleeps in one futex_waitv (wakeups.py): on the
  partition's doorbell, which every producer rings after a commit, on each producer
  ring's tail (so a hostile producer rewriting the doorbell loses no one's wake-up),
  and on its own bell. A small thread (LinkWatcher) blocks in poll() on the broker
  link and the signal pipe, and rings that bell when either is readable; it never
  touches the link's bytes. So one sleep covers rings, broker requests and signals,
  and an idle worker sleeps until its next timer.
- Replicas: each follower (daemon/worker/follower.py) copies our batches into its own
  log dir and publishes its log end offset in the partition's replica progress page
  (daemon/replication/progress.py), whose counter we also sleep on. The high watermark
  is the smallest log end over the ISR (daemon/worker/isr.py, Kafka's rules), published
  in the partition state: consumers read below it only. acks=all produces are held (the
  ring entry taken, not released: producers.py) until it passes them. ISR changes are
  proposed to the broker, which saves them first (IsrProposal/UpdateIsr on the link).
  Alone (replication factor 1), the high watermark is the log end, published with each
  batch.
- The broker is the only control peer. If the link closes (the broker died), the worker
  closes its log and exits; PR_SET_PDEATHSIG makes the kernel kill it if the broker
  dies first without closing anything (SIGKILL).
- Killed at any instant, it leaves nothing wedged: rings keep the entries it had not
  released, and its successor takes them again; the idempotence check
  (daemon/worker/producer_state.py, loaded at open from the newest producer-state
  snapshot plus the log after it) turns any it had already appended into duplicates
  acknowledged with their original offsets.
"""
import ctypes
import gc
import logging
import os
import select
import signal
import socket
import time

from odradek.client import native
from odradek.client.errors import (CorruptRecord, InvalidRecord, InvalidTimestamp, InvalidTxnState, NotEnoughReplicas,
                                   NotEnoughReplicasAfterAppend, OdradekError, StorageError,
                                   TornState)
from odradek.client.records import (COMPRESSION_MASK, CONTROL_MASK, LOG_OVERHEAD, MAX_SEQUENCE, TRANSACTIONAL_MASK,
                                    Compression, RecordBatch, read_header)
from odradek.client.protocol import Channel, messages as m
from odradek.client.shm import Doorbell
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.append_errors import timestamp_words
from odradek.daemon.storage.log import wall_clock_ms
from odradek.daemon.storage.timestamp_limits import batch_timestamp_error
from odradek.daemon.worker.isr import InSyncReplicas
from odradek.daemon.worker.link_watcher import LinkWatcher
from odradek.daemon.worker.log_timers import LogTimers
from odradek.daemon.worker.producer_keeping import REBUILD_BYTES, REMEMBER_BATCHES, ProducerStateKeeping
from odradek.daemon.worker.producer_state import Outcome, ProducerState, batches_from_buffer
from odradek.daemon.worker.leader_requests import LeaderRequests
from odradek.daemon.worker.producers import Abdication
from odradek.daemon.worker.txn_markers import LeaderTransactions
from odradek.daemon.worker.wakeups import Wakeups

__all__ = ["run", "LeaderWorker"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
DRAIN_BUDGET = 64            # entries per producer per round: fairness between producers
_ACKS_ALL = m.ACKS_ALL
_APPEND = Outcome.APPEND
_TXN_OR_CONTROL = TRANSACTIONAL_MASK | CONTROL_MASK
BACKPRESSURE_WAIT_S = 0.001  # a producer not reading completions: look again this soon
CLEANER_STEP_BYTES = 1 << 20  # compaction work per loop turn (~70-150 ms on the dev VM)
BROKER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # handled by the broker and by run()
ABDICATED = "abdicated"
EXIT_ABDICATED = 75   # EX_TEMPFAIL: the leader gave up leadership (its log dir failed); the broker elects


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not fatal: the closed link also stops us


def run(sock, spec, parent_pid):
    """The worker's main, in the forked child. Returns the exit status."""
    _die_with_parent()
    if os.getppid() != parent_pid:
        return 1  # the broker died between fork and prctl
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(stop_w)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the wake-up fd carries it
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C goes to the broker, which stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # blocked since the fork (Supervisor.start): one sent meanwhile comes now, to these
    signal.pthread_sigmask(signal.SIG_UNBLOCK, BROKER_SIGNALS)
    if spec.role == "follower":
        from odradek.daemon.worker.follower import FollowerWorker
        worker = FollowerWorker(sock, spec)
    else:
        worker = LeaderWorker(sock, spec)
    try:
        worker.open()
        # everything so far (the broker's heap, inherited at the fork, and the opened log)
        # lives as long as we do: out of the collector's way, so a full collection walks
        # only what serving allocates (no multi-millisecond pause on the append path)
        gc.freeze()
        if not spec.tidy_only:
            outcome = worker.serve(stop_r)
            if isinstance(outcome, tuple):   # a follower named leader (LeaderAndIsr): lead, in place
                new_spec, partition_log, producer_state = outcome
                worker = LeaderWorker(sock, new_spec)
                worker.open(partition_log, producer_state)
                outcome = worker.serve(stop_r)
            if outcome == ABDICATED:
                return EXIT_ABDICATED
    finally:
        worker.close()
    return 0


class LeaderWorker(ProducerStateKeeping, LeaderRequests):
    """The loop of one partition leader. Owned by the worker process's main thread."""

    def __init__(self, sock, spec, clock=time.monotonic):
        self.sock = sock
        self.spec = spec
        self.clock = clock
        self.log = None
        self.channel = Channel()
        self.started = time.time()
        self.doorbell = None
        self.wakeups = None
        self.state = None
        self.producers = {}      # attach_id -> ProducerAttachment
        # (attachments served, their produce rings): rebuilt when one attaches, detaches
        # or breaks, not per loop turn (the loop turns once per batch at low rates)
        self._served = None
        self._hold = False           # acks=all entries are held (replicated, or acks.all.fsync)
        self.producer_state = ProducerState(remember=REMEMBER_BATCHES)
        self._max_message_bytes = 0
        self.cleaner = None          # a LogCleaner when the topic is compacted
        self._storage_error = None   # what last met a StorageError (logged once), until an append succeeds
        self._state_loaded = False   # producer_state reflects the log: it may be snapshotted
        self.replication = None      # an InSyncReplicas when the partition has followers
        self.progress = None         # their ReplicaProgress page
        self._isr_poll = None        # correlation id of the broker's IsrProposal we hold
        self._broker_appends = []    # (correlation id, AppendInfo): AppendRecords waiting for the ISR
        self._unacked_floor = None   # the high watermark at open: entries above it may come back
        self._unacked = None         # {(producer id, epoch, first seq): (first, last offset)} above it
        self._producers_seen = set()  # producer ids that sent a batch in this process's tenure
        self.txn_markers = LeaderTransactions(self)   # markers, open transactions, the LSO (txn_markers.py)

    # == opening ==================================================================
    def open(self, partition_log=None, producer_state=None):
        """Open the log (recovering it), or take `partition_log` and `producer_state`
        over from the follower this process was until now (it was promoted: nothing to
        recover or rebuild)."""
        self.log = partition_log or PartitionLog(self.spec.partition_dir, LogConfig(self.spec.configs))
        self._max_message_bytes = self.log.config.max_message_bytes
        lg = self.log
        if not self.spec.tidy_only:
            lg.assign_epoch(self.spec.leader_epoch)  # this epoch's batches start at the log end
        high_watermark = lg.log_end_offset
        self._unacked_floor = max(lg.log_start_offset, lg.log_end_offset - 1)
        if self.spec.shm is not None:
            self.doorbell = self.spec.shm.doorbell
            if len(self.spec.replicas) > 1 and not self.spec.tidy_only:
                # a predecessor's high watermark stands (never above our log end); the
                # followers' published log ends move it on
                high_watermark = min(lg.log_end_offset, _published_high_watermark(self.spec.shm.state))
                self._unacked_floor = high_watermark
                self.progress = self.spec.shm.progress
                self.replication = InSyncReplicas(
                    self.spec.replica_id, self.spec.replicas, self.spec.isr, self.spec.partition_epoch,
                    self.spec.replica_lag_time_max_ms, lg.log_end_offset, high_watermark, wall_clock_ms())
            self.state = self.spec.shm.state.take_over()
            # a predecessor's descriptors may describe a tail recovery cut: start the
            # window empty (readers ask for older batches with GetSegment)
            self.state.truncate(lg.log_end_offset)
            self.state.update(log_start_offset=lg.log_start_offset, high_watermark=high_watermark,
                              log_end_offset=lg.log_end_offset, leader_epoch=self.spec.leader_epoch,
                              active_segment_base=lg.active.base_offset, loaded=True)
        else:
            self.doorbell, fd = Doorbell.create()
            os.close(fd)
        self.wakeups = Wakeups(self.doorbell, [self.progress] if self.progress is not None else [])
        lg.flush_listener = self.wakeups.bell.ring   # a rolled segment's background fsync is done
        if producer_state is not None:
            self.producer_state, self._state_loaded = producer_state, True
        else:
            self.rebuild_producer_state()
        self._hold = self.replication is not None or lg.config.acks_all_fsync
        if lg.config.acks_all_fsync:   # held until synced: entries above the last sync may come back
            self._unacked_floor = min(self._unacked_floor, lg.recovery_point)
        if lg.config.compact:
            self.cleaner = LogCleaner(lg)
        if not self.spec.tidy_only:
            lg.active.prepare_appends()   # not on the first record's time
            self.txn_markers.opened()
        log.info("%s-%d: open at offsets %d..%d", self.spec.topic, self.spec.partition,
                 lg.log_start_offset, lg.log_end_offset)

    # == the loop =================================================================
    def serve(self, stop_fd):
        self.sock.setblocking(False)
        wakeups = self.wakeups
        watcher = LinkWatcher(self.sock, stop_fd, wakeups.bell)
        watcher.start()
        timers = LogTimers(self.spec, self.log.config, self.cleaner is not None, self.clock())
        while True:
            seen = wakeups.snapshot(self._serving()[1])
            if watcher.stop:
                self._finish_appends()
                return
            if watcher.link_ready:
                if not self._serve_link():
                    return
                watcher.resume()
            try:
                taken, blocked = self._drain_producers()
            except Abdication as e:
                log.error("%s-%d: giving up leadership: %s; an in-sync replica on another log dir takes over",
                          self.spec.topic, self.spec.partition, e)
                return ABDICATED
            self._acknowledge()
            now = self.clock()
            # A round that took entries is followed by another before sleeping. Sleeping
            # at once (the snapshot predates the drain) saved ~2% of the leader's CPU at
            # 10k records/s but measured p99 1.4-1.6x worse in two A/B runs: not taken.
            if timers.run(self, now) or taken:
                continue
            timeout = timers.timeout(now)
            if blocked:
                timeout = min(timeout, BACKPRESSURE_WAIT_S)
            if self.replication is not None:   # a follower may fall behind with no word from it
                timeout = min(timeout, self.spec.replica_lag_time_max_ms / 2000)
            wakeups.wait(seen, max(0.0, timeout))

    def _finish_appends(self, rounds=1000):
        """SIGTERM: append what producers committed before we go (bounded)."""
        for _ in range(rounds):
            taken, _ = self._drain_producers()
            if not taken:
                return

    def _serve_link(self):
        """Read and answer what the broker sent. False when the link is gone."""
        try:
            for event in self.channel.feed(self.sock):
                if not self._handle(event):
                    return False
            self._flush_link()
        except OSError:
            return False
        return not self.channel.should_close

    def _flush_link(self):
        flush_link(self.channel, self.sock)

    def _serving(self):
        """(the attachments served, their produce rings), the same tuples until one
        attaches, detaches or breaks."""
        served = self._served
        if served is None:
            atts = tuple(att for att in self.producers.values() if not att.broken)
            served = self._served = (atts, tuple(att.requests for att in atts))
        return served

    def _drain_producers(self):
        """Drain every producer once: (entries taken, blocked on completion space)."""
        taken, blocked = 0, False
        hold = self._hold
        for att in self._serving()[0]:
            if att.acks == _ACKS_ALL:
                n, full = att.drain(self._append_acks_all, DRAIN_BUDGET, hold=hold)
            else:
                n, full = att.drain_runs(self._append, self._append_run, DRAIN_BUDGET)
            if att.broken:
                self._served = None
            taken += n
            blocked |= full
        return taken, blocked

    @property
    def _isr(self):
        return self.replication.isr if self.replication is not None else self.spec.isr

    def _append_acks_all(self, view, header):
        """An acks=all batch: refused before append (NOT_ENOUGH_REPLICAS) while the ISR is
        smaller than min.insync.replicas, checked per batch as Kafka's
        Partition.appendRecordsToLeader does."""
        needed = self.log.config.min_insync_replicas
        refusal = None
        isr = self._isr
        if len(isr) < needed:
            refusal = (f"{self.spec.topic}-{self.spec.partition} has {len(isr)} in-sync replica(s) "
                       f"({', '.join(map(str, isr))}); acks=all needs min.insync.replicas={needed}. "
                       + ("Followers rejoin once they catch up (odradek status shows their lag)"
                          if len(self.spec.replicas) >= needed else
                          "The topic has fewer replicas than that: lower its min.insync.replicas"))
        return self._append(view, header, refusal)

    # == acknowledging and replication ===================================================
    def _acknowledge(self):
        """Complete the held acks=all produces below what they wait for: the high
        watermark (moved here from the followers' progress when replicated), and with
        acks.all.fsync also the smallest synced offset over the ISR, after one fdatasync
        of ours covering every batch appended since the last (group commit)."""
        if self.replication is None and not self._hold and not self.txn_markers.waiting:
            # alone, nothing held (produces and broker appends are answered as they are
            # appended) and no transaction decided above the high watermark
            return
        target = self._replicate() if self.replication is not None else self.log.log_end_offset
        if self._broker_appends and self._broker_appends[0][1].last_offset < target:
            self._answer_broker_appends(target)
        if self.txn_markers.waiting:
            self.txn_markers.on_high_watermark(target)
        if not self._hold or not any(att.held for att in self.producers.values()):
            return
        if self.log.config.acks_all_fsync:
            try:
                synced = self.log.sync_data()
            except StorageError as e:
                self._storage_failed("fsync", e)
                return
            if self.replication is not None:
                for r in self.replication.maximal:
                    if r != self.spec.replica_id:
                        synced = min(synced, self.progress.synced_offset(r))
            target = min(target, synced)
        self._complete_held(target)

    def _append_for_broker(self, correlation_id, request):
        """AppendRecords on a replicated partition (the group coordinator's committed
        offsets): appended now, answered once the high watermark passes it, as Kafka's
        coordinator appends with acks=all, so a commit survives a change of leader."""
        try:
            self._check_partition(request.topic, request.partition)
            info = self._append_local(request.records)
        except (OdradekError, Abdication) as e:
            self.channel.respond_error(correlation_id, e if isinstance(e, OdradekError) else StorageError(str(e)))
            return
        self._broker_appends.append((correlation_id, info))

    def _answer_broker_appends(self, high_watermark):
        waiting = self._broker_appends
        while waiting and waiting[0][1].last_offset < high_watermark:
            cid, info = waiting.pop(0)
            self.channel.respond(cid, m.AppendRecordsResponse(base_offset=info.first_offset,
                                                              last_offset=info.last_offset))
        self._flush_link()

    def _replicate(self):
        """Read the followers' progress: move the high watermark (published for
        consumers), propose an ISR change when Kafka's rules want one; returns the high
        watermark."""
        rep, progress = self.replication, self.progress
        now_ms = wall_clock_ms()
        before = rep.high_watermark
        leos = {r: progress.log_end_offset(r) for r in rep.followers}
        hw = rep.observe(now_ms, self.log.log_end_offset, leos)
        for r in rep.followers:
            progress.set_caught_up_ms(r, rep.caught_up_ms[r])
        if hw > before:
            self.state.update(high_watermark=hw)
        if self._isr_poll is not None and rep.proposed is None:
            wanted = rep.wanted(now_ms)
            if wanted is not None:
                isr, reason = wanted
                rep.propose(isr)
                cid, self._isr_poll = self._isr_poll, None
                log.info("%s-%d: proposing ISR %s (was %s): %s", self.spec.topic, self.spec.partition, isr,
                         rep.isr, reason)
                self.channel.respond(cid, m.IsrProposalResponse(
                    leader_epoch=self.spec.leader_epoch, partition_epoch=rep.partition_epoch, isr=isr,
                    reason=reason))
                self._flush_link()
                # a proposal dropping a follower does not move the high watermark; one
                # adding a follower can only hold it: nothing to recompute
        return hw

    def _complete_held(self, hw):
        """Complete the acks=all produces below the high watermark; with the ISR below
        min.insync.replicas by then, as NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka's
        DelayedProduce)."""
        short = len(self._isr) < self.log.config.min_insync_replicas
        for att in self.producers.values():
            if att.held and not att.broken:
                att.complete_held(hw, NotEnoughReplicasAfterAppend.code if short else 0)

    def _update_isr(self, request):
        """UpdateIsr: the ISR the broker saved (ours, or its own change)."""
        rep = self.replication
        if rep is None:
            self.spec.isr = list(request.isr)
            return
        if request.isr != rep.isr:
            log.info("%s-%d: ISR is now %s (partition epoch %d)", self.spec.topic, self.spec.partition,
                     request.isr, request.partition_epoch)
        rep.update(request.isr, request.partition_epoch, wall_clock_ms())
        self.spec.isr = list(request.isr)

    def _append(self, view, header, refusal=None):
        """Append one producer batch (header: its BatchHeader); returns its base offset.
        `refusal`: why the batch is refused with NOT_ENOUGH_REPLICAS (None: it is not).

        Sequences: a batch the log refuses (invalid, too large, a null key on a
        compacted topic) still uses up its sequence range, recorded with offset -1, so
        the producer's next batches (already in its ring, numbered after it) are in
        order; the same batch seen again is refused again, not acknowledged."""
        if header.attributes & CONTROL_MASK:   # Kafka's LogValidator: markers are the coordinator's
            raise InvalidRecord("clients may not write control batches (transaction markers)")
        producer_id = header.producer_id
        if producer_id >= 0:
            epoch, base_seq = header.producer_epoch, header.base_sequence
            last_seq = _last_seq(base_seq, header.last_offset_delta)
            verdict = self.producer_state.check(producer_id, epoch, base_seq, last_seq)
            seen = self._producers_seen
            first_here = producer_id not in seen
            if first_here:
                seen.add(producer_id)
            if verdict.outcome is not _APPEND:   # else the common case: no more questions
                written = self._check_verdict(verdict, producer_id, epoch, base_seq, first_here)
                if written is not None:
                    return written
        try:
            if refusal is not None:
                raise NotEnoughReplicas(refusal)
            if producer_id >= 0 and not header.attributes & TRANSACTIONAL_MASK \
                    and self.producer_state.txns.is_open(producer_id):
                # Kafka's ProducerAppendInfo: transactional writes only, until the marker
                raise InvalidTxnState(f"producer {producer_id} has a transaction open on {self.spec.topic}-"
                                      f"{self.spec.partition}: its batches must be transactional until the "
                                      f"transaction ends")
            if header.attributes & COMPRESSION_MASK or self.cleaner is not None:
                # these checks read the records, which the header the copy is held to does
                # not cover (a body can be forged to the same CRC): the checks and the
                # append read one private copy, not the producer's ring twice
                view = bytes(view)
                self._check_records(view)
            info = self._append_local(view, expect=(header,))   # the copy must hold the header checked
        except OdradekError as e:
            if producer_id >= 0:
                self.producer_state.record(producer_id, epoch, base_seq, last_seq, -1, -1)
                if not isinstance(e, StorageError):   # the log does not hold what it used up
                    self.snapshot_producer_state("a refused batch", durable=False)
            raise
        if producer_id >= 0:
            self.producer_state.record(producer_id, epoch, base_seq, last_seq, info.first_offset, info.last_offset)
        return info.first_offset

    def _check_records(self, batch):
        """Kafka's LogValidator on what the append's own C checks cannot read (odk_append
        decodes every record of an uncompressed batch): a compressed batch's records,
        decompressed and decoded, and their timestamps (InvalidTimestamp: storage/
        timestamp_limits.py), and on a compacted topic a key on every record.
        InvalidRecord, naming the record, if not; nothing said about a batch whose
        framing or CRC is wrong, which the append then refuses in its own words."""
        compacted = self.cleaner is not None
        try:
            b = RecordBatch(batch).validate()
            codec = b.compression
        except OdradekError:
            return      # framing, CRC or codec id: the append refuses it, in its own words
        if codec == Compression.NONE and not compacted:
            return
        try:
            data = batch if codec == Compression.NONE else b.uncompressed()
        except CorruptRecord as e:
            raise InvalidRecord(f"the records of this {codec.label} batch do not decompress ({e}); "
                                f"nothing was appended") from None
        result = native.decode_records(data)
        if result.status:
            raise InvalidRecord(f"the records of this {codec.label} batch do not decode: "
                                f"{native.reference.refusal_words(data)}; nothing was appended")
        if compacted and result.flags & native.RecordsFlag.NULL_KEY:
            raise InvalidRecord(f"{self.spec.topic} is compacted (cleanup.policy=compact): every record needs a key")
        limits = self.log.timestamp_range() if codec != Compression.NONE else None   # odk_append checks the others
        if limits is not None:
            bad = batch_timestamp_error(b.attributes, b.max_timestamp, result.min_timestamp, result.max_timestamp,
                                        *limits)
            if bad is not None:
                raise InvalidTimestamp(timestamp_words(bad[1], bad[0], f"this {codec.label} batch"))

    def _append_run(self, run):
        """Append a run of one producer's batches, [(view, header), ...] in ring order
        (ProducerAttachment.drain_runs: plain batches, sequences following each other),
        with one write: their base offsets, or None with nothing appended, when they must
        go through _append one by one instead (which says which one fails and why): the
        first's producer-state verdict is not a plain APPEND, the producer has a
        transaction open, the topic is compacted, the run does not go into the active
        segment as it is (PartitionLog.append_parts), or an append of them fails. Once
        the first batch's sequence is the producer's next, each following one's is too
        (drain_runs checked that they follow each other), as _append would find batch
        by batch; each is recorded in the producer state at its own offsets."""
        _, first = run[0]
        producer_id = first.producer_id
        state = self.producer_state
        if producer_id >= 0:
            self._producers_seen.add(producer_id)
            verdict = state.check(producer_id, first.producer_epoch, first.base_sequence,
                                  _last_seq(first.base_sequence, first.last_offset_delta))
            if verdict.outcome is not _APPEND or state.txns.is_open(producer_id):
                return None
        if self.cleaner is not None:
            return None
        parts = [view for view, _ in run]
        try:
            stored = self._append_local(parts, sum(map(len, parts)), [header for _, header in run])
        except OdradekError:
            return None   # nothing appended: one by one, each gets its own answer
        if stored is None:
            return None
        bases = []
        for (_, header), (base, last) in zip(run, stored):
            bases.append(base)
            if producer_id >= 0:
                state.record(producer_id, header.producer_epoch, header.base_sequence,
                             _last_seq(header.base_sequence, header.last_offset_delta), base, last)
        return bases

    def _check_verdict(self, verdict, producer_id, epoch, base_seq, first_here):
        """_append's answer to a verdict other than APPEND: the first offset a batch
        already in the log was written at (a duplicate, or one a predecessor wrote and
        held), None if the batch is appended after all (past a gap a previous leader
        refused), else raises the verdict's error."""
        if verdict.outcome is Outcome.DUPLICATE:
            if verdict.first_offset < 0:
                raise InvalidRecord(f"this batch (sequence {base_seq}) was refused before")
            return verdict.first_offset
        if verdict.outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER:
            written = self._written_unacked(producer_id, epoch, base_seq)
            if written is not None:
                return written
            if first_here and self.producer_state.is_gap_ahead(producer_id, epoch, base_seq):
                # the sequences skipped were refused by a previous leader (or process),
                # which alone knew it: the producer was answered with an error for them
                log.info("%s-%d: producer %d resumes at sequence %d, past sequences a previous leader "
                         "refused", self.spec.topic, self.spec.partition, producer_id, base_seq)
                return None
        raise verdict.exception()

    def _written_unacked(self, producer_id, epoch, base_seq):
        """The first offset of this producer's batch if it is in the log above the high
        watermark this leader started at, else None. A predecessor held acks=all entries
        there without completing them; they come back from the rings, and the producer
        state (from a snapshot taken above some of them) may know only their producer's
        last batch and call them out of order. Found once by a header walk of that tail
        (at most REBUILD_BYTES), kept for this leader's life."""
        if self._unacked is None:
            lg, floor = self.log, self._unacked_floor
            found, budget = {}, REBUILD_BYTES
            for segment in reversed(lg.segments):
                if segment.next_offset <= floor or budget <= 0:
                    break
                budget -= segment.size
                for pid, ep, seq, _, first, last in batches_from_buffer(segment.view(0, segment.size)):
                    if last >= floor and pid >= 0:
                        found[(pid, ep, seq)] = first
            self._unacked = found
        return self._unacked.get((producer_id, epoch, base_seq))

    def _append_local(self, data, size=None, expect=None):
        """Append batches as the leader and publish them to consumers; AppendInfo.
        `size`: data is a list of buffers of whole plain batches (no transaction, no
        control batch), `size` bytes in all (_append_run), appended with one write only
        if they go into the active segment as it is (PartitionLog.append_parts), else
        None with nothing appended; appended, the (base offset, last offset) of each
        batch as stored, each published with a descriptor of its own (_publish_run).
        `expect`: the BatchHeaders of data's batches that the caller checked, in a
        producer's ring it can still rewrite: the copy must hold exactly those
        (CorruptRecord otherwise, nothing appended), and whether they are
        transactional is read from them, not from the ring again.

        A full log dir raises StorageError (KAFKA_STORAGE_ERROR, retriable) at once:
        the log allocates blocks ahead of its appends and nothing is written when that
        fails (storage/mapped_file.py). Every append tries again, so the partition takes
        produces again as soon as space is freed; meanwhile reads go on as before. A
        replicated leader with another in-sync replica gives up leadership instead
        (Abdication: the entry stays in its ring for the next leader), as Kafka takes a
        failed log dir's leaders elsewhere; it comes back as a follower, which catches up
        once its dir takes writes again."""
        lg = self.log
        active = lg.active
        run = size is not None
        txn = not run and self.txn_markers.before_append(data, None if expect is None else _any_transactional(expect))
        try:
            if not run:
                info, size = lg.append(data, leader_epoch=self.spec.leader_epoch, expect=expect), len(data)
            else:
                info = lg.append_parts(data, size, leader_epoch=self.spec.leader_epoch, expect=expect)
                if info is None:
                    return None
        except StorageError as e:
            if self.replication is not None and len(self.replication.isr) > 1:
                raise Abdication(f"an append failed: {e}") from e   # failover beats a failing disk
            self._storage_failed("appends", e)
            raise
        segment = lg.active
        if segment is not active:
            # rolled: the state (this batch not recorded yet) is that of the log below
            # the new segment's base. Kafka snapshots at every roll too.
            self.sync_snapshot_with_roll(self.snapshot_producer_state("segment roll", segment.base_offset,
                                                                      durable=False))
        if self._storage_error is not None:
            log.info("%s-%d: an append succeeded again after %s failed", self.spec.topic, self.spec.partition,
                     self._storage_error)
            self._storage_error = None
        if txn:
            self.txn_markers.after_append(segment, segment.size - size, size)
        if run:
            return self._publish_run(segment, segment.size - size, size)
        if self.state is not None:
            self.state.append(info.first_offset, info.last_offset, segment.base_offset,
                              segment.size - size, size, info.max_timestamp,
                              high_watermark=info.last_offset + 1 if self.replication is None else None)
        return info

    def _publish_run(self, segment, position, size):
        """The batches a run just appended at segment[position:position + size], read
        from the segment (the copy that was validated, not the producer's ring): one
        descriptor each, as their appends one by one would have published (a reader's
        fetch starts at the batch holding its position: client/_partition_read.py), with
        one wake-up (PartitionState.append_run). Returns their (base offset, last
        offset) pairs, in order."""
        view = segment.view(position, position + size)
        batches, at = [], 0
        try:
            while at < size:
                h = read_header(view, at)
                length = h.batch_length + LOG_OVERHEAD
                batches.append((h.base_offset, h.base_offset + h.last_offset_delta, position + at, length,
                                h.max_timestamp))
                at += length
        finally:
            view.release()
        if self.state is not None:
            self.state.append_run(segment.base_offset, batches,
                                  high_watermark=None if self.replication is not None else batches[-1][1] + 1)
        return [(b[0], b[1]) for b in batches]

    def _clean_step(self):
        """One step of log compaction; True while a pass is under way. After segments
        are swapped, batch positions changed: the descriptor window restarts empty, so
        consumers ask GetSegment (which answers from the new files) for older batches."""
        try:
            stats = self.cleaner.maybe_clean(CLEANER_STEP_BYTES, max_offset=self.txn_markers.last_stable_offset())
        except OdradekError as e:
            log.error("%s-%d: compaction failed: %s", self.spec.topic, self.spec.partition, e)
            return False
        if stats.segments_swapped and self.state is not None:
            self.state.truncate(self.log.log_end_offset)
        if stats.state == "done":
            t = stats.pass_totals
            log.info("%s-%d: compacted: kept %s of %s records, %s tombstones dropped",
                     self.spec.topic, self.spec.partition, t.get("records_kept"), t.get("records_read"),
                     t.get("tombstones_dropped"))
        return stats.in_progress

    def _retention(self):
        before = self.log.log_start_offset
        self._storage_step("retention", self.log.delete_old_segments)
        if self.log.log_start_offset != before:
            self.txn_markers.log_start_moved()     # the LSO never below the log start, before:
            if self.state is not None:             # this publish wakes the readers
                self.state.update(log_start_offset=self.log.log_start_offset)

    def _storage_step(self, what, step):
        """Run a timer's log work (flush, retention); a StorageError it meets is logged
        and the worker goes on (the next turn tries again), as for appends."""
        try:
            step()
        except StorageError as e:
            self._storage_failed(what, e)

    def _storage_failed(self, what, error):
        """Log a storage error once, not once per batch refused (a full disk refuses
        every produce until space is freed)."""
        if what != self._storage_error:
            log.warning("%s-%d: %s stopped by a storage error, retried until it succeeds: %s",
                        self.spec.topic, self.spec.partition, what, error)
            self._storage_error = what

    @property
    def high_watermark(self):
        return self.replication.high_watermark if self.replication is not None else self.log.log_end_offset

    def close(self):
        if self.cleaner is not None:
            self.cleaner.abort()
            self.cleaner = None
        for att in self.producers.values():
            att.close()
        self.producers.clear()
        self._served = None
        if self.log is not None:
            self.snapshot_producer_state("clean close")
            self.log.close()
            self.log = None
        if self.wakeups is not None:
            self.wakeups.close()
            self.wakeups = None
        # the state and doorbell mappings are the broker's, inherited by the fork: not
        # ours to close (the fds their mmaps held were closed at the fork), they go
        # with the process
        self.state = self.doorbell = None
        self.channel.close()
        try:
            self.sock.close()
        except OSError:
            pass




def flush_link(channel, sock, timeout_s=5.0):
    """Write what the channel holds to the broker link (non-blocking socket), waiting for
    room at most timeout_s in all: OSError if the broker does not read."""
    deadline = time.monotonic() + timeout_s
    while not channel.flush(sock):
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("the broker does not read its link")
        select.select([], [sock], [], left)


def _published_high_watermark(state):
    """The high watermark the partition's previous leader published (0 if none did):
    read whole even if that leader died in the middle of an update."""
    try:
        snap = state.read()
    except TornState:
        return state.take_over().raw_high_watermark()
    return snap.high_watermark if snap.loaded else 0


def _any_transactional(headers):
    """Whether any of these BatchHeaders is transactional or a control batch (a loop, not
    any() over a generator: a third of the cost for the one header of a lone append)."""
    for h in headers:
        if h.attributes & _TXN_OR_CONTROL:
            return True
    return False


def _last_seq(base_seq, delta):
    """Kafka's sequence arithmetic: sequences wrap from 2^31 - 1 to 0."""
    return (base_seq + delta) & MAX_SEQUENCE if base_seq >= 0 else base_seq


def socketpair():
    """The broker-worker link: a stream socketpair, close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
