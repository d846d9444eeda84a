"""Reading v2 batches: RecordBatch (a view over one batch), iter_batches, finding whole
batches again after damaged bytes, in-place writes. The header layout is layout.py's
(BatchHeader, the *_OFFSET constants; FORMAT.md draws it).

Nothing here copies a batch to look at it: RecordBatch holds a memoryview and reads each
header field from the bytes when asked (so it sees baseOffset rewritten in place), and
iter_batches slices views. Only records() and record_fields() copy, once, the batch they
decode. Records are decoded by native.decode_records (C: one call walks and checks every
record of the batch; only the Python objects are made here); a compressed batch is
first decompressed into an uncompressed one (compression.py: every Kafka codec). The words of the error for a batch it refuses
come from its Python reference (native.reference.refusal_words), the one Python parser of the
record format.
Rules for bad input (FORMAT.md, "Reading garbage"): iter_batches stops quietly where the
framing stops making sense; validate() and records() raise CorruptRecord saying what was
expected and what was found; nothing loops on garbage or returns a half-decoded record.
"""
import re
import struct

from odradek.client import native
from odradek.client.errors import CorruptRecord, MessageTooLarge
from odradek.client.records.layout import (
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET, BASE_TIMESTAMP_OFFSET,
    BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, COMPRESSION_MASK, CONTROL_MASK, CRC_OFFSET,
    DELETE_HORIZON_MASK, HEADER_STRUCT, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD, MAGIC,
    MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET, MIN_BATCH_LENGTH, NO_SEQUENCE,
    PARTITION_LEADER_EPOCH_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET,
    RECORDS_COUNT_OFFSET, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK, Compression, TimestampType,
    read_header)
from odradek.client.records._record import BatchRecord
from odradek.client.records.compression import decompress
from odradek.client.records.control import decode_end_txn_marker
from odradek.client.records.varint import INT32_MAX, decode_varint

__all__ = ["RecordBatch", "iter_batches", "whole_batch_at", "next_whole_batch", "SCAN_BYTES",
           "write_base_offset", "write_partition_leader_epoch", "write_log_append_time",
           "read_base_offset", "read_batch_length"]

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


