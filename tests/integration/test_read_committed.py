"""isolation.level against a real broker, with transactions run by raw requests
(support/txn_client.py) and transactional batches written into the leader's ring
(support/raw_producer.py): read_committed stops at the last stable offset, never returns
an aborted record, and neither isolation level returns a control record."""
import os
import signal

import pytest
from support.broker import BrokerProcess, consume_n, wait_until
from support.raw_producer import RawProducer
from support.txn_client import begin, call, create_topic, describe, leader_pid

from odradek.client import OFFSET_BEGINNING, Consumer, TopicPartition
from odradek.client.errors import InvalidConfig, InvalidTxnState
from odradek.client.protocol import ControlClient, messages as m

END_WAIT_S = 15


@pytest.fixture
def client(broker):
    with ControlClient(broker.socket_path, timeout=10) as c:
        yield c


def end_txn(client, tid, producer, commit):
    call(client, m.EndTxnRequest(transactional_id=tid, producer_id=producer.producer_id,
                                 producer_epoch=producer.producer_epoch, committed=commit))
    state = "CompleteCommit" if commit else "CompleteAbort"
    wait_until(lambda: describe(client, tid).transaction_state == state, END_WAIT_S, what=f"{tid} {state}")


def latest(client, topic, partition, committed):
    level = m.IsolationLevel.READ_COMMITTED if committed else m.IsolationLevel.READ_UNCOMMITTED
    res, _ = client.call(m.ListOffsetsRequest(isolation_level=level, topics=[m.ListOffsetsTopic(
        name=topic, partitions=[m.ListOffsetsPartition(partition_index=partition, timestamp=m.LATEST_TIMESTAMP)])]))
    return res.topics[0].partitions[0].offset


def consumer(broker, level, topic="t", **config):
    c = Consumer({"socket": broker.socket_path, "isolation.level": level, "fetch.max.wait.ms": 10, **config})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return c


def values(records):
    return [bytes(r.value()) for r in records]


def drain(c, timeout=0.3):
    """Everything the consumer returns until it has nothing for `timeout` seconds."""
    out = []
    for _ in range(1000):
        got = c.consume(100, timeout)
        if not got:
            return out
        out += got
    raise AssertionError("the consumer never ran dry")


def test_read_committed_stops_at_an_open_transaction_and_resumes_after_its_commit(broker, client):
    create_topic(client, "t", 1)
    with RawProducer(client, "t", 0) as plain:
        plain.send([b"before"])
        txn = begin(client, "app", [("t", 0)])
        with RawProducer(client, "t", 0, txn.producer_id, txn.producer_epoch) as tp:
            first = tp.send([b"t1", b"t2"], transactional=True)
            plain.send([b"after-open"])             # above the LSO until the transaction ends
            assert latest(client, "t", 0, committed=True) == first
            assert latest(client, "t", 0, committed=False) == first + 3
            with consumer(broker, "read_committed") as rc, consumer(broker, "read_uncommitted") as ru:
                assert values(drain(rc)) == [b"before"]
                assert rc.position([TopicPartition("t", 0)])[0].offset == first
                at = [TopicPartition("t", 0, 1_700_000_000_000)]     # every record's time (make_batch)
                assert rc.offsets_for_times(at)[0].offset == 0
                assert ru.offsets_for_times([TopicPartition("t", 0, 1_700_000_000_001)])[0].offset == first + 1   # t2
                assert rc.offsets_for_times([TopicPartition("t", 0, 1_700_000_000_001)])[0].offset == -1
                assert values(consume_n(ru, 4)) == [b"before", b"t1", b"t2", b"after-open"]
                tp.send([b"t3"], transactional=True)
                end_txn(client, "app", txn, commit=True)
                assert values(consume_n(rc, 4)) == [b"t1", b"t2", b"after-open", b"t3"]
                assert values(consume_n(ru, 1)) == [b"t3"]          # the marker is not a record
                assert drain(rc) == [] and drain(ru) == []
                end = latest(client, "t", 0, committed=False)
                assert latest(client, "t", 0, committed=True) == end
                for c in (rc, ru):                                  # past the marker: nothing left to read
                    assert c.position([TopicPartition("t", 0)])[0].offset == end


