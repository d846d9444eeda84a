"""Data-plane messages: how a client finds offsets, gets a producer id, attaches a
producer's rings to a partition's leader (OpenProducer) and maps a partition's state and
segments to read them (OpenFetch, GetSegment); and the broker's own requests to a worker
about that traffic (DetachProducer, AppendRecords). Declared as tables (see `messages`
for the rules); import them from `messages`.
"""
from odradek.client.protocol._schema import (
    BOOL, BYTES, INT8, INT16, INT32, INT64, NULLABLE_STRING, STRING, Array, Struct)
from odradek.client.protocol._messages_base import (
    ApiKey, LATEST_TIMESTAMP, ACKS_ALL, IsolationLevel, PassedFd)


# ---- ListOffsets (2) -------------------------------------------------------------------

class ListOffsetsPartition(Struct):
    FIELDS = [
        ("partition_index",       INT32,  0,                 0),
        ("current_leader_epoch",  INT32,  -1,                0),  # -1: do not check
        ("timestamp",             INT64,  LATEST_TIMESTAMP,  0),  # -1 latest, -2 earliest, -3 max, >=0 ms
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


# ---- OffsetForLeaderEpoch (23): where a leader epoch ended, from leader-epoch-checkpoint --

class OffsetForLeaderEpochRequest(Struct):
    API_KEY = ApiKey.OFFSET_FOR_LEADER_EPOCH
    FIELDS = [
        ("topic",         STRING,  "",  0),
        ("partition",     INT32,   0,   0),
        ("leader_epoch",  INT32,   -1,  0),
    ]


class OffsetForLeaderEpochResponse(Struct):
    API_KEY = ApiKey.OFFSET_FOR_LEADER_EPOCH
    FIELDS = [
        ("leader_epoch",  INT32,  -1,  0),   # the largest epoch <= the one asked; -1: none known
        ("end_offset",    INT64,  -1,  0),   # the start of the next epoch (the log end for the latest); -1: none
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
        # >= 0 (read_committed): also the aborted transactions overlapping [offset, this)
        ("aborted_upper_bound",  INT64,  -1,  0),
    ]


class AbortedTransaction(Struct):
    """Kafka's FetchResponse AbortedTransaction, with the ABORT marker's offset: the
    producer's transactional batches in [first_offset, last_offset] are aborted."""
    FIELDS = [
        ("producer_id",   INT64,  -1,  0),
        ("first_offset",  INT64,  -1,  0),
        ("last_offset",   INT64,  -1,  0),   # the ABORT marker's
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
        ("aborted_transactions",  Array(AbortedTransaction),  [],  0),   # if aborted_upper_bound >= 0
    ]
