"""Log compaction in a running broker: a compacted topic keeps the latest record of
every key at its original offset, consumers reading through it see consistent bytes,
and committed offsets (__consumer_offsets, itself compacted) stay readable."""
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
    out = []
    with Consumer({"socket": sock}) as c:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = c.consume(1000, 0.3)
            if not got:
                break
            out += got
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
                      on_delivery=lambda err, rec: latest.__setitem__(rec.key, (rec.offset, rec.value)))
        assert p.flush(20) == 0

    def compacted():
        recs = read_all(b.socket_path, "table")
        return len(recs) < 300 and recs
    recs = wait_until(compacted, 30, interval=0.2, what="the cleaner to compact the topic")
    by_key = {}
    for r in recs:
        by_key[r.key] = (r.offset, r.value)
    assert by_key == latest                      # every key's latest value, at its offset
    offsets = [r.offset for r in recs]
    assert offsets == sorted(set(offsets))


def test_a_consumer_that_read_before_compaction_reads_the_new_files_after(fast_cleaner_broker):
    b = fast_cleaner_broker
    with Admin(b.socket_path) as admin:
        admin.create_topic("table2", 1, config={"cleanup.policy": "compact", "segment.bytes": "4096",
                                                "min.cleanable.dirty.ratio": "0.01"})
    with Producer({"socket": b.socket_path, "linger.ms": 0}) as p, \
            Consumer({"socket": b.socket_path}) as c:
        c.assign([TopicPartition("table2", 0, OFFSET_BEGINNING)])
        for i in range(300):
            p.produce("table2", b"a%d" % i, key=b"k%d" % (i % 10))
        p.flush(20)
        first = []
        while len(first) < 300:                  # maps every segment as it is now
            got = c.consume(1000, 5)
            assert got
            first += got
        for i in range(300, 600):
            p.produce("table2", b"b%d" % i, key=b"k%d" % (i % 10))
        p.flush(20)

        def compacted():
            return len(read_all(b.socket_path, "table2")) < 100
        wait_until(compacted, 30, interval=0.2, what="compaction")
        c.seek(TopicPartition("table2", 0, 0))   # replay through files swapped meanwhile
        again = []
        for _ in range(100):
            got = c.consume(1000, 0.5)
            if not got:
                break
            again += got
    latest = {}
    for r in again:
        latest[r.key] = r.value
    assert latest == {b"k%d" % k: b"b%d" % (590 + k) for k in range(10)}
    assert all(r.value.startswith((b"a", b"b")) for r in again)


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
    assert reports[0] is None and isinstance(reports[1], InvalidRecord) and reports[2] is None
    recs = read_all(b.socket_path, "keyed-only")
    assert [(r.key, r.value) for r in recs] == [(b"k", b"v1"), (b"k", b"v2")]
