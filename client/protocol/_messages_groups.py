"""Consumer-group messages: Kafka's classic group protocol (FindCoordinator, JoinGroup,
SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
DescribeGroups, DeleteGroups, OffsetDelete). The bytes members exchange inside JoinGroup and SyncGroup
are in `consumer_protocol`. Declared as tables (see `messages` for the rules); import
them from `messages`.
"""
from odradek.client.protocol._schema import (
    BOOL, BYTES, INT8, INT16, INT32, INT64, NULLABLE_STRING, STRING, Array, Struct)
from odradek.client.protocol._messages_base import ApiKey, CoordinatorType


# ---- Consumer groups: Kafka's classic group protocol --------------------------------------

class FindCoordinatorRequest(Struct):
    API_KEY = ApiKey.FIND_COORDINATOR
    FIELDS = [
        ("key",       STRING,  "",                    0),   # the group id
        ("key_type",  INT8,    CoordinatorType.GROUP,  0),
    ]


class FindCoordinatorResponse(Struct):
    API_KEY = ApiKey.FIND_COORDINATOR
    FIELDS = [
        ("node_id",  INT32,  0,  0),   # always this broker; kept for Kafka-shaped clients
    ]


class JoinGroupRequestProtocol(Struct):
    FIELDS = [
        ("name",      STRING,  "",   0),   # assignor name, e.g. "range"
        ("metadata",  BYTES,   b"",  0),
    ]


class JoinGroupRequest(Struct):
    API_KEY = ApiKey.JOIN_GROUP
    FIELDS = [
        ("group_id",              STRING,                          "",          0),
        ("session_timeout_ms",    INT32,                           45000,       0),
        ("rebalance_timeout_ms",  INT32,                           300000,      0),
        ("member_id",             STRING,                          "",          0),
        ("group_instance_id",     NULLABLE_STRING,                 None,        0),
        ("protocol_type",         STRING,                          "consumer",  0),
        ("protocols",             Array(JoinGroupRequestProtocol),  [],          0),
        ("reason",                NULLABLE_STRING,                 None,        0),
        # Kafka carries client.id in every request header; odradek's frame header has no
        # such field, so the member says it here (member ids are <client.id>-<uuid>)
        ("client_id",             STRING,                          "",          0),
        # where a member that is not this connection's process is (the Kafka gateway's TCP
        # client: "/127.0.0.1:54321"); DescribeGroups shows it instead of the pid and uid
        ("client_host",           NULLABLE_STRING,                 None,        1),
    ]


class JoinGroupResponseMember(Struct):
    FIELDS = [
        ("member_id",          STRING,           "",    0),
        ("group_instance_id",  NULLABLE_STRING,  None,  0),
        ("metadata",           BYTES,            b"",   0),
    ]


class JoinGroupResponse(Struct):
    API_KEY = ApiKey.JOIN_GROUP
    FIELDS = [
        ("error_code",       INT16,                          0,      0),  # MEMBER_ID_REQUIRED
        ("error_message",    NULLABLE_STRING,                None,   0),  # comes with member_id
        ("generation_id",    INT32,                          -1,     0),
        ("protocol_type",    NULLABLE_STRING,                None,   0),
        ("protocol_name",    NULLABLE_STRING,                None,   0),
        ("leader",           STRING,                         "",     0),
        ("skip_assignment",  BOOL,                           False,  0),
        ("member_id",        STRING,                         "",     0),
        ("members",          Array(JoinGroupResponseMember),  [],     0),  # leader only
    ]


class SyncGroupRequestAssignment(Struct):
    FIELDS = [
        ("member_id",   STRING,  "",   0),
        ("assignment",  BYTES,   b"",  0),
    ]


class SyncGroupRequest(Struct):
    API_KEY = ApiKey.SYNC_GROUP
    FIELDS = [
        ("group_id",           STRING,                             "",    0),
        ("generation_id",      INT32,                              -1,    0),
        ("member_id",          STRING,                             "",    0),
        ("group_instance_id",  NULLABLE_STRING,                    None,  0),
        ("protocol_type",      NULLABLE_STRING,                    None,  0),
        ("protocol_name",      NULLABLE_STRING,                    None,  0),
        ("assignments",        Array(SyncGroupRequestAssignment),  [],    0),  # leader only
    ]


