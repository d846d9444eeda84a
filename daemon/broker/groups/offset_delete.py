"""OffsetDelete (Kafka's key 47): delete some committed offsets of a group, as
kafka-consumer-groups --delete-offsets does. Part of the GroupCoordinator; no I/O, no
clock: `now` (ms) is always given.

Kafka's rules: an unknown (or Dead) group is GROUP_ID_NOT_FOUND. An Empty group loses
every offset asked for. A group with members keeps the offsets of topics a member
subscribes to (GROUP_SUBSCRIBED_TO_TOPIC for those partitions) and loses the others;
what its members subscribe to is read from their ConsumerProtocol subscriptions, so a
group of another protocol type (or one whose subscriptions do not decode) with members
is NON_EMPTY_GROUP as a whole. A partition with no committed offset is answered as
deleted. As in Kafka the offsets leave memory at once (so a later commit, written after the
tombstones, wins in memory as in the log); the answer waits for the tombstones.
"""
from functools import partial

from odradek.client.errors import GroupIdNotFound, GroupSubscribedToTopic, NonEmptyGroup, OdradekError
from odradek.client.protocol import messages as m
from odradek.client.protocol.consumer_protocol import (
    SUBSCRIPTION_VERSIONS, ConsumerProtocolSubscription, decode_versioned)
from odradek.daemon.broker.groups import offsets_log as fmt
from odradek.daemon.broker.groups.context import store_error
from odradek.daemon.broker.groups.group import GroupState, Waiter

__all__ = ["OffsetDelete", "subscribed_topics"]

CONSUMER_PROTOCOL_TYPE = "consumer"


def subscribed_topics(group):
    """The topics any member of `group` subscribes to (in any assignor it offers), or
    None if the group is not a consumer group or a subscription does not decode."""
    if group.protocol_type != CONSUMER_PROTOCOL_TYPE:
        return None
    topics = set()
    for member in group.members.values():
        for _, metadata in member.protocols:
            try:
                _, subscription = decode_versioned(ConsumerProtocolSubscription, SUBSCRIPTION_VERSIONS, metadata)
            except OdradekError:
                return None
            topics.update(subscription.topics)
    return topics


class OffsetDelete:
    """The OffsetDelete part of the coordinator, over the shared Context `ctx`."""

    def __init__(self, ctx):
        self.ctx = ctx

    def offset_delete(self, peer, handle, req, now):
        group = self.ctx.groups.get(req.group_id)
        if group is None or group.is_(GroupState.DEAD):
            return self.ctx.reply(peer.conn, handle, GroupIdNotFound(f"group {req.group_id} does not exist"))
        kept = set()
        if not group.is_(GroupState.EMPTY):
            kept = subscribed_topics(group)
            if kept is None:
                return self.ctx.reply(peer.conn, handle, NonEmptyGroup(
                    f"group {req.group_id} is {group.state} with {group.size} members of protocol type "
                    f"{group.protocol_type!r}, whose subscriptions are not known: stop its members first"))
        records, topics = [], []
        for topic in req.topics:
            error = None
            if topic.name in kept:
                error = GroupSubscribedToTopic(f"a member of group {req.group_id} subscribes to {topic.name}; "
                                               "its offsets stay")
            parts = []
            for partition in dict.fromkeys(topic.partitions):
                key = (topic.name, partition)
                if error is None and key in group.offsets:
                    del group.offsets[key]
                    records.append((fmt.encode_offset_key(group.group_id, topic.name, partition), None))
                parts.append(m.OffsetDeleteResponsePartition(
                    partition_index=partition, error_code=error.code if error else 0,
                    error_message=error.message if error else None))
            topics.append(m.OffsetDeleteResponseTopic(name=topic.name, partitions=parts))
        response = m.OffsetDeleteResponse(topics=topics)
        if not records:
            return self.ctx.reply(peer.conn, handle, response)
        self.ctx.maybe_forget(group)
        self.ctx.persist(records, partial(self._deleted, group.group_id, Waiter(peer.conn, handle), response))

    def _deleted(self, group_id, waiter, response, now, error):
        """The tombstones are durable (or failed): answer."""
        self.ctx.answer(waiter, response if error is None else store_error(error, group_id))
