"""LogCleaner: Kafka's log compaction for one partition log (cleanup.policy=compact).

    cleaner = LogCleaner(log)                        # time from log.clock
    stats = cleaner.maybe_clean(max_bytes=1 << 20)   # one bounded step; a CleanerStats
    while stats.in_progress:                         # (the worker: once per loop turn)
        stats = cleaner.maybe_clean(max_bytes=1 << 20)
    cleaner.dirty_ratio()      # the figure compared with min.cleanable.dirty.ratio
    cleaner.abort()            # drop an unfinished pass (before log.close; optional)

The worker that owns the PartitionLog calls maybe_clean from its loop, in the same thread
as appends (PartitionLog is not thread-safe). Each call does at most about `max_bytes`
of log work and returns; a pass (one "cleaning round") takes as many calls as it needs.

Theory of operation (Kafka's LogCleaner, Cleaner, LogCleanerManager, LogToClean and
MemoryRecords.filterTo; the names below are theirs)
- What a pass cleans (the dirty range [first dirty, first uncleanable) from the cleaner
  checkpoint, its bytes and ratio, the groups of segments) is cleaning_plan.py; the
  checkpoint (cleaner-offset-checkpoint in the log dir) is checkpoint.CleanerCheckpoint.
- A pass starts when dirty bytes / (clean + dirty bytes) > min.cleanable.dirty.ratio
  (strictly, as Kafka's grabFilthiestCompactedLog), or when the first batch of a dirty
  segment is older than max.compaction.lag.ms (and there are dirty bytes), or when asked
  (force=True).
- Phase 1, producers: the last batch of every producer id in the log is found by a
  header walk (or given by `active_producers`), so it can be kept (below). A producer
  whose last batch's maxTimestamp is older than producer_expiration_ms (Kafka's
  producer.id.expiration.ms, 1 day) counts as expired, as in Kafka's producer state.
- Phase 2, the offset map: key -> latest offset over the dirty tail, for keyed records
  of non-control batches. At most `max_map_entries` keys (Kafka's dedupe buffer); when
  full, the pass cleans only up to where the map got (end offset), the rest waits for
  the next pass. Keys of 16 bytes or more are stored as their 16-byte BLAKE2b digest
  (Kafka stores MD5 digests of every key).
- Phase 3, cleaning: every inactive segment below the end offset, from the log start,
  in groups (cleaning_plan.next_group), each group's batches filtered
  (odradek.client.records.filter, Kafka's MemoryRecords.filterTo, with this module's
  _CompactionFilter deciding) into one new segment (segment_writer.SegmentWriter) named
  by the group's first base offset and swapped in by PartitionLog.replace_segments
  (renames; FORMAT.md, "Compaction").
- Then the checkpoint moves to the end offset.

Which records survive (_CompactionFilter: Cleaner.shouldRetainRecord and checkBatchRetention):
- A record past the end offset of the map: kept.
- A keyed record: kept when it is the latest of its key (offset >= the map's offset,
  or the key is not in the map: it was last written in the clean head) and either has
  a value or is a tombstone still inside its delete horizon (below).
- A record with a null key: kept. (Kafka's leader refuses null keys on compacted
  topics, and Kafka's cleaner drops any it finds as invalid; odradek keeps them rather
  than lose data a producer was allowed to write.)
- Aborted transactions (KIP-98; CleanedTransactionMetadata): the pass collects the
  aborted transactions below its upper bound from the segments' .txnindex
  (PartitionLog.collect_aborted_txns) when it starts; a transactional data batch of an
  aborted transaction (its producer's, with its baseOffset from the transaction's first
  offset to its ABORT marker) is neither mapped nor kept (its last batch of the
  producer, or of the group, stays as an empty header, as any emptied batch). The worker
  passes the last stable offset as max_offset, so no undecided transaction is cleaned.
- Records of control batches (transaction markers): kept, until the batch can go: a
  marker whose transaction has no batch left in the log (committed data superseded,
  aborted data removed) is given a delete horizon, and dropped by a pass that runs after
  it.
- Tombstones (null value), Kafka >= 3.1 (KIP-534), per batch, not per segment mtime or
  record timestamp: the first pass that keeps a batch holding a tombstone rewrites it
  with attribute bit 6 set and baseTimestamp = the delete horizon = pass time +
  delete.retention.ms (record timestampDeltas rewritten so record timestamps do not
  change). A later pass that starts at or after the horizon drops the tombstone. So a
  tombstone lives at least delete.retention.ms after the cleaner first saw it, which is
  after it was appended.
How a batch is then written (copied byte for byte, rebuilt, kept as an empty header,
or dropped) is filter.py's. A batch left with no record is dropped, except (Kafka's
RETAIN_EMPTY) when it is the last batch of its producer id in the log (idempotence state
is rebuilt from batch headers) or the last batch of its group (Kafka keeps the last
batch of the cleaning round; odradek also keeps each group's, so a cleaned segment ends
at the same offset as what it replaces and is never empty). Batches that cannot be
decoded (snappy, lz4, zstd, or records that do not parse) are copied as they are and
their keys are not mapped.

Readers: cleaned segments are new files (created with O_EXCL, renamed into place), never
rewritten in place, so a reader that mapped an old segment or holds its descriptor keeps
reading the old bytes. A cleaned segment keeps its base offset but not its byte
positions: positions learnt before a swap (shared-memory descriptors, GetSegment
answers, a reader's cached map of that base offset) are only valid for the old file.
Pass `max_offset` to keep the cleaner below the offsets descriptors still describe.

Errors: maybe_clean drops the pass and raises StorageError for a segment it cannot
frame (a damaged disk; nothing is dropped) or a swap whose renames failed (reopen the
log); the worker logs it and carries on without cleaning that log (Kafka marks such a
partition uncleanable). A failed write of the output (ENOSPC, EIO) also drops the pass
(its .cleaned files deleted) and raises StorageError; the log is unchanged and the
worker tries again after log.cleaner.backoff.ms.

Crash safety: output is written as *.cleaned, fsynced, then committed by renames
(PartitionLog.replace_segments); PartitionLog's open completes or drops what a crash
left (_finish_interrupted_swaps). The checkpoint is written after the pass; a pass cut
short is redone, which changes nothing already clean (horizons are in the batches).

Cost, measured on the dev VM (32 MiB of 100-byte records, 20,000 keys; a pass reads the
dirty tail once to map it and every cleaned segment once more): a pass ran at 15 MiB/s
of log with 10-record batches (~1.7 us a record decoded) and 5 MiB/s with one-record
batches (~3.5 us a batch); with the default step (max_bytes=1 MiB) the longest call,
a swap included, took 73 ms and 155 ms respectively (8 MiB: 0.37 s and 0.87 s). Header
walks (the producer phase, batches below first dirty) are charged 1/16 of their bytes.
Memory: the offset map, ~100-150 bytes a distinct key (default cap 1 Mi keys); the
process above peaked at 57 MiB. Record decoding is native.decode_records; the rest is
Python.
Owned by the partition's worker; not thread-safe.
"""
import hashlib
import logging
import time
from dataclasses import dataclass, field