class SyncGroupResponse(Struct):
    API_KEY = ApiKey.SYNC_GROUP
    FIELDS = [
        ("protocol_type",  NULLABLE_STRING,  None,  0),
        ("protocol_name",  NULLABLE_STRING,  None,  0),
        ("assignment",     BYTES,            b"",   0),
    ]


class HeartbeatRequest(Struct):
    API_KEY = ApiKey.HEARTBEAT
    FIELDS = [
        ("group_id",           STRING,           "",    0),
        ("generation_id",      INT32,            -1,    0),
        ("member_id",          STRING,           "",    0),
        ("group_instance_id",  NULLABLE_STRING,  None,  0),
    ]


class HeartbeatResponse(Struct):
    API_KEY = ApiKey.HEARTBEAT
    FIELDS = []


class MemberIdentity(Struct):
    FIELDS = [
        ("member_id",          STRING,           "",    0),
        ("group_instance_id",  NULLABLE_STRING,  None,  0),
        ("reason",             NULLABLE_STRING,  None,  0),
    ]


class LeaveGroupRequest(Struct):
    API_KEY = ApiKey.LEAVE_GROUP
    FIELDS = [
        ("group_id",  STRING,                 "",  0),
        ("members",   Array(MemberIdentity),  [],  0),
    ]


class MemberResponse(Struct):
    FIELDS = [
        ("member_id",          STRING,           "",    0),
        ("group_instance_id",  NULLABLE_STRING,  None,  0),
        ("error_code",         INT16,            0,     0),
        ("error_message",      NULLABLE_STRING,  None,  0),
    ]


class LeaveGroupResponse(Struct):
    API_KEY = ApiKey.LEAVE_GROUP
    FIELDS = [
        ("members",  Array(MemberResponse),  [],  0),
    ]


class OffsetCommitRequestPartition(Struct):
    FIELDS = [
        ("partition_index",         INT32,            0,     0),
        ("committed_offset",        INT64,            -1,    0),
        ("committed_leader_epoch",  INT32,            -1,    0),
        ("committed_metadata",      NULLABLE_STRING,  None,  0),
    ]


class OffsetCommitRequestTopic(Struct):
    FIELDS = [
        ("name",        STRING,                               "",  0),
        ("partitions",  Array(OffsetCommitRequestPartition),  [],  0),
    ]


class OffsetCommitRequest(Struct):
    API_KEY = ApiKey.OFFSET_COMMIT
    FIELDS = [
        ("group_id",           STRING,                           "",    0),
        ("generation_id",      INT32,                            -1,    0),  # -1: standalone
        ("member_id",          STRING,                           "",    0),
        ("group_instance_id",  NULLABLE_STRING,                  None,  0),
        ("topics",             Array(OffsetCommitRequestTopic),  [],    0),
    ]


class OffsetCommitResponsePartition(Struct):
    FIELDS = [
        ("partition_index",  INT32,            0,     0),
        ("error_code",       INT16,            0,     0),
        ("error_message",    NULLABLE_STRING,  None,  0),
    ]


class OffsetCommitResponseTopic(Struct):
    FIELDS = [
        ("name",        STRING,                                "",  0),
        ("partitions",  Array(OffsetCommitResponsePartition),  [],  0),
    ]


class OffsetCommitResponse(Struct):
    API_KEY = ApiKey.OFFSET_COMMIT
    FIELDS = [
        ("topics",  Array(OffsetCommitResponseTopic),  [],  0),
    ]


class OffsetFetchRequestTopic(Struct):
    FIELDS = [
        ("name",               STRING,        "",  0),
        ("partition_indexes",  Array(INT32),  [],  0),
    ]


class OffsetFetchRequest(Struct):
    API_KEY = ApiKey.OFFSET_FETCH
    FIELDS = [
        ("group_id",        STRING,                                          "",     0),
        ("topics",          Array(OffsetFetchRequestTopic, nullable=True),  None,   0),  # null: all
        ("require_stable",  BOOL,                                            False,  0),
    ]


class OffsetFetchResponsePartition(Struct):
    FIELDS = [
        ("partition_index",         INT32,            0,     0),
        ("committed_offset",        INT64,            -1,    0),   # -1: nothing committed
        ("committed_leader_epoch",  INT32,            -1,    0),
        ("metadata",                NULLABLE_STRING,  None,  0),
        ("error_code",              INT16,            0,     0),
        ("error_message",           NULLABLE_STRING,  None,  0),
    ]


