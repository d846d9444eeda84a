"""The broker's part in the data plane: it hands out shared memory and file descriptors,
and never touches a record byte.

- Each partition has a PartitionShm (its leader's doorbell and its partition state),
  created by the broker when the partition's first worker starts and kept across
  worker restarts, so producers and consumers keep their mappings when a worker dies.
  The broker maps them itself and seals the state against writes (client/shm/LAYOUT.md):
  a worker writes through the broker's mapping, which it inherits over fork; nobody,
  worker included, can make a new writable mapping of the state.
- OpenProducer: the producer passes its rings and doorbell; the broker keeps its own
  copies (a ProducerRegistration here) and relays them to the partition's worker. When
  that worker is replaced, the broker attaches them to the new one, which takes the
  ring from where the dead one left it. When the producer's control connection closes,
  the broker detaches them (the worker drains what was committed) and closes its copies.
  acks=all against min.insync.replicas is checked by the worker per batch (against the
  ISR the broker saved and told it, and the topic's configs), so the error reaches each
  batch's delivery callback and a producer attached before an alter follows the new
  value. Each PartitionShm also holds the partition's replica progress page
  (daemon/replication/progress.py), which its leader and followers share.
- OpenFetch: answered here: the state, as a read-only fd of a write-sealed memfd.
- GetSegment: relayed to the worker, which opens the segment read-only; the fd travels
  worker -> broker -> consumer. The file is 0640 (storage/modes.py): a consumer of
  another uid cannot reopen it for writing through /proc/self/fd; one with the broker's
  uid, or root, can (the OS identity is the principal).
Every check of who may do what happens here, on the peer's SO_PEERCRED identity: today
any local user who can open the socket (mode socket.mode) may produce and consume.
"""
import itertools
import logging
import os

from odradek.client.errors import InvalidRequest, InvalidRequiredAcks
from odradek.client.protocol import messages as m
from odradek.client.protocol.transport import close_fds
from odradek.client.shm import Doorbell, PartitionState
from odradek.daemon.replication.progress import ReplicaProgress

__all__ = ["PartitionShm", "Attachments", "open_producer", "open_fetch", "get_segment"]

log = logging.getLogger(__name__)

_attach_ids = itertools.count(1)


class PartitionShm:
    """The shared memory of one partition, owned by the broker. Its worker, forked from
    the broker, uses these very objects: their mappings are the only writable ones of
    the state (sealed against writes at create)."""
    __slots__ = ("doorbell", "doorbell_fd", "state", "state_fds", "progress")

    def __init__(self, slots, replicas=1):
        """slots: descriptor slots of the state; replicas: slots of the replica progress
        page (daemon/replication/progress.py), one per log dir."""
        self.doorbell, self.doorbell_fd = Doorbell.create()
        try:
            self.state, self.state_fds = PartitionState.create(slots)
        except BaseException:
            self.doorbell.close()
            os.close(self.doorbell_fd)
            raise
        self.progress = ReplicaProgress(replicas)   # anonymous: no fd, forks inherit it

    @property
    def fds(self):
        """Every fd the broker holds for the partition (other partitions' workers close them)."""
        return (self.doorbell_fd, self.state_fds.state)

    def fence(self):
        """The partition is gone (topic deleted), its worker dead: as its writer again,
        wake every reader, tell them to ask."""
        self.state.take_over().fence()

    def close(self):
        self.progress.close()
        self.state.close()
        self.state_fds.close()
        self.doorbell.close()
        os.close(self.doorbell_fd)


class ProducerRegistration:
    __slots__ = ("attach_id", "conn", "key", "request", "fds")

    def __init__(self, conn, key, request, fds):
        self.attach_id = next(_attach_ids)
        self.conn, self.key, self.fds = conn, key, fds
        self.request = request
        request.attach_id = self.attach_id


