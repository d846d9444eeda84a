"""Every odradek error: one base class, one class per error name, one table.

Names and numeric codes are Apache Kafka's where Kafka has the error (so a person who
knows Kafka reads them at once, and the Kafka-protocol listener returns them
unchanged); odradek's own errors use codes from 1000 up. Look a class up from its code
with `error_for_code`; raise with a human message that says what to do next.

    raise UnknownTopicOrPartition("topic 'orders' does not exist; create it with "
                                  "'odradek topics create orders'")

confluent-kafka's shape, so that one program runs against odradek and against a Kafka
cluster through confluent-kafka with only its import changed:

    KafkaException   what confluent-kafka raises; OdradekError subclasses it, so
                     `except KafkaException as e:` catches every odradek error.
    KafkaError       e.args[0] of every KafkaException: code(), name(), str(),
                     retriable(), fatal(), txn_requires_abort(), == to its code, and the
                     constants (KafkaError.UNKNOWN_TOPIC_OR_PART, ._PARTITION_EOF, ...).
                     A failed delivery's on_delivery(err, record) gets one as err,
                     the same object as record.error(); err.exception is the
                     OdradekError (err.exception.message, isinstance checks).

The choice: an OdradekError IS a KafkaException whose args[0] is a KafkaError view of it
(the view reads the exception's flags when called, so flags set after raising show), and
keeps its own class per error name, so `except UnknownTopicOrPartition` and the boolean
attributes below work as before for odradek's users. name() is Kafka's name (Java's
Errors enum: UNKNOWN_TOPIC_OR_PARTITION), where librdkafka says UNKNOWN_TOPIC_OR_PART;
compare code()s with the constants, which carry both spellings.

What a caller does about an error is in three flags, confluent-kafka's KafkaError
classification, as attributes of the exception (and methods of its KafkaError):
`retriable` (the same call may succeed if made again), `fatal` (the client is unusable:
a transactional producer fenced by a newer instance), and `txn_requires_abort` (the
transaction failed: call abort_transaction(), then start again). A transactional
producer (client/txn_manager.py) sets them per instance.
"""

__all__ = ["KafkaError", "KafkaException", "OdradekError", "error_for_code", "ERRORS"]


class KafkaError:
    """An error's identity and classification, confluent-kafka's KafkaError:
    KafkaError(code, reason=None, fatal=False, retriable=False, txn_requires_abort=False)."""

    __slots__ = ("_code", "_str", "_fatal", "_retriable", "_txn_requires_abort")

    def __init__(self, error, reason=None, fatal=False, retriable=False, txn_requires_abort=False):
        self._code = int(error)
        self._str = reason
        self._fatal, self._retriable, self._txn_requires_abort = fatal, retriable, txn_requires_abort

    def code(self):
        return self._code

    def name(self):
        return _NAMES.get(self._code, f"ERR_{self._code}?")

    def str(self):
        return self._str or _WHAT.get(self._code, self.name())

    def fatal(self):
        return self._fatal

    def retriable(self):
        return self._retriable

    def txn_requires_abort(self):
        return self._txn_requires_abort

    def __eq__(self, other):
        if isinstance(other, KafkaError):
            return self.code() == other.code()
        return self.code() == other if isinstance(other, int) else NotImplemented

    def __hash__(self):
        return hash(self.code())

    def __str__(self):
        return f'KafkaError{{code={self.name()},val={self.code()},str="{self.str()}"}}'

    __repr__ = __str__


class _ErrorView(KafkaError):
    """The KafkaError of an OdradekError (its args[0]): reads the exception when called.
    `exception` is that OdradekError (odradek's addition to confluent-kafka's KafkaError):
    its class, message and attributes, where a delivery report hands only the KafkaError."""

    __slots__ = ("_error",)

    def __init__(self, error):
        self._error = error

    @property
    def exception(self):
        return self._error

    def code(self):
        return self._error.code

    def name(self):
        return self._error.name

    def str(self):
        return self._error.message

    def fatal(self):
        return self._error.fatal

    def retriable(self):
        return self._error.retriable

    def txn_requires_abort(self):
        return self._error.txn_requires_abort


class KafkaException(Exception):
    """confluent-kafka's exception: args[0] is the KafkaError."""

    def __init__(self, error=None, *args, **kwargs):
        if not isinstance(error, KafkaError) and (error is not None or kwargs):
            error = KafkaError(error if error is not None else -1, *args, **kwargs)
            args = ()
        super().__init__(error, *args)


class OdradekError(KafkaException):
    """Base of every odradek error. `code` and `name` identify it on the wire; args[0]
    is its KafkaError (confluent-kafka's shape)."""

    code = -1
    name = "UNKNOWN_SERVER_ERROR"
    retriable = False
    fatal = False
    txn_requires_abort = False

    def __init__(self, message="", *, retriable=None, fatal=None, txn_requires_abort=None):
        Exception.__init__(self, _ErrorView(self))
        self.message = message or self.name
        if retriable is not None:
            self.retriable = retriable
        if fatal is not None:
            self.fatal = fatal
        if txn_requires_abort is not None:
            self.txn_requires_abort = txn_requires_abort

    def __str__(self):
        return f"{self.name}: {self.message}" if self.message != self.name else self.name

    def __reduce__(self):
        return (type(self), (self.message,), self.__dict__)


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


# KafkaError's constants: every name above, librdkafka's spelling where it differs, and the
# client-side (negative) codes of librdkafka a program compares with
_LIBRDKAFKA_NAMES = {-1: "UNKNOWN", 2: "INVALID_MSG", 3: "UNKNOWN_TOPIC_OR_PART", 4: "INVALID_MSG_SIZE",
                     6: "NOT_LEADER_FOR_PARTITION", 10: "MSG_SIZE_TOO_LARGE", 17: "TOPIC_EXCEPTION"}
_LOCAL = [(0, "NO_ERROR", "success"), (-199, "_BAD_MSG", "bad message format"),
          (-198, "_BAD_COMPRESSION", "invalid compressed data"), (-195, "_TRANSPORT", "broker transport failure"),
          (-192, "_MSG_TIMED_OUT", "message timed out"), (-191, "_PARTITION_EOF", "no more messages"),
          (-190, "_UNKNOWN_PARTITION", "unknown partition"), (-188, "_UNKNOWN_TOPIC", "unknown topic"),
          (-187, "_ALL_BROKERS_DOWN", "all broker connections are down"),
          (-186, "_INVALID_ARG", "invalid argument or configuration"), (-185, "_TIMED_OUT", "timed out"),
          (-184, "_QUEUE_FULL", "queue full"), (-172, "_STATE", "erroneous state"),
          (-170, "_NOT_IMPLEMENTED", "not implemented"), (-168, "_NO_OFFSET", "no offset stored"),
          (-152, "_PURGE_QUEUE", "purged in queue"), (-150, "_FATAL", "fatal error"),
          (-147, "_MAX_POLL_EXCEEDED", "maximum application poll interval exceeded"),
          (-144, "_FENCED", "this instance has been fenced by a newer instance")]
_NAMES = {code: klass.name for code, klass in ERRORS.items()}
_WHAT = {code: klass.__doc__.rstrip(".") for code, klass in ERRORS.items()}
for _code, _name, _doc in _LOCAL:
    _NAMES[_code], _WHAT[_code] = _name, _doc
for _code, _name in [*_NAMES.items(), *_LIBRDKAFKA_NAMES.items()]:
    setattr(KafkaError, _name, _code)
del _code, _name, _doc


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