from odradek.client.errors import StorageError
from odradek.client.records import TRANSACTIONAL_MASK
from odradek.client.records.filter import (DROPPED, REWRITTEN, UNREADABLE, BatchRetention, decode_batch,
                                           filter_batch)
from odradek.client.records.control import ControlRecordType
from odradek.client.records.layout import BATCH_HEADER_SIZE, CONTROL_MASK, LOG_OVERHEAD, MIN_BATCH_LENGTH, read_header
from odradek.daemon.storage import cleaning_plan
from odradek.daemon.storage.checkpoint import CleanerCheckpoint
from odradek.daemon.storage.cleaning_plan import floor_index
from odradek.daemon.storage.segment_writer import SegmentWriter

__all__ = ["LogCleaner", "CleanerStats", "DEFAULT_STEP_BYTES", "DEFAULT_MAP_ENTRIES"]

logger = logging.getLogger(__name__)

DEFAULT_STEP_BYTES = 1 << 20      # log bytes of work per maybe_clean call (<= ~0.16 s measured)
DEFAULT_MAP_ENTRIES = 1 << 20     # distinct keys per pass (Kafka: log.cleaner.dedupe.buffer.size)
HEADER_WALK_WEIGHT = 16           # a header-only visit of N bytes is charged N / 16
PRODUCER_EXPIRATION_MS = 86_400_000   # Kafka's producer.id.expiration.ms default
_INT64_MAX = 2 ** 63 - 1


