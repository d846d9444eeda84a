"""PartitionLog: the append-only log of one partition replica, as segments on disk.

    log = PartitionLog("/data/orders-0", LogConfig())
    info = log.append(batch_bytes)             # assigns offsets, returns AppendInfo
    view = log.read(offset, max_bytes=1 << 20) # memoryview straight into the mmap
    log.offset_for_timestamp(ts)               # (offset, timestamp) or None
    log.delete_old_segments()                  # retention.ms / retention.bytes
    log.append_as_follower(data, segment_base) # a follower copying its leader's batches
    log.close()

Theory of operation
- The log is a list of LogSegments sorted by base offset; only the last (active) one
  takes appends. Offsets are dense from log_start_offset to log_end_offset - 1 (gaps
  only where compaction removed records).
- An append is one native call (LogSegment.append_native): the batches are copied once
  past the segment's data, the COPY is validated (framing, magic, CRC, sizes, record
  counts, codecs: the producer's shared memory could change under a check of the
  source), then baseOffsets are rewritten in place (not covered by the CRC) and the
  indexes updated. A refused buffer is zeroed again and raises: nothing changes.
- Durability: data reaches the page cache on append, survives a process crash at once,
  and survives power loss once flushed (flush.messages / flush.ms, close, and a roll's
  background fsync). The recovery point is the offset below which everything was
  flushed; it is checkpointed in the log dir. On open, every segment from the one
  holding the recovery point on is scanned and cut after its last valid batch (see
  _open_segments).
- A roll does not fsync: the old segment is trimmed (ftruncate) and its files are
  fsynced by a thread of this log (background_flush.py), as Kafka's roll schedules
  its "flush-log" task. The recovery point moves past the segment only once that is
  done, when the owner thread next looks (collect_flushes: on append, sync_data, flush,
  close and the worker's timers): never past a segment not yet on disk. flush() and
  close() wait for those fsyncs; one that fails makes the log refuse writes
  (StorageError), as a failed fsync of the active segment does.
- Time comes from `clock` (milliseconds), so tests drive rolling, retention and flush.ms.
- Follower mode (append_as_follower, truncate_fully_and_start_at): batches copied from
  the leader keep their offsets and epochs, and segments roll where the leader's did, so
  the .log files are byte-identical to the leader's (FORMAT.md). They sit in the
  follower's own buffer, so they are validated there and written with pwrite, not
  copied into the map (LogSegment.append_written): same checks, bytes and indexes.
- Compaction (cleanup.policy=compact) is storage/cleaner.py; this class gives it two hooks:
  replace_segments (swap cleaned segments in by atomic renames, segment_swap.py) and, on
  open, segment_swap.finish_interrupted_swaps (complete or drop a swap a crash
  interrupted). See FORMAT.md, "Compaction".

Owned by the partition's worker process; not thread-safe: one thread calls it, or the
caller holds a lock around every call. Two mixins hold parts of the class:
log_flushing.py (flush, the recovery point and its checkpoint, synced_offset, a roll's
background fsyncs) and log_reading.py (read, locate, lookups by timestamp).
"""
import logging
import os
import time
from collections import namedtuple

from odradek.client import native
from odradek.client.errors import CorruptRecord, InvalidSegment, OffsetOutOfRange, StorageError
from odradek.daemon.storage import batch_epochs, filenames, producer_snapshot, segment_swap, txn_index
from odradek.daemon.storage.append_errors import append_error
from odradek.daemon.storage.background_flush import SegmentFlusher
from odradek.daemon.storage.checkpoint import CleanerCheckpoint, LogDirCheckpoints, fsync_dir, write_atomically
from odradek.daemon.storage.leader_epoch import CorruptEpochFile, LeaderEpochCache, LeaderEpochFile
from odradek.daemon.storage.log_flushing import LogFlushing
from odradek.daemon.storage.log_reading import FetchData, Location, LogReading
from odradek.daemon.storage.modes import make_dirs
from odradek.daemon.storage.segment import LogSegment
from odradek.daemon.storage.timestamp_limits import timestamp_range

__all__ = ["PartitionLog", "AppendInfo", "FetchData", "Location", "wall_clock_ms"]

log = logging.getLogger(__name__)

_OK = native.Status.OK
_ROLL_FIRST = (native.Status.NO_SPACE, native.Status.INDEX_FULL, native.Status.OUT_OF_RANGE)


_time_ns = time.time_ns


def wall_clock_ms():
    return time.time_ns() // 1_000_000


