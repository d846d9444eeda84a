"""Moving a replica of a partition to another log dir, online (Kafka's AlterReplicaLogDirs,
carried out the way kafka-reassign-partitions does it): the new replica is added and
copies the log as a follower; once it is in sync the old one is dropped. Producers and
consumers carry on; no acknowledged record is lost, since the old replica leaves only
when the new one holds everything below the high watermark.

The steps, each saved in the cluster metadata before it takes effect, so that a broker
restarted at any point resumes the move where it was:
1. Start (MoveReplicas): the new replica's partition dir is made (a dir a crash left
   there is removed first), then replicas = old + [to], adding [to], removing [from],
   partition epoch + 1, saved. A follower process starts for the new replica, and the
   partition's other processes restart (as for a config change) so that the leader
   counts the new replica (high watermark, ISR) and any successor knows it.
2. The leader proposes the new replica for the ISR once it has caught up (IsrProposal,
   daemon/broker/replication.py); the broker saves that and calls advance().
3. If the replica leaving is the leader, leadership is handed over first, as to a
   preferred leader (SIGTERM; the election picks the first in-sync, caught-up replica of
   the target list): the move goes on once it follows.
4. Its follower process is stopped, neither restarted nor counted as a death; once it
   has exited, replicas = the target list (the new replica in the old one's position,
   so the preferred leader keeps its place), the ISR without it, adding and removing
   empty, partition epoch + 1, saved; then its partition dir is removed (renamed aside,
   then deleted; one a crash left behind is removed at the next start).

advance() runs at each of these events and, while any move is under way, every CHECK_S,
so a step that had to wait (a successor not yet running, a full disk) is taken as soon as
it can be.
"""
import logging
import os

from odradek.client.errors import LogDirNotFound, OdradekError, PolicyViolation, StorageError
from odradek.client.protocol import messages as m
from odradek.daemon.broker import handlers, replication
from odradek.daemon.broker.supervisor import WorkerHandle
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import fsync_dir
from odradek.daemon.storage.modes import make_dirs

__all__ = ["move_replicas", "advance", "replica_left", "watch", "CHECK_S"]

log = logging.getLogger(__name__)

CHECK_S = 0.2   # how often moves under way are looked at, besides the events that move them on


def move_replicas(broker, req):
    """MoveReplicas: start each move, or refuse it (changing nothing) with its error."""
    results = []
    for mv in req.moves:
        try:
            _start(broker, mv)
            results.append(m.ReplicaMoveResult(topic=mv.topic, partition=mv.partition))
        except OdradekError as e:
            results.append(m.ReplicaMoveResult(topic=mv.topic, partition=mv.partition, error_code=e.code,
                                               error_message=e.message))
    return m.MoveReplicasResponse(results=results)


def _dir_index(broker, path):
    """The index in log.dirs of the log dir at `path`, which must be online."""
    dirs = broker.config.log_dirs
    try:
        wanted = os.path.realpath(path) if path else None
    except ValueError:   # a NUL byte: no path at all
        wanted = None
    found = [i for i, d in enumerate(dirs) if os.path.realpath(d) == wanted]
    if not found:
        raise LogDirNotFound(f"{path!r} is not one of log.dirs ({', '.join(dirs)})")
    st = broker.dirs[found[0]]
    if not st.online:
        raise LogDirNotFound(f"log dir {dirs[found[0]]} is offline ({st.reason})")
    return found[0]


def _start(broker, mv):
    md = broker.metadata
    p = md.partition(mv.topic, mv.partition)
    topic = md.topics[mv.topic]
    if topic.name in broker.offline:
        raise PolicyViolation(f"topic {topic.name!r} is offline (above the partition limits): its replicas "
                              f"cannot move")
    offline = broker.dir_offline_error(topic.name, p)
    if offline is not None:
        raise offline
    src, dst = _dir_index(broker, mv.from_dir), _dir_index(broker, mv.to_dir)
    shm = broker.partition_shm(topic.name, p.partition)
    before = (list(p.replicas), p.partition_epoch)
    md.start_move(topic.name, p.partition, src, dst)   # refusals raise before any change
    try:   # its dir first, as for a new partition: a saved replica always has its dir
        log_dir = broker.config.log_dirs[dst]
        handlers.remove_partition_dir(log_dir, topic.name, p.partition)   # a crash's leftover: not a replica
        make_dirs(os.path.join(log_dir, filenames.partition_dir_name(topic.name, p.partition)))
        fsync_dir(log_dir)
        md.save()
    except (StorageError, OSError) as e:
        p.replicas, p.partition_epoch = before
        p.adding_replicas, p.removing_replicas = [], []
        raise StorageError(f"cannot start the move of {topic.name}-{p.partition} to {mv.to_dir}: {e}") from None
    log.info("%s-%d: moving replica %d (%s) to %d (%s); replicas %s, partition epoch %d", topic.name, p.partition,
             src, broker.config.log_dirs[src], dst, broker.config.log_dirs[dst], p.replicas, p.partition_epoch)
    handle = WorkerHandle(replication.follower_spec(broker, topic, p, dst))
    handle.shm = shm
    broker.queue_worker(handle)
    # the leader must count the new replica, and a successor must know it: they restart
    # with the new replica list, as for a config change (handlers.worker_retired)
    for key in [(topic.name, p.partition), *((topic.name, p.partition, r) for r in p.followers if r != dst)]:
        h = broker.supervisor.workers.get(key)
        if h is not None and h.alive:
            broker.stop_worker(h)
    watch(broker)


