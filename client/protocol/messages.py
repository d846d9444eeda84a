"""Every control-plane message, declared once as a table. Nothing else defines one.

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
from enum import IntEnum

from odradek.client.protocol._schema import (
    BOOL, BYTES, INT8, INT16, INT32, INT64, NULLABLE_BYTES, NULLABLE_STRING, STRING, Api,
    ApiTable, Array, Map, Struct)

# ---- Keys and enumerated values --------------------------------------------------------


class ApiKey(IntEnum):
    """api_key of each API: Kafka's number where Kafka has the API, 1000+ for our own."""
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OPEN_PRODUCER = 1000
    OPEN_FETCH = 1001
    GET_SEGMENT = 1002
    STATUS = 1003
    DETACH_PRODUCER = 1004
    APPEND_RECORDS = 1005
    ISR_PROPOSAL = 1006
    UPDATE_ISR = 1007
    LEADER_AND_ISR = 1008
    MOVE_REPLICAS = 1009


LATEST_TIMESTAMP = -1      # ListOffsets: the high watermark (the offset after the last committed record)
EARLIEST_TIMESTAMP = -2    # ListOffsets: the log start offset
ACKS_ALL = -1              # OpenProducer.acks: every in-sync replica (also 0 and 1)


class ConfigResourceType(IntEnum):
    TOPIC = 2
    BROKER = 4


class ConfigOperation(IntEnum):
    """IncrementalAlterConfigs operations (Kafka's numbers). A broker may refuse APPEND
    and SUBTRACT, which only apply to list-valued configs, with INVALID_REQUEST."""
    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class ConfigSource(IntEnum):
    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class IsolationLevel(IntEnum):
    READ_UNCOMMITTED = 0
    READ_COMMITTED = 1


class CoordinatorType(IntEnum):
    GROUP = 0
    TRANSACTION = 1


class FdKind:
    """PassedFd.kind values; the byte layouts behind them are in client/shm/LAYOUT.md and
    daemon/storage/FORMAT.md."""
    PRODUCE_RING = "produce-ring"          # memfd Ring: produce requests, producer -> leader
    COMPLETION_RING = "completion-ring"    # memfd Ring: completions, leader -> producer
    DOORBELL = "doorbell"                  # memfd Doorbell: its owner sleeps on it
    PARTITION_STATE = "partition-state"    # memfd, read-only: log start, HW, LEO, epoch, descriptors
    SEGMENT = "segment"                    # O_RDONLY fd of a .log segment file


# ---- Shared structs --------------------------------------------------------------------

class PassedFd(Struct):
    """What the file descriptor at the same index, passed with the response, is."""
    FIELDS = [
        # name               type     default  since
        ("kind",             STRING,  "",      0),   # an FdKind value
        ("size",             INT64,   0,       0),   # bytes to map (segment: bytes valid)
        ("base_offset",      INT64,   -1,      0),   # segment and index fds, else -1
        ("layout_version",   INT16,   0,       0),   # version of the shm layout
        ("writable",         BOOL,    False,   0),   # may be mapped PROT_WRITE
    ]


class ErrorBody(Struct):
    """The body of every error response (flags RESPONSE|ERROR), whatever the api."""
    FIELDS = [
        ("error_code",       INT16,            0,     0),
        ("error_message",    NULLABLE_STRING,  None,  0),
    ]


# ---- ApiVersions (18) ------------------------------------------------------------------

class ApiVersionsRequest(Struct):
    API_KEY = ApiKey.API_VERSIONS
    FIELDS = [
        ("client_software_name",     STRING,  "",  0),
        ("client_software_version",  STRING,  "",  0),
    ]


class ApiVersion(Struct):
    FIELDS = [
        ("api_key",      INT16,  0,  0),
        ("min_version",  INT16,  0,  0),
        ("max_version",  INT16,  0,  0),
    ]


class ApiVersionsResponse(Struct):
    API_KEY = ApiKey.API_VERSIONS
    FIELDS = [
        ("api_keys",  Array(ApiVersion),  [],  0),
    ]


