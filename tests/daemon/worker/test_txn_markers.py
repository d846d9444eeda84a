"""The leader worker's side of transactions (daemon/worker/txn_markers.py), in a real
worker process driven over its link as the broker drives it (support/worker.py):
transactional appends, WriteTxnMarker, the last stable offset in the partition state,
the marker in the log, the .txnindex, and a SIGKILL between a marker's append and its
answer."""
import os

import pytest
from support.records import make_batch, mapped_segment
from support.worker import WorkerProcess

from odradek.client.errors import InvalidProducerEpoch, InvalidRecord, TransactionCoordinatorFenced
from odradek.client.protocol import messages as m
from odradek.client.records import ControlRecordType, EndTxnMarker, iter_batches, marker_batch, read_header
from odradek.daemon.storage import filenames
from odradek.daemon.storage.txn_index import AbortedTxn, TransactionIndex
from odradek.daemon.worker.leader import LeaderWorker, socketpair
from odradek.daemon.worker.spec import WorkerSpec

TOPIC = "t"


@pytest.fixture
def workers():
    made = []

    def make(*args, **kwargs):
        w = WorkerProcess(*args, **kwargs)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()
    for shm in {id(w.shm): w.shm for w in made}.values():
        shm.close()


def append(worker, values, **producer):
    return worker.send(m.AppendRecordsRequest(topic=TOPIC, partition=0, records=make_batch(values, **producer)))


def txn(pid, seq, n=1):
    return dict(producer_id=pid, producer_epoch=0, base_sequence=seq, transactional=True), [b"x"] * n


def marker(worker, pid, committed, epoch=0, coordinator_epoch=5):
    return worker.send(m.WriteTxnMarkerRequest(topic=TOPIC, partition=0, producer_id=pid, producer_epoch=epoch,
                                               committed=committed, coordinator_epoch=coordinator_epoch))


def answered(worker, cids, timeout=10.0):
    out = []
    for cid in cids:
        r = worker.response(cid, timeout)
        assert r is not None, f"request {cid} not answered"
        out.append(r.result())
    return out


def txn_index(log_dir):
    """The entries of every segment's .txnindex, oldest segment first."""
    directory = os.path.join(str(log_dir), f"{TOPIC}-0")
    return [t for name in sorted(n for n in os.listdir(directory) if n.endswith(".txnindex"))
            for t in TransactionIndex(os.path.join(directory, name)).entries()]


def markers_in_log(log_dir):
    directory = os.path.join(str(log_dir), f"{TOPIC}-0")
    found = []
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".log")):   # every segment
        # one at a time: a segment is preallocated, its batches end at its first zero bytes
        with mapped_segment(os.path.join(directory, name)) as data:
            found += [(b.base_offset, b.producer_id, b.producer_epoch, b.end_txn_marker())
                      for _, b in iter_batches(data) if b.is_control]
    return found


def test_markers_end_transactions_move_the_lso_and_index_aborts(tmp_path, workers):
    w = workers(tmp_path, replicas=(0, 1)).start()   # a follower we play: the HW is ours to move
    args, values = txn(7, 0, 2)
    cids = [append(w, [b"plain"]), append(w, values, **args)]
    args, values = txn(8, 0)
    cids.append(append(w, values, **args))              # offsets 0, 1-2, 3
    w.follower_at(4)
    assert [r.base_offset for r in answered(w, cids)] == [0, 1, 3]
    w.wait_for(lambda: w.offsets() == (1, 4, 4), what="the LSO at producer 7's first offset")

    # ABORT 7: written at 4, not answered until the high watermark passes it; the LSO stays
    abort = marker(w, 7, committed=False)
    w.wait_for(lambda: w.offsets()[2] == 5, what="the marker appended")
    assert w.response(abort, 0.3) is None and w.offsets() == (1, 4, 5)
    assert txn_index(tmp_path) == [AbortedTxn(7, 1, 4, 3)]   # LSO at completion: 8's first offset
    w.follower_at(5)
    assert answered(w, [abort])[0].offset == 4
    w.wait_for(lambda: w.offsets() == (3, 5, 5), what="the LSO at producer 8's first offset")

    # a marker of a fenced epoch is refused and writes nothing; a bumped one ends nothing open
    bumped = marker(w, 7, committed=False, epoch=1)
    w.follower_at(6)
    assert answered(w, [bumped])[0].offset == 5
    with pytest.raises(InvalidProducerEpoch):
        answered(w, [marker(w, 7, committed=False, epoch=0)])
    assert w.offsets()[2] == 6

    commit = marker(w, 8, committed=True)
    w.follower_at(7)
    assert answered(w, [commit])[0].offset == 6
    w.wait_for(lambda: w.offsets() == (7, 7, 7), what="no transaction left: LSO = HW")
    assert w.stop() == 0
    assert markers_in_log(tmp_path) == [(4, 7, 0, EndTxnMarker(ControlRecordType.ABORT, 5)),
                                        (5, 7, 1, EndTxnMarker(ControlRecordType.ABORT, 5)),
                                        (6, 8, 0, EndTxnMarker(ControlRecordType.COMMIT, 5))]
    assert txn_index(tmp_path) == [AbortedTxn(7, 1, 4, 3)]


