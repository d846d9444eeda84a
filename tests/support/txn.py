"""A broker loop in miniature (tests/daemon/broker/txn) for the transaction coordinator: a FakeClock, replies
recorded per request, a __transaction_state "log" that Persist effects append to, and
partition leaders that answer WriteMarkers. Persists and markers are acknowledged at
once, or held (auto_persist / auto_markers off) until flush() / answer()."""
import itertools

from support.clock import FakeClock
from support.replies import Call, record

from odradek.client.protocol import messages as m
from odradek.daemon.broker.txn import Note, Persist, Reply, TransactionCoordinator, TxnConfig, WriteMarkers
from odradek.daemon.broker.txn.state import EXPIRABLE_STATES, TxnState

TIMEOUT_MS = 60_000
CONFIG = TxnConfig()


class Harness:
    def __init__(self, config=CONFIG, auto_persist=True, auto_markers=True, topics=None):
        self.clock = FakeClock()
        self.topics = {"t": 4, "u": 2, "__consumer_offsets": 1} if topics is None else topics
        self._pids = itertools.count(1000)
        self.coord = TransactionCoordinator(config, lambda: next(self._pids), self._exists)
        self.replies = {}
        self.log = []            # (key, value) records appended to __transaction_state
        self.pending = []        # Persists held: written to the log by flush()
        self.markers = []        # (token, WriteTxnMarkerRequest) not yet answered
        self.written = []        # every WriteTxnMarkerRequest answered with success
        self.notes = []
        self.auto_persist, self.auto_markers = auto_persist, auto_markers
        self._handles = itertools.count(1)

    def _exists(self, topic, partition):
        return 0 <= partition < self.topics.get(topic, 0)

    @property
    def now(self):
        return self.clock.now

    def apply(self, effects):
        for e in effects:
            if isinstance(e, Reply):
                record(self.replies, e)
            elif isinstance(e, Persist):
                if self.auto_persist:
                    self.log.extend(e.records)
                    self.apply(self.coord.persisted(e.token, self.now))
                else:
                    self.pending.append(e)
            elif isinstance(e, WriteMarkers):
                self.markers.extend((e.token, marker) for marker in e.markers)
                if self.auto_markers:
                    self.answer()
            else:
                assert isinstance(e, Note), e
                self.notes.append(e)

    # ---- the loop -----------------------------------------------------------------
    def send(self, request, conn="c1"):
        handle = next(self._handles)
        self.apply(self.coord.handle(conn, handle, request, self.now))
        return Call(self, conn, handle)

    def tick(self, ms=0):
        self.clock.advance(ms)
        self.apply(self.coord.tick(self.now))

    def flush(self, error=None):
        """Finish every held Persist: written (its records join the log), or failed."""
        held, self.pending = self.pending, []
        for persist in held:
            if error is None:
                self.log.extend(persist.records)
            self.apply(self.coord.persisted(persist.token, self.now, error))

    def answer(self, error=None, only=None):
        """Answer the markers sent (those of partitions in `only`, if given)."""
        keep, answering = [], []
        for token, marker in self.markers:
            (answering if only is None or (marker.topic, marker.partition) in only else keep).append((token, marker))
        self.markers = keep
        for token, marker in answering:
            if error is None:
                self.written.append(marker)
            self.apply(self.coord.marker_written(token, marker.topic, marker.partition, self.now, error))

    def meta(self, tid="tx"):
        return self.coord.txns[tid]

    def state(self, tid="tx"):
        meta = self.coord.txns.get(tid)
        return None if meta is None else meta.state.display

    # ---- client requests ----------------------------------------------------------
    def init(self, tid="tx", timeout=TIMEOUT_MS, pid=-1, epoch=-1, conn="c1"):
        return self.send(m.InitProducerIdRequest(transactional_id=tid, transaction_timeout_ms=timeout,
                                                 producer_id=pid, producer_epoch=epoch), conn)

    def add(self, pid, epoch, partitions, tid="tx", conn="c1"):
        topics = {}
        for t, p in partitions:
            topics.setdefault(t, []).append(p)
        return self.send(m.AddPartitionsToTxnRequest(
            transactional_id=tid, producer_id=pid, producer_epoch=epoch,
            topics=[m.AddPartitionsToTxnTopic(name=t, partitions=ps) for t, ps in topics.items()]), conn)

    def add_offsets(self, pid, epoch, group="g", tid="tx"):
        return self.send(m.AddOffsetsToTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                                                  group_id=group))

    def end(self, pid, epoch, commit=True, tid="tx", conn="c1"):
        return self.send(m.EndTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                                         committed=commit), conn)

    def describe(self, *tids):
        return self.send(m.DescribeTransactionsRequest(transactional_ids=list(tids))).ok().transaction_states

    def list(self, states=(), pids=(), duration=-1):
        resp = self.send(m.ListTransactionsRequest(state_filters=list(states), producer_id_filters=list(pids),
                                                   duration_filter=duration)).ok()
        return resp

    # ---- scenarios ------------------------------------------------------------------
    def producer(self, tid="tx", timeout=TIMEOUT_MS):
        """(producer id, epoch) of a freshly initialised transactional producer."""
        call = self.init(tid, timeout)
        self.flush()
        r = call.ok()
        return r.producer_id, r.producer_epoch

    def ongoing(self, partitions=(("t", 0), ("t", 1)), tid="tx", timeout=TIMEOUT_MS):
        pid, epoch = self.producer(tid, timeout)
        call = self.add(pid, epoch, partitions, tid)
        self.flush()
        assert all(r.error_code == 0 for t in call.ok().results for r in t.results)
        return pid, epoch


