"""Pure-Python reference of the storage-only functions of the native module
(daemon/c_ext/odradek.h): the index lookups and the fused append (odk_append,
odk_append_in_place, odk_append_check, odk_append_commit). Slow and obviously correct:
the definition the C code is tested against (tests/daemon/storage/test_native_append.py and
test_native_index.py run one suite against both), and the fallback when
odradek._native is missing or ODRADEK_PURE=1 is set. Import through
odradek.daemon.storage.native. The batch checks it shares with scan_batches are the
client's reference (odradek.client.native.reference: its twin of the same C file); the
sparse-index rule is index_policy.py's.
"""
import struct
from bisect import bisect_left, bisect_right

from odradek.client.native import Status, reference
from odradek.client.records.layout import (
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, COMPRESSION_MASK,
    CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD, MAX_TIMESTAMP_OFFSET, PARTITION_LEADER_EPOCH_OFFSET,
    TIMESTAMP_TYPE_MASK, Compression)
from odradek.daemon.storage.index_policy import SparseIndexing, time_entry_due
from odradek.daemon.storage.timestamp_limits import batch_timestamp_error, timestamp_range

__all__ = ["index_lookup", "timeindex_lookup", "append", "append_state", "AppendState",
           "APPEND_STATE_FIELDS", "append_target", "append_into", "release_target", "prefault",
           "append_fields_reader", "append_call", "APPEND_TAIL_FIELDS", "append_check", "append_commit",
           "append_in_place", "expect_buffer"]

_INT64_MAX = (1 << 63) - 1


# ---- Index lookups (odk_index_lookup, odk_timeindex_lookup) --------------------------
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


