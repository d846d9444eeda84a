"""Kafka's limits on a CreateTime record's timestamp, as a leader checks them.

A leader refuses a batch holding a record whose timestamp lies more than
message.timestamp.before.max.ms before the broker's clock, or more than
message.timestamp.after.max.ms after it (Kafka 4: Long.MAX_VALUE and one hour by
default), with INVALID_TIMESTAMP: so one client's clock, or a timestamp it made up,
cannot hold time-based retention and offsetsForTimes hostage for every other. A record
whose timestamp is -1 (NO_TIMESTAMP) is not checked, nor is any record of a
LogAppendTime topic (the broker stamps those). In a batch with the LogAppendTime
attribute, every record's timestamp is the batch's maxTimestamp.

odk_append checks uncompressed batches in C (odradek.h, check_timestamps); the leader
checks compressed ones, once decompressed, with these functions; the C twin
(_native_ref.py) too.
"""

from odradek.client.records.layout import TIMESTAMP_TYPE_MASK

__all__ = ["timestamp_range", "batch_timestamp_error", "INT64_MIN", "INT64_MAX"]

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def saturate(v):
    """v clamped to int64, as the C check's saturating arithmetic."""
    return INT64_MIN if v < INT64_MIN else INT64_MAX if v > INT64_MAX else v


def timestamp_range(now_ms, before_ms, after_ms):
    """[low, high]: the record timestamps accepted at now_ms, saturated at int64's limits."""
    return saturate(now_ms - before_ms), saturate(now_ms + after_ms)


def batch_timestamp_error(attributes, max_timestamp, lowest, highest, low, high):
    """(bound, timestamp) of the check that fails for one batch, as odk_append's: its
    records' timestamps run from `lowest` to `highest` (decode_records' min_timestamp and
    max_timestamp: -1 left out, INT64_MAX / INT64_MIN when none has one), or all read as
    its `max_timestamp` under its LogAppendTime attribute; the smallest is checked against
    `low` first, then the largest against `high`. None when they lie within."""
    if attributes & TIMESTAMP_TYPE_MASK:
        if max_timestamp == -1:
            return None
        lowest = highest = max_timestamp
    if lowest < low:
        return low, lowest
    if highest > high:
        return high, highest
    return None
