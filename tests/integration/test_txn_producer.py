"""The transactional Producer against a real broker: markers after commit and abort,
offsets committed only with the transaction, fencing, a killed producer's transaction
aborted, and misuse refused with nothing changed."""
import mmap
import os
import subprocess
import sys

import pytest
from support.broker import BrokerProcess, consume_n, wait_until
from support.txn_client import create_topic, describe, fetch_offsets

from odradek.client import Admin, Consumer, GroupMetadata, IllegalState, KafkaError, Producer, TopicPartition, TransactionAborted
from odradek.client.errors import (IllegalGeneration, InvalidConfig, InvalidProducerEpoch, InvalidTransactionTimeout, NotEnoughReplicas,
                                   ProducerFenced)
from odradek.client.protocol import ControlClient
from odradek.client.records import ControlRecordType, RecordBatch, iter_batches

WAIT_S = 15
CHILD = os.path.join(os.path.dirname(__file__), "txn_producer_child.py")


@pytest.fixture
def client(broker):
    with ControlClient(broker.socket_path, timeout=10) as c:
        create_topic(c, "t", 2)
        yield c


@pytest.fixture
def producers(broker):
    made = []

    def make(tid="app", **config):
        made.append(Producer({"socket": broker.socket_path, "transactional.id": tid, "linger.ms": 1, **config}))
        return made[-1]
    yield make
    for p in made:
        p.close(5)


def log_batches(broker, topic, partition):
    """Every RecordBatch in the partition's first segment, read from the file (mapped: the
    leader preallocates it, and the batches end at the first zero-filled length)."""
    path = os.path.join(broker.data_dir, f"{topic}-{partition}", f"{0:020d}.log")
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return []
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as data:
            return [RecordBatch(bytes(b.buffer)) for _, b in iter_batches(data)]


def ends_with_marker(broker, topic, partition, marker):
    batches = log_batches(broker, topic, partition)
    return batches if batches and batches[-1].is_control and batches[-1].end_txn_marker().control_type is marker else None


def read_values(broker, topic, partition, n):
    c = Consumer({"socket": broker.socket_path})
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        return [r.value() for r in consume_n(c, n, WAIT_S)]
    finally:
        c.close()


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_commit_writes_transactional_batches_then_a_commit_marker_on_each_partition(broker, client, producers,
                                                                                    compression):
    p = producers(**{"compression.type": compression})
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    for i in range(10):
        p.produce("t", b"v%d" % i, partition=i % 2)
    p.commit_transaction(WAIT_S)
    for partition in (0, 1):
        batches = wait_until(lambda: ends_with_marker(broker, "t", partition, ControlRecordType.COMMIT), WAIT_S,
                             what=f"t-{partition}'s COMMIT marker")
        data = batches[:-1]
        assert data and all(b.is_transactional and not b.is_control for b in data)
        assert {(b.producer_id, b.producer_epoch) for b in batches} == {(data[0].producer_id, 0)}
        assert batches[-1].is_transactional
        assert read_values(broker, "t", partition, 5) == [b"v%d" % i for i in range(partition, 10, 2)]
    # the coordinator writes CompleteCommit once every marker is answered: a moment later
    wait_until(lambda: describe(client, "app").transaction_state == "CompleteCommit", WAIT_S,
               what="the coordinator's CompleteCommit")


