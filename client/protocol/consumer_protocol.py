"""Kafka's consumer protocol: the bytes a consumer group's members agree on.

The coordinator never looks inside them; they ride in JoinGroup (a member's
Subscription, as the metadata of each protocol it offers) and SyncGroup (the leader's
Assignment for each member). Declared here with the body type system, field for field as
Kafka's ConsumerProtocolSubscription.json and ConsumerProtocolAssignment.json (non-
flexible, so the plain types); each record is version-prefixed (an int16 version, then
the struct at that version):

    ConsumerProtocolSubscription, versions 0-2
        topics            Array(STRING)            v0+
        user_data         NULLABLE_BYTES           v0+
        owned_partitions  Array(TopicPartition)    v1+
        generation_id     INT32 (default -1)       v2+

    ConsumerProtocolAssignment, versions 0-2 (one layout for all three)
        assigned_partitions  Array(TopicPartition)  v0+
        user_data            NULLABLE_BYTES         v0+

    TopicPartition: topic STRING, partitions Array(INT32)

    Example: Subscription v1 of topic "orders", owning orders-2, no user data:
        00 01 | 00000001 0006 "orders" | ffffffff | 00000001 0006 "orders" 00000001 00000002

A record of a newer version than these is read with the newest layout and whatever
follows is ignored, as Kafka's clients do (new versions only append fields). The
assignors' value types (Subscription, Assignment) are in odradek.client.assignors.
Pure code: no I/O.
"""
from odradek.client.protocol._schema import (
    INT32, NULLABLE_BYTES, STRING, Array, Struct, read_version)

__all__ = ["TopicPartition", "ConsumerProtocolSubscription", "ConsumerProtocolAssignment",
           "SUBSCRIPTION_VERSIONS", "ASSIGNMENT_VERSIONS", "decode_versioned"]

SUBSCRIPTION_VERSIONS = range(0, 3)
ASSIGNMENT_VERSIONS = range(0, 3)


class TopicPartition(Struct):
    FIELDS = [
        # name          type          default  since
        ("topic",       STRING,       "",      0),
        ("partitions",  Array(INT32), [],      0),
    ]


class ConsumerProtocolSubscription(Struct):
    FIELDS = [
        # name                type                   default  since
        ("topics",            Array(STRING),         [],      0),
        ("user_data",         NULLABLE_BYTES,        None,    0),
        ("owned_partitions",  Array(TopicPartition), [],      1),
        ("generation_id",     INT32,                 -1,      2),
    ]


class ConsumerProtocolAssignment(Struct):
    FIELDS = [
        # name                   type                   default  since
        ("assigned_partitions",  Array(TopicPartition), [],      0),
        ("user_data",            NULLABLE_BYTES,        None,    0),
    ]


def decode_versioned(cls, versions, data):
    """(version, struct) from a version-prefixed record of `cls`, whose known versions are
    `versions` (0 to the newest): a newer one is read as the newest known, trailing fields
    ignored. RemoteProtocolError for anything else."""
    version, body = read_version(data)
    newest = versions[-1]
    if version > newest:
        return version, cls.decode(body, newest, ignore_trailing=True)
    return version, cls.decode(body, version)