# ---- Metadata (3) ----------------------------------------------------------------------

class MetadataRequest(Struct):
    API_KEY = ApiKey.METADATA
    FIELDS = [
        ("topics",                     Array(STRING, nullable=True),  None,   0),  # null: all
        ("allow_auto_topic_creation",  BOOL,                          False,  0),
    ]


class MetadataResponsePartition(Struct):
    FIELDS = [
        ("error_code",        INT16,            0,     0),
        ("error_message",     NULLABLE_STRING,  None,  0),
        ("partition_index",   INT32,            0,     0),
        ("leader_id",         INT32,            -1,    0),   # -1: no leader now
        ("leader_epoch",      INT32,            -1,    0),
        ("replica_nodes",     Array(INT32),     [],    0),
        ("isr_nodes",         Array(INT32),     [],    0),
        ("offline_replicas",  Array(INT32),     [],    0),
        ("log_dirs",          Array(STRING),    [],    0),   # one per replica_nodes entry
    ]


class MetadataResponseTopic(Struct):
    FIELDS = [
        ("error_code",     INT16,                             0,      0),
        ("error_message",  NULLABLE_STRING,                   None,   0),
        ("name",           STRING,                            "",     0),
        ("is_internal",    BOOL,                              False,  0),
        ("partitions",     Array(MetadataResponsePartition),  [],     0),
    ]


class MetadataResponse(Struct):
    API_KEY = ApiKey.METADATA
    FIELDS = [
        ("cluster_id",  NULLABLE_STRING,               None,  0),
        ("topics",      Array(MetadataResponseTopic),  [],    0),
    ]


# ---- CreateTopics (19) -----------------------------------------------------------------

class CreatableTopic(Struct):
    FIELDS = [
        ("name",                STRING,                         "",  0),
        ("num_partitions",      INT32,                          -1,  0),  # -1: broker default
        ("replication_factor",  INT16,                          -1,  0),  # -1: broker default
        ("configs",             Map(STRING, NULLABLE_STRING),   {},  0),  # Kafka's dotted names
    ]


class CreateTopicsRequest(Struct):
    API_KEY = ApiKey.CREATE_TOPICS
    FIELDS = [
        ("topics",         Array(CreatableTopic),  [],     0),
        ("timeout_ms",     INT32,                  30000,  0),
        ("validate_only",  BOOL,                   False,  0),
    ]


class CreatableTopicResult(Struct):
    FIELDS = [
        ("name",                STRING,           "",    0),
        ("error_code",          INT16,            0,     0),
        ("error_message",       NULLABLE_STRING,  None,  0),
        ("num_partitions",      INT32,            -1,    0),
        ("replication_factor",  INT16,            -1,    0),
    ]


class CreateTopicsResponse(Struct):
    API_KEY = ApiKey.CREATE_TOPICS
    FIELDS = [
        ("topics",  Array(CreatableTopicResult),  [],  0),
    ]


# ---- DeleteTopics (20) -----------------------------------------------------------------

class DeleteTopicsRequest(Struct):
    API_KEY = ApiKey.DELETE_TOPICS
    FIELDS = [
        ("topic_names",  Array(STRING),  [],     0),
        ("timeout_ms",   INT32,          30000,  0),
    ]


class DeletableTopicResult(Struct):
    FIELDS = [
        ("name",           STRING,           "",    0),
        ("error_code",     INT16,            0,     0),
        ("error_message",  NULLABLE_STRING,  None,  0),
    ]


class DeleteTopicsResponse(Struct):
    API_KEY = ApiKey.DELETE_TOPICS
    FIELDS = [
        ("responses",  Array(DeletableTopicResult),  [],  0),
    ]


# ---- DescribeConfigs (32) --------------------------------------------------------------

class DescribeConfigsResource(Struct):
    FIELDS = [
        ("resource_type",       INT8,                          ConfigResourceType.TOPIC,  0),
        ("resource_name",       STRING,                        "",                        0),
        ("configuration_keys",  Array(STRING, nullable=True),  None,                      0),  # null: all
    ]


