"""Every odradek error: one base class, one class per error name, one table.

Names and numeric codes are Apache Kafka's where Kafka has the error (so a person who
knows Kafka reads them at once, and a future Kafka-protocol front end can return them
unchanged); odradek's own errors use codes from 1000 up. Look a class up from its code
with `error_for_code`; raise with a human message that says what to do next.

    raise UnknownTopicOrPartition("topic 'orders' does not exist; create it with "
                                  "'odradek topics create orders'")

What a caller does about an error is in three flags, confluent-kafka's KafkaError
classification (retriable(), fatal(), txn_requires_abort()) as attributes beside the
class's `retriable`: `retriable` (the same call may succeed if made again), `fatal` (the
client is unusable: a transactional producer fenced by a newer instance), and
`txn_requires_abort` (the transaction failed: call abort_transaction(), then start
again). A transactional producer (client/txn_manager.py) sets them per instance.
"""

__all__ = ["OdradekError", "error_for_code", "ERRORS"]


class OdradekError(Exception):
    """Base of every odradek error. `code` and `name` identify it on the wire."""

    code = -1
    name = "UNKNOWN_SERVER_ERROR"
    retriable = False
    fatal = False
    txn_requires_abort = False

    def __init__(self, message="", *, retriable=None, fatal=None, txn_requires_abort=None):
        super().__init__(message or self.name)
        self.message = message or self.name
        if retriable is not None:
            self.retriable = retriable
        if fatal is not None:
            self.fatal = fatal
        if txn_requires_abort is not None:
            self.txn_requires_abort = txn_requires_abort

    def __str__(self):
        return f"{self.name}: {self.message}" if self.message != self.name else self.name


