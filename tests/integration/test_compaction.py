"""Log compaction in a running broker: a compacted topic keeps the latest record of
every key at its original offset, consumers reading through it see consistent bytes,
and committed offsets (__consumer_offsets, itself compacted) stay readable."""
import os
import signal
import time

import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from support.broker import BrokerProcess, wait_until


@pytest.fixture
def fast_cleaner_broker(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=["--override", "log.cleaner.backoff.ms=100"]).start()
    yield b
    try:
        assert b.stop() == 0, b.stderr()
    finally:
        b.kill()


def read_all(sock, topic, timeout=10):
    """Every record of partition 0, read up to its log end offset as it is now (not up to
    the first quiet moment, which comes early on a loaded machine)."""
    with Admin(sock) as admin:
        end, _ = admin.list_offsets(topic, 0)
    return read_to(Consumer({"socket": sock}), topic, OFFSET_BEGINNING, end, timeout, close=True)


def read_to(c, topic, start, end, timeout=10, close=False):
    """Records of partition 0 from `start` until the consumer's position reaches `end`."""
    tp = TopicPartition(topic, 0)
    out = []
    try:
        c.assign([TopicPartition(topic, 0, start)])
        deadline = time.monotonic() + timeout
        while c.position([tp])[0].offset < end:
            assert time.monotonic() < deadline, f"read {len(out)} records of {topic} in {timeout}s, " \
                                                f"position {c.position([tp])[0].offset}, not up to {end}"
            out += c.consume(1000, 0.5)
    finally:
        if close:
            c.close()
    return out


def test_a_compacted_topic_keeps_the_latest_value_of_every_key(fast_cleaner_broker):
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("table", 1, config={"cleanup.policy": "compact", "segment.bytes": "4096",
                                               "min.cleanable.dirty.ratio": "0.01"})
    latest = {}
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p:
        for i in range(600):
            key = b"k%d" % (i % 20)
            p.produce("table", b"v%d" % i, key=key,
                      on_delivery=lambda err, rec: latest.__setitem__(rec.key(), (rec.offset(), rec.value())))
        assert p.flush(20) == 0

    def compacted():
        recs = read_all(b.socket_path, "table")
        return len(recs) < 300 and recs
    recs = wait_until(compacted, 30, interval=0.2, what="the cleaner to compact the topic")
    by_key = {}
    for r in recs:
        by_key[r.key()] = (r.offset(), r.value())
    assert by_key == latest                      # every key's latest value, at its offset
    offsets = [r.offset() for r in recs]
    assert offsets == sorted(set(offsets))


def test_a_consumer_that_read_before_compaction_reads_the_new_files_after(fast_cleaner_broker):
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("table2", 1, config={"cleanup.policy": "compact", "segment.bytes": "4096",
                                                "min.cleanable.dirty.ratio": "0.01"})
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p, \
            Consumer({"socket": b.socket_path}) as c:
        c.assign([TopicPartition("table2", 0, OFFSET_BEGINNING)])
        first = []
        for i in range(300):
            # each record read while its segment is still the active one, which the cleaner
            # never touches: the consumer maps every segment as it was before compaction
            p.produce("table2", b"a%d" % i, key=b"k%d" % (i % 10))
            assert p.flush(10) == 0
            first += c.consume(1, 10)
        assert [r.offset() for r in first] == list(range(300))
        for i in range(300, 600):
            p.produce("table2", b"b%d" % i, key=b"k%d" % (i % 10))
        assert p.flush(20) == 0

        def compacted():
            return len(read_all(b.socket_path, "table2")) < 100
        wait_until(compacted, 30, interval=0.2, what="compaction")
        again = read_to(c, "table2", 0, 600)     # replay through files swapped meanwhile
    assert len(again) < 100
    offsets = [r.offset() for r in again]
    assert offsets == sorted(set(offsets))
    assert all(r.key() == b"k%d" % (r.offset() % 10) and r.value() in (b"a%d" % r.offset(), b"b%d" % r.offset())
               for r in again)                    # every record's own bytes
    latest = {r.key(): r.value() for r in again}
    assert latest == {b"k%d" % k: b"b%d" % (590 + k) for k in range(10)}


class FoundBeforeTheSwap:
    """A consumer's partition state whose first find() answers with a descriptor found
    earlier: it pins the interleaving 'descriptor read, then the segment swapped and the
    window emptied, then the segment mapped'. Everything else is the real state."""

    def __init__(self, state, found):
        self._state, self._found = state, found

    def find(self, offset, *args):
        if self._found is not None:
            found, self._found = self._found, None
            return found
        return self._state.find(offset, *args)

    def __getattr__(self, name):
        return getattr(self._state, name)


