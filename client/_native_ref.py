"""Pure-Python reference of every function in the native module (daemon/c_ext/odradek.h).

Slow and obviously correct: it is the definition the C code is tested against, and the
fallback when odradek._native is missing or ODRADEK_PURE=1 is set. Keep each function's
behaviour identical to its C twin, edge cases included; tests/client/test_native.py runs
one suite against both. Its record decoder is also the one Python parser of the record
format: refusal_words (no C twin) gives RecordBatch.records() the words of its errors.
"""
import struct
from array import array
from bisect import bisect_left, bisect_right

# The records package imports the native module, which imports this one: nothing in it
# may use the native module while it loads (records/_batch.py reads it only when called).
from odradek.client.records.layout import (ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET,
                                            COMPRESSION_MASK, LOG_OVERHEAD, MAGIC,
                                            MIN_BATCH_LENGTH, read_header)

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "index_lookup",
           "timeindex_lookup", "scan_batches", "ScanResult", "BatchInfo", "Status",
           "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "append", "append_state", "AppendState",
           "APPEND_STATE_FIELDS", "append_target", "append_into", "release_target", "prefault",
           "append_fields_reader", "append_call", "APPEND_TAIL_FIELDS", "append_check", "append_commit",
           "decode_records", "DecodeResult", "RECORD_FIELDS", "RecordsFlag"]


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
    NAMES = {0: "OK", 1: "TRUNCATED", 2: "BAD_LENGTH", 3: "BAD_MAGIC", 4: "BAD_CRC",
             5: "BAD_OFFSET", 6: "MORE", 7: "TOO_LARGE", 8: "BAD_RECORDS", 9: "BAD_CODEC",
             10: "EMPTY", 11: "NO_SPACE", 12: "INDEX_FULL", 13: "OUT_OF_RANGE",
             14: "BAD_STATE", 15: "BAD_VARINT", 16: "BAD_RECORD", 17: "BAD_COUNT"}


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


def _check_entries(index, entries, entry_size):
    # The C functions take no buffer length: the wrappers check this bound for them.
    if entries < 0 or entries * entry_size > memoryview(index).nbytes:
        raise ValueError(f"{entries} index entries of {entry_size} bytes do not fit in "
                         f"a buffer of {memoryview(index).nbytes} bytes")


def index_lookup(index, entries, target):
    """Slot of the last offset-index entry with relativeOffset <= target, else -1."""
    _check_entries(index, entries, 8)
    keys = [struct.unpack_from(">I", index, 8 * i)[0] for i in range(entries)]
    return bisect_right(keys, target) - 1


def timeindex_lookup(index, entries, target):
    """Slot of the first time-index entry with timestamp >= target, else `entries`."""
    _check_entries(index, entries, 12)
    keys = [struct.unpack_from(">q", index, 12 * i)[0] for i in range(entries)]
    return bisect_left(keys, target)


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


def _check_batch(mv, pos, n, max_batch_size):
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
        status, header, size = _check_batch(mv, pos, n, max_batch_size)
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


# ---- Fused append (odk_append) -------------------------------------------------------

# Field names of odk_append_state, in header order: configuration, the segment's state
# (advanced only on OK), results.
APPEND_STATE_FIELDS = (
    "segment_base", "index_interval", "max_batch_size", "append_time", "leader_epoch", "assign",
    "position", "next_offset", "index_entries", "time_entries", "bytes_since_index",
    "max_timestamp", "offset_of_max",
    "status", "reserved", "batches", "valid_bytes", "expected", "found", "first_offset",
    "last_offset", "records", "append_max_timestamp", "first_max_timestamp",
    "last_time_timestamp")


class AppendState:
    """The pure-Python odk_append_state: plain attributes, all ints, same names."""
    __slots__ = APPEND_STATE_FIELDS

    def __init__(self):
        for name in APPEND_STATE_FIELDS:
            setattr(self, name, 0)

    def __repr__(self):
        return "AppendState(" + ", ".join(f"{n}={getattr(self, n)}" for n in APPEND_STATE_FIELDS) + ")"