def test_a_leader_killed_between_a_marker_and_its_answer_recovers_transactions_and_the_index(tmp_path, workers):
    w = workers(tmp_path, replicas=(0, 1)).start()
    cids = []
    for pid, seq in ((9, 0), (10, 0)):
        args, values = txn(pid, seq, 2 if pid == 9 else 1)
        cids.append(append(w, values, **args))          # 9 at 0-1, 10 at 2
    w.follower_at(3)
    answered(w, cids)
    first = marker(w, 9, committed=False)
    w.wait_for(lambda: w.offsets()[2] == 4, what="the marker appended")
    assert w.response(first, 0.2) is None
    assert txn_index(tmp_path) == [AbortedTxn(9, 0, 3, 2)]
    w.kill()                                            # before the high watermark passes the marker
    path = filenames.txnindex_file(os.path.join(str(tmp_path), f"{TOPIC}-0"), 0)
    os.truncate(path, 20)                               # and the index entry torn by the crash

    again = workers(tmp_path, replicas=(0, 1), shm=w.shm).start()
    # HW 3 (the predecessor's); 9 decided above it and 10 open: the LSO is 9's first offset
    again.wait_for(lambda: again.offsets() == (0, 3, 4), what="the transactions rebuilt")
    assert txn_index(tmp_path) == [AbortedTxn(9, 0, 3, 2)]   # the cut entry written again
    again.follower_at(4)
    again.wait_for(lambda: again.offsets() == (2, 4, 4), what="9 decided: the LSO at 10's first offset")
    # the coordinator, never answered, retries: written again, it ends nothing
    retry = marker(again, 9, committed=False)
    again.follower_at(5)
    assert answered(again, [retry])[0].offset == 4
    assert txn_index(tmp_path) == [AbortedTxn(9, 0, 3, 2)]
    assert again.offsets() == (2, 5, 5)
    assert again.stop() == 0                            # a clean close snapshots the open transaction
    third = workers(tmp_path, replicas=(0, 1), shm=w.shm).start()
    third.wait_for(lambda: third.offsets() == (2, 5, 5), what="10 still open after a snapshot load")
    assert third.stop() == 0


