"""dump-log: print and check segment files, as Kafka's kafka-dump-log.sh (DumpLogSegments).

    report = dump(["data/orders-0"], out=print, print_records=False)
    report.problems          # how many problems were found; each was printed

What it reads (names: storage/filenames.py):
  <base>.log        one line per batch, in Kafka's style; print_records adds a line per
                    record
  <base>.index      one line per entry ("offset: N position: P"), each checked against
                    <base>.log beside it
  <base>.timeindex  one line per entry ("timestamp: T offset: N"), checked the same way
  <base>.txnindex   aborted transactions (storage/txn_index.py), one line per entry in
                    Kafka's style ("version: 0 producerId: P firstOffset: F lastOffset: L
                    lastStableOffset: S"); in a partition dir each marker offset is checked
                    to lie in its segment and to increase (dump_state_files.py)
  <offset>.snapshot producer-state snapshot (storage/producer_snapshot.py): one line per
                    producer, in the style of Kafka's tool; a bad version, CRC or length
                    is a problem
  leader-epoch-checkpoint
                    the leader-epoch cache (storage/leader_epoch.py): one line per
                    entry; a file that does not parse, or whose epochs or start offsets
                    do not increase, is a problem
  partition dir     every segment in offset order: each .log printed, its two indexes
                    checked against it (not printed); then each .snapshot printed; then
                    the leader-epoch-checkpoint, checked against the batches

Problems (each printed as "WARNING: <file>: position <byte>: <what>", saying what was
expected and what was found; the CLI's --verify turns any of them into a failure):
  - a batch that native.scan_batches rejects: bad CRC, bad magic, negative counts, a
    baseOffset below the last offset + 1 of the batch before it (or below the segment's
    base offset); and a compression id 5-7 or recordsCount > lastOffsetDelta + 1. The
    dump goes on after such a batch, since its batchLength still frames it.
  - a tail that cannot be read: fewer than 12 bytes, a batchLength below 49, or a batch
    longer than the bytes left (a torn write). Nothing after it can be framed.
  - an offset index entry out of order, at a log position that is not a batch start or
    is past the batches, or whose offset is not the last offset of the batch there
    (what segment.py writes, as Kafka does); a time index entry out of order, whose
    offset is past the log end or in no batch, or whose timestamp is not the
    maxTimestamp of the batch holding its offset.
  - in a partition dir, a leader-epoch-checkpoint entry outside the log (below the first
    segment's base offset or above the log end), or a batch whose partitionLeaderEpoch
    is not the epoch the checkpoint gives its base offset (batches with -1 are skipped).
Not a problem: zeros after the last batch or the last index entry. Active segments are
preallocated (mapped_file.py) and left untrimmed by a crash; recovery drops the zeros.
They are reported as "N bytes of zero padding". (So an index whose only entry is all
zeros, (base offset, position 0), reads as padding: no writer indexes position 0.)

Streaming: a .log is read one window at a time (8 MiB, or one batch if larger) and each
line is written as soon as it is known, so memory does not grow with the file. Batches
are validated in C (native.scan_batches); Python looks at a batch only to print it and
decodes records only for print_records. Holes of sparse (preallocated) files are
skipped with SEEK_DATA, not read. Runs in the CLI's process; nothing here is shared.
"""
import errno
import os
import struct
from collections import namedtuple

from odradek.client import native
from odradek.client.errors import CorruptRecord, InvalidSegment
from odradek.client.records import (ATTRIBUTES_OFFSET, COMPRESSION_MASK, CONTROL_MASK,
                                    DELETE_HORIZON_MASK, LOG_OVERHEAD, MAGIC, MIN_BATCH_LENGTH,
                                    NO_SEQUENCE, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK,
                                    Compression, RecordBatch, decode_end_txn_marker, read_batch_length,
                                    read_header)
from odradek.daemon.storage import filenames, leader_epoch, producer_snapshot
from odradek.daemon.tools.dump_state_files import (SEQUENCE_WRAP as _SEQUENCE_WRAP, dump_epochs as _dump_epochs,
                                                   dump_snapshot as _dump_snapshot, dump_txn_index as _dump_txn_index,
                                                   plural as _plural)

