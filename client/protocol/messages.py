"""Every control-plane message, declared once as a table. Nothing else defines one.

This module is the import point (`from odradek.client.protocol import messages as m`);
the tables live beside it, one module per family:

    _messages_base      api keys, enumerated values, PassedFd, ErrorBody
    _messages_admin     ApiVersions, Metadata, topics, configs, partitions, DeleteRecords,
                        Status
    _messages_data      ListOffsets, OffsetForLeaderEpoch, InitProducerId, OpenProducer, OpenFetch, GetSegment,
                        DetachProducer, AppendRecords
    _messages_replicas  IsrProposal, UpdateIsr, LeaderAndIsr, MoveReplicas
    _messages_groups    the consumer-group APIs
    _messages_txn       the transaction APIs (KIP-98): AddPartitionsToTxn, AddOffsetsToTxn,
                        EndTxn, TxnOffsetCommit, DescribeTransactions, ListTransactions;
                        WriteTxnMarker (broker -> partition leader)

and this module holds the APIS table that pairs them with their versions.

Each message or nested struct is a Struct whose FIELDS rows read
    (field name, wire type, default, since_version)
and whose codec is generated from the rows (see _schema.py). Requests and responses
carry API_KEY; the APIS table at the bottom gives each api its supported versions.

Rules for editing this file (PROTOCOL.md, "Versioning"):
- Names and keys mirror Apache Kafka where Kafka has the API or field (snake_case of
  Kafka's JSON field names); odradek's own APIs use keys from 1000 up.
- A change to a message's wire form is a new version: add fields with since_version =
  the new version, raise max_version in APIS, never reorder or retype a field.
- A top-level failure travels as an error response (flags ERROR), not as fields; a body
  carries error_code/error_message only where items fail separately (per topic, per
  partition) or where the error comes with data the client needs (JoinGroup's
  MEMBER_ID_REQUIRED comes with the member_id to rejoin with).
- A response that passes file descriptors describes them in `fds`, one PassedFd per
  descriptor, in the order they were passed.
- Replica ids (leader_id, replica_nodes, isr_nodes) are log dir ids: the index of the
  replica's log dir in the broker's configured log dirs (one broker, one replica per dir).
"""
from odradek.client.protocol._schema import Api, ApiTable
from odradek.client.protocol._messages_base import (
    ApiKey, LATEST_TIMESTAMP, EARLIEST_TIMESTAMP, MAX_TIMESTAMP, ACKS_ALL, ConfigResourceType,
    ConfigOperation, ConfigSource, IsolationLevel, CoordinatorType, FdKind, PassedFd,
    ErrorBody)
from odradek.client.protocol._messages_admin import (
    ApiVersionsRequest, ApiVersion, ApiVersionsResponse, MetadataRequest,
    MetadataResponsePartition, MetadataResponseTopic, MetadataResponse, CreatableReplicaAssignment, CreatableTopic,
    CreateTopicsRequest, CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse, DeleteTopicsRequest,
    DeletableTopicResult, DeleteTopicsResponse, DescribeConfigsResource,
    DescribeConfigsRequest, DescribeConfigsResourceResult, DescribeConfigsResult,
    DescribeConfigsResponse, AlterableConfig, AlterConfigsResource,
    IncrementalAlterConfigsRequest, AlterConfigsResourceResponse,
    IncrementalAlterConfigsResponse, CreatePartitionsAssignment, CreatePartitionsTopic,
    CreatePartitionsRequest, CreatePartitionsTopicResult, CreatePartitionsResponse,
    DeleteRecordsPartition, DeleteRecordsTopic, DeleteRecordsRequest, DeleteRecordsPartitionResult,
    DeleteRecordsTopicResult, DeleteRecordsResponse, StatusRequest, WorkerStatus, FollowerStatus, PartitionStatus,
    LogDirStatus, ListenerStatus, StatusResponse)
from odradek.client.protocol._messages_data import (
    ListOffsetsPartition, ListOffsetsTopic, ListOffsetsRequest,
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    InitProducerIdRequest, InitProducerIdResponse, OpenProducerRequest,
    OpenProducerResponse, DetachProducerRequest, DetachProducerResponse,
    AppendRecordsRequest, AppendRecordsResponse, OpenFetchRequest, OpenFetchResponse,
    GetSegmentRequest, GetSegmentResponse, AbortedTransaction)