def test_a_marker_from_a_fenced_coordinator_is_refused_and_written_nowhere(tmp_path, workers):
    w = workers(tmp_path).start()
    args, values = txn(4, 0)
    answered(w, [append(w, values, **args)])
    assert answered(w, [marker(w, 4, committed=True, coordinator_epoch=6)])[0].offset == 1
    args, values = txn(4, 1)
    answered(w, [append(w, values, **args)])            # the next transaction at 2
    with pytest.raises(TransactionCoordinatorFenced, match="coordinator epoch 5"):
        answered(w, [marker(w, 4, committed=False, coordinator_epoch=5)])
    w.wait_for(lambda: w.offsets() == (2, 3, 3), what="the transaction still open")
    assert txn_index(tmp_path) == []
    assert w.stop() == 0                                # the coordinator epoch goes into the snapshot
    again = workers(tmp_path, shm=w.shm).start()
    with pytest.raises(TransactionCoordinatorFenced):
        answered(again, [marker(again, 4, committed=False, coordinator_epoch=5)])
    assert answered(again, [marker(again, 4, committed=False, coordinator_epoch=7)])[0].offset == 3
    again.wait_for(lambda: again.offsets() == (4, 4, 4), what="aborted by the newer coordinator")
    assert again.stop() == 0
    assert [(o, mk) for o, _, _, mk in markers_in_log(tmp_path)] == [
        (1, EndTxnMarker(ControlRecordType.COMMIT, 6)), (3, EndTxnMarker(ControlRecordType.ABORT, 7))]
    assert txn_index(tmp_path) == [AbortedTxn(4, 2, 3, 4)]


def test_alone_a_marker_is_answered_at_once(tmp_path, workers):
    w = workers(tmp_path).start()
    args, values = txn(3, 0)
    answered(w, [append(w, values, **args)])
    w.wait_for(lambda: w.offsets() == (0, 1, 1), what="an open transaction at 0")
    assert answered(w, [marker(w, 3, committed=True)])[0].offset == 1
    w.wait_for(lambda: w.offsets() == (2, 2, 2), what="committed")
    assert w.stop() == 0


def test_a_control_batch_from_a_producer_ring_is_refused(tmp_path):
    sock, other = socketpair()
    worker = LeaderWorker(sock, WorkerSpec(TOPIC, 0, 0, str(tmp_path), {}, 1))
    try:
        worker.open()
        data = marker_batch(ControlRecordType.COMMIT, 4, 0, 0, 1700000000000)
        with pytest.raises(InvalidRecord, match="control"):
            worker._append(memoryview(data), read_header(data))
        assert worker.log.log_end_offset == 0
    finally:
        worker.close()
        other.close()


def list_offset(worker, isolation_level):
    (topic,) = worker.call(m.ListOffsetsRequest(isolation_level=isolation_level, topics=[m.ListOffsetsTopic(
        name=TOPIC, partitions=[m.ListOffsetsPartition(partition_index=0, timestamp=m.LATEST_TIMESTAMP)])])).topics
    return topic.partitions[0].offset


def test_retention_past_an_open_transactions_first_offset_raises_the_lso_to_the_log_start(tmp_path, workers):
    # a segment per batch (each ~80 bytes); retention keeps the newest ~3 segments
    w = workers(tmp_path, configs={"segment.bytes": "100", "retention.bytes": "250"})
    w.spec.retention_check_ms = 50
    w.start()
    args, values = txn(6, 0)
    answered(w, [append(w, values, **args)])                       # open at 0
    answered(w, [append(w, [b"plain %d" % i]) for i in range(6)])  # 1..6, one segment each
    w.wait_for(lambda: w.shm.state.read().log_start_offset > 0, what="retention to move the log start")
    start = w.shm.state.read().log_start_offset
    assert w.offsets() == (start, 7, 7)                            # not 0: below the log start
    assert list_offset(w, m.IsolationLevel.READ_COMMITTED) == start
    assert list_offset(w, m.IsolationLevel.READ_UNCOMMITTED) == 7
    (status,) = w.call(m.StatusRequest()).partitions
    assert (status.log_start_offset, status.last_stable_offset) == (start, start)
    assert w.stop() == 0
    w = workers(tmp_path, configs={"segment.bytes": "100", "retention.bytes": "250"}, shm=w.shm).start()
    w.wait_for(lambda: w.offsets() == (start, 7, 7), what="the same LSO after a restart")
    # still open: its abort is indexed from its first offset, and ends the hold on the LSO
    assert answered(w, [marker(w, 6, committed=False)])[0].offset == 7
    w.wait_for(lambda: w.offsets() == (8, 8, 8), what="the transaction aborted")
    assert txn_index(tmp_path)[-1] == AbortedTxn(6, 0, 7, 8)
    assert w.stop() == 0