def test_abort_writes_an_abort_marker_after_the_records_sent_and_drops_those_not_sent(broker, client, producers):
    p = producers(**{"linger.ms": 60_000})
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    p.produce("t", b"sent", partition=0)
    assert p.flush(WAIT_S) == 0            # in the log, part of the transaction
    reports = []
    p.produce("t", b"never", partition=0, on_delivery=lambda err, rec: reports.append((err, rec.value(), rec)))
    p.abort_transaction(WAIT_S)
    p.poll(0)
    assert len(reports) == 1 and isinstance(reports[0][0].exception, TransactionAborted) and reports[0][1] == b"never"
    failed = reports[0][2]                 # confluent-kafka's shape: the record's error() is err's KafkaError
    assert failed.error() is reports[0][0] and failed.error().code() == KafkaError._PURGE_QUEUE and failed.offset() == -1
    batches = wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.ABORT), WAIT_S,
                         what="t-0's ABORT marker")
    assert len(batches) == 2 and batches[0].is_transactional
    assert [r.value for r in batches[0].records()] == [b"sent"]
    wait_until(lambda: describe(client, "app").transaction_state == "CompleteAbort", WAIT_S,
               what="the coordinator's CompleteAbort")
    p.begin_transaction()                   # the producer goes on with a new transaction
    p.produce("t", b"next", partition=0)
    p.commit_transaction(WAIT_S)
    wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.COMMIT), WAIT_S, what="the COMMIT")


def test_offsets_sent_to_the_transaction_are_committed_only_when_it_commits(broker, client, producers):
    group = GroupMetadata("g", -1, "", None)     # a standalone committer (an Empty group)
    p = producers()
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition("t", 0, 5), TopicPartition("t", 1, 6)], group, WAIT_S)
    p.abort_transaction(WAIT_S)
    wait_until(lambda: describe(client, "app").transaction_state == "CompleteAbort", WAIT_S, what="the abort")
    nothing = fetch_offsets(client, "g", "t", [0, 1])
    assert {tp: offset for tp, (offset, _) in nothing.items()} == {("t", 0): -1, ("t", 1): -1}
    p.begin_transaction()
    p.produce("t", b"out", partition=1)
    p.send_offsets_to_transaction([TopicPartition("t", 0, 7)], group, WAIT_S)
    assert fetch_offsets(client, "g", "t", [0])[("t", 0)][0] == -1     # not before the commit
    p.commit_transaction(WAIT_S)
    wait_until(lambda: fetch_offsets(client, "g", "t", [0])[("t", 0)][0] == 7, WAIT_S, what="the committed offset")
    assert fetch_offsets(client, "g", "t", [1])[("t", 1)][0] == -1


def _fenced(producers, value):
    """(first, second): `first` wrote `value` to t-0 in a transaction, then `second`, a new
    instance of its transactional.id, fenced it (aborting that transaction)."""
    first = producers()
    first.init_transactions(WAIT_S)
    first.begin_transaction()
    first.produce("t", value, partition=0)
    assert first.flush(WAIT_S) == 0
    second = producers()
    second.init_transactions(WAIT_S)        # aborts the first's transaction, bumps the epoch
    return first, second


def test_a_second_instance_fences_the_first_whose_next_call_is_fatal(broker, client, producers):
    first, second = _fenced(producers, b"zombie")
    wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.ABORT), WAIT_S, what="the abort")
    with pytest.raises((ProducerFenced, InvalidProducerEpoch)) as e:
        first.commit_transaction(WAIT_S)
    assert e.value.fatal and not e.value.retriable and not e.value.txn_requires_abort
    with pytest.raises(type(e.value)) as again:
        first.begin_transaction()
    assert again.value is e.value
    second.begin_transaction()
    second.produce("t", b"alive", partition=0)
    second.commit_transaction(WAIT_S)
    batches = wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.COMMIT), WAIT_S, what="commit")
    assert [r.value for b in batches if not b.is_control for r in b.records()] == [b"zombie", b"alive"]


def test_a_zombies_records_after_the_fence_are_refused_and_fatal(broker, client, producers):
    first, _ = _fenced(producers, b"before")
    reports = []
    first.produce("t", b"after", partition=0, on_delivery=lambda err, rec: reports.append(err))
    first.flush(WAIT_S)
    assert len(reports) == 1 and isinstance(reports[0].exception, InvalidProducerEpoch) and reports[0].fatal()
    with pytest.raises(InvalidProducerEpoch):
        first.produce("t", b"again", partition=0)


