"""The coordinator's deadlines (daemon/broker/txn/deadlines.py, the markers' retry heap)
against a brute-force reference that looks at every id and every marker round, as
next_deadline did before the heaps (support/txn.py deadline_by_scan): on random
interleavings of producers, writes and markers that fail, clock jumps and ticks, the next
deadline and what each tick aborts and expires are the same."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.txn import Harness, deadline_by_scan, due_by_scan

from odradek.client.errors import LeaderNotAvailable
from odradek.daemon.broker.txn import TxnConfig
from odradek.daemon.broker.txn.state import TxnState

IDS = ("a", "b", "c", "d", "e")
TIMEOUTS = (1_000, 2_500, 7_000)
# cleanup intervals that do not divide each other, nor the timeouts: scans and due times cross
CONFIG = TxnConfig(id_expiration_ms=9_000, abort_timed_out_transaction_cleanup_interval_ms=1_700,
                   remove_expired_transaction_cleanup_interval_ms=4_100)

KINDS = ["step"] * 8 + ["persist"] * 4 + ["markers"] * 3 + ["wait"] * 4 + ["deadline"] * 2
actions = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, len(IDS) - 1), st.sampled_from([True, True, False]),
                             st.sampled_from([("t", 0), ("t", 1), ("u", 0)]), st.sampled_from([1, 50, 400, 1_700, 5_000])),
                   min_size=30, max_size=120)


def tick_checked(h, ms):
    """Advance and tick; the tick aborts and expires what the reference says, no more."""
    h.clock.advance(ms)
    timed_out, idle = due_by_scan(h.coord, h.now)
    before = {tid: (t.pending, t.state) for tid, t in h.coord.txns.items()}
    h.apply(h.coord.tick(h.now))
    changed = {tid for tid, t in h.coord.txns.items() if (t.pending, t.state) != before.get(tid)}
    gone = set(before) - set(h.coord.txns)
    assert {tid for tid in changed if h.coord.txns[tid].pending is not None
            and h.coord.txns[tid].pending is not TxnState.COMPLETE_COMMIT
            and h.coord.txns[tid].pending is not TxnState.COMPLETE_ABORT} | gone == timed_out | idle


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_next_deadline_and_ticks_match_a_scan_of_every_id(steps):
    h = Harness(CONFIG, auto_persist=False, auto_markers=False)
    producers = {}
    for kind, i, flag, partition, ms in steps:
        tid = IDS[i]
        meta = h.coord.txns.get(tid)
        if kind == "step":
            if tid not in producers or meta is None:
                call = h.init(tid, timeout=TIMEOUTS[i % len(TIMEOUTS)])
                h.flush()
                if call.done and not isinstance(call.result, Exception):
                    producers[tid] = (call.result.producer_id, call.result.producer_epoch)
            elif meta.state is TxnState.ONGOING and flag:
                h.end(*producers[tid], commit=i % 2 == 0, tid=tid)
            else:
                h.add(*producers[tid], [partition], tid)
        elif kind == "persist":
            h.flush(None if flag else LeaderNotAvailable("restarting"))
        elif kind == "markers":
            h.answer(None if flag else LeaderNotAvailable("restarting"))
        elif kind == "wait":
            tick_checked(h, ms)
        else:                                   # to the next deadline, as the broker's timer does
            due = h.coord.next_deadline()
            if due is not None:
                tick_checked(h, max(0, due - h.now))
        assert h.coord.next_deadline() == deadline_by_scan(h.coord)


def test_the_heaps_stay_within_twice_the_ids():
    h = Harness(TxnConfig(id_expiration_ms=10 ** 9))
    pid, epoch = h.ongoing([("t", 0)])
    for _ in range(500):                        # every transaction leaves an entry behind
        h.end(pid, epoch).ok()
        h.add(pid, epoch, [("t", 0)]).ok()
    deadlines = h.coord.deadlines
    assert len(deadlines._timeouts) + len(deadlines._expiries) <= 2 * (2 * len(h.coord.txns) + 64)
    assert h.coord.next_deadline() == deadline_by_scan(h.coord)
