"""The records of the internal topic __consumer_offsets, in Apache Kafka's byte layout.

Each record's key starts with an int16 version that says what the record is:

    version 0 or 1  OffsetCommitKey    group, topic, partition   -> OffsetCommitValue
    version 2       GroupMetadataKey   group                     -> GroupMetadataValue

and each value starts with its own int16 version. A null value is a tombstone: the
committed offset (or the group) is gone. odradek writes OffsetCommitKey v1,
OffsetCommitValue v3, GroupMetadataKey v2 and GroupMetadataValue v3, and reads every
non-flexible version (values 0-3), so a __consumer_offsets log written by Kafka's
classic coordinator loads here. FORMAT.md beside this file draws every layout.

The layouts are declared below as Structs of the body type system (odradek.client.
protocol), field for field as Kafka's OffsetCommitKey/Value.json and GroupMetadataKey/
Value.json; the coordinator works with the frozen values OffsetKey, GroupKey,
OffsetValue, GroupValue and MemberValue. Pure functions over bytes: no I/O.
"""
from dataclasses import dataclass, field

from odradek.client.protocol import (
    BYTES, INT32, INT64, NULLABLE_STRING, STRING, Array, LocalProtocolError, RemoteProtocolError,
    Struct, read_version)

__all__ = [
    "OffsetKey", "GroupKey", "OffsetValue", "GroupValue", "MemberValue", "FormatError",
    "encode_offset_key", "encode_offset_value", "encode_group_key", "encode_group_value",
    "decode_key", "decode_offset_value", "decode_group_value",
    "OFFSET_KEY_VERSION", "OFFSET_VALUE_VERSION", "GROUP_KEY_VERSION", "GROUP_VALUE_VERSION",
]

OFFSET_KEY_VERSION = 1
OFFSET_VALUE_VERSION = 3
GROUP_KEY_VERSION = 2
GROUP_VALUE_VERSION = 3
VALUE_VERSIONS = range(0, 4)    # non-flexible; v4+ is Kafka's tagged-field form


class FormatError(ValueError):
    """A key or value that is not a record of __consumer_offsets in a known version."""


# ---- the wire layouts ----------------------------------------------------------------

class OffsetCommitKey(Struct):
    """Key versions 0 and 1 (one layout)."""
    FIELDS = [
        # name        type    default  since
        ("group",     STRING, "",      0),
        ("topic",     STRING, "",      0),
        ("partition", INT32,  0,       0),
    ]


class GroupMetadataKey(Struct):
    """Key version 2."""
    FIELDS = [
        ("group",     STRING, "",      0),
    ]


class OffsetCommitValue(Struct):
    FIELDS = [
        # name               type    default  since  until
        ("offset",           INT64,  0,       0),
        ("leader_epoch",     INT32,  -1,      3),
        ("metadata",         STRING, "",      0),
        ("commit_timestamp", INT64,  -1,      0),
        ("expire_timestamp", INT64,  -1,      1,     1),
    ]


class MemberMetadata(Struct):
    FIELDS = [
        # name                type             default  since
        ("member_id",         STRING,          "",      0),
        ("group_instance_id", NULLABLE_STRING, None,    3),
        ("client_id",         STRING,          "",      0),
        ("client_host",       STRING,          "",      0),
        ("rebalance_timeout", INT32,           -1,      1),   # v0: the session timeout
        ("session_timeout",   INT32,           0,       0),
        ("subscription",      BYTES,           b"",     0),
        ("assignment",        BYTES,           b"",     0),
    ]


class GroupMetadataValue(Struct):
    FIELDS = [
        # name                      type                   default  since
        ("protocol_type",           STRING,                "",      0),
        ("generation",              INT32,                 0,       0),
        ("protocol",                NULLABLE_STRING,       None,    0),
        ("leader",                  NULLABLE_STRING,       None,    0),
        ("current_state_timestamp", INT64,                 -1,      2),
        ("members",                 Array(MemberMetadata), [],      0),
    ]


# ---- the values the coordinator keeps --------------------------------------------------