# ==== results ============================================================================
@dataclass
class CleanerStats:
    """What one maybe_clean call did. state: 'idle' (nothing to clean, no pass),
    'cleaning' (a pass is under way: call again), 'done' (a pass finished in this call),
    'aborted' (a pass was dropped: the log was truncated or stopped being compacted)."""
    state: str = "idle"
    dirty_ratio: float = 0.0
    first_dirty: int = -1
    end_offset: int = -1       # the pass cleans below this (set once its map is built)
    bytes_read: int = 0        # log bytes decoded or walked in this call
    bytes_written: int = 0     # cleaned bytes written in this call
    records_read: int = 0
    records_kept: int = 0
    tombstones_dropped: int = 0
    batches_rewritten: int = 0
    batches_dropped: int = 0
    batches_unreadable: int = 0
    segments_swapped: int = 0  # groups swapped in (each replaced one or more segments)
    elapsed_ms: float = 0.0
    pass_totals: dict = field(default_factory=dict)  # when state == 'done': the whole pass

    @property
    def in_progress(self):
        return self.state == "cleaning"


_COUNTERS = ("bytes_read", "bytes_written", "records_read", "records_kept", "tombstones_dropped",
             "batches_rewritten", "batches_dropped", "batches_unreadable", "segments_swapped")


# ==== a pass =============================================================================
class _Pass:
    """The state of one cleaning round, kept between maybe_clean calls."""

    def __init__(self, cleanable, now, truncations, producer_last):
        self.first_dirty = cleanable.first_dirty
        self.upper = cleanable.first_uncleanable
        self.reset_checkpoint = cleanable.checkpoint_reset
        self.now = now                       # Kafka: currentTime of doClean
        self.truncations = truncations
        self.phase = "producers" if producer_last is None else "map"
        self.producer_last = {} if producer_last is None else dict(producer_last)
        self.walked = {}
        self.walk_base = None                # producers: segment base and position walked to
        self.walk_pos = 0
        self.map = {}
        self.map_base = None                 # map: segment base and position mapped to
        self.map_pos = 0
        self.latest = self.first_dirty - 1   # Kafka's OffsetMap.latestOffset
        self.end_offset = None
        self.ongoing_txn = set()             # CleanedTransactionMetadata: a batch of pid's kept
        self.aborted = {}                    # producer id -> [(first offset, ABORT marker offset)]
        self.clean_from = -1                 # cleaning: next group starts above this base
        self.group = None                    # the segments being rewritten
        self.group_at = 0                    # index in group, and byte position in it
        self.group_pos = 0
        self.writer = None
        self.totals = dict.fromkeys(_COUNTERS, 0)


    def is_aborted(self, producer_id, base_offset, attributes):
        """Whether the batch is transactional data of an aborted transaction."""
        if attributes & (TRANSACTIONAL_MASK | CONTROL_MASK) != TRANSACTIONAL_MASK:
            return False
        return any(first <= base_offset <= last for first, last in self.aborted.get(producer_id, ()))


def _aborted_ranges(txns):
    out = {}
    for t in txns:
        out.setdefault(t.producer_id, []).append((t.first_offset, t.last_offset))
    return out


# ==== batches ============================================================================
def _key_id(key):
    """The offset map's key: the key itself if short, else its 16-byte digest (longer
    keys never collide with short ones: their lengths differ)."""
    return key if len(key) < 16 else hashlib.blake2b(key, digest_size=16).digest()


def _walk_headers(view, position, end):
    """Yield (position, size, BatchHeader) of each whole batch in view[position:end]."""
    while position + BATCH_HEADER_SIZE <= end:
        header = read_header(view, position)
        size = header.batch_length + LOG_OVERHEAD
        if header.batch_length < MIN_BATCH_LENGTH or position + size > end:
            return
        yield position, size, header
        position += size