def _byte_view(buffer):
    view = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class RecordBatch:
    """A read-only view over one batch's bytes (bytes, bytearray, memoryview, mmap).

    Construction copies nothing and checks only that the 61-byte header is there; if the
    buffer is longer than the batch it declares, the view stops at the batch's end.
    validate() checks the rest. Header fields are read from the buffer on each access,
    so a view sees baseOffset and partitionLeaderEpoch rewritten in place. A view over
    an mmap pins it (mmap.close raises BufferError while views exist). Used in any
    process; safe to share between threads, as it holds nothing but the view (whoever
    owns the bytes decides when they change).
    """

    __slots__ = ("_view",)

    def __init__(self, buffer):
        view = _byte_view(buffer)
        if len(view) < BATCH_HEADER_SIZE:
            raise CorruptRecord(f"a batch needs at least its {BATCH_HEADER_SIZE}-byte header; "
                                f"found {len(view)} bytes")
        length = _I32.unpack_from(view, BATCH_LENGTH_OFFSET)[0]
        if length >= MIN_BATCH_LENGTH and length + LOG_OVERHEAD < len(view):
            view = view[:length + LOG_OVERHEAD]
        self._view = view

    # ---- header fields ----------------------------------------------------------------
    @property
    def buffer(self):
        """The batch's bytes as a memoryview (shorter than `size` if the batch is torn)."""
        return self._view

    @property
    def base_offset(self):
        return _I64.unpack_from(self._view, BASE_OFFSET_OFFSET)[0]

    @property
    def batch_length(self):
        return _I32.unpack_from(self._view, BATCH_LENGTH_OFFSET)[0]

    @property
    def size(self):
        """Bytes of the whole batch: batchLength + 12 (LOG_OVERHEAD)."""
        return _I32.unpack_from(self._view, BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD

    @property
    def partition_leader_epoch(self):
        return _I32.unpack_from(self._view, PARTITION_LEADER_EPOCH_OFFSET)[0]

    @property
    def magic(self):
        return _I8.unpack_from(self._view, MAGIC_OFFSET)[0]

    @property
    def crc(self):
        """The CRC stored in the batch (compute_crc() gives the one its bytes have)."""
        return _U32.unpack_from(self._view, CRC_OFFSET)[0]

    @property
    def attributes(self):
        return _I16.unpack_from(self._view, ATTRIBUTES_OFFSET)[0]

    @property
    def compression(self):
        """Compression of the records; CorruptRecord for ids 5-7, which Kafka never wrote."""
        codec = self.attributes & COMPRESSION_MASK
        try:
            return Compression(codec)
        except ValueError:
            raise CorruptRecord(f"attributes name compression id {codec}; expected 0-4 "
                                f"(none, gzip, snappy, lz4, zstd)") from None

    @property
    def timestamp_type(self):
        return TimestampType((self.attributes & TIMESTAMP_TYPE_MASK) >> 3)

    @property
    def is_transactional(self):
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self):
        """A control batch: its records are transaction markers (end_txn_marker())."""
        return bool(self.attributes & CONTROL_MASK)

    def end_txn_marker(self):
        """The EndTxnMarker (control.py: COMMIT or ABORT, coordinator epoch) of a control
        batch; None for a data batch or a control batch left empty by compaction.
        CorruptRecord if its first record is not a transaction marker."""
        if not self.attributes & CONTROL_MASK or self.records_count <= 0:
            return None
        for record in self.records():
            return decode_end_txn_marker(record.key, record.value)
        return None

    @property
    def delete_horizon(self):
        """The compaction delete horizon (ms) if attribute bit 6 says baseTimestamp holds
        one, else None."""
        if self.attributes & DELETE_HORIZON_MASK:
            return self.base_timestamp
        return None

    @property
    def last_offset_delta(self):
        return _I32.unpack_from(self._view, LAST_OFFSET_DELTA_OFFSET)[0]

    @property
    def last_offset(self):
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self):
        return self.base_offset + self.last_offset_delta + 1

    @property
    def base_timestamp(self):
        return _I64.unpack_from(self._view, BASE_TIMESTAMP_OFFSET)[0]

    @property
    def max_timestamp(self):
        return _I64.unpack_from(self._view, MAX_TIMESTAMP_OFFSET)[0]

    @property
    def producer_id(self):
        return _I64.unpack_from(self._view, PRODUCER_ID_OFFSET)[0]

    @property
    def producer_epoch(self):
        return _I16.unpack_from(self._view, PRODUCER_EPOCH_OFFSET)[0]

    @property
    def base_sequence(self):
        return _I32.unpack_from(self._view, BASE_SEQUENCE_OFFSET)[0]

    @property
    def last_sequence(self):
        """baseSequence + lastOffsetDelta, wrapping past INT32_MAX to 0 as Kafka's
        sequence numbers do; NO_SEQUENCE (-1) when the batch has none."""
        base = self.base_sequence
        if base == NO_SEQUENCE:
            return NO_SEQUENCE
        return (base + self.last_offset_delta) % (INT32_MAX + 1)

    @property
    def records_count(self):
        return _I32.unpack_from(self._view, RECORDS_COUNT_OFFSET)[0]

    def __len__(self):
        return self.records_count

    def __repr__(self):
        (base_offset, length, epoch, magic, crc, attrs, last_delta, base_ts, max_ts, pid,
         pepoch, bseq, count) = HEADER_STRUCT.unpack_from(self._view)
        return (f"RecordBatch(base_offset={base_offset}, last_offset={base_offset + last_delta}, "
                f"size={length + LOG_OVERHEAD}, count={count}, magic={magic}, crc={crc:#010x}, "
                f"attributes={attrs:#x}, base_timestamp={base_ts}, max_timestamp={max_ts}, "
                f"producer_id={pid}, producer_epoch={pepoch}, base_sequence={bseq}, "
                f"partition_leader_epoch={epoch})")

    # ---- checks -----------------------------------------------------------------------
    def compute_crc(self):
        """CRC-32C of bytes 21..end as they are now (of what is there, if torn)."""
        return native.crc32c(self._view[ATTRIBUTES_OFFSET:])

    def crc_valid(self):
        """True when the whole batch is present and its CRC matches its bytes."""
        return (len(self._view) == self.size
                and native.crc32c(self._view[ATTRIBUTES_OFFSET:]) == self.crc)

    def validate(self, max_size=None):
        """Raise CorruptRecord unless the framing, magic, counts and CRC are sound (the
        checks of native.scan_batches, in its order, plus recordsCount <= lastOffsetDelta
        + 1 and a known codec); MessageTooLarge if size > max_size. Returns self."""
        (base_offset, length, _, magic, crc, attrs, last_delta, _, _, _, _, _,
         count) = HEADER_STRUCT.unpack_from(self._view)
        where = f"batch at base offset {base_offset}"
        if length < MIN_BATCH_LENGTH:
            raise CorruptRecord(f"{where}: batchLength expected >= {MIN_BATCH_LENGTH}, "
                                f"found {length}")
        size = length + LOG_OVERHEAD
        if max_size is not None and size > max_size:
            raise MessageTooLarge(f"{where} is {size} bytes; the limit is {max_size}")
        if len(self._view) < size:
            raise CorruptRecord(f"{where} is torn: batchLength says {size} bytes, "
                                f"only {len(self._view)} are present")
        if magic != MAGIC:
            raise CorruptRecord(f"{where}: magic expected {MAGIC}, found {magic}")
        if last_delta < 0 or count < 0:
            raise CorruptRecord(f"{where}: lastOffsetDelta and recordsCount expected >= 0, "
                                f"found {last_delta} and {count}")
        if count > last_delta + 1:
            raise CorruptRecord(f"{where}: recordsCount expected <= lastOffsetDelta + 1 = "
                                f"{last_delta + 1}, found {count}")
        if attrs & COMPRESSION_MASK > Compression.ZSTD:
            raise CorruptRecord(f"{where}: compression id expected 0-4, "
                                f"found {attrs & COMPRESSION_MASK}")
        computed = native.crc32c(self._view[ATTRIBUTES_OFFSET:])
        if computed != crc:
            raise CorruptRecord(f"{where}: CRC-32C of bytes {ATTRIBUTES_OFFSET}..{size - 1} "
                                f"expected {computed:#010x} (computed), found {crc:#010x} (stored)")
        return self

    # ---- records ----------------------------------------------------------------------
    def records(self):
        """An iterator of BatchRecord, with absolute offsets. Decodes the whole batch first,
        so a corrupt batch raises CorruptRecord before yielding anything. Does not check
        the CRC (call validate() for that). gzip, snappy, lz4 and zstd are decompressed
        (compression.py; past DECOMPRESSED_LIMIT bytes is CorruptRecord)."""
        data = self.uncompressed()
        (base_offset, _, _, _, _, attrs, _, base_ts, max_ts, _, _, _,
         _) = HEADER_STRUCT.unpack_from(data)
        where = f"batch at base offset {base_offset}"
        # LogAppendTime: every record's timestamp is the batch's maxTimestamp.
        append_time = max_ts if attrs & TIMESTAMP_TYPE_MASK else None
        res = native.decode_records(data)
        if res[0]:
            _rejected(data, res, where)
        try:
            return iter(_records_from_rows(data, res, base_offset, base_ts, append_time))
        except UnicodeDecodeError:   # a header key: name the record
            _rejected(data, res, where)

    def uncompressed(self):
        """The batch as bytes with its records uncompressed, for native.decode_records:
        a copy of an uncompressed batch; for a compressed one, its header with batchLength
        and the codec bits changed (the CRC, which covers the compressed bytes, as it was),
        then the records decompressed (compression.decompress: Kafka's framings, bounded
        by DECOMPRESSED_LIMIT). CorruptRecord for a torn batch, a magic other than 2, a
        compression id 5-7 or records that do not decompress."""
        view = self._view
        (base_offset, length, _, magic, _, attrs, _, _, _, _, _, _,
         _) = HEADER_STRUCT.unpack_from(view)
        where = f"batch at base offset {base_offset}"
        size = length + LOG_OVERHEAD
        if length < MIN_BATCH_LENGTH or len(view) < size:
            raise CorruptRecord(f"{where}: batchLength {length} does not fit the "
                                f"{len(view)} bytes present")
        if magic != MAGIC:
            raise CorruptRecord(f"{where}: magic expected {MAGIC}, found {magic}")
        codec = attrs & COMPRESSION_MASK
        if codec == Compression.NONE:
            # One copy of the batch, decoded in C, then sliced: slicing bytes is about
            # twice as fast per record as bytes(memoryview[a:b]).
            return bytes(view[:size])
        if codec <= Compression.ZSTD:
            return _decompressed_batch(view, size, where, codec)
        raise CorruptRecord(f"{where}: compression id expected 0-4, found {codec}")

    __iter__ = records

    def record_fields(self):
        """The records of an uncompressed batch as plain fields, for readers that make
        their own record objects (the consumer): (data, rows), where data is a bytes
        copy of the batch and rows an iterator of one tuple per record (the fields of
        native.decode_records, RECORD_FIELDS),

            (offset_delta, timestamp_delta, key_pos, key_len, value_pos, value_len,
             headers_pos, headers_count)

        so offset = base_offset + offset_delta; timestamp = base_timestamp +
        timestamp_delta, or max_timestamp under LogAppendTime (as records()); the key
        is data[key_pos:key_pos + key_len], None when key_len is -1, likewise the value;
        headers_count > 0 means self.read_headers(data, headers_pos, headers_count)
        gives them. Same checks, errors and order as records(), all made before this
        returns, except that header keys are only decoded (and so checked as UTF-8) by
        read_headers, which then raises the CorruptRecord records() raises.
        ValueError for a compressed batch: use records() for those.

        Deltas rather than absolute values because a reader adds them inline in its own
        loop for less than zip and map would cost (the rows are struct.iter_unpack's
        8-tuples: ~0.2 us a record on the dev VM against ~0.5 us for zipped columns).
        """
        # The view ends where the batch does (or earlier, torn): copy it all; C checks
        # the header as records() does, and for any batch it refuses records() is
        # called to raise its error (the refusal path is allowed to be slow).
        data = bytes(self._view)
        res = native.decode_records(data)
        if res[0]:
            if res[0] == native.Status.BAD_CODEC and Compression.GZIP <= res[5] <= Compression.ZSTD:
                raise ValueError(f"batch at base offset {self.base_offset} is "
                                 f"{Compression(res[5]).label}-compressed: record_fields() reads "
                                 f"uncompressed batches; use records()")
            self.records()
            raise AssertionError(f"records() accepted a batch decode_records refuses: {res}")
        return data, _iter_rows(res[6])

    def read_headers(self, data, position, count):
        """The `count` headers starting at data[position], as a list of (str, bytes or
        None): for record_fields' data, headers_pos and headers_count (their lengths are
        already checked, so this only decodes). A key that is not UTF-8 raises the
        CorruptRecord records() raises for this batch."""
        try:
            return _read_headers(data, position, count)
        except UnicodeDecodeError as e:
            self.records()
            raise CorruptRecord(f"a header key at byte {position} of the batch is not "
                                f"UTF-8: {e}") from None