# (code, NAME, ClassName, retriable, what it means)
_TABLE = [
    (-1, "UNKNOWN_SERVER_ERROR", "UnknownServerError", False, "an unexpected error in the broker"),
    (1, "OFFSET_OUT_OF_RANGE", "OffsetOutOfRange", False, "the offset is outside the log"),
    (2, "CORRUPT_MESSAGE", "CorruptRecord", True, "a batch failed its CRC or size checks"),
    (3, "UNKNOWN_TOPIC_OR_PARTITION", "UnknownTopicOrPartition", True, "no such topic or partition"),
    (4, "INVALID_FETCH_SIZE", "InvalidFetchSize", False, "the fetch size is invalid"),
    (5, "LEADER_NOT_AVAILABLE", "LeaderNotAvailable", True, "the partition has no leader now"),
    (6, "NOT_LEADER_OR_FOLLOWER", "NotLeaderOrFollower", True, "this replica does not lead"),
    (7, "REQUEST_TIMED_OUT", "RequestTimedOut", True, "the request timed out"),
    (10, "MESSAGE_TOO_LARGE", "MessageTooLarge", False, "a batch is larger than allowed"),
    (12, "OFFSET_METADATA_TOO_LARGE", "OffsetMetadataTooLarge", False, "the commit metadata string is longer than offset.metadata.max.bytes"),
    (13, "NETWORK_EXCEPTION", "NetworkException", True, "the broker connection failed or closed before an answer"),
    (15, "COORDINATOR_NOT_AVAILABLE", "CoordinatorNotAvailable", True, "the group coordinator is not ready"),
    (17, "INVALID_TOPIC_EXCEPTION", "InvalidTopic", False, "the topic name is not valid"),
    (19, "NOT_ENOUGH_REPLICAS", "NotEnoughReplicas", True, "fewer in-sync replicas than min.insync.replicas"),
    (20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "NotEnoughReplicasAfterAppend", True, "written, but not replicated enough"),
    (21, "INVALID_REQUIRED_ACKS", "InvalidRequiredAcks", False, "acks must be 0, 1 or all (-1)"),
    (22, "ILLEGAL_GENERATION", "IllegalGeneration", False, "the group generation is not current"),
    (23, "INCONSISTENT_GROUP_PROTOCOL", "InconsistentGroupProtocol", False, "the member's protocol type or assignors match no protocol the group can use"),
    (24, "INVALID_GROUP_ID", "InvalidGroupId", False, "the group id is empty or not valid"),
    (25, "UNKNOWN_MEMBER_ID", "UnknownMemberId", False, "the member id is not known to the group"),
    (26, "INVALID_SESSION_TIMEOUT", "InvalidSessionTimeout", False, "session.timeout.ms is outside the broker's group.min/max.session.timeout.ms"),
    (27, "REBALANCE_IN_PROGRESS", "RebalanceInProgress", False, "the group is rebalancing"),
    (28, "INVALID_COMMIT_OFFSET_SIZE", "InvalidCommitOffsetSize", False, "the offset commit is too large to store"),
    (32, "INVALID_TIMESTAMP", "InvalidTimestamp", False, "a timestamp is out of the accepted range"),
    (35, "UNSUPPORTED_VERSION", "UnsupportedVersion", False, "the request version is not supported"),
    (36, "TOPIC_ALREADY_EXISTS", "TopicAlreadyExists", False, "a topic of that name exists"),
    (37, "INVALID_PARTITIONS", "InvalidPartitions", False, "the partition count is not valid"),
    (38, "INVALID_REPLICATION_FACTOR", "InvalidReplicationFactor", False, "the replication factor is not valid"),
    (39, "INVALID_REPLICA_ASSIGNMENT", "InvalidReplicaAssignment", False, "the replica assignment is not valid (a replica named twice, or not one where it must be)"),
    (40, "INVALID_CONFIG", "InvalidConfig", False, "a configuration key or value is not valid"),
    (42, "INVALID_REQUEST", "InvalidRequest", False, "the request is malformed"),
    (44, "POLICY_VIOLATION", "PolicyViolation", False, "the request breaks a limit the broker is configured with"),
    (45, "OUT_OF_ORDER_SEQUENCE_NUMBER", "OutOfOrderSequenceNumber", False, "a producer sequence number is out of order"),
    (46, "DUPLICATE_SEQUENCE_NUMBER", "DuplicateSequenceNumber", False, "the batch was already written"),
    (47, "INVALID_PRODUCER_EPOCH", "InvalidProducerEpoch", False, "the producer epoch is old"),
    (56, "KAFKA_STORAGE_ERROR", "StorageError", True, "the log could not be read or written"),
    (57, "LOG_DIR_NOT_FOUND", "LogDirNotFound", False, "the log dir is not in log.dirs, or it is offline"),
    (60, "REASSIGNMENT_IN_PROGRESS", "ReassignmentInProgress", False, "a replica of the partition is being moved; wait until it is done"),
    (68, "NON_EMPTY_GROUP", "NonEmptyGroup", False, "the group has members; only an empty group can be deleted or reset"),
    (69, "GROUP_ID_NOT_FOUND", "GroupIdNotFound", False, "no group with that id exists"),
    (76, "UNSUPPORTED_COMPRESSION_TYPE", "UnsupportedCompression", False, "the compression codec is not supported"),
    (79, "MEMBER_ID_REQUIRED", "MemberIdRequired", False, "join again with the member id given"),
    (81, "GROUP_MAX_SIZE_REACHED", "GroupMaxSizeReached", False, "the group already has group.max.size members"),
    (82, "FENCED_INSTANCE_ID", "FencedInstanceId", False, "another member has this group.instance.id"),
    (86, "GROUP_SUBSCRIBED_TO_TOPIC", "GroupSubscribedToTopic", False, "a member of the group subscribes to the topic, so its offsets cannot be deleted"),
    (87, "INVALID_RECORD", "InvalidRecord", False, "a record in the batch is not valid"),
    # transactions (KIP-98)
    (14, "COORDINATOR_LOAD_IN_PROGRESS", "CoordinatorLoadInProgress", True, "the coordinator is still loading its state"),
    (16, "NOT_COORDINATOR", "NotCoordinator", True, "this broker is not the coordinator asked for"),
    (48, "INVALID_TXN_STATE", "InvalidTxnState", False, "the transactional request is not valid in the transaction's state"),
    (49, "INVALID_PRODUCER_ID_MAPPING", "InvalidProducerIdMapping", False, "the producer id is not the one assigned to the transactional id"),
    (50, "INVALID_TRANSACTION_TIMEOUT", "InvalidTransactionTimeout", False, "transaction.timeout.ms is not above 0 and at most the broker's transaction.max.timeout.ms"),
    (51, "CONCURRENT_TRANSACTIONS", "ConcurrentTransactions", True, "another operation on the same transaction is under way; retry"),
    (52, "TRANSACTION_COORDINATOR_FENCED", "TransactionCoordinatorFenced", False, "the coordinator that sent the marker is no longer the producer's"),
    (55, "OPERATION_NOT_ATTEMPTED", "OperationNotAttempted", False, "not attempted because another part of the request failed"),
    (59, "UNKNOWN_PRODUCER_ID", "UnknownProducerId", False, "the partition holds no state for the producer id"),
    (90, "PRODUCER_FENCED", "ProducerFenced", False, "a newer producer with the same transactional.id fenced this one"),
    (88, "UNSTABLE_OFFSET_COMMIT", "UnstableOffsetCommit", True, "an offset of the partition is committed in a transaction still open; retry"),
    (105, "TRANSACTIONAL_ID_NOT_FOUND", "TransactionalIdNotFound", False, "no transactional id of that name is known"),
    (1000, "INVALID_SEGMENT", "InvalidSegment", False, "a segment or index file is inconsistent"),
    # 1100-1199: the shared-memory data plane (client/shm/LAYOUT.md)
    (1100, "SHM_TORN_STATE", "TornState", True,
     "a seqlock read kept finding an update in progress: its writer is stalled or died "
     "mid-update; ask the broker"),
    (1101, "SHM_CORRUPT", "ShmCorrupt", False,
     "a peer wrote an impossible cursor or entry header into shared memory; drop it"),
    (1102, "SHM_RING_FULL", "RingFull", True, "the ring had no room for the entry within the timeout"),
    (1103, "SHM_NOT_IN_WINDOW", "NotInWindow", True,
     "the offset is older than the batch descriptor window; ask the broker"),
    (1104, "SHM_BAD_LAYOUT", "BadLayout", False,
     "the shared memory is not the structure expected (magic, version, size or seals)"),
    (1105, "SHM_SEAL_UNSUPPORTED", "SealUnsupported", False,
     "the kernel refused F_SEAL_FUTURE_WRITE (Linux 5.1+ has it), so shared state could not "
     "be made read-only for its readers"),
]

