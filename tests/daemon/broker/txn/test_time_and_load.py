"""The transaction coordinator over time (fake clock): transaction.timeout.ms aborts,
transactional.id.expiration.ms forgets, markers that fail are retried; and rebuilding it
from __transaction_state, completing what a crash left half ended."""
from support.txn import Harness

from odradek.client.errors import (
    ConcurrentTransactions, InvalidProducerEpoch, LeaderNotAvailable, ProducerFenced, TransactionCoordinatorFenced,
    UnknownTopicOrPartition)
from odradek.daemon.broker.txn import TxnConfig
from odradek.daemon.broker.txn import transaction_log as tlog
from odradek.daemon.broker.txn.markers import MAX_RETRY_BACKOFF_MS, RETRY_BACKOFF_MS

INTERVAL = TxnConfig().abort_timed_out_transaction_cleanup_interval_ms


def reloaded(h, **kw):
    """A new coordinator (a restarted broker) that loaded h's __transaction_state."""
    fresh = Harness(**kw)
    fresh.clock.now = h.now
    fresh.apply(fresh.coord.load(list(h.log), fresh.now, 3))
    return fresh


# ---- transaction.timeout.ms -------------------------------------------------------------

def test_an_abandoned_transaction_is_aborted_after_its_timeout_under_a_bumped_epoch(h):
    pid, epoch = h.ongoing(timeout=5_000)
    start = h.now
    assert h.coord.next_deadline() == start + 5_001
    h.tick(5_000)
    assert h.state() == "Ongoing"
    h.tick(1)
    assert h.state() == "CompleteAbort" and h.meta().producer_epoch == epoch + 1
    assert {(mk.topic, mk.partition, mk.committed, mk.producer_epoch) for mk in h.written} == {
        ("t", 0, False, epoch + 1), ("t", 1, False, epoch + 1)}
    assert any("aborting" in n.text for n in h.notes)
    assert h.end(pid, epoch).error() is ProducerFenced     # the producer, back too late, is fenced


def test_timeouts_are_checked_at_most_once_per_interval(h):
    h.ongoing(tid="a", timeout=1_000)
    h.tick(1_001)
    assert h.state("a") == "CompleteAbort"
    h.ongoing(tid="b", timeout=1_000)
    assert h.coord.next_deadline() == h.now + INTERVAL      # the next scan, not b's own due time
    h.tick(INTERVAL - 1)
    assert h.state("b") == "Ongoing"
    h.tick(1)
    assert h.state("b") == "CompleteAbort"


def test_a_transaction_ended_in_time_is_not_aborted(h):
    pid, epoch = h.ongoing(timeout=5_000)
    h.tick(4_000)
    h.end(pid, epoch).ok()
    h.tick(10_000)
    assert h.state() == "CompleteCommit" and h.meta().producer_epoch == epoch


def test_nothing_scheduled_when_nothing_can_time_out_or_expire():
    h = Harness(TxnConfig(id_expiration_ms=10 ** 9))
    assert h.coord.next_deadline() is None
    h.producer()
    assert h.coord.next_deadline() == h.now + 10 ** 9


# ---- transactional.id.expiration.ms ---------------------------------------------------------

def test_an_idle_transactional_id_expires_with_a_tombstone():
    h = Harness(TxnConfig(id_expiration_ms=60_000))
    h.producer()
    h.tick(59_999)
    assert h.state() == "Empty"
    h.tick(1)
    assert h.state() is None and h.log[-1] == (tlog.encode_key("tx"), None)
    assert h.describe("tx")[0].error_code == 105
    assert h.init().ok().producer_id != 1000                # starts over with a new producer id


def test_an_open_transaction_does_not_expire():
    h = Harness(TxnConfig(id_expiration_ms=1_000, max_timeout_ms=10 ** 9))
    h.ongoing(timeout=10 ** 8)
    h.tick(5_000)
    assert h.state() == "Ongoing"