class _CompactionFilter:
    """The cleaner's RecordFilter for filter.filter_batch (Kafka's Cleaner: its
    checkBatchRetention and shouldRetainRecord), over the pass `p`; counts the
    tombstones it drops in `stats`. Set group_last before each batch: whether it is the
    last batch of its group."""

    def __init__(self, p, stats, delete_retention_ms):
        self.p, self.stats = p, stats
        self.delete_horizon_ms = min(p.now + delete_retention_ms, _INT64_MAX)
        self.group_last = False
        self._discard = False   # this batch's records all go (a marker past its horizon)

    def check_batch_retention(self, batch):
        p = self.p
        pid, horizon = batch.producer_id, batch.delete_horizon
        control = batch.is_control
        if control:
            # CleanedTransactionMetadata.onControlBatchRead: an empty control batch was
            # cleaned already; a COMMIT or ABORT marker can go once no batch of its
            # transaction was seen (odradek keeps aborted data: no transaction index yet)
            if not batch.rows:
                can_discard = True
            elif batch.control_type in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
                can_discard = pid not in p.ongoing_txn
                p.ongoing_txn.discard(pid)
            else:
                can_discard = False
            self._discard = can_discard and horizon is not None and horizon <= p.now
        else:
            aborted = p.is_aborted(pid, batch.base_offset, batch.attributes)
            retained = (pid >= 0 and p.producer_last.get(pid) == batch.last_offset) or self.group_last
            if batch.attributes & TRANSACTIONAL_MASK and (retained or not aborted):
                p.ongoing_txn.add(pid)          # a batch of its transaction stays: so does the marker
            can_discard, self._discard = False, aborted
        if (pid >= 0 and p.producer_last.get(pid) == batch.last_offset) or self.group_last:
            retention = BatchRetention.RETAIN_EMPTY
        elif self._discard:
            retention = BatchRetention.DELETE
        else:
            retention = BatchRetention.DELETE_EMPTY
        return retention, can_discard and control

    def retained_records(self, batch):
        rows = batch.rows
        if self._discard:
            return []
        if batch.is_control:
            return list(range(len(rows)))
        p = self.p
        the_map, latest, now, horizon = p.map, p.latest, p.now, batch.delete_horizon
        base, data = batch.base_offset, batch.data
        kept = []
        for i, (delta, _, key_pos, key_len, _, value_len, _, _) in enumerate(rows):
            offset = base + delta
            if offset > latest or key_len < 0:
                keep = True
            else:
                found = the_map.get(_key_id(data[key_pos:key_pos + key_len]), -1)
                keep = offset >= found and (value_len >= 0 or horizon is None or now < horizon)
                if offset >= found and not keep:
                    self.stats.tombstones_dropped += 1
            if keep:
                kept.append(i)
        return kept


