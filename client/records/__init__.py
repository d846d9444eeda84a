"""odradek.client.records: Kafka's v2 RecordBatch format, shared by client and daemon.

Pure functions and views over bytes: no I/O, no clock, no global state. The byte layout,
CRC coverage and reader rules are in FORMAT.md beside this file.

    from odradek.client.records import BatchBuilder, RecordBatch, iter_batches
    b = BatchBuilder()
    b.append(1700000000000, b"k", b"v")
    data = b.build()
    for position, batch in iter_batches(data):
        batch.validate()
        for record in batch.records():
            print(record.offset, record.key, record.value)
"""
from odradek.client.records._batch import (
    SCAN_BYTES, RecordBatch, iter_batches, next_whole_batch, read_base_offset, read_batch_length,
    whole_batch_at, write_base_offset, write_log_append_time, write_partition_leader_epoch)
from odradek.client.records._builder import BatchBuilder
from odradek.client.records.layout import (
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET, BASE_TIMESTAMP_OFFSET,
    BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, COMPRESSION_MASK, CONTROL_MASK, CRC_OFFSET,
    DELETE_HORIZON_MASK, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD, MAGIC, MAGIC_OFFSET,
    MAX_TIMESTAMP_OFFSET, MIN_BATCH_LENGTH, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    MAX_SEQUENCE, NO_PRODUCER_ID, NO_SEQUENCE, PARTITION_LEADER_EPOCH_OFFSET, PRODUCER_EPOCH_OFFSET,
    PRODUCER_ID_OFFSET, RECORDS_COUNT_OFFSET, RECORDS_OFFSET, TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK, BatchHeader, Compression, TimestampType, read_header)
from odradek.client.records.control import (
    ControlRecordType, EndTxnMarker, decode_control_key, decode_end_txn_marker, encode_control_key,
    encode_end_txn_marker, marker_batch)
from odradek.client.records._record import MAX_RECORD_OVERHEAD, BatchRecord, size_of_record
from odradek.client.records.filter import BatchRetention, DecodedBatch, FilterResult, decode_batch, filter_batch
from odradek.client.records import layout, varint

__all__ = [
    # layout
    "BASE_OFFSET_OFFSET", "BATCH_LENGTH_OFFSET", "PARTITION_LEADER_EPOCH_OFFSET",
    "MAGIC_OFFSET", "CRC_OFFSET", "ATTRIBUTES_OFFSET", "LAST_OFFSET_DELTA_OFFSET",
    "BASE_TIMESTAMP_OFFSET", "MAX_TIMESTAMP_OFFSET", "PRODUCER_ID_OFFSET",
    "PRODUCER_EPOCH_OFFSET", "BASE_SEQUENCE_OFFSET", "RECORDS_COUNT_OFFSET",
    "RECORDS_OFFSET", "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "MIN_BATCH_LENGTH", "MAGIC",
    "COMPRESSION_MASK", "TIMESTAMP_TYPE_MASK", "TRANSACTIONAL_MASK", "CONTROL_MASK",
    "DELETE_HORIZON_MASK", "Compression", "TimestampType",
    "NO_PRODUCER_ID", "NO_PRODUCER_EPOCH", "NO_SEQUENCE", "MAX_SEQUENCE", "NO_PARTITION_LEADER_EPOCH",
    "BatchHeader", "read_header",
    # records and batches
    "BatchRecord", "RecordBatch", "iter_batches", "BatchBuilder", "size_of_record",
    "MAX_RECORD_OVERHEAD",
    # whole batches after damaged bytes
    "whole_batch_at", "next_whole_batch", "SCAN_BYTES",
    # in-place header access
    "read_base_offset", "read_batch_length", "write_base_offset",
    "write_partition_leader_epoch", "write_log_append_time",
    # control records: transaction markers (control.py)
    "ControlRecordType", "EndTxnMarker", "encode_control_key", "decode_control_key", "encode_end_txn_marker",
    "decode_end_txn_marker", "marker_batch",
    # zigzag varints
    "varint",
    # the v2 header layout as a module (layout.HEADER_STRUCT and the constants above)
    "layout",
    # Kafka's MemoryRecords.filterTo for one batch (records/filter.py; compaction)
    "filter_batch", "decode_batch", "DecodedBatch", "BatchRetention", "FilterResult",
]
