"""Byte layout of a Kafka v2 RecordBatch: field offsets, attribute bits, codes.

Full description, worked example and reader rules: FORMAT.md beside this file.

    RecordBatch header, all integers big-endian (61 bytes, then the records):
      off size type    field                    off size type    field
        0   8  int64   baseOffset                35   8  int64   maxTimestamp
        8   4  int32   batchLength (= size-12)   43   8  int64   producerId
       12   4  int32   partitionLeaderEpoch      51   2  int16   producerEpoch
       16   1  int8    magic (= 2)               53   4  int32   baseSequence
       17   4  uint32  crc: CRC-32C of 21..end   57   4  int32   recordsCount
       21   2  int16   attributes                61      records (maybe compressed)
       23   4  int32   lastOffsetDelta
       27   8  int64   baseTimestamp

Each offset is derived from the one before it (offset + size), so the table above and
the numbers below cannot drift apart silently; tests/client/records/test_layout.py checks
both against the table in FORMAT.md. BatchHeader names the fields of one header as
read_header copies them out (one unpack_from). Pure constants: no I/O, no state.
"""
import struct
from collections import namedtuple
from enum import IntEnum

__all__ = [
    "BASE_OFFSET_OFFSET", "BASE_OFFSET_LENGTH",
    "BATCH_LENGTH_OFFSET", "BATCH_LENGTH_LENGTH",
    "PARTITION_LEADER_EPOCH_OFFSET", "PARTITION_LEADER_EPOCH_LENGTH",
    "MAGIC_OFFSET", "MAGIC_LENGTH",
    "CRC_OFFSET", "CRC_LENGTH",
    "ATTRIBUTES_OFFSET", "ATTRIBUTES_LENGTH",
    "LAST_OFFSET_DELTA_OFFSET", "LAST_OFFSET_DELTA_LENGTH",
    "BASE_TIMESTAMP_OFFSET", "BASE_TIMESTAMP_LENGTH",
    "MAX_TIMESTAMP_OFFSET", "MAX_TIMESTAMP_LENGTH",
    "PRODUCER_ID_OFFSET", "PRODUCER_ID_LENGTH",
    "PRODUCER_EPOCH_OFFSET", "PRODUCER_EPOCH_LENGTH",
    "BASE_SEQUENCE_OFFSET", "BASE_SEQUENCE_LENGTH",
    "RECORDS_COUNT_OFFSET", "RECORDS_COUNT_LENGTH",
    "RECORDS_OFFSET", "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "MIN_BATCH_LENGTH",
    "MAGIC", "COMPRESSION_MASK", "TIMESTAMP_TYPE_MASK", "TRANSACTIONAL_MASK",
    "CONTROL_MASK", "DELETE_HORIZON_MASK",
    "Compression", "TimestampType",
    "NO_PRODUCER_ID", "NO_PRODUCER_EPOCH", "NO_SEQUENCE", "MAX_SEQUENCE", "NO_PARTITION_LEADER_EPOCH",
    "HEADER_STRUCT", "BatchHeader", "read_header",
]

