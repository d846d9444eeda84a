"""Admin and cluster messages: ApiVersions, Metadata, CreateTopics, DeleteTopics,
DescribeConfigs, IncrementalAlterConfigs, CreatePartitions and odradek's Status. Declared
as tables (see `messages` for the rules); import them from `messages`.
"""
from odradek.client.protocol._schema import (
    BOOL, INT8, INT16, INT32, INT64, NULLABLE_STRING, STRING, Array, Map, Struct)
from odradek.client.protocol._messages_base import (
    ApiKey, ConfigResourceType, ConfigOperation, ConfigSource)


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
        ("topic_id",       STRING,                            "",     1),   # 32 hex digits, the same forever
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
        ("last_stable_offset",  INT64,       -1,  0),   # KIP-98: read_committed reads below it
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