def test_a_batch_found_just_before_its_segment_was_swapped_is_read_from_where_it_now_is(fast_cleaner_broker):
    """Every batch is the same size and compaction drops the first: in the new file, the
    old position of offset 10 holds offset 11. A consumer that found offset 10's
    descriptor before the swap and maps the segment after it must not read offset 11
    there (skipping 10), but look again."""
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("table3", 1, config={"cleanup.policy": "compact", "segment.bytes": "4096",
                                                "min.cleanable.dirty.ratio": "0.01"})
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p, \
            Consumer({"socket": b.socket_path}) as c:
        def produce(i, key):
            p.produce("table3", b"v%04d" % i, key=key)     # keys and values of one length
            assert p.flush(10) == 0
        produce(0, b"k-dup")
        for i in range(1, 20):
            produce(i, b"k%04d" % i)
        c.assign([TopicPartition("table3", 0, 10)])
        part = c._parts[("table3", 0)]
        found = part.state.find(10)              # still in the first (active) segment
        assert (found.base_offset, found.segment_base, found.position) == (10, 0, 10 * found.size)
        produce(20, b"k-dup")                    # offset 0 is now compactable
        for i in range(21, 60):                  # rolls the first segment
            produce(i, b"k%04d" % i)
        wait_until(lambda: read_all(b.socket_path, "table3")[0].offset() == 1, 30, interval=0.2,
                   what="the cleaner to drop offset 0")
        part.state = FoundBeforeTheSwap(part.state, found)
        got = read_to(c, "table3", 10, 60)
    assert [(r.offset(), r.value()) for r in got] == [(i, b"v%04d" % i) for i in range(10, 60)]


def test_a_compacted_topic_refuses_records_without_a_key(fast_cleaner_broker):
    from odradek.client.errors import InvalidRecord
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("keyed-only", 1, config={"cleanup.policy": "compact"})
    reports = []
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p:   # idempotent: sequences 0, 1, 2
        for key, value in ((b"k", b"v1"), (None, b"no key"), (b"k", b"v2")):
            p.produce("keyed-only", value, key=key, on_delivery=lambda err, rec: reports.append(err))
            p.flush(10)
    # the refused batch used up its sequence: the next one is in order, not OUT_OF_ORDER
    assert reports[0] is None and isinstance(reports[1].exception, InvalidRecord) and reports[2] is None
    recs = read_all(b.socket_path, "keyed-only")
    assert [(r.key(), r.value()) for r in recs] == [(b"k", b"v1"), (b"k", b"v2")]


def test_a_producer_carries_on_after_a_restart_that_follows_a_refused_batch(fast_cleaner_broker):
    """The refused batch used up sequence 1, which the log does not hold: the state must
    come back from the producer-state snapshot written at close, not from the log alone."""
    from odradek.client.errors import InvalidRecord
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("keyed-restart", 1, config={"cleanup.policy": "compact"})
    reports = []
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p:   # idempotent: sequences 0, 1, 2
        for key, value in ((b"k", b"v1"), (None, b"no key")):
            p.produce("keyed-restart", value, key=key, on_delivery=lambda err, rec: reports.append(err))
            p.flush(10)
        assert b.stop() == 0, b.stderr()
        b.start()
        p.produce("keyed-restart", b"v2", key=b"k", on_delivery=lambda err, rec: reports.append(err))
        p.flush(30)
    assert reports[0] is None and isinstance(reports[1].exception, InvalidRecord) and reports[2] is None, reports
    recs = read_all(b.socket_path, "keyed-restart")
    assert [(r.key(), r.value()) for r in recs] == [(b"k", b"v1"), (b"k", b"v2")]


def test_a_producer_carries_on_after_its_worker_is_killed_right_after_a_refusal(fast_cleaner_broker):
    from odradek.client.errors import InvalidRecord
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("keyed-kill", 1, config={"cleanup.policy": "compact"})
    reports = []
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p:
        for key, value in ((b"k", b"v1"), (None, b"no key")):
            p.produce("keyed-kill", value, key=key, on_delivery=lambda err, rec: reports.append(err))
            p.flush(10)
        with Admin(b.socket_path) as admin:
            pid = next(w.pid for w in admin.status(["keyed-kill"]).workers if w.topic == "keyed-kill")
        os.kill(pid, signal.SIGKILL)
        with Admin(b.socket_path) as admin:
            wait_until(lambda: next(w.pid for w in admin.status(["keyed-kill"]).workers
                                    if w.topic == "keyed-kill") not in (0, pid), 20, what="a new worker")
        p.produce("keyed-kill", b"v2", key=b"k", on_delivery=lambda err, rec: reports.append(err))
        p.flush(30)
    assert reports[0] is None and isinstance(reports[1].exception, InvalidRecord) and reports[2] is None, reports
    recs = read_all(b.socket_path, "keyed-kill")
    assert [(r.key(), r.value()) for r in recs] == [(b"k", b"v1"), (b"k", b"v2")]
