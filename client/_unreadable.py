"""Naming a batch the consumer cannot read: its offsets, and where reading can go on.

A batch can be unreadable because a bit flipped on disk (CRC-32C, framing, records that
do not decode) or because it is compressed with a codec odradek does not read. The
consumer hands out every record before it, then raises the error made here, as Kafka's
consumer raises CorruptRecordException (CORRUPT_MESSAGE) or UNSUPPORTED_COMPRESSION_TYPE
for the record at its position. The error says which offsets the batch holds and the
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
import re
import struct

from odradek.client import native
from odradek.client.errors import NotInWindow, TornState
from odradek.client.records.layout import (ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET,
                                            CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD, MAGIC,
                                            MAGIC_OFFSET)

__all__ = ["unreadable", "next_whole_batch", "SCAN_BYTES"]

SCAN_BYTES = 16 << 20    # bytes after a batch with a damaged length searched for the next one
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
# magic, then crc (4 bytes) and the attributes' high byte, 0: where a batch header may be
_CANDIDATE = re.compile(b"%s(?=.{%d}\\x00)" % (re.escape(bytes([MAGIC])), ATTRIBUTES_OFFSET - MAGIC_OFFSET - 1),
                        re.DOTALL)


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


def next_whole_batch(view, at, limit, below_offset):
    """(base offset, position) of the first whole, CRC-valid batch that starts in
    view[at + 1:at + SCAN_BYTES] and ends by `limit`, with a base offset below
    `below_offset`, else None: where reading can go on after a batch at `at` whose
    framing is damaged. The broker uses it to walk past such a batch."""
    return _scan(view, at + 1, min(limit, at + SCAN_BYTES), limit, -1, below_offset)


def _base_offset(view, at, limit, floor, high_watermark):
    """The batch's baseOffset, unless it cannot be right (not CRC-covered, so a flipped
    bit there shows only as an offset out of place): then `floor`."""
    if limit - at < LOG_OVERHEAD:
        return floor
    base = _I64.unpack_from(view, at)[0]
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
        if _crc_holds(view, at, size):
            delta = _I32.unpack_from(view, at + LAST_OFFSET_DELTA_OFFSET)[0]
            if 0 <= delta and first + delta < high_watermark:
                return first + delta + 1, "by the batch's header", at + size
        if at + size == limit and after is not None:
            return after, "where the readable part of its segment ends", limit
        nxt = _whole_batch_at(view, at + size, limit, first, high_watermark)
        if nxt is not None:
            return nxt, "the base offset of the batch after it", at + size
    found = _scan(view, at + 1, min(limit, at + SCAN_BYTES), limit, first, high_watermark)
    if found is not None:
        return found[0], "the first whole batch found after it", found[1]
    if limit - at <= SCAN_BYTES and after is not None:
        return after, "where the readable part of its segment ends", limit
    return None, None, None


def _framed_size(view, at, limit):
    if limit - at < BATCH_HEADER_SIZE:
        return None
    size = _I32.unpack_from(view, at + BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD
    return size if BATCH_HEADER_SIZE <= size <= limit - at else None


def _crc_holds(view, at, size):
    stored = _U32.unpack_from(view, at + CRC_OFFSET)[0]
    return view[at + MAGIC_OFFSET] == MAGIC and \
        native.crc32c(view[at + ATTRIBUTES_OFFSET:at + size]) == stored


def _whole_batch_at(view, at, limit, first, high_watermark):
    """The base offset of a whole, CRC-valid batch at view[at:] with an offset after
    `first` and below the high watermark, else None."""
    size = _framed_size(view, at, limit)
    if size is None or not _crc_holds(view, at, size):
        return None
    base = _I64.unpack_from(view, at)[0]
    return base if first < base < high_watermark else None


def _scan(view, start, stop, limit, first, high_watermark):
    """(base offset, position) of the first whole, CRC-valid batch starting in
    [start, stop) and ending by `limit`, else None. A regular expression (C, fast over
    bytes without a 2) finds the candidates, magic 2 with the high byte of the
    attributes 0 (bits 8-15 are unused); each is then framed and its CRC checked."""
    data = bytes(view[start + MAGIC_OFFSET:stop + MAGIC_OFFSET])
    for m in _CANDIDATE.finditer(data):
        base = _whole_batch_at(view, start + m.start(), limit, first, high_watermark)
        if base is not None:
            return base, start + m.start()
    return None
