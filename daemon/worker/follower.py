"""A follower replica: one process per follower, copying its leader's log into its own dir.

Forked by the broker like a leader worker (daemon/broker/supervisor.py), with the
partition's shared memory mapped (inherited): the partition state, which its leader
publishes (log end offset, high watermark, recent batch descriptors), and the replica
progress page (daemon/replication/progress.py), where it publishes its own log end
offset for the leader.

Theory of operation
- Copy: the leader's batches are read straight out of the leader's segment files
  (daemon/replication/leader_files.py: pread, no socket, no re-encoding) up to the log
  end offset the leader published, and appended with their offsets and epochs
  (PartitionLog.append_as_follower, which validates the CRC of what it copied). The
  follower rolls its segments where the leader rolled, so its .log files are
  byte-identical to the leader's. Where to read comes from the partition state's
  descriptors while they reach back far enough, else from the leader's files.
- Publish: after every append, its log end offset goes into its progress slot and the
  page's counter is rung: the leader, which sleeps on it, moves the high watermark and
  completes acks=all produces without a round trip.
- Sleep: one futex_waitv on the partition state's seq (the leader wakes it at every
  publish) and on its own bell (the broker link, signals): no polling.
- Behind the leader's log start (retention removed what it had not copied): its log is
  emptied and starts again at the leader's log start (Kafka's truncateFullyAndStartAt).
- A new leader (LeaderAndIsr from the broker, after an election): before copying from
  it, the follower cuts what diverges from it by leader epoch
  (daemon/replication/truncation.py, reading the new leader's leader-epoch-checkpoint),
  and copies only once the partition state shows the new leader's epoch. The follower
  the broker names leader becomes the leader in this same process, with its open log
  and producer state (serve returns them to run()).
- Producer state: kept up with every batch copied and snapshotted at rolls and close,
  as the leader does, so a promoted follower checks idempotence at once; so are its
  open transactions and its .txnindex (an ABORT marker copied is indexed here too).
- Its own dir failing an append (full, EIO): it exits (status 75) and the broker takes
  it out of the ISR at once, then restarts it with backoff.
- acks.all.fsync topics: after each round of copying, one fdatasync covers all it copied
  (group commit), and its synced offset is published beside its log end: the leader
  acknowledges acks=all produces below the smallest synced offset of the ISR.
- The leader's log start offset (DeleteRecords, its retention): followed as soon as the
  copy sees it move up, as Kafka's followers take it from each fetch response.
- Retention and compaction run on its own log with the topic's configs, as Kafka's
  followers do (compaction only below the leader's high watermark).
- Killed at any instant: the next follower recovers the log like any worker and goes on
  from its log end; the leader counts it out of the ISR while it is gone.
"""
import logging
import os
import time
from functools import partial

from odradek.client.errors import NotInWindow, OdradekError, StorageError, TornState, UnknownTopicOrPartition
from odradek.client.protocol import Channel, ConnectionClosed, ProtocolErrorEvent, Request, messages as m
from odradek.client.protocol.transport import close_fds
from odradek.client.shm import Doorbell, WaitSet
from odradek.daemon.replication.leader_files import LeaderFiles, OffsetBelowLogStart
from odradek.daemon.replication.truncation import divergence
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.leader_epoch import CorruptEpochFile, LeaderEpochFile
from odradek.daemon.worker.leader import ABDICATED, CLEANER_STEP_BYTES, flush_link
from odradek.daemon.worker.spec import WorkerSpec
from odradek.daemon.worker.link_watcher import LinkWatcher
from odradek.daemon.worker.log_timers import LogTimers
from odradek.daemon.worker.producer_keeping import REMEMBER_BATCHES, ProducerStateKeeping
from odradek.daemon.worker.producer_state import ProducerState

