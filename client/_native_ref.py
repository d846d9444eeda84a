"""Pure-Python reference of the client's native functions (daemon/c_ext/odradek.h):
CRC-32C, the batch scan and the record decoder. The storage-only ones (index lookups,
the fused append) have theirs beside the daemon's storage: daemon/storage/_native_ref.py.

Slow and obviously correct: it is the definition the C code is tested against, and the
fallback when odradek._native is missing or ODRADEK_PURE=1 is set. Keep each function's
behaviour identical to its C twin, edge cases included; tests/client/test_native.py runs
one suite against both. Its record decoder is also the one Python parser of the record
format: refusal_words (no C twin) gives RecordBatch.records() the words of its errors.
"""
import struct
from array import array

# The records package imports the native module, which imports this one: nothing in it
# may use the native module while it loads (records/_batch.py reads it only when called).
from odradek.client.records.layout import (ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET,
                                            COMPRESSION_MASK, LOG_OVERHEAD, MAGIC,
                                            MIN_BATCH_LENGTH, read_header)

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "scan_batches", "check_batch", "ScanResult",
           "BatchInfo", "Status", "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "decode_records", "DecodeResult",
           "RECORD_FIELDS", "RecordsFlag", "walk_prefixes"]


class Status:
    """odk_status codes (see odradek.h)."""
    OK = 0
    TRUNCATED = 1
    BAD_LENGTH = 2
    BAD_MAGIC = 3
    BAD_CRC = 4
    BAD_OFFSET = 5
    MORE = 6
    # odk_append's own (enum odk_append_status)
    TOO_LARGE = 7
    BAD_RECORDS = 8
    BAD_CODEC = 9
    EMPTY = 10
    NO_SPACE = 11
    INDEX_FULL = 12
    OUT_OF_RANGE = 13
    BAD_STATE = 14
    # odk_decode_records' own (enum odk_decode_status)
    BAD_VARINT = 15
    BAD_RECORD = 16
    BAD_COUNT = 17
    # odk_append's again (after the decoder's): the copy's headers are not those checked
    CHANGED = 18
    # odk_append's: an uncompressed batch's records do not decode (odk_decode_records)
    BAD_RECORD_BYTES = 19
    # odk_append's: a record timestamp outside the topic's range (check_timestamps)
    BAD_TIMESTAMP = 20
    NAMES = {0: "OK", 1: "TRUNCATED", 2: "BAD_LENGTH", 3: "BAD_MAGIC", 4: "BAD_CRC",
             5: "BAD_OFFSET", 6: "MORE", 7: "TOO_LARGE", 8: "BAD_RECORDS", 9: "BAD_CODEC",
             10: "EMPTY", 11: "NO_SPACE", 12: "INDEX_FULL", 13: "OUT_OF_RANGE",
             14: "BAD_STATE", 15: "BAD_VARINT", 16: "BAD_RECORD", 17: "BAD_COUNT", 18: "CHANGED",
             19: "BAD_RECORD_BYTES", 20: "BAD_TIMESTAMP"}


def _make_table():
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data, crc=0):
    """CRC-32C of data, continuing from a previous result `crc` (0 to start)."""
    c = crc ^ 0xFFFFFFFF
    table = _TABLE
    for b in bytes(data):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


crc32c_sw = crc32c


def crc32c_hw_available():
    return False


