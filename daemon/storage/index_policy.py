"""The sparse-index rule of a segment: when a batch gets an offset-index entry and a
time-index entry. Defined here once (Kafka's LogSegment.append) and used by every
Python writer of a segment: LogSegment (appends in Python, recovery), the cleaner's
segment writer (segment_writer.py) and the reference of the native append
(_native_ref.py).

- An offset-index entry (the batch's last offset, its position) for a batch written
  once more than index.interval.bytes were written since the last entry (the bytes of
  the batches before it, not counting itself); never for a segment's first batch.
- Beside each, a time-index entry (the largest timestamp so far, the offset that
  carries it) when that timestamp grew past the last time entry's, at a larger
  offset (time_entry_due); and one more when the segment is sealed.
- A full index takes no more entries: the batch goes unindexed and the bytes keep
  counting (sparse), until the segment rolls.
So a batch adds at most one entry to each index (max_new_entries bounds an append).

Its twin in C is track() in daemon/c_ext/odradek.c (odk_append, the hot path);
tests/daemon/storage/test_native_append.py runs both against SparseIndexing.
Layouts of the entries: offset_index.py and time_index.py. Pure: no I/O.
"""
from odradek.client.records.layout import BATCH_HEADER_SIZE

__all__ = ["SparseIndexing", "time_entry_due", "max_new_entries"]


class SparseIndexing:
    """The rule over four fields of the object it is mixed into: _index_interval_bytes
    (index.interval.bytes), _bytes_since_index, max_timestamp and
    offset_of_max_timestamp. The object writes the entries: _add_index_entry(last
    offset, position) adds the offset entry and offers the time index
    (max_timestamp, offset_of_max_timestamp), for which time_entry_due decides."""
    __slots__ = ()

    def _index_batch(self, position, last_offset, size, max_timestamp, room=True):
        """Account for a batch written at `position`; room=False: the indexes are full."""
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self._bytes_since_index > self._index_interval_bytes and room:
            self._add_index_entry(last_offset, position)
            self._bytes_since_index = 0
        self._bytes_since_index += size

    def _add_index_entry(self, last_offset, position):
        raise NotImplementedError


def time_entry_due(timestamp, offset, last_timestamp, last_offset, has_entries):
    """Whether (timestamp, offset) goes into a time index whose last entry is
    (last_timestamp, last_offset) (any values when it has none): only a larger
    timestamp, at a larger offset, so both columns strictly increase."""
    return timestamp > last_timestamp and (not has_entries or offset > last_offset)


def max_new_entries(nbytes, interval):
    """The most offset-index entries `nbytes` of batches can add: one per batch (of at
    least BATCH_HEADER_SIZE bytes), and one per more than `interval` bytes."""
    return min(nbytes // BATCH_HEADER_SIZE, nbytes // (interval + 1) + 1)