__all__ = ["FollowerWorker"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20        # bytes read from the leader's files per append
COPY_BUDGET = 16 << 20       # bytes copied per loop turn, between looks at the link
STALL_RETRY_S = 0.05         # after an error reading or appending, look again this soon


class DirFailed(Exception):
    """An append to our own log dir failed (full, failing): the follower stops, so the
    broker takes it out of the ISR at once (a follower that cannot write must not hold
    the high watermark until replica.lag.time.max.ms passes), and restarts it with
    backoff until its dir takes writes again."""


class FollowerWorker(ProducerStateKeeping):
    """The loop of one follower replica. Owned by its process's main thread."""

    def __init__(self, sock, spec):
        self.sock = sock
        self.spec = spec
        self.channel = Channel()
        self.started = time.time()
        self.log = None
        self.files = None
        self.state = None
        self.progress = None
        self.bell = None
        self.cleaner = None
        self._hint = None          # (segment base, position) in the leader's files of our log end
        self._error = None         # what last stopped the copy (logged once)
        self.producer_state = ProducerState(remember=REMEMBER_BATCHES)
        self._state_loaded = False
        self._checked_epoch = None  # the leader epoch our log was checked against (truncation)
        self._promotion = None      # the LeaderAndIsr naming us leader, once received
        self._leader_start = None   # the leader's log start offset the copy last saw
        self._published_synced = None   # the synced offset _publish last published

    @property
    def name(self):
        return f"{self.spec.topic}-{self.spec.partition} replica {self.spec.replica_id}"

    # == opening and closing ========================================================
    def open(self):
        self.log = PartitionLog(self.spec.partition_dir, LogConfig(self.spec.configs))
        if self.spec.tidy_only:
            return
        self.rebuild_producer_state()
        self.state = self.spec.shm.state
        self.progress = self.spec.shm.progress
        self.files = LeaderFiles(self._leader_partition_dir())
        self.bell, fd = Doorbell.create()
        os.close(fd)
        self.log.flush_listener = self.bell.ring   # a rolled segment's background fsync is done
        if self.log.config.compact:
            self.cleaner = LogCleaner(self.log)
        self._publish()
        log.info("%s: following replica %d from offset %d (log start %d)", self.name, self.spec.leader_id,
                 self.log.log_end_offset, self.log.log_start_offset)

    def _leader_partition_dir(self):
        return os.path.join(self.spec.leader_dir, f"{self.spec.topic}-{self.spec.partition}")

    def _publish(self):
        lg = self.log
        self._published_synced = lg.synced_offset
        self.progress.publish(self.spec.replica_id, lg.log_end_offset, lg.log_start_offset, pid=os.getpid(),
                              synced_offset=lg.synced_offset)

    def close(self):
        if self.cleaner is not None:
            self.cleaner.abort()
            self.cleaner = None
        if self.files is not None:
            self.files.close()
            self.files = None
        if self.log is not None:
            self.snapshot_producer_state("clean close")
            self.log.close()
            self.log = None
        if self.bell is not None:
            self.bell.close()
            self.bell = None
        self.channel.close()
        try:
            self.sock.close()
        except OSError:
            pass

    # == the loop ===================================================================
    def serve(self, stop_fd):
        self.sock.setblocking(False)
        watcher = LinkWatcher(self.sock, stop_fd, self.bell)
        watcher.start()
        timers = LogTimers(self.spec, self.log.config, self.cleaner is not None, time.monotonic())
        while True:
            seen = WaitSet([self.bell, self.state])
            if watcher.stop:
                return
            if watcher.link_ready:
                if not self._serve_link():
                    return
                if self._promotion is not None:
                    watcher.stop = True    # the leader's loop starts its own watcher
                    watcher.resume()
                    return self._hand_over()
                watcher.resume()
            try:
                copied, stalled = self._copy()
            except DirFailed as e:
                log.error("%s: stopping: an append failed: %s; out of the ISR until it runs again", self.name, e)
                return ABDICATED
            now = time.monotonic()
            if timers.run(self, now) or copied:
                continue
            timeout = timers.timeout(now)
            if stalled:
                timeout = min(timeout, STALL_RETRY_S)
            seen.wait(max(0.0, timeout))

    def _copy(self):
        """Copy what the leader published and we lack, up to COPY_BUDGET bytes.
        Returns (bytes copied, stalled by an error)."""
        try:
            snap = self.state.read()
        except TornState:
            return 0, True      # the leader died mid-update: the broker fences or restarts it
        if not snap.loaded or snap.fenced or snap.leader_epoch != self.spec.leader_epoch:
            return 0, False     # no leader, or not yet the one we follow: its offsets say nothing to us
        lg = self.log
        leader_end = snap.log_end_offset
        if self._checked_epoch != self.spec.leader_epoch and not self._truncate_by_epoch(leader_end):
            return 0, True
        if snap.log_start_offset != self._leader_start:
            self._leader_start = snap.log_start_offset
            if snap.log_start_offset > lg.log_start_offset:
                self._storage_step("deleting records", partial(self._follow_log_start, snap.log_start_offset))
                self._publish()
        if lg.log_end_offset > leader_end:
            log.warning("%s: our log ends at %d, the leader's at %d: cutting ours to the leader's",
                        self.name, lg.log_end_offset, leader_end)
            self.truncate_log_to(leader_end)
            self._hint = None
            self._publish()
        copied = 0
        try:
            while copied < COPY_BUDGET and lg.log_end_offset < leader_end:
                offset = lg.log_end_offset
                hint, published = self._where(offset, leader_end)
                try:
                    chunk = self.files.read(offset, leader_end, min(CHUNK_BYTES, published or CHUNK_BYTES),
                                            hint=hint)
                except OffsetBelowLogStart as e:
                    start = e.earliest_offset
                    log.warning("%s: the leader's log starts at %d, past our log end %d: starting again "
                                "there", self.name, start, offset)
                    lg.truncate_fully_and_start_at(start)
                    self._hint = None
                    self._publish()
                    continue
                if not chunk.data:
                    break
                rolled = chunk.segment_base > lg.active.base_offset
                snapshot = None
                if rolled:   # as the leader does: the state below the new segment, synced with the roll
                    snapshot = self.snapshot_producer_state("segment roll", lg.log_end_offset, durable=False)
                try:
                    lg.append_as_follower(chunk.data, chunk.segment_base)
                except StorageError as e:
                    raise DirFailed(str(e)) from e
                self.sync_snapshot_with_roll(snapshot)
                self.follow_copied(chunk.data, snap.high_watermark)
                self._hint = (chunk.segment_base, chunk.position + len(chunk.data))
                copied += len(chunk.data)
                self._publish()
        except OdradekError as e:   # a read of the leader's files, or a batch refused
            if str(e) != self._error:
                log.warning("%s: copying from the leader stopped at offset %d, retried until it succeeds: %s",
                            self.name, lg.log_end_offset, e)
                self._error = str(e)
            self._hint = None
            return copied, True
        if copied and self._error is not None:
            log.info("%s: copying again", self.name)
            self._error = None
        # group commit: one fsync for all copied this turn; and, while a rolled segment's
        # background fsync holds the synced offset back, again once it is done (its
        # flush_listener rang our bell; or the timers collected it: published here too)
        if lg.config.acks_all_fsync and (copied or lg.synced_offset < lg.log_end_offset):
            try:
                lg.sync_data()
            except StorageError as e:
                log.warning("%s: fsync failed: %s", self.name, e)
                return copied, True
        if lg.synced_offset != self._published_synced:
            self._publish()
        return copied, False

    def _truncate_by_epoch(self, leader_end):
        """Cut what diverges from the leader we follow now (its epoch cache against
        ours); True once done. The leader wrote its cache before it published its epoch."""
        try:
            entries = LeaderEpochFile(self._leader_partition_dir()).read()
        except (CorruptEpochFile, OSError) as e:
            log.warning("%s: cannot read the leader's epoch cache: %s", self.name, e)
            return False
        lg = self.log
        cut = divergence(lg.epochs.entries, lg.log_end_offset, entries or [], leader_end)
        if cut is not None:
            log.warning("%s: cutting our log from %d to %d: it diverges from leader %d's (epoch %d) there",
                        self.name, lg.log_end_offset, cut, self.spec.leader_id, self.spec.leader_epoch)
            self.truncate_log_to(cut)
            self._hint = None
            self._publish()
        self._checked_epoch = self.spec.leader_epoch
        return True

    def _hand_over(self):
        """We are the leader now: (leader spec, open log, producer state) for run()."""
        req, spec = self._promotion, self.spec
        new = WorkerSpec(spec.topic, spec.partition, spec.replica_id, spec.log_dir, spec.configs, req.leader_epoch,
                         spec.retention_check_ms, spec.checkpoint_ms, spec.shm, spec.cleaner_backoff_ms,
                         replicas=spec.replicas, isr=req.isr, partition_epoch=req.partition_epoch,
                         replica_lag_time_max_ms=spec.replica_lag_time_max_ms)
        handed = (new, self.log, self.producer_state)
        self.log = None
        log.info("%s: leading from offset %d in epoch %d", self.name, handed[1].log_end_offset, req.leader_epoch)
        return handed

    def _follow(self, req):
        """LeaderAndIsr naming another replica: follow it from now on."""
        spec = self.spec
        if req.leader_epoch < spec.leader_epoch:
            return
        log.info("%s: following replica %d in epoch %d", self.name, req.leader_id, req.leader_epoch)
        spec.leader_id, spec.leader_epoch, spec.leader_dir = req.leader_id, req.leader_epoch, req.leader_dir
        spec.isr, spec.partition_epoch = list(req.isr), req.partition_epoch
        self.files.close()
        self.files = LeaderFiles(self._leader_partition_dir())
        self._hint = None
        self._checked_epoch = None

    def _where(self, offset, leader_end):
        """(hint, bytes): where the batch holding `offset` is in the leader's files, if
        we know (from the descriptors in shared memory, else where the last chunk
        ended), and how many bytes from there the leader has published in that segment
        (None: not known), so a read takes what is new and no more."""
        try:
            first = self.state.find(offset)
            last = self.state.find(leader_end - 1) if first is not None else None
        except (NotInWindow, TornState):
            return self._hint, None
        if first is None or first.base_offset > offset:
            return self._hint, None
        hint = (first.segment_base, first.position)
        if last is None or last.segment_base != first.segment_base:
            return hint, None
        return hint, last.position + last.size - first.position

    def _retention(self):
        self._storage_step("retention", self.log.delete_old_segments)
        self._storage_step("deleting records", self._follow_log_start)
        self._publish()

    def _follow_log_start(self, start=None):
        """What DeleteRecords (or the leader's retention) made unreadable on the leader
        goes here too: at once when the copy sees the leader's log start offset move up
        (Kafka's followers take it from each fetch), and again at each retention check
        (`start` None: read now), a retry if our disk refused it."""
        if start is None:
            try:
                start = self.state.read().log_start_offset
            except TornState:
                return   # the next turn
        self.log.delete_records_before(min(start, self.log.log_end_offset))

    def _clean_step(self):
        try:
            snap = self.state.read()
            upto = min(self.state.last_stable_offset(snap), self.log.log_end_offset)   # decided only
            stats = self.cleaner.maybe_clean(CLEANER_STEP_BYTES, max_offset=upto)
        except (OdradekError, TornState) as e:
            log.error("%s: compaction failed: %s", self.name, e)
            return False
        return stats.in_progress

    def _storage_step(self, what, step):
        try:
            step()
        except StorageError as e:
            log.warning("%s: %s stopped by a storage error: %s", self.name, what, e)

    # == broker requests ============================================================
    def _serve_link(self):
        try:
            for event in self.channel.feed(self.sock):
                if isinstance(event, ConnectionClosed):
                    return False
                if isinstance(event, ProtocolErrorEvent):
                    log.warning("broker link: %s", event.error)
                    if event.fatal:
                        return False
                    continue
                if isinstance(event, Request):
                    close_fds(event.fds)
                    try:
                        response = self._dispatch(event.message)
                    except Exception as e:   # a bug here must not take the replica down
                        if not isinstance(e, OdradekError):
                            log.exception("serving %s", type(event.message).__name__)
                        self.channel.respond_error(event.correlation_id, e)
                    else:
                        self.channel.respond(event.correlation_id, response)
            self._flush_link()
        except OSError:
            return False
        return not self.channel.should_close

    def _flush_link(self):
        flush_link(self.channel, self.sock)

    def _dispatch(self, request):
        if isinstance(request, m.LeaderAndIsrRequest):
            if request.leader_id == self.spec.replica_id:
                self._promotion = request   # answered now; run() makes us the leader after this batch
            else:
                self._follow(request)
            return m.LeaderAndIsrResponse(log_end_offset=self.log.log_end_offset)
        if isinstance(request, m.StatusRequest):
            lg = self.log
            return m.StatusResponse(
                broker_pid=os.getppid(), uptime_ms=int((time.time() - self.started) * 1000),
                partitions=[m.PartitionStatus(
                    topic=self.spec.topic, partition=self.spec.partition, leader_id=self.spec.leader_id,
                    log_start_offset=lg.log_start_offset, log_end_offset=lg.log_end_offset,
                    size_bytes=lg.size_in_bytes, segments=len(lg.segments))])
        raise UnknownTopicOrPartition(f"a follower replica does not serve {type(request).__name__}")
