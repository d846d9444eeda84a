"""Partitions that need attention and how far each follower is behind, from a
StatusResponse, computed one way for `odradek status`, `topics describe` and Admin:
- under-replicated: ISR smaller than the replica list, not counting a replica being
  added by a move (Kafka's KIP-352);
- under min ISR: ISR smaller than the topic's effective min.insync.replicas (acks=all
  produces to it are refused with NOT_ENOUGH_REPLICAS);
- offline: no leader, or the leader's log dir is offline;
- moving: a replica is being moved to another log dir (adding and removing replicas);
- follower lag: in records (the leader's log end minus the follower's) and in time (now
  minus the last time the leader found it caught up, Kafka's lastCaughtUpTimeMs; 0 while
  it is at the leader's log end)."""
import time
from typing import NamedTuple

__all__ = ["PartitionHealth", "FollowerLag", "health", "flags_by_partition", "follower_lags", "is_under_min_isr"]

UNDER_REPLICATED, UNDER_MIN_ISR, OFFLINE, MOVING = "under-replicated", "under-min-ISR", "offline", "moving"


class FollowerLag(NamedTuple):
    topic: str
    partition: int
    replica_id: int       # = the index of its log dir in log.dirs
    state: str            # "running", "starting", "dead", "offline" (its log dir) ...
    in_isr: bool
    log_end_offset: int   # -1: not known (not running)
    lag_records: int      # -1: not known
    lag_ms: int           # -1: not known (never caught up)
    size_bytes: int       # its log's data bytes (-1: it did not answer)


class PartitionHealth(NamedTuple):
    partitions: int
    under_replicated: list   # ["topic-partition", ...]
    under_min_isr: list
    offline: list
    followers: list          # [FollowerLag] of every follower replica, by partition then replica
    moving: list = []        # partitions with a replica move under way


def is_under_min_isr(p):
    return len(p.isr_nodes) < p.min_insync_replicas


def _offline_dirs(status):
    return {i for i, d in enumerate(status.log_dir_states) if d.state != "online"}


def _flags(p, offline_dirs):
    return [flag for flag, on in ((UNDER_REPLICATED, len(p.isr_nodes) < len(p.replica_nodes) - len(p.adding_replicas)),
                                  (UNDER_MIN_ISR, is_under_min_isr(p)),
                                  (OFFLINE, p.leader_id < 0 or p.leader_id in offline_dirs),
                                  (MOVING, bool(p.adding_replicas or p.removing_replicas))) if on]


def flags_by_partition(status):
    """{(topic, partition): flags}, each a sublist of [under-replicated, under-min-ISR, offline, moving]."""
    offline_dirs = _offline_dirs(status)
    return {(p.topic, p.partition): _flags(p, offline_dirs) for p in status.partitions}


def _lag_ms(f, now_ms):
    if f.lag_records == 0:
        return 0
    return max(0, now_ms - f.caught_up_ms) if f.caught_up_ms > 0 else -1


def follower_lags(status, now_ms=None):
    """[FollowerLag] of every follower replica in the status."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return [FollowerLag(p.topic, p.partition, f.replica_id, f.state, f.replica_id in p.isr_nodes, f.log_end_offset,
                        f.lag_records, _lag_ms(f, now_ms), f.size_bytes)
            for p in status.partitions for f in sorted(p.followers, key=lambda f: f.replica_id)]


def health(status, now_ms=None):
    flagged = {flag: [] for flag in (UNDER_REPLICATED, UNDER_MIN_ISR, OFFLINE, MOVING)}
    for (topic, partition), flags in flags_by_partition(status).items():
        for flag in flags:
            flagged[flag].append(f"{topic}-{partition}")
    return PartitionHealth(len(status.partitions), flagged[UNDER_REPLICATED], flagged[UNDER_MIN_ISR],
                           flagged[OFFLINE], follower_lags(status, now_ms), flagged[MOVING])