def advance(broker, name, partition):
    """Take the next step of the partition's move if it can be taken now (module doc)."""
    t = broker.metadata.topics.get(name)
    if t is None or partition >= len(t.partitions) or broker.stopping:
        return
    p = t.partitions[partition]
    if not p.move_in_sync:
        return   # nothing under way, or the new replica is still catching up
    gone = p.removing_replicas[0]   # one move per partition at a time (ReassignmentInProgress)
    if p.leader == gone:
        _hand_over(broker, t, p)
        return
    handle = broker.supervisor.workers.get((name, partition, gone))
    if handle is not None and handle.alive:
        if not handle.retire:
            log.info("%s-%d: replica %d is in sync; stopping replica %d's follower", name, partition,
                     p.adding_replicas[0], gone)
            broker.stop_worker(handle)   # replica_left finishes once it has exited
        return
    if handle is not None:
        broker.supervisor.forget(handle)   # queued or dead: never started again
    _finish(broker, t, p, gone)


def _hand_over(broker, t, p):
    """The leaving replica leads: ask it to hand over to the first in-sync, running,
    caught-up replica of the target list (no-op while one is already asked)."""
    handle = broker.supervisor.workers.get((t.name, p.partition))
    if handle is None or handle.state != "running":
        return
    for r in p.target_replicas:
        if r in p.isr and replication.hand_over(broker, t, p, handle, r, "replica"):
            return


def replica_left(broker, handle):
    """A stopped process has exited: True if it was the follower of a replica moved away
    (then the move goes on, and it is not started again)."""
    t = broker.metadata.topics.get(handle.spec.topic)
    if not handle.is_follower or t is None or handle.spec.partition >= len(t.partitions):
        return False
    p = t.partitions[handle.spec.partition]
    replica = handle.spec.replica_id
    if replica not in p.removing_replicas or replica == p.leader or not p.move_in_sync:
        return False   # stopped for another reason (the restart at the move's start): it restarts
    advance(broker, t.name, p.partition)
    return True


def _finish(broker, t, p, gone):
    md = broker.metadata
    before = (list(p.replicas), list(p.isr), list(p.adding_replicas), list(p.removing_replicas), p.partition_epoch)
    md.finish_move(t.name, p.partition)
    try:
        md.save()
    except StorageError as e:
        p.replicas, p.isr, p.adding_replicas, p.removing_replicas, p.partition_epoch = before
        log.error("%s-%d: cannot save the end of the move of replica %d: %s; retrying", t.name, p.partition, gone, e)
        return
    log.info("%s-%d: replica %d moved to %d: replicas %s, ISR %s (partition epoch %d)", t.name, p.partition, gone,
             before[2][0], p.replicas, p.isr, p.partition_epoch)
    leader = broker.supervisor.workers.get((t.name, p.partition))
    if leader is not None and leader.shm is not None:
        leader.shm.progress.forget(gone)
    replication.push_isr(broker, (t.name, p.partition), p)
    if gone not in broker.metadata.offline_dirs:
        try:
            handlers.remove_partition_dir(broker.config.log_dirs[gone], t.name, p.partition)
        except OSError as e:   # the next start removes it (server._remove_strays)
            log.error("%s-%d: cannot remove the moved replica's dir in %s: %s", t.name, p.partition,
                      broker.config.log_dirs[gone], e)


def watch(broker):
    """While a move is under way, advance() every move every CHECK_S."""
    if broker.moves_watched or broker.stopping:
        return
    broker.moves_watched = True
    broker.call_later(CHECK_S, lambda: _check_all(broker))


def _check_all(broker):
    broker.moves_watched = False
    moving = [(t.name, p.partition) for t in broker.metadata.topics.values() for p in t.partitions if p.moving]
    for name, partition in moving:
        try:
            advance(broker, name, partition)
        except Exception:   # a bug here must not take the broker down: logged, tried again
            log.exception("%s-%d: the replica move could not go on", name, partition)
    if moving:
        watch(broker)