from odradek.client.protocol._messages_replicas import (
    IsrProposalRequest, IsrProposalResponse, UpdateIsrRequest, UpdateIsrResponse,
    LeaderAndIsrRequest, LeaderAndIsrResponse, ReplicaMove, MoveReplicasRequest,
    ReplicaMoveResult, MoveReplicasResponse)
from odradek.client.protocol._messages_txn import (
    WriteTxnMarkerRequest, WriteTxnMarkerResponse, AddPartitionsToTxnTopic,
    AddPartitionsToTxnRequest, AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    AddPartitionsToTxnResponse, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, EndTxnRequest,
    EndTxnResponse, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    TxnOffsetCommitRequest, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    TxnOffsetCommitResponse, DescribeTransactionsRequest, DescribeTransactionsTopicData,
    DescribedTransaction, DescribeTransactionsResponse, ListTransactionsRequest, ListedTransaction,
    ListTransactionsResponse)
from odradek.client.protocol._messages_groups import (
    FindCoordinatorRequest, FindCoordinatorResponse, JoinGroupRequestProtocol,
    JoinGroupRequest, JoinGroupResponseMember, JoinGroupResponse,
    SyncGroupRequestAssignment, SyncGroupRequest, SyncGroupResponse, HeartbeatRequest,
    HeartbeatResponse, MemberIdentity, LeaveGroupRequest, MemberResponse,
    LeaveGroupResponse, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    OffsetCommitRequest, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    OffsetCommitResponse, OffsetFetchRequestTopic, OffsetFetchRequest,
    OffsetFetchResponsePartition, OffsetFetchResponseTopic, OffsetFetchResponse,
    ListGroupsRequest, ListedGroup, ListGroupsResponse, DescribeGroupsRequest,
    DescribedGroupMember, DescribedGroup, DescribeGroupsResponse, DeleteGroupsRequest,
    DeletableGroupResult, DeleteGroupsResponse, OffsetDeleteRequestTopic, OffsetDeleteRequest,
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic, OffsetDeleteResponse)


# ---- The table of APIs -----------------------------------------------------------------