def append_state(segment_base=0, index_interval=4096, max_batch_size=0, next_offset=None,
                 position=0, index_entries=0, time_entries=0, bytes_since_index=0,
                 max_timestamp=-1, offset_of_max=None, assign=True, leader_epoch=-1,
                 append_time=-1):
    """A new state for `append` (an odk_append_state): defaults describe an empty
    segment at segment_base. Attributes are read and set directly afterwards (the C
    twin returns an `odk_append_state *` cdata, whose fields read like attributes)."""
    st = AppendState()
    st.segment_base, st.index_interval, st.max_batch_size = segment_base, index_interval, max_batch_size
    st.next_offset = segment_base if next_offset is None else next_offset
    st.offset_of_max = segment_base if offset_of_max is None else offset_of_max
    st.position, st.index_entries, st.time_entries = position, index_entries, time_entries
    st.bytes_since_index, st.max_timestamp = bytes_since_index, max_timestamp
    st.assign, st.leader_epoch, st.append_time = int(bool(assign)), leader_epoch, append_time
    st.first_offset = st.last_offset = st.append_max_timestamp = st.first_max_timestamp = -1
    st.last_time_timestamp = -1
    return st


_U32_LIMIT = 0xFFFFFFFF
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_H16 = struct.Struct(">H")
_OFFIDX = struct.Struct(">II")
_TIMEIDX = struct.Struct(">qI")


def _append_fail(st, status, batches, pos, expected, found):
    st.status, st.batches, st.valid_bytes, st.expected, st.found = status, batches, pos, expected, found
    st.first_offset = st.last_offset = st.append_max_timestamp = st.first_max_timestamp = -1
    st.records = 0
    return status


class _Track:
    """LogSegment._track on locals (see odk_append): count, then write."""
    __slots__ = ("bytes_since_index", "max_ts", "offset_of_max", "index_entries",
                 "time_entries", "last_time_ts", "last_time_rel")

    def __init__(self, st, last_time_ts, last_time_rel):
        self.bytes_since_index, self.max_ts = st.bytes_since_index, st.max_timestamp
        self.offset_of_max = st.offset_of_max
        self.index_entries, self.time_entries = st.index_entries, st.time_entries
        self.last_time_ts, self.last_time_rel = last_time_ts, last_time_rel

    def track(self, st, pos, last, size, ts, index, timeindex, write):
        if ts > self.max_ts:
            self.max_ts, self.offset_of_max = ts, last
        if self.bytes_since_index > st.index_interval:
            if write:
                _OFFIDX.pack_into(index, self.index_entries * 8, last - st.segment_base, pos)
            self.index_entries += 1
            rel = self.offset_of_max - st.segment_base
            if self.max_ts > self.last_time_ts and (self.time_entries == 0 or rel > self.last_time_rel):
                if write:
                    _TIMEIDX.pack_into(timeindex, self.time_entries * 12, self.max_ts, rel)
                self.time_entries += 1
                self.last_time_ts, self.last_time_rel = self.max_ts, rel
            self.bytes_since_index = 0
        self.bytes_since_index += size


def append(src, dst, index, timeindex, st):
    """Copy, validate, rewrite and index a buffer of v2 batches at the end of a segment:
    odk_append (see odradek.h for every rule and status). Returns st.status.

    src: the batches (any buffer; read once, by the copy). dst: the segment's mapping,
    writable, its whole capacity (MappedFile.buffer); the copy goes to st.position.
    index, timeindex: the mapped index files, writable, whole capacity (entries that fit
    = len // 8 and len // 12). st: from append_state(); its segment fields advance on
    Status.OK only, its result fields are set by every call.
    """
    d, ix, tx = memoryview(dst).cast("B"), memoryview(index).cast("B"), memoryview(timeindex).cast("B")
    if d.readonly or ix.readonly or tx.readonly:
        raise BufferError("append needs writable dst, index and timeindex buffers")  # as cffi
    return _append(src, d, ix, tx, st)


def append_target(dst, index, timeindex):
    """The three segment buffers of `append`, bound once (per segment) for append_into,
    which then skips taking them per call. Holds them exported (an mmap cannot be closed
    meanwhile): release_target(target) before closing the files."""
    views = [memoryview(dst).cast("B"), memoryview(index).cast("B"), memoryview(timeindex).cast("B")]
    if any(v.readonly for v in views):
        raise BufferError("append_target needs writable dst, index and timeindex buffers")
    return views


