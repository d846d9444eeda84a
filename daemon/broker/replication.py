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
- Election (Kafka's, on leader failure): when a leader's process dies unasked, the broker
  at once picks the first in-sync replica, in replica order, whose follower is running,
  and saves leader, leader epoch + 1 and the ISR without the old leader (as Kafka's
  controller drops a fenced broker) before anyone acts on them. It sends that follower
  LeaderAndIsr: it becomes the leader in its own process, its log and producer state
  already open; the broker then moves the partition's key, producers and IsrProposal to
  it, and starts the old leader's replica again as a follower, which first cuts what
  diverges by leader epoch. The partition's shared memory stays: consumers keep their
  mappings and producers their rings (the held acks=all entries in them are taken again
  by the new leader). The other followers get LeaderAndIsr and follow the new leader.
  An elected follower that has not taken over within PROMOTION_TIMEOUT_S (stopped or
  stuck) is killed, and a leader worker starts on its replica instead.
  With no such replica the partition waits for its leader to restart, unless the topic
  has unclean.leader.election.enable: then the first running follower leads, and the
  records only the old leader had are lost (logged).
- Preferred leaders (auto.leader.rebalance.enable): every
  leader.imbalance.check.interval.seconds, a partition led by another replica than its
  first (the preferred one, which placement spreads evenly over the dirs) whose
  preferred replica is in sync and caught up hands leadership over: its leader is asked
  to stop (SIGTERM: it appends what producers committed and closes its log), and when
  it has exited the election above makes the preferred replica the leader.
- Moving a replica to another log dir (daemon/broker/reassign.py) adds a replica, whose
  follower joins the ISR as above, then drops the old one: by the same hand-over first
  when it leads.
"""
import logging
import os
import signal

from odradek.client.errors import OdradekError, StorageError, TornState
from odradek.client.protocol import messages as m
from odradek.daemon.broker import data_plane, reassign
from odradek.daemon.broker.supervisor import WorkerHandle
from odradek.daemon.worker.spec import WorkerSpec

__all__ = ["follower_spec", "start_followers", "poll_isr", "push_isr", "follower_died",
           "leader_died", "drop_offline_replicas", "prefer_leaders", "hand_over"]

log = logging.getLogger(__name__)

PROMOTION_TIMEOUT_S = 3.0   # an elected follower that has not taken over by then is killed


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
        broker.queue_worker(handle)


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
        _save_isr(broker, name, p, result.isr, result.reason, logging.INFO)
    push_isr(broker, key, p)
    poll_isr(broker, key)
    reassign.advance(broker, name, partition)   # a replica being moved in may be in sync now


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
        if r not in p.isr and r != p.leader:
            h = broker.supervisor.workers.get((*key, r))
            if h is None or not h.alive or r in broker.metadata.offline_dirs:
                return f"replica {r} has no running follower"
    return None


def push_isr(broker, key, p):
    """Tell the leader the ISR that is saved (UpdateIsr)."""
    broker.worker_request(key, m.UpdateIsrRequest(leader_epoch=p.leader_epoch, partition_epoch=p.partition_epoch,
                                                  isr=list(p.isr)), lambda _r: None)


def follower_died(broker, handle):
    """A follower's process ended (not stopped by us): out of the ISR at once."""
    name, partition, replica = handle.key
    try:
        p = broker.metadata.partition(name, partition)
    except OdradekError:
        return
    if replica == p.leader:
        return   # elected meanwhile (its death came after the election): a leader worker starts there
    if handle.shm is not None:
        handle.shm.progress.forget(replica)
    if replica not in p.isr:
        return
    _remove(broker, name, p, replica, "its follower process ended")


def _remove(broker, name, p, replica, why):
    if _save_isr(broker, name, p, [r for r in p.isr if r != replica], f"replica {replica} left, {why}",
                 logging.WARNING):
        push_isr(broker, (name, p.partition), p)


def _save_isr(broker, name, p, isr, why, level):
    """Set and save a new ISR (partition epoch + 1); True if saved. A save that fails
    (a full disk) changes nothing: the ISR and epoch are put back, and it is logged."""
    before = (list(p.isr), p.partition_epoch)
    broker.metadata.set_isr(name, p.partition, isr)
    try:
        broker.metadata.save()
    except StorageError as e:
        p.isr, p.partition_epoch = before
        log.error("%s-%d: ISR %s not saved, kept %s (%s): %s", name, p.partition, isr, before[0], why, e)
        return False
    log.log(level, "%s-%d: ISR %s -> %s (partition epoch %d): %s", name, p.partition, before[0], p.isr,
            p.partition_epoch, why)
    return True


def drop_offline_replicas(metadata):
    """At start: a replica in an offline log dir leaves the ISR, and a partition led from
    one gets the first in-sync replica on an online dir as its leader (leader epoch + 1);
    with none, it stays offline under its old leader. Returns whether anything changed
    (the caller saves)."""
    changed = False
    for t in metadata.topics.values():
        for p in t.partitions:
            gone = [r for r in p.isr if r in metadata.offline_dirs]
            if not gone:
                continue
            left = [r for r in p.isr if r not in gone]
            if p.leader in gone and left:
                old = p.leader
                metadata.bump_leader_epoch(t.name, p.partition, leader=left[0])
                log.warning("%s-%d: leader %d is in an offline log dir; replica %d leads in epoch %d",
                            t.name, p.partition, old, p.leader, p.leader_epoch)
            elif p.leader in gone:
                continue   # no other copy in sync: offline, and its leader keeps its place
            metadata.set_isr(t.name, p.partition, left)
            log.warning("%s-%d: replicas %s left the ISR: their log dirs are offline", t.name, p.partition, gone)
            changed = True
    return changed


def _running_follower(broker, name, partition, r):
    h = broker.supervisor.workers.get((name, partition, r))
    return h is not None and h.alive and h.state == "running" and r not in broker.metadata.offline_dirs


def leader_died(broker, handle):
    """The leader of partition handle.key died unasked: elect its successor (module
    docstring). True when an election is under way: the caller does not restart the
    old leader in place."""
    name, partition = handle.key
    t = broker.metadata.topics.get(name)
    if t is None or partition >= len(t.partitions) or broker.stopping:
        return False
    p = t.partitions[partition]
    old = p.leader
    candidates = [r for r in p.isr if r != old and _running_follower(broker, name, partition, r)]
    prefer = handle.handover_to
    handle.handover_to = None
    if prefer in candidates:
        candidates.remove(prefer)
        candidates.insert(0, prefer)
    unclean = False
    if not candidates and t.log_config(broker.config.defaults_for(t.replication_factor)).unclean_leader_election_enable:
        candidates = [r for r in p.followers if _running_follower(broker, name, partition, r)]
        unclean = bool(candidates)
    if not candidates:
        if len(p.replicas) > 1:
            log.error("%s-%d: no in-sync replica to take over from leader %d (ISR %s); waiting for it to "
                      "restart (unclean.leader.election.enable=false)", name, partition, old, p.isr)
        return False
    new = candidates[0]
    before = (p.leader, p.leader_epoch, list(p.isr), p.partition_epoch)
    p.leader, p.leader_epoch, p.partition_epoch = new, p.leader_epoch + 1, p.partition_epoch + 1
    p.isr = [new] if unclean else [r for r in p.isr if r != old]
    try:
        broker.metadata.save()
    except StorageError as e:
        p.leader, p.leader_epoch, p.isr, p.partition_epoch = before
        log.error("%s-%d: cannot save the election of replica %d: %s; restarting leader %d", name, partition,
                  new, e, old)
        return False
    if unclean:
        log.error("%s-%d: UNCLEAN election: replica %d (out of sync) leads in epoch %d; records only leader %d "
                  "had are lost", name, partition, new, p.leader_epoch, old)
    elif new == prefer:
        log.info("%s-%d: leader %d handed over to the preferred replica %d, epoch %d, ISR %s", name, partition,
                 old, new, p.leader_epoch, p.isr)
    else:
        log.warning("%s-%d: leader %d died; replica %d leads in epoch %d, ISR %s", name, partition, old, new,
                    p.leader_epoch, p.isr)
    handle.restart_at = None        # it comes back as a follower, once the new leader leads
    handle.state = "dead"
    if handle.shm is not None:      # what its slot says is from its last life as a follower
        handle.shm.progress.forget(old)
    request = m.LeaderAndIsrRequest(leader_id=new, leader_epoch=p.leader_epoch, partition_epoch=p.partition_epoch,
                                    isr=list(p.isr), leader_dir=broker.config.log_dirs[new])
    successor = broker.supervisor.workers[(name, partition, new)]
    broker.worker_request(successor.key, request,
                          lambda result: _promoted(broker, handle, successor, old, result))
    pid = successor.pid   # now: by the deadline the handle may hold another process of the replica
    broker.call_later(PROMOTION_TIMEOUT_S, lambda: _promotion_overdue(broker, successor, pid))
    for r in p.followers:
        if r != new and _running_follower(broker, name, partition, r):
            broker.worker_request((name, partition, r), request, lambda _r: None)
    return True


def _promotion_overdue(broker, successor, pid):
    """The follower elected did not answer LeaderAndIsr in PROMOTION_TIMEOUT_S (stopped,
    or stuck): SIGKILL it (our own child); its pending request then fails and _promoted
    starts a leader worker on its replica, whose log it held."""
    if successor.pid == pid and successor.alive and successor.is_follower:
        log.error("%s-%d: replica %d did not take over within %.0f s: killing its follower process %d",
                  successor.spec.topic, successor.spec.partition, successor.spec.replica_id, PROMOTION_TIMEOUT_S,
                  pid)
        os.kill(pid, signal.SIGKILL)


def _promoted(broker, old_handle, successor, old, result):
    """The successor answered LeaderAndIsr: it leads. Its handle takes the partition's
    key; the old leader's handle becomes the follower of replica `old`."""
    name, partition = old_handle.spec.topic, old_handle.spec.partition
    t = broker.metadata.topics.get(name)
    if t is None or partition >= len(t.partitions):
        return
    p = t.partitions[partition]
    workers = broker.supervisor.workers
    if isinstance(result, OdradekError) or not successor.alive:
        # it died before it could lead: start a leader worker for the elected replica
        log.warning("%s-%d: replica %d did not take over (%s); starting a leader worker for it", name, partition,
                    p.leader, result)
        if workers.get((name, partition)) is old_handle:
            broker.queue_worker(old_handle)
            if old in p.replicas and old not in broker.metadata.offline_dirs and (name, partition, old) not in workers:
                follower = WorkerHandle(follower_spec(broker, t, p, old))   # the old leader follows
                follower.shm = old_handle.shm
                broker.queue_worker(follower)
        return
    workers.pop(successor.key, None)
    successor.key = (name, partition)
    successor.spec = broker.leader_spec(t, p)
    successor.spec.shm = successor.shm
    workers[successor.key] = successor
    old_handle.key = (name, partition, old)
    # A replica moved away while the election ran (reassign.advance may finish the move
    # then) is not followed any more: its dir is gone, a follower would make it again.
    if old in p.replicas:
        old_handle.spec = follower_spec(broker, t, p, old)
        workers[old_handle.key] = old_handle
        if old not in broker.metadata.offline_dirs and not (old in p.removing_replicas and p.move_in_sync):
            broker.queue_worker(old_handle)
    data_plane.reattach_all(broker, successor.key)
    poll_isr(broker, successor.key)
    reassign.advance(broker, name, partition)   # a replica moved away from the leader: it is dropped now


def prefer_leaders(broker):
    """auto.leader.rebalance.enable: ask each leader whose preferred replica is in sync
    and caught up to hand over (module docstring). Returns how many were asked."""
    asked = 0
    for t in broker.metadata.topics.values():
        for p in t.partitions:
            preferred = p.replicas[0]
            if p.leader == preferred or preferred not in p.isr or p.moving:
                continue   # (a move hands over itself: daemon/broker/reassign.py)
            handle = broker.supervisor.workers.get((t.name, p.partition))
            if handle is not None and hand_over(broker, t, p, handle, preferred, "the preferred replica"):
                asked += 1
    return asked


def hand_over(broker, t, p, handle, to, what):
    """Ask the leader `handle` to stop (SIGTERM: it appends what producers committed and
    closes its log) so that the election makes replica `to` the leader, if `to` is in
    sync, running and caught up (its published log end at the leader's). Returns whether
    it was asked; if not, ask again later."""
    if not handle.alive or handle.state != "running" or handle.shm is None or to not in p.isr:
        return False
    if not _running_follower(broker, t.name, p.partition, to):
        return False
    try:
        end = handle.shm.state.read().log_end_offset
    except TornState:
        return False
    if handle.shm.progress.log_end_offset(to) < end:
        return False   # not caught up yet: next time
    log.info("%s-%d: asking leader %d to hand over to %s %d", t.name, p.partition, p.leader, what, to)
    handle.handover_to = to
    handle.state = "stopping"
    os.kill(handle.pid, signal.SIGTERM)   # our own child, not yet reaped
    return True