class OffsetFetchResponseTopic(Struct):
    FIELDS = [
        ("name",        STRING,                               "",  0),
        ("partitions",  Array(OffsetFetchResponsePartition),  [],  0),
    ]


class OffsetFetchResponse(Struct):
    API_KEY = ApiKey.OFFSET_FETCH
    FIELDS = [
        ("topics",  Array(OffsetFetchResponseTopic),  [],  0),
    ]


class ListGroupsRequest(Struct):
    API_KEY = ApiKey.LIST_GROUPS
    FIELDS = [
        ("states_filter",  Array(STRING),  [],  0),   # empty: every state
    ]


class ListedGroup(Struct):
    FIELDS = [
        ("group_id",       STRING,  "",  0),
        ("protocol_type",  STRING,  "",  0),
        ("group_state",    STRING,  "",  0),
    ]


class ListGroupsResponse(Struct):
    API_KEY = ApiKey.LIST_GROUPS
    FIELDS = [
        ("groups",  Array(ListedGroup),  [],  0),
    ]


class DescribeGroupsRequest(Struct):
    API_KEY = ApiKey.DESCRIBE_GROUPS
    FIELDS = [
        ("groups",  Array(STRING),  [],  0),
    ]


class DescribedGroupMember(Struct):
    FIELDS = [
        ("member_id",          STRING,           "",    0),
        ("group_instance_id",  NULLABLE_STRING,  None,  0),
        ("client_id",          STRING,           "",    0),
        ("client_host",        STRING,           "",    0),   # e.g. "pid:4242 uid:1000" (from SO_PEERCRED)
        ("member_metadata",    BYTES,            b"",   0),
        ("member_assignment",  BYTES,            b"",   0),
    ]


class DescribedGroup(Struct):
    FIELDS = [
        ("error_code",     INT16,                       0,     0),
        ("error_message",  NULLABLE_STRING,             None,  0),
        ("group_id",       STRING,                      "",    0),
        ("group_state",    STRING,                      "",    0),
        ("protocol_type",  STRING,                      "",    0),
        ("protocol_data",  STRING,                      "",    0),   # the chosen assignor
        ("members",        Array(DescribedGroupMember),  [],    0),
    ]


class DescribeGroupsResponse(Struct):
    API_KEY = ApiKey.DESCRIBE_GROUPS
    FIELDS = [
        ("groups",  Array(DescribedGroup),  [],  0),
    ]


class DeleteGroupsRequest(Struct):
    API_KEY = ApiKey.DELETE_GROUPS
    FIELDS = [
        ("groups_names",  Array(STRING),  [],  0),
    ]


class DeletableGroupResult(Struct):
    FIELDS = [
        ("group_id",       STRING,           "",    0),
        ("error_code",     INT16,            0,     0),
        ("error_message",  NULLABLE_STRING,  None,  0),
    ]


class DeleteGroupsResponse(Struct):
    API_KEY = ApiKey.DELETE_GROUPS
    FIELDS = [
        ("results",  Array(DeletableGroupResult),  [],  0),
    ]


class OffsetDeleteRequestTopic(Struct):
    FIELDS = [
        ("name",        STRING,        "",  0),
        ("partitions",  Array(INT32),  [],  0),
    ]


class OffsetDeleteRequest(Struct):
    """Delete a group's committed offsets of some partitions (Kafka's OffsetDelete, key
    47): all of them while the group is Empty; while it has members, only those of
    topics no member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC for the others)."""
    API_KEY = ApiKey.OFFSET_DELETE
    FIELDS = [
        ("group_id",  STRING,                           "",  0),
        ("topics",    Array(OffsetDeleteRequestTopic),  [],  0),
    ]


class OffsetDeleteResponsePartition(Struct):
    FIELDS = [
        ("partition_index",  INT32,            0,     0),
        ("error_code",       INT16,            0,     0),
        ("error_message",    NULLABLE_STRING,  None,  0),
    ]


class OffsetDeleteResponseTopic(Struct):
    FIELDS = [
        ("name",        STRING,                                "",  0),
        ("partitions",  Array(OffsetDeleteResponsePartition),  [],  0),
    ]


class OffsetDeleteResponse(Struct):
    API_KEY = ApiKey.OFFSET_DELETE
    FIELDS = [
        ("topics",  Array(OffsetDeleteResponseTopic),  [],  0),
    ]
