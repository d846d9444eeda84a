"""Counts of partitions that need attention, from a StatusResponse, computed one way for
`odradek status`, `topics describe` and Admin:
- under-replicated: ISR smaller than the replica list;
- under min ISR: ISR smaller than the topic's effective min.insync.replicas (acks=all
  produces to it are refused with NOT_ENOUGH_REPLICAS);
- offline: the leader's log dir is offline."""
from typing import NamedTuple

__all__ = ["PartitionHealth", "health", "is_under_min_isr"]


class PartitionHealth(NamedTuple):
    partitions: int
    under_replicated: list   # ["topic-partition", ...]
    under_min_isr: list
    offline: list


def is_under_min_isr(p):
    return len(p.isr_nodes) < p.min_insync_replicas


def health(status):
    offline_dirs = {i for i, d in enumerate(status.log_dir_states) if d.state != "online"}
    name = lambda p: f"{p.topic}-{p.partition}"   # noqa: E731
    return PartitionHealth(
        len(status.partitions),
        [name(p) for p in status.partitions if len(p.isr_nodes) < len(p.replica_nodes)],
        [name(p) for p in status.partitions if is_under_min_isr(p)],
        [name(p) for p in status.partitions if p.leader_id in offline_dirs])
