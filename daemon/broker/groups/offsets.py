"""Committed offsets: OffsetCommit (answered once durable), OffsetFetch (from memory),
the offsets of a deleted topic, and loading __consumer_offsets at start (offsets and,
through membership.py, the groups' members). Part of the GroupCoordinator; no I/O, no
clock: `now` (ms) is always given.
"""
from collections import defaultdict
from functools import partial

from odradek.client.errors import (
    CoordinatorNotAvailable, IllegalGeneration, InvalidGroupId, OffsetMetadataTooLarge, RebalanceInProgress, UnknownMemberId,
    UnknownTopicOrPartition, UnstableOffsetCommit)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.context import store_error
from odradek.daemon.broker.groups.group import CommittedOffset, Group, GroupState, Waiter, at_record, take_newer
from odradek.daemon.broker.groups.txn_offsets import TransactionalRecord, TransactionMarker, TxnOffsets

__all__ = ["Offsets"]

_S = GroupState


class Offsets:
    """The offsets part of the coordinator, over the shared Context `ctx`; members are
    checked by `membership` (a Membership)."""

    def __init__(self, ctx, membership):
        self.ctx = ctx
        self.membership = membership

    def offset_commit(self, peer, handle, req, now):
        group, error = self.group_for_commit(req, now)
        if error is None and group.is_(_S.COMPLETING_REBALANCE):
            error = RebalanceInProgress(f"group {group.group_id} is completing a rebalance; commit after "
                                        "SyncGroup")
        if error is not None:
            if group is not None:
                self.ctx.maybe_forget(group)
            return self.ctx.reply(peer.conn, handle, error)
        if group.state in (_S.STABLE, _S.PREPARING_REBALANCE):
            self.membership.arm_session(group, group.members[req.member_id], now)
        records, offsets, topics = self.staged(group, req, now, m.OffsetCommitResponsePartition,
                                               m.OffsetCommitResponseTopic)
        response = m.OffsetCommitResponse(topics=topics)
        if not records:
            self.ctx.maybe_forget(group)
            return self.ctx.reply(peer.conn, handle, response)
        group.commits_in_flight += 1
        self.ctx.persist(records, partial(self._commit_stored, group, offsets, Waiter(peer.conn, handle),
                                          response), positioned=True)

    def group_for_commit(self, req, now):
        """(group, error) for an OffsetCommit or TxnOffsetCommit: a standalone commit
        (generation -1) creates the group, Empty; otherwise the commit must come from a
        member of the current generation (validate_commit). An empty group id is Kafka's
        INVALID_GROUP_ID: no group is made for it."""
        if not req.group_id:
            return None, InvalidGroupId("a commit needs a non-empty group id")
        group = self.ctx.groups.get(req.group_id)
        if group is None:
            if req.generation_id >= 0:
                return None, IllegalGeneration(f"group {req.group_id} does not exist, so generation "
                                               f"{req.generation_id} is not current; rejoin")
            group = self.ctx.groups[req.group_id] = Group(req.group_id, now)
        return group, self.validate_commit(group, req)

    def staged(self, group, req, now, partition_cls, topic_cls):
        """(records, {(topic, partition): CommittedOffset}, response topics) of a commit's
        partitions: each written unless its metadata is too long or it does not exist."""
        records, offsets, topics = [], {}, []
        limit = self.ctx.config.offset_metadata_max_bytes
        for topic in req.topics:
            parts = []
            for p in topic.partitions:
                metadata = p.committed_metadata or ""
                e = None
                if len(metadata.encode("utf-8")) > limit:
                    e = OffsetMetadataTooLarge(f"metadata of {len(metadata.encode())} bytes is over "
                                               f"offset.metadata.max.bytes ({limit})")
                elif self.ctx.partition_exists is not None and not self.ctx.partition_exists(topic.name,
                                                                                       p.partition_index):
                    e = UnknownTopicOrPartition(f"{topic.name}-{p.partition_index} does not exist")
                else:
                    value = CommittedOffset(p.committed_offset, p.committed_leader_epoch, metadata, now)
                    offsets[(topic.name, p.partition_index)] = value
                    records.append((fmt.encode_offset_key(group.group_id, topic.name, p.partition_index),
                                    fmt.encode_offset_value(fmt.OffsetValue(
                                        value.offset, value.leader_epoch, value.metadata, now))))
                parts.append(partition_cls(partition_index=p.partition_index, error_code=e.code if e else 0,
                                           error_message=e.message if e else None))
            topics.append(topic_cls(name=topic.name, partitions=parts))
        return records, offsets, topics

    def _commit_stored(self, group, offsets, waiter, response, now, error, record_offset):
        """The commit's records are durable at `record_offset` (or failed): take the
        offsets, answer."""
        group.commits_in_flight -= 1
        if error is not None:
            self.ctx.maybe_forget(group)
            return self.ctx.answer(waiter, store_error(error, group.group_id, commit=True))
        if self.ctx.groups.get(group.group_id) is group:  # not deleted meanwhile
            take_newer(group.offsets, at_record(offsets, record_offset))
        self.ctx.answer(waiter, response)

    def validate_commit(self, group, req):
        """Kafka's validateOffsetCommit (of an OffsetCommit or a TxnOffsetCommit)."""
        if group.is_(_S.DEAD):
            return CoordinatorNotAvailable(f"group {group.group_id} is being deleted; retry")
        if req.generation_id < 0 and group.is_(_S.EMPTY):
            return None  # a standalone commit (admin tools, assign() without group management)
        if req.generation_id >= 0 or req.member_id or req.group_instance_id is not None:
            error = self.membership.validate_member(group, req.member_id, req.group_instance_id, "OffsetCommit")
            if error is None and req.generation_id != group.generation_id:
                error = IllegalGeneration(f"commit for generation {req.generation_id}, but group "
                                          f"{group.group_id} is at generation {group.generation_id}; "
                                          "the partitions may have moved: rejoin")
            return error
        return UnknownMemberId(f"group {group.group_id} has members ({group.state}); only its members can "
                               "commit, or anyone once it is empty")

    def offset_fetch(self, peer, handle, req, now):
        group = self.ctx.groups.get(req.group_id)
        offsets = group.offsets if group is not None else {}
        topics = []
        if req.topics is None:
            by_topic = defaultdict(list)
            for (topic, partition), value in sorted(offsets.items()):
                by_topic[topic].append(self._fetched(partition, value))
            topics = [m.OffsetFetchResponseTopic(name=t, partitions=ps) for t, ps in by_topic.items()]
        else:
            for t in req.topics:
                topics.append(m.OffsetFetchResponseTopic(name=t.name, partitions=[
                    self._fetched(p, offsets.get((t.name, p))) for p in t.partition_indexes]))
        if req.require_stable:   # Kafka: partitions whose offset a transaction still holds
            for t in topics:
                for p in t.partitions:
                    if TxnOffsets.unstable(group, t.name, p.partition_index):
                        e = UnstableOffsetCommit(f"a transaction of group {req.group_id} holds an offset of "
                                                 f"{t.name}-{p.partition_index}; retry once it ends")
                        p.error_code, p.error_message = e.code, e.message
        self.ctx.reply(peer.conn, handle, m.OffsetFetchResponse(topics=topics))

    @staticmethod
    def _fetched(partition, value):
        if value is None:
            return m.OffsetFetchResponsePartition(partition_index=partition, committed_offset=-1,
                                                  committed_leader_epoch=-1, metadata="")
        return m.OffsetFetchResponsePartition(partition_index=partition, committed_offset=value.offset,
                                              committed_leader_epoch=value.leader_epoch,
                                              metadata=value.metadata)

    def topic_deleted(self, topic, now):
        records = []
        for group in self.ctx.groups.values():
            for key in [k for k in group.offsets if k[0] == topic]:
                del group.offsets[key]
                records.append((fmt.encode_offset_key(group.group_id, key[0], key[1]), None))
        for group in list(self.ctx.groups.values()):
            self.ctx.maybe_forget(group)
        if records:
            self.ctx.persist(records)

    def load(self, records, now):
        """Rebuild the groups from __consumer_offsets, in log order: (key, value,
        batch offset) records, and the TransactionalRecord / TransactionMarker items of
        transactions (txn_offsets.py); a record without its batch offset ((key, value),
        or a TransactionalRecord's -1) is placed by its index in `records`. As Kafka's
        GroupMetadataManager loads: a plain record replaces the committed offset; a
        transaction's offsets are held until its COMMIT marker, then each replaces the
        committed one only if its record is the later one in the log (ABORT drops them);
        those of a transaction still open come back as its pending offsets."""
        self.ctx.reset()
        self.membership.reset()
        offsets = defaultdict(dict)        # group -> {(topic, partition): CommittedOffset}
        metadata = {}
        open_txns = defaultdict(lambda: defaultdict(dict))   # producer id -> the same, its open transaction
        skipped = 0

        def apply(key, value, position, into):
            nonlocal skipped
            try:
                k = fmt.decode_key(key)
                if isinstance(k, fmt.OffsetKey):
                    if value is None:
                        into[k.group].pop((k.topic, k.partition), None)
                    else:
                        v = fmt.decode_offset_value(value)
                        into[k.group][(k.topic, k.partition)] = CommittedOffset(
                            v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, position)
                elif into is offsets:
                    metadata[k.group] = fmt.decode_group_value(value) if value is not None else None
            except fmt.FormatError as e:
                skipped += 1
                if skipped <= 10:
                    self.ctx.note("", f"__consumer_offsets: skipped a record: {e}")
        for index, record in enumerate(records):
            if isinstance(record, TransactionalRecord):
                position = record.offset if record.offset >= 0 else index
                apply(record.key, record.value, position, open_txns[record.producer_id])
            elif isinstance(record, TransactionMarker):
                held = open_txns.pop(record.producer_id, {})
                if record.commit:
                    for group_id, group_offsets in held.items():
                        take_newer(offsets[group_id], group_offsets)
            else:
                key, value, *position = record
                apply(key, value, position[0] if position else index, offsets)
        for group_id in sorted(set(offsets) | set(metadata) | {g for p in open_txns.values() for g in p}):
            value = metadata.get(group_id)
            held = {pid: dict(by_group[group_id]) for pid, by_group in open_txns.items() if by_group.get(group_id)}
            if value is None and not offsets.get(group_id) and not held:
                continue  # deleted
            group = Group(group_id, now)
            group.offsets = offsets.get(group_id, {})
            group.pending_txn_offsets = held
            if value is not None:
                self.membership.restore(group, value, now)
            self.ctx.groups[group_id] = group
        if skipped:
            self.ctx.note("", f"__consumer_offsets: {skipped} records skipped in all")
