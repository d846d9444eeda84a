"""Transaction messages (KIP-98). Declared as tables (see `messages` for the rules);
import them from `messages`.

WriteTxnMarker (1010) is the broker's request to one partition's leader worker: write a
transaction's end marker (a control batch, client/records/FORMAT.md) for one producer.
It is our own per-partition form of Kafka's inter-broker WriteTxnMarkers (27): the
transaction coordinator sends one per partition of the transaction, and completes the
transaction once every partition has answered.
"""
from odradek.client.protocol._schema import BOOL, INT16, INT32, INT64, NULLABLE_STRING, STRING, Array, Struct
from odradek.client.protocol._messages_base import ApiKey


# ---- WriteTxnMarker (1010): broker -> partition leader, internal --------------------------
# The leader appends one control batch (producer id and epoch below, isTransactional and
# isControl set, one record: key (version 0, type 0 abort / 1 commit), value (version 0,
# coordinator_epoch)), ends the producer's open transaction on the partition (its first
# offset leaves the last-stable-offset computation; an abort is added to the segment's
# aborted-transaction index) and answers once the marker is at or below the high
# watermark, as Kafka's coordinator writes markers with acks=all. An epoch below the
# producer's current one is refused with INVALID_PRODUCER_EPOCH (a fenced coordinator's
# late marker changes nothing); a producer with no open transaction on the partition
# still gets its marker written, as Kafka does (the coordinator may retry).

class WriteTxnMarkerRequest(Struct):
    API_KEY = ApiKey.WRITE_TXN_MARKER
    FIELDS = [
        ("topic",              STRING,  "",     0),
        ("partition",          INT32,   0,      0),
        ("producer_id",        INT64,   -1,     0),
        ("producer_epoch",     INT16,   -1,     0),
        ("committed",          BOOL,    False,  0),   # True: COMMIT marker, False: ABORT
        ("coordinator_epoch",  INT32,   0,      0),
    ]


class WriteTxnMarkerResponse(Struct):
    API_KEY = ApiKey.WRITE_TXN_MARKER
    FIELDS = [
        ("offset",  INT64,  -1,  0),   # the marker's offset in the partition
    ]


# ---- The transaction coordinator's APIs (KIP-98): client -> broker ------------------------
# Kafka's fields, as in its newest non-batched form, in one version 0 (no throttle times,
# no tagged fields). A failure of the whole request is an error response; AddPartitionsToTxn,
# TxnOffsetCommit and DescribeTransactions carry per-item error codes, as Kafka's do. The
# coordinator's rules and error codes are in daemon/broker/txn/coordinator.py.

class AddPartitionsToTxnTopic(Struct):
    FIELDS = [
        ("name",        STRING,        "",  0),
        ("partitions",  Array(INT32),  [],  0),
    ]


class AddPartitionsToTxnRequest(Struct):
    API_KEY = ApiKey.ADD_PARTITIONS_TO_TXN
    FIELDS = [
        ("transactional_id",  STRING,                          "",  0),
        ("producer_id",       INT64,                           -1,  0),
        ("producer_epoch",    INT16,                           -1,  0),
        ("topics",            Array(AddPartitionsToTxnTopic),  [],  0),
    ]


class AddPartitionsToTxnPartitionResult(Struct):
    FIELDS = [
        ("partition_index",  INT32,            0,     0),
        ("error_code",       INT16,            0,     0),
        ("error_message",    NULLABLE_STRING,  None,  0),
    ]


class AddPartitionsToTxnTopicResult(Struct):
    FIELDS = [
        ("name",     STRING,                                    "",  0),
        ("results",  Array(AddPartitionsToTxnPartitionResult),  [],  0),
    ]


class AddPartitionsToTxnResponse(Struct):
    API_KEY = ApiKey.ADD_PARTITIONS_TO_TXN
    FIELDS = [
        ("results",  Array(AddPartitionsToTxnTopicResult),  [],  0),
    ]


class AddOffsetsToTxnRequest(Struct):
    """Adds the group's __consumer_offsets partition to the transaction (before
    TxnOffsetCommit sends the offsets themselves)."""
    API_KEY = ApiKey.ADD_OFFSETS_TO_TXN
    FIELDS = [
        ("transactional_id",  STRING,  "",  0),
        ("producer_id",       INT64,   -1,  0),
        ("producer_epoch",    INT16,   -1,  0),
        ("group_id",          STRING,  "",  0),
    ]


class AddOffsetsToTxnResponse(Struct):
    API_KEY = ApiKey.ADD_OFFSETS_TO_TXN
    FIELDS = []


class EndTxnRequest(Struct):
    API_KEY = ApiKey.END_TXN
    FIELDS = [
        ("transactional_id",  STRING,  "",     0),
        ("producer_id",       INT64,   -1,     0),
        ("producer_epoch",    INT16,   -1,     0),
        ("committed",         BOOL,    False,  0),   # True: commit, False: abort
    ]


