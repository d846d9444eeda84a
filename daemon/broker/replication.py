"""The broker's part in replication: follower processes, and the ISR as the controller.

- Followers: every replica of a partition other than its leader is a follower process
  (daemon/worker/follower.py) in its own log dir, forked and restarted by the broker
  like a leader worker, keyed (topic, partition, replica) in the supervisor. It shares
  the partition's PartitionShm (state to read, replica progress to write). A replica
  whose log dir is offline gets no process.
- The ISR is the broker's, saved in the cluster metadata before it takes effect (Kafka's
  controller and AlterPartition):
  - The leader proposes: the broker keeps one IsrProposal request in flight at each
    replicated partition's leader, which answers it when Kafka's rules want a change
    (daemon/worker/isr.py). The broker accepts it if it is based on the current leader
    epoch and partition epoch, keeps the leader, names only the partition's replicas,
    and adds only replicas whose follower is running; saves it (partition_epoch + 1);
    then sends UpdateIsr with what is saved, accepted or not, and a new IsrProposal.
  - The broker removes a follower itself the moment its process dies (as Kafka's
    controller drops a fenced broker), and at start a replica whose log dir is offline;
    the leader hears it through UpdateIsr. Until then it still counts the follower for
    the high watermark, which only holds it back: safe.
  - A save that fails (a full disk) changes nothing: the leader keeps the ISR it has
    and proposes again.
"""
import logging

from odradek.client.errors import OdradekError, StorageError
from odradek.client.protocol import messages as m
from odradek.daemon.broker.supervisor import WorkerHandle
from odradek.daemon.worker.leader import WorkerSpec

__all__ = ["follower_spec", "start_followers", "followers_of", "poll_isr", "follower_died", "drop_offline_replicas"]

log = logging.getLogger(__name__)


def follower_spec(broker, topic, p, replica):
    cfg = broker.config
    return WorkerSpec(topic.name, p.partition, replica, cfg.log_dirs[replica],
                      topic.log_config(cfg.defaults_for(topic.replication_factor)).to_dict(),
                      p.leader_epoch, cfg.retention_check_interval_ms, cfg.checkpoint_interval_ms,
                      cleaner_backoff_ms=cfg.cleaner_backoff_ms, replicas=p.replicas, isr=p.isr,
                      partition_epoch=p.partition_epoch, replica_lag_time_max_ms=cfg.replica_lag_time_max_ms,
                      role="follower", leader_dir=cfg.log_dirs[p.leader], leader_id=p.leader)


def start_followers(broker, topic, p, shm):
    """Queue a follower process for each replica of `p` but its leader, on online dirs."""
    for r in p.followers:
        if r in broker.metadata.offline_dirs:
            continue
        handle = WorkerHandle(follower_spec(broker, topic, p, r))
        handle.shm = shm
        broker._queue(handle)


def followers_of(broker, name, partition):
    """The WorkerHandles of the partition's followers (any state)."""
    t = broker.metadata.topics.get(name)
    if t is None or partition >= len(t.partitions):
        return [h for k, h in broker.supervisor.workers.items() if k[:2] == (name, partition) and len(k) == 3]
    return [h for r in t.partitions[partition].followers
            if (h := broker.supervisor.workers.get((name, partition, r))) is not None]


def poll_isr(broker, key):
    """Keep an IsrProposal in flight at the leader of partition `key`."""
    t = broker.metadata.topics.get(key[0])
    if t is None or key[1] >= len(t.partitions) or len(t.partitions[key[1]].replicas) < 2:
        return
    handle = broker.supervisor.workers.get(key)
    if handle is None or not handle.alive:
        return
    pid = handle.pid
    broker.worker_request(key, m.IsrProposalRequest(), lambda result: _proposal(broker, key, pid, result))


def _proposal(broker, key, pid, result):
    if isinstance(result, OdradekError):
        return   # the leader died: its successor gets a new IsrProposal when it starts
    handle = broker.supervisor.workers.get(key)
    if handle is None or handle.pid != pid:
        return
    name, partition = key
    try:
        p = broker.metadata.partition(name, partition)
    except OdradekError:
        return   # deleted meanwhile
    refusal = _check(broker, key, p, result)
    if refusal is not None:
        log.warning("%s-%d: ISR proposal %s refused: %s", name, partition, result.isr, refusal)
    else:
        before = list(p.isr)
        broker.metadata.set_isr(name, partition, result.isr)
        try:
            broker.metadata.save()
        except StorageError as e:
            p.isr, p.partition_epoch = before, p.partition_epoch - 1
            log.error("%s-%d: ISR %s not saved, kept %s: %s", name, partition, result.isr, before, e)
        else:
            log.info("%s-%d: ISR %s -> %s (partition epoch %d): %s", name, partition, before, p.isr,
                     p.partition_epoch, result.reason)
    _push(broker, key, p)
    poll_isr(broker, key)


def _check(broker, key, p, proposal):
    """Why the proposal cannot be taken, or None."""
    if proposal.leader_epoch != p.leader_epoch:
        return f"leader epoch {proposal.leader_epoch} is not the current {p.leader_epoch}"
    if proposal.partition_epoch != p.partition_epoch:
        return f"based on partition epoch {proposal.partition_epoch}, the ISR is at {p.partition_epoch} now"
    if p.leader not in proposal.isr:
        return "it drops the leader"
    for r in proposal.isr:
        if r not in p.replicas:
            return f"{r} is not a replica ({p.replicas})"
        if r not in p.isr:
            h = broker.supervisor.workers.get((*key, r))
            if h is None or not h.alive or r in broker.metadata.offline_dirs:
                return f"replica {r} has no running follower"
    return None


def _push(broker, key, p):
    broker.worker_request(key, m.UpdateIsrRequest(leader_epoch=p.leader_epoch, partition_epoch=p.partition_epoch,
                                                  isr=list(p.isr)), lambda _r: None)


def follower_died(broker, handle):
    """A follower's process ended (not stopped by us): out of the ISR at once."""
    name, partition, replica = handle.key
    try:
        p = broker.metadata.partition(name, partition)
    except OdradekError:
        return
    if handle.shm is not None:
        handle.shm.progress.forget(replica)
    if replica not in p.isr:
        return
    _remove(broker, name, p, replica, f"its follower process ended")


def _remove(broker, name, p, replica, why):
    before = list(p.isr)
    broker.metadata.set_isr(name, p.partition, [r for r in p.isr if r != replica])
    try:
        broker.metadata.save()
    except StorageError as e:
        p.isr, p.partition_epoch = before, p.partition_epoch - 1
        log.error("%s-%d: cannot save the ISR without replica %d (%s): %s", name, p.partition, replica, why, e)
        return
    log.warning("%s-%d: ISR %s -> %s (partition epoch %d): replica %d left, %s", name, p.partition, before, p.isr,
                p.partition_epoch, replica, why)
    _push(broker, (name, p.partition), p)


def drop_offline_replicas(metadata):
    """At start: a replica in an offline log dir leaves the ISR (the leader stays: its
    partition is offline). Returns whether anything changed (the caller saves)."""
    changed = False
    for t in metadata.topics.values():
        for p in t.partitions:
            gone = [r for r in p.isr if r in metadata.offline_dirs and r != p.leader]
            if gone:
                metadata.set_isr(t.name, p.partition, [r for r in p.isr if r not in gone])
                log.warning("%s-%d: replicas %s left the ISR: their log dirs are offline", t.name, p.partition, gone)
                changed = True
    return changed
