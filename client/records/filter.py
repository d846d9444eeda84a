"""Kafka's MemoryRecords.filterTo, for one v2 batch: which of its records a filter keeps,
and the bytes of the batch that holds them. Pure: bytes in, bytes and counts out; no I/O,
no clock, no state of its own.

    batch = decode_batch(batch_bytes)            # DecodedBatch, or None if unreadable
    result = filter_batch(batch_bytes, my_filter)
    result.output        # the bytes to write, or None: the batch is dropped
    result.kind          # COPIED, REWRITTEN, DROPPED or UNREADABLE

The filter (Kafka's MemoryRecords.RecordFilter) is any object with
    check_batch_retention(batch) -> (BatchRetention, contains marker for an empty txn)
    retained_records(batch)      -> indexes into batch.rows of the records to keep, in order
    delete_horizon_ms            the horizon a batch gets when one must be set
called in that order, once per batch (a filter may keep state between the two calls).

Per batch, as filterTo does:
- A batch that cannot be read (records that do not decompress or parse, a compression
  id 5-7) is copied as it is (UNREADABLE); the filter is not asked.
- BatchRetention.DELETE: dropped whole.
- Otherwise the kept records decide. All kept and no delete horizon to set: the batch is
  copied byte for byte (CRC unchanged). Some kept, or a horizon to set (the batch keeps a
  tombstone, a null-value record of a non-control batch, or holds a marker for an empty
  transaction, and has no horizon yet): rebuilt as MemoryRecordsBuilder does: same
  baseOffset, lastOffsetDelta, partitionLeaderEpoch, producer id/epoch, baseSequence,
  attributes and codec (re-compressed with it at its default level); records keep their offsetDelta and
  timestamps; baseTimestamp is the horizon (attribute bit 6 set) or else the first kept
  record's timestamp; maxTimestamp the largest kept one (LogAppendTime batches keep
  theirs); CRC recomputed.
- None kept: BatchRetention.RETAIN_EMPTY writes the header alone
  (DefaultRecordBatch.writeEmptyHeader: 61 bytes, recordsCount 0, same offsets, producer
  fields and maxTimestamp, baseTimestamp -1); DELETE_EMPTY drops the batch.
The byte layout: FORMAT.md beside this file, and daemon/storage/FORMAT.md, "Compaction".
"""
import struct
from collections import namedtuple
from enum import Enum

from odradek.client import native
from odradek.client.errors import CorruptRecord
from odradek.client.records._batch import RecordBatch
from odradek.client.records.compression import compress
from odradek.client.records.control import decode_control_key
from odradek.client.records.layout import (
    ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, COMPRESSION_MASK, CONTROL_MASK, CRC_OFFSET, DELETE_HORIZON_MASK,
    HEADER_STRUCT, LOG_OVERHEAD, MAGIC, MIN_BATCH_LENGTH, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK, Compression,
    read_header)
from odradek.client.records.varint import decode_varint, encode_varint, encode_varlong, size_of_varlong

__all__ = ["filter_batch", "decode_batch", "DecodedBatch", "BatchRetention", "FilterResult",
           "COPIED", "REWRITTEN", "DROPPED", "UNREADABLE"]

COPIED, REWRITTEN, DROPPED, UNREADABLE = "copied", "rewritten", "dropped", "unreadable"
_NO_TIMESTAMP = -1
_U32 = struct.Struct(">I")
# Indexes into a row of native.RECORD_FIELDS (pinned by tests/client/records/test_filter.py;
# not read from native here: the native module imports this package while it loads).
_TIMESTAMP_DELTA, _VALUE_LEN = 1, 5


class BatchRetention(Enum):
    """Kafka's RecordFilter.BatchRetention: what happens to a batch none of whose
    records are kept (DELETE: to the batch whatever its records)."""
    DELETE = "delete"
    DELETE_EMPTY = "delete_empty"
    RETAIN_EMPTY = "retain_empty"


class FilterResult(namedtuple("FilterResult", "output kind records_read records_kept")):
    """output: the bytes to write (None: dropped); kind: COPIED, REWRITTEN, DROPPED or
    UNREADABLE; records_read and records_kept: of the batch's decoded records."""
    __slots__ = ()


class DecodedBatch:
    """A readable batch: `header` (HEADER_STRUCT's fields), `data` (the batch with its
    records uncompressed: a compressed batch's header with the codec bits cleared, then
    the records) and `rows` (native.RECORD_FIELDS of each record, positions into data), with
    the header fields a filter asks for by name."""
    __slots__ = ("header", "data", "rows", "base_offset", "last_offset", "attributes", "producer_id",
                 "delete_horizon")

    def __init__(self, header, data, rows):
        self.header, self.data, self.rows = header, data, rows
        self.base_offset, self.last_offset = header.base_offset, header.base_offset + header.last_offset_delta
        self.attributes, self.producer_id = header.attributes, header.producer_id
        # baseTimestamp is the delete horizon when attribute bit 6 is set
        self.delete_horizon = header.base_timestamp if header.attributes & DELETE_HORIZON_MASK else None

    @property
    def is_control(self):
        return bool(self.attributes & CONTROL_MASK)

    def key(self, row):
        """The key bytes of a record (row: one of rows; its key is not null)."""
        _, _, key_pos, key_len, *_ = row
        return self.data[key_pos:key_pos + key_len]

    @property
    def control_type(self):
        """ControlRecordType of a control batch's first record (control.py); None when it
        has none or its key is not a control key."""
        if not self.rows:
            return None
        _, _, key_pos, key_len, *_ = self.rows[0]
        try:
            return decode_control_key(self.data[key_pos:key_pos + key_len] if key_len >= 0 else None)
        except CorruptRecord:
            return None