_iter_rows = struct.Struct("@8q").iter_unpack   # native.decode_records' rows, one a record


def _rejected(data, res, where):
    """native.decode_records refused the batch `data` (or a header key is not UTF-8):
    raise the CorruptRecord that names the record and field in words, which the Python
    reference of decode_records gives (the two accept exactly the same batches)."""
    words = native.reference.refusal_words(data) if res[0] else _header_key_refusal(data, res)
    if words is not None:
        raise CorruptRecord(f"{where}: {words}")
    status, _, records, position, expected, found, _ = res   # they disagree: a bug
    raise CorruptRecord(f"{where}: record decoding stopped with "
                        f"{native.Status.NAMES.get(status, status)} at record {records}, "
                        f"byte {position} of the batch (expected {expected}, found {found})")


def _header_key_refusal(data, res):
    """Words for the first header key that is not UTF-8 in a batch that decoded."""
    for i, (_, _, _, _, _, _, hp, hc) in enumerate(_iter_rows(res[6])):
        try:
            _read_headers(data, hp, hc)
        except UnicodeDecodeError as e:
            return f"record {i} header key is not UTF-8: {e}"
    return None


def _read_headers(data, pos, count, _varint=decode_varint):
    """Decode `count` headers at data[pos] whose lengths native.decode_records checked:
    a list of (str, bytes or None). UnicodeDecodeError for a non-UTF-8 key."""
    headers = []
    for _ in range(count):
        klen, pos = _varint(data, pos)
        key = data[pos:pos + klen].decode("utf-8")
        pos += klen
        vlen, pos = _varint(data, pos)
        if vlen >= 0:
            headers.append((key, data[pos:pos + vlen]))
            pos += vlen
        else:
            headers.append((key, None))
    return headers


