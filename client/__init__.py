"""odradek.client: the public client API of odradek. Imports nothing else of ours.

The wire and disk formats both sides agree on live here (records/), as Kafka's record
format lives in its clients jar; the daemon imports this package, never the reverse.
"""
from odradek.client import errors
from odradek.client.admin import Admin
from odradek.client.consumer import Consumer
from odradek.client.errors import IllegalState, MaxPollIntervalExceeded, OdradekError, TransactionAborted
from odradek.client.message import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, GroupMetadata, OffsetAndMetadata,
                                    Record, TopicPartition)
from odradek.client.producer import Producer

__all__ = ["errors", "OdradekError", "Admin", "Producer", "Consumer", "Record", "TopicPartition",
           "OffsetAndMetadata", "GroupMetadata", "MaxPollIntervalExceeded", "IllegalState", "TransactionAborted",
           "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID"]