__all__ = ["dump", "Report", "LogWalk", "show_bytes"]

_WINDOW = 8 << 20       # bytes of .log read at a time
_SCAN_CAP = 1024        # BatchInfo per native.scan_batches call
_ZERO_CHUNK = 1 << 20   # bytes read at a time when looking for the end of zero padding
_ENTRY_CHUNK = 8192     # index entries read at a time
_INDEX_ENTRY = struct.Struct(">II")          # relativeOffset, position
_TIMEINDEX_ENTRY = struct.Struct(">qI")      # timestamp, relativeOffset
_INT64_MAX = (1 << 63) - 1
_S = native.Status


# ==== batches of a .log file ===========================================================
class Header(namedtuple("Header", "position base_offset last_offset count size crc magic "
                                  "attributes base_timestamp max_timestamp producer_id "
                                  "producer_epoch base_sequence leader_epoch")):
    """A batch's header fields and its byte position in the file."""
    __slots__ = ()

    @classmethod
    def from_info(cls, info, shift):
        """From a native.BatchInfo whose position is relative to file position `shift`."""
        (pos, base, last, base_ts, max_ts, pid, size, count, base_seq, epoch, pepoch, attrs,
         crc) = info
        return cls(shift + pos, base, last, count, size, crc, MAGIC, attrs, base_ts, max_ts, pid,
                   pepoch, base_seq, epoch)

    @classmethod
    def from_bytes(cls, buf, at, position):
        (base, length, epoch, magic, crc, attrs, last_delta, base_ts, max_ts, pid, pepoch, base_seq,
         count) = read_header(buf, at)
        return cls(position, base, base + last_delta, count, length + LOG_OVERHEAD, crc, magic,
                   attrs, base_ts, max_ts, pid, pepoch, base_seq, epoch)

    @property
    def sane_offsets(self):
        """Whether base..last can be trusted as offsets (v2 and not reversed)."""
        return self.magic == MAGIC and self.base_offset <= self.last_offset


Batch = namedtuple("Batch", "header data valid problem")   # data: the batch's bytes
Padding = namedtuple("Padding", "position nbytes")         # zeros from position to the end
Unreadable = namedtuple("Unreadable", "position problem")  # nothing from here can be framed