def _records_from_rows(data, res, base_offset, base_ts, append_time,
                       _new=tuple.__new__, _Record=BatchRecord):
    """BatchRecord tuples from a successful native.decode_records over the batch `data`."""
    if append_time is None:
        return [_new(_Record, (base_offset + od, base_ts + td,
                               data[kp:kp + kl] if kl >= 0 else None,
                               data[vp:vp + vl] if vl >= 0 else None,
                               tuple(_read_headers(data, hp, hc)) if hc else ()))
                for od, td, kp, kl, vp, vl, hp, hc in _iter_rows(res[6])]
    return [_new(_Record, (base_offset + od, append_time,
                           data[kp:kp + kl] if kl >= 0 else None,
                           data[vp:vp + vl] if vl >= 0 else None,
                           tuple(_read_headers(data, hp, hc)) if hc else ()))
            for od, _, kp, kl, vp, vl, hp, hc in _iter_rows(res[6])]


def _decompressed_batch(view, size, where, codec):
    """RecordBatch.uncompressed of the compressed batch view[:size]: one buffer, the
    header written into the room decompress() leaves before the records."""
    try:
        out = decompress(codec, view[BATCH_HEADER_SIZE:size], head=BATCH_HEADER_SIZE)
    except CorruptRecord as e:
        raise CorruptRecord(f"{where}: {e.message}") from None
    header = read_header(view)
    HEADER_STRUCT.pack_into(out, 0, *header._replace(
        batch_length=MIN_BATCH_LENGTH + len(out) - BATCH_HEADER_SIZE,
        attributes=header.attributes & ~COMPRESSION_MASK))
    return bytes(out)


