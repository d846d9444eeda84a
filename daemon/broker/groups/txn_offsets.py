"""Offsets committed in a transaction (KIP-98's TxnOffsetCommit, Kafka's
handleTxnCommitOffsets): written to __consumer_offsets as the producer's transactional
batch, held apart (OffsetFetch does not return them; with require_stable it answers
UNSTABLE_OFFSET_COMMIT for their partitions) until the transaction's marker reaches
__consumer_offsets: COMMIT makes them the group's committed offsets, ABORT drops them.
Part of the GroupCoordinator; no I/O, no clock.

Order, as Kafka's GroupMetadata.completePendingTxnOffsetCommit: at the COMMIT, an offset
of the transaction replaces the partition's committed offset only if its record is later
in __consumer_offsets than the committed one's (an OffsetCommit written after the
TxnOffsetCommit, before the marker, wins); the same rule holds when load() replays the
log after a restart (offsets.py).

Loading: __consumer_offsets may hold transactional batches and their markers; the shell
hands them to load() as TransactionalRecord and TransactionMarker items among the plain
(key, value, batch offset) records, in log order.
"""
from dataclasses import dataclass
from functools import partial

from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups.context import store_error
from odradek.daemon.broker.groups.group import Waiter, at_record, take_newer

__all__ = ["TxnOffsets", "TransactionalRecord", "TransactionMarker"]


@dataclass(frozen=True)
class TransactionalRecord:
    """A record of a transactional batch of __consumer_offsets (offset: the batch's base
    offset, -1 if not known)."""
    producer_id: int
    key: bytes
    value: bytes | None
    offset: int = -1


@dataclass(frozen=True)
class TransactionMarker:
    """The end of a producer's transaction on __consumer_offsets (a control batch)."""
    producer_id: int
    commit: bool


class TxnOffsets:
    """The transactional-offsets part of the coordinator, over the shared Context `ctx`;
    commits are checked by `offsets` (an Offsets) as OffsetCommits are."""

    def __init__(self, ctx, offsets):
        self.ctx = ctx
        self.offsets = offsets

    def txn_offset_commit(self, peer, handle, req, now):
        group, error = self.offsets.group_for_commit(req, now)
        if error is not None:
            if group is not None:
                self.ctx.maybe_forget(group)
            return self.ctx.reply(peer.conn, handle, error)
        records, offsets, topics = self.offsets.staged(group, req, now, m.TxnOffsetCommitResponsePartition,
                                                       m.TxnOffsetCommitResponseTopic)
        response = m.TxnOffsetCommitResponse(topics=topics)
        if not records:
            self.ctx.maybe_forget(group)
            return self.ctx.reply(peer.conn, handle, response)
        group.commits_in_flight += 1
        self.ctx.persist(records, partial(self._stored, group, req.producer_id, offsets,
                                          Waiter(peer.conn, handle), response),
                         producer=(req.producer_id, req.producer_epoch), positioned=True)

    def _stored(self, group, producer_id, offsets, waiter, response, now, error, record_offset):
        group.commits_in_flight -= 1
        if error is not None:
            self.ctx.maybe_forget(group)
            return self.ctx.answer(waiter, store_error(error, group.group_id, commit=True))
        if self.ctx.groups.get(group.group_id) is group:
            group.pending_txn_offsets.setdefault(producer_id, {}).update(at_record(offsets, record_offset))
        self.ctx.answer(waiter, response)

    def txn_completed(self, producer_id, commit, now):
        """The transaction of `producer_id` ended on __consumer_offsets (its marker is
        written): its offsets become the groups' committed offsets where their records are
        the later ones (take_newer), or are dropped."""
        for group in list(self.ctx.groups.values()):
            pending = group.pending_txn_offsets.pop(producer_id, None)
            if pending and commit:
                take_newer(group.offsets, pending)
            self.ctx.maybe_forget(group)

    @staticmethod
    def unstable(group, topic, partition):
        """Whether an open transaction holds an offset of (topic, partition) for `group`."""
        return group is not None and any((topic, partition) in o for o in group.pending_txn_offsets.values())
