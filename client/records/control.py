"""Control records: the transaction markers (KIP-98) a partition leader writes to end a
producer's transaction. FORMAT.md beside this file, "Control batches", draws the bytes.

A control batch has attributes isControl (0x20) and isTransactional (0x10), the
producer's id and epoch, baseSequence -1, no compression and one record whose key and
value are fixed-layout big-endian structs (Kafka's ControlRecordType and
EndTransactionMarker):

    key   = version int16 (0) | type int16 (0 ABORT, 1 COMMIT)
    value = version int16 (0) | coordinator_epoch int32

    data = marker_batch(ControlRecordType.COMMIT, producer_id=7, producer_epoch=0,
                        coordinator_epoch=3, timestamp=1700000000000)
    batch = RecordBatch(data)
    batch.is_control, batch.end_txn_marker()   # True, EndTxnMarker(COMMIT, 3)

Readers follow Kafka: a key or value too short or with a negative version is
CorruptRecord; a key version above 0 is read by its first two fields (Kafka logs and
reads on); an unknown type reads as ControlRecordType.UNKNOWN.
"""
import struct
from enum import IntEnum
from typing import NamedTuple

from odradek.client.errors import CorruptRecord
from odradek.client.records._builder import BatchBuilder
from odradek.client.records.layout import NO_PARTITION_LEADER_EPOCH, NO_SEQUENCE

__all__ = ["ControlRecordType", "EndTxnMarker", "CONTROL_KEY_VERSION", "END_TXN_MARKER_VERSION",
           "CONTROL_KEY_SIZE", "END_TXN_MARKER_SIZE", "encode_control_key", "decode_control_key",
           "encode_end_txn_marker", "decode_end_txn_marker", "marker_batch"]

CONTROL_KEY_VERSION = 0          # Kafka's ControlRecordType.CURRENT_CONTROL_RECORD_KEY_VERSION
END_TXN_MARKER_VERSION = 0       # Kafka's EndTransactionMarker.CURRENT_END_TXN_MARKER_VERSION
_KEY = struct.Struct(">hh")      # version, type
_VALUE = struct.Struct(">hi")    # version, coordinator_epoch
CONTROL_KEY_SIZE = _KEY.size             # 4
END_TXN_MARKER_SIZE = _VALUE.size        # 6


class ControlRecordType(IntEnum):
    """The type field of a control record's key (Kafka's ControlRecordType). UNKNOWN (-1)
    stands for any type this reader does not know."""

    UNKNOWN = -1
    ABORT = 0
    COMMIT = 1


class EndTxnMarker(NamedTuple):
    """A transaction marker as read from a control batch's record: its type (ABORT or
    COMMIT) and the epoch of the transaction coordinator that wrote it."""

    control_type: ControlRecordType
    coordinator_epoch: int

    @property
    def committed(self):
        return self.control_type is ControlRecordType.COMMIT


def encode_control_key(control_type):
    """The 4-byte key of a control record of `control_type` (ABORT or COMMIT)."""
    control_type = ControlRecordType(control_type)
    if control_type is ControlRecordType.UNKNOWN:
        raise ValueError("a control record is ABORT or COMMIT, not UNKNOWN")
    return _KEY.pack(CONTROL_KEY_VERSION, control_type)


def decode_control_key(key):
    """The ControlRecordType of a control record's key (bytes-like)."""
    if key is None or len(key) < CONTROL_KEY_SIZE:
        raise CorruptRecord(f"a control record key is version int16 and type int16 ({CONTROL_KEY_SIZE} "
                            f"bytes); found {'null' if key is None else f'{len(key)} bytes'}")
    version, kind = _KEY.unpack_from(key)
    if version < 0:
        raise CorruptRecord(f"a control record key has version {version}; expected >= 0")
    try:
        return ControlRecordType(kind)
    except ValueError:
        return ControlRecordType.UNKNOWN


def encode_end_txn_marker(coordinator_epoch):
    """The 6-byte value of an end-transaction marker record."""
    return _VALUE.pack(END_TXN_MARKER_VERSION, coordinator_epoch)


def decode_end_txn_marker(key, value):
    """The EndTxnMarker of a control record with this key and value; CorruptRecord if the
    key is not that of an ABORT or COMMIT record or the value is not a marker's."""
    kind = decode_control_key(key)
    if kind is ControlRecordType.UNKNOWN:
        raise CorruptRecord(f"control record type {_KEY.unpack_from(key)[1]} is not a transaction "
                            f"marker (0 ABORT, 1 COMMIT)")
    if value is None or len(value) < END_TXN_MARKER_SIZE:
        raise CorruptRecord(f"an end-transaction marker value is version int16 and coordinator epoch "
                            f"int32 ({END_TXN_MARKER_SIZE} bytes); found "
                            f"{'null' if value is None else f'{len(value)} bytes'}")
    version, coordinator_epoch = _VALUE.unpack_from(value)
    if version < 0:
        raise CorruptRecord(f"an end-transaction marker has version {version}; expected >= 0")
    return EndTxnMarker(kind, coordinator_epoch)


def marker_batch(control_type, producer_id, producer_epoch, coordinator_epoch, timestamp, base_offset=0,
                 partition_leader_epoch=NO_PARTITION_LEADER_EPOCH):
    """The bytes of a control batch holding one end-transaction marker (Kafka's
    MemoryRecords.withEndTransactionMarker): isControl and isTransactional set, no
    compression, CreateTime, baseSequence -1, one record (key and value above, no
    headers) at `timestamp` (ms)."""
    builder = BatchBuilder(base_offset=base_offset, partition_leader_epoch=partition_leader_epoch,
                           producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=NO_SEQUENCE,
                           transactional=True, control=True)
    builder.append(timestamp, encode_control_key(control_type), encode_end_txn_marker(coordinator_epoch))
    return builder.build()
