"""A leader's producer attachment (daemon/worker/producers.py) on real rings: the
completions of one drain round (or of one complete_held) wake the producer once, after
the last of them, not once per completion; and every round that wrote one does wake it."""
import os

import pytest

from odradek.client.protocol import messages as m
from odradek.client.records import BatchBuilder
from odradek.client.shm import Doorbell, Ring
from odradek.daemon.worker.producers import ProducerAttachment


def batch(i):
    b = BatchBuilder()
    b.append(1_000 + i, None, b"value %d" % i)
    return bytes(b.build())


@pytest.fixture
def attached():
    """(the attachment, the producer's end of its request ring, the producer's doorbell)."""
    requests, req_fd = Ring.create(1 << 16)
    completions, comp_fd = Ring.create(1 << 16)
    bell, bell_fd = Doorbell.create()
    att = ProducerAttachment(1, m.OpenProducerRequest(topic="t", partition=0, acks=1), [req_fd, comp_fd, bell_fd])
    yield att, requests, bell
    att.close()
    for thing in (requests, completions, bell):
        thing.close()
    for fd in (req_fd, comp_fd, bell_fd):
        os.close(fd)


class Log:
    """Offsets in order, as the leader's append would give them."""

    def __init__(self):
        self.next = 0

    def append(self, view, header):
        first, self.next = self.next, self.next + header.last_offset_delta + 1
        return first


def test_a_round_of_completions_rings_the_producer_once(attached):
    att, requests, bell = attached
    for i in range(5):
        requests.write(batch(i))
    before = bell.value
    assert att.drain(Log().append, 100) == (5, False)
    assert bell.value == before + 1
    got = [att.completions.read_completion() for _ in range(5)]
    assert [c.base_offset for c in got] == [0, 1, 2, 3, 4]


def test_each_round_that_completes_something_rings_and_an_empty_one_does_not(attached):
    att, requests, bell = attached
    log = Log()
    before = bell.value
    assert att.drain(log.append, 100) == (0, False)
    assert bell.value == before
    for i in range(3):
        requests.write(batch(i))
        assert att.drain(log.append, 100) == (1, False)
        assert bell.value == before + i + 1


def test_held_completions_ring_once_when_they_complete(attached):
    att, requests, bell = attached
    log = Log()
    for i in range(4):
        requests.write(batch(i))
    before = bell.value
    assert att.drain(log.append, 100, hold=True) == (4, False)
    assert bell.value == before                      # held: nothing completed yet
    assert att.complete_held(3) == 3
    assert bell.value == before + 1
    assert att.complete_held(10) == 1
    assert bell.value == before + 2
