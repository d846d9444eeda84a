"""Kafka's DescribeLogDirs, derived from the broker's StatusResponse (no API of its own):
per log dir its path, directory.id, error (KAFKA_STORAGE_ERROR with the reason for an
offline dir), its filesystem's total and usable bytes (statvfs), and every partition
replica it holds, leaders and followers (a replica's id is its dir's index), with its
size (the log's data bytes: the sum of its segments' data, not their preallocated
files), offset lag and is_future.

offset_lag is Kafka's for a current replica: max(high watermark - the replica's log end,
0), so 0 for a leader; -1 (Kafka's INVALID_OFFSET_LAG) for a follower whose log end is
not known (its process is not running). is_future is True for the replica a move to
another dir is adding (Kafka's future replica) until it is done. An offline dir lists no
replicas."""
from dataclasses import dataclass, field

__all__ = ["LogDirDescription", "ReplicaInfo", "from_status", "kafka_json"]

KAFKA_STORAGE_ERROR = "KAFKA_STORAGE_ERROR"


@dataclass
class ReplicaInfo:
    topic: str
    partition: int
    size: int            # the log's data bytes (-1: its process did not answer)
    offset_lag: int = 0  # max(high watermark - its log end, 0); 0 for a leader; -1: not known
    is_future: bool = False
    role: str = "leader"  # "leader" or "follower" (not in Kafka's response)


@dataclass
class LogDirDescription:
    path: str
    directory_id: str        # meta.properties' directory.id (None: unknown)
    error: str               # None, or KAFKA_STORAGE_ERROR for an offline dir
    error_message: str       # why it is offline ("" when online)
    total_bytes: int         # its filesystem's size (-1: offline)
    usable_bytes: int        # bytes an unprivileged writer may still use (-1: offline)
    replicas: list = field(default_factory=list)   # [ReplicaInfo], by topic and partition


def from_status(status):
    """[LogDirDescription] in log.dirs order, from a StatusResponse."""
    out = []
    for d in status.log_dir_states:
        online = d.state == "online"
        out.append(LogDirDescription(d.path, d.directory_id, None if online else KAFKA_STORAGE_ERROR,
                                     d.reason, d.total_bytes, d.usable_bytes))
    for p in sorted(status.partitions, key=lambda p: (p.topic, p.partition)):
        if 0 <= p.leader_id < len(out) and out[p.leader_id].error is None:
            out[p.leader_id].replicas.append(ReplicaInfo(p.topic, p.partition, p.size_bytes))
        for f in p.followers:
            if 0 <= f.replica_id < len(out) and out[f.replica_id].error is None:
                lag = max(p.high_watermark - f.log_end_offset, 0) if f.log_end_offset >= 0 else -1
                out[f.replica_id].replicas.append(ReplicaInfo(p.topic, p.partition, f.size_bytes, lag,
                                                              f.replica_id in p.adding_replicas, "follower"))
    return out


def kafka_json(broker_id, dirs):
    """kafka-log-dirs.sh --describe's JSON shape (a dict) for one broker's dirs."""
    return {"version": 1, "brokers": [{"broker": broker_id, "logDirs": [
        {"logDir": d.path, "error": d.error,
         "partitions": [{"partition": f"{r.topic}-{r.partition}", "size": r.size, "offsetLag": r.offset_lag,
                         "isFuture": r.is_future} for r in d.replicas]} for d in dirs]}]}
