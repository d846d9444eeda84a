"""The leader's loop round by round (daemon/worker/leader.py, serve): after a round that
took entries it sleeps on the snapshot it took before the round, with no second round to
find the rings empty; a ring that may hold more (a whole DRAIN_BUDGET taken) gets another
round at once, since no futex word changes to wake the leader for entries committed
before that snapshot."""
import os

from odradek.client import Admin
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm import Doorbell, Ring
from odradek.daemon.worker.leader import DRAIN_BUDGET
from support.broker import wait_until
from support.records import make_batch


def test_entries_committed_before_the_attach_are_all_taken_in_budget_sized_rounds(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("rounds", 1)
    count = 3 * DRAIN_BUDGET + 5
    requests, req_fd = Ring.create(1 << 17)
    completions, comp_fd = Ring.create(1 << 16)
    bell, bell_fd = Doorbell.create()
    try:
        # all of them in the ring before the leader maps it: the commits wake nobody,
        # and the only word that moves afterwards is the broker link's
        for i in range(count):
            requests.write(bytes(make_batch([b"r%d" % i])), tag=i)
        with ControlClient(broker.socket_path) as client:
            _, fds = client.call(m.OpenProducerRequest(topic="rounds", partition=0, acks=1),
                                 [req_fd, comp_fd, bell_fd])
            for fd in fds:
                os.close(fd)
            got = []

            def all_completed():
                while (c := completions.read_completion()) is not None:
                    got.append(c)
                return len(got) == count
            wait_until(all_completed, timeout=10, what=f"{count} completions")
        assert [(c.tag, c.base_offset, c.error_code) for c in got] == [(i, i, 0) for i in range(count)]
    finally:
        for thing in (requests, completions, bell):
            thing.close()
        for fd in (req_fd, comp_fd, bell_fd):
            os.close(fd)
