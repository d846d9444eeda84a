"""Random interleavings of transactional producers (two instances per id, so zombies),
timeouts, expiry, slow or failing writes and markers: the coordinator never answers a
request twice, answers every request once writes finish, keeps at most one change
under way per id, and its log rebuilds exactly the state it holds."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.txn import Harness

from odradek.client.errors import InvalidProducerIdMapping, LeaderNotAvailable, ProducerFenced
from odradek.daemon.broker.txn import TxnConfig
from odradek.daemon.broker.txn.state import OPEN_STATES, TxnState

IDS = ("a", "b")
PRODUCERS = 4          # producer i uses transactional id IDS[i % 2]
CONFIG = TxnConfig(id_expiration_ms=50_000)

# (what, producer, flag, partition, ms): "step" is producer 0's or 1's natural next request;
# producers 2 and 3 (the same ids) come and go, fencing them; a False flag fails a write
# or a marker, and is the outcome of an explicit EndTxn
KINDS = ["step"] * 10 + ["persist"] * 6 + ["markers"] * 3 + ["init", "add", "offsets", "end", "tick"]
actions = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, PRODUCERS - 1), st.sampled_from([True, True, False]),
                             st.sampled_from([("t", 0), ("t", 1), ("u", 0)]),
                             st.sampled_from([0, 100, 1_000, 20_000, 70_000])),
                   min_size=20, max_size=100)


def fenced(result):
    codes = {ProducerFenced.code, InvalidProducerIdMapping.code}
    if isinstance(result, (ProducerFenced, InvalidProducerIdMapping)):
        return True
    return hasattr(result, "results") and any(r.error_code in codes for t in result.results for r in t.results)


def snapshot(coord):
    """What the log must rebuild: every id with no change under way, but those whose
    first write failed (epoch -1: kept in memory for the retry, as Kafka keeps them)."""
    return {tid: (t.state, t.producer_id, t.producer_epoch, t.timeout_ms, frozenset(t.partitions), t.start_ms)
            for tid, t in coord.txns.items() if t.pending is None and t.producer_epoch >= 0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_random_transactions(steps):
    h = Harness(CONFIG, auto_persist=False, auto_markers=False)
    producers = [None] * PRODUCERS       # (pid, epoch) each instance was given
    calls = []
    for kind, i, flag, partition, ms in steps:
        if kind == "step":
            i %= 2
            meta = h.coord.txns.get(IDS[i])
            kind = "init" if producers[i] is None else \
                "add" if meta is None or meta.state is not TxnState.ONGOING else "end"
        tid = IDS[i % 2]
        if kind == "init":
            calls.append((i, "init", h.init(tid, timeout=30_000)))
        elif kind in ("add", "offsets", "end") and producers[i] is not None:
            pid, epoch = producers[i]
            call = h.add(pid, epoch, [partition], tid) if kind == "add" else \
                h.add_offsets(pid, epoch, tid=tid) if kind == "offsets" else h.end(pid, epoch, flag, tid)
            calls.append((i, kind, call))
        elif kind == "tick":
            h.tick(ms)
        elif kind == "persist":
            h.flush(None if flag else LeaderNotAvailable("restarting"))
        elif kind == "markers":
            h.answer(None if flag else LeaderNotAvailable("restarting"))
        for i, what, call in calls:
            if call.done and not hasattr(call, "seen"):
                call.seen = True
                result = call.result
                if what == "init" and not isinstance(result, Exception):
                    producers[i] = (result.producer_id, result.producer_epoch)
                elif fenced(result):
                    producers[i] = None       # a fenced producer is done: a new instance starts
        for t in h.coord.txns.values():
            assert t.state not in (TxnState.DEAD, TxnState.PREPARE_EPOCH_FENCE)
            assert t.partitions or t.state not in (TxnState.ONGOING,), t
            if t.state not in OPEN_STATES:
                assert not t.partitions, t
    # let every write and marker finish, and time run on: every request is answered
    for _ in range(40):
        h.flush()
        h.answer()
        due = h.coord.next_deadline()
        if not h.pending and not h.markers and (due is None or due > h.now + 10 ** 6):
            break
        h.tick(max(0, (due or h.now) - h.now))
    assert all(call.done for _, _, call in calls), [w for _, w, c in calls if not c.done]
    assert all(t.pending is None for t in h.coord.txns.values())
    reloaded = Harness(CONFIG)
    reloaded.clock.now = h.now
    reloaded.apply(reloaded.coord.load(list(h.log), h.now))
    assert snapshot(reloaded.coord) == snapshot(h.coord)