class AppendInfo(namedtuple("AppendInfo", "first_offset last_offset max_timestamp batches records bytes "
                                          "log_append_time")):
    """What an append wrote: offsets first..last, and how many batches and records.
    (A tuple: made per append, ~0.2 us instead of ~0.6 for a class with __init__.)"""
    __slots__ = ()

    def __repr__(self):
        return (f"AppendInfo(offsets {self.first_offset}..{self.last_offset}, "
                f"{self.batches} batches, {self.records} records, {self.bytes} bytes)")


_new_info = tuple.__new__


class PartitionLog(LogFlushing, LogReading):
    def __init__(self, directory, config, clock=wall_clock_ms):
        """Open the log in `directory` (named <topic>-<partition> inside a log dir),
        creating it if needed, and recover whatever a crash left behind."""
        self.directory = os.path.abspath(directory)
        self.config = config  # see the setter
        self.clock = clock
        self.log_dir = os.path.dirname(self.directory)
        tp = filenames.parse_partition_dir(os.path.basename(self.directory))
        if tp is None:
            raise StorageError(f"{directory}: a partition directory is named <topic>-<partition>")
        self.topic, self.partition = tp
        self._checkpoints = LogDirCheckpoints(self.log_dir)
        if not os.path.isdir(self.directory):
            make_dirs(self.directory)
            fsync_dir(self.log_dir)
        self.recovery_point, self.log_start_offset = self._checkpoints.read(tp)
        self.synced_offset = self.recovery_point   # below it every record is on disk (sync_data)
        self._flusher = SegmentFlusher(f"{self.topic}-{self.partition}")   # rolled segments' fsyncs
        # below it every byte outside the segments still pending is on disk (sync_data's
        # fdatasync of the active segment, or a flush): synced_offset once they are done
        self._synced_end = self.recovery_point
        self._segments = []          # sorted by base offset; the last one is active
        self._bases = []             # their base offsets, for bisect
        self._unflushed_records = 0
        self._last_flush_ms = clock()
        self._roll_anchor_ms = None  # see _time_to_roll
        self._closed = False
        self.truncations = 0         # counts truncate_to / truncate_fully_and_start_at calls; a compaction
        #                              pass restarts on a change
        self._checkpoint_failed = False  # the last recovery-point checkpoint write failed (logged once)
        self.epochs = None               # opened after the segments, cut to their log start then
        self._open_segments()
        self._epoch_file = LeaderEpochFile(self.directory)
        self.epochs = self._open_epochs()

    # == opening and recovery ==================================================
    def _open_segments(self):
        segment_swap.finish_interrupted_swaps(self.directory)
        bases = set()
        for name in os.listdir(self.directory):
            if name.endswith(filenames.TMP_SUFFIX):
                os.unlink(os.path.join(self.directory, name))  # an interrupted checkpoint
                continue
            parsed = filenames.parse_segment_file(name)
            if parsed and parsed[1] == filenames.LOG_SUFFIX:
                bases.add(parsed[0])
        for name in os.listdir(self.directory):  # indexes without their log are litter
            parsed = filenames.parse_segment_file(name)
            if parsed and parsed[1] != filenames.LOG_SUFFIX and parsed[0] not in bases:
                os.unlink(os.path.join(self.directory, name))
        ordered = sorted(bases)
        for i, base in enumerate(ordered):
            last = i == len(ordered) - 1
            below_recovery_point = not last and ordered[i + 1] <= self.recovery_point
            segment = self._open_trusted(base, writable=last) if (below_recovery_point or last) else None
            if last and segment is not None and segment.next_offset > self.recovery_point:
                segment.close()   # cleanly closed looks the same as crashed-with-luck
                segment = None    # unless everything in it was flushed: recover it
            if segment is None:
                segment, ok = self._recover_segment(base, last)
                self._add(segment)
                if not ok:
                    self._delete_after(base, ordered[i + 1:])
                    break
            else:
                self._add(segment)
        if not self._segments:
            self._add(self._new_segment(self.log_start_offset))
        below_start = 0  # whole segments under the checkpointed log start: retention was
        while below_start + 1 < len(self._segments) and \
                self._segments[below_start + 1].base_offset <= self.log_start_offset:
            below_start += 1  # interrupted between checkpoint and unlink; finish it
        if below_start:
            self._delete_oldest(below_start)
        leo = self.log_end_offset
        self.log_start_offset = min(max(self.log_start_offset, self._segments[0].base_offset), leo)
        if self.recovery_point != leo:
            self.flush()  # what recovery kept is now the flushed state

    def _open_trusted(self, base, writable):
        """The segment opened from its own indexes, or None if they are missing or do
        not match the log (then it is recovered instead)."""
        paths = (filenames.index_file(self.directory, base), filenames.timeindex_file(self.directory, base))
        if not all(os.path.exists(p) for p in paths):
            return None
        segment = LogSegment(self.directory, base, self.config, writable)
        try:
            segment.load()
            return segment
        except InvalidSegment as e:   # the indexes do not match the log
            log.info("%s: rebuilding the indexes of segment %d: %s", self.directory, base, e)
        except CorruptRecord:
            pass   # the batches after the last index entry: recovery says what it cut, once
        segment.close()
        return None

    def _recover_segment(self, base, last):
        """Scan a segment, cut it after its last valid batch, rebuild its indexes.
        Returns (segment, whether the whole file was valid up to its data)."""
        segment = LogSegment(self.directory, base, self.config, writable=True, create=True, index_entries=0)
        result, cut = segment.recover(max_batch_size=0)
        ok = result.status == native.Status.OK or not cut   # zeros after the batches: unwritten space
        if not ok:
            last = f"offset {segment.next_offset - 1}" if segment.next_offset > base else "no batch"
            log.warning("partition %s-%d: segment %d cut at position %d (after %s): %s (expected %s, "
                        "found %s); truncated %d bytes", self.topic, self.partition, base, result.valid_bytes,
                        last, result.status_name, result.expected, result.found, cut)
        if not last and ok:
            segment.seal()
        return segment, ok

    def _delete_after(self, base, later_bases):
        """After a corrupt segment nothing later can be trusted (offsets would not be
        contiguous): delete the later segments, as Kafka does."""
        for b in later_bases:
            log.warning("%s: deleting segment %d, which follows a corrupt one", self.directory, b)
            for path in filenames.segment_files(self.directory, b) + (filenames.txnindex_file(self.directory, b),):
                if os.path.exists(path):
                    os.unlink(path)
        fsync_dir(self.directory)

    def _new_segment(self, base, capacity=None, sync_dir=True):
        segment = LogSegment(self.directory, base, self.config, writable=True, create=True,
                             index_entries=0, capacity=capacity)
        if sync_dir:
            fsync_dir(self.directory)  # the new files survive power loss
        return segment

    def _add(self, segment):
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    # == the leader-epoch cache (leader_epoch.py) ==================================
    def _open_epochs(self):
        """The cache from leader-epoch-checkpoint, cut to the recovered log. Without a
        usable file (none, or damaged: logged) and with batches in the log, it is rebuilt
        from the batches' partitionLeaderEpoch fields (batch_epochs.py), as Kafka's segment
        recovery does (one header read per batch, only then)."""
        try:
            entries = self._epoch_file.read()
        except CorruptEpochFile as e:
            log.warning("%s: rebuilding the leader-epoch cache from the log: %s", self.directory, e)
            entries = None
        changed = entries is None and self.log_end_offset > self.log_start_offset
        cache = LeaderEpochCache(entries or ())
        if changed:
            batch_epochs.extend_from_segments(cache, self._segments, self.log_start_offset, self.directory)
        elif batch_epochs.last_batch_epoch(self._segments) > (cache.latest_epoch if cache.entries else -1):
            # the file lags the log (assign_epoch writes it without fsync: a power loss
            # can keep the old one): extend it from the batches after its last entry
            log.warning("%s: the leader-epoch checkpoint lacks the last batch's epoch: extending it from "
                        "the log", self.directory)
            start = cache.entries[-1][1] if cache.entries else self.log_start_offset
            changed = batch_epochs.extend_from_segments(cache, self._segments, start, self.directory)
        changed = cache.truncate_from_end(self.log_end_offset) | changed
        changed = cache.truncate_from_start(self.log_start_offset) | changed
        if changed:
            self._write_epochs(cache)
        return cache

    def _write_epochs(self, cache=None, durable=True):
        """Write the cache. A failure (a full disk) is logged: the file keeps older
        entries, which the next open cuts to the log or extends again."""
        try:
            self._epoch_file.write((cache or self.epochs).entries, durable=durable)
        except StorageError as e:
            log.warning("%s: cannot write the leader-epoch checkpoint: %s", self.directory, e)

    def assign_epoch(self, epoch):
        """The leader of `epoch` appends from the log end on (Kafka's
        maybeAssignEpochStartOffset at becoming leader). Written when it is news, without
        fsync (as Kafka since KAFKA-15046: a new leader must not wait for the disk): a
        process crash keeps it, and after a power loss open finds the file behind the
        last batch's epoch and rebuilds it from the batches."""
        self._check_open()
        if self.epochs.assign(epoch, self.log_end_offset):
            self._write_epochs(durable=False)

    def end_offset_for_epoch(self, epoch):
        """(epoch, end offset): OffsetsForLeaderEpoch's answer (LeaderEpochCache.end_offset_for)."""
        return self.epochs.end_offset_for(epoch, self.log_end_offset)

    # == state ===================================================================
    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, config):
        # The values append reads every time, copied out: a LogConfig attribute costs
        # ~1.6 us (a __getattr__ and a dict lookup); five of them were ~15% of a 16 KiB
        # append before this (perf/log_append.py).
        self._config = config
        self._max_message_bytes = config.max_message_bytes
        self._log_append_time = config.log_append_time
        self._segment_ms = config.max_segment_ms  # segment.ms, or a shorter max.compaction.lag.ms
        self._flush_messages = config.flush_messages
        self._flush_ms = config.flush_ms
        self._timestamp_limits = config.timestamp_limits   # (before, after) ms; None: unchecked

    @property
    def active(self):
        return self._segments[-1]

    @property
    def segments(self):
        return list(self._segments)

    @property
    def log_end_offset(self):
        """The offset the next appended record gets."""
        return self.active.next_offset

    @property
    def size_in_bytes(self):
        return sum(s.size for s in self._segments)

    def __repr__(self):
        return (f"PartitionLog({self.topic}-{self.partition}, offsets {self.log_start_offset}.."
                f"{self.log_end_offset}, {len(self._segments)} segments, {self.size_in_bytes} bytes)")

    # == appending ===============================================================
    def append(self, data, assign_offsets=True, leader_epoch=None, roll=True, expect=None):
        """Append a buffer of v2 batches; returns AppendInfo. Raises (and writes nothing)
        on any invalid batch.

        assign_offsets=True (a leader taking a producer's batches): offsets are assigned
        from log_end_offset, and `leader_epoch` stamped into each batch (the leader has
        called assign_epoch). False (a follower copying its leader): batches keep their
        offsets, which must start at or after log_end_offset, and their epochs, which
        extend the leader-epoch cache (Kafka's appendAsFollower).
        roll=False: never roll on this log's policy (segment.ms, segment.bytes, full
        indexes); what does not fit the active segment raises StorageError. Used by
        append_as_follower, which rolls where the leader did.
        expect: the BatchHeaders a leader checked in `data` (a producer's ring, which it
        can still change): CorruptRecord, nothing written, unless the copy holds exactly
        those (LogSegment.append_native).
        """
        # The hot path: one C call does the copy, the validation (of the copy), the
        # offset/epoch/LogAppendTime rewrites and the sparse indexes (see
        # LogSegment.append_native). What stays in Python is the roll and flush policy.
        # perf/log_append.py, median us per append of a 16 KiB batch on the dev box:
        # ~85 (first version), ~24 (Python around a native scan), ~17 (one native call),
        # now ~13-15 with the prefault thread and the glue trimmed (0.5x a raw mmap copy).
        now, segment, was_empty, roll_due = self._append_start()
        if roll and roll_due:
            segment = self.roll()
            was_empty = not segment.log.size
        # a follower stores the leader's timestamps as they are (Kafka's appendAsFollower
        # never stamps): stamping its own clock would break the byte-identical copy
        append_time = now if self._log_append_time and assign_offsets else -1
        # batches stored as they are (a follower's, from its own buffer): written with
        # pwrite, not copied into the map (LogSegment.append_written)
        as_is = not assign_offsets and leader_epoch is None
        limits = self._timestamp_limits if assign_offsets else None
        timestamps = None if limits is None else (now, *limits)
        if as_is:
            status = segment.append_written(data, self._max_message_bytes)
        else:
            status = segment.append_native(data, assign_offsets, leader_epoch, append_time, self._max_message_bytes,
                                           expect, timestamps)
        if status != _OK:
            if status in _ROLL_FIRST and not roll:
                raise StorageError(f"{self.directory}: an append of {len(data)} bytes does not fit segment "
                                   f"{segment.base_offset} ({native.Status.NAMES.get(status, status)}) and "
                                   f"this append may not roll")
            if status in _ROLL_FIRST:
                # no room in this segment (segment.bytes, an index, 32-bit relative offsets):
                # roll, or give an empty segment the capacity this append needs, and retry
                segment = self._segment_for_append(len(data), now, force_roll=True)
                was_empty = True
                if as_is:
                    status = segment.append_written(data, self._max_message_bytes)
                else:
                    status = segment.append_native(data, assign_offsets, leader_epoch, append_time,
                                                   self._max_message_bytes, expect, timestamps)
            if status != _OK:
                raise append_error(segment.native_state, len(data))
        if not assign_offsets and batch_epochs.extend_from_buffer(self.epochs, data):
            self._write_epochs()
        return self._appended(segment, was_empty, now, len(data), append_time)

    def append_parts(self, parts, n, leader_epoch=None, expect=None):
        """append(b"".join(parts), leader_epoch=leader_epoch) for a leader, without the
        join: `parts` are buffers of whole batches, n bytes in all, written to the active
        segment with one pwritev (LogSegment.append_parts) and validated there, as
        append() validates its copy. For a run of batches that arrived one per ring
        entry: one append, one system call, one walk of the batches in C, instead of one
        of each per batch. Returns AppendInfo, or None with nothing written when the
        run does not go into the active segment as it is (a roll is due, it lacks room
        or index entries, or n is below segment.PWRITE_MIN): append() each batch then,
        which rolls. Raises as append() does for an invalid batch (nothing written), and
        for a run that does not hold the BatchHeaders `expect` (as append()'s)."""
        now, segment, was_empty, roll_due = self._append_start()
        if roll_due:
            return None
        append_time = now if self._log_append_time else -1
        limits = self._timestamp_limits
        status = segment.append_parts(parts, n, leader_epoch, append_time, self._max_message_bytes, expect,
                                      None if limits is None else (now, *limits))
        if status != _OK:
            if status in _ROLL_FIRST:
                return None
            raise append_error(segment.native_state, n)
        return self._appended(segment, was_empty, now, n, append_time)

    def timestamp_range(self):
        """[low, high] (ms) of the record timestamps a leader's append accepts now
        (message.timestamp.before/after.max.ms around the log's clock, as the append
        checks them), or None when they are not checked (LogAppendTime, or no limits)."""
        limits = self._timestamp_limits
        return None if limits is None else timestamp_range(self._now_ms(), *limits)

    def _now_ms(self):
        clock = self.clock
        return _time_ns() // 1_000_000 if clock is wall_clock_ms else clock()

    def _append_start(self):
        """What every append looks at first: (now in ms, the active segment, whether it is
        empty, whether segment.ms or segment.bytes wants it rolled). Raises StorageError
        for a closed log or after a failed background fsync of a rolled segment."""
        if self._closed:
            self._check_open()
        if self._flusher.pending:
            self.collect_flushes()  # raises StorageError after a failed background fsync
        now = self._now_ms()
        segment = self._segments[-1]
        anchor = self._roll_anchor_ms
        was_empty = not segment.log.size
        due = not was_empty and (anchor is None or now - anchor > self._segment_ms) and self._time_to_roll(segment, now)
        return now, segment, was_empty, due

    def _appended(self, segment, was_empty, now, nbytes, append_time):
        """After an OK append of nbytes to `segment`: the roll anchor, the flush policy,
        the AppendInfo."""
        if was_empty:
            self._roll_anchor_ms = now
        first, last, max_ts, batches, records = segment.appended
        self._unflushed_records += records
        info = _new_info(AppendInfo, (first, last, max_ts, batches, records, nbytes,
                                      None if append_time < 0 else append_time))
        if self._unflushed_records >= self._flush_messages or now - self._last_flush_ms >= self._flush_ms:
            self.flush()  # _maybe_flush(now)
        return info

    def _segment_for_append(self, nbytes, now, force_roll=False):
        segment = self._segments[-1]
        if not segment.log.size and nbytes > segment.log.capacity:
            # a single append larger than segment.bytes gets a segment of its own size
            self._segments.pop()
            self._bases.pop()
            segment.delete()
            segment = self._new_segment(segment.base_offset, capacity=nbytes)
            self._add(segment)
        elif force_roll or not segment.fits(nbytes) or self._time_to_roll(segment, now):
            segment = self.roll(capacity=max(nbytes, self.config.segment_bytes))
        return segment

    def _time_to_roll(self, segment, now):
        # segment.ms counts from the broker's clock at the segment's first append, not
        # from record timestamps (a producer's old timestamps would roll every append).
        # After a restart the first batch's timestamp stands in, capped at now.
        if self._roll_anchor_ms is None and not segment.is_empty:
            self._roll_anchor_ms = min(segment.first_batch_timestamp, now)
        return self._roll_anchor_ms is not None and now - self._roll_anchor_ms > self._segment_ms

    def roll(self, capacity=None):
        """Seal the active segment and start a new one at the log end offset. The old
        segment is trimmed here and fsynced in the background, and the directory after
        it (the new segment's files); the recovery point moves to its end once that is
        done (collect_flushes)."""
        self._check_open()
        old = self.active
        if old.is_empty:
            return old
        directory = self._open_directory()   # StorageError before anything changed
        fds = old.seal(sync=False)   # [] if a roll that failed after it sealed it already
        try:
            segment = self._new_segment(self.log_end_offset, capacity, sync_dir=not fds)
        finally:
            if fds:
                # and the directory, for the new files' entries: nothing in the new segment
                # counts as synced before this job is done (synced_offset stops at it)
                self._flusher.submit(old.base_offset, old.next_offset, fds + [directory])
            else:
                os.close(directory)
        self._add(segment)
        self._roll_anchor_ms = None
        # _unflushed_records still counts the old segment's: flush.messages flushes (so
        # waits for its fsync) once that many records may be unflushed, as Kafka counts
        # them from the recovery point
        return segment

    # == following a leader (replication) ============================================
    def append_as_follower(self, data, segment_base):
        """Append whole v2 batches copied from the leader (offsets and partitionLeaderEpoch
        kept: append(assign_offsets=False) validates them and extends the epoch cache),
        where `segment_base` is the base offset of the leader segment they came from.
        Returns AppendInfo.

        The follower's .log files stay byte-identical to the leader's: it rolls where the
        leader rolled and nowhere else. segment_base above the active segment's base
        starts a new segment there, which must be the log end offset (else
        InvalidSegment, nothing changes); segment_base at or below it appends to the
        active segment (below: the log was started mid-segment by
        truncate_fully_and_start_at, and that segment cannot match the leader's anyway).
        segment.bytes and segment.ms never roll: data larger than the active segment's
        room gets a larger mapping of that segment (_make_room), as the leader gave a
        segment holding one append above segment.bytes. flush.messages / flush.ms apply.
        """
        self._check_open()
        segment = self.active
        if segment_base < segment.base_offset and segment.is_empty and len(self._segments) > 1 \
                and self._segments[-2].base_offset == segment_base:
            segment = self._take_back_roll()
        if segment_base > segment.base_offset:
            if segment_base != self.log_end_offset:
                raise InvalidSegment(f"{self.directory}: the leader's segment {segment_base} cannot start here: "
                                     f"the log ends at offset {self.log_end_offset} (active segment "
                                     f"{segment.base_offset}); segments would not line up with the leader's")
            segment = self.roll(capacity=max(len(data), self.config.segment_bytes))
        if segment.log.size + len(data) > segment.log.capacity:
            self._make_room(len(data))
        return self.append(data, assign_offsets=False, roll=False)

    def _take_back_roll(self):
        """Drop the empty active segment and append to the one before it again: this
        replica rolled there as a leader just before it died, and the leader it follows
        now did not (its batches from here are in its segment that began before), so
        its files would otherwise stop lining up with the leader's."""
        empty = self._segments.pop()
        self._bases.pop()
        empty.delete()
        previous = self._segments.pop()
        self._bases.pop()
        previous.close()
        segment, _ = self._recover_segment(previous.base_offset, last=True)   # writable again
        self._add(segment)
        self._roll_anchor_ms = None
        return segment

    def _make_room(self, nbytes):
        """Map the active segment with room for `nbytes` more, without rolling: the
        files are flushed, closed and the segment reopened at the larger capacity
        (recovered: a scan of its batches, rebuilding its indexes; rare, only when a
        leader segment outgrew this log's segment.bytes)."""
        old = self.active
        capacity = old.log.size + nbytes
        self.flush()
        self._segments.pop()
        self._bases.pop()
        if not old.log.size:
            old.delete()   # reopened, its file's length (the old capacity) would pass for data
            segment = self._new_segment(old.base_offset, capacity=capacity)
        else:
            old.close()
            segment = LogSegment(self.directory, old.base_offset, self.config, writable=True, create=True,
                                 index_entries=0, capacity=capacity)
            segment.recover()
        self._add(segment)

    def truncate_fully_and_start_at(self, offset):
        """Delete every segment and start empty at `offset` (Kafka's
        truncateFullyAndStartAt: a follower whose log end fell below the leader's log
        start). The log start, log end and recovery point become `offset`; the
        leader-epoch cache is cleared and every producer-state snapshot deleted.

        Crash-safe as truncate_to is: segments go newest first (a crash leaves a
        prefix of the old log, or none: an empty log at the old log start), then the
        new empty segment is created, then the checkpoints moved (a crash before that
        opens at the new segment's base all the same: open takes the log start up to
        the first segment)."""
        self._check_open()
        if offset < 0:
            raise OffsetOutOfRange(f"cannot start the log of {self.topic}-{self.partition} at offset {offset}")
        self._flusher.forget(set(self._bases))
        while self._segments:
            self._segments.pop().delete()
            self._bases.pop()
        fsync_dir(self.directory)
        self._add(self._new_segment(offset))
        self._checkpoints.update((self.topic, self.partition), recovery_point=offset, log_start_offset=offset)
        self.recovery_point = self.log_start_offset = self.synced_offset = self._synced_end = offset
        self._unflushed_records = 0
        self._last_flush_ms = self.clock()
        self._roll_anchor_ms = None
        self.epochs = LeaderEpochCache()
        self._write_epochs()
        self.truncations += 1   # as truncate_to: no compaction pass goes on with the old records
        CleanerCheckpoint(self.log_dir).truncate((self.topic, self.partition), offset)
        producer_snapshot.delete_above(self.directory, -1)

    # == retention and truncation ================================================
    def delete_old_segments(self):
        """Apply retention.ms and retention.bytes: delete whole segments from the oldest,
        never the active one. Returns how many were deleted; moves log_start_offset."""
        self._check_open()
        if not self.config.delete:
            return 0
        now = self.clock()
        retention_ms, retention_bytes = self.config.retention_ms, self.config.retention_bytes
        excess = self.size_in_bytes - retention_bytes if retention_bytes >= 0 else 0
        doomed = 0
        for segment in self._segments[:-1]:
            expired = retention_ms >= 0 and now - segment.max_timestamp > retention_ms
            too_big = retention_bytes >= 0 and excess >= segment.size
            if not (expired or too_big):
                break
            excess -= segment.size
            doomed += 1
        if doomed:
            self._delete_oldest(doomed)
        return doomed

    def delete_records_before(self, offset):
        """Kafka's DeleteRecords: records below `offset` (at most the log end) become
        unreadable at once: the log start offset moves up to it, checkpointed, and the
        segments wholly below it are deleted. A lower offset changes nothing."""
        self._check_open()
        if offset > self.log_end_offset:
            raise OffsetOutOfRange(f"offset {offset} is past the log end {self.log_end_offset} of "
                                   f"{self.topic}-{self.partition}")
        if offset <= self.log_start_offset:
            return
        self._checkpoints.update((self.topic, self.partition), log_start_offset=offset)
        self.log_start_offset = offset
        below = 0
        while below + 1 < len(self._segments) and self._bases[below + 1] <= offset:
            below += 1
        if below:
            self._delete_oldest(below)
        elif self.epochs.truncate_from_start(offset):
            self._write_epochs()

    def _delete_oldest(self, count):
        # checkpoint the new start before the files go: a crash in between leaves
        # files below the log start, which the next open ignores and deletes. If the
        # checkpoint cannot be written (StorageError: a full disk), nothing changes.
        start = max(self.log_start_offset, self._segments[count].base_offset)
        self._checkpoints.update((self.topic, self.partition), log_start_offset=start)
        gone, self._segments = self._segments[:count], self._segments[count:]
        self._bases = self._bases[count:]
        self._flusher.forget({s.base_offset for s in gone})
        self.log_start_offset = start
        if self.epochs is not None and self.epochs.truncate_from_start(start):
            self._write_epochs()
        for segment in gone:
            log.info("%s: deleting segment %d (offsets %d..%d, %d bytes)", self.directory,
                     segment.base_offset, segment.base_offset, segment.next_offset - 1, segment.size)
            segment.delete()
        fsync_dir(self.directory)

    def truncate_to(self, offset):
        """Remove every batch holding an offset >= `offset` (a follower diverging from
        its leader). Batches are removed whole, and producer-state snapshots above the
        new log end with them (the caller reloads its producer state)."""
        self._check_open()
        if offset >= self.log_end_offset:
            return
        while len(self._segments) > 1 and self._segments[-1].base_offset >= offset:
            self._flusher.forget({self._segments[-1].base_offset})
            self._segments.pop().delete()
            self._bases.pop()
        segment = self.active
        if not segment.writable:  # reopen the sealed one for appends
            self._segments.pop()
            self._bases.pop()
            segment.close()
            segment, _ = self._recover_segment(segment.base_offset, last=True)
            self._add(segment)
        segment.truncate_to(offset)
        self.synced_offset = min(self.synced_offset, self.log_end_offset)
        self._synced_end = min(self._synced_end, self.log_end_offset)
        if self.log_end_offset < self.log_start_offset:
            self.log_start_offset = self.log_end_offset
        self._unflushed_records = 0
        self.flush()
        if self.epochs.truncate_from_end(self.log_end_offset):
            self._write_epochs()
        # the records above `offset` are gone: no compaction pass may go on with an offset
        # map that saw them, and the cleaned point must not claim new ones (Kafka's
        # LogCleanerManager.maybeTruncateCheckpoint)
        self.truncations += 1
        CleanerCheckpoint(self.log_dir).truncate((self.topic, self.partition), offset)
        # producer-state snapshots of batches now gone (Kafka's truncateAndReload)
        producer_snapshot.delete_above(self.directory, self.log_end_offset)

    # == compaction: swapping cleaned segments in (storage/cleaner.py) ===============
    def replace_segments(self, old_segments):
        """Put the cleaner's output in place of `old_segments` and return its LogSegment.

        old_segments: consecutive segments of this log, not the active one. The cleaner has
        written, fsynced and closed <base>.log.cleaned, <base>.index.cleaned and
        <base>.timeindex.cleaned (base: the first old segment's base offset), holding
        only offsets the old segments held. The files are swapped by
        segment_swap.commit_cleaned (renames; a crash at any point is finished by
        segment_swap.finish_interrupted_swaps on the next open), then the segment list.
        """
        self._check_open()
        first = old_segments[0]
        i = next((k for k, s in enumerate(self._segments) if s is first), None)
        n = len(old_segments)
        if i is None or i + n >= len(self._segments) or \
                any(a is not b for a, b in zip(self._segments[i:i + n], old_segments)):
            raise StorageError(f"{self.directory}: cannot replace segments "
                               f"{[s.base_offset for s in old_segments]}: not consecutive inactive "
                               f"segments of this log")
        base = first.base_offset
        try:
            txn_index.merge_for_swap(self.directory, base, old_segments, write_atomically)
            segment_swap.commit_cleaned(self.directory, base, [s.base_offset for s in old_segments[1:]])
        except OSError as e:
            # the files are half swapped; the next open finishes the job. Until then the
            # old maps still serve reads, but nothing more should be written: say so loudly
            raise StorageError(f"{self.directory}: swapping in cleaned segment {base} failed ({e}); "
                               f"reopen the log to complete or undo the swap") from e
        for s in old_segments:
            s.close()  # maps only; a reader's view keeps its pages (MappedFile.close)
            if s is not first:
                s.txn_index.delete()
        segment = LogSegment(self.directory, base, self.config, writable=False)
        segment.load()
        self._segments[i:i + n] = [segment]
        self._bases[i:i + n] = [base]
        return segment

    # == aborted transactions (txn_index.py) ==========================================
    def append_aborted_txn(self, txn):
        """Index an aborted transaction (an AbortedTxn) in the segment holding its marker."""
        self._segments[self.segment_index(txn.last_offset)].txn_index.append(txn)

    def collect_aborted_txns(self, fetch_offset, upper_bound):
        """The aborted transactions overlapping [fetch_offset, upper_bound), for a
        read_committed fetch (Kafka's collectAbortedTransactions); none that ended below
        the log start (a log start inside a segment leaves them in its .txnindex)."""
        fetch_offset = max(fetch_offset, self.log_start_offset)
        i = self.segment_index(fetch_offset)
        return txn_index.collect_aborted_txns(self._segments[i:], fetch_offset, upper_bound)

    # == closing =================================================================
    def close(self):
        """Flush (background fsyncs of rolled segments waited for), trim the active
        segment and checkpoint: the next open is instant."""
        if self._closed:
            return
        try:
            self.flush()
            self.active.seal()
            self._checkpoint_recovery_point(self.log_end_offset, log_start_offset=self.log_start_offset)
        finally:
            self._flusher.close()   # its thread, idle by now: flush waited for every fsync
        for segment in self._segments:
            segment.close()
        self._closed = True

    def _check_open(self):
        if self._closed:
            raise StorageError(f"log {self.directory} is closed")