def decode_batch(view, header=None):
    """The DecodedBatch of the whole batch `view`, or None for one whose records cannot
    be read (records that do not decompress or parse, a compression id 5-7). header: its
    BatchHeader, if already read."""
    if header is None:
        header = read_header(view)
    try:
        data = RecordBatch(view).uncompressed()
    except CorruptRecord:
        return None
    res = native.decode_records(data)
    if res.status != native.Status.OK or res.records != header.records_count:
        return None
    it = iter(res.rows.tolist())
    return DecodedBatch(header, data, list(zip(it, it, it, it, it, it, it, it)))


def filter_batch(view, record_filter, header=None):
    """filterTo for the one batch `view` (header: its BatchHeader, if already read): a
    FilterResult."""
    batch = decode_batch(view, header)
    if batch is None:
        return FilterResult(bytes(view), UNREADABLE, 0, 0)
    rows = batch.rows
    retention, marker_for_empty_txn = record_filter.check_batch_retention(batch)
    if retention is BatchRetention.DELETE:
        return FilterResult(None, DROPPED, len(rows), 0)
    kept = record_filter.retained_records(batch)
    if kept:
        tombstones = not batch.is_control and any(rows[i][_VALUE_LEN] < 0 for i in kept)
        horizon = batch.delete_horizon
        need_horizon = (tombstones or marker_for_empty_txn) and horizon is None
        if len(kept) == len(rows) and not need_horizon:
            return FilterResult(bytes(view), COPIED, len(rows), len(kept))
        new_horizon = record_filter.delete_horizon_ms if need_horizon else horizon
        return FilterResult(_rebuilt(batch, kept, new_horizon), REWRITTEN, len(rows), len(kept))
    if retention is BatchRetention.RETAIN_EMPTY:
        return FilterResult(_empty_batch(batch.header), REWRITTEN, len(rows), 0)
    return FilterResult(None, DROPPED, len(rows), 0)


def _with_crc(buf):
    _U32.pack_into(buf, CRC_OFFSET, native.crc32c(memoryview(buf)[ATTRIBUTES_OFFSET:]))
    return bytes(buf)


def _empty_batch(header):
    """DefaultRecordBatch.writeEmptyHeader: the batch's header, no records."""
    buf = bytearray(BATCH_HEADER_SIZE)
    keep = header.attributes & (TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK | CONTROL_MASK)
    HEADER_STRUCT.pack_into(buf, 0, *header._replace(batch_length=MIN_BATCH_LENGTH, magic=MAGIC, crc=0,
                                                     attributes=keep, base_timestamp=_NO_TIMESTAMP,
                                                     records_count=0))
    return _with_crc(buf)


def _record_spans(data, n):
    """[start, end) of each of the n records of an uncompressed batch `data`."""
    spans = []
    pos = BATCH_HEADER_SIZE
    for _ in range(n):
        length, after = decode_varint(data, pos)
        spans.append((pos, after + length))
        pos = after + length
    return spans


def _rebuilt(batch, kept, horizon):
    """MemoryRecordsBuilder over the kept records (indexes into batch.rows): same header
    fields but baseTimestamp (the horizon if any, else the first kept record's
    timestamp), maxTimestamp (the largest kept one; LogAppendTime: unchanged), attribute
    bit 6 (set with a horizon), recordsCount and CRC; same codec."""
    header = batch.header
    attrs, base_ts, max_ts = header.attributes, header.base_timestamp, header.max_timestamp
    data, rows = batch.data, batch.rows
    spans = _record_spans(data, len(rows))
    new_base = horizon if horizon is not None else base_ts + rows[kept[0]][_TIMESTAMP_DELTA]
    parts = []
    largest = _NO_TIMESTAMP
    for i in kept:
        ts = base_ts + rows[i][_TIMESTAMP_DELTA]
        if ts > largest:
            largest = ts
        start, end = spans[i]
        if new_base == base_ts:
            parts.append(data[start:end])       # the record's bytes as they were
            continue
        _, after = decode_varint(data, start)   # the record's length prefix; then attributes (1 byte)
        ts_end = after + 1 + size_of_varlong(rows[i][_TIMESTAMP_DELTA])
        body = data[after:after + 1] + encode_varlong(ts - new_base) + data[ts_end:end]
        parts.append(encode_varint(len(body)))
        parts.append(body)
    records = b"".join(parts)
    if attrs & COMPRESSION_MASK != Compression.NONE:
        records = compress(attrs & COMPRESSION_MASK, records)
    new_attrs = attrs | DELETE_HORIZON_MASK if horizon is not None else attrs & ~DELETE_HORIZON_MASK
    if not attrs & TIMESTAMP_TYPE_MASK:
        max_ts = largest
    buf = bytearray(BATCH_HEADER_SIZE) + records
    HEADER_STRUCT.pack_into(buf, 0, *header._replace(batch_length=len(buf) - LOG_OVERHEAD, magic=MAGIC, crc=0,
                                                     attributes=new_attrs, base_timestamp=new_base,
                                                     max_timestamp=max_ts, records_count=len(kept)))
    return _with_crc(buf)
