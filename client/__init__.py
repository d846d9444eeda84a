"""odradek.client: the public client API of odradek. Imports nothing else of ours.

The wire and disk formats both sides agree on live here (records/), as Kafka's record
format lives in its clients jar; the daemon imports this package, never the reverse.
"""
from odradek.client import errors
from odradek.client.admin import Admin
from odradek.client.consumer import Consumer
from odradek.client.errors import (IllegalState, KafkaError, KafkaException, MaxPollIntervalExceeded, OdradekError,
                                   TransactionAborted)
from odradek.client.message import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, TIMESTAMP_CREATE_TIME,
                                    TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, GroupMetadata, OffsetAndMetadata,
                                    Record, TopicPartition)
from odradek.client.producer import Producer

__all__ = ["errors", "KafkaError", "KafkaException", "OdradekError", "Admin", "Producer", "Consumer", "Record", "TopicPartition",
           "OffsetAndMetadata", "GroupMetadata", "MaxPollIntervalExceeded", "IllegalState", "TransactionAborted",
           "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "TIMESTAMP_NOT_AVAILABLE", "TIMESTAMP_CREATE_TIME",
           "TIMESTAMP_LOG_APPEND_TIME"]