class DescribeConfigsRequest(Struct):
    API_KEY = ApiKey.DESCRIBE_CONFIGS
    FIELDS = [
        ("resources",              Array(DescribeConfigsResource),  [],     0),
        ("include_synonyms",       BOOL,                            False,  0),
        ("include_documentation",  BOOL,                            False,  0),
    ]


class DescribeConfigsResourceResult(Struct):
    FIELDS = [
        ("name",           STRING,           "",                          0),
        ("value",          NULLABLE_STRING,  None,                        0),
        ("read_only",      BOOL,             False,                       0),
        ("config_source",  INT8,             ConfigSource.DEFAULT_CONFIG, 0),
        ("is_sensitive",   BOOL,             False,                       0),
        ("documentation",  NULLABLE_STRING,  None,                        0),
    ]


class DescribeConfigsResult(Struct):
    FIELDS = [
        ("error_code",     INT16,                                 0,                         0),
        ("error_message",  NULLABLE_STRING,                       None,                      0),
        ("resource_type",  INT8,                                  ConfigResourceType.TOPIC,  0),
        ("resource_name",  STRING,                                "",                        0),
        ("configs",        Array(DescribeConfigsResourceResult),  [],                        0),
    ]


class DescribeConfigsResponse(Struct):
    API_KEY = ApiKey.DESCRIBE_CONFIGS
    FIELDS = [
        ("results",  Array(DescribeConfigsResult),  [],  0),
    ]


# ---- IncrementalAlterConfigs (44): set / delete one key at a time ----------------------

class AlterableConfig(Struct):
    FIELDS = [
        ("name",              STRING,           "",                   0),
        ("config_operation",  INT8,             ConfigOperation.SET,  0),
        ("value",             NULLABLE_STRING,  None,                 0),  # null for DELETE
    ]


class AlterConfigsResource(Struct):
    FIELDS = [
        ("resource_type",  INT8,                    ConfigResourceType.TOPIC,  0),
        ("resource_name",  STRING,                  "",                        0),
        ("configs",        Array(AlterableConfig),  [],                        0),
    ]


class IncrementalAlterConfigsRequest(Struct):
    API_KEY = ApiKey.INCREMENTAL_ALTER_CONFIGS
    FIELDS = [
        ("resources",      Array(AlterConfigsResource),  [],     0),
        ("validate_only",  BOOL,                         False,  0),
    ]


class AlterConfigsResourceResponse(Struct):
    FIELDS = [
        ("error_code",     INT16,            0,                         0),
        ("error_message",  NULLABLE_STRING,  None,                      0),
        ("resource_type",  INT8,             ConfigResourceType.TOPIC,  0),
        ("resource_name",  STRING,           "",                        0),
    ]


class IncrementalAlterConfigsResponse(Struct):
    API_KEY = ApiKey.INCREMENTAL_ALTER_CONFIGS
    FIELDS = [
        ("responses",  Array(AlterConfigsResourceResponse),  [],  0),
    ]


# ---- CreatePartitions (37) -------------------------------------------------------------

class CreatePartitionsAssignment(Struct):
    FIELDS = [
        ("broker_ids",  Array(INT32),  [],  0),   # replica (log dir) ids of one new partition
    ]


class CreatePartitionsTopic(Struct):
    FIELDS = [
        ("name",         STRING,                                          "",    0),
        ("count",        INT32,                                           0,     0),  # new total
        ("assignments",  Array(CreatePartitionsAssignment, nullable=True),  None,  0),
    ]


class CreatePartitionsRequest(Struct):
    API_KEY = ApiKey.CREATE_PARTITIONS
    FIELDS = [
        ("topics",         Array(CreatePartitionsTopic),  [],     0),
        ("timeout_ms",     INT32,                         30000,  0),
        ("validate_only",  BOOL,                          False,  0),
    ]


class CreatePartitionsTopicResult(Struct):
    FIELDS = [
        ("name",           STRING,           "",    0),
        ("error_code",     INT16,            0,     0),
        ("error_message",  NULLABLE_STRING,  None,  0),
    ]