ERRORS = {}
for _code, _name, _cls, _retriable, _doc in _TABLE:
    _klass = type(_cls, (OdradekError,), {"code": _code, "name": _name,
                                          "retriable": _retriable, "__doc__": _doc.capitalize() + "."})
    globals()[_cls] = _klass
    ERRORS[_code] = _klass
    __all__.append(_cls)
del _code, _name, _cls, _retriable, _doc, _klass


def error_for_code(code):
    """The error class for a numeric code (UnknownServerError for an unknown code)."""
    return ERRORS.get(code, ERRORS[-1])


class MaxPollIntervalExceeded(OdradekError):
    """The application did not call poll() within max.poll.interval.ms: the member left
    the group and its partitions went to others. A client-side error, never on the wire
    (code -147 is librdkafka's _MAX_POLL_EXCEEDED), so not in ERRORS."""
    code = -147
    name = "MAX_POLL_INTERVAL_EXCEEDED"
    retriable = True


__all__.append("MaxPollIntervalExceeded")


class IllegalState(OdradekError):
    """A call not valid in the client's state: a transactional producer's produce() with no
    transaction open, begin_transaction() twice, commit_transaction() with none begun. It
    changes nothing. Client-side only, never on the wire (code -172 is librdkafka's
    _STATE; Kafka's clients throw IllegalStateException), so not in ERRORS."""
    code = -172
    name = "ILLEGAL_STATE"


class TransactionAborted(OdradekError):
    """The delivery report of a record that abort_transaction() purged before it reached
    its partition: it was never written. Client-side only (Kafka's
    TransactionAbortedException; code -152 is librdkafka's _PURGE_QUEUE), not in ERRORS."""
    code = -152
    name = "TRANSACTION_ABORTED"


__all__ += ["IllegalState", "TransactionAborted"]
