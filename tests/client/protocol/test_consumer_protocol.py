"""Kafka's consumer protocol records, pinned to the bytes of Kafka's schemas
(ConsumerProtocolSubscription.json, ConsumerProtocolAssignment.json: non-flexible, fields
in declaration order, each record prefixed by its int16 version). The golden strings are
written out by hand from those schemas, field by field."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek.client.protocol import RemoteProtocolError
from odradek.client.protocol import consumer_protocol as cp

TP = cp.TopicPartition
SUB = cp.ConsumerProtocolSubscription(
    topics=["orders", "audit"], user_data=b"\x2a",
    owned_partitions=[TP(topic="orders", partitions=[0, 2])], generation_id=7)

TOPICS = "00000002" "0006" + "orders".encode().hex() + "0005" + "audit".encode().hex()
USER_DATA = "00000001" "2a"
OWNED = "00000001" "0006" + "orders".encode().hex() + "00000002" "00000000" "00000002"

GOLDEN_SUBSCRIPTION = {
    0: "0000" + TOPICS + USER_DATA,                            # Topics, UserData
    1: "0001" + TOPICS + USER_DATA + OWNED,                    # + OwnedPartitions (1+)
    2: "0002" + TOPICS + USER_DATA + OWNED + "00000007",       # + GenerationId (2+)
}


@pytest.mark.parametrize("version", [0, 1, 2])
def test_subscription_bytes_are_kafkas_at_each_version(version):
    data = SUB.encode_versioned(version)
    assert data.hex() == GOLDEN_SUBSCRIPTION[version]
    read_version, back = cp.decode_versioned(cp.ConsumerProtocolSubscription, cp.SUBSCRIPTION_VERSIONS, data)
    assert read_version == version
    assert back.topics == SUB.topics and back.user_data == SUB.user_data
    assert back.owned_partitions == (SUB.owned_partitions if version >= 1 else [])
    assert back.generation_id == (7 if version >= 2 else -1)


def test_a_null_user_data_is_length_minus_one():
    data = cp.ConsumerProtocolSubscription(topics=["t"]).encode_versioned(0)
    assert data.hex() == "0000" "00000001" "0001" + b"t".hex() + "ffffffff"


@pytest.mark.parametrize("version", [0, 1, 2])
def test_assignment_bytes_are_kafkas_and_the_same_at_each_version(version):
    assignment = cp.ConsumerProtocolAssignment(
        assigned_partitions=[TP(topic="a", partitions=[1]), TP(topic="b", partitions=[])], user_data=None)
    data = assignment.encode_versioned(version)
    assert data.hex() == (f"000{version}" "00000002" "0001" + b"a".hex() + "00000001" "00000001"
                          + "0001" + b"b".hex() + "00000000" + "ffffffff")
    assert cp.decode_versioned(cp.ConsumerProtocolAssignment, cp.ASSIGNMENT_VERSIONS, data) == (version, assignment)


def test_a_newer_version_is_read_with_the_newest_layout_and_its_extra_fields_dropped():
    v3 = bytes.fromhex("0003" + GOLDEN_SUBSCRIPTION[2][4:]) + b"\x00\x04rack"
    version, back = cp.decode_versioned(cp.ConsumerProtocolSubscription, cp.SUBSCRIPTION_VERSIONS, v3)
    assert version == 3 and back == SUB


def test_a_known_version_with_bytes_after_its_last_field_is_garbage():
    with pytest.raises(RemoteProtocolError, match="bytes after the last field"):
        cp.decode_versioned(cp.ConsumerProtocolSubscription, cp.SUBSCRIPTION_VERSIONS,
                            bytes.fromhex(GOLDEN_SUBSCRIPTION[2]) + b"\x00")


names = st.text(max_size=8)
topic_partitions = st.lists(st.builds(TP, topic=names, partitions=st.lists(st.integers(-2**31, 2**31 - 1),
                                                                           max_size=4)), max_size=4)


@given(st.builds(cp.ConsumerProtocolSubscription, topics=st.lists(names, max_size=4),
                 user_data=st.one_of(st.none(), st.binary(max_size=8)), owned_partitions=topic_partitions,
                 generation_id=st.integers(-2**31, 2**31 - 1)))
def test_every_subscription_reads_back_as_written_at_version_2(sub):
    assert cp.decode_versioned(cp.ConsumerProtocolSubscription, cp.SUBSCRIPTION_VERSIONS,
                               sub.encode_versioned(2)) == (2, sub)


@given(st.binary(max_size=48))
def test_garbage_raises_a_remote_protocol_error_and_nothing_else(data):
    for cls, versions in ((cp.ConsumerProtocolSubscription, cp.SUBSCRIPTION_VERSIONS),
                          (cp.ConsumerProtocolAssignment, cp.ASSIGNMENT_VERSIONS)):
        try:
            cp.decode_versioned(cls, versions, data)
        except RemoteProtocolError:
            pass