class CreatePartitionsResponse(Struct):
    API_KEY = ApiKey.CREATE_PARTITIONS
    FIELDS = [
        ("results",  Array(CreatePartitionsTopicResult),  [],  0),
    ]


# ---- ListOffsets (2) -------------------------------------------------------------------

class ListOffsetsPartition(Struct):
    FIELDS = [
        ("partition_index",       INT32,  0,                 0),
        ("current_leader_epoch",  INT32,  -1,                0),  # -1: do not check
        ("timestamp",             INT64,  LATEST_TIMESTAMP,  0),  # -1 latest, -2 earliest, >=0 ms
    ]


class ListOffsetsTopic(Struct):
    FIELDS = [
        ("name",        STRING,                       "",  0),
        ("partitions",  Array(ListOffsetsPartition),  [],  0),
    ]


class ListOffsetsRequest(Struct):
    API_KEY = ApiKey.LIST_OFFSETS
    FIELDS = [
        ("isolation_level",  INT8,                     IsolationLevel.READ_UNCOMMITTED,  0),
        ("topics",           Array(ListOffsetsTopic),  [],                               0),
    ]


class ListOffsetsPartitionResponse(Struct):
    FIELDS = [
        ("partition_index",  INT32,            0,     0),
        ("error_code",       INT16,            0,     0),
        ("error_message",    NULLABLE_STRING,  None,  0),
        ("timestamp",        INT64,            -1,    0),   # of the record found, or -1
        ("offset",           INT64,            -1,    0),   # -1: no record at/after the time
        ("leader_epoch",     INT32,            -1,    0),
    ]


class ListOffsetsTopicResponse(Struct):
    FIELDS = [
        ("name",        STRING,                               "",  0),
        ("partitions",  Array(ListOffsetsPartitionResponse),  [],  0),
    ]


class ListOffsetsResponse(Struct):
    API_KEY = ApiKey.LIST_OFFSETS
    FIELDS = [
        ("topics",  Array(ListOffsetsTopicResponse),  [],  0),
    ]


# ---- InitProducerId (22) ---------------------------------------------------------------

class InitProducerIdRequest(Struct):
    API_KEY = ApiKey.INIT_PRODUCER_ID
    FIELDS = [
        ("transactional_id",        NULLABLE_STRING,  None,  0),  # null: idempotent only
        ("transaction_timeout_ms",  INT32,            -1,    0),  # used with a transactional_id
        ("producer_id",             INT64,            -1,    0),  # -1: a new id; else bump epoch
        ("producer_epoch",          INT16,            -1,    0),
    ]


class InitProducerIdResponse(Struct):
    API_KEY = ApiKey.INIT_PRODUCER_ID
    FIELDS = [
        ("producer_id",     INT64,  -1,  0),
        ("producer_epoch",  INT16,  -1,  0),
    ]


# ---- OpenProducer (1000): attach a producer's rings to a partition's leader ------------
# The request carries three fds, in this order: the PRODUCE_RING (the producer writes
# batches, the leader reads), the COMPLETION_RING (the leader writes completions; none
# with acks=0) and the producer's DOORBELL (rung after each completion). The response
# carries one: the leader's DOORBELL, to ring after each commit. The attachment lasts as
# long as the control connection; a restarted leader is attached again by the broker
# and resumes from the ring's head (client/shm/LAYOUT.md, "Reader killed").

class OpenProducerRequest(Struct):
    API_KEY = ApiKey.OPEN_PRODUCER
    FIELDS = [
        ("topic",           STRING,  "",        0),
        ("partition",       INT32,   0,         0),
        ("acks",            INT16,   ACKS_ALL,  0),   # 0, 1 or -1 (all)
        ("producer_id",     INT64,   -1,        0),   # from InitProducerId; -1: not idempotent
        ("producer_epoch",  INT16,   -1,        0),
        ("attach_id",       INT64,   -1,        0),   # set by the broker for its worker; clients send -1
    ]


