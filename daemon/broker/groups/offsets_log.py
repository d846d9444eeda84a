"""The records of the internal topic __consumer_offsets, in Apache Kafka's byte layout.

Each record's key starts with an int16 version that says what the record is:

    version 0 or 1  OffsetCommitKey    group, topic, partition   -> OffsetCommitValue
    version 2       GroupMetadataKey   group                     -> GroupMetadataValue

and each value starts with its own int16 version. A null value is a tombstone: the
committed offset (or the group) is gone. odradek writes OffsetCommitKey v1,
OffsetCommitValue v3, GroupMetadataKey v2 and GroupMetadataValue v3, and reads every
non-flexible version (values 0-3), so a __consumer_offsets log written by Kafka's
classic coordinator loads here. FORMAT.md beside this file draws every layout.

Pure functions over bytes: no I/O.
"""
import struct
from dataclasses import dataclass, field

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


class FormatError(ValueError):
    """A key or value that is not a record of __consumer_offsets in a known version."""


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

def _string(out, s):
    b = s.encode("utf-8")
    if len(b) > 0x7FFF:
        raise FormatError(f"string of {len(b)} bytes does not fit an int16 length")
    out += struct.pack(">h", len(b))
    out += b


def _nullable_string(out, s):
    if s is None:
        out += b"\xff\xff"
    else:
        _string(out, s)


def _bytes(out, b):
    out += struct.pack(">i", len(b))
    out += b


def encode_offset_key(group, topic, partition):
    """OffsetCommitKey v1: version, group, topic, partition."""
    out = bytearray(struct.pack(">h", OFFSET_KEY_VERSION))
    _string(out, group)
    _string(out, topic)
    out += struct.pack(">i", partition)
    return bytes(out)


def encode_offset_value(value):
    """OffsetCommitValue v3: version, offset, leader_epoch, metadata, commit_timestamp."""
    out = bytearray(struct.pack(">hqi", OFFSET_VALUE_VERSION, value.offset, value.leader_epoch))
    _string(out, value.metadata or "")
    out += struct.pack(">q", value.commit_timestamp)
    return bytes(out)


def encode_group_key(group):
    """GroupMetadataKey v2: version, group."""
    out = bytearray(struct.pack(">h", GROUP_KEY_VERSION))
    _string(out, group)
    return bytes(out)


def encode_group_value(value):
    """GroupMetadataValue v3: version, protocol_type, generation, protocol, leader,
    current_state_timestamp, members (MemberMetadata v3 each)."""
    out = bytearray(struct.pack(">h", GROUP_VALUE_VERSION))
    _string(out, value.protocol_type or "")
    out += struct.pack(">i", value.generation)
    _nullable_string(out, value.protocol)
    _nullable_string(out, value.leader)
    out += struct.pack(">qi", value.current_state_timestamp, len(value.members))
    for m in value.members:
        _string(out, m.member_id)
        _nullable_string(out, m.group_instance_id)
        _string(out, m.client_id)
        _string(out, m.client_host)
        out += struct.pack(">ii", m.rebalance_timeout, m.session_timeout)
        _bytes(out, m.subscription)
        _bytes(out, m.assignment)
    return bytes(out)


# ---- reading ------------------------------------------------------------------------

class _Reader:
    __slots__ = ("buf", "pos", "what")

    def __init__(self, buf, what):
        self.buf = memoryview(bytes(buf))
        self.pos = 0
        self.what = what

    def _take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError(f"{self.what}: truncated at byte {self.pos} (needs {n} more)")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def int16(self):
        return struct.unpack(">h", self._take(2))[0]

    def int32(self):
        return struct.unpack(">i", self._take(4))[0]

    def int64(self):
        return struct.unpack(">q", self._take(8))[0]

    def string(self, nullable=False):
        n = self.int16()
        if n == -1 and nullable:
            return None
        if n < 0:
            raise FormatError(f"{self.what}: string length {n} at byte {self.pos - 2}")
        try:
            return bytes(self._take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.what}: a string is not UTF-8") from None

    def bytes_(self):
        n = self.int32()
        if n < 0:
            raise FormatError(f"{self.what}: bytes length {n} at byte {self.pos - 4}")
        return bytes(self._take(n))

    def end(self):
        if self.pos != len(self.buf):
            raise FormatError(f"{self.what}: {len(self.buf) - self.pos} bytes after the last field")


def decode_key(key):
    """An OffsetKey or a GroupKey; FormatError for anything else (e.g. a transaction
    marker key or a flexible-version key this reader does not know)."""
    r = _Reader(key, "__consumer_offsets key")
    version = r.int16()
    if version in (0, 1):
        k = OffsetKey(r.string(), r.string(), r.int32())
    elif version == 2:
        k = GroupKey(r.string())
    else:
        raise FormatError(f"__consumer_offsets key version {version} is not known")
    r.end()
    return k


def decode_offset_value(value):
    """An OffsetValue from OffsetCommitValue v0-v3."""
    r = _Reader(value, "OffsetCommitValue")
    version = r.int16()
    if version not in (0, 1, 2, 3):
        raise FormatError(f"OffsetCommitValue version {version} is not known")
    offset = r.int64()
    leader_epoch = r.int32() if version >= 3 else -1
    metadata = r.string()
    commit_timestamp = r.int64()
    expire_timestamp = r.int64() if version == 1 else -1
    r.end()
    return OffsetValue(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


def decode_group_value(value):
    """A GroupValue from GroupMetadataValue v0-v3."""
    r = _Reader(value, "GroupMetadataValue")
    version = r.int16()
    if version not in (0, 1, 2, 3):
        raise FormatError(f"GroupMetadataValue version {version} is not known")
    protocol_type = r.string()
    generation = r.int32()
    protocol = r.string(nullable=True)
    leader = r.string(nullable=True)
    timestamp = r.int64() if version >= 2 else -1
    count = r.int32()
    if count < 0 or count > len(r.buf):
        raise FormatError(f"GroupMetadataValue: member count {count}")
    members = []
    for _ in range(count):
        member_id = r.string()
        instance = r.string(nullable=True) if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        rebalance_timeout = r.int32() if version >= 1 else None
        session_timeout = r.int32()
        if rebalance_timeout is None:
            rebalance_timeout = session_timeout
        members.append(MemberValue(member_id, instance, client_id, client_host, rebalance_timeout,
                                   session_timeout, r.bytes_(), r.bytes_()))
    r.end()
    return GroupValue(protocol_type, generation, protocol, leader, timestamp, tuple(members))
