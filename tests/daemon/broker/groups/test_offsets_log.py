"""The __consumer_offsets record layouts (FORMAT.md), byte for byte as Kafka writes them."""
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek.daemon.broker.groups import offsets_log as fmt


def s16(text):
    b = text.encode()
    return struct.pack(">h", len(b)) + b


NULL16 = b"\xff\xff"


def test_offset_commit_key_v1():
    assert fmt.encode_offset_key("grp", "orders", 3) == b"\x00\x01" + s16("grp") + s16("orders") + b"\x00\x00\x00\x03"
    assert fmt.decode_key(fmt.encode_offset_key("grp", "orders", 3)) == fmt.OffsetKey("grp", "orders", 3)


def test_offset_commit_value_v3():
    value = fmt.OffsetValue(offset=42, leader_epoch=7, metadata="m", commit_timestamp=1_700_000_000_123)
    assert fmt.encode_offset_value(value) == (b"\x00\x03" + struct.pack(">q", 42) + struct.pack(">i", 7) + s16("m")
                                              + struct.pack(">q", 1_700_000_000_123))


def test_group_metadata_key_v2():
    assert fmt.encode_group_key("grp") == b"\x00\x02" + s16("grp")
    assert fmt.decode_key(b"\x00\x02" + s16("grp")) == fmt.GroupKey("grp")


def test_group_metadata_value_v3():
    member = fmt.MemberValue("m-1", "inst", "cli", "pid:1 uid:2", 30000, 10000, b"SUB", b"ASSIGN")
    value = fmt.GroupValue("consumer", 5, "range", "m-1", 1_700_000_000_000, (member,))
    expected = (b"\x00\x03" + s16("consumer") + struct.pack(">i", 5) + s16("range") + s16("m-1")
                + struct.pack(">q", 1_700_000_000_000) + struct.pack(">i", 1)
                + s16("m-1") + s16("inst") + s16("cli") + s16("pid:1 uid:2") + struct.pack(">ii", 30000, 10000)
                + struct.pack(">i", 3) + b"SUB" + struct.pack(">i", 6) + b"ASSIGN")
    assert fmt.encode_group_value(value) == expected
    assert fmt.decode_group_value(expected) == value


def test_an_empty_group_has_null_protocol_and_leader():
    value = fmt.GroupValue("consumer", 2, None, None, 5, ())
    data = fmt.encode_group_value(value)
    assert data == b"\x00\x03" + s16("consumer") + struct.pack(">i", 2) + NULL16 + NULL16 + struct.pack(">qi", 5, 0)
    assert fmt.decode_group_value(data) == value


def test_older_offset_values_are_read():
    v0 = b"\x00\x00" + struct.pack(">q", 10) + s16("a") + struct.pack(">q", 99)
    v1 = b"\x00\x01" + struct.pack(">q", 11) + s16("b") + struct.pack(">qq", 98, 123)
    v2 = b"\x00\x02" + struct.pack(">q", 12) + s16("") + struct.pack(">q", 97)
    assert fmt.decode_offset_value(v0) == fmt.OffsetValue(10, -1, "a", 99)
    assert fmt.decode_offset_value(v1) == fmt.OffsetValue(11, -1, "b", 98, 123)
    assert fmt.decode_offset_value(v2) == fmt.OffsetValue(12, -1, "", 97)
    assert fmt.decode_key(b"\x00\x00" + s16("g") + s16("t") + b"\x00\x00\x00\x01") == fmt.OffsetKey("g", "t", 1)


def test_older_group_values_are_read():
    member_v0 = s16("m") + s16("c") + s16("h") + struct.pack(">i", 6000) + struct.pack(">i", 1) + b"S" \
        + struct.pack(">i", 1) + b"A"
    v0 = b"\x00\x00" + s16("consumer") + struct.pack(">i", 3) + s16("range") + s16("m") + struct.pack(">i", 1) + member_v0
    assert fmt.decode_group_value(v0) == fmt.GroupValue(
        "consumer", 3, "range", "m", -1, (fmt.MemberValue("m", None, "c", "h", 6000, 6000, b"S", b"A"),))
    member_v1 = s16("m") + s16("c") + s16("h") + struct.pack(">ii", 9000, 6000) + struct.pack(">i", 0) \
        + struct.pack(">i", 0)
    v2 = b"\x00\x02" + s16("consumer") + struct.pack(">i", 3) + NULL16 + NULL16 + struct.pack(">q", 77) \
        + struct.pack(">i", 1) + member_v1
    assert fmt.decode_group_value(v2).members[0].rebalance_timeout == 9000
    assert fmt.decode_group_value(v2).current_state_timestamp == 77


@pytest.mark.parametrize("key", [b"", b"\x00", b"\x00\x05" + s16("g"), b"\x00\x01" + s16("g"),
                                 b"\x00\x02" + s16("g") + b"x"])
def test_keys_that_are_not_offset_or_group_keys_are_format_errors(key):
    with pytest.raises(fmt.FormatError):
        fmt.decode_key(key)


@given(st.binary(max_size=80))
def test_garbage_raises_format_error_and_nothing_else(data):
    for decode in (fmt.decode_key, fmt.decode_offset_value, fmt.decode_group_value):
        try:
            decode(data)
        except fmt.FormatError:
            pass


text = st.text(max_size=20)
members = st.builds(fmt.MemberValue, text, st.one_of(st.none(), text), text, text, st.integers(0, 2**31 - 1),
                    st.integers(0, 2**31 - 1), st.binary(max_size=30), st.binary(max_size=30))