# ---- walking a buffer of batches ------------------------------------------------------
def iter_batches(buffer, position=0):
    """Yield (position, RecordBatch) for each batch from `position` on whose 12-byte
    framing is present, whose batchLength is at least 49 and whose declared bytes fit in
    the buffer. Stops quietly at the end, at a torn tail, or at a length that cannot be
    a batch (a zero-filled tail); the generator's return value (StopIteration.value, or
    the result of `yield from`) is the position where it stopped, so `stopped <
    len(buffer)` means trailing bytes. CRCs are not checked: call batch.validate().
    """
    view = _byte_view(buffer)
    n = len(view)
    unpack_length = _I32.unpack_from
    while position + LOG_OVERHEAD <= n:
        length = unpack_length(view, position + BATCH_LENGTH_OFFSET)[0]
        end = position + LOG_OVERHEAD + length
        if length < MIN_BATCH_LENGTH or end > n:
            break
        yield position, RecordBatch(view[position:end])
        position = end
    return position


# ---- finding whole batches again after damaged bytes ------------------------------------
SCAN_BYTES = 16 << 20    # bytes after a batch with a damaged length searched for the next one
# magic, then crc (4 bytes) and the attributes' high byte, 0: where a batch header may be
_CANDIDATE = re.compile(b"%s(?=.{%d}\\x00)" % (re.escape(bytes([MAGIC])), ATTRIBUTES_OFFSET - MAGIC_OFFSET - 1),
                        re.DOTALL)


