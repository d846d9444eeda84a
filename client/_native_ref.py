"""Pure-Python reference of every function in the native module (daemon/c_ext/odradek.h).

Slow and obviously correct: it is the definition the C code is tested against, and the
fallback when odradek._native is missing or ODRADEK_PURE=1 is set. Keep each function's
behaviour identical to its C twin, edge cases included; tests/client/test_native.py runs
one suite against both.
"""
import struct
from bisect import bisect_left, bisect_right

__all__ = ["crc32c", "crc32c_sw", "crc32c_hw_available", "index_lookup",
           "timeindex_lookup", "scan_batches", "ScanResult", "BatchInfo", "Status",
           "BATCH_HEADER_SIZE", "LOG_OVERHEAD"]

BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12


class Status:
    """odk_status codes (see odradek.h)."""
    OK = 0
    TRUNCATED = 1
    BAD_LENGTH = 2
    BAD_MAGIC = 3
    BAD_CRC = 4
    BAD_OFFSET = 5
    MORE = 6
    NAMES = {0: "OK", 1: "TRUNCATED", 2: "BAD_LENGTH", 3: "BAD_MAGIC", 4: "BAD_CRC",
             5: "BAD_OFFSET", 6: "MORE"}


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
_HEADER = struct.Struct(">qiibIhiqqqhii")  # the 61-byte v2 batch header


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
        if n - pos < LOG_OVERHEAD:
            status = Status.TRUNCATED
            expected, found = LOG_OVERHEAD, n - pos
            break
        base_offset, length = struct.unpack_from(">qi", mv, pos)
        size = length + LOG_OVERHEAD
        if length < BATCH_HEADER_SIZE - LOG_OVERHEAD or (max_batch_size > 0 and size > max_batch_size):
            status = Status.BAD_LENGTH
            expected, found = BATCH_HEADER_SIZE - LOG_OVERHEAD, length
            if max_batch_size > 0 and size > max_batch_size:
                expected = max_batch_size - LOG_OVERHEAD
            break
        if n - pos < size:
            status = Status.TRUNCATED
            expected, found = size, n - pos
            break
        (base_offset, length, epoch, magic, crc, attrs, last_delta, base_ts, max_ts,
         pid, pepoch, base_seq, count) = _HEADER.unpack_from(mv, pos)
        if magic != 2:
            status, expected, found = Status.BAD_MAGIC, 2, magic
            break
        if last_delta < 0 or count < 0:
            status, expected, found = Status.BAD_LENGTH, 0, min(last_delta, count)
            break
        if base_offset + last_delta > _INT64_MAX - 1:  # lastOffset + 1 must fit in int64
            status, expected, found = Status.BAD_LENGTH, _INT64_MAX - 1 - base_offset, last_delta
            break
        computed = crc32c(mv[pos + 21:pos + size])
        if computed != crc:
            status, expected, found = Status.BAD_CRC, computed, crc
            break
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