def append_into(src, target, st):
    """append(src, *buffers bound in target, st). ValueError after release_target."""
    try:
        d, ix, tx = target
    except ValueError:
        raise ValueError("append target was released") from None
    return _append(src, d, ix, tx, st)


APPEND_TAIL_FIELDS = ("position", "next_offset", "index_entries", "time_entries", "bytes_since_index",
                      "max_timestamp", "offset_of_max", "status", "reserved", "batches", "valid_bytes",
                      "expected", "found", "first_offset", "last_offset", "records", "append_max_timestamp",
                      "first_max_timestamp", "last_time_timestamp")


def append_call(target, st):
    """A function of one argument, `data`: append_into(data, target, st)."""
    return lambda data: append_into(data, target, st)


def append_fields_reader(st):
    """A function returning the state's fields APPEND_TAIL_FIELDS as one tuple (the C
    facade's reads them with one unpack)."""
    return lambda: tuple(getattr(st, name) for name in APPEND_TAIL_FIELDS)


def prefault(target, start, end):
    """odk_prefault_async's twin: Python has no thread that could fault pages without
    the GIL, so it does nothing and says so (2: unavailable)."""
    return 2


def release_target(target):
    """Let go of the buffers append_target took (idempotent); the target is then dead."""
    for view in target:
        view.release()
    target.clear()


def _refuse(n, dst_size, tx, index_cap, time_cap, st):
    """odk_append's step 1: Status.OK, or the refusal before anything is written.
    Reads the last time entry into st.last_time_timestamp."""
    st.reserved = 0
    last_time_ts = -1
    if 0 < st.time_entries <= time_cap:
        last_time_ts = _TIMEIDX.unpack_from(tx, (st.time_entries - 1) * 12)[0]
    st.last_time_timestamp = last_time_ts
    position = st.position
    if not (0 <= position <= dst_size and 0 <= st.index_entries <= index_cap
            and 0 <= st.time_entries <= time_cap):
        return _append_fail(st, Status.BAD_STATE, 0, 0, 0, 0)
    if n == 0:
        return _append_fail(st, Status.EMPTY, 0, 0, 0, 0)
    if n > dst_size - position:
        return _append_fail(st, Status.NO_SPACE, 0, 0, dst_size - position, n)
    if st.index_entries >= index_cap or st.time_entries >= time_cap:
        return _append_fail(st, Status.INDEX_FULL, 0, 0, 0, 1)
    if position + n > _U32_LIMIT + 1:
        return _append_fail(st, Status.OUT_OF_RANGE, 0, 0, _U32_LIMIT + 1, position + n)
    return Status.OK


def _last_time_rel(tx, st):
    return _U32.unpack_from(tx, (st.time_entries - 1) * 12 + 8)[0] if st.time_entries > 0 else -1