def whole_batch_at(buffer, position, limit):
    """(base offset, size) of the batch at buffer[position:] if it is whole by `limit`
    (framed: at least a header, its batchLength ending by `limit`) with magic 2 and a
    CRC-32C that holds, else None."""
    view = _byte_view(buffer)
    if limit - position < BATCH_HEADER_SIZE:
        return None
    size = _I32.unpack_from(view, position + BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD
    if not BATCH_HEADER_SIZE <= size <= limit - position or view[position + MAGIC_OFFSET] != MAGIC:
        return None
    if native.crc32c(view[position + ATTRIBUTES_OFFSET:position + size]) != \
            _U32.unpack_from(view, position + CRC_OFFSET)[0]:
        return None
    return _I64.unpack_from(view, position + BASE_OFFSET_OFFSET)[0], size


def next_whole_batch(buffer, position, limit, below_offset, above_offset=-1):
    """(base offset, position) of the first whole, CRC-valid batch (whole_batch_at) that
    starts in buffer[position + 1:position + SCAN_BYTES] and ends by `limit`, with
    above_offset < base offset < below_offset, else None: where reading can go on after
    a batch at `position` whose framing is damaged (the broker walks past such a batch
    with it, the consumer names the offsets it skips). A regular expression (C, fast
    over bytes without a 2) finds the candidates, magic 2 with the high byte of the
    attributes 0 (bits 8-15 are unused); each is then framed and its CRC checked."""
    view = _byte_view(buffer)
    start, stop = position + 1, min(limit, position + SCAN_BYTES)
    data = bytes(view[start + MAGIC_OFFSET:stop + MAGIC_OFFSET])
    for m in _CANDIDATE.finditer(data):
        whole = whole_batch_at(view, start + m.start(), limit)
        if whole is not None and above_offset < whole[0] < below_offset:
            return whole[0], start + m.start()
    return None


# ---- fields the broker rewrites in place ----------------------------------------------
def read_base_offset(buffer, position=0):
    return _I64.unpack_from(buffer, position + BASE_OFFSET_OFFSET)[0]


def read_batch_length(buffer, position=0):
    return _I32.unpack_from(buffer, position + BATCH_LENGTH_OFFSET)[0]


def write_base_offset(buffer, position, offset):
    """Set baseOffset of the batch at `position` of a writable buffer. Not CRC-covered:
    this is how the leader assigns offsets without touching the CRC."""
    _I64.pack_into(buffer, position + BASE_OFFSET_OFFSET, offset)


def write_partition_leader_epoch(buffer, position, epoch):
    """Set partitionLeaderEpoch of the batch at `position`. Not CRC-covered."""
    _I32.pack_into(buffer, position + PARTITION_LEADER_EPOCH_OFFSET, epoch)


def write_log_append_time(buffer, position, timestamp):
    """Stamp the batch at `position` with LogAppendTime, as Kafka's broker does for a
    topic with message.timestamp.type=LogAppendTime: set attribute bit 3, set
    maxTimestamp, and recompute the CRC (both fields are CRC-covered). Every record then
    reads as having `timestamp`. The batch must be whole in the buffer."""
    size = _I32.unpack_from(buffer, position + BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD
    view = _byte_view(buffer)
    if size < BATCH_HEADER_SIZE or position + size > len(view):
        raise CorruptRecord(f"batch at byte {position}: batchLength does not fit the buffer")
    attrs = _I16.unpack_from(view, position + ATTRIBUTES_OFFSET)[0]
    _I16.pack_into(view, position + ATTRIBUTES_OFFSET, attrs | TIMESTAMP_TYPE_MASK)
    _I64.pack_into(view, position + MAX_TIMESTAMP_OFFSET, timestamp)
    crc = native.crc32c(view[position + ATTRIBUTES_OFFSET:position + size])
    _U32.pack_into(view, position + CRC_OFFSET, crc)
