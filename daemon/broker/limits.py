"""How many partitions this broker takes: `max.partitions` in all, `max.partitions.per.topic`.

Every partition leader is a process, so partitions cost what processes cost: memory, the
broker's file descriptors, and tasks (pids). `topics create --partitions 1000000` was
once accepted and froze the broker; a create or a partition increase above a limit is
now refused before anything changes, with the limit and its key named:

    INVALID_PARTITIONS: topic 'big' would have 1000000 partitions; the limit is 1428 (max.partitions.per.topic)
    POLICY_VIOLATION: the broker would have 1500 partitions (1200 in use + 300); the limit is 1428 (max.partitions)

Kafka has no such broker setting; the names follow KIP-578's proposed `max.partitions`.
Set either key to a number to override; 0 (the default) derives it at start as the
smallest of (measured with perf/broker_start.py on the dev VM):
- memory: half of MemTotal / WORKER_MEMORY_BYTES (a started worker lowered MemAvailable
  by ~4 MiB: its private pages, ~3.4 MiB USS, its page tables and kernel stack, and the
  partition's shared memory);
- open files: half of the broker's RLIMIT_NOFILE (after raising the soft limit to the
  hard one) / BROKER_FDS_PER_PARTITION (the other half is left for client connections
  and producer attachments, three fds per producer and partition);
- tasks: half of the smallest of RLIMIT_NPROC, kernel.threads-max and kernel.pid_max /
  TASKS_PER_WORKER (each worker's main thread, its link watcher and its prefault thread).
`max.partitions.per.topic` defaults to the same number.

A topic already in the metadata above a limit (saved by an older broker, or the limit was
lowered) is loaded offline: no workers, an ERROR line naming the limit, and it can be
deleted as usual (see README "Operating: recovering from bad metadata").
"""
import os
import resource

__all__ = ["PartitionLimits", "derive", "WORKER_MEMORY_BYTES", "BROKER_FDS_PER_PARTITION", "TASKS_PER_WORKER"]

WORKER_MEMORY_BYTES = 4 << 20
BROKER_FDS_PER_PARTITION = 7   # link, pidfd, doorbell, state, fds in flight: measured 7, before the wake page went (kept: a margin)
TASKS_PER_WORKER = 3


class PartitionLimits:
    __slots__ = ("total", "per_topic", "derived_from")

    def __init__(self, total, per_topic, derived_from=""):
        self.total, self.per_topic, self.derived_from = total, per_topic, derived_from

    def __repr__(self):
        return f"max.partitions={self.total}, max.partitions.per.topic={self.per_topic}"


def derive(total=0, per_topic=0, mem_total=None, nofile=None, tasks=None):
    """The limits: the configured ones, or (0) derived from this host. The host's figures
    can be passed (tests); by default they are read from /proc and getrlimit."""
    mem_total = _mem_total() if mem_total is None else mem_total
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if nofile is None else nofile
    tasks = _task_limit() if tasks is None else tasks
    by = {"memory": mem_total // 2 // WORKER_MEMORY_BYTES,
          "open files": nofile // 2 // BROKER_FDS_PER_PARTITION,
          "tasks": tasks // 2 // TASKS_PER_WORKER}
    derived = max(1, min(by.values()))
    why = ", ".join(f"{k} {v}" for k, v in by.items())
    total = total or derived
    return PartitionLimits(total, per_topic or total,
                           f"derived {derived} = min({why})")


def _mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/meminfo has no MemTotal")


def _task_limit():
    limits = []
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if nproc != resource.RLIM_INFINITY and os.geteuid() != 0:   # root is not held to RLIMIT_NPROC
        limits.append(nproc)
    for path in ("/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"):
        try:
            with open(path) as f:
                limits.append(int(f.read()))
        except (OSError, ValueError):
            pass
    return min(limits) if limits else 1 << 22
