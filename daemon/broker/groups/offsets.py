"""Committed offsets: OffsetCommit (answered once durable), OffsetFetch (from memory),
the offsets of a deleted topic, and loading __consumer_offsets at start (offsets and,
through membership.py, the groups' members). Part of the GroupCoordinator; no I/O, no
clock: `now` (ms) is always given.
"""
from collections import defaultdict
from functools import partial

from odradek.client.errors import (
    CoordinatorNotAvailable, IllegalGeneration, OffsetMetadataTooLarge, RebalanceInProgress, UnknownMemberId,
    UnknownTopicOrPartition)
from odradek.client.protocol import messages as m
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.context import store_error
from odradek.daemon.broker.groups.group import CommittedOffset, Group, GroupState, Waiter

__all__ = ["Offsets"]

_S = GroupState


class Offsets:
    """The offsets part of the coordinator, over the shared Context `ctx`; members are
    checked by `membership` (a Membership)."""

    def __init__(self, ctx, membership):
        self.ctx = ctx
        self.membership = membership

    def offset_commit(self, peer, handle, req, now):
        group = self.ctx.groups.get(req.group_id)
        if group is None:
            if req.generation_id >= 0:
                return self.ctx.reply(peer.conn, handle, IllegalGeneration(
                    f"group {req.group_id} does not exist, so generation {req.generation_id} is not "
                    "current; rejoin"))
            group = self.ctx.groups[req.group_id] = Group(req.group_id, now)
        error = self._validate_commit(group, req)
        if error is None and group.is_(_S.COMPLETING_REBALANCE):
            error = RebalanceInProgress(f"group {group.group_id} is completing a rebalance; commit after "
                                        "SyncGroup")
        if error is not None:
            self.ctx.maybe_forget(group)
            return self.ctx.reply(peer.conn, handle, error)
        if group.state in (_S.STABLE, _S.PREPARING_REBALANCE):
            self.membership.arm_session(group, group.members[req.member_id], now)
        records, offsets, topics = [], {}, []
        limit = self.ctx.config.offset_metadata_max_bytes
        for topic in req.topics:
            parts = []
            for p in topic.partitions:
                code, message = 0, None
                metadata = p.committed_metadata or ""
                if len(metadata.encode("utf-8")) > limit:
                    e = OffsetMetadataTooLarge(f"metadata of {len(metadata.encode())} bytes is over "
                                               f"offset.metadata.max.bytes ({limit})")
                    code, message = e.code, e.message
                elif self.ctx.partition_exists is not None and not self.ctx.partition_exists(topic.name,
                                                                                       p.partition_index):
                    e = UnknownTopicOrPartition(f"{topic.name}-{p.partition_index} does not exist")
                    code, message = e.code, e.message
                else:
                    value = CommittedOffset(p.committed_offset, p.committed_leader_epoch, metadata, now)
                    offsets[(topic.name, p.partition_index)] = value
                    records.append((fmt.encode_offset_key(group.group_id, topic.name, p.partition_index),
                                    fmt.encode_offset_value(fmt.OffsetValue(
                                        value.offset, value.leader_epoch, value.metadata, now))))
                parts.append(m.OffsetCommitResponsePartition(partition_index=p.partition_index,
                                                             error_code=code, error_message=message))
            topics.append(m.OffsetCommitResponseTopic(name=topic.name, partitions=parts))
        response = m.OffsetCommitResponse(topics=topics)
        if not records:
            self.ctx.maybe_forget(group)
            return self.ctx.reply(peer.conn, handle, response)
        group.commits_in_flight += 1
        self.ctx.persist(records, partial(self._commit_stored, group, offsets, Waiter(peer.conn, handle),
                                          response))

    def _commit_stored(self, group, offsets, waiter, response, now, error):
        """The commit's records are durable (or failed): take the offsets, answer."""
        group.commits_in_flight -= 1
        if error is not None:
            self.ctx.maybe_forget(group)
            return self.ctx.answer(waiter, store_error(error, group.group_id, commit=True))
        if self.ctx.groups.get(group.group_id) is group:  # not deleted meanwhile
            group.offsets.update(offsets)
        self.ctx.answer(waiter, response)

    def _validate_commit(self, group, req):
        """Kafka's validateOffsetCommit."""
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
        self.ctx.reset()
        self.membership.reset()
        offsets = defaultdict(dict)
        metadata = {}
        skipped = 0
        for key, value in records:
            try:
                k = fmt.decode_key(key)
                if isinstance(k, fmt.OffsetKey):
                    if value is None:
                        offsets[k.group].pop((k.topic, k.partition), None)
                    else:
                        v = fmt.decode_offset_value(value)
                        offsets[k.group][(k.topic, k.partition)] = CommittedOffset(
                            v.offset, v.leader_epoch, v.metadata, v.commit_timestamp)
                else:
                    metadata[k.group] = fmt.decode_group_value(value) if value is not None else None
            except fmt.FormatError as e:
                skipped += 1
                if skipped <= 10:
                    self.ctx.note("", f"__consumer_offsets: skipped a record: {e}")
        for group_id in sorted(set(offsets) | set(metadata)):
            value = metadata.get(group_id)
            if value is None and not offsets.get(group_id):
                continue  # deleted
            group = Group(group_id, now)
            group.offsets = offsets.get(group_id, {})
            if value is not None:
                self.membership.restore(group, value, now)
            self.ctx.groups[group_id] = group
        if skipped:
            self.ctx.note("", f"__consumer_offsets: {skipped} records skipped in all")