def _validate(mv, index_cap, time_cap, st, last_time_rel):
    """odk_append's step 3 on mv (read only): the result fields, in/out unchanged."""
    n = len(mv)
    assign = st.assign != 0
    max_batch, seg_base, append_time = st.max_batch_size, st.segment_base, st.append_time
    position = st.position
    pos = batches = records = 0
    next_offset = st.next_offset
    first = last = maxts = first_ts = -1
    status, expected, found = Status.OK, 0, 0
    lfail = rfail = None
    t = _Track(st, st.last_time_timestamp, last_time_rel)
    while pos < n:
        status, header, size = _check_batch(mv, pos, n, 0)
        if status != Status.OK:
            expected, found = header
            break
        (base_offset, length, epoch, magic, crc, attrs, last_delta, base_ts, max_ts,
         pid, pepoch, base_seq, count) = header
        if not assign and base_offset < next_offset:
            status, expected, found = Status.BAD_OFFSET, next_offset, base_offset
            break
        if lfail is None:
            codec = attrs & 7
            if max_batch > 0 and size > max_batch:
                lfail = (Status.TOO_LARGE, batches, pos, max_batch, size)
            elif assign and (count < 1 or last_delta != count - 1):
                lfail = (Status.BAD_RECORDS, batches, pos, count, last_delta)
            elif assign and codec > 1:
                lfail = (Status.BAD_CODEC, batches, pos, 1, codec)
        base = next_offset if assign else base_offset
        if rfail is None:
            if base > _INT64_MAX - 1 - last_delta:
                rfail = (Status.OUT_OF_RANGE, batches, pos, _INT64_MAX - 1 - last_delta, base)
            elif base < seg_base:
                rfail = (Status.OUT_OF_RANGE, batches, pos, seg_base, base)
            elif base + last_delta - seg_base > _U32_LIMIT:
                rfail = (Status.OUT_OF_RANGE, batches, pos, seg_base + _U32_LIMIT, base + last_delta)
        last_offset = base + last_delta
        if lfail is None and rfail is None:
            ts = append_time if append_time >= 0 else max_ts
            t.track(st, position + pos, last_offset, size, ts, None, None, False)
            if batches == 0:
                first_ts = ts
            maxts = max(maxts, ts)
        if batches == 0:
            first = base
        last = last_offset
        records += count
        batches += 1
        next_offset = last_offset + 1
        pos += size

    if status == Status.OK and (lfail or rfail):
        status, batches, pos, expected, found = lfail or rfail
    elif status == Status.OK:
        need_i, need_t = t.index_entries - st.index_entries, t.time_entries - st.time_entries
        free_i, free_t = index_cap - st.index_entries, time_cap - st.time_entries
        if need_i > free_i or need_t > free_t:
            status, batches, pos = Status.INDEX_FULL, 0, 0
            expected, found = (free_i, need_i) if need_i > free_i else (free_t, need_t)
    if status != Status.OK:
        return _append_fail(st, status, batches, pos, expected, found)
    st.status, st.batches, st.valid_bytes, st.expected, st.found = Status.OK, batches, n, 0, 0
    st.first_offset, st.last_offset, st.records = first, last, records
    st.append_max_timestamp, st.first_max_timestamp = maxts, first_ts
    return Status.OK


def _commit(mv, ix, tx, st):
    """odk_append's step 4 on validated batches: rewrites (in mv), index entries, state."""
    n = len(mv)
    assign, append_time, epoch = st.assign != 0, st.append_time, st.leader_epoch
    t = _Track(st, st.last_time_timestamp, _last_time_rel(tx, st))
    next_offset = st.next_offset
    position = st.position
    pos = 0
    while pos < n:
        size = _I32.unpack_from(mv, pos + 8)[0] + LOG_OVERHEAD
        last_delta = _I32.unpack_from(mv, pos + 23)[0]
        if assign:
            base = next_offset
            _I64.pack_into(mv, pos, base)
        else:
            base = _I64.unpack_from(mv, pos)[0]
        last_offset = base + last_delta
        if epoch >= 0:
            _I32.pack_into(mv, pos + 12, epoch)
        if append_time >= 0:
            ts = append_time
            _H16.pack_into(mv, pos + 21, _H16.unpack_from(mv, pos + 21)[0] | 0x08)
            _I64.pack_into(mv, pos + 35, ts)
            _U32.pack_into(mv, pos + 17, crc32c(mv[pos + 21:pos + size]))
        else:
            ts = _I64.unpack_from(mv, pos + 35)[0]
        t.track(st, position + pos, last_offset, size, ts, ix, tx, True)
        next_offset = last_offset + 1
        pos += size
    st.position = position + n
    st.next_offset = next_offset
    st.index_entries, st.time_entries = t.index_entries, t.time_entries
    st.bytes_since_index, st.max_timestamp, st.offset_of_max = t.bytes_since_index, t.max_ts, t.offset_of_max
    st.last_time_timestamp = t.last_time_ts