@pytest.mark.parametrize("zero_copy", [False, True])
def test_interleaved_transactions_one_committed_one_aborted_across_segment_rolls(tmp_path, zero_copy):
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            c.call(m.CreateTopicsRequest(topics=[m.CreatableTopic(
                name="t", num_partitions=1, replication_factor=1,
                configs={"segment.bytes": "1024"})]))
            good, bad = begin(c, "good", [("t", 0)]), begin(c, "bad", [("t", 0)])
            with RawProducer(c, "t", 0, good.producer_id, good.producer_epoch) as g, \
                    RawProducer(c, "t", 0, bad.producer_id, bad.producer_epoch) as x, \
                    RawProducer(c, "t", 0) as plain:
                for i in range(20):                     # ~100 bytes a batch: many segments
                    g.send([b"g%d" % i], transactional=True)
                    x.send([b"x%d" % i], transactional=True)
                    plain.send([b"p%d" % i])
                end_txn(c, "bad", bad, commit=False)
                end_txn(c, "good", good, commit=True)
            status, _ = c.call(m.StatusRequest(topics=["t"]))
            assert status.partitions[0].segments > 3
            assert status.partitions[0].last_stable_offset == status.partitions[0].high_watermark
            expected = [v for i in range(20) for v in (b"g%d" % i, b"p%d" % i)]
            with consumer(b, "read_committed", **{"zero.copy": zero_copy}) as rc:
                got = consume_n(rc, len(expected))
                assert values(got) == expected
                assert drain(rc) == []
                assert rc.position([TopicPartition("t", 0)])[0].offset == status.partitions[0].high_watermark
            with consumer(b, "read_uncommitted", **{"zero.copy": zero_copy}) as ru:
                assert len(drain(ru)) == 60             # every data record, no marker
        assert b.stop() == 0
    finally:
        b.kill()


def test_an_unknown_isolation_level_is_a_config_error(broker):
    with pytest.raises(InvalidConfig, match="isolation.level"):
        Consumer({"socket": broker.socket_path, "isolation.level": "read_some"})


def test_a_leader_killed_after_an_abort_marker_with_its_index_entry_lost_still_hides_the_aborted(tmp_path):
    """SIGKILL the leader as if between the ABORT marker's append and its .txnindex entry
    (the entry is gone): its successor rebuilds the entry from the log, and a
    read_committed consumer (attached before the kill) still skips the aborted records."""
    b = BrokerProcess(tmp_path / "data").start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 1)
            bad = begin(c, "bad", [("t", 0)])
            with RawProducer(c, "t", 0, bad.producer_id, bad.producer_epoch) as x, RawProducer(c, "t", 0) as plain:
                plain.send([b"p0"])
                x.send([b"x0", b"x1"], transactional=True)
                plain.send([b"p1"])
            end_txn(c, "bad", bad, commit=False)
            with consumer(b, "read_committed") as rc:
                assert values(consume_n(rc, 2)) == [b"p0", b"p1"]
                indexes = list((tmp_path / "data").glob("t-0/*.txnindex"))
                assert indexes and all(p.stat().st_size == 34 for p in indexes[-1:])
                for p in indexes:
                    p.unlink()
                b.workers()                                      # the test's record of them, to reap
                old = leader_pid(c, "t", 0)
                os.kill(old, signal.SIGKILL)
                wait_until(lambda: leader_pid(c, "t", 0) not in (None, old), 15, what="a new leader")
                assert [p.stat().st_size for p in (tmp_path / "data").glob("t-0/*.txnindex")] == [34]
                with RawProducer(c, "t", 0) as plain:
                    plain.send([b"p2"])
                rc.seek(TopicPartition("t", 0, OFFSET_BEGINNING))   # read it all again, from the new leader
                assert values(consume_n(rc, 3)) == [b"p0", b"p1", b"p2"]
                assert drain(rc) == []
        assert b.stop() == 0
    finally:
        b.kill()