def test_a_failed_tombstone_keeps_the_id():
    h = Harness(TxnConfig(id_expiration_ms=1_000), auto_persist=False)
    h.init()
    h.flush()
    h.tick(1_000)
    h.flush(LeaderNotAvailable("restarting"))
    assert h.state() == "Empty" and h.meta().pending is None


# ---- markers that fail ---------------------------------------------------------------------

def test_a_marker_that_fails_is_retried_with_a_doubling_backoff():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0), ("t", 1)])
    h.end(pid, epoch).ok()
    h.answer(only={("t", 0)})
    backoff = RETRY_BACKOFF_MS
    for _ in range(10):
        h.answer(LeaderNotAvailable("the leader restarted"))
        assert h.markers == [] and h.coord.next_deadline() == h.now + backoff
        h.tick(backoff)
        assert [(mk.topic, mk.partition) for _, mk in h.markers] == [("t", 1)]
        backoff = min(backoff * 2, MAX_RETRY_BACKOFF_MS)
    assert backoff == MAX_RETRY_BACKOFF_MS
    assert h.state() == "PrepareCommit"
    assert h.init().error() is ConcurrentTransactions       # a hanging commit holds the id
    assert [t.transaction_state for t in h.list(duration=1).transaction_states] == ["PrepareCommit"]
    h.answer()
    assert h.state() == "CompleteCommit"
    assert sum("failed" in n.text for n in h.notes) == 1     # logged once, not at every retry


def test_a_deleted_partition_is_skipped_and_a_refused_epoch_counts_as_done():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0), ("u", 1)])
    h.end(pid, epoch, commit=False).ok()
    del h.topics["u"]
    h.answer(UnknownTopicOrPartition("gone"), only={("u", 1)})
    h.answer(InvalidProducerEpoch("newer epoch"), only={("t", 0)})
    assert h.state() == "CompleteAbort"
    assert any("no longer exists" in n.text for n in h.notes)


def test_a_fenced_coordinator_stops_sending_the_transactions_markers_and_never_completes_it():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0), ("t", 1), ("u", 0)])
    h.end(pid, epoch).ok()
    h.answer(LeaderNotAvailable("electing"), only={("t", 1)})        # t-1 to be retried after a backoff
    h.answer(TransactionCoordinatorFenced("coordinator epoch 9 wrote since"), only={("t", 0)})
    h.answer(only={("u", 0)})                                         # an answer still in flight: ignored
    assert h.markers == [] and h.coord.next_deadline() is None        # nothing more to send or retry
    h.tick(MAX_RETRY_BACKOFF_MS)
    assert h.markers == [] and h.state() == "PrepareCommit"           # no Complete record: not ours to write
    assert any("stops sending" in n.text for n in h.notes)
    fresh = reloaded(h, auto_markers=False)                           # a coordinator of a newer epoch
    assert {(mk.topic, mk.partition, mk.coordinator_epoch) for _, mk in fresh.markers} == {
        ("t", 0, 3), ("t", 1, 3), ("u", 0, 3)}
    fresh.answer()
    assert fresh.state() == "CompleteCommit"


def test_an_answer_for_a_partition_that_exists_is_retried_even_if_it_says_unknown():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0)])
    h.end(pid, epoch).ok()
    h.answer(UnknownTopicOrPartition("this worker does not serve it yet"))
    assert h.state() == "PrepareCommit"
    h.tick(RETRY_BACKOFF_MS)
    h.answer()
    assert h.state() == "CompleteCommit"


# ---- load ------------------------------------------------------------------------------

def test_a_reload_keeps_every_id_its_producer_and_its_open_transaction(h):
    pid, epoch = h.ongoing([("t", 0), ("u", 1)], tid="open")
    h.producer(tid="idle")
    done_pid, done_epoch = h.ongoing([("t", 3)], tid="done")
    h.end(done_pid, done_epoch, tid="done").ok()
    r = reloaded(h)
    assert {tid: (t.state.display, t.producer_id, t.producer_epoch, frozenset(t.partitions), t.start_ms)
            for tid, t in r.coord.txns.items()} == \
        {tid: (t.state.display, t.producer_id, t.producer_epoch, frozenset(t.partitions), t.start_ms)
         for tid, t in h.coord.txns.items()}
    r.end(pid, epoch, tid="open").ok()                       # the producer carries on
    assert r.state("open") == "CompleteCommit"
    assert all(mk.coordinator_epoch == 3 for mk in r.written)