class OpenProducerResponse(Struct):
    API_KEY = ApiKey.OPEN_PRODUCER
    FIELDS = [
        ("topic",            STRING,           "",  0),
        ("partition",        INT32,            0,   0),
        ("leader_epoch",     INT32,            -1,  0),
        ("max_batch_bytes",  INT32,            0,   0),   # max.message.bytes of the topic
        ("fds",              Array(PassedFd),  [],  0),   # the leader's DOORBELL
    ]


# ---- DetachProducer (1004): broker -> worker only, when a producer's connection ends -----

class DetachProducerRequest(Struct):
    API_KEY = ApiKey.DETACH_PRODUCER
    FIELDS = [
        ("attach_id",  INT64,  -1,  0),
    ]


class DetachProducerResponse(Struct):
    API_KEY = ApiKey.DETACH_PRODUCER
    FIELDS = []


# ---- AppendRecords (1005): broker -> worker only: the broker's own records ---------------
# The group coordinator's offset commits and group metadata, appended to
# __consumer_offsets by its leader. These are control-plane data the broker produced
# itself (they came in as OffsetCommit/SyncGroup requests), not a client's records.

class AppendRecordsRequest(Struct):
    API_KEY = ApiKey.APPEND_RECORDS
    FIELDS = [
        ("topic",      STRING,  "",   0),
        ("partition",  INT32,   0,    0),
        ("records",    BYTES,   b"",  0),   # one or more v2 batches
    ]


class AppendRecordsResponse(Struct):
    API_KEY = ApiKey.APPEND_RECORDS
    FIELDS = [
        ("base_offset",  INT64,  -1,  0),
        ("last_offset",  INT64,  -1,  0),
    ]


# ---- IsrProposal (1006), UpdateIsr (1007): broker <-> partition leader, internal ---------
# The ISR is the broker's (saved in the cluster metadata before it takes effect), the
# leader's to propose, as Kafka's AlterPartition: the broker keeps one IsrProposal in
# flight at each leader, which the leader answers when it wants the ISR changed (a
# follower caught up, or one fell behind replica.lag.time.max.ms). The broker checks it
# against the partition's epochs, saves it and sends UpdateIsr; it also sends UpdateIsr
# when it changes the ISR itself (a follower process died), and after refusing a stale
# proposal. The leader uses a proposed ISR only in the safe direction until UpdateIsr
# names it: a follower it wants to add already counts for the high watermark, one it
# wants to drop still does.

class IsrProposalRequest(Struct):
    API_KEY = ApiKey.ISR_PROPOSAL
    FIELDS = []


class IsrProposalResponse(Struct):
    API_KEY = ApiKey.ISR_PROPOSAL
    FIELDS = [
        ("leader_epoch",     INT32,         -1,  0),
        ("partition_epoch",  INT32,         -1,  0),   # the ISR version the proposal is based on
        ("isr",              Array(INT32),  [],  0),
        ("reason",           STRING,        "",  0),   # for the log: who caught up or fell behind
    ]


class UpdateIsrRequest(Struct):
    API_KEY = ApiKey.UPDATE_ISR
    FIELDS = [
        ("leader_epoch",     INT32,         -1,  0),
        ("partition_epoch",  INT32,         -1,  0),
        ("isr",              Array(INT32),  [],  0),
    ]


class UpdateIsrResponse(Struct):
    API_KEY = ApiKey.UPDATE_ISR
    FIELDS = []


# ---- LeaderAndIsr (1008): broker -> follower, internal -------------------------------------
# Kafka's LeaderAndIsr: the partition has a new leader (epoch). The follower it names
# becomes the leader in place (its open log, its producer state; the broker then moves
# the partition's producers to it); the others follow it from now on, first cutting
# what the leader's epoch cache says diverges (daemon/replication/truncation.py).

class LeaderAndIsrRequest(Struct):
    API_KEY = ApiKey.LEADER_AND_ISR
    FIELDS = [
        ("leader_id",        INT32,         -1,  0),
        ("leader_epoch",     INT32,         -1,  0),
        ("partition_epoch",  INT32,         -1,  0),
        ("isr",              Array(INT32),  [],  0),
        ("leader_dir",       STRING,        "",  0),   # the new leader's log dir
    ]