class LogWalk:
    """The batches of one .log file in file order: iterate once, yielding Batch (its
    `data` valid only until the next item), then at most one Padding or Unreadable.

    Afterwards: `batches`, `records`, `first_offset`, `next_offset` (last offset + 1 of
    the batches with sane offsets: the log end offset) and `data_end` (where the last
    framed batch ends). `min_offset`: the lowest baseOffset allowed (default: the
    segment's base offset; a partition passes the previous segment's end).
    """

    def __init__(self, path, base_offset=0, min_offset=None):
        self.path = path
        self.base_offset = base_offset
        self._floor = base_offset if min_offset is None else max(base_offset, min_offset)
        self.batches = self.records = self.data_end = 0
        self.first_offset = None
        self.next_offset = base_offset

    def __iter__(self):
        fd = os.open(self.path, os.O_RDONLY)
        try:
            yield from self._walk(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def _walk(self, fd, size):
        pos, need = 0, _WINDOW
        while pos < size:
            window = os.pread(fd, min(max(need, _WINDOW), size - pos), pos)
            if not window:
                return  # the file shrank while we read it
            at_eof = pos + len(window) >= size
            view = memoryview(window)
            p, need = 0, _WINDOW
            while p < len(view):
                r = native.scan_batches(view[p:], 0, True, self._floor, _SCAN_CAP)
                for info in r.infos:
                    h = Header.from_info(info, pos + p)
                    start = h.position - pos
                    self._account(h)
                    yield Batch(h, view[start:start + h.size], True, _header_problem(h))
                p += r.valid_bytes
                if r.status in (_S.OK, _S.MORE):
                    continue
                rest = len(view) - p
                length = read_batch_length(view, p) if rest >= LOG_OVERHEAD else None
                if length is not None and MIN_BATCH_LENGTH <= length <= rest - LOG_OVERHEAD:
                    # its framing holds: show the batch, say what is wrong, go on after it
                    h = Header.from_bytes(view, p, pos + p)
                    data = view[p:p + h.size]
                    valid = h.magic == MAGIC and native.crc32c(data[ATTRIBUTES_OFFSET:]) == h.crc
                    self._account(h)
                    yield Batch(h, data, valid, _scan_problem(r, h))
                    p += h.size
                    continue
                fits_in_file = length is not None and length >= MIN_BATCH_LENGTH and \
                    pos + p + length + LOG_OVERHEAD <= size
                if not at_eof and (length is None or fits_in_file):
                    need = LOG_OVERHEAD if length is None else length + LOG_OVERHEAD
                    break  # the batch runs past this window: read again from its start
                yield _tail(fd, pos + p, size, length)
                return
            pos += p

    def _account(self, h):
        position, base, last, count, size, _, magic = h[:7]
        self.batches += 1
        if count > 0:
            self.records += count
        self.data_end = position + size
        if magic == MAGIC and base <= last:
            if self.first_offset is None:
                self.first_offset = base
            if last >= self.next_offset:
                self.next_offset = last + 1
            if last >= self._floor:
                self._floor = last + 1


def _header_problem(h):
    """Checks scan_batches leaves out (RecordBatch.validate makes them too)."""
    codec = h.attributes & COMPRESSION_MASK
    if codec > Compression.ZSTD:
        return f"compression id expected 0-4 (none, gzip, snappy, lz4, zstd), found {codec}"
    if h.count > h.last_offset - h.base_offset + 1:
        return (f"recordsCount expected <= lastOffsetDelta + 1 = "
                f"{h.last_offset - h.base_offset + 1}, found {h.count}")
    return None


def _scan_problem(r, h):
    """What native.scan_batches found wrong with a batch whose framing holds."""
    if r.status == _S.BAD_CRC:
        return (f"crc expected {r.expected} (the CRC-32C of bytes "
                f"{h.position + ATTRIBUTES_OFFSET}..{h.position + h.size - 1}), found {r.found} "
                f"(stored in the batch)")
    if r.status == _S.BAD_MAGIC:
        old = " (a pre-0.11 message set, which odradek does not read)" if r.found in (0, 1) else ""
        return f"magic expected {MAGIC}, found {r.found}{old}"
    if r.status == _S.BAD_OFFSET:
        return (f"baseOffset expected >= {r.expected} (offsets only go up), found {r.found}")
    if h.count < 0 or h.last_offset < h.base_offset:
        return (f"lastOffsetDelta and recordsCount expected >= 0, found "
                f"{h.last_offset - h.base_offset} and {h.count}")
    return (f"lastOffset expected <= {_INT64_MAX - 1}, found {h.last_offset} "
            f"(baseOffset {h.base_offset} + lastOffsetDelta {h.last_offset - h.base_offset})")


def _tail(fd, position, size, length):
    """Padding or Unreadable for the bytes from `position` that cannot be framed."""
    nbytes = size - position
    if _zero_tail_start(fd, position, size) == position:
        return Padding(position, nbytes)
    if length is None:
        what = (f"torn tail: a batch needs at least {LOG_OVERHEAD} bytes (baseOffset, batchLength),"
                f" found {nbytes} before the end of the file")
    elif length < MIN_BATCH_LENGTH:
        what = (f"batchLength expected >= {MIN_BATCH_LENGTH}, found {length}; the {nbytes} bytes "
                f"from here to the end of the file cannot be read")
    else:
        what = (f"torn tail: batch size expected {length + LOG_OVERHEAD} bytes (batchLength "
                f"{length} + {LOG_OVERHEAD}), found {nbytes} before the end of the file")
    return Unreadable(position, what)


# ==== zeros and holes ==================================================================
def _data_extents(fd, start, end):
    """The [a, b) ranges of [start, end) that may hold data: holes are skipped."""
    extents, pos = [], start
    while pos < end:
        try:
            a = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:      # no SEEK_DATA here: read it all
                extents.append((pos, end))
            break                           # ENXIO: nothing but a hole up to the end
        if a >= end:
            break
        b = min(os.lseek(fd, a, os.SEEK_HOLE), end)
        extents.append((a, b))
        pos = b
    return extents


def _zero_tail_start(fd, start, end):
    """The smallest q in [start, end] such that bytes [q, end) are all zero."""
    for a, b in reversed(_data_extents(fd, start, end)):
        hi = b
        while hi > a:
            lo = max(a, hi - _ZERO_CHUNK)
            kept = len(os.pread(fd, hi - lo, lo).rstrip(b"\0"))
            if kept:
                return lo + kept
            hi = lo
    return start


# ==== index files ======================================================================
class IndexFile:
    """The entries of a .index or .timeindex file, before its zero padding.

    `entries` counts them; `padding` is the zero bytes after them; `junk` the non-zero
    bytes after the last whole entry (a size that is not a multiple of the entry size).
    Iterating yields (slot, first field, second field) as stored (offsets relative).
    """

    def __init__(self, path, base_offset, entry):
        self.path, self.base_offset, self.entry = path, base_offset, entry
        fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(fd).st_size
            data_end = _zero_tail_start(fd, 0, self.size)
        finally:
            os.close(fd)
        whole = self.size // entry.size
        used = -(-data_end // entry.size)   # slots holding a non-zero byte
        self.entries = min(used, whole)
        self.junk = self.size - whole * entry.size if used > whole else 0
        self.padding = self.size - self.entries * entry.size - self.junk

    def __iter__(self):
        fd = os.open(self.path, os.O_RDONLY)
        try:
            slot, size = 0, self.entry.size
            while slot < self.entries:
                n = min(_ENTRY_CHUNK, self.entries - slot)
                chunk = os.pread(fd, n * size, slot * size)
                chunk = chunk[:len(chunk) - len(chunk) % size]
                if not chunk:
                    return  # the file shrank while we read it
                for a, b in self.entry.iter_unpack(chunk):
                    yield slot, a, b
                    slot += 1
        finally:
            os.close(fd)


class _IndexCheck:
    """Checks an index against its log's batches, fed in file order (a merge: no index
    or log is held in memory). `show(entry)` prints each entry as it is read (or None)."""

    size = 8

    def __init__(self, index, report, show=None):
        self.index, self.report, self.show = index, report, show
        self._entries = self._in_order()
        self._e = next(self._entries, None)
        self._prev = None   # the last batch fed

    def problem(self, e, what):
        self.report.problem(self.index.path, e[0] * self.index.entry.size,
                            f"entry {e[0]} ({self._describe(e)}): {what}")

    def _in_order(self):
        last = None
        for slot, a, b in self.index:
            e = self._entry(slot, a, b)
            if self.show:
                self.show(self._describe(e))
            if last is not None and not self._follows(last, e):
                self.problem(e, f"entries expected to increase; the one before is "
                                f"({self._describe(last)})")
                continue  # left out of the comparison with the log
            last = e
            yield e

    def _next(self):
        self._e = next(self._entries, None)
        return self._e

    def drain(self):
        """Read (and show) every entry, comparing none: the log cannot be read."""
        while self._e is not None:
            self._next()


class _OffsetIndexCheck(_IndexCheck):
    """Entries are (slot, offset, position), merged with the batches by position."""

    def _entry(self, slot, rel, position):
        return slot, self.index.base_offset + rel, position

    @staticmethod
    def _describe(e):
        return f"offset: {e[1]} position: {e[2]}"

    @staticmethod
    def _follows(a, b):
        return b[1] > a[1] and b[2] > a[2]

    def feed(self, h):
        e = self._e
        while e is not None and e[2] < h.position:
            self._not_a_start(e, h.position)
            e = self._next()
        if e is not None and e[2] == h.position:
            if e[1] != h.last_offset:
                self.problem(e, f"offset expected {h.last_offset} (the last offset of the batch at "
                                f"log position {h.position}), found {e[1]}")
            self._next()
        self._prev = h

    def _not_a_start(self, e, next_start):
        prev = self._prev
        where = f"inside the batch at {prev.position}" if prev else "before the first batch"
        self.problem(e, f"log position expected a batch start, found {e[2]} ({where}; the next "
                        f"batch starts at {next_start})")

    def finish(self, walk):
        e = self._e
        while e is not None:
            if self._prev is not None and e[2] < walk.data_end:
                self._not_a_start(e, walk.data_end)
            else:
                self.problem(e, f"log position expected below {walk.data_end} (the end of the "
                                f"readable batches in the log), found {e[2]}")
            e = self._next()


class _TimeIndexCheck(_IndexCheck):
    """Entries are (slot, timestamp, offset), merged with the batches by offset."""

    def _entry(self, slot, timestamp, rel):
        return slot, timestamp, self.index.base_offset + rel

    @staticmethod
    def _describe(e):
        return f"timestamp: {e[1]} offset: {e[2]}"

    @staticmethod
    def _follows(a, b):
        return b[1] > a[1] and b[2] >= a[2]

    def feed(self, h):
        if not h.sane_offsets:
            return
        e = self._e
        while e is not None and e[2] < h.base_offset:
            self.problem(e, f"offset expected in a batch, found {e[2]}, which no batch holds (the "
                            f"batch at log position {h.position} starts at offset {h.base_offset})")
            e = self._next()
        while e is not None and e[2] <= h.last_offset:
            if e[1] != h.max_timestamp:
                self.problem(e, f"timestamp expected {h.max_timestamp} (the maxTimestamp of the "
                                f"batch at log position {h.position}, which holds offset {e[2]}), "
                                f"found {e[1]}")
            e = self._next()

    def finish(self, walk):
        e = self._e
        while e is not None:
            self.problem(e, f"offset expected below {walk.next_offset} (the log end offset), "
                            f"found {e[2]}: the entry points past the end of the log")
            e = self._next()


_CHECKS = {filenames.INDEX_SUFFIX: (_INDEX_ENTRY, _OffsetIndexCheck),
           filenames.TIMEINDEX_SUFFIX: (_TIMEINDEX_ENTRY, _TimeIndexCheck)}


# ==== printing =========================================================================
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_EXTRA_PRINTABLE = str.maketrans("", "", "\n\r\t")


def show_text(s):
    """A str on one line: printable characters as they are, \\n \\r \\t and \\\\ escaped,
    other control characters as \\xNN / \\uNNNN."""
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s.translate(_ESCAPES))


def show_bytes(b):
    """How a key, value or header value is printed (the rule --print-records states):
    null for None, "" for empty, the text if the bytes are UTF-8 made of printable
    characters, tabs and newlines (\\n \\r \\t \\\\ escaped), else 0x and the hex."""
    if b is None:
        return "null"
    if not b:
        return '""'
    b = bytes(b)
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + b.hex()
    if s.isprintable() or s.translate(_EXTRA_PRINTABLE).isprintable():
        return s.translate(_ESCAPES)
    return "0x" + b.hex()


def _bool(flag):
    return "true" if flag else "false"


# Attribute bits as printed, looked up rather than computed: batch_line runs once per
# batch, and a dump of 1 KB batches spends most of its time here (~9 us a batch on the
# dev box with enum lookups and namedtuple attribute reads, ~5 us without).
_CODEC_NAMES = tuple(c.label for c in Compression) + tuple(f"unknown({i})" for i in range(5, 8))
_ATTRIBUTE_WORDS = tuple(
    f"compresscodec: {_CODEC_NAMES[a & COMPRESSION_MASK]} "
    f"timestampType: {'LogAppendTime' if a & TIMESTAMP_TYPE_MASK else 'CreateTime'}"
    for a in range(TIMESTAMP_TYPE_MASK << 1))
_FLAG_WORDS = tuple(f"isTransactional: {_bool(a & TRANSACTIONAL_MASK)} "
                    f"isControl: {_bool(a & CONTROL_MASK)}" for a in range(CONTROL_MASK << 1))


def batch_line(h, valid):
    """One batch in kafka-dump-log's words (it prints crc in decimal, so does this)."""
    (position, base, last, count, size, crc, magic, attrs, base_ts, max_ts, pid, pepoch, base_seq,
     epoch) = h
    if magic != MAGIC:
        return f"baseOffset: {base} position: {position} size: {size} magic: {magic} isValid: false"
    last_seq = NO_SEQUENCE if base_seq == NO_SEQUENCE else \
        (base_seq + last - base) % _SEQUENCE_WRAP
    line = (f"baseOffset: {base} lastOffset: {last} count: {count} position: {position} "
            f"size: {size} crc: {crc} isValid: {'true' if valid else 'false'} magic: {magic} "
            f"{_ATTRIBUTE_WORDS[attrs & 0x0F]} baseTimestamp: {base_ts} maxTimestamp: {max_ts} "
            f"{_FLAG_WORDS[attrs & 0x3F]} producerId: {pid} producerEpoch: {pepoch} "
            f"baseSequence: {base_seq} lastSequence: {last_seq} partitionLeaderEpoch: {epoch}")
    if attrs & DELETE_HORIZON_MASK:
        line += f" deleteHorizonMs: {base_ts}"
    return line


def _control_marker(record):
    """' endTxnMarker: COMMIT coordinatorEpoch: N' for a transaction marker record
    (client/records/control.py), or what its key holds if it is not one."""
    try:
        marker = decode_end_txn_marker(record.key, record.value)
    except CorruptRecord as e:
        return f" controlRecord: not a transaction marker ({e.message})"
    return f" endTxnMarker: {marker.control_type.name} coordinatorEpoch: {marker.coordinator_epoch}"


def _record_lines(h, data):
    """One '| offset: ...' line per record (a compressed batch's decompressed: every
    Kafka codec); CorruptRecord escapes."""
    ts_type = "LogAppendTime" if h.attributes & TIMESTAMP_TYPE_MASK else "CreateTime"
    control = h.attributes & CONTROL_MASK
    for r in RecordBatch(data).records():
        seq = NO_SEQUENCE if h.base_sequence == NO_SEQUENCE else \
            (h.base_sequence + r.offset - h.base_offset) % _SEQUENCE_WRAP
        headers = ", ".join(f"{show_text(k)}={show_bytes(v)}" for k, v in r.headers)
        yield (f"| offset: {r.offset} {ts_type}: {r.timestamp} "
               f"keySize: {-1 if r.key is None else len(r.key)} "
               f"valueSize: {-1 if r.value is None else len(r.value)} sequence: {seq}"
               f"{_control_marker(r) if control else ''} key: {show_bytes(r.key)} "
               f"value: {show_bytes(r.value)} headers: [{headers}]")


# ==== the dump =========================================================================
class Report:
    """What a dump found. `out(line)` writes a line; problems go through problem()."""

    def __init__(self, out):
        self.out = out
        self.files = 0
        self.problems = 0
        self.first_problem = None

    def problem(self, path, position, what):
        text = f"{path}: position {position}: {what}"
        self.problems += 1
        if self.first_problem is None:
            self.first_problem = text
        self.out("WARNING: " + text)


def dump(paths, out, print_records=False, quiet=False):
    """Print every path (a .log, .index, .timeindex or .txnindex file, or a partition directory)
    with `out(line)`; returns the Report. Raises InvalidSegment, before printing
    anything, for a path that is none of those. quiet: only problems and summaries."""
    targets = [_classify(p) for p in paths]
    report = Report(out)
    for kind, path, base in targets:
        if kind == "dir":
            _dump_partition(path, base, report, print_records, quiet)
        elif kind == filenames.LOG_SUFFIX:
            _dump_log(path, base, report, print_records, quiet)
        elif kind == filenames.SNAPSHOT_SUFFIX:
            _dump_snapshot(path, report, quiet)
        elif kind == filenames.LEADER_EPOCH_CHECKPOINT:
            _dump_epochs(path, report, quiet)
        elif kind == filenames.TXNINDEX_SUFFIX:
            _dump_txn_index(path, base, report, quiet)
        else:
            _dump_index(path, base, kind, report, quiet)
    return report


def _classify(path):
    """(kind, path, base offset or the directory's segment bases) for a path."""
    if os.path.isdir(path):
        bases = sorted({p[0] for p in map(filenames.parse_segment_file, os.listdir(path)) if p})
        if not bases:
            raise InvalidSegment(f"{path} holds no segment files (*.log, *.index, *.timeindex); "
                                 f"give a partition directory such as {_example_partition(path)}, "
                                 f"or a segment file")
        return "dir", path, bases
    name = os.path.basename(path)
    parsed = filenames.parse_segment_file(name)
    if parsed:
        return parsed[1], path, parsed[0]
    if filenames.parse_snapshot_file(name) is not None:
        return filenames.SNAPSHOT_SUFFIX, path, filenames.parse_snapshot_file(name)
    if name == filenames.LEADER_EPOCH_CHECKPOINT:
        return name, path, None
    if name.endswith(filenames.LOG_SUFFIX):
        return filenames.LOG_SUFFIX, path, 0   # Kafka's tool takes any *.log; offsets from 0
    if name.endswith((filenames.INDEX_SUFFIX, filenames.TIMEINDEX_SUFFIX)):
        raise InvalidSegment(f"cannot tell the base offset of {path}: index files are named by "
                             f"it, as 00000000000000000000.index is")
    raise InvalidSegment(f"{path} is not a segment file; give a .log, .index, .timeindex, .txnindex, "
                         f".snapshot or leader-epoch-checkpoint file, or a partition directory "
                         f"such as data/orders-0")


def _example_partition(path):
    try:
        for name in sorted(os.listdir(path)):
            if filenames.parse_partition_dir(name) and os.path.isdir(os.path.join(path, name)):
                return os.path.join(path, name)
    except OSError:
        pass
    return os.path.join(path, "orders-0")


def _dump_log(path, base, report, print_records, quiet, checks=(), min_offset=None):
    """Print one .log; feed its batches to `checks`. Returns the LogWalk."""
    out = report.out
    report.files += 1
    out(f"Dumping {path}")
    out(f"Log starting offset: {base}")
    walk = LogWalk(path, base, min_offset)
    for item in walk:
        if isinstance(item, Batch):
            h = item.header
            if not quiet:
                out(batch_line(h, item.valid))
            if item.problem:
                report.problem(path, h.position, item.problem)
            for check in checks:
                check.feed(h)
            if print_records and h.magic == MAGIC:
                try:
                    for line in _record_lines(h, item.data):
                        out(line)
                except CorruptRecord as e:
                    report.problem(path, h.position, f"records cannot be decoded: {e.message}")
        elif isinstance(item, Padding):
            out(f"{item.nbytes} bytes of zero padding after the last batch (from position "
                f"{item.position}: an untrimmed active segment; not an error)")
        else:
            report.problem(path, item.position, item.problem)
    for check in checks:
        check.finish(walk)
    if walk.batches:
        offsets = f"offsets {walk.first_offset}..{walk.next_offset - 1}" \
            if walk.first_offset is not None else "no readable offsets"
        out(f"{_plural(walk.batches, 'batch', 'batches')}, "
            f"{_plural(walk.records, 'record', 'records')}, {offsets}, "
            f"{walk.data_end} bytes of batches")
    else:
        out("no batches")
    return walk


def _index_summary(index, what):
    parts = [f"{_plural(index.entries, 'entry', 'entries')} {what}"]
    if index.padding:
        parts.append(f"{index.padding} bytes of zero padding after them (not an error)")
    return ", ".join(parts)


def _open_index(path, base, kind, report):
    entry, check_class = _CHECKS[kind]
    index = IndexFile(path, base, entry)
    if index.junk:
        report.problem(path, index.size - index.junk,
                       f"size expected a multiple of {entry.size} bytes, found {index.size}: the "
                       f"last {index.junk} bytes are not a whole entry")
    return index, check_class


def _dump_index(path, base, kind, report, quiet):
    """Print an index's entries, each checked against the .log beside it."""
    out = report.out
    report.files += 1
    out(f"Dumping {path}")
    index, check_class = _open_index(path, base, kind, report)
    check = check_class(index, report, None if quiet else out)
    log_path = filenames.log_file(os.path.dirname(path) or ".", base)
    if not os.path.exists(log_path):
        check.drain()
        report.problem(path, 0, f"cannot check the entries: expected the log {log_path} beside "
                                f"the index, found no such file")
        out(_index_summary(index, "(not checked)"))
        return
    walk = LogWalk(log_path, base)
    for item in walk:
        if isinstance(item, Batch):
            check.feed(item.header)
    check.finish(walk)
    out(_index_summary(index, f"checked against {log_path}"))


def _dump_partition(directory, bases, report, print_records, quiet):
    """Every segment in offset order: the .log printed, its indexes checked."""
    out = report.out
    min_offset = None
    epochs_path = os.path.join(directory, filenames.LEADER_EPOCH_CHECKPOINT)
    epoch_check = _EpochCheck(epochs_path, report) if os.path.exists(epochs_path) else None
    for base in bases:
        log_path = filenames.log_file(directory, base)
        indexes = [(filenames.index_file(directory, base), filenames.INDEX_SUFFIX),
                   (filenames.timeindex_file(directory, base), filenames.TIMEINDEX_SUFFIX)]
        txn_path = filenames.txnindex_file(directory, base)
        if not os.path.exists(log_path):
            for path, _ in indexes + [(txn_path, None)]:
                if os.path.exists(path):
                    out(f"{path} has no .log beside it (a leftover; opening the log deletes it)")
            continue
        opened = []
        for path, kind in indexes:
            if os.path.exists(path):
                index, check_class = _open_index(path, base, kind, report)
                opened.append((path, index, check_class(index, report)))
        walk = _dump_log(log_path, base, report, print_records, quiet,
                         [c for _, _, c in opened] + ([epoch_check] if epoch_check else []), min_offset)
        for path, index, _ in opened:
            report.files += 1
            out(f"{path}: {_index_summary(index, 'checked against the log')}")
        if os.path.exists(txn_path):
            _dump_txn_index(txn_path, base, report, quiet, walk.next_offset)
        min_offset = walk.next_offset
    for offset in producer_snapshot.offsets(directory):
        _dump_snapshot(filenames.snapshot_file(directory, offset), report, quiet)
    if epoch_check is not None:
        entries = _dump_epochs(epochs_path, report, quiet)
        if entries:
            epoch_check.check_range(entries, bases[0], min_offset)


class _EpochCheck:
    """Each batch's partitionLeaderEpoch against the leader-epoch-checkpoint's epoch for
    its base offset (fed in offset order); then check_range: the entries lie in the log."""

    def __init__(self, path, report):
        self.path, self.report = path, report
        try:
            self.cache = leader_epoch.LeaderEpochCache(leader_epoch.LeaderEpochFile(
                os.path.dirname(path)).read() or ())
        except leader_epoch.CorruptEpochFile:
            self.cache = None   # _dump_epochs reports it

    def feed(self, h):
        if self.cache is None or h.leader_epoch < 0 or not h.sane_offsets:
            return
        expected = self.cache.epoch_for_offset(h.base_offset)
        if expected is not None and expected != h.leader_epoch:
            self.report.problem(self.path, 0, f"the batch at offset {h.base_offset} has "
                                              f"partitionLeaderEpoch {h.leader_epoch}, the checkpoint "
                                              f"expects {expected} there")

    def finish(self, walk):
        pass

    def check_range(self, entries, first_base, log_end):
        for i, (epoch, start) in enumerate(entries):
            if not first_base <= start <= log_end:
                self.report.problem(self.path, 0, f"entry {i} (epoch {epoch}): start offset expected "
                                                  f"within the log, {first_base}..{log_end}, found {start}")