def _child(broker, tid, timeout_ms):
    proc = subprocess.Popen([sys.executable, CHILD, broker.socket_path, tid, str(timeout_ms), "3"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def _kill(proc):
    proc.kill()
    proc.wait(WAIT_S)
    proc.stdin.close()
    proc.stdout.close()


def test_a_killed_producers_transaction_is_aborted_at_its_timeout(tmp_path):
    b = BrokerProcess(tmp_path / "data", args=[
        "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=100"]).start()
    try:
        with ControlClient(b.socket_path, timeout=10) as c:
            create_topic(c, "t", 1)
            proc = _child(b, "app", 1000)
            _kill(proc)
            assert describe(c, "app").transaction_state == "Ongoing"
            batches = wait_until(lambda: ends_with_marker(b, "t", 0, ControlRecordType.ABORT), WAIT_S,
                                 what="the ABORT marker of the timed-out transaction")
            assert [r.value for r in batches[0].records()] == [b"doomed-0", b"doomed-1", b"doomed-2"]
        assert b.stop() == 0
    finally:
        b.kill()


def test_a_new_instance_aborts_a_killed_producers_transaction_at_once(broker, client, producers):
    proc = _child(broker, "app", 600_000)
    try:
        _kill(proc)
        p = producers()
        p.init_transactions(WAIT_S)     # long before the ten minutes of its timeout
        wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.ABORT), WAIT_S, what="the abort")
        assert describe(client, "app").transaction_state == "Empty"
    finally:
        if proc.poll() is None:
            _kill(proc)


def test_calls_out_of_order_raise_illegal_state_and_change_nothing(broker, client, producers):
    p = producers()
    with pytest.raises(IllegalState, match="init_transactions"):
        p.produce("t", b"v", partition=0)
    with pytest.raises(IllegalState, match="init_transactions"):
        p.begin_transaction()
    p.init_transactions(WAIT_S)
    with pytest.raises(IllegalState, match="init_transactions"):
        p.init_transactions(WAIT_S)
    with pytest.raises(IllegalState, match="begin_transaction"):
        p.send_offsets_to_transaction([TopicPartition("t", 0, 1)], GroupMetadata("g", -1, "", None))
    with pytest.raises(IllegalState, match="begin_transaction"):
        p.commit_transaction(WAIT_S)
    with pytest.raises(IllegalState, match="begin_transaction"):
        p.abort_transaction(WAIT_S)
    with pytest.raises(IllegalState, match="begin_transaction"):
        p.produce("t", b"v", partition=0)
    p.begin_transaction()
    with pytest.raises(IllegalState, match="a transaction is open"):
        p.begin_transaction()
    with pytest.raises(TypeError, match="GroupMetadata"):
        p.send_offsets_to_transaction([TopicPartition("t", 0, 1)], None)
    with pytest.raises(TypeError, match="offset"):
        p.send_offsets_to_transaction([TopicPartition("t", 0, "5")], GroupMetadata("g", -1, "", None))
    # no position yet (OFFSET_INVALID): skipped, as librdkafka does; nothing reaches the coordinator
    p.send_offsets_to_transaction([TopicPartition("t", 0, -1001)], GroupMetadata("g", -1, "", None))
    assert describe(client, "app").transaction_state == "Empty"     # nothing reached the coordinator
    assert log_batches(broker, "t", 0) == [] and len(p) == 0
    assert fetch_offsets(client, "g", "t", [0])[("t", 0)][0] == -1
    p.commit_transaction(WAIT_S)             # an empty transaction: nothing to end at the coordinator
    assert describe(client, "app").transaction_state == "Empty"


def test_transactional_calls_on_a_plain_producer_are_illegal_state(broker):
    with Producer({"socket": broker.socket_path}) as p:
        for call in (p.init_transactions, p.begin_transaction, p.commit_transaction, p.abort_transaction):
            with pytest.raises(IllegalState, match="transactional.id"):
                call()