class LeaderAndIsrResponse(Struct):
    API_KEY = ApiKey.LEADER_AND_ISR
    FIELDS = [
        ("log_end_offset",  INT64,  -1,  0),
    ]


# ---- MoveReplicas (1009): move a replica to another log dir, online -----------------------
# Kafka's AlterReplicaLogDirs, as kafka-reassign-partitions carries it out: the broker
# adds a replica in the new dir, and once it is in sync drops the one in the old dir
# (daemon/broker/reassign.py). Answered when each move has started or been refused;
# Status shows a move under way (adding_replicas, removing_replicas).

class ReplicaMove(Struct):
    FIELDS = [
        ("topic",      STRING,  "",  0),
        ("partition",  INT32,   0,   0),
        ("from_dir",   STRING,  "",  0),   # a log dir path as in log.dirs: the replica to move
        ("to_dir",     STRING,  "",  0),   # an online log dir holding no replica of the partition
    ]


class MoveReplicasRequest(Struct):
    API_KEY = ApiKey.MOVE_REPLICAS
    FIELDS = [
        ("moves",  Array(ReplicaMove),  [],  0),
    ]


class ReplicaMoveResult(Struct):
    FIELDS = [
        ("topic",          STRING,           "",    0),
        ("partition",      INT32,            0,     0),
        ("error_code",     INT16,            0,     0),   # 0: the move has started
        ("error_message",  NULLABLE_STRING,  None,  0),
    ]


class MoveReplicasResponse(Struct):
    API_KEY = ApiKey.MOVE_REPLICAS
    FIELDS = [
        ("results",  Array(ReplicaMoveResult),  [],  0),   # one per move, in order
    ]


# ---- OpenFetch (1001): a partition's shared state, fds alongside -----------------------

class OpenFetchRequest(Struct):
    API_KEY = ApiKey.OPEN_FETCH
    FIELDS = [
        ("topic",      STRING,  "",  0),
        ("partition",  INT32,   0,   0),
    ]


class OpenFetchResponse(Struct):
    API_KEY = ApiKey.OPEN_FETCH
    FIELDS = [
        ("topic",             STRING,              "",  0),
        ("partition",         INT32,               0,   0),
        ("leader_epoch",      INT32,               -1,  0),
        ("fds",               Array(PassedFd),     [],  0),   # PARTITION_STATE (read-only)
    ]


# ---- GetSegment (1002): where an offset is, and its segment's read-only fd --------------

class GetSegmentRequest(Struct):
    API_KEY = ApiKey.GET_SEGMENT
    FIELDS = [
        ("topic",        STRING,  "",    0),
        ("partition",    INT32,   0,     0),
        ("offset",       INT64,   0,     0),     # the segment holding this offset
        ("want_fd",      BOOL,    True,  0),     # False: the caller has it mapped already
    ]


class GetSegmentResponse(Struct):
    API_KEY = ApiKey.GET_SEGMENT
    FIELDS = [
        ("topic",             STRING,           "",  0),
        ("partition",         INT32,            0,   0),
        ("base_offset",       INT64,            0,   0),   # the segment's
        ("position",          INT64,            0,   0),   # of the first batch with last offset >= offset
        ("size",              INT64,            0,   0),   # bytes readable: whole batches below the high watermark
        ("next_offset",       INT64,            0,   0),   # the offset after the last readable batch
        ("fds",               Array(PassedFd),  [],  0),   # SEGMENT, if want_fd
    ]


# ---- Status (1003) ---------------------------------------------------------------------

class StatusRequest(Struct):
    API_KEY = ApiKey.STATUS
    FIELDS = [
        ("topics",  Array(STRING, nullable=True),  None,  0),   # null: every topic
    ]


class WorkerStatus(Struct):
    FIELDS = [
        ("pid",          INT32,   0,   0),
        ("topic",        STRING,  "",  0),
        ("partition",    INT32,   0,   0),
        ("replica_id",   INT32,   0,   0),
        ("role",         STRING,  "",  0),   # "leader" or "follower"
        ("state",        STRING,  "",  0),   # "starting", "running", "stopping" ...
        ("restarts",     INT32,   0,   0),
        ("uptime_ms",    INT64,   0,   0),
    ]


