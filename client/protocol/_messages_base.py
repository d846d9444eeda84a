"""Message building blocks every other messages module uses: api keys, enumerated
values and the two shared structs (PassedFd, ErrorBody). Import them from `messages`.
"""
from enum import IntEnum

from odradek.client.protocol._schema import BOOL, INT16, INT64, NULLABLE_STRING, STRING, Struct


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
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_CONFIGS = 32
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
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
    WRITE_TXN_MARKER = 1010


LATEST_TIMESTAMP = -1      # ListOffsets: the high watermark (the offset after the last committed record)
EARLIEST_TIMESTAMP = -2    # ListOffsets: the log start offset
MAX_TIMESTAMP = -3         # ListOffsets: the first record with the largest timestamp (KIP-734)
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