APIS = ApiTable([
    #   key                                  request                          response                          min max
    Api(ApiKey.API_VERSIONS,                 ApiVersionsRequest,              ApiVersionsResponse,              0,  0),
    Api(ApiKey.METADATA,                     MetadataRequest,                 MetadataResponse,                 0,  1),
    Api(ApiKey.CREATE_TOPICS,                CreateTopicsRequest,             CreateTopicsResponse,             0,  1),
    Api(ApiKey.DELETE_TOPICS,                DeleteTopicsRequest,             DeleteTopicsResponse,             0,  1),
    Api(ApiKey.DELETE_RECORDS,               DeleteRecordsRequest,            DeleteRecordsResponse,            0,  0),
    Api(ApiKey.DESCRIBE_CONFIGS,             DescribeConfigsRequest,          DescribeConfigsResponse,          0,  0),
    Api(ApiKey.INCREMENTAL_ALTER_CONFIGS,    IncrementalAlterConfigsRequest,  IncrementalAlterConfigsResponse,  0,  0),
    Api(ApiKey.CREATE_PARTITIONS,            CreatePartitionsRequest,         CreatePartitionsResponse,         0,  0),
    Api(ApiKey.LIST_OFFSETS,                 ListOffsetsRequest,              ListOffsetsResponse,              0,  0),
    Api(ApiKey.INIT_PRODUCER_ID,             InitProducerIdRequest,           InitProducerIdResponse,           0,  0),
    Api(ApiKey.OFFSET_FOR_LEADER_EPOCH,      OffsetForLeaderEpochRequest,     OffsetForLeaderEpochResponse,     0,  0),
    Api(ApiKey.OPEN_PRODUCER,                OpenProducerRequest,             OpenProducerResponse,             0,  0),
    Api(ApiKey.OPEN_FETCH,                   OpenFetchRequest,                OpenFetchResponse,                0,  0),
    Api(ApiKey.GET_SEGMENT,                  GetSegmentRequest,               GetSegmentResponse,               0,  0),
    Api(ApiKey.STATUS,                       StatusRequest,                   StatusResponse,                   0,  1),
    Api(ApiKey.DETACH_PRODUCER,              DetachProducerRequest,           DetachProducerResponse,           0,  0),
    Api(ApiKey.APPEND_RECORDS,               AppendRecordsRequest,            AppendRecordsResponse,            0,  0),
    Api(ApiKey.ISR_PROPOSAL,                 IsrProposalRequest,              IsrProposalResponse,              0,  0),
    Api(ApiKey.UPDATE_ISR,                   UpdateIsrRequest,                UpdateIsrResponse,                0,  0),
    Api(ApiKey.LEADER_AND_ISR,               LeaderAndIsrRequest,             LeaderAndIsrResponse,             0,  0),
    Api(ApiKey.MOVE_REPLICAS,                MoveReplicasRequest,             MoveReplicasResponse,             0,  0),
    Api(ApiKey.WRITE_TXN_MARKER,             WriteTxnMarkerRequest,           WriteTxnMarkerResponse,           0,  0),
    Api(ApiKey.FIND_COORDINATOR,             FindCoordinatorRequest,          FindCoordinatorResponse,          0,  0),
    Api(ApiKey.JOIN_GROUP,                   JoinGroupRequest,                JoinGroupResponse,                0,  1),
    Api(ApiKey.SYNC_GROUP,                   SyncGroupRequest,                SyncGroupResponse,                0,  0),
    Api(ApiKey.HEARTBEAT,                    HeartbeatRequest,                HeartbeatResponse,                0,  0),
    Api(ApiKey.LEAVE_GROUP,                  LeaveGroupRequest,               LeaveGroupResponse,               0,  0),
    Api(ApiKey.OFFSET_COMMIT,                OffsetCommitRequest,             OffsetCommitResponse,             0,  0),
    Api(ApiKey.OFFSET_FETCH,                 OffsetFetchRequest,              OffsetFetchResponse,              0,  0),
    Api(ApiKey.LIST_GROUPS,                  ListGroupsRequest,               ListGroupsResponse,               0,  0),
    Api(ApiKey.DESCRIBE_GROUPS,              DescribeGroupsRequest,           DescribeGroupsResponse,           0,  0),
    Api(ApiKey.DELETE_GROUPS,                DeleteGroupsRequest,             DeleteGroupsResponse,             0,  0),
    Api(ApiKey.OFFSET_DELETE,                OffsetDeleteRequest,             OffsetDeleteResponse,             0,  0),
    Api(ApiKey.ADD_PARTITIONS_TO_TXN,        AddPartitionsToTxnRequest,       AddPartitionsToTxnResponse,       0,  0),
    Api(ApiKey.ADD_OFFSETS_TO_TXN,           AddOffsetsToTxnRequest,          AddOffsetsToTxnResponse,          0,  0),
    Api(ApiKey.END_TXN,                      EndTxnRequest,                   EndTxnResponse,                   0,  0),
    Api(ApiKey.TXN_OFFSET_COMMIT,            TxnOffsetCommitRequest,          TxnOffsetCommitResponse,          0,  0),
    Api(ApiKey.DESCRIBE_TRANSACTIONS,        DescribeTransactionsRequest,     DescribeTransactionsResponse,     0,  0),
    Api(ApiKey.LIST_TRANSACTIONS,            ListTransactionsRequest,         ListTransactionsResponse,         0,  0),
])

# The consumer-group APIs: the broker hands these requests to its group coordinator
# (daemon/broker/handlers.py).
GROUP_API_KEYS = (
    ApiKey.FIND_COORDINATOR, ApiKey.JOIN_GROUP, ApiKey.SYNC_GROUP, ApiKey.HEARTBEAT,
    ApiKey.LEAVE_GROUP, ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH, ApiKey.LIST_GROUPS,
    ApiKey.DESCRIBE_GROUPS, ApiKey.DELETE_GROUPS, ApiKey.TXN_OFFSET_COMMIT, ApiKey.OFFSET_DELETE,
)

# The transaction APIs the broker hands to its transaction coordinator (handlers.py), with
# InitProducerId when it carries a transactional id. (TxnOffsetCommit goes to the group
# coordinator, with the group APIs.)
TXN_API_KEYS = (
    ApiKey.ADD_PARTITIONS_TO_TXN, ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN,
    ApiKey.DESCRIBE_TRANSACTIONS, ApiKey.LIST_TRANSACTIONS,
)


def api_versions_response(apis=APIS):
    """The ApiVersionsResponse a server serving `apis` sends."""
    return ApiVersionsResponse(api_keys=[
        ApiVersion(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
        for a in apis])