def partition_errors(response):
    """{(topic, partition): error code} of an AddPartitionsToTxnResponse."""
    return {(t.name, r.partition_index): r.error_code for t in response.results for r in t.results}


def deadline_by_scan(coord):
    """coord.next_deadline() computed as it was before the deadline heaps: by looking at
    every transactional id and every marker round (the tests' brute-force reference, and
    perf/txn_deadlines.py's "before")."""
    config = coord.config

    def not_before(due, last_scan, every):      # the next scan after `last_scan` finds it
        return due if last_scan is None else max(due, last_scan + every)
    dues = [t for rnd in coord.markers.rounds.values() for t in rnd.retry_at.values()]
    dues += [rnd.complete_retry_at for rnd in coord.markers.rounds.values() if rnd.complete_retry_at is not None]
    open_due = [t.start_ms + t.timeout_ms + 1 for t in coord.txns.values()
                if t.state is TxnState.ONGOING and t.pending is None]
    if open_due:
        dues.append(not_before(min(open_due), coord._last_abort_scan,
                               config.abort_timed_out_transaction_cleanup_interval_ms))
    idle_due = [t.update_ms + config.id_expiration_ms for t in coord.txns.values()
                if t.state in EXPIRABLE_STATES and t.pending is None]
    if idle_due:
        dues.append(not_before(min(idle_due), coord._last_expiry_scan,
                               config.remove_expired_transaction_cleanup_interval_ms))
    return min(dues) if dues else None


def due_by_scan(coord, now):
    """The ids a tick at `now` must abort (timed out) and expire, by looking at every id:
    ({ids}, {ids}); an empty set for a kind whose cleanup interval has not passed."""
    config = coord.config

    def allowed(last, every):
        return last is None or now >= last + every
    timed_out = {tid for tid, t in coord.txns.items()
                 if t.state is TxnState.ONGOING and t.pending is None and t.start_ms + t.timeout_ms < now} \
        if allowed(coord._last_abort_scan, config.abort_timed_out_transaction_cleanup_interval_ms) else set()
    idle = {tid for tid, t in coord.txns.items() if t.state in EXPIRABLE_STATES and t.pending is None
            and t.update_ms <= now - config.id_expiration_ms} \
        if allowed(coord._last_expiry_scan, config.remove_expired_transaction_cleanup_interval_ms) else set()
    return timed_out, idle