def _append(src, d, ix, tx, st):
    dst_size, index_cap, time_cap = len(d), len(ix) // 8, len(tx) // 12
    n = memoryview(src).nbytes
    status = _refuse(n, dst_size, tx, index_cap, time_cap, st)
    if status != Status.OK:
        return status
    position = st.position
    d[position:position + n] = memoryview(src).cast("B")   # the only read of src
    mv = d[position:position + n]
    status = _validate(mv, index_cap, time_cap, st, _last_time_rel(tx, st))
    if status != Status.OK:
        mv[:] = bytes(n)
        return status
    _commit(mv, ix, tx, st)
    return Status.OK


def _stores_as_is(st):
    return st.assign == 0 and st.leader_epoch < 0 and st.append_time < 0


def _target(target):
    try:
        d, ix, tx = target
    except ValueError:
        raise ValueError("append target was released") from None
    return d, ix, tx


def append_check(src, target, st):
    """odk_append_check's twin: validate a follower's batches where they are, for the
    segment bound in target, writing nothing; returns st.status (see odradek.h)."""
    d, ix, tx = _target(target)
    if not _stores_as_is(st):
        return _append_fail(st, Status.BAD_STATE, 0, 0, 0, 0)
    mv = memoryview(src).cast("B")
    status = _refuse(len(mv), len(d), tx, len(ix) // 8, len(tx) // 12, st)
    if status != Status.OK:
        return status
    return _validate(mv, len(ix) // 8, len(tx) // 12, st, _last_time_rel(tx, st))


def append_commit(src, target, st):
    """odk_append_commit's twin: after an OK append_check of src and its write, add its
    index entries and advance st; Status.BAD_STATE (nothing written) on a caller bug."""
    d, ix, tx = _target(target)
    mv = memoryview(src).cast("B")
    n, index_cap, time_cap = len(mv), len(ix) // 8, len(tx) // 12
    ok = (_stores_as_is(st) and st.status == Status.OK and st.valid_bytes == n and n > 0
          and 0 <= st.index_entries <= index_cap and 0 <= st.time_entries <= time_cap)
    if ok:
        t = _Track(st, st.last_time_timestamp, _last_time_rel(tx, st))
        pos = batches = 0
        while ok and pos < n:
            if n - pos < BATCH_HEADER_SIZE:
                ok = False
                break
            size = _I32.unpack_from(mv, pos + 8)[0] + LOG_OVERHEAD
            ok = BATCH_HEADER_SIZE <= size <= n - pos
            if ok:
                last = _I64.unpack_from(mv, pos)[0] + _I32.unpack_from(mv, pos + 23)[0]
                t.track(st, st.position + pos, last, size, _I64.unpack_from(mv, pos + 35)[0], None, None, False)
            pos += size
            batches += 1
        ok = ok and batches == st.batches and t.index_entries <= index_cap and t.time_entries <= time_cap
    if not ok:
        return _append_fail(st, Status.BAD_STATE, 0, 0, 0, 0)
    _commit(mv, ix, tx, st)   # stores as is: nothing written to src
    return Status.OK


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
    (status, flags, records, position, expected, found, rows), readable by name too.
    rows is an array('q') of records * 8 int64: record i's fields (RECORD_FIELDS) at
    rows[8 * i:8 * i + 8]."""
    __slots__ = ()
    _fields = ("status", "flags", "records", "position", "expected", "found", "rows")

    def __new__(cls, *values):
        return tuple.__new__(cls, values)

    status = property(lambda self: self[0])
    flags = property(lambda self: self[1])
    records = property(lambda self: self[2])
    position = property(lambda self: self[3])
    expected = property(lambda self: self[4])
    found = property(lambda self: self[5])
    rows = property(lambda self: self[6])

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
    """read_varint of odradek.c: (value, position after) of the zigzag varint of at most
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
        return (DecodeResult(Status.TRUNCATED, 0, 0, 0, BATCH_HEADER_SIZE, n, rows),
                f"a batch needs at least its {BATCH_HEADER_SIZE}-byte header; found {n} bytes")
    header = read_header(b)
    refused = _batch_refusal(header, n)
    if refused is not None:
        status, expected, found, words = refused
        return DecodeResult(status, 0, 0, 0, expected, found, rows), words
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
        return DecodeResult(status, flags, i, position, expected, found, rows), words
    return DecodeResult(Status.OK, flags, count, size, 0, 0, rows), None


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