# ==== the cleaner ========================================================================
class LogCleaner:
    def __init__(self, log, clock=None, max_map_entries=DEFAULT_MAP_ENTRIES, active_producers=None,
                 producer_expiration_ms=PRODUCER_EXPIRATION_MS):
        """Compaction of `log` (a PartitionLog). clock: milliseconds (default the log's).
        max_map_entries: distinct keys a pass maps (Kafka's dedupe buffer).
        active_producers: optional callable returning {producer id: last offset of its
        last batch} for the producers still active, e.g. from the worker's ProducerState;
        by default each pass finds them with a header walk of the whole log, counting as
        expired a producer whose last batch is older than producer_expiration_ms."""
        if max_map_entries < 1:
            raise ValueError(f"max_map_entries must be at least 1, not {max_map_entries}")
        self.log = log
        self.clock = clock or log.clock
        self.max_map_entries = max_map_entries
        self.active_producers = active_producers
        self.producer_expiration_ms = producer_expiration_ms
        self.checkpoint = CleanerCheckpoint(log.log_dir)
        self.last_pass = None    # totals of the last finished pass (a dict), for status
        self._pass = None

    @property
    def tp(self):
        return self.log.topic, self.log.partition

    @property
    def in_progress(self):
        return self._pass is not None

    # -- what is cleanable ----------------------------------------------------------------
    def cleanable(self, max_offset=None, now=None):
        """A cleaning_plan.Cleanable: the dirty range and its bytes now."""
        now = self.clock() if now is None else now
        return cleaning_plan.cleanable(self.log, self.checkpoint.read(self.tp), max_offset, now)

    def dirty_ratio(self, max_offset=None):
        """Dirty bytes / all bytes of the inactive segments (0.0 for an empty log)."""
        return self.cleanable(max_offset).ratio

    # -- the entry point ------------------------------------------------------------------
    def maybe_clean(self, max_bytes=DEFAULT_STEP_BYTES, max_offset=None, force=False):
        """Do up to about `max_bytes` of compaction work and return a CleanerStats.

        Starts a pass if none is under way and the log needs one (dirty ratio above
        min.cleanable.dirty.ratio, max.compaction.lag.ms passed, or force=True), then
        works on it until the budget is spent or the pass ends (checkpoint written).
        max_offset: nothing at or above it is cleaned (the last stable offset, which is
        at most the high watermark; the first offset the worker's shared-memory
        descriptors still describe), rounded down to a segment base; taken when a pass
        starts. Does nothing for a log whose
        cleanup.policy has no 'compact' (an unfinished pass is dropped)."""
        started = time.monotonic()
        stats = CleanerStats()
        log = self.log
        if not log.config.compact:
            if self._pass is not None:
                self.abort()
                stats.state = "aborted"
            return stats
        if self._pass is None:
            now = self.clock()
            c = self.cleanable(max_offset, now)
            stats.dirty_ratio, stats.first_dirty = c.ratio, c.first_dirty
            if c.checkpoint_reset and self.checkpoint.read(self.tp) is not None:
                self.checkpoint.update(self.tp, c.first_dirty)   # Kafka: forceUpdateCheckpoint
            wanted = (c.need_compaction_now and c.dirty_bytes > 0) or \
                c.ratio > log.config.min_cleanable_dirty_ratio or \
                (force and c.clean_bytes + c.dirty_bytes > 0)
            if not wanted:
                stats.elapsed_ms = (time.monotonic() - started) * 1000
                return stats
            producers = self.active_producers() if self.active_producers is not None else None
            self._pass = _Pass(c, now, log.truncations, producers)
            self._pass.aborted = _aborted_ranges(log.collect_aborted_txns(log.log_start_offset,
                                                                          c.first_uncleanable))
            logger.info("%s: cleaning from offset %d to %d (dirty ratio %.2f, %d dirty bytes)",
                        log.directory, c.first_dirty, c.first_uncleanable, c.ratio, c.dirty_bytes)
        p = self._pass
        stats.first_dirty = p.first_dirty
        if p.truncations != log.truncations:
            self.abort()
            stats.state = "aborted"
            return stats
        budget = max(1, max_bytes)
        try:
            while budget > 0 and p.phase != "done":
                if p.phase == "producers":
                    budget -= self._walk_producers(p, budget, stats)
                elif p.phase == "map":
                    budget -= self._map_step(p, budget, stats)
                else:
                    budget -= self._clean_step(p, budget, stats)
        except OSError as e:   # a write of the cleaned output failed: a full disk, EIO
            self.abort()
            raise StorageError(f"{log.directory}: compaction stopped: {e.strerror or e}; the log is "
                               f"unchanged and the next pass starts over") from e
        except BaseException:
            self.abort()
            raise
        stats.end_offset = -1 if p.end_offset is None else p.end_offset
        for name in _COUNTERS:
            p.totals[name] += getattr(stats, name)
        if p.phase == "done":
            self.checkpoint.update(self.tp, p.end_offset)
            self.last_pass = dict(p.totals, first_dirty=p.first_dirty, end_offset=p.end_offset,
                                  keys=len(p.map))
            stats.pass_totals = self.last_pass
            stats.state = "done"
            self._pass = None
            logger.info("%s: cleaned offsets below %d: %s", log.directory, p.end_offset, self.last_pass)
        else:
            stats.state = "cleaning"
        stats.elapsed_ms = (time.monotonic() - started) * 1000
        return stats

    def clean(self, max_offset=None, force=False, max_bytes=DEFAULT_STEP_BYTES):
        """Run one whole pass (if one is due, or force) to its end; the last CleanerStats."""
        stats = self.maybe_clean(max_bytes, max_offset, force)
        while stats.in_progress:
            stats = self.maybe_clean(max_bytes, max_offset, force)
        return stats

    def abort(self):
        """Drop an unfinished pass: its partial output is deleted; groups already swapped
        in stay (they are complete). The next pass starts over."""
        p = self._pass
        self._pass = None
        if p is not None and p.writer is not None:
            p.writer.abort()

    close = abort

    # -- phase 1: the last batch of each producer ------------------------------------------
    def _walk_producers(self, p, budget, stats):
        """Header walk of every segment (the active one too) from the cursor: the last
        offset of each producer id's last batch (Kafka: lastRecordsOfActiveProducers)."""
        used = 0
        segments = self.log.segments
        if p.walk_base is None:
            i, p.walk_pos = 0, 0
        else:
            i = floor_index(segments, p.walk_base)
            if segments[i].base_offset != p.walk_base:   # retention took it: the next one
                p.walk_pos = 0
                if segments[i].base_offset < p.walk_base:
                    i += 1
        last = p.walked   # producer id -> (last offset, maxTimestamp) of its last batch
        while i < len(segments):
            segment = segments[i]
            p.walk_base = segment.base_offset
            for pos, size, header in _walk_headers(segment.log.buffer, p.walk_pos, segment.size):
                if header.producer_id >= 0:
                    last[header.producer_id] = (header.base_offset + header.last_offset_delta, header.max_timestamp)
                used += max(1, size // HEADER_WALK_WEIGHT)
                p.walk_pos = pos + size
                if used >= budget:
                    stats.bytes_read += used
                    return used
            i += 1
            p.walk_pos = 0
        expired_before = p.now - self.producer_expiration_ms
        p.producer_last = {pid: offset for pid, (offset, ts) in last.items() if ts >= expired_before}
        p.walked = None
        p.phase = "map"
        stats.bytes_read += used
        return max(used, 1)

    # -- phase 2: the offset map ----------------------------------------------------------------
    def _map_step(self, p, budget, stats):
        """Map the dirty tail from the cursor (p.map_base, p.map_pos) until the budget is
        spent, the map is full, or the tail ends (then p.end_offset is set)."""
        used = 0
        segments = self.log.segments[:-1]
        if p.map_base is None:   # the first call: the batch holding first dirty
            i = floor_index(segments, p.first_dirty)
            p.map_pos = segments[i].index.lookup(p.first_dirty)[1] if segments else 0
        else:
            i = floor_index(segments, p.map_base)
            if segments and segments[i].base_offset != p.map_base:   # retention took it
                p.map_pos = 0
                if segments[i].base_offset < p.map_base:
                    i += 1
        first_dirty, the_map, cap = p.first_dirty, p.map, self.max_map_entries
        while i < len(segments) and segments[i].base_offset < p.upper:
            segment = segments[i]
            p.map_base = segment.base_offset
            view = segment.log.buffer
            for pos, size, header in _walk_headers(view, p.map_pos, segment.size):
                base = header.base_offset
                last = base + header.last_offset_delta
                if last < first_dirty:
                    used += max(1, size // HEADER_WALK_WEIGHT)
                elif not header.attributes & CONTROL_MASK and \
                        not p.is_aborted(header.producer_id, base, header.attributes):
                    batch = decode_batch(view[pos:pos + size], header)
                    if batch is None:
                        stats.batches_unreadable += 1
                    else:
                        data, rows = batch.data, batch.rows
                        keys = [(_key_id(data[key_pos:key_pos + key_len]), base + offset_delta)
                                for offset_delta, _, key_pos, key_len, *_ in rows
                                if key_len >= 0 and base + offset_delta >= first_dirty]
                        new = len({k for k, _ in keys if k not in the_map})
                        if new and the_map and len(the_map) + new > cap:
                            # full: this batch stays out, past the map's latest offset
                            # (an empty map takes a batch whatever its size: progress)
                            stats.bytes_read += used
                            self._map_done(p)
                            return max(used, 1)
                        the_map.update(keys)
                        stats.records_read += len(rows)
                    used += size
                else:
                    used += size
                p.latest = max(p.latest, last)
                p.map_pos = pos + size
                if used >= budget:
                    stats.bytes_read += used
                    return used
            if p.map_pos < segment.size:
                raise StorageError(f"{segment.log.path}: no batch at position {p.map_pos} (size "
                                   f"{segment.size}); the segment is damaged")
            # the whole segment is mapped: so are the offsets up to the next one's base
            # (Kafka: updateLatestOffset(nextSegmentStartOffset - 1), over gaps)
            nxt = segments[i + 1].base_offset if i + 1 < len(segments) else p.upper
            p.latest = max(p.latest, min(nxt, p.upper) - 1)
            i += 1
            p.map_pos = 0
            p.map_base = segments[i].base_offset if i < len(segments) else p.upper
        stats.bytes_read += used
        self._map_done(p)
        return max(used, 1)

    def _map_done(self, p):
        p.end_offset = p.latest + 1
        p.phase = "clean"

    # -- phase 3: rewriting groups ----------------------------------------------------------------
    def _clean_step(self, p, budget, stats):
        log = self.log
        used = 0
        while used < budget:
            if p.group is not None:
                current = {id(s) for s in log.segments}
                if any(id(s) not in current for s in p.group):   # retention took one: redo
                    p.writer.abort()
                    p.writer, p.group = None, None
            if p.group is None:
                group = cleaning_plan.next_group(log, p.clean_from, min(p.end_offset, p.upper), p.upper)
                if group is None:
                    p.phase = "done"
                    return max(used, 1)
                p.group, p.group_at, p.group_pos = group, 0, 0
                p.writer = SegmentWriter(log.directory, group[0].base_offset, log.config.index_interval_bytes)
            used += self._clean_group(p, budget - used, stats)
            if p.group_at >= len(p.group):
                self._swap(p, stats)
        return used

    def _clean_group(self, p, budget, stats):
        """Filter the group's batches from its cursor into the writer, within the budget."""
        used = 0
        group, writer = p.group, p.writer
        record_filter = _CompactionFilter(p, stats, self.log.config.delete_retention_ms)
        while p.group_at < len(group):
            segment = group[p.group_at]
            view = segment.log.buffer
            end = segment.size
            last_segment = p.group_at == len(group) - 1
            for pos, size, header in _walk_headers(view, p.group_pos, end):
                record_filter.group_last = last_segment and pos + size == end
                result = filter_batch(view[pos:pos + size], record_filter, header)
                stats.records_read += result.records_read
                stats.records_kept += result.records_kept
                _count(stats, result.kind)
                out = result.output
                if out is not None:
                    writer.append(out, header.base_offset + header.last_offset_delta, read_header(out).max_timestamp)
                    stats.bytes_written += len(out)
                used += size
                p.group_pos = pos + size
                if used >= budget:
                    break
            if p.group_pos >= end:
                p.group_at += 1
                p.group_pos = 0
            elif used < budget:   # never drop what cannot be framed: stop the pass
                raise StorageError(f"{segment.log.path}: no batch at position {p.group_pos} (size "
                                   f"{end}); the segment is damaged")
            if used >= budget:
                break
        stats.bytes_read += used
        return max(used, 1)

    def _swap(self, p, stats):
        writer, group = p.writer, p.group
        writer.finish()
        p.writer = None
        self.log.replace_segments(group)
        p.clean_from = group[0].base_offset
        p.group = None
        stats.segments_swapped += 1


_COUNTED = {REWRITTEN: "batches_rewritten", DROPPED: "batches_dropped", UNREADABLE: "batches_unreadable"}


def _count(stats, kind):
    """A filtered batch's kind, into the stats (a copied batch counts nowhere)."""
    name = _COUNTED.get(kind)
    if name is not None:
        setattr(stats, name, getattr(stats, name) + 1)