# ---- Header field offsets, each derived from the one before -------------------------
BASE_OFFSET_OFFSET = 0
BASE_OFFSET_LENGTH = 8
BATCH_LENGTH_OFFSET = BASE_OFFSET_OFFSET + BASE_OFFSET_LENGTH
BATCH_LENGTH_LENGTH = 4
PARTITION_LEADER_EPOCH_OFFSET = BATCH_LENGTH_OFFSET + BATCH_LENGTH_LENGTH
PARTITION_LEADER_EPOCH_LENGTH = 4
MAGIC_OFFSET = PARTITION_LEADER_EPOCH_OFFSET + PARTITION_LEADER_EPOCH_LENGTH
MAGIC_LENGTH = 1
CRC_OFFSET = MAGIC_OFFSET + MAGIC_LENGTH
CRC_LENGTH = 4
ATTRIBUTES_OFFSET = CRC_OFFSET + CRC_LENGTH
ATTRIBUTES_LENGTH = 2
LAST_OFFSET_DELTA_OFFSET = ATTRIBUTES_OFFSET + ATTRIBUTES_LENGTH
LAST_OFFSET_DELTA_LENGTH = 4
BASE_TIMESTAMP_OFFSET = LAST_OFFSET_DELTA_OFFSET + LAST_OFFSET_DELTA_LENGTH
BASE_TIMESTAMP_LENGTH = 8
MAX_TIMESTAMP_OFFSET = BASE_TIMESTAMP_OFFSET + BASE_TIMESTAMP_LENGTH
MAX_TIMESTAMP_LENGTH = 8
PRODUCER_ID_OFFSET = MAX_TIMESTAMP_OFFSET + MAX_TIMESTAMP_LENGTH
PRODUCER_ID_LENGTH = 8
PRODUCER_EPOCH_OFFSET = PRODUCER_ID_OFFSET + PRODUCER_ID_LENGTH
PRODUCER_EPOCH_LENGTH = 2
BASE_SEQUENCE_OFFSET = PRODUCER_EPOCH_OFFSET + PRODUCER_EPOCH_LENGTH
BASE_SEQUENCE_LENGTH = 4
RECORDS_COUNT_OFFSET = BASE_SEQUENCE_OFFSET + BASE_SEQUENCE_LENGTH
RECORDS_COUNT_LENGTH = 4
RECORDS_OFFSET = RECORDS_COUNT_OFFSET + RECORDS_COUNT_LENGTH
BATCH_HEADER_SIZE = RECORDS_OFFSET

# baseOffset + batchLength: the framing that batchLength does not count.
LOG_OVERHEAD = BATCH_LENGTH_OFFSET + BATCH_LENGTH_LENGTH
# The smallest batchLength a well-formed batch can declare: a header and no records.
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD

MAGIC = 2

# One struct for the whole header, in field order: a single unpack_from per batch.
HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")


class BatchHeader(namedtuple("BatchHeader", "base_offset batch_length partition_leader_epoch magic crc "
                                            "attributes last_offset_delta base_timestamp max_timestamp "
                                            "producer_id producer_epoch base_sequence records_count")):
    """The 13 header fields of one batch, in HEADER_STRUCT's (and the table's) order: a
    plain tuple with names, copied out of the bytes by read_header. To write one back:
    HEADER_STRUCT.pack_into(buffer, position, *header)."""

    __slots__ = ()


def read_header(buffer, position=0, _new=tuple.__new__, _unpack=HEADER_STRUCT.unpack_from):
    """The BatchHeader of the batch at buffer[position:] (61 bytes must be there:
    struct.error otherwise). One unpack_from; fields checked by no one here."""
    return _new(BatchHeader, _unpack(buffer, position))

# ---- Attribute bits (int16 at ATTRIBUTES_OFFSET) -------------------------------------
COMPRESSION_MASK = 0x07      # bits 0-2: Compression
TIMESTAMP_TYPE_MASK = 0x08   # bit 3: 0 CreateTime, 1 LogAppendTime
TRANSACTIONAL_MASK = 0x10    # bit 4: part of a transaction
CONTROL_MASK = 0x20          # bit 5: holds a control record (commit/abort marker)
DELETE_HORIZON_MASK = 0x40   # bit 6: baseTimestamp is the compaction delete horizon

# ---- "Absent" values of the producer fields, as Kafka writes them --------------------
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
MAX_SEQUENCE = 0x7fffffff   # Integer.MAX_VALUE: sequences wrap from it to 0 (Kafka's DefaultRecordBatch)
NO_PARTITION_LEADER_EPOCH = -1


class Compression(IntEnum):
    """Codec ids of attribute bits 0-2 (compression.py compresses and decompresses each)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def from_name(cls, name):
        """Compression.from_name('gzip') -> Compression.GZIP; the names of Kafka's
        compression.type config ('none', 'gzip', 'snappy', 'lz4', 'zstd')."""
        try:
            return cls[str(name).strip().upper()]
        except KeyError:
            choices = ", ".join(c.name.lower() for c in cls)
            raise ValueError(f"unknown compression type {name!r}; expected one of {choices}") from None

    @property
    def label(self):
        """The lower-case name Kafka configs use ('gzip')."""
        return self.name.lower()


class TimestampType(IntEnum):
    """Attribute bit 3: who set the record timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


assert HEADER_STRUCT.size == BATCH_HEADER_SIZE == 61 and len(BatchHeader._fields) == 13
assert LOG_OVERHEAD == 12 and MIN_BATCH_LENGTH == 49