class BatchInfo(tuple):
    """One valid batch found by scan_batches (odk_batch_info)."""
    __slots__ = ()
    _fields = ("position", "base_offset", "last_offset", "base_timestamp", "max_timestamp",
               "producer_id", "size", "records", "base_sequence", "leader_epoch",
               "producer_epoch", "attributes", "crc")

    def __new__(cls, *values):
        return tuple.__new__(cls, values)

    def __getattr__(self, name):
        try:
            return self[BatchInfo._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def __repr__(self):
        return "BatchInfo(" + ", ".join(f"{f}={v}" for f, v in zip(self._fields, self)) + ")"


class ScanResult:
    """Outcome of scan_batches (odk_scan_result), plus the BatchInfo list if asked."""
    __slots__ = ("status", "batches", "valid_bytes", "first_offset", "last_offset",
                 "max_timestamp", "records", "expected", "found", "infos")

    def __init__(self, status, batches, valid_bytes, first_offset, last_offset,
                 max_timestamp, records, expected, found, infos):
        self.status, self.batches, self.valid_bytes = status, batches, valid_bytes
        self.first_offset, self.last_offset = first_offset, last_offset
        self.max_timestamp, self.records = max_timestamp, records
        self.expected, self.found, self.infos = expected, found, infos

    @property
    def ok(self):
        return self.status == Status.OK

    @property
    def status_name(self):
        return Status.NAMES[self.status]

    def __repr__(self):
        return (f"ScanResult({self.status_name}, batches={self.batches}, "
                f"valid_bytes={self.valid_bytes}, offsets={self.first_offset}..{self.last_offset}, "
                f"expected={self.expected}, found={self.found})")


_INT64_MAX = (1 << 63) - 1


def check_batch(mv, pos, n, max_batch_size):
    """The batch at mv[pos:], n bytes in all: framing, batchLength (and max_batch_size
    when > 0), magic, lastOffsetDelta/recordsCount, int64 room for the next offset,
    CRC-32C; the twin of check_batch in odradek.c, shared by scan_batches and _append.
    Returns (Status.OK, header fields, size) or (status, (expected, found), None)."""
    if n - pos < LOG_OVERHEAD:
        return Status.TRUNCATED, (LOG_OVERHEAD, n - pos), None
    length = struct.unpack_from(">i", mv, pos + BATCH_LENGTH_OFFSET)[0]
    size = length + LOG_OVERHEAD
    if length < MIN_BATCH_LENGTH:
        return Status.BAD_LENGTH, (MIN_BATCH_LENGTH, length), None
    if max_batch_size > 0 and size > max_batch_size:
        return Status.BAD_LENGTH, (max_batch_size - LOG_OVERHEAD, length), None
    if n - pos < size:
        return Status.TRUNCATED, (size, n - pos), None
    header = read_header(mv, pos)
    base_offset, magic, crc, last_delta, count = (header.base_offset, header.magic, header.crc,
                                                  header.last_offset_delta, header.records_count)
    if magic != MAGIC:
        return Status.BAD_MAGIC, (MAGIC, magic), None
    if last_delta < 0 or count < 0:
        return Status.BAD_LENGTH, (0, min(last_delta, count)), None
    if base_offset + last_delta > _INT64_MAX - 1:  # lastOffset + 1 must fit in int64
        return Status.BAD_LENGTH, (_INT64_MAX - 1 - base_offset, last_delta), None
    computed = crc32c(mv[pos + ATTRIBUTES_OFFSET:pos + size])
    if computed != crc:
        return Status.BAD_CRC, (computed, crc), None
    return Status.OK, header, size


def scan_batches(buf, max_batch_size=0, check_offsets=False, min_offset=0, cap=0):
    """Validate concatenated v2 batches from the start of buf; see odk_scan_batches.

    cap > 0 collects up to cap BatchInfo in result.infos (and stops with MORE when full);
    cap == 0 collects none.
    """
    if cap < 0:
        raise ValueError(f"cap must be >= 0, not {cap}")
    mv = memoryview(buf).cast("B")
    n = len(mv)
    pos = 0
    batches = records = 0
    first = last = maxts = -1
    next_offset = min_offset
    infos = []
    status, expected, found = Status.OK, 0, 0
    while pos < n:
        if cap and len(infos) >= cap:
            status = Status.MORE
            break
        status, header, size = check_batch(mv, pos, n, max_batch_size)
        if status != Status.OK:
            expected, found = header
            break
        (base_offset, length, epoch, magic, crc, attrs, last_delta, base_ts, max_ts,
         pid, pepoch, base_seq, count) = header
        if check_offsets and base_offset < next_offset:
            status, expected, found = Status.BAD_OFFSET, next_offset, base_offset
            break
        last_offset = base_offset + last_delta
        if cap:
            infos.append(BatchInfo(pos, base_offset, last_offset, base_ts, max_ts, pid, size,
                                   count, base_seq, epoch, pepoch, attrs, crc))
        if batches == 0:
            first = base_offset
        last = last_offset
        maxts = max(maxts, max_ts)
        records += count
        batches += 1
        next_offset = last_offset + 1
        pos += size
    return ScanResult(status, batches, pos, first, last, maxts, records, expected, found, infos)


# ---- Record decode (odk_decode_records) ------------------------------------------------

# Fields of one row, in order (ODK_REC_*): positions are from the batch's first byte;
# a length of -1 is a null key or value.
RECORD_FIELDS = ("offset_delta", "timestamp_delta", "key_pos", "key_len", "value_pos",
                 "value_len", "headers_pos", "headers_count")


class RecordsFlag:
    """odk_decode_result.flags bits (ODK_RECORDS_*)."""
    NULL_KEY = 1
    NULL_VALUE = 2
    HEADERS = 4
    SPARSE = 8


class DecodeResult(tuple):
    """Outcome of decode_records (odk_decode_result), plus the rows: a tuple
    (status, flags, records, position, expected, found, rows, min_timestamp,
    max_timestamp), readable by name too. rows is an array('q') of records * 8 int64:
    record i's fields (RECORD_FIELDS) at rows[8 * i:8 * i + 8]. min/max_timestamp: the
    smallest and largest record timestamp (baseTimestamp + timestampDelta, saturated at
    int64's limits, -1 left out); INT64_MAX / INT64_MIN when no record has one, and on
    failure."""
    __slots__ = ()
    _fields = ("status", "flags", "records", "position", "expected", "found", "rows", "min_timestamp",
               "max_timestamp")

    def __new__(cls, *values):
        return tuple.__new__(cls, values)

    status = property(lambda self: self[0])
    flags = property(lambda self: self[1])
    records = property(lambda self: self[2])
    position = property(lambda self: self[3])
    expected = property(lambda self: self[4])
    found = property(lambda self: self[5])
    rows = property(lambda self: self[6])
    min_timestamp = property(lambda self: self[7])
    max_timestamp = property(lambda self: self[8])

    @property
    def ok(self):
        return self[0] == Status.OK

    @property
    def status_name(self):
        return Status.NAMES[self[0]]

    def __repr__(self):
        return (f"DecodeResult({self.status_name}, flags={self[1]}, records={self[2]}, "
                f"position={self[3]}, expected={self[4]}, found={self[5]})")


class _DecodeError(Exception):
    """Ends the twin's walk: (status, position, expected, found) for the DecodeResult,
    then the words RecordBatch.records() raises (refusal_words)."""


def _at(pos):
    """Words for a position of the batch, as from the start of its records region."""
    return f"at byte {pos - BATCH_HEADER_SIZE} of the records"


def _varint(b, pos, lim, maxb):
    """read_varint of record_decode.c: (value, position after) of the zigzag varint of at most
    maxb bytes at b[pos], every byte before lim; else ("short" | "long" | "wide", last
    byte read), a str first to tell it apart."""
    z = 0
    for k in range(maxb):
        if pos >= lim:
            return "short", 0
        byte = b[pos]
        pos += 1
        if k == maxb - 1:
            if byte >= 0x80:
                return "long", byte
            if byte > (0x0F if maxb == 5 else 0x01):   # bits past 32 or 64
                return "wide", byte
        z |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            break
    return (z >> 1) ^ -(z & 1), pos


def _bad_varint(value, pos, maxb, after, i, what):
    if value == "long":
        return _DecodeError(Status.BAD_VARINT, pos, maxb, maxb + 1,
                            f"record {i} {what} {_at(pos)} is longer than {maxb} bytes")
    return _DecodeError(Status.BAD_VARINT, pos, 0x0F if maxb == 5 else 0x01, after,
                        f"record {i} {what} {_at(pos)} holds a value wider than "
                        f"{32 if maxb == 5 else 64} bits (last byte {after:#x})")


def _field(b, pos, e, maxb, i, what):
    """A varint field (`what`, in words) of record i whose declared end is e, failing
    as odradek.h says."""
    value, after = _varint(b, pos, e, maxb)
    if value == "short":
        raise _DecodeError(Status.BAD_RECORD, pos, e, e + 1,
                           f"record {i} {what} {_at(pos)} runs past the end of the record "
                           f"({_at(e)})")
    if isinstance(value, str):
        raise _bad_varint(value, pos, maxb, after, i, what)
    return value, after


def _bytes_field(b, pos, e, flags, null_flag, i, what):
    """A length varint and its bytes (key, value, header value): (pos of the bytes,
    length, pos after, flags)."""
    length, start = _field(b, pos, e, 5, i, f"{what} length")
    if length < 0:
        if length != -1:
            raise _DecodeError(Status.BAD_RECORD, pos, -1, length,
                               f"record {i} {what} length expected >= -1, found {length}")
        return start, length, start, flags | null_flag
    if length > e - start:
        raise _DecodeError(Status.BAD_RECORD, pos, e, start + length,
                           f"record {i} {what} length {length} runs past the end of the record "
                           f"({e - start} bytes remain)")
    return start, length, start + length, flags


def _batch_refusal(header, n):
    """decode_records' checks of a batch's header (n bytes present): None, or
    (status, expected, found, words)."""
    (_, length, _, magic, _, attrs, _, _, _, _, _, _, count) = header
    if length < MIN_BATCH_LENGTH:
        return (Status.BAD_LENGTH, MIN_BATCH_LENGTH, length,
                f"batchLength expected >= {MIN_BATCH_LENGTH}, found {length}")
    size = length + LOG_OVERHEAD
    if size > n:
        return Status.TRUNCATED, size, n, f"batchLength {length} does not fit the {n} bytes present"
    if magic != MAGIC:
        return Status.BAD_MAGIC, MAGIC, magic, f"magic expected {MAGIC}, found {magic}"
    if attrs & COMPRESSION_MASK:
        return (Status.BAD_CODEC, 0, attrs & COMPRESSION_MASK,
                f"compression id {attrs & COMPRESSION_MASK}: only uncompressed records decode here")
    most = (size - BATCH_HEADER_SIZE) // 7
    if count < 0:
        return Status.BAD_COUNT, most, count, f"recordsCount expected >= 0, found {count}"
    if count > most:
        return (Status.BAD_COUNT, most, count,
                f"recordsCount {count} runs past the end of the {size - BATCH_HEADER_SIZE}-byte "
                f"records region (at most {most} records fit: each takes 7 bytes or more)")
    return None


def _runs_past(i, size, count):
    return (f"record {i} runs past the end of the {size - BATCH_HEADER_SIZE}-byte records region "
            f"(recordsCount says {count} records)")


def _decode(batch):
    """decode_records' walk: (DecodeResult, words of the refusal or None)."""
    b = memoryview(batch).cast("B")
    n = len(b)
    rows = array("q")
    if n < BATCH_HEADER_SIZE:
        return (DecodeResult(Status.TRUNCATED, 0, 0, 0, BATCH_HEADER_SIZE, n, rows, *_NO_TIMESTAMPS),
                f"a batch needs at least its {BATCH_HEADER_SIZE}-byte header; found {n} bytes")
    header = read_header(b)
    refused = _batch_refusal(header, n)
    if refused is not None:
        status, expected, found, words = refused
        return DecodeResult(status, 0, 0, 0, expected, found, rows, *_NO_TIMESTAMPS), words
    size, count = header.batch_length + LOG_OVERHEAD, header.records_count
    flags = 0
    pos = BATCH_HEADER_SIZE
    i = 0
    try:
        for i in range(count):
            if pos >= size:
                raise _DecodeError(Status.BAD_COUNT, pos, count, i, _runs_past(i, size, count))
            start = pos
            length, after = _varint(b, pos, size, 5)
            if length == "short":
                raise _DecodeError(Status.TRUNCATED, pos, size - pos + 1, size - pos,
                                   _runs_past(i, size, count))
            if isinstance(length, str):
                raise _bad_varint(length, pos, 5, after, i, "length")
            if length < 6 or length > size - after:
                raise _DecodeError(Status.BAD_RECORD, pos, size - after, length,
                                   f"record {i} {_at(start)} declares {length} bytes; expected "
                                   f"6..{size - after} (what remains)")
            e = after + length
            pos = after + 1                                 # attributes: no bits defined
            ts_delta, pos = _field(b, pos, e, 10, i, "timestampDelta")
            offset_delta, pos = _field(b, pos, e, 5, i, "offsetDelta")
            if offset_delta != i:
                flags |= RecordsFlag.SPARSE
            key_pos, key_len, pos, flags = _bytes_field(b, pos, e, flags, RecordsFlag.NULL_KEY, i, "key")
            value_pos, value_len, pos, flags = _bytes_field(b, pos, e, flags, RecordsFlag.NULL_VALUE,
                                                            i, "value")
            f = pos
            h_count, pos = _field(b, pos, e, 5, i, "headers count")
            if h_count < 0 or h_count > (e - pos) // 2:
                raise _DecodeError(Status.BAD_RECORD, f, (e - pos) // 2, h_count,
                                   f"record {i} headers count expected 0..{(e - pos) // 2}, "
                                   f"found {h_count}")
            headers_pos = pos
            if h_count:
                flags |= RecordsFlag.HEADERS
            for _ in range(h_count):
                f = pos
                k_len, pos = _field(b, pos, e, 5, i, "header key length")
                if k_len < 0 or k_len > e - pos:
                    words = f"record {i} header key length expected 0..{e - pos}, found {k_len}"
                    if k_len < 0:
                        raise _DecodeError(Status.BAD_RECORD, f, 0, k_len, words)
                    raise _DecodeError(Status.BAD_RECORD, f, e, pos + k_len, words)
                pos += k_len
                _, _, pos, _ = _bytes_field(b, pos, e, 0, 0, i, "header value")  # null is fine
            if pos != e:
                raise _DecodeError(Status.BAD_RECORD, pos, e, pos,
                                   f"record {i} {_at(start)} declares {length} bytes after its "
                                   f"length; its fields take {pos - after}")
            rows.extend((offset_delta, ts_delta, key_pos, key_len, value_pos, value_len,
                         headers_pos, h_count))
        if pos != size:
            i = count
            raise _DecodeError(Status.BAD_COUNT, pos, size, pos,
                               f"{size - pos} bytes follow the last of the {count} records "
                               f"recordsCount declares")
    except _DecodeError as err:
        status, position, expected, found, words = err.args
        return DecodeResult(status, flags, i, position, expected, found, rows, *_NO_TIMESTAMPS), words
    return DecodeResult(Status.OK, flags, count, size, 0, 0, rows,
                        *_timestamp_span(header.base_timestamp, rows[1::len(RECORD_FIELDS)])), None


_NO_TIMESTAMPS = (_INT64_MAX, -_INT64_MAX - 1)    # (min, max) when no record has a timestamp


def _timestamp_span(base, deltas):
    """(min, max) record timestamp, base + delta saturated at int64's limits, -1 left out."""
    stamps = [t for t in (min(max(base + d, -_INT64_MAX - 1), _INT64_MAX) for d in deltas) if t != -1]
    return (min(stamps), max(stamps)) if stamps else _NO_TIMESTAMPS


def decode_records(batch):
    """Decode every record of one uncompressed v2 batch: odk_decode_records (see
    odradek.h for each check, its order and its expected/found). Returns a DecodeResult
    whose rows hold the records decoded before any failure."""
    return _decode(batch)[0]


def refusal_words(batch):
    """Why decode_records refuses `batch`, in the words RecordBatch.records() raises
    (record, field, expected, found; positions from the start of the records region),
    or None when it decodes. Not in the C twin, which reports only the status: this is
    the one Python parser of the record format, so records() asks it. Header keys are
    not decoded (as UTF-8) here: that is the caller's, as in C."""
    return _decode(batch)[1]


_PREFIX = struct.Struct(">qi")


def walk_prefixes(buf, buf_pos, pos, start, end, upper, max_bytes, at_least_one, max_batches):
    """odk_walk_prefixes (odradek.h): the file position where a walk of whole batches by
    their prefixes, in `buf` (the file's bytes from buf_pos), stops."""
    n = len(buf)
    for _ in range(max_batches):
        if pos >= end:
            break
        rel = pos - buf_pos
        if rel < 0 or rel + _PREFIX.size > n:
            break
        base, length = _PREFIX.unpack_from(buf, rel)
        if base >= upper or length < 0:
            break
        size = length + 12
        if size > end - pos or ((pos > start or not at_least_one) and pos + size - start > max_bytes):
            break
        pos += size
    return pos


_I16, _I32 = struct.Struct(">h"), struct.Struct(">i")


class _Other(Exception):
    """parse_produce_one: not the one-partition shape (or not well-formed)."""


def _uvarint(b, pos):
    """(value, next position) of an unsigned varint of at most 32 bits at pos."""
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(b):
            raise _Other
        byte = b[pos]
        pos += 1
        if shift == 28 and byte & 0xF0:
            raise _Other
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise _Other


def _take(b, pos, st):
    if pos + st.size > len(b):
        raise _Other
    return st.unpack_from(b, pos)[0], pos + st.size


def _skip(b, pos, n):
    if n < 0 or pos + n > len(b):
        raise _Other
    return pos + n


def parse_produce_one(frame, min_version, max_version):
    """odk_parse_produce_one (odradek.h; the byte layout in daemon/c_ext/kafka_request.c):
    (api_version, correlation_id, transactional, acks, timeout_ms, partition, topic_start,
    topic_len, records_start, records_len) of a Produce request frame body with one
    topic of one partition and no tagged fields; None for any other frame."""
    try:
        return _parse_produce_one(memoryview(frame).cast("B"), min_version, max_version)
    except _Other:
        return None


def _no_tags(b, pos):
    n, pos = _uvarint(b, pos)
    if n:
        raise _Other
    return pos


def _exactly_one(b, pos, flexible):
    """The position after an array's count, which must be 1 (compact: uvarint 2)."""
    count, pos = _uvarint(b, pos) if flexible else _take(b, pos, _I32)
    if count != (2 if flexible else 1):
        raise _Other
    return pos


def _length(b, pos, flexible, st):
    """(length, position after it) of a string or bytes that is not null: compact (uvarint
    length + 1) when flexible, else a signed `st`."""
    if flexible:
        n, pos = _uvarint(b, pos)
        if n == 0:
            raise _Other
        return n - 1, pos
    n, pos = _take(b, pos, st)
    if n < 0:
        raise _Other
    return n, pos


def _parse_produce_one(b, min_version, max_version):
    key, pos = _take(b, 0, _I16)
    if key != 0:
        raise _Other
    version, pos = _take(b, pos, _I16)
    correlation_id, pos = _take(b, pos, _I32)
    if not max(3, min_version) <= version <= max_version:
        raise _Other
    flexible = version >= 9
    n, pos = _take(b, pos, _I16)                 # client_id: int16 length even in header v2
    if n < -1:
        raise _Other
    pos = _skip(b, pos, max(n, 0))
    if flexible:
        pos = _no_tags(b, pos)
        n, pos = _uvarint(b, pos)
        transactional = n != 0
        pos = _skip(b, pos, max(n - 1, 0))
    else:
        n, pos = _take(b, pos, _I16)
        if n < -1:
            raise _Other
        transactional = n != -1
        pos = _skip(b, pos, max(n, 0))
    acks, pos = _take(b, pos, _I16)
    timeout_ms, pos = _take(b, pos, _I32)
    pos = _exactly_one(b, pos, flexible)                # topic
    topic_len, pos = (16, pos) if version >= 13 else _length(b, pos, flexible, _I16)
    topic_start, pos = pos, _skip(b, pos, topic_len)
    pos = _exactly_one(b, pos, flexible)                # partition
    partition, pos = _take(b, pos, _I32)
    records_len, pos = _length(b, pos, flexible, _I32)
    records_start, pos = pos, _skip(b, pos, records_len)
    if flexible:
        for _ in range(3):                       # the partition's, the topic's, the body's
            pos = _no_tags(b, pos)
    return (version, correlation_id, int(transactional), acks, timeout_ms, partition, topic_start, topic_len,
            records_start, records_len)
