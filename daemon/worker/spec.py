"""WorkerSpec: what a partition's worker process (a leader, daemon/worker/leader.py, or a
follower, daemon/worker/follower.py) needs to know, decided by the broker before the
fork (daemon/broker/server.py leader_spec, daemon/broker/replication.py)."""
import os

__all__ = ["WorkerSpec"]


class WorkerSpec:
    """What a worker needs to know, decided by the broker before the fork. `shm` is the
    broker's PartitionShm (doorbell, partition state), mappings inherited by
    the fork: the state is sealed against new writable mappings."""
    __slots__ = ("topic", "partition", "replica_id", "log_dir", "configs", "leader_epoch",
                 "retention_check_ms", "checkpoint_ms", "shm", "cleaner_backoff_ms", "tidy_only", "replicas",
                 "isr", "partition_epoch", "replica_lag_time_max_ms", "role", "leader_dir", "leader_id")

    def __init__(self, topic, partition, replica_id, log_dir, configs, leader_epoch,
                 retention_check_ms=300_000, checkpoint_ms=60_000, shm=None, cleaner_backoff_ms=15_000,
                 replicas=None, isr=None, partition_epoch=0, replica_lag_time_max_ms=30_000, role="leader",
                 leader_dir=None, leader_id=None):
        self.topic, self.partition, self.replica_id = topic, partition, replica_id
        self.log_dir, self.configs, self.leader_epoch = log_dir, dict(configs), leader_epoch
        self.retention_check_ms, self.checkpoint_ms = retention_check_ms, checkpoint_ms
        self.shm = shm            # a PartitionShm, or None (no data plane: tests)
        self.cleaner_backoff_ms = cleaner_backoff_ms  # log.cleaner.backoff.ms
        self.replicas = list(replicas) if replicas is not None else [replica_id]
        self.isr = list(isr) if isr is not None else [replica_id]   # as the broker saved it
        self.partition_epoch = partition_epoch
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self.role = role                  # "leader", or "follower" (daemon/worker/follower.py)
        self.leader_dir = leader_dir      # a follower's: the leader's log dir, whose files it copies
        self.leader_id = replica_id if leader_id is None else leader_id
        # open the log (recovering what a crash left) and close it (trimmed), then exit:
        # the broker's clean stop, for a partition whose worker was not running
        self.tidy_only = False

    @property
    def partition_dir(self):
        return os.path.join(self.log_dir, f"{self.topic}-{self.partition}")
