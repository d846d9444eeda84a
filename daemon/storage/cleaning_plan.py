"""What a compaction pass cleans (Kafka's LogCleanerManager.cleanableOffsets,
calculateCleanableBytes and maxCompactionDelay; LogToClean; Cleaner.groupSegmentsBySize):
the dirty range and its bytes, the dirty ratio, and the groups of segments each
rewritten into one. Reads a PartitionLog's segment list; changes nothing.

- The log is a clean head [log start, first dirty) and a dirty tail [first dirty, first
  uncleanable). first dirty is the cleaner checkpoint, reset to the log start when it is
  missing, below the log start or past the log end. first uncleanable is the smallest
  of: the active segment's base (never cleaned), `max_offset` (the worker's high
  watermark, and the first offset its shared-memory descriptors still describe), and
  the first dirty segment with a record newer than min.compaction.lag.ms; rounded down
  to a segment base.
- Bytes are whole segments: clean = the segments before the one holding first dirty,
  dirty = that one up to first uncleanable (Kafka counts that segment in both when first
  dirty falls inside it, which only a full offset map leads to).
- need_compaction_now: the first batch of a dirty segment is older than
  max.compaction.lag.ms.
- Groups: consecutive inactive segments whose sizes add up to at most segment.bytes and
  index sizes to segment.index.bytes, offsets within 2^31 of the group's base.
"""
import logging
from dataclasses import dataclass

from odradek.daemon.storage.offset_index import OffsetIndex
from odradek.daemon.storage.time_index import TimeIndex

__all__ = ["Cleanable", "cleanable", "next_group", "floor_index"]

logger = logging.getLogger(__name__)

_INT_MAX = 2 ** 31 - 1


@dataclass
class Cleanable:
    """What a pass would clean now (LogCleanerManager.cleanableOffsets and LogToClean)."""
    first_dirty: int          # first offset not yet cleaned
    first_uncleanable: int    # a segment base: nothing at or after it is cleaned
    clean_bytes: int
    dirty_bytes: int
    need_compaction_now: bool  # max.compaction.lag.ms has passed for a dirty record
    checkpoint_reset: bool     # the checkpoint was missing or out of the log's range

    @property
    def ratio(self):
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


def cleanable(log, checkpointed, max_offset, now):
    """The Cleanable of `log` (a PartitionLog) at time `now` (ms), given its checkpointed
    first dirty offset (None: no checkpoint) and `max_offset` (None: no limit)."""
    cfg = log.config
    segments = log.segments
    active, inactive = segments[-1], segments[:-1]
    start, end = log.log_start_offset, log.log_end_offset
    first_dirty, reset = (start, True) if checkpointed is None else (checkpointed, False)
    if first_dirty < start or first_dirty > end:
        if not (cfg.delete and first_dirty < start):   # retention moves the start: normal
            logger.warning("%s: cleaner checkpoint %d is outside the log (%d..%d); cleaning from "
                           "the log start", log.directory, first_dirty, start, end)
        first_dirty, reset = start, True
    # the segments wholly below first dirty are the clean head
    dirty_from = floor_index(segments, first_dirty)
    limits = [active.base_offset]
    if max_offset is not None:
        limits.append(max_offset)
    if cfg.min_compaction_lag_ms > 0:
        young = next((s.base_offset for s in inactive[dirty_from:]
                      if s.max_timestamp > now - cfg.min_compaction_lag_ms), None)
        if young is not None:
            limits.append(young)
    uncleanable = max(first_dirty, min(limits))
    first_uncleanable = min(segments[floor_index(segments, uncleanable)].base_offset, active.base_offset)
    clean_bytes = sum(s.size for s in inactive[:dirty_from])
    dirty = [s for s in inactive[dirty_from:] if s.base_offset < first_uncleanable]
    dirty_bytes = sum(s.size for s in dirty)
    firsts = [s.first_batch_timestamp for s in inactive[dirty_from:]
              if s.first_batch_timestamp is not None and s.first_batch_timestamp > 0]
    need_now = bool(firsts) and min(firsts) < now - cfg.max_compaction_lag_ms
    return Cleanable(first_dirty, first_uncleanable, clean_bytes, dirty_bytes, need_now, reset)


def next_group(log, after, stop, upper):
    """The next group of inactive segments of `log` whose base offsets lie in (after,
    stop) (groupSegmentsBySize), or None; `upper` (the pass's first uncleanable offset)
    bounds the last segment's offsets."""
    cfg = log.config
    segments = [s for s in log.segments[:-1] if after < s.base_offset < stop]
    if not segments:
        return None
    group = [segments[0]]
    size = segments[0].size
    index_bytes = segments[0].index.entries * OffsetIndex.ENTRY.size
    time_bytes = segments[0].time_index.entries * TimeIndex.ENTRY.size
    for k in range(1, len(segments)):
        s = segments[k]
        last_estimate = (segments[k + 1].base_offset if k + 1 < len(segments) else upper) - 1
        s_index = s.index.entries * OffsetIndex.ENTRY.size
        s_time = s.time_index.entries * TimeIndex.ENTRY.size
        if not (size + s.size <= cfg.segment_bytes and index_bytes + s_index <= cfg.segment_index_bytes
                and time_bytes + s_time <= cfg.segment_index_bytes
                and (s.size == 0 or last_estimate - group[0].base_offset <= _INT_MAX)):
            break
        group.append(s)
        size += s.size
        index_bytes += s_index
        time_bytes += s_time
    return group


def floor_index(segments, offset):
    """Index of the last segment whose base offset <= offset (0 if none)."""
    lo, hi = 0, len(segments)
    while lo < hi:
        mid = (lo + hi) // 2
        if segments[mid].base_offset <= offset:
            lo = mid + 1
        else:
            hi = mid
    return max(lo - 1, 0)
