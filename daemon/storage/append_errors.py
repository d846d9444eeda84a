"""The error an append refused by the native call raises: from the append state's status,
expected and found fields (odradek.h, odk_append) to the OdradekError with Kafka's name
(CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, INVALID_RECORD, UNSUPPORTED_COMPRESSION_TYPE, ...)
and a message naming the batch. Pure: no I/O.
"""
from bisect import bisect_right
from itertools import accumulate
from struct import calcsize

from odradek.client import native
from odradek.client.errors import (CorruptRecord, InvalidConfig, InvalidRecord, InvalidTimestamp, MessageTooLarge,
                                   StorageError, UnsupportedCompression)
from odradek.client.records import Compression
from odradek.client.records.layout import HEADER_STRUCT, BatchHeader

__all__ = ["append_error", "timestamp_words"]

_CORRUPT = {
    native.Status.TRUNCATED: "is truncated: expected {e} bytes, found {f}",
    native.Status.BAD_LENGTH: "has an impossible length: expected at least {e}, found {f}",
    native.Status.BAD_MAGIC: "has magic {f}; expected {e} (Kafka v2 record batches)",
    native.Status.BAD_CRC: "fails its CRC-32C: computed {e:#010x}, stored {f:#010x}",
    native.Status.BAD_OFFSET: "has baseOffset {f}; expected at least {e}",
}


# odk_decode_records' statuses, as BAD_RECORD_BYTES' found (odradek.h)
_RECORD_BYTES = {
    native.Status.TRUNCATED: "its length runs past the end of the batch",
    native.Status.BAD_VARINT: "a varint is longer or wider than its type allows",
    native.Status.BAD_RECORD: "its length or a field is impossible or does not fit the record",
    native.Status.BAD_COUNT: "recordsCount does not match the records present",
}


# where each BatchHeader field starts in the header, from HEADER_STRUCT (layout.py)
_FIELD_STARTS = tuple(accumulate((calcsize(">" + c) for c in HEADER_STRUCT.format[1:-1]), initial=0))


def _field(at):
    """The name of the batch header field holding byte `at` of the header."""
    return BatchHeader._fields[bisect_right(_FIELD_STARTS, at) - 1]


def timestamp_words(found, bound, where):
    """What InvalidTimestamp says of a record timestamp `found` past `bound` in `where`."""
    side = ("before.max.ms", "earlier") if found < bound else ("after.max.ms", "later")
    return (f"a record of {where} has timestamp {found}, {side[1]} than {bound}, the limit "
            f"message.timestamp.{side[0]} sets around the broker's clock; nothing was appended")


def append_error(st, nbytes):
    """The OdradekError for an append of `nbytes` the native call refused (st: its state)."""
    status, where = st.status, f"batch at position {st.valid_bytes}"
    if status == native.Status.TOO_LARGE:
        return MessageTooLarge(f"{where} is {st.found} bytes; max.message.bytes is {st.expected}")
    if status == native.Status.BAD_RECORDS:
        return InvalidRecord(f"{where} has {st.expected} records but lastOffsetDelta {st.found}; "
                             f"expected records - 1 (and at least one record)")
    if status == native.Status.BAD_RECORD_BYTES:
        why = _RECORD_BYTES.get(st.found, native.Status.NAMES.get(st.found, st.found))
        return InvalidRecord(f"record {st.expected} of the {where} does not decode: {why}; nothing was appended")
    if status == native.Status.BAD_TIMESTAMP:
        return InvalidTimestamp(timestamp_words(st.found, st.expected, f"the {where}"))
    if status == native.Status.BAD_CODEC:
        return UnsupportedCompression(f"{where} names compression id {st.found}, which is no codec; "
                                      f"expected 0-{st.expected} ({', '.join(c.label for c in Compression)})")
    if status == native.Status.CHANGED:
        if st.found >= 0:
            return CorruptRecord(f"the batches changed while they were appended: {st.found} batches landed "
                                 f"where {st.expected} were checked; nothing was appended")
        return CorruptRecord(f"batch {st.batches} at position {st.valid_bytes} changed while it was appended "
                             f"(its header differs at byte {st.expected} from the one checked, "
                             f"{_field(st.expected)}); nothing was appended")
    if status == native.Status.EMPTY or (status in _CORRUPT and st.batches == 0 and nbytes == 0):
        return CorruptRecord("no record batches in an empty buffer")
    if status in _CORRUPT:
        what = _CORRUPT[status].format(e=st.expected, f=st.found)
        return CorruptRecord(f"batch {st.batches} at position {st.valid_bytes} {what}")
    if status == native.Status.INDEX_FULL:
        return InvalidConfig(f"an append of {nbytes} bytes needs more offset-index entries than a whole "
                             f"segment index holds; raise segment.index.bytes or index.interval.bytes")
    return StorageError(f"append of {nbytes} bytes refused by a fresh segment: "
                        f"{native.Status.NAMES.get(status, status)}")