def test_compaction_waits_for_an_open_transaction_and_then_drops_only_its_aborted_records(tmp_path):
    """The leader cleans below the last stable offset: an open transaction's record of key
    a is not mapped while it is undecided (it would hide the committed a=v1, which its
    abort would then leave with no value at all); once aborted, it goes, a=v1 stays."""
    b = BrokerProcess(tmp_path / "data", args=["--override", "log.cleaner.backoff.ms=100"]).start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            c.call(m.CreateTopicsRequest(topics=[m.CreatableTopic(
                name="table", num_partitions=1, replication_factor=1,
                configs={"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"})]))
            with RawProducer(c, "table", 0) as plain:
                for i in range(60):                                     # many segments of k0..k4
                    plain.send([b"v%d" % i], keys=[b"k%d" % (i % 5)])
                plain.send([b"v1"], keys=[b"a"])
                bad = begin(c, "bad", [("table", 0)])
                with RawProducer(c, "table", 0, bad.producer_id, bad.producer_epoch) as x:
                    x.send([b"aborted"], transactional=True, keys=[b"a"])
                for i in range(60, 120):
                    plain.send([b"v%d" % i], keys=[b"k%d" % (i % 5)])

            def everything(level):
                with consumer(b, level, "table") as rc:
                    return drain(rc, 0.5)

            def compacted_below_the_open_transaction():
                recs = everything("read_uncommitted")
                return len([r for r in recs if r.key().startswith(b"k") and int(r.value()[1:]) < 60]) < 20 and recs
            recs = wait_until(compacted_below_the_open_transaction, 30, interval=0.2, what="a pass while it is open")
            assert [r.value() for r in recs if r.key() == b"a"] == [b"v1", b"aborted"]   # at and above the LSO
            end_txn(c, "bad", bad, commit=False)

            def aborted_gone():
                recs = everything("read_uncommitted")
                return all(r.value() != b"aborted" for r in recs) and recs
            recs = wait_until(aborted_gone, 30, interval=0.2, what="a pass after the abort")
            assert [r.value() for r in recs if r.key() == b"a"] == [b"v1"]

            def both_levels_agree():     # the cleaner may take a superseded record between two reads
                committed = values(everything("read_committed"))
                return committed == values(everything("read_uncommitted")) and committed
            wait_until(both_levels_agree, 30, interval=0.2, what="read_committed to read what read_uncommitted reads")
            latest = {bytes(r.key()): bytes(r.value()) for r in recs}
            assert latest == {b"a": b"v1", **{b"k%d" % k: b"v%d" % (115 + k) for k in range(5)}}
        assert b.stop() == 0
    finally:
        b.kill()


def test_a_producer_inside_a_transaction_may_write_only_transactionally(broker, client):
    """Kafka's rule (ProducerAppendInfo): while a producer's transaction is open on a
    partition, a non-transactional batch of that producer there is refused with
    INVALID_TXN_STATE and written nowhere (an abort could not take it back); after the
    marker it may write plainly again."""
    create_topic(client, "t", 1)
    p = begin(client, "app", [("t", 0)])
    with RawProducer(client, "t", 0, p.producer_id, p.producer_epoch) as x:
        x.send([b"in-txn"], transactional=True)
        with pytest.raises(InvalidTxnState):
            x.send([b"plain"])
        end_txn(client, "app", p, commit=True)
        x.send([b"after"])
    with consumer(broker, "read_uncommitted") as c:
        assert values(consume_n(c, 2)) == [b"in-txn", b"after"]
        assert drain(c) == []
