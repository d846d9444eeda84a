"""What producers and consumers hand to applications.

    Record             one record as a consumer returns it (and a delivery report passes
                       it to on_delivery), read through confluent-kafka's Message methods:
                       topic(), partition(), offset(), key(), value(), headers(),
                       timestamp() -> (TIMESTAMP_CREATE_TIME or TIMESTAMP_LOG_APPEND_TIME, ms),
                       error(), len(record)
    FailedDelivery     the Record of a delivery report whose record was not written:
                       error() is its KafkaError
    TopicPartition     (topic, partition, offset): assign, seek, position, offsets_for_times
    OffsetAndMetadata  a TopicPartition with a commit's metadata string: committed(), commit()
    GroupMetadata      (group_id, generation_id, member_id, group_instance_id): group_metadata()
"""
from collections import namedtuple

# Record is a C type (odradek._hotpath; daemon/c_ext/hp_consumer.c), so that a consumer's
# fetch is made into Records in one C call. Record(topic, partition, offset, key, value,
# headers, timestamp, timestamp_type=TIMESTAMP_CREATE_TIME): confluent-kafka's Message
# methods (its attributes are methods, so that a confluent-kafka program reads it
# unchanged), == compares all eight fields, not hashable, pickles. error() is None;
# offset() is -1 in a delivery report of a failed record or of one sent with acks=0.
from odradek._hotpath import Record

__all__ = ["Record", "FailedDelivery", "TopicPartition", "OffsetAndMetadata", "GroupMetadata", "OFFSET_BEGINNING", "OFFSET_END",
           "OFFSET_INVALID", "TIMESTAMP_NOT_AVAILABLE", "TIMESTAMP_CREATE_TIME", "TIMESTAMP_LOG_APPEND_TIME"]

OFFSET_BEGINNING = -2    # the log start offset (confluent-kafka's value)
OFFSET_END = -1          # the log end offset: only records produced from now on
OFFSET_INVALID = -1001   # no offset given: auto.offset.reset decides
# Record.timestamp()'s type, confluent-kafka's values (not the batch attribute bit's 0/1)
TIMESTAMP_NOT_AVAILABLE, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME = 0, 1, 2


class FailedDelivery(Record):
    """The record of a delivery report whose record was not written (offset() -1):
    error() is why, a KafkaError, as confluent-kafka's Message.error() in a failed
    delivery report. A subclass, so that Record stays eight fields (a fetch makes
    millions of them) and only a failed delivery carries a ninth."""
    __slots__ = ("_error",)

    def __init__(self, topic, partition, offset, key, value, headers, timestamp, timestamp_type, error):
        super().__init__(topic, partition, offset, key, value, headers, timestamp, timestamp_type)
        self._error = error

    def error(self):
        return self._error

    def __reduce__(self):
        return (FailedDelivery, (*Record.__reduce__(self)[1], self._error))


class TopicPartition(namedtuple("TopicPartition", "topic partition offset", defaults=(OFFSET_INVALID,))):
    """A partition of a topic, with an offset where one is meant (a position, a seek
    target, a timestamp for offsets_for_times)."""
    __slots__ = ()


class OffsetAndMetadata(TopicPartition):
    """A TopicPartition that carries a commit metadata string: what committed() returns,
    and what commit(offsets=[...]) accepts to give each partition its own metadata.
    Compares equal to the plain TopicPartition(topic, partition, offset)."""
    metadata = ""     # no __slots__: an instance keeps its own metadata

    def __new__(cls, topic, partition, offset=OFFSET_INVALID, metadata=""):
        self = super().__new__(cls, topic, partition, offset)
        self.metadata = metadata or ""
        return self

    def __repr__(self):
        return (f"OffsetAndMetadata(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
                f"metadata={self.metadata!r})")


GroupMetadata = namedtuple("GroupMetadata", "group_id generation_id member_id group_instance_id")
GroupMetadata.__doc__ = "Where a member stands in its group: Consumer.group_metadata()."
