"""A producer of raw batches for integration tests: it attaches its own rings to a
partition's leader (OpenProducer) and writes whatever it is given (garbage, forged
batches, transactional batches of any producer id and sequence), as the client's
Producer does with the batches it builds.

    with RawProducer(client, "t", 0, pid, epoch) as raw:
        offset = raw.send([b"a", b"b"], transactional=True)   # a batch; its base offset
        raw.write(b"garbage", tag=7); raw.completion()       # by hand: the entry, its Completion

    produce_before_attaching(socket_path, "t", batches)        # rings filled, then attached
"""
import os

from support.broker import wait_until
from support.records import make_batch

from odradek.client.errors import error_for_code
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm import Doorbell, Ring

__all__ = ["RawProducer", "produce_before_attaching"]

_RING_BYTES = 1 << 16


class RawProducer:
    def __init__(self, client, topic, partition=0, producer_id=-1, producer_epoch=-1, acks=-1):
        """client: a ControlClient, or a socket path (then the producer has its own, closed
        with it)."""
        self._own_client = isinstance(client, str)
        if self._own_client:
            client = ControlClient(client)
        self.client = client
        self.producer_id, self.producer_epoch = producer_id, producer_epoch
        self.sequence = 0
        self.requests, req_fd = Ring.create(_RING_BYTES)
        self.completions, comp_fd = Ring.create(_RING_BYTES)
        self.doorbell, own_fd = Doorbell.create()
        try:
            _, fds = client.call(m.OpenProducerRequest(topic=topic, partition=partition, acks=acks,
                                                       producer_id=producer_id, producer_epoch=producer_epoch),
                                 [req_fd, comp_fd, own_fd])
        finally:
            for fd in (req_fd, comp_fd, own_fd):
                os.close(fd)
        self.leader = Doorbell.attach(fds[0])
        for fd in fds:
            os.close(fd)
        self.requests.set_doorbell(self.leader)
        self._tag = 0

    def write(self, data, tag):
        """One ring entry holding `data`, as it is."""
        self.requests.write(data, tag)

    def completion(self, timeout=10):
        """The next Completion the leader wrote (fails after `timeout` seconds)."""
        return wait_until(lambda: self.completions.read_completion(), timeout, what="a completion")

    def send(self, values, transactional=False, timeout=10, keys=None):
        """One batch of `values` (and `keys`; the next sequence numbers when the producer
        is idempotent), and its base offset once completed (an error code raises it)."""
        idempotent = self.producer_id >= 0
        batch = make_batch(values, keys=keys, producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                           base_sequence=self.sequence if idempotent else -1, transactional=transactional)
        if idempotent:
            self.sequence += len(values)
        self._tag += 1
        self.write(batch, self._tag)
        done = self.completion(timeout)
        assert done.tag == self._tag, (done.tag, self._tag)
        if done.error_code:
            raise error_for_code(done.error_code)(f"batch refused ({done.error_code})")
        return done.base_offset

    def close(self):
        self.requests.set_doorbell(None)
        for obj in (self.requests, self.completions, self.doorbell, self.leader):
            obj.close()
        if self._own_client:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def produce_before_attaching(socket_path, topic, batches, acks=1, ring_bytes=1 << 22,
                             completion_bytes=_RING_BYTES):
    """Write `batches` into a produce ring (tags 0, 1, ...), then attach it: the leader
    finds them all waiting at once, and no commit wakes it (only the broker link moves
    afterwards). Reads completions until all came (or fails). Returns them as (tag, base
    offset, error code)."""
    requests, req_fd = Ring.create(ring_bytes)
    completions, comp_fd = Ring.create(completion_bytes)
    bell, bell_fd = Doorbell.create()
    try:
        for i, data in enumerate(batches):
            requests.write(data, tag=i)
        with ControlClient(socket_path) as client:
            _, fds = client.call(m.OpenProducerRequest(topic=topic, partition=0, acks=acks),
                                 [req_fd, comp_fd, bell_fd])
            for fd in fds:
                os.close(fd)
            got = []

            def all_completed():
                while (c := completions.read_completion()) is not None:
                    got.append((c.tag, c.base_offset, c.error_code))
                return len(got) == len(batches)
            wait_until(all_completed, timeout=10, what=f"{len(batches)} completions (got {len(got)})")
        return got
    finally:
        for thing in (requests, completions, bell):
            thing.close()
        for fd in (req_fd, comp_fd, bell_fd):
            os.close(fd)
