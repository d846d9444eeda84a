"""The gateway's ring attachments against a real broker, in this process: completions of
a shared ring reach each waiter, a waiter that gave up leaves nothing behind, the number
of attachments is bounded, a producer's new epoch retires the old ones, a RingBudget caps
the attachments of several registries together and logs its refusals rate-limited."""
import logging
import threading
import time

import pytest

from odradek.client import Admin
from odradek.client.protocol import messages as m
from odradek.client.records import BatchBuilder
from odradek.daemon.gateway import produce_rings
from odradek.daemon.gateway.broker_link import BrokerLinks
from odradek.client.errors import NotEnoughReplicas, UnknownTopicOrPartition
from odradek.daemon.gateway.client_log import ClientLog
from odradek.daemon.gateway.produce_rings import Attachments, RingBudget
from support.broker import BrokerProcess, stop_cleanly, wait_until


@pytest.fixture(scope="module")
def links(tmp_path_factory):
    broker = BrokerProcess(tmp_path_factory.mktemp("rings") / "data").start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("r", num_partitions=3)
    links = BrokerLinks(broker.socket_path)
    yield links
    links.close()
    stop_cleanly(broker)


def batch(value, pid=-1, epoch=-1, seq=-1):
    b = BatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    b.append(1_700_000_000_000, None, value)
    return b.build()