class Attachments:
    """Every producer attachment, by partition and by connection."""

    def __init__(self):
        self.by_key = {}       # (topic, partition) -> {attach_id: ProducerRegistration}
        self.by_conn = {}      # ClientConn -> [ProducerRegistration]

    def add(self, att):
        self.by_key.setdefault(att.key, {})[att.attach_id] = att
        self.by_conn.setdefault(att.conn, []).append(att)

    def for_partition(self, key):
        return list(self.by_key.get(key, {}).values())

    def remove(self, att):
        """Forget one attachment and close the broker's copies of its fds."""
        self.by_key.get(att.key, {}).pop(att.attach_id, None)
        lst = self.by_conn.get(att.conn, [])
        if att in lst:
            lst.remove(att)
        close_fds(att.fds)
        att.fds = []

    def remove_conn(self, conn):
        """Forget (and close) every attachment of a connection; returns them."""
        atts = list(self.by_conn.get(conn, []))
        for att in atts:
            self.remove(att)
        self.by_conn.pop(conn, None)
        return atts

    def remove_partition(self, key):
        atts = list(self.by_key.get(key, {}).values())
        for att in atts:
            self.remove(att)
        self.by_key.pop(key, None)
        return atts


def open_producer(broker, conn, req, fds, reply):
    if len(fds) != 3:
        close_fds(fds)
        raise InvalidRequest(f"OpenProducer passes 3 fds (produce ring, completion ring, doorbell), "
                             f"not {len(fds)}")
    if req.acks not in (0, 1, m.ACKS_ALL):
        close_fds(fds)
        raise InvalidRequiredAcks(f"acks must be 0, 1 or all (-1), not {req.acks}")
    try:
        broker.metadata.partition(req.topic, req.partition)
    except BaseException:
        close_fds(fds)
        raise
    att = ProducerRegistration(conn, (req.topic, req.partition), req, fds)
    broker.attachments.add(att)
    log.debug("producer pid %d attached to %s-%d as %d", conn.pid, req.topic, req.partition, att.attach_id)

    def done(result, out_fds):
        if not isinstance(result, m.OpenProducerResponse):
            close_fds(out_fds)
            broker.attachments.remove(att)
        reply(result, out_fds)
    attach(broker, att, done)


def attach(broker, att, callback):
    """Relay the attachment to the partition's worker (again, after a restart)."""
    broker.worker_request(att.key, att.request, callback, fds=[os.dup(fd) for fd in att.fds], with_fds=True)


def reattach_all(broker, key):
    """A new worker for `key` started: give it every producer of the partition."""
    for att in broker.attachments.for_partition(key):
        def done(result, out_fds, att=att):
            close_fds(out_fds)
            if not isinstance(result, m.OpenProducerResponse):
                log.warning("re-attaching producer %d to %s-%d: %s", att.attach_id, *att.key, result)
        attach(broker, att, done)


def detach_conn(broker, conn):
    """The producer's connection closed: detach its rings from the workers."""
    for att in broker.attachments.remove_conn(conn):
        handle = broker.supervisor.workers.get(att.key)
        if handle is not None and handle.alive:
            broker.worker_request(att.key, m.DetachProducerRequest(attach_id=att.attach_id), lambda _r: None)


def open_fetch(broker, conn, req, fds, reply):
    close_fds(fds)
    p = broker.metadata.partition(req.topic, req.partition)
    shm = broker.partition_shm(req.topic, req.partition)
    reader = shm.state_fds.for_readers()
    reply(m.OpenFetchResponse(
        topic=req.topic, partition=req.partition, leader_epoch=p.leader_epoch,
        fds=[m.PassedFd(kind=m.FdKind.PARTITION_STATE, size=os.fstat(reader.state).st_size,
                        layout_version=1)]),
          [reader.state])


def get_segment(broker, conn, req, fds, reply):
    close_fds(fds)
    broker.metadata.partition(req.topic, req.partition)
    broker.worker_request((req.topic, req.partition), req, reply, with_fds=True)
