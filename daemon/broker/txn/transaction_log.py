"""The records of the internal topic __transaction_state, in Apache Kafka's byte layout
(its TransactionLogKey.json and TransactionLogValue.json, version 0 of each).

    key    int16 version 0, transactional_id: string
    value  int16 version 0, producer_id: int64, producer_epoch: int16,
           transaction_timeout_ms: int32, transaction_status: int8,
           transaction_partitions: nullable array of (topic: string, partition_ids: [int32]),
           transaction_last_update_timestamp_ms: int64, transaction_start_timestamp_ms: int64

A null value (a tombstone) says the transactional id expired. The value of an Empty
transaction has null partitions, as Kafka writes it. FORMAT.md beside this file draws
both with a worked example. The layouts are Structs of the body type system
(odradek.client.protocol), the one codec; the coordinator works with TxnRecord.
Pure functions over bytes: no I/O.
"""
from dataclasses import dataclass

from odradek.client.protocol import (
    INT8, INT16, INT32, INT64, STRING, Array, LocalProtocolError, RemoteProtocolError, Struct, read_version)

__all__ = ["TxnRecord", "FormatError", "encode_key", "encode_value", "decode_key", "decode_value",
           "KEY_VERSION", "VALUE_VERSION"]

KEY_VERSION = 0      # Kafka's CoordinatorRecordType TRANSACTION_LOG
VALUE_VERSION = 0    # the non-flexible version; v1 is Kafka's tagged-field form (KIP-890)


class FormatError(ValueError):
    """A key or value that is not a record of __transaction_state in a known version."""


# ---- the wire layouts ----------------------------------------------------------------

class TransactionLogKey(Struct):
    FIELDS = [
        # name               type    default  since
        ("transactional_id", STRING, "",      0),
    ]


class PartitionsSchema(Struct):
    FIELDS = [
        ("topic",            STRING,       "",  0),
        ("partition_ids",    Array(INT32), [],  0),
    ]


class TransactionLogValue(Struct):
    FIELDS = [
        # name                                   type                                   default  since
        ("producer_id",                          INT64,                                 -1,      0),
        ("producer_epoch",                       INT16,                                 -1,      0),
        ("transaction_timeout_ms",               INT32,                                 0,       0),
        ("transaction_status",                   INT8,                                  0,       0),
        ("transaction_partitions",               Array(PartitionsSchema, nullable=True), None,   0),
        ("transaction_last_update_timestamp_ms", INT64,                                 -1,      0),
        ("transaction_start_timestamp_ms",       INT64,                                 -1,      0),
    ]


# ---- the value the coordinator keeps ---------------------------------------------------

@dataclass(frozen=True)
class TxnRecord:
    """One value record: `status` is the state's id (state.TxnState), `partitions` a
    frozenset of (topic, partition)."""
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int
    partitions: frozenset
    last_update_ms: int
    start_ms: int


def encode_key(transactional_id):
    """TransactionLogKey v0."""
    try:
        return TransactionLogKey(transactional_id=transactional_id).encode_versioned(KEY_VERSION)
    except LocalProtocolError as e:
        raise FormatError(str(e)) from None


def encode_value(record, empty):
    """TransactionLogValue v0 of `record`; `empty` (the Empty state) writes null
    partitions. Topics and partitions in sorted order, so equal states write equal bytes."""
    by_topic = {}
    for topic, partition in sorted(record.partitions):
        by_topic.setdefault(topic, []).append(partition)
    value = TransactionLogValue(
        producer_id=record.producer_id, producer_epoch=record.producer_epoch,
        transaction_timeout_ms=record.timeout_ms, transaction_status=record.status,
        transaction_partitions=None if empty else [PartitionsSchema(topic=t, partition_ids=ps)
                                                   for t, ps in by_topic.items()],
        transaction_last_update_timestamp_ms=record.last_update_ms,
        transaction_start_timestamp_ms=record.start_ms)
    try:
        return value.encode_versioned(VALUE_VERSION)
    except LocalProtocolError as e:
        raise FormatError(str(e)) from None


def _read(data, cls, version_wanted, what):
    try:
        version, body = read_version(data)
    except RemoteProtocolError as e:
        raise FormatError(str(e.locate(what))) from None
    if version != version_wanted:
        raise FormatError(f"{what} version {version} is not known (this reader knows {version_wanted})")
    try:
        return cls.decode(body, version)
    except RemoteProtocolError as e:
        raise FormatError(str(e)) from None


def decode_key(key):
    """The transactional id of a TransactionLogKey v0; FormatError for anything else."""
    return _read(key, TransactionLogKey, KEY_VERSION, "__transaction_state key").transactional_id


def decode_value(value):
    """A TxnRecord from a TransactionLogValue v0; FormatError for anything else."""
    v = _read(value, TransactionLogValue, VALUE_VERSION, "TransactionLogValue")
    partitions = frozenset((p.topic, i) for p in v.transaction_partitions or () for i in p.partition_ids)
    return TxnRecord(v.producer_id, v.producer_epoch, v.transaction_timeout_ms, v.transaction_status,
                     partitions, v.transaction_last_update_timestamp_ms, v.transaction_start_timestamp_ms)