@pytest.mark.parametrize("config, message", [
    ({"enable.idempotence": False}, "enable.idempotence"),
    ({"acks": 1}, "acks=all"),
    ({"transaction.timeout.ms": 0}, "transaction.timeout.ms"),
])
def test_a_config_contradicting_transactional_id_is_refused_at_construction(config, message):
    with pytest.raises(InvalidConfig, match=message):
        Producer({"socket": "/nonexistent/odradek.sock", "transactional.id": "app", **config})


def test_transactional_id_implies_idempotence_and_acks_all(broker, producers):
    p = producers(acks="all")
    assert p.config["enable.idempotence"] is True and p.config["acks"] == -1
    with pytest.raises(InvalidConfig, match="empty"):
        Producer({"socket": broker.socket_path, "transactional.id": ""})


def test_a_transaction_timeout_above_the_brokers_maximum_fails_init_as_fatal(broker, producers):
    p = producers(**{"transaction.timeout.ms": 10_000_000})
    with pytest.raises(InvalidTransactionTimeout) as e:
        p.init_transactions(WAIT_S)
    assert e.value.fatal
    with pytest.raises(InvalidTransactionTimeout):
        p.begin_transaction()


def test_a_refused_batch_makes_the_transaction_abortable_and_abort_recovers(broker, client, producers):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("strict", 1, config={"min.insync.replicas": "2"})   # above RF 1: acks=all refused
    p = producers()
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    p.produce("t", b"fine", partition=0)
    assert p.flush(WAIT_S) == 0
    reports = []
    p.produce("strict", b"refused", partition=0, on_delivery=lambda err, rec: reports.append(err))
    with pytest.raises(NotEnoughReplicas) as e:
        p.commit_transaction(WAIT_S)
    assert e.value.txn_requires_abort and not e.value.fatal and not e.value.retriable
    assert len(reports) == 1 and reports[0].exception is e.value
    with pytest.raises(NotEnoughReplicas):
        p.produce("t", b"more", partition=0)          # nothing more until the abort
    p.abort_transaction(WAIT_S)
    batches = wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.ABORT), WAIT_S, what="abort")
    assert [r.value for b in batches if not b.is_control for r in b.records()] == [b"fine"]
    p.begin_transaction()                              # usable again
    p.produce("t", b"after", partition=0)
    p.commit_transaction(WAIT_S)
    wait_until(lambda: ends_with_marker(broker, "t", 0, ControlRecordType.COMMIT), WAIT_S, what="the commit")


def test_a_group_members_positions_commit_with_the_transaction_and_a_stale_generation_is_abortable(
        broker, client, producers):
    """consume-transform-produce's commit step, with a real group member's metadata."""
    seed = producers("seed")
    seed.init_transactions(WAIT_S)
    seed.begin_transaction()
    for i in range(4):
        seed.produce("t", b"in-%d" % i, partition=0)
    seed.commit_transaction(WAIT_S)
    c = Consumer({"socket": broker.socket_path, "group.id": "g", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe(["t"])
        got = consume_n(c, 4, WAIT_S)
        meta = c.group_metadata()
        assert meta.generation_id >= 1 and meta.member_id
        p = producers()
        p.init_transactions(WAIT_S)
        p.begin_transaction()
        p.produce("t", b"out", partition=1)
        positions = c.position(c.assignment())
        # past the last record and the seed's COMMIT marker after it
        (next_t0,) = [tp.offset for tp in positions if tp.partition == 0]
        assert next_t0 == got[-1].offset() + 2
        p.send_offsets_to_transaction(positions, meta, WAIT_S)
        p.commit_transaction(WAIT_S)
        wait_until(lambda: fetch_offsets(client, "g", "t", [0])[("t", 0)][0] == next_t0, WAIT_S,
                   what="the group's offset committed with the transaction")
        p.begin_transaction()
        with pytest.raises(IllegalGeneration) as e:
            p.send_offsets_to_transaction([TopicPartition("t", 0, 1)], meta._replace(generation_id=99), WAIT_S)
        assert e.value.txn_requires_abort
        p.abort_transaction(WAIT_S)
        assert fetch_offsets(client, "g", "t", [0])[("t", 0)][0] == next_t0
    finally:
        c.close()
