"""Every on-disk name odradek uses, built and parsed here and nowhere else.

    <log.dir>/<topic>-<partition>/00000000000000000000.log        record batches
                                  00000000000000000000.index      offset -> position
                                  00000000000000000000.timeindex  timestamp -> offset
                                  00000000000000000042.snapshot   producer state at offset 42
                                  leader-epoch-checkpoint         epoch -> start offset
    <log.dir>/recovery-point-offset-checkpoint, log-start-offset-checkpoint,
              cleaner-offset-checkpoint, .checkpoint.lock, .lock, cluster-metadata.json

Names follow Apache Kafka's (LogFileUtils): a segment is named by its base offset as 20
zero-padded decimal digits, so `ls` sorts segments in offset order.
"""
import os
import re

__all__ = ["LOG_SUFFIX", "INDEX_SUFFIX", "TIMEINDEX_SUFFIX", "TXNINDEX_SUFFIX", "CLEANED_SUFFIX", "SWAP_SUFFIX",
           "DELETED_SUFFIX", "TMP_SUFFIX", "SNAPSHOT_SUFFIX", "snapshot_file", "parse_snapshot_file",
           "RECOVERY_POINT_CHECKPOINT", "LOG_START_CHECKPOINT", "CLEANER_CHECKPOINT",
           "LEADER_EPOCH_CHECKPOINT", "CHECKPOINT_LOCK", "BROKER_LOCK", "CLUSTER_METADATA", "DELETE_SUFFIX",
           "segment_name", "log_file", "index_file", "timeindex_file", "txnindex_file", "segment_files",
           "partition_dir_name", "parse_partition_dir", "parse_segment_file", "tmp_file"]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
TXNINDEX_SUFFIX = ".txnindex"  # aborted transactions whose marker is in the segment (txn_index.py)
CLEANED_SUFFIX = ".cleaned"  # compaction output being written
SWAP_SUFFIX = ".swap"        # compaction output ready to replace its source
DELETED_SUFFIX = ".deleted"  # a segment on its way out
TMP_SUFFIX = ".tmp"          # a checkpoint being written
SNAPSHOT_SUFFIX = ".snapshot"  # producer state up to an offset (producer_snapshot.py)

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"  # Kafka's LogCleanerManager.OFFSET_CHECKPOINT_FILE
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"  # per partition dir (leader_epoch.py)
CHECKPOINT_LOCK = ".checkpoint.lock"  # flock'd by whoever updates the two above
BROKER_LOCK = ".lock"                 # flock'd by the broker that owns the log dir
CLUSTER_METADATA = "cluster-metadata.json"  # topics, partitions, placement (every log dir)
DELETE_SUFFIX = "-delete"             # a partition dir of a deleted topic, being removed
STRAY_SUFFIX = "-stray"               # a partition dir where its partition has no replica: kept aside

_SEGMENT_RE = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex|\.txnindex)$")
_SNAPSHOT_RE = re.compile(r"^(\d{20})\.snapshot$")
_PARTITION_RE = re.compile(r"^(.+)-(\d+)$")


def segment_name(base_offset):
    """'00000000000000000042' for base offset 42."""
    if not 0 <= base_offset < 10 ** 20:
        raise ValueError(f"base offset out of range: {base_offset}")
    return "%020d" % base_offset


def log_file(partition_dir, base_offset):
    return os.path.join(partition_dir, segment_name(base_offset) + LOG_SUFFIX)


def index_file(partition_dir, base_offset):
    return os.path.join(partition_dir, segment_name(base_offset) + INDEX_SUFFIX)


def timeindex_file(partition_dir, base_offset):
    return os.path.join(partition_dir, segment_name(base_offset) + TIMEINDEX_SUFFIX)


def txnindex_file(partition_dir, base_offset):
    """The segment's aborted-transaction index; it exists only once an entry is written."""
    return os.path.join(partition_dir, segment_name(base_offset) + TXNINDEX_SUFFIX)


def segment_files(partition_dir, base_offset):
    """(.log, .index, .timeindex) paths of the segment at `base_offset`."""
    return (log_file(partition_dir, base_offset), index_file(partition_dir, base_offset),
            timeindex_file(partition_dir, base_offset))


def snapshot_file(partition_dir, offset):
    """The producer-state snapshot covering the log up to `offset` (exclusive)."""
    return os.path.join(partition_dir, segment_name(offset) + SNAPSHOT_SUFFIX)


def parse_snapshot_file(name):
    """The offset of '00000000000000000042.snapshot'; None for anything else."""
    m = _SNAPSHOT_RE.match(name)
    return int(m.group(1)) if m else None


def tmp_file(path):
    return path + TMP_SUFFIX


def partition_dir_name(topic, partition):
    """'orders-3' for partition 3 of topic 'orders'."""
    return f"{topic}-{partition}"


def parse_partition_dir(name):
    """(topic, partition) from 'orders-3'; None for anything else."""
    m = _PARTITION_RE.match(name)
    if not m:
        return None
    return m.group(1), int(m.group(2))


def parse_segment_file(name):
    """(base_offset, suffix) from '00000000000000000042.log'; None for anything else."""
    m = _SEGMENT_RE.match(name)
    if not m:
        return None
    return int(m.group(1)), m.group(2)