class FollowerStatus(Struct):
    FIELDS = [
        ("replica_id",        INT32,   -1,  0),
        ("state",             STRING,  "",  0),   # "running", "starting", "dead", "offline" (its log dir)
        ("log_end_offset",    INT64,   -1,  0),   # -1: not known (not running)
        ("lag_records",       INT64,   -1,  0),   # leader's log end - this one's (-1: not known)
        ("caught_up_ms",      INT64,   0,   0),   # wall-clock ms it was last caught up (0: never)
        ("size_bytes",        INT64,   -1,  0),   # its log's data bytes (-1: it did not answer in time)
        ("synced_offset",     INT64,   -1,  0),   # below it its log is fsynced (-1: not known)
    ]


class PartitionStatus(Struct):
    FIELDS = [
        ("topic",             STRING,        "",  0),
        ("partition",         INT32,         0,   0),
        ("leader_id",         INT32,         -1,  0),
        ("leader_epoch",      INT32,         -1,  0),
        ("replica_nodes",     Array(INT32),  [],  0),
        ("isr_nodes",         Array(INT32),  [],  0),
        ("log_start_offset",  INT64,         0,   0),
        ("log_end_offset",    INT64,         0,   0),
        ("high_watermark",    INT64,         0,   0),
        ("size_bytes",        INT64,         0,   0),
        ("segments",          INT32,         0,   0),
        ("min_insync_replicas",  INT32,      0,   0),   # the topic's effective min.insync.replicas
        ("followers",         Array(FollowerStatus),  [],  0),   # one per follower replica
        ("adding_replicas",   Array(INT32),  [],  0),   # a move under way: the replica being added
        ("removing_replicas", Array(INT32),  [],  0),   # ... and the one it replaces, once in sync
    ]


class LogDirStatus(Struct):
    FIELDS = [
        ("path",          STRING,           "",    0),
        ("directory_id",  NULLABLE_STRING,  None,  0),   # meta.properties' directory.id (null: unknown)
        ("state",         STRING,           "",    0),   # "online" or "offline"
        ("reason",        STRING,           "",    0),   # why it is offline ("" when online)
        ("size_bytes",    INT64,            -1,    0),   # bytes under it (-1: offline)
        ("partitions",    INT32,            0,     0),   # partitions whose leader lives there
        ("total_bytes",   INT64,            -1,    0),   # its filesystem's size (statvfs; -1: offline)
        ("usable_bytes",  INT64,            -1,    0),   # bytes an unprivileged writer may still use there
    ]


class StatusResponse(Struct):
    API_KEY = ApiKey.STATUS
    FIELDS = [
        ("broker_pid",  INT32,                   0,   0),
        ("uptime_ms",   INT64,                   0,   0),
        ("version",     STRING,                  "",  0),
        ("log_dirs",    Array(STRING),           [],  0),   # index = replica id
        ("workers",     Array(WorkerStatus),     [],  0),
        ("partitions",  Array(PartitionStatus),  [],  0),
        ("log_dir_states",  Array(LogDirStatus),  [],  0),   # one per log_dirs entry
    ]


# ---- Consumer groups (next milestone): Kafka's classic group protocol -------------------

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


# ---- The table of APIs -----------------------------------------------------------------

