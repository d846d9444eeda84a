"""Naming a batch the consumer cannot read: its offsets, and where reading can go on.

A batch can be unreadable because a bit flipped on disk (CRC-32C, framing, records that
do not decode) or because its attributes name no codec (ids 5-7) or its records do not
decompress (or would decompress past records/compression.py's DECOMPRESSED_LIMIT). The
consumer hands out every record before it, then raises the error made here, as Kafka's
consumer raises CorruptRecordException (CORRUPT_MESSAGE) for the record at its position. The error says which offsets the batch holds and the
next offset that can be read; the consumer's position stays at the batch, and seek() to
that offset skips it.

    err.topic, err.partition   the partition
    err.offset                 the batch's first offset (the consumer's position)
    err.next_offset            the next readable offset, or None when nothing says where
                               the batch ends

Where the next readable offset comes from, most trusted first:
  1. the partition's batch descriptors in shared memory (recent batches; written by the
     leader when it appended the batch, so not touched by the damage on disk);
  2. the batch's own header, when its CRC holds (then lastOffsetDelta is as written:
     the codec or the records are the problem, not the bytes);
  3. the base offset of the whole, CRC-valid batch right after it;
  4. the first whole, CRC-valid batch found by looking at every byte after it (up to
     SCAN_BYTES; its batchLength was damaged, so it does not say where it ends);
  5. the end of what the broker said is readable in that segment (the next segment).
"""
from odradek._hotpath import FETCH_BAD_BASE_OFFSET, FETCH_BAD_CRC, FETCH_BAD_HEADER
from odradek.client.errors import NotInWindow, TornState
from odradek.client.records import (LOG_OVERHEAD, SCAN_BYTES, iter_batches, next_whole_batch, read_base_offset,
                                    read_header, whole_batch_at)
from odradek.client.records.layout import Compression

__all__ = ["unreadable", "stop_reason", "why_unreadable"]


def unreadable(error_class, tp, reason, view, at, limit, floor, high_watermark, state, after):
    """(error, resume) for the batch at view[at:], unreadable for `reason` (words that
    follow "the batch at offsets a..b"): error an instance of error_class; resume the
    position in view where the batch at error.next_offset starts, when known (None when
    the descriptors or nothing told). view[at:limit] is what may be read of its segment
    (whole committed batches, as far as the framing says); `floor` the offset after the
    last good batch before it (or the fetch position); `state` the partition's
    PartitionState (descriptors); `after` the offset that follows view[:limit], if known
    (the next segment's, or the high watermark)."""
    first = _base_offset(view, at, limit, floor, high_watermark)
    nxt, how, resume = _next_readable(view, at, limit, first, high_watermark, state, after)
    where = f"{tp.topic}-{tp.partition}"
    if nxt is None:
        err = error_class(
            f"{where}: the batch at offset {first} {reason}; the records before it were delivered. Where "
            f"it ends is unknown (no whole batch could be read within {SCAN_BYTES >> 20} MiB after it): "
            f"seek() to a later offset to skip it, the first offset of the next segment at the latest "
            f"(odradek dump-log lists the segments)")
    else:
        err = error_class(
            f"{where}: the batch at offsets {first}..{nxt - 1} {reason}; the records before it were "
            f"delivered. The next readable offset is {nxt} ({how}): seek() to it to skip the batch")
    err.topic, err.partition, err.offset, err.next_offset = tp.topic, tp.partition, first, nxt
    return err, resume


def _base_offset(view, at, limit, floor, high_watermark):
    """The batch's baseOffset, unless it cannot be right (not CRC-covered, so a flipped
    bit there shows only as an offset out of place): then `floor`."""
    if limit - at < LOG_OVERHEAD:
        return floor
    base = read_base_offset(view, at)
    return base if floor <= base < high_watermark else floor


def _next_readable(view, at, limit, first, high_watermark, state, after):
    try:
        d = state.find(first)
    except (NotInWindow, TornState):    # older than the window; or its writer is restarting
        d = None
    if d is not None and d.base_offset == first:
        return d.last_offset + 1, "by the partition's batch descriptors", None
    size = _framed_size(view, at, limit)
    if size is not None:
        if whole_batch_at(view, at, limit) is not None:
            delta = read_header(view, at).last_offset_delta
            if 0 <= delta and first + delta < high_watermark:
                return first + delta + 1, "by the batch's header", at + size
        if at + size == limit and after is not None:
            return after, "where the readable part of its segment ends", limit
        whole = whole_batch_at(view, at + size, limit)
        if whole is not None and first < whole[0] < high_watermark:
            return whole[0], "the base offset of the batch after it", at + size
    found = next_whole_batch(view, at, limit, high_watermark, first)
    if found is not None:
        return found[0], "the first whole batch found after it", found[1]
    if limit - at <= SCAN_BYTES and after is not None:
        return after, "where the readable part of its segment ends", limit
    return None, None, None


def _framed_size(view, at, limit):
    """The size of the batch at view[at:] if its framing holds by `limit`, else None."""
    for _, batch in iter_batches(memoryview(view)[:limit], at):
        return batch.size
    return None


def stop_reason(status, next_offset, a, b, c):
    """The words unreadable() gets for a batch decode_fetch stopped at (status, a, b, c)."""
    if status == FETCH_BAD_CRC:
        return "fails its CRC-32C check (check.crcs)"
    if status == FETCH_BAD_HEADER:
        return f"has a damaged header (magic {a}, lastOffsetDelta {b}, recordsCount {c})"
    if status == FETCH_BAD_BASE_OFFSET:
        return f"has a damaged baseOffset ({a}, after offset {next_offset - 1})"
    return "has a damaged length (batchLength) or is cut short"


def why_unreadable(error, codec):
    """The reason unreadable() gets for a batch whose records raised `error` (a
    CorruptRecord)."""
    if codec > Compression.ZSTD:
        return f"names compression id {codec}, which is no codec (0-4: none, gzip, snappy, lz4, zstd)"
    return f"has records that cannot be decoded ({error.message})"