def test_a_commit_half_written_at_a_crash_is_completed_at_load():
    h = Harness(auto_markers=False)
    pid, epoch = h.ongoing([("t", 0), ("t", 1)])
    h.end(pid, epoch).ok()
    h.answer(only={("t", 0)})                                # then the broker died
    r = reloaded(h, auto_markers=False)
    assert r.state() == "PrepareCommit"
    assert sorted((mk.topic, mk.partition, mk.committed) for _, mk in r.markers) == [
        ("t", 0, True), ("t", 1, True)]                      # every partition again: markers are idempotent
    assert r.end(pid, epoch).error() is ConcurrentTransactions
    r.answer()
    assert r.state() == "CompleteCommit" and tlog.decode_value(r.log[-1][1]).status == 4


def test_an_open_transaction_found_at_load_keeps_its_timeout():
    h = Harness()
    h.ongoing(timeout=10_000)
    h.clock.advance(4_000)
    r = reloaded(h)
    assert r.coord.next_deadline() == h.now - 4_000 + 10_001
    r.tick(6_001)
    assert r.state() == "CompleteAbort"


def test_load_applies_tombstones_and_skips_what_does_not_decode():
    h = Harness(TxnConfig(id_expiration_ms=1_000))
    h.producer(tid="gone")
    h.tick(1_000)
    h.producer(tid="kept")
    h.log.append((b"\x00\x07junk", b"\x00\x00"))
    h.log.append((tlog.encode_key("bad"), b"\x00\x09whatever"))
    r = reloaded(h)
    assert set(r.coord.txns) == {"kept"}
    assert sum("does not decode" in n.text for n in r.notes) == 2


def test_load_replaces_all_state(h):
    h.producer(tid="a")
    h.apply(h.coord.load([], h.now))
    assert h.coord.txns == {} and h.coord.next_deadline() is None


# ---- Describe and List ------------------------------------------------------------------

def test_describe_shows_an_open_transaction_and_not_found_for_others(h):
    pid, epoch = h.ongoing([("t", 1), ("t", 0), ("u", 0)], timeout=7_000)
    d, unknown, empty = h.describe("tx", "nope", "")
    assert (d.error_code, d.transaction_state, d.producer_id, d.producer_epoch, d.transaction_timeout_ms,
            d.transaction_start_time_ms) == (0, "Ongoing", pid, epoch, 7_000, h.now)
    assert [(t.name, t.partition_indexes) for t in d.topics] == [("t", [0, 1]), ("u", [0])]
    assert unknown.error_code == 105 and empty.error_code == 42


def test_list_filters_by_state_producer_and_duration(h):
    pid_a, _ = h.ongoing(tid="a")
    h.clock.advance(1_000)
    pid_b, _ = h.ongoing(tid="b")
    h.producer(tid="c")
    ids = lambda resp: [t.transactional_id for t in resp.transaction_states]   # noqa: E731
    assert ids(h.list()) == ["a", "b", "c"]
    assert ids(h.list(states=["Ongoing"])) == ["a", "b"]
    assert ids(h.list(states=["Empty", "Bogus"])) == ["c"] and h.list(states=["Bogus"]).unknown_state_filters == [
        "Bogus"]
    assert ids(h.list(states=["Bogus"])) == []
    assert ids(h.list(pids=[pid_b])) == ["b"]
    assert ids(h.list(duration=500)) == ["a"]               # open longer than 500 ms
    assert ids(h.list(states=["Ongoing"], pids=[pid_a, pid_b], duration=0)) == ["a"]