@given(st.builds(fmt.GroupValue, text, st.integers(0, 2**31 - 1), st.one_of(st.none(), text),
                 st.one_of(st.none(), text), st.integers(-1, 2**62), st.lists(members, max_size=4).map(tuple)),
       st.builds(fmt.OffsetValue, st.integers(-1, 2**62), st.integers(-1, 2**31 - 1), text, st.integers(-1, 2**62)),
       text, text, st.integers(0, 2**31 - 1))
def test_every_record_reads_back_as_written(group, offset, g, t, p):
    assert fmt.decode_group_value(fmt.encode_group_value(group)) == group
    assert fmt.decode_offset_value(fmt.encode_offset_value(offset)) == offset
    assert fmt.decode_key(fmt.encode_offset_key(g, t, p)) == fmt.OffsetKey(g, t, p)
    assert fmt.decode_key(fmt.encode_group_key(g)) == fmt.GroupKey(g)


# ---- golden bytes, written out by hand from Kafka's OffsetCommitKey/Value.json and
# GroupMetadataKey/Value.json (non-flexible versions; fields in declaration order) ----

GRP, ORD = b"grp".hex(), b"orders".hex()
GOLDEN_OFFSET_VALUE = {   # offset 42, leaderEpoch 7 (3+), metadata "m", commitTimestamp 99, expireTimestamp 5 (1 only)
    0: "0000" "000000000000002a" "0001" "6d" "0000000000000063",
    1: "0001" "000000000000002a" "0001" "6d" "0000000000000063" "0000000000000005",
    2: "0002" "000000000000002a" "0001" "6d" "0000000000000063",
    3: "0003" "000000000000002a" "00000007" "0001" "6d" "0000000000000063",
}
MEMBER = {   # memberId "m", groupInstanceId "i" (3+), clientId "c", clientHost "h",
             # rebalanceTimeout 9000 (1+), sessionTimeout 6000, subscription "S", assignment "A"
    0: "0001" "6d" + "0001" "63" "0001" "68" + "00001770" + "00000001" "53" "00000001" "41",
    1: "0001" "6d" + "0001" "63" "0001" "68" + "00002328" "00001770" + "00000001" "53" "00000001" "41",
    3: "0001" "6d" + "0001" "69" + "0001" "63" "0001" "68" + "00002328" "00001770" + "00000001" "53" "00000001" "41",
}
MEMBER[2] = MEMBER[1]
GROUP_HEAD = "0008" + b"consumer".hex() + "00000005" + "0005" + b"range".hex() + "0001" "6d"
GOLDEN_GROUP_VALUE = {   # protocolType, generation, protocol, leader, currentStateTimestamp (2+), members
    v: f"000{v}" + GROUP_HEAD + ("0000000000000063" if v >= 2 else "") + "00000001" + MEMBER[v] for v in range(4)
}


def test_keys_are_kafkas_bytes():
    assert fmt.encode_offset_key("grp", "orders", 3).hex() == "0001" "0003" + GRP + "0006" + ORD + "00000003"
    assert fmt.encode_group_key("grp").hex() == "0002" "0003" + GRP


@pytest.mark.parametrize("version", range(4))
def test_offset_commit_values_of_every_version_are_kafkas_bytes(version):
    wire = fmt.OffsetCommitValue(offset=42, leader_epoch=7, metadata="m", commit_timestamp=99, expire_timestamp=5)
    assert wire.encode_versioned(version).hex() == GOLDEN_OFFSET_VALUE[version]
    assert fmt.decode_offset_value(bytes.fromhex(GOLDEN_OFFSET_VALUE[version])) == fmt.OffsetValue(
        42, 7 if version >= 3 else -1, "m", 99, 5 if version == 1 else -1)


def test_odradek_writes_offset_commit_value_v3():
    value = fmt.OffsetValue(42, 7, "m", 99, expire_timestamp=5)
    assert fmt.encode_offset_value(value).hex() == GOLDEN_OFFSET_VALUE[3]


@pytest.mark.parametrize("version", range(4))
def test_group_metadata_values_of_every_version_are_kafkas_bytes(version):
    wire = fmt.GroupMetadataValue(
        protocol_type="consumer", generation=5, protocol="range", leader="m", current_state_timestamp=99,
        members=[fmt.MemberMetadata(member_id="m", group_instance_id="i", client_id="c", client_host="h",
                                    rebalance_timeout=9000, session_timeout=6000, subscription=b"S",
                                    assignment=b"A")])
    assert wire.encode_versioned(version).hex() == GOLDEN_GROUP_VALUE[version]
    member = fmt.MemberValue("m", "i" if version >= 3 else None, "c", "h", 9000 if version >= 1 else 6000, 6000,
                             b"S", b"A")
    assert fmt.decode_group_value(bytes.fromhex(GOLDEN_GROUP_VALUE[version])) == fmt.GroupValue(
        "consumer", 5, "range", "m", 99 if version >= 2 else -1, (member,))
    if version == fmt.GROUP_VALUE_VERSION:
        assert fmt.encode_group_value(fmt.decode_group_value(bytes.fromhex(GOLDEN_GROUP_VALUE[3]))).hex() \
            == GOLDEN_GROUP_VALUE[3]


def test_a_flexible_value_version_is_not_known():
    with pytest.raises(fmt.FormatError, match="OffsetCommitValue version 4 is not known"):
        fmt.decode_offset_value(b"\x00\x04" + bytes.fromhex(GOLDEN_OFFSET_VALUE[3])[2:])
    with pytest.raises(fmt.FormatError, match="GroupMetadataValue version 4 is not known"):
        fmt.decode_group_value(b"\x00\x04" + bytes.fromhex(GOLDEN_GROUP_VALUE[3])[2:])


def test_a_string_too_long_for_an_int16_length_is_a_format_error_on_write():
    with pytest.raises(fmt.FormatError, match="exceeds"):
        fmt.encode_group_key("g" * 40000)
