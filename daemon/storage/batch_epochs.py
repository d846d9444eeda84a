"""The leader-epoch cache from the batches themselves: each batch's partitionLeaderEpoch
(FORMAT.md) read from a log's segments (when the checkpoint file is missing, damaged or
behind the log) or from a follower's appended buffer: one read_header per batch.
PartitionLog (log.py) calls these and writes the cache (leader_epoch.py) when they
change it.
"""
import logging

from odradek.client.errors import OdradekError
from odradek.client.records.layout import BATCH_HEADER_SIZE, LOG_OVERHEAD, read_header

__all__ = ["extend_from_segments", "last_batch_epoch", "extend_from_buffer"]

log = logging.getLogger(__name__)


def _newer(cache, epoch):
    latest = cache.latest_epoch
    return epoch >= 0 and (latest is None or epoch > latest)


def extend_from_segments(cache, segments, from_offset, directory):
    """Add an entry to `cache` for each batch of `segments` from `from_offset` on whose
    partitionLeaderEpoch is above the latest. A segment with a damaged batch is read up
    to it (consumers are told of the damage when they get there; logged, naming
    `directory`). Returns whether anything was added."""
    changed = False
    for segment in segments:
        if segment.next_offset <= from_offset:
            continue
        buf = segment.log.buffer
        try:
            for b in segment.batches_from():
                epoch = read_header(buf, b.position).partition_leader_epoch
                if b.last_offset >= from_offset and _newer(cache, epoch):
                    changed = cache.assign(epoch, b.base_offset) or changed
        except OdradekError as e:
            log.warning("%s: leader epochs read up to a damaged batch of segment %d: %s", directory,
                        segment.base_offset, e)
    return changed


def last_batch_epoch(segments):
    """partitionLeaderEpoch of the last batch of `segments` (-1: no batch, or unreadable)."""
    for segment in reversed(segments):
        if not segment.size:
            continue
        try:
            last = segment.find(segment.next_offset - 1)   # the index and a short walk
        except OdradekError:
            return -1
        if last is None or not last.base_offset <= segment.next_offset - 1 <= last.last_offset:
            return -1
        return read_header(segment.log.buffer, last.position).partition_leader_epoch
    return -1


def extend_from_buffer(cache, data):
    """A follower's append of whole batches `data`: each batch whose partitionLeaderEpoch
    is above the latest epoch starts that epoch. Returns whether anything was added."""
    changed, pos, view = False, 0, memoryview(data)
    while pos + BATCH_HEADER_SIZE <= len(view):
        header = read_header(view, pos)
        if _newer(cache, header.partition_leader_epoch):
            changed = cache.assign(header.partition_leader_epoch, header.base_offset) or changed
        pos += header.batch_length + LOG_OVERHEAD
    return changed