@dataclass(frozen=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupKey:
    group: str


@dataclass(frozen=True)
class OffsetValue:
    offset: int
    leader_epoch: int = -1          # v3+; -1 unknown
    metadata: str = ""
    commit_timestamp: int = -1      # ms since the epoch
    expire_timestamp: int = -1      # v1 only; -1 none


@dataclass(frozen=True)
class MemberValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int           # v1+ (v0 reads it as the session timeout, as Kafka does)
    session_timeout: int
    subscription: bytes              # the member's metadata for the group's protocol
    assignment: bytes


@dataclass(frozen=True)
class GroupValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1   # v2+
    members: tuple = field(default=())  # MemberValue, ...


# ---- writing ------------------------------------------------------------------------

def _write(record, version):
    try:
        return record.encode_versioned(version)
    except LocalProtocolError as e:
        raise FormatError(str(e)) from None


def encode_offset_key(group, topic, partition):
    """OffsetCommitKey v1: version, group, topic, partition."""
    return _write(OffsetCommitKey(group=group, topic=topic, partition=partition), OFFSET_KEY_VERSION)


def encode_offset_value(value):
    """OffsetCommitValue v3: version, offset, leader_epoch, metadata, commit_timestamp."""
    return _write(OffsetCommitValue(offset=value.offset, leader_epoch=value.leader_epoch,
                                    metadata=value.metadata or "", commit_timestamp=value.commit_timestamp),
                  OFFSET_VALUE_VERSION)


def encode_group_key(group):
    """GroupMetadataKey v2: version, group."""
    return _write(GroupMetadataKey(group=group), GROUP_KEY_VERSION)


def encode_group_value(value):
    """GroupMetadataValue v3: version, protocol_type, generation, protocol, leader,
    current_state_timestamp, members (MemberMetadata v3 each)."""
    members = [MemberMetadata(
        member_id=m.member_id, group_instance_id=m.group_instance_id, client_id=m.client_id,
        client_host=m.client_host, rebalance_timeout=m.rebalance_timeout, session_timeout=m.session_timeout,
        subscription=m.subscription, assignment=m.assignment) for m in value.members]
    return _write(GroupMetadataValue(
        protocol_type=value.protocol_type or "", generation=value.generation, protocol=value.protocol,
        leader=value.leader, current_state_timestamp=value.current_state_timestamp, members=members),
        GROUP_VALUE_VERSION)


# ---- reading ------------------------------------------------------------------------

KEY_LAYOUTS = {0: OffsetCommitKey, 1: OffsetCommitKey, GROUP_KEY_VERSION: GroupMetadataKey}


def _read(data, layouts, what):
    """(version, struct) from a version-prefixed record whose layout per known version is
    `layouts`; FormatError for an unknown version or bytes that do not fit the layout."""
    try:
        version, body = read_version(data)
    except RemoteProtocolError as e:
        raise FormatError(str(e.locate(what))) from None
    cls = layouts.get(version)
    if cls is None:
        raise FormatError(f"{what} version {version} is not known")
    try:
        return version, cls.decode(body, version)
    except RemoteProtocolError as e:
        raise FormatError(str(e)) from None


def decode_key(key):
    """An OffsetKey or a GroupKey; FormatError for anything else (e.g. a transaction
    marker key or a flexible-version key this reader does not know)."""
    _, k = _read(key, KEY_LAYOUTS, "__consumer_offsets key")
    if isinstance(k, OffsetCommitKey):
        return OffsetKey(k.group, k.topic, k.partition)
    return GroupKey(k.group)


def decode_offset_value(value):
    """An OffsetValue from OffsetCommitValue v0-v3."""
    _, v = _read(value, dict.fromkeys(VALUE_VERSIONS, OffsetCommitValue), "OffsetCommitValue")
    return OffsetValue(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp)


def decode_group_value(value):
    """A GroupValue from GroupMetadataValue v0-v3."""
    version, v = _read(value, dict.fromkeys(VALUE_VERSIONS, GroupMetadataValue), "GroupMetadataValue")
    members = tuple(MemberValue(
        m.member_id, m.group_instance_id, m.client_id, m.client_host,
        m.rebalance_timeout if version >= 1 else m.session_timeout, m.session_timeout,
        m.subscription, m.assignment) for m in v.members)
    return GroupValue(v.protocol_type, v.generation, v.protocol, v.leader, v.current_state_timestamp, members)
