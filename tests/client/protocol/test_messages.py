"""Every message of the API table: round trips, and the table's own consistency."""
import pytest
from hypothesis import given, settings, strategies as st

from odradek.client.protocol import APIS, GROUP_API_KEYS, ApiKey, Struct, messages as m

MESSAGES = [cls for api in APIS for cls in (api.request, api.response)]
VERSIONED = [(cls, v) for api in APIS for cls in (api.request, api.response)
             for v in range(api.min_version, api.max_version + 1)]


def ids(item):
    return f"{item[0].__name__}-v{item[1]}"


@pytest.mark.parametrize("cls, version", VERSIONED, ids=[ids(x) for x in VERSIONED])
def test_every_message_round_trips_with_its_defaults(cls, version):
    assert cls.decode(cls().encode(version), version) == cls()


@pytest.mark.parametrize("cls, version", VERSIONED, ids=[ids(x) for x in VERSIONED])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_message_round_trips_with_full_values(strategies, cls, version, data):
    message = data.draw(strategies.message(cls, version))
    assert cls.decode(message.encode(version), version) == message


def test_a_fully_populated_metadata_response_round_trips():
    response = m.MetadataResponse(cluster_id="c1", topics=[m.MetadataResponseTopic(
        name="orders", is_internal=False, partitions=[m.MetadataResponsePartition(
            partition_index=p, leader_id=p % 3, leader_epoch=4, replica_nodes=[0, 1, 2],
            isr_nodes=[0, 1], offline_replicas=[2],
            log_dirs=["/srv/a", "/srv/b", "/srv/c"]) for p in range(3)])])
    assert m.MetadataResponse.decode(response.encode(0), 0) == response


def test_create_topics_configs_travel_as_kafkas_array_of_name_value_pairs():
    request = m.CreateTopicsRequest(topics=[m.CreatableTopic(
        name="t", num_partitions=3, replication_factor=2,
        configs={"retention.ms": "1000", "cleanup.policy": None})], validate_only=True)
    body = request.encode(0)
    assert b"\x00\x00\x00\x02\x00\x0cretention.ms\x00\x041000\x00\x0ecleanup.policy\xff\xff" in body
    assert m.CreateTopicsRequest.decode(body, 0) == request


def test_every_request_and_response_carries_its_apis_key():
    for api in APIS:
        assert api.request.API_KEY == api.key, api
        assert api.response.API_KEY == api.key, api
        assert api.request.__name__ == api.name + "Request"
        assert api.response.__name__ == api.name + "Response"


def test_api_keys_mirror_kafka_and_our_own_start_at_1000():
    kafka = {"ListOffsets": 2, "Metadata": 3, "OffsetCommit": 8, "OffsetFetch": 9,
             "FindCoordinator": 10, "JoinGroup": 11, "Heartbeat": 12, "LeaveGroup": 13,
             "SyncGroup": 14, "DescribeGroups": 15, "ListGroups": 16, "ApiVersions": 18,
             "CreateTopics": 19, "DeleteTopics": 20, "DeleteRecords": 21, "InitProducerId": 22,
             "OffsetForLeaderEpoch": 23,
             "DescribeConfigs": 32, "CreatePartitions": 37, "DeleteGroups": 42,
             "IncrementalAlterConfigs": 44, "OffsetDelete": 47, "AddPartitionsToTxn": 24, "AddOffsetsToTxn": 25,
             "EndTxn": 26, "TxnOffsetCommit": 28, "DescribeTransactions": 65, "ListTransactions": 66}
    ours = {"OpenProducer", "OpenFetch", "GetSegment", "Status", "DetachProducer", "AppendRecords",
            "IsrProposal", "UpdateIsr", "LeaderAndIsr", "MoveReplicas", "WriteTxnMarker"}
    assert {a.name for a in APIS} == set(kafka) | ours
    for api in APIS:
        assert api.key == kafka[api.name] if api.name in kafka else api.key >= 1000


def test_every_api_key_enum_member_is_in_the_table():
    assert {int(k) for k in ApiKey} == {a.key for a in APIS}


def test_the_group_apis_are_declared_and_can_be_left_out_by_a_broker():
    without = APIS.without(*GROUP_API_KEYS)
    assert len(without) == len(APIS) - len(GROUP_API_KEYS) == 27
    assert ApiKey.JOIN_GROUP not in without and ApiKey.METADATA in without


def test_group_messages_use_kafkas_field_names():
    join = m.JoinGroupRequest()
    for name in ["group_id", "session_timeout_ms", "rebalance_timeout_ms", "member_id",
                 "group_instance_id", "protocol_type", "protocols"]:
        assert hasattr(join, name)
    assert [f.name for f in m.JoinGroupRequestProtocol._fields] == ["name", "metadata"]
    assert hasattr(m.SyncGroupRequest(), "assignments")
    assert hasattr(m.JoinGroupResponse(), "generation_id")


def test_api_versions_response_lists_exactly_the_served_apis():
    served = APIS.without(*GROUP_API_KEYS)
    response = m.api_versions_response(served)
    assert [(v.api_key, v.min_version, v.max_version) for v in response.api_keys] == \
        [(a.key, a.min_version, a.max_version) for a in served]


def test_every_nested_struct_in_messages_is_a_struct():
    for name in dir(m):
        obj = getattr(m, name)
        if isinstance(obj, type) and issubclass(obj, Struct) and obj is not Struct:
            obj().encode(0)   # each default encodes (also checked at declaration)


def test_list_offsets_special_timestamps_are_kafkas():
    assert (m.LATEST_TIMESTAMP, m.EARLIEST_TIMESTAMP) == (-1, -2)
    assert m.ListOffsetsPartition().timestamp == m.LATEST_TIMESTAMP


def test_transaction_messages_use_kafkas_field_names():
    assert [f.name for f in m.AddPartitionsToTxnRequest._fields] == [
        "transactional_id", "producer_id", "producer_epoch", "topics"]
    assert [f.name for f in m.EndTxnRequest._fields] == [
        "transactional_id", "producer_id", "producer_epoch", "committed"]
    assert [f.name for f in m.ListTransactionsRequest._fields] == [
        "state_filters", "producer_id_filters", "duration_filter"]
    assert set(m.TXN_API_KEYS) <= {a.key for a in APIS} and ApiKey.TXN_OFFSET_COMMIT in GROUP_API_KEYS