def test_waiters_of_one_ring_each_get_their_own_completion(links):
    atts = Attachments(links)
    att = atts.acquire("r", 0, 1, -1, -1)
    tags = [att.submit(batch(b"%d" % i), 5) for i in range(20)]
    got = {}

    def wait(tag):
        got[tag] = att.wait(tag, time.monotonic() + 10)
    threads = [threading.Thread(target=wait, args=(t,)) for t in reversed(tags)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(got) == sorted(tags)
    offsets = [got[t].base_offset for t in tags]
    assert offsets == sorted(offsets) and len(set(offsets)) == 20      # in ring order, one each
    assert all(got[t].error_code == 0 and got[t].tag == t for t in tags)
    atts.release(att)
    atts.close()


def test_a_reader_spins_for_completions_that_come_fast(links):
    """Lone batches, each awaited: the leader answers within the spin budget's reach, so
    the reader's spinner takes a budget (it spins before it sleeps, produce_rings.py)."""
    atts = Attachments(links)
    att = atts.acquire("r", 1, 1, -1, -1)
    budgets = []
    for i in range(200):
        done = att.wait(att.submit(batch(b"%d" % i), 5), time.monotonic() + 10)
        assert done is not None and done.error_code == 0
        budgets.append(att._spinner.budget_ns)
    assert att._spinner.max_ns == produce_rings.COMPLETION_SPIN_MAX_NS > 0
    assert att._spinner.quiet_ns == produce_rings.COMPLETION_SPIN_QUIET_NS
    assert max(budgets) > 0
    att._spinner.budget_ns = 0
    for i in range(20):         # a pipelined request's wait (produce.py's _Finish): no spin
        done = att.wait(att.submit(batch(b"p%d" % i), 5), time.monotonic() + 10, spin=False)
        assert done is not None and done.error_code == 0
        assert att._spinner.budget_ns == 0
    atts.release(att)
    atts.close()


def test_a_completion_nobody_waits_for_any_more_is_dropped(links):
    atts = Attachments(links)
    att = atts.acquire("r", 1, 1, -1, -1)
    tag = att.submit(batch(b"x"), 5)
    assert att.wait(tag, time.monotonic()) is None          # gave up at once
    later = att.submit(batch(b"y"), 5)
    assert att.wait(later, time.monotonic() + 10).error_code == 0
    assert att._done == {} and att._abandoned == set()       # the first one's completion went nowhere
    atts.release(att)
    atts.close()


def test_a_row_of_deferred_batches_rings_the_leader_first_and_once_more_when_paid(links):
    """submit(defer=True) (a pipelined Produce's batches): the first of a row rings the
    leader's doorbell, the next ones leave it owed; ring_owed() rings once for all of
    them and ends the row, so the next deferred batch rings again."""
    atts = Attachments(links)
    att = atts.acquire("r", 1, 1, -1, -1)
    leader = att._leaders[-1]
    seen = leader.value
    tags = [att.submit(batch(b"%d" % i), 5, defer=True) for i in range(3)]
    assert leader.value == seen + 1
    att.ring_owed()
    att.ring_owed()
    assert leader.value == seen + 2
    done = [att.wait(t, time.monotonic() + 10) for t in tags]
    assert [d.error_code for d in done] == [0, 0, 0]
    assert [d.base_offset for d in done] == sorted(d.base_offset for d in done)
    att.submit(batch(b"a new row"), 5, defer=True)
    assert leader.value == seen + 3
    att.ring_owed()                                            # first of its row: nothing owed
    assert leader.value == seen + 3
    att.submit(batch(b"not deferred"), 5)
    assert leader.value == seen + 4
    atts.release(att)
    atts.close()


def test_completed_says_without_waiting_whether_a_completion_is_here(links):
    """completed() (a pipelined Produce's ready()): False while the leader has not
    answered, never waiting; True once it has, and then wait() returns it at once;
    abandon() drops a completion already here or still to come."""
    atts = Attachments(links)
    att = atts.acquire("r", 2, 1, -1, -1)
    tags = [att.submit(batch(b"%d" % i), 5) for i in range(3)]
    wait_until(lambda: att.completed(tags[1]), 10, what="the second completion")
    assert att.completed(tags[0])                              # the leader answers in ring order
    assert att.wait(tags[1], time.monotonic()).error_code == 0     # a deadline of now: it is here
    att.abandon(tags[0])
    att.abandon(tags[2])
    assert att.wait(att.submit(batch(b"z"), 5), time.monotonic() + 10).error_code == 0
    assert att._done == {} and att._abandoned == set()
    atts.release(att)
    atts.close()


def test_attachments_are_bounded_and_a_new_epoch_retires_the_old(links, monkeypatch):
    monkeypatch.setattr(produce_rings, "MAX_ATTACHMENTS", 2)
    atts = Attachments(links)
    first = atts.acquire("r", 0, 1, -1, -1)
    atts.release(first)
    second = atts.acquire("r", 1, 1, -1, -1)
    atts.release(second)
    third = atts.acquire("r", 2, 1, -1, -1)                   # retires `first`, the least recently used
    atts.release(third)
    assert first.requests is None and second.requests is not None
    res, _ = links.call(m.InitProducerIdRequest())
    old = atts.acquire("r", 0, -1, res.producer_id, res.producer_epoch)
    atts.release(old)
    new = atts.acquire("r", 0, -1, res.producer_id, res.producer_epoch + 1)   # fenced the old epoch
    atts.release(new)
    assert old.requests is None and new.requests is not None
    atts.close()
    assert new.requests is None and third.requests is None


def test_a_budget_caps_every_registry_sharing_it_and_each_close_gives_back(links):
    budget = RingBudget(2)
    mine, shared = Attachments(links, budget=budget), Attachments(links, budget=budget)
    a = mine.acquire("r", 0, 1, -1, -1)
    b = shared.acquire("r", 1, 1, -1, -1)
    assert budget.in_use == 2
    assert shared.acquire("r", 1, 1, -1, -1) is b                  # one it has costs nothing
    shared.release(b)
    with pytest.raises(NotEnoughReplicas, match=r"r-2: .*listener.max.produce.rings"):
        mine.acquire("r", 2, 1, -1, -1)
    assert budget.in_use == 2
    mine.release(a)
    mine.close()                                                   # a connection's close gives its share back
    assert budget.in_use == 1
    with pytest.raises(UnknownTopicOrPartition):                   # an attach that fails keeps no share
        shared.acquire("r", 9, 1, -1, -1, deadline=time.monotonic() + 1)
    assert budget.in_use == 1
    c = shared.acquire("r", 2, 1, -1, -1)
    assert budget.in_use == 2
    shared.release(c)
    shared.release(b, broken=True)                                 # a broken one gives back once unused
    assert budget.in_use == 1
    shared.close()
    assert budget.in_use == 0


def test_refusals_are_one_line_per_window_that_counts_them(caplog):
    now = [1000.0]
    budget = RingBudget(3, ClientLog(logging.getLogger("odradek.gateway"), clock=lambda: now[0]))
    with caplog.at_level(logging.WARNING, logger="odradek.gateway"):
        for i in range(50):
            assert isinstance(budget.refused("t", i, 7), NotEnoughReplicas)
        now[0] += 10.0                                             # client_log.WINDOW_S later
        budget.refused("t", 99, 8)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "all 3 of listener.max.produce.rings" in lines[0] and "1 new attachments refused" in lines[0]
    assert "50 new attachments refused" in lines[1] and "t-99, producer id 8" in lines[1]


def test_a_wait_on_a_deleted_partition_ends_gone_not_at_its_deadline(links):
    """The broker drops the attachments of a deleted partition and nothing completes their
    batches: a waiter asks after GONE_CHECK_S and stops (it waited to its deadline)."""
    with Admin(links.path) as admin:
        admin.create_topic("doomed", num_partitions=1)
        atts = Attachments(links)
        att = atts.acquire("doomed", 0, 1, -1, -1)
        assert att.wait(att.submit(batch(b"before"), 5), time.monotonic() + 10).error_code == 0
        admin.delete_topic("doomed")
        wait_until(lambda: not [w for w in admin.status().workers if w.topic == "doomed"], 10,
                   what="the deleted partition's worker to exit")      # it may complete a batch until then
    started = time.monotonic()
    assert att.wait(att.submit(batch(b"after"), 5), started + 5) is produce_rings.GONE
    assert time.monotonic() - started < 2
    atts.release(att, broken=True)
    with pytest.raises(UnknownTopicOrPartition):
        atts.acquire("doomed", 0, 1, -1, -1)
    atts.close()