APIS = ApiTable([
    #   key                                  request                          response                          min max
    Api(ApiKey.API_VERSIONS,                 ApiVersionsRequest,              ApiVersionsResponse,              0,  0),
    Api(ApiKey.METADATA,                     MetadataRequest,                 MetadataResponse,                 0,  0),
    Api(ApiKey.CREATE_TOPICS,                CreateTopicsRequest,             CreateTopicsResponse,             0,  0),
    Api(ApiKey.DELETE_TOPICS,                DeleteTopicsRequest,             DeleteTopicsResponse,             0,  0),
    Api(ApiKey.DESCRIBE_CONFIGS,             DescribeConfigsRequest,          DescribeConfigsResponse,          0,  0),
    Api(ApiKey.INCREMENTAL_ALTER_CONFIGS,    IncrementalAlterConfigsRequest,  IncrementalAlterConfigsResponse,  0,  0),
    Api(ApiKey.CREATE_PARTITIONS,            CreatePartitionsRequest,         CreatePartitionsResponse,         0,  0),
    Api(ApiKey.LIST_OFFSETS,                 ListOffsetsRequest,              ListOffsetsResponse,              0,  0),
    Api(ApiKey.INIT_PRODUCER_ID,             InitProducerIdRequest,           InitProducerIdResponse,           0,  0),
    Api(ApiKey.OPEN_PRODUCER,                OpenProducerRequest,             OpenProducerResponse,             0,  0),
    Api(ApiKey.OPEN_FETCH,                   OpenFetchRequest,                OpenFetchResponse,                0,  0),
    Api(ApiKey.GET_SEGMENT,                  GetSegmentRequest,               GetSegmentResponse,               0,  0),
    Api(ApiKey.STATUS,                       StatusRequest,                   StatusResponse,                   0,  0),
    Api(ApiKey.DETACH_PRODUCER,              DetachProducerRequest,           DetachProducerResponse,           0,  0),
    Api(ApiKey.APPEND_RECORDS,               AppendRecordsRequest,            AppendRecordsResponse,            0,  0),
    Api(ApiKey.ISR_PROPOSAL,                 IsrProposalRequest,              IsrProposalResponse,              0,  0),
    Api(ApiKey.UPDATE_ISR,                   UpdateIsrRequest,                UpdateIsrResponse,                0,  0),
    Api(ApiKey.LEADER_AND_ISR,               LeaderAndIsrRequest,             LeaderAndIsrResponse,             0,  0),
    Api(ApiKey.MOVE_REPLICAS,                MoveReplicasRequest,             MoveReplicasResponse,             0,  0),
    Api(ApiKey.FIND_COORDINATOR,             FindCoordinatorRequest,          FindCoordinatorResponse,          0,  0),
    Api(ApiKey.JOIN_GROUP,                   JoinGroupRequest,                JoinGroupResponse,                0,  0),
    Api(ApiKey.SYNC_GROUP,                   SyncGroupRequest,                SyncGroupResponse,                0,  0),
    Api(ApiKey.HEARTBEAT,                    HeartbeatRequest,                HeartbeatResponse,                0,  0),
    Api(ApiKey.LEAVE_GROUP,                  LeaveGroupRequest,               LeaveGroupResponse,               0,  0),
    Api(ApiKey.OFFSET_COMMIT,                OffsetCommitRequest,             OffsetCommitResponse,             0,  0),
    Api(ApiKey.OFFSET_FETCH,                 OffsetFetchRequest,              OffsetFetchResponse,              0,  0),
    Api(ApiKey.LIST_GROUPS,                  ListGroupsRequest,               ListGroupsResponse,               0,  0),
    Api(ApiKey.DESCRIBE_GROUPS,              DescribeGroupsRequest,           DescribeGroupsResponse,           0,  0),
    Api(ApiKey.DELETE_GROUPS,                DeleteGroupsRequest,             DeleteGroupsResponse,             0,  0),
])

# The consumer-group APIs, declared now and served from the consumer-group milestone on:
# a broker without a coordinator serves APIS.without(*GROUP_API_KEYS).
GROUP_API_KEYS = (
    ApiKey.FIND_COORDINATOR, ApiKey.JOIN_GROUP, ApiKey.SYNC_GROUP, ApiKey.HEARTBEAT,
    ApiKey.LEAVE_GROUP, ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH, ApiKey.LIST_GROUPS,
    ApiKey.DESCRIBE_GROUPS, ApiKey.DELETE_GROUPS,
)


def api_versions_response(apis=APIS):
    """The ApiVersionsResponse a server serving `apis` sends."""
    return ApiVersionsResponse(api_keys=[
        ApiVersion(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
        for a in apis])
