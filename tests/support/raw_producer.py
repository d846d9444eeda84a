"""A producer of raw batches for integration tests: it attaches its own rings to a
partition's leader (OpenProducer) and writes batches it built itself (transactional or
not, any producer id and sequence), as the client's Producer does with its C batches.

    with RawProducer(client, "t", 0, pid, epoch) as raw:
        offset = raw.send([b"a", b"b"], transactional=True)   # the batch's base offset
"""
import os
import time

from support.records import make_batch

from odradek.client.errors import error_for_code
from odradek.client.protocol import messages as m
from odradek.client.shm import Doorbell, Ring

__all__ = ["RawProducer"]

_RING_BYTES = 1 << 16


class RawProducer:
    def __init__(self, client, topic, partition, producer_id=-1, producer_epoch=-1):
        self.producer_id, self.producer_epoch = producer_id, producer_epoch
        self.sequence = 0
        self._requests, req_fd = Ring.create(_RING_BYTES)
        self._completions, comp_fd = Ring.create(_RING_BYTES)
        self._own, own_fd = Doorbell.create()
        try:
            _, fds = client.call(m.OpenProducerRequest(topic=topic, partition=partition, acks=-1,
                                                       producer_id=producer_id, producer_epoch=producer_epoch),
                                 [req_fd, comp_fd, own_fd])
        finally:
            for fd in (req_fd, comp_fd, own_fd):
                os.close(fd)
        self._leader = Doorbell.attach(fds[0])
        for fd in fds:
            os.close(fd)
        self._requests.set_doorbell(self._leader)
        self._tag = 0

    def send(self, values, transactional=False, timeout=10.0):
        """Write one batch of `values` (the next sequence numbers when the producer is
        idempotent) and wait for its completion: its base offset (an error raises)."""
        idempotent = self.producer_id >= 0
        batch = make_batch(values, producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                           base_sequence=self.sequence if idempotent else -1, transactional=transactional)
        if idempotent:
            self.sequence += len(values)
        self._tag += 1
        self._requests.write(batch, self._tag, timeout)
        deadline = time.monotonic() + timeout
        while True:
            done = self._completions.read_completion()
            if done is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no completion from the leader")
            self._completions.wait(min(left, 0.1))
        assert done.tag == self._tag, (done.tag, self._tag)
        if done.error_code:
            raise error_for_code(done.error_code)(f"batch refused ({done.error_code})")
        return done.base_offset

    def close(self):
        self._requests.set_doorbell(None)
        for obj in (self._requests, self._completions, self._own, self._leader):
            obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
