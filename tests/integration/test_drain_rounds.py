"""The leader's loop round by round (daemon/worker/leader.py, serve): entries that no
futex word will announce after a round are still taken: those left by a round that took
a whole DRAIN_BUDGET, and those behind a round that held acks=all entries (the
completions _acknowledge writes after it free the completion room it may have stopped
for). The loop goes round again after any round that took entries; a variant that slept
at once after such a round (tried for issue 11) needed a rule for each of these."""

from odradek.client import Admin
from odradek.client.protocol import messages as m
from odradek.daemon.worker.leader import DRAIN_BUDGET
from support.raw_producer import produce_before_attaching
from support.records import make_batch


def one_record_batches(count):
    return [bytes(make_batch([b"r%d" % i])) for i in range(count)]


def test_a_round_that_took_a_whole_budget_is_followed_by_another(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("rounds", 1)
    count = 3 * DRAIN_BUDGET + 5
    got = produce_before_attaching(broker.socket_path, "rounds", one_record_batches(count), acks=1,
                                   ring_bytes=1 << 17)
    assert got == [(i, i, 0) for i in range(count)]


def test_a_round_that_held_entries_is_followed_by_another(broker):
    """acks.all.fsync alone: entries are held until fsynced, then completed by
    _acknowledge; a small completion ring stops each round after a few entries."""
    with Admin(broker.socket_path) as admin:
        admin.create_topic("held", 1, config={"acks.all.fsync": "true"})
    count = 40
    got = produce_before_attaching(broker.socket_path, "held", one_record_batches(count), acks=m.ACKS_ALL,
                                   ring_bytes=1 << 17, completion_bytes=1 << 9)
    assert got == [(i, i, 0) for i in range(count)]
