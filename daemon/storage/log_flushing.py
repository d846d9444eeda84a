"""PartitionLog's durability (log.py): flushes, the recovery point and its checkpoint,
synced_offset, and the fsyncs a roll leaves to the log's background flusher
(background_flush.py).

- flush() fsyncs everything appended (waiting for the rolled segments' background
  fsyncs) and moves the recovery point, checkpointed in the log dir, to the log end;
  flush.messages / flush.ms call it from appends and the worker's timer (maybe_flush).
- collect_flushes() moves the recovery point past the rolled segments whose background
  job is done, oldest first; a failed one makes the log refuse writes.
- sync_data() is the cheap fsync of group commit (acks.all.fsync): synced_offset, never
  past a roll whose job is pending.
- sync_with_roll() queues more files written at a roll (the producer-state snapshot) on
  that roll's job.

A mixin of PartitionLog, on its fields (_flusher, recovery_point, synced_offset,
_synced_end, _checkpoints, _segments, ...), which log.py sets up. Owned by the
partition's worker process, as PartitionLog is.
"""
import logging
import os

from odradek.client.errors import StorageError

__all__ = ["LogFlushing"]

log = logging.getLogger("odradek.daemon.storage.log")


class LogFlushing:
    def _maybe_flush(self, now):
        if self._unflushed_records >= self._flush_messages or now - self._last_flush_ms >= self._flush_ms:
            self.flush()

    def maybe_flush(self):
        """Flush if flush.ms has passed since the last flush (the worker calls this on a timer)."""
        if self._unflushed_records:
            self._maybe_flush(self.clock())

    def flush(self):
        """msync + fsync everything appended; move the recovery point to the log end.
        Rolled segments whose background fsync is under way are waited for."""
        self._check_open()
        if self._flusher.pending:
            self._flusher.wait_all()
            self.collect_flushes()   # raises StorageError if one failed
        for segment in reversed(self._segments):
            if segment.writable:
                segment.flush()
        self._unflushed_records = 0
        self._last_flush_ms = self.clock()
        self._set_recovery_point(self.log_end_offset)

    def _set_recovery_point(self, offset):
        self.recovery_point = offset
        self._synced_end = max(self._synced_end, offset)
        self._raise_synced_offset()
        self._checkpoint_recovery_point(offset)

    def _raise_synced_offset(self):
        synced = self._synced_end
        if self._flusher.pending:   # a rolled segment not on disk yet: nothing from its base on
            synced = min(synced, self._flusher.pending[0].base_offset)
        if synced > self.synced_offset:
            self.synced_offset = synced

    @property
    def flushes_pending(self):
        """Whether rolled segments wait for collect_flushes (their fsync under way, or done)."""
        return bool(self._flusher.pending)

    @property
    def flush_listener(self):
        """Called (from the flusher's thread) after each background fsync: e.g. a
        Doorbell's ring, so that the owner thread wakes to collect_flushes."""
        return self._flusher.on_done

    @flush_listener.setter
    def flush_listener(self, listener):
        self._flusher.on_done = listener

    def collect_flushes(self):
        """Move the recovery point (checkpointed) past the rolled segments whose
        background fsync is done, oldest first, up to one still under way. If one failed,
        raises StorageError, now and at every later append, sync_data or flush: the
        recovery point stays below that segment (the next open recovers from there) and
        the log takes no more writes, as after a failed fsync of the active segment."""
        flushed_to, failed = self._flusher.collect()
        if flushed_to is not None and flushed_to > self.recovery_point:
            self._set_recovery_point(flushed_to)
        if failed is not None:
            e = failed.error
            raise StorageError(f"{self.directory}: the fsync of {failed.what} failed "
                               f"({getattr(e, 'strerror', None) or e}); refusing writes, recovery point "
                               f"kept at {self.recovery_point}") from e

    def sync_data(self):
        """Make every record appended so far survive a power loss, cheaply: one msync +
        fdatasync of the active segment's .log (indexes are rebuilt by recovery), without
        moving the recovery point or writing a checkpoint. For group commit
        (acks.all.fsync): one call covers every batch appended since the last. Returns
        synced_offset, below which every record is on disk: not past a rolled segment
        whose background fsync is under way (a later call, once it is done, returns
        more; the log's flush_listener says when)."""
        self._check_open()
        if self._flusher.pending:
            self.collect_flushes()
        end = self.log_end_offset
        if end > self._synced_end:
            self.active.log.flush(data_only=True)
            self._synced_end = end
        self._raise_synced_offset()
        return self.synced_offset

    def _checkpoint_recovery_point(self, offset, **also):
        """Write the recovery point (and `also`: log_start_offset) to the checkpoint. A
        failed write (a full disk) is logged, not raised: the file keeps an older
        recovery point, and an older one only makes the next open recover more."""
        try:
            self._checkpoints.update((self.topic, self.partition), recovery_point=offset, **also)
        except StorageError as e:
            if not self._checkpoint_failed:
                log.warning("%s: cannot checkpoint the recovery point, recovery will scan more after a "
                            "crash: %s", self.directory, e)
            self._checkpoint_failed = True
        else:
            self._checkpoint_failed = False

    def _open_directory(self):
        """A descriptor of the log's directory, for a roll's background fsync (the new
        segment's entries); StorageError if none can be had."""
        try:
            return os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise StorageError(f"{self.directory}: cannot open the directory to sync a roll: "
                               f"{e.strerror or e}") from e

    def sync_with_roll(self, paths, what):
        """fsync `paths` (files written at the last roll, `what` they are, and directories
        whose entries changed) in the background, with the rolled segment's files: the
        recovery point passes the roll only once they are synced too, and a failed fsync
        of them refuses writes as one of the segment does (collect_flushes). As Kafka's
        UnifiedLog.roll writes its producer-state snapshot without a flush and flushes it
        in the same "flush-log" task as the segment. With no roll pending, they are
        fsynced here. StorageError if one cannot be opened (nothing queued)."""
        fds = []
        try:
            for path in paths:
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            pending = self._flusher.pending
            if pending:
                last, queued = pending[-1], fds
                fds = []
                self._flusher.submit(last.base_offset, last.next_offset, queued, what)
            else:
                for fd in fds:
                    os.fsync(fd)
        except OSError as e:
            raise StorageError(f"{self.directory}: cannot sync {what}: {e.strerror or e}") from e
        finally:
            for fd in fds:
                os.close(fd)