# ---- Fused append (odk_append) -------------------------------------------------------
# Field names of odk_append_state, in header order: configuration, the segment's state
# (advanced only on OK), results.
APPEND_STATE_FIELDS = (
    "segment_base", "index_interval", "max_batch_size", "append_time", "leader_epoch", "assign",
    "check_timestamps", "reserved_config", "now_ms", "timestamp_before_ms", "timestamp_after_ms",
    "expect", "expect_count", "position", "next_offset", "index_entries", "time_entries", "bytes_since_index",
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
        self.expect = None   # the C struct's NULL pointer

    def __repr__(self):
        return "AppendState(" + ", ".join(f"{n}={getattr(self, n)}" for n in APPEND_STATE_FIELDS) + ")"


def append_state(segment_base=0, index_interval=4096, max_batch_size=0, next_offset=None,
                 position=0, index_entries=0, time_entries=0, bytes_since_index=0,
                 max_timestamp=-1, offset_of_max=None, assign=True, leader_epoch=-1,
                 append_time=-1, *, state=None):
    """A new state for `append` (an odk_append_state): defaults describe an empty
    segment at segment_base. Attributes are read and set directly afterwards (the C
    twin returns an `odk_append_state *` cdata, whose fields read like attributes).
    state: the object to fill (default a new AppendState; the C face passes a cdata)."""
    st = AppendState() if state is None else state
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


class _Track(SparseIndexing):
    """The index bookkeeping of one append on locals (odk_append's track_state): the
    rule is SparseIndexing's; entries are counted, and written into the index buffers
    when given them."""
    __slots__ = ("_index_interval_bytes", "_bytes_since_index", "max_timestamp", "offset_of_max_timestamp",
                 "index_entries", "time_entries", "last_time_ts", "last_time_offset", "base", "index",
                 "timeindex")

    def __init__(self, st, last_time_ts, last_time_rel, index=None, timeindex=None):
        self._index_interval_bytes, self.base = st.index_interval, st.segment_base
        self._bytes_since_index, self.max_timestamp = st.bytes_since_index, st.max_timestamp
        self.offset_of_max_timestamp = st.offset_of_max
        self.index_entries, self.time_entries = st.index_entries, st.time_entries
        self.last_time_ts, self.last_time_offset = last_time_ts, st.segment_base + last_time_rel
        self.index, self.timeindex = index, timeindex

    track = SparseIndexing._index_batch   # (position, last offset, size, max timestamp)

    def _add_index_entry(self, last_offset, position):
        if self.index is not None:
            _OFFIDX.pack_into(self.index, self.index_entries * _OFFIDX.size, last_offset - self.base, position)
        self.index_entries += 1
        ts, offset = self.max_timestamp, self.offset_of_max_timestamp
        if time_entry_due(ts, offset, self.last_time_ts, self.last_time_offset, self.time_entries > 0):
            if self.timeindex is not None:
                _TIMEIDX.pack_into(self.timeindex, self.time_entries * _TIMEIDX.size, ts, offset - self.base)
            self.time_entries += 1
            self.last_time_ts, self.last_time_offset = ts, offset


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


def expect_buffer(st, headers):
    """A writable buffer of `headers` batch headers (BATCH_HEADER_SIZE bytes each), bound
    to st as its expectation (odradek.h, odk_append_state.expect): the caller packs the
    headers it checked at 0, 61, ... and sets st.expect_count before an append, which
    consumes it. Allocate one per state and keep it as long as the state."""
    if headers < 1:
        raise ValueError(f"an expectation holds at least one header, not {headers}")
    st.expect = bytearray(headers * BATCH_HEADER_SIZE)
    return memoryview(st.expect)


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
        status, header, size = reference.check_batch(mv, pos, n, 0)
        if status != Status.OK:
            expected, found = header
            break
        (base_offset, length, epoch, magic, crc, attrs, last_delta, base_ts, max_ts,
         pid, pepoch, base_seq, count) = header
        if not assign and base_offset < next_offset:
            status, expected, found = Status.BAD_OFFSET, next_offset, base_offset
            break
        if lfail is None:
            codec = attrs & COMPRESSION_MASK
            if max_batch > 0 and size > max_batch:
                lfail = (Status.TOO_LARGE, batches, pos, max_batch, size)
            elif assign and (count < 1 or last_delta != count - 1):
                lfail = (Status.BAD_RECORDS, batches, pos, count, last_delta)
            elif assign and codec > Compression.ZSTD:
                lfail = (Status.BAD_CODEC, batches, pos, Compression.ZSTD, codec)
            elif assign and codec == Compression.NONE:
                decoded = reference.decode_records(bytes(mv[pos:pos + size]))
                if decoded[0] != Status.OK:
                    lfail = (Status.BAD_RECORD_BYTES, batches, pos, decoded[2], decoded[0])
                elif st.check_timestamps:
                    bad = batch_timestamp_error(attrs, max_ts, decoded.min_timestamp, decoded.max_timestamp,
                                                *timestamp_range(st.now_ms, st.timestamp_before_ms,
                                                                 st.timestamp_after_ms))
                    if bad is not None:
                        lfail = (Status.BAD_TIMESTAMP, batches, pos, *bad)
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
            t.track(position + pos, last_offset, size, ts)
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
    t = _Track(st, st.last_time_timestamp, _last_time_rel(tx, st), ix, tx)
    next_offset = st.next_offset
    position = st.position
    pos = 0
    while pos < n:
        size = _I32.unpack_from(mv, pos + BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD
        last_delta = _I32.unpack_from(mv, pos + LAST_OFFSET_DELTA_OFFSET)[0]
        if assign:
            base = next_offset
            _I64.pack_into(mv, pos + BASE_OFFSET_OFFSET, base)
        else:
            base = _I64.unpack_from(mv, pos + BASE_OFFSET_OFFSET)[0]
        last_offset = base + last_delta
        if epoch >= 0:
            _I32.pack_into(mv, pos + PARTITION_LEADER_EPOCH_OFFSET, epoch)
        if append_time >= 0:
            ts = append_time
            attrs = _H16.unpack_from(mv, pos + ATTRIBUTES_OFFSET)[0]
            _H16.pack_into(mv, pos + ATTRIBUTES_OFFSET, attrs | TIMESTAMP_TYPE_MASK)
            _I64.pack_into(mv, pos + MAX_TIMESTAMP_OFFSET, ts)
            _U32.pack_into(mv, pos + CRC_OFFSET, reference.crc32c(mv[pos + ATTRIBUTES_OFFSET:pos + size]))
        else:
            ts = _I64.unpack_from(mv, pos + MAX_TIMESTAMP_OFFSET)[0]
        t.track(position + pos, last_offset, size, ts)
        next_offset = last_offset + 1
        pos += size
    st.position = position + n
    st.next_offset = next_offset
    st.index_entries, st.time_entries = t.index_entries, t.time_entries
    st.bytes_since_index, st.max_timestamp = t._bytes_since_index, t.max_timestamp
    st.offset_of_max = t.offset_of_max_timestamp
    st.last_time_timestamp = t.last_time_ts


def _expected(mv, expect, count, st):
    """The end of step 3: the validated copy holds exactly the `count` headers at
    `expect`, byte for byte; else Status.CHANGED (odradek.h)."""
    pos = 0
    for i in range(min(st.batches, count)):
        got = mv[pos:pos + BATCH_HEADER_SIZE]
        want = expect[i * BATCH_HEADER_SIZE:(i + 1) * BATCH_HEADER_SIZE]
        if got != want:
            at = next(j for j in range(BATCH_HEADER_SIZE) if got[j] != want[j])
            return _append_fail(st, Status.CHANGED, i, pos, at, -1)
        pos += _I32.unpack_from(mv, pos + BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD
    if st.batches != count:
        return _append_fail(st, Status.CHANGED, min(st.batches, count), pos, count, st.batches)
    return Status.OK


def _append(src, d, ix, tx, st):
    expect, count = st.expect, st.expect_count
    st.expect_count = 0   # consumed, whatever happens next
    dst_size, index_cap, time_cap = len(d), len(ix) // 8, len(tx) // 12
    n = memoryview(src).nbytes
    status = _refuse(n, dst_size, tx, index_cap, time_cap, st)
    if status != Status.OK:
        return status
    position = st.position
    d[position:position + n] = memoryview(src).cast("B")   # the only read of src
    mv = d[position:position + n]
    status = _validate(mv, index_cap, time_cap, st, _last_time_rel(tx, st))
    if status == Status.OK and count > 0:
        status = _expected(mv, expect, count, st)
    if status != Status.OK:
        mv[:] = bytes(n)
        return status
    _commit(mv, ix, tx, st)
    return Status.OK


def append_in_place(length, target, st):
    """odk_append_in_place's twin: append_into for the `length` bytes the caller already
    wrote at st.position of the target's .log (pwrite); every failure zeroes them again
    (when they lie inside the map). Returns st.status."""
    d, ix, tx = _target(target)
    position = st.position
    if length < 0:
        raise ValueError(f"length must be >= 0, not {length}")
    fits = 0 <= position <= len(d) and length <= len(d) - position
    if not fits:
        st.expect_count = 0   # consumed, as _append does
        return _refuse(length, len(d), tx, len(ix) // 8, len(tx) // 12, st)
    status = _append(bytes(d[position:position + length]), d, ix, tx, st)
    if status != Status.OK:
        d[position:position + length] = bytes(length)
    return status


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
    st.expect_count = 0   # a follower's own buffer: no expectation, none left behind
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
    st.expect_count = 0
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
            size = _I32.unpack_from(mv, pos + BATCH_LENGTH_OFFSET)[0] + LOG_OVERHEAD
            ok = BATCH_HEADER_SIZE <= size <= n - pos
            if ok:
                last = _I64.unpack_from(mv, pos + BASE_OFFSET_OFFSET)[0] + \
                    _I32.unpack_from(mv, pos + LAST_OFFSET_DELTA_OFFSET)[0]
                t.track(st.position + pos, last, size, _I64.unpack_from(mv, pos + MAX_TIMESTAMP_OFFSET)[0])
            pos += size
            batches += 1
        ok = ok and batches == st.batches and t.index_entries <= index_cap and t.time_entries <= time_cap
    if not ok:
        return _append_fail(st, Status.BAD_STATE, 0, 0, 0, 0)
    _commit(mv, ix, tx, st)   # stores as is: nothing written to src
    return Status.OK
