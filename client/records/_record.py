"""One record of a v2 batch as decoded (BatchRecord), and how many bytes a record takes
in a batch. (The user-facing record, with topic and partition, is odradek.client.Record.)

    record (inside a batch, see FORMAT.md):
      length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
      keyLength varint | key | valueLength varint | value |
      headersCount varint | (headerKeyLength varint | headerKey utf-8 |
                             headerValueLength varint | headerValue)*
    Lengths of -1 mean null (key, value, header value; never a header key).
"""
from collections import namedtuple

from odradek.client.records.varint import size_of_varint, size_of_varlong

__all__ = ["BatchRecord", "size_of_record", "MAX_RECORD_OVERHEAD"]

# The most a record adds beyond key, value and headers bytes: length (5) + attributes
# (1) + timestampDelta (10) + offsetDelta (5) + keyLength (5) + valueLength (5) +
# headersCount (5). A producer that wants an upper bound adds this to the payload.
MAX_RECORD_OVERHEAD = 36


class BatchRecord(namedtuple("BatchRecord", "offset timestamp key value headers", defaults=((),))):
    """A record decoded from a batch (RecordBatch.records()): absolute offset, timestamp (ms), key and value (bytes or None),
    headers (a tuple of (str, bytes or None) pairs).

    An immutable value (a tuple underneath: equality and hashing by fields, and
    `offset, timestamp, key, value, headers = record` unpacks it). Any thread may share it.
    """

    __slots__ = ()

    def __repr__(self):
        return (f"BatchRecord(offset={self.offset}, timestamp={self.timestamp}, key={_short(self.key)}, "
                f"value={_short(self.value)}, headers={self.headers!r})")


def _short(value, limit=64):
    if value is None or len(value) <= limit:
        return repr(value)
    return f"{bytes(value[:limit])!r}...({len(value)} bytes)"


def _size_of_bytes(b):
    if b is None:
        return 1
    n = len(b)
    return size_of_varint(n) + n


def size_of_record(key, value, headers=(), offset_delta=0, timestamp_delta=0):
    """Exact bytes this record takes in an uncompressed batch, length prefix included.

    With the default deltas (0) the answer is at most a few bytes short of the real size
    for a record appended later to a batch; BatchBuilder.estimated_size() plus this is
    what a producer compares to batch.size. Header keys are str (their UTF-8 counts).
    """
    body = (1 + size_of_varlong(timestamp_delta) + size_of_varint(offset_delta)
            + _size_of_bytes(key) + _size_of_bytes(value) + size_of_varint(len(headers)))
    for h_key, h_value in headers:
        n = len(h_key.encode("utf-8"))
        body += size_of_varint(n) + n + _size_of_bytes(h_value)
    return size_of_varint(body) + body
