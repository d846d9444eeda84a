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
- Ahead of the leader (the leader restarted with less: it is the leader's log that
  counts): cut to the leader's log end. Truncation by leader epoch for leader changes
  comes with elections.
- Retention and compaction run on its own log with the topic's configs, as Kafka's
  followers do (compaction only below the leader's high watermark).
- Killed at any instant: the next follower recovers the log like any worker and goes on
  from its log end; the leader counts it out of the ISR while it is gone.
"""
import logging
import os
import select
import time

from odradek.client.errors import CorruptRecord, NotInWindow, OdradekError, StorageError, TornState
from odradek.client.errors import UnknownTopicOrPartition
from odradek.client.protocol import Channel, ConnectionClosed, ProtocolErrorEvent, Request, messages as m
from odradek.client.protocol.transport import close_fds
from odradek.client.shm import Doorbell, WaitSet
from odradek.daemon.replication.leader_files import LeaderFiles, OffsetBelowLogStart
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.cleaner import LogCleaner
from odradek.daemon.storage.config import NO_LIMIT
from odradek.daemon.worker.leader import CLEANER_STEP_BYTES, LinkWatcher

__all__ = ["FollowerWorker"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20        # bytes read from the leader's files per append
COPY_BUDGET = 16 << 20       # bytes copied per loop turn, between looks at the link
STALL_RETRY_S = 0.05         # after an error reading or appending, look again this soon


class FollowerWorker:
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

    @property
    def name(self):
        return f"{self.spec.topic}-{self.spec.partition} replica {self.spec.replica_id}"

    # == opening and closing ========================================================
    def open(self):
        self.log = PartitionLog(self.spec.partition_dir, LogConfig(self.spec.configs))
        if self.spec.tidy_only:
            return
        self.state = self.spec.shm.state
        self.progress = self.spec.shm.progress
        self.files = LeaderFiles(os.path.join(self.spec.leader_dir, f"{self.spec.topic}-{self.spec.partition}"))
        self.bell, fd = Doorbell.create()
        os.close(fd)
        if self.log.config.compact:
            self.cleaner = LogCleaner(self.log)
        self._publish()
        log.info("%s: following replica %d from offset %d (log start %d)", self.name, self.spec.leader_id,
                 self.log.log_end_offset, self.log.log_start_offset)

    def _publish(self):
        self.progress.publish(self.spec.replica_id, self.log.log_end_offset, self.log.log_start_offset,
                              pid=os.getpid())

    def close(self):
        if self.cleaner is not None:
            self.cleaner.abort()
            self.cleaner = None
        if self.files is not None:
            self.files.close()
            self.files = None
        if self.log is not None:
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
        now = time.monotonic()
        next_retention = now + self.spec.retention_check_ms / 1000
        next_clean = now if self.cleaner is not None else None
        cfg = self.log.config
        flush_every = min(cfg.flush_ms, 1000) / 1000 if cfg.flush_ms < NO_LIMIT else None
        while True:
            seen = WaitSet([self.bell, self.state])
            if watcher.stop:
                return
            if watcher.link_ready:
                if not self._serve_link():
                    return
                watcher.resume()
            copied, stalled = self._copy()
            now = time.monotonic()
            if flush_every is not None:
                self._storage_step("flush", self.log.maybe_flush)
            if now >= next_retention:
                self._retention()
                next_retention = now + self.spec.retention_check_ms / 1000
            if next_clean is not None and now >= next_clean:
                next_clean = now if self._clean_step() else now + self.spec.cleaner_backoff_ms / 1000
            if copied or next_clean == now:
                continue
            timeout = next_retention - now
            if next_clean is not None:
                timeout = min(timeout, next_clean - now)
            if flush_every is not None:
                timeout = min(timeout, flush_every)
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
        if not snap.loaded or snap.fenced:
            return 0, False
        lg = self.log
        leader_end = snap.log_end_offset
        if lg.log_end_offset > leader_end:
            log.warning("%s: our log ends at %d, the leader's at %d: cutting ours to the leader's",
                        self.name, lg.log_end_offset, leader_end)
            lg.truncate_to(leader_end)
            self._hint = None
            self._publish()
        copied = 0
        try:
            while copied < COPY_BUDGET and lg.log_end_offset < leader_end:
                offset = lg.log_end_offset
                try:
                    chunk = self.files.read(offset, leader_end, CHUNK_BYTES, hint=self._where(offset))
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
                lg.append_as_follower(chunk.data, chunk.segment_base)
                self._hint = (chunk.segment_base, chunk.position + len(chunk.data))
                copied += len(chunk.data)
                self._publish()
        except (StorageError, CorruptRecord, OdradekError) as e:
            if str(e) != self._error:
                log.warning("%s: copying from the leader stopped at offset %d, retried until it succeeds: %s",
                            self.name, lg.log_end_offset, e)
                self._error = str(e)
            self._hint = None
            return copied, True
        if copied and self._error is not None:
            log.info("%s: copying again", self.name)
            self._error = None
        return copied, False

    def _where(self, offset):
        """Where the batch holding `offset` is in the leader's files, if we know: from
        the descriptors in shared memory, else where the last chunk ended."""
        try:
            desc = self.state.find(offset)
        except (NotInWindow, TornState):
            desc = None
        if desc is not None and desc.base_offset <= offset:
            return desc.segment_base, desc.position
        return self._hint

    def _retention(self):
        self._storage_step("retention", self.log.delete_old_segments)
        self._publish()

    def _clean_step(self):
        try:
            snap = self.state.read()
            upto = min(snap.high_watermark, self.log.log_end_offset)
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

    def _flush_link(self, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while not self.channel.flush(self.sock):
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError("the broker does not read its link")
            select.select([], [self.sock], [], left)

    def _dispatch(self, request):
        if isinstance(request, m.StatusRequest):
            lg = self.log
            return m.StatusResponse(
                broker_pid=os.getppid(), uptime_ms=int((time.time() - self.started) * 1000),
                partitions=[m.PartitionStatus(
                    topic=self.spec.topic, partition=self.spec.partition, leader_id=self.spec.leader_id,
                    log_start_offset=lg.log_start_offset, log_end_offset=lg.log_end_offset,
                    size_bytes=lg.size_in_bytes, segments=len(lg.segments))])
        raise UnknownTopicOrPartition(f"a follower replica does not serve {type(request).__name__}")