class EndTxnResponse(Struct):
    """Answered once the PrepareCommit/PrepareAbort record is durable; the markers are
    written after (a retry meanwhile gets CONCURRENT_TRANSACTIONS)."""
    API_KEY = ApiKey.END_TXN
    FIELDS = []


class TxnOffsetCommitRequestPartition(Struct):
    FIELDS = [
        ("partition_index",         INT32,            0,     0),
        ("committed_offset",        INT64,            -1,    0),
        ("committed_leader_epoch",  INT32,            -1,    0),
        ("committed_metadata",      NULLABLE_STRING,  None,  0),
    ]


class TxnOffsetCommitRequestTopic(Struct):
    FIELDS = [
        ("name",        STRING,                                  "",  0),
        ("partitions",  Array(TxnOffsetCommitRequestPartition),  [],  0),
    ]


class TxnOffsetCommitRequest(Struct):
    """Offsets committed in a transaction (KIP-447's group fields: a consumer fenced out
    of the group cannot commit)."""
    API_KEY = ApiKey.TXN_OFFSET_COMMIT
    FIELDS = [
        ("transactional_id",   STRING,                              "",    0),
        ("group_id",           STRING,                              "",    0),
        ("producer_id",        INT64,                               -1,    0),
        ("producer_epoch",     INT16,                               -1,    0),
        ("generation_id",      INT32,                               -1,    0),
        ("member_id",          STRING,                              "",    0),
        ("group_instance_id",  NULLABLE_STRING,                     None,  0),
        ("topics",             Array(TxnOffsetCommitRequestTopic),  [],    0),
    ]


class TxnOffsetCommitResponsePartition(Struct):
    FIELDS = [
        ("partition_index",  INT32,            0,     0),
        ("error_code",       INT16,            0,     0),
        ("error_message",    NULLABLE_STRING,  None,  0),
    ]


class TxnOffsetCommitResponseTopic(Struct):
    FIELDS = [
        ("name",        STRING,                                   "",  0),
        ("partitions",  Array(TxnOffsetCommitResponsePartition),  [],  0),
    ]


class TxnOffsetCommitResponse(Struct):
    API_KEY = ApiKey.TXN_OFFSET_COMMIT
    FIELDS = [
        ("topics",  Array(TxnOffsetCommitResponseTopic),  [],  0),
    ]


class DescribeTransactionsRequest(Struct):
    API_KEY = ApiKey.DESCRIBE_TRANSACTIONS
    FIELDS = [
        ("transactional_ids",  Array(STRING),  [],  0),
    ]


class DescribeTransactionsTopicData(Struct):
    FIELDS = [
        ("name",               STRING,        "",  0),
        ("partition_indexes",  Array(INT32),  [],  0),
    ]


class DescribedTransaction(Struct):
    """One transactional id: TRANSACTIONAL_ID_NOT_FOUND if unknown. While the markers are
    written (PrepareCommit/PrepareAbort), topics lists the partitions still without one."""
    FIELDS = [
        ("error_code",                 INT16,                                 0,     0),
        ("error_message",              NULLABLE_STRING,                       None,  0),
        ("transactional_id",           STRING,                                "",    0),
        ("transaction_state",          STRING,                                "",    0),
        ("transaction_timeout_ms",     INT32,                                 0,     0),
        ("transaction_start_time_ms",  INT64,                                 -1,    0),   # -1: none open
        ("producer_id",                INT64,                                 -1,    0),
        ("producer_epoch",             INT16,                                 -1,    0),
        ("topics",                     Array(DescribeTransactionsTopicData),  [],    0),
    ]


class DescribeTransactionsResponse(Struct):
    API_KEY = ApiKey.DESCRIBE_TRANSACTIONS
    FIELDS = [
        ("transaction_states",  Array(DescribedTransaction),  [],  0),
    ]


class ListTransactionsRequest(Struct):
    """Every filter empty (or -1) matches all; several filters must all match."""
    API_KEY = ApiKey.LIST_TRANSACTIONS
    FIELDS = [
        ("state_filters",        Array(STRING),  [],  0),   # state names, e.g. "Ongoing"
        ("producer_id_filters",  Array(INT64),   [],  0),
        ("duration_filter",      INT64,          -1,  0),   # ms: only transactions open longer
    ]


class ListedTransaction(Struct):
    FIELDS = [
        ("transactional_id",   STRING,  "",  0),
        ("producer_id",        INT64,   -1,  0),
        ("transaction_state",  STRING,  "",  0),
    ]


class ListTransactionsResponse(Struct):
    API_KEY = ApiKey.LIST_TRANSACTIONS
    FIELDS = [
        ("unknown_state_filters",  Array(STRING),             [],  0),
        ("transaction_states",     Array(ListedTransaction),  [],  0),
    ]
