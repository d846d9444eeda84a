"""The leader's loop round by round (daemon/worker/leader.py, serve): entries that no
futex word will announce after a round are still taken: those left by a round that took
a whole DRAIN_BUDGET, and those behind a round that held acks=all entries (the
completions _acknowledge writes after it free the completion room it may have stopped
for). The loop goes round again after any round that took entries; a variant that slept
at once after such a round (tried for issue 11) needed a rule for each of these."""
import os

from odradek.client import Admin
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm import Doorbell, Ring
from odradek.daemon.worker.leader import DRAIN_BUDGET
from support.broker import wait_until
from support.records import make_batch


def produce_before_attaching(broker, topic, count, acks, completion_bytes):
    """Write `count` one-record batches into a produce ring, then attach it (the commits
    wake nobody; only the broker link moves afterwards), and read completions until all
    came (or fail). Returns them as (tag, base offset, error code)."""
    requests, req_fd = Ring.create(1 << 17)
    completions, comp_fd = Ring.create(completion_bytes)
    bell, bell_fd = Doorbell.create()
    try:
        for i in range(count):
            requests.write(bytes(make_batch([b"r%d" % i])), tag=i)
        with ControlClient(broker.socket_path) as client:
            _, fds = client.call(m.OpenProducerRequest(topic=topic, partition=0, acks=acks),
                                 [req_fd, comp_fd, bell_fd])
            for fd in fds:
                os.close(fd)
            got = []

            def all_completed():
                while (c := completions.read_completion()) is not None:
                    got.append((c.tag, c.base_offset, c.error_code))
                return len(got) == count
            wait_until(all_completed, timeout=10, what=f"{count} completions (got {len(got)})")
        return got
    finally:
        for thing in (requests, completions, bell):
            thing.close()
        for fd in (req_fd, comp_fd, bell_fd):
            os.close(fd)


def test_a_round_that_took_a_whole_budget_is_followed_by_another(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("rounds", 1)
    count = 3 * DRAIN_BUDGET + 5
    assert produce_before_attaching(broker, "rounds", count, 1, 1 << 16) == [(i, i, 0) for i in range(count)]


def test_a_round_that_held_entries_is_followed_by_another(broker):
    """acks.all.fsync alone: entries are held until fsynced, then completed by
    _acknowledge; a small completion ring stops each round after a few entries."""
    with Admin(broker.socket_path) as admin:
        admin.create_topic("held", 1, config={"acks.all.fsync": "true"})
    count = 40
    got = produce_before_attaching(broker, "held", count, m.ACKS_ALL, 1 << 9)
    assert got == [(i, i, 0) for i in range(count)]
