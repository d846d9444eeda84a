"""The timers of a replica's log, shared by the leader's and the follower's loops:
flush.ms (fsync), retention, and compaction in bounded steps; and, every turn while a
rolled segment's background fsync is pending, collecting it (the recovery point moves on
once it is done: PartitionLog.collect_flushes).

    timers = LogTimers(spec, log.config, compacting, clock)
    while ...:
        ...the loop's own work...
        busy = timers.run(worker, clock())      # the due ones; True while compaction goes on
        timeout = timers.timeout(clock())       # then sleep at most this long

`worker` has _storage_step(what, step), _retention() and _clean_step() (True while a
compaction pass is under way) and `log`. Owned by the loop's thread.
"""
from odradek.daemon.storage.config import NO_LIMIT

__all__ = ["LogTimers"]


class LogTimers:
    def __init__(self, spec, config, compacting, now):
        self.retention_every = spec.retention_check_ms / 1000
        self.clean_backoff = spec.cleaner_backoff_ms / 1000
        self.next_retention = now + self.retention_every
        self.next_clean = now if compacting else None
        self.flush_every = min(config.flush_ms, 1000) / 1000 if config.flush_ms < NO_LIMIT else None

    def run(self, worker, now):
        """Run what is due; True while a compaction pass is under way (loop again at once)."""
        if worker.log.flushes_pending:
            worker._storage_step("flush", worker.log.collect_flushes)
        if self.flush_every is not None:
            worker._storage_step("flush", worker.log.maybe_flush)
        if now >= self.next_retention:
            worker._retention()
            self.next_retention = now + self.retention_every
        if self.next_clean is not None and now >= self.next_clean:
            # one bounded step; while a pass is under way, the next turn continues it
            self.next_clean = now if worker._clean_step() else now + self.clean_backoff
        return self.next_clean == now

    def timeout(self, now):
        """Seconds until the next timer is due."""
        timeout = self.next_retention - now
        if self.next_clean is not None:
            timeout = min(timeout, self.next_clean - now)
        if self.flush_every is not None:
            timeout = min(timeout, self.flush_every)
        return timeout
