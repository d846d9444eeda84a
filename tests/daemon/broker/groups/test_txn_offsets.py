"""TxnOffsetCommit (KIP-98): offsets committed in a transaction are written as the
producer's transactional batch, invisible until its marker reaches __consumer_offsets
(txn_completed), then committed or dropped; and rebuilt from a log holding
transactional batches and markers."""
from odradek.client.errors import (
    CoordinatorNotAvailable, IllegalGeneration, NotEnoughReplicas, UnknownMemberId, UnknownTopicOrPartition,
    UnstableOffsetCommit)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups.txn_offsets import TransactionalRecord, TransactionMarker

PID, EPOCH = 4000, 3


def txn_commit(h, offsets, group="g", generation=-1, member="", pid=PID, epoch=EPOCH, conn="c"):
    topics = {}
    for (t, p), offset in sorted(offsets.items()):
        topics.setdefault(t, []).append(m.TxnOffsetCommitRequestPartition(partition_index=p, committed_offset=offset))
    return h.send(conn, m.TxnOffsetCommitRequest(
        transactional_id="tx", group_id=group, producer_id=pid, producer_epoch=epoch, generation_id=generation,
        member_id=member, topics=[m.TxnOffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in topics.items()]))


def errors(response):
    return {(t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions}


def fetch_stable(h, group, topic, partitions):
    resp = h.send("c", m.OffsetFetchRequest(group_id=group, require_stable=True, topics=[
        m.OffsetFetchRequestTopic(name=topic, partition_indexes=partitions)])).ok()
    return {(t.name, p.partition_index): (p.committed_offset, p.error_code) for t in resp.topics for p in t.partitions}


def test_offsets_of_a_transaction_are_written_as_its_batch_and_count_once_it_commits(h):
    assert errors(txn_commit(h, {("orders", 0): 10, ("orders", 1): 20}).ok()) == {("orders", 0): 0, ("orders", 1): 0}
    assert h.persists[-1].producer == (PID, EPOCH) and len(h.persists[-1].records) == 2
    assert h.fetch("c", "g") == {}                                   # not before the transaction commits
    assert fetch_stable(h, "g", "orders", [0, 2]) == {("orders", 0): (-1, UnstableOffsetCommit.code),
                                                       ("orders", 2): (-1, 0)}
    h.apply(h.coord.txn_completed(PID, True, h.now))
    assert h.fetch("c", "g") == {("orders", 0): (10, ""), ("orders", 1): (20, "")}
    assert fetch_stable(h, "g", "orders", [0]) == {("orders", 0): (10, 0)}


def test_offsets_of_an_aborted_transaction_are_dropped(h):
    h.commit("c", "g", -1, "", {("orders", 0): 5}).ok()
    txn_commit(h, {("orders", 0): 99}).ok()
    h.apply(h.coord.txn_completed(PID + 1, True, h.now))           # another producer's: nothing of ours
    h.apply(h.coord.txn_completed(PID, False, h.now))
    assert h.fetch("c", "g") == {("orders", 0): (5, "")}
    assert not h.group().pending_txn_offsets


def test_a_group_used_only_by_an_aborted_transaction_disappears(h):
    txn_commit(h, {("orders", 0): 1}, group="once").ok()
    assert h.state("once") == "Empty"
    h.apply(h.coord.txn_completed(PID, False, h.now))
    assert h.state("once") is None


def test_a_member_is_checked_as_for_an_offset_commit(h):
    members, generation = h.stable_group(1)
    conn, member = members[0]
    assert txn_commit(h, {("orders", 0): 1}, generation=generation + 1, member=member).error() is IllegalGeneration
    assert txn_commit(h, {("orders", 0): 1}, generation=generation, member="ghost").error() is UnknownMemberId
    assert txn_commit(h, {("orders", 0): 1}, group="new", generation=2, member=member).error() is IllegalGeneration
    txn_commit(h, {("orders", 0): 1}, generation=generation, member=member).ok()
    h.apply(h.coord.txn_completed(PID, True, h.now))
    assert h.fetch("c", "g") == {("orders", 0): (1, "")}


def test_an_unknown_partition_is_refused_and_a_failed_write_holds_nothing(make_harness):
    h = make_harness(auto_persist=False, partition_exists=lambda t, p: (t, p) != ("orders", 9))
    call = txn_commit(h, {("orders", 0): 1, ("orders", 9): 2})
    h.flush(NotEnoughReplicas("one replica left"))
    assert call.error() is CoordinatorNotAvailable
    assert h.state() is None                                         # nothing held: the group is gone again
    call = txn_commit(h, {("orders", 0): 1, ("orders", 9): 2})
    h.flush()
    assert errors(call.ok()) == {("orders", 0): 0, ("orders", 9): UnknownTopicOrPartition.code}
    assert {pid: set(offsets) for pid, offsets in h.group().pending_txn_offsets.items()} == {PID: {("orders", 0)}}


def test_load_counts_committed_transactions_drops_aborted_ones_and_holds_open_ones(h, make_harness):
    h.commit("c", "g", -1, "", {("orders", 0): 1, ("orders", 1): 1}).ok()
    plain = list(h.log)
    txn_commit(h, {("orders", 0): 50}, pid=1).ok()
    committed = list(h.log[len(plain):])
    txn_commit(h, {("orders", 1): 60}, pid=2).ok()
    aborted = list(h.log[len(plain) + len(committed):])
    txn_commit(h, {("orders", 2): 70}, pid=3).ok()
    still_open = list(h.log[len(plain) + len(committed) + len(aborted):])
    log = plain + [TransactionalRecord(1, k, v) for k, v in committed] \
        + [TransactionalRecord(2, k, v) for k, v in aborted] + [TransactionalRecord(3, k, v) for k, v in still_open] \
        + [TransactionMarker(2, False), TransactionMarker(1, True), TransactionMarker(9, True)]
    h2 = make_harness()
    h2.clock.now = h.now
    h2.apply(h2.coord.load(log, h2.now))
    assert h2.fetch("c", "g") == {("orders", 0): (50, ""), ("orders", 1): (1, "")}
    assert set(h2.group().pending_txn_offsets) == {3}
    h2.apply(h2.coord.txn_completed(3, True, h2.now))
    assert h2.fetch("c", "g")[("orders", 2)] == (70, "")


def test_at_commit_a_transactional_offset_yields_to_a_plain_commit_written_after_it(h):
    h.commit("c", "g", -1, "", {("orders", 0): 5}).ok()                 # before the transaction's offsets
    txn_commit(h, {("orders", 0): 10, ("orders", 1): 20}).ok()
    h.commit("c", "g", -1, "", {("orders", 1): 30}).ok()                # after them, before the marker
    h.apply(h.coord.txn_completed(PID, True, h.now))
    assert h.fetch("c", "g") == {("orders", 0): (10, ""), ("orders", 1): (30, "")}


def test_a_plain_commit_answered_after_the_marker_does_not_undo_a_later_transactional_offset(make_harness):
    h = make_harness(auto_persist=False)
    h.commit("c", "g", -1, "", {("orders", 0): 5})                     # written first, answered last
    txn_commit(h, {("orders", 0): 10})
    held = h.pending
    h.pending = held[1:]
    h.flush()                                                           # the TxnOffsetCommit's answer
    h.apply(h.coord.txn_completed(PID, True, h.now))
    h.pending = held[:1]
    h.flush()
    assert h.fetch("c", "g") == {("orders", 0): (10, "")}


def offsets_log(h, pids):
    """h's __consumer_offsets as the shell reads it: the batches of `pids` ({index of a
    Persist: producer id}) transactional, every record with its batch's offset."""
    out, offset = [], 0
    for i, persist in enumerate(h.persists):
        for key, value in persist.records:
            out.append(TransactionalRecord(pids[i], key, value, offset) if i in pids else (key, value, offset))
        offset += len(persist.records)
    return out


def test_a_reload_orders_committed_transactional_offsets_by_their_place_in_the_log(h, make_harness):
    h.commit("c", "g", -1, "", {("orders", 0): 5}).ok()                 # persist 0
    txn_commit(h, {("orders", 0): 10, ("orders", 1): 20}, pid=1).ok()  # persist 1
    h.commit("c", "g", -1, "", {("orders", 1): 30}).ok()                # persist 2
    txn_commit(h, {("orders", 1): 40, ("orders", 2): 50}, pid=2).ok()  # persist 3: open at the restart
    h.commit("c", "g", -1, "", {("orders", 2): 60}).ok()                # persist 4
    log = offsets_log(h, {1: 1, 3: 2})
    log.insert(len(log) - 1, TransactionMarker(1, True))               # 1 commits before persist 4
    h2 = make_harness()
    h2.apply(h2.coord.load(log, h2.now))
    assert h2.fetch("c", "g") == {("orders", 0): (10, ""), ("orders", 1): (30, ""), ("orders", 2): (60, "")}
    assert set(h2.group().pending_txn_offsets) == {2}
    # 2 commits after the restart: its orders-1 record is later than 30's, its orders-2 one earlier than 60's
    h2.apply(h2.coord.txn_completed(2, True, h2.now))
    assert h2.fetch("c", "g") == {("orders", 0): (10, ""), ("orders", 1): (40, ""), ("orders", 2): (60, "")}
