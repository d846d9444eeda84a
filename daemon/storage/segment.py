"""One segment of a partition log: the .log file of batches and its two indexes.

A segment holds the batches for offsets [base_offset, next_offset). Its .log file is
Kafka's: v2 record batches back to back, byte for byte as the producer built them
except baseOffset (assigned here), partitionLeaderEpoch and, for LogAppendTime topics,
the timestamp fields (then the CRC is recomputed). See storage/FORMAT.md.

While active the segment is mapped at segment.bytes capacity and appended to by copy
into the map (a leader: append_native), or by pwrite of the follower's own buffer
(append_written: no page zeroing of fresh map pages); once rolled it is trimmed and
read-only (seal: fsynced there on a clean close, in the background after a roll,
background_flush.py). The three files get disk blocks
ahead of the appends, ALLOCATE_AHEAD bytes of log at a time and the index entries that
many bytes can need (_allocate_ahead): a full filesystem is a StorageError before the
copy, never a SIGBUS in it (mapped_file.py). Owned by the partition's worker process;
not thread-safe.
"""
import logging
import os
import struct

from odradek.client import native
from odradek.client.errors import CorruptRecord, InvalidSegment, StorageError
from odradek.client.records import (BATCH_HEADER_SIZE, BASE_OFFSET_OFFSET, LOG_OVERHEAD, MIN_BATCH_LENGTH,
                                    next_whole_batch, read_header, write_log_append_time,
                                    write_partition_leader_epoch)
from odradek.client.records.layout import HEADER_STRUCT
from odradek.daemon.storage import filenames, native as storage_native
from odradek.daemon.storage.index_policy import SparseIndexing, max_new_entries
from odradek.daemon.storage.mapped_file import MappedFile
from odradek.daemon.storage.offset_index import ENTRY_SIZE as OFFSET_ENTRY_SIZE, OffsetIndex
from odradek.daemon.storage.time_index import ENTRY_SIZE as TIME_ENTRY_SIZE, TimeIndex
from odradek.daemon.storage.txn_index import TransactionIndex

__all__ = ["LogSegment", "BatchPosition"]

log = logging.getLogger(__name__)

_I64 = struct.Struct(">q")
_pack_i64 = _I64.pack_into
_SCAN_CHUNK = 4096  # BatchInfo entries per native scan call during recovery
PREFAULT_AHEAD = 2 << 20  # bytes of the active segment kept faulted in ahead of appends
# Bytes of log given disk blocks (fallocate) at a time, ahead of the appends, with the
# index entries that much log can need: one call per ~2 MiB appended, allocation kept
# at least PREFAULT_AHEAD ahead so the prefault thread (which only populates allocated
# bytes) never waits on it. At most this much is allocated and unused per active
# segment: a 1 GiB segment is never allocated whole (a host has hundreds of partitions).
# Cost, 16 KiB appends (perf/log_append.py and the calls timed): ext4 ~0.1 us an append
# (unwritten extents); tmpfs ~2.5 us (fallocate zeroes the pages there, in the appender,
# where the prefault thread's populate used to do it in the background).
ALLOCATE_AHEAD = 4 << 20
# A leader's append of at least this many bytes is written with pwrite, not copied
# into the map (_append_pwritten): one system call more, no zeroing of the fresh pages
# it fills whole. Measured on the dev box (ext4, 256 KiB writes into a fallocated file):
# ~6 GB/s by pwrite, ~4.7 GB/s with the validating read and rewrite through the map,
# against ~3 GB/s copied into the map (each fresh page zeroed first). Such an append
# asks the prefault thread for nothing (append_native): pwrite makes the page cache's
# folios itself, large ones where the filesystem allows (ext4 on this kernel), while
# pages populated ahead through the map are single 4 KiB ones, which pwrite then walks
# page by page (buffer heads, dirtying) after the prefault thread's own fault and
# page_mkwrite each. perf/log_append.py --batch-size 65536 --mib 256 --runs 5 (load
# ~1.5): 1490 MB/s and 0.26 s CPU with the prefault, 2018 MB/s and 0.12 s without.
PWRITE_MIN = 32 << 10
# Batch headers an append can be held to (append_native's `expect`), in a buffer of the
# C state's made once per segment; a leader's run has at most 32 (producers.RUN_ENTRIES).
EXPECT_HEADERS = 64
_pack_header = HEADER_STRUCT.pack_into
_OK = native.Status.OK
_new_position = tuple.__new__  # BatchPosition(t) without a Python-level call

# Fields of native.BatchInfo, read by index on the append path: its named attributes go
# through a __getattr__ (~1.5 us each on the dev box, a dozen per append).
INFO_POSITION, INFO_BASE_OFFSET, INFO_LAST_OFFSET, INFO_MAX_TIMESTAMP = 0, 1, 2, 4
INFO_SIZE, INFO_RECORDS, INFO_ATTRIBUTES = 6, 7, 11
assert tuple(native.BatchInfo._fields[i] for i in (0, 1, 2, 4, 6, 7, 11)) == (
    "position", "base_offset", "last_offset", "max_timestamp", "size", "records", "attributes")


class BatchPosition(tuple):
    """(position, base_offset, last_offset, size, max_timestamp) of a batch in a segment."""
    __slots__ = ()
    position = property(lambda self: self[0])
    base_offset = property(lambda self: self[1])
    last_offset = property(lambda self: self[2])
    size = property(lambda self: self[3])
    max_timestamp = property(lambda self: self[4])
    damaged = property(lambda self: len(self) > 5)   # see LogSegment.find_for_reader


class LogSegment(SparseIndexing):
    """The segment's files and its state; its sparse indexes follow index_policy.py's rule
    (SparseIndexing: _track in Python, odk_append in C)."""

    def __init__(self, directory, base_offset, config, writable, create=False, index_entries=None,
                 capacity=None):
        """Open (or create) the segment's files. `index_entries` None: trust the index
        files' lengths (a trimmed segment); otherwise they are rebuilt by `recover`.
        `capacity`: bytes to map for appends (default segment.bytes)."""
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        # read per append; LogConfig attributes cost ~1.6 us each (a __getattr__ + dict)
        self._segment_bytes = config.segment_bytes
        self._index_interval_bytes = config.index_interval_bytes
        capacity = config.segment_bytes if capacity is None else capacity
        self.log = MappedFile(filenames.log_file(directory, base_offset),
                              capacity if writable else 0, writable=writable, create=create)
        index_bytes = config.segment_index_bytes
        try:
            self.index = OffsetIndex(filenames.index_file(directory, base_offset), base_offset,
                                     index_bytes, writable, index_entries)
            self.time_index = TimeIndex(filenames.timeindex_file(directory, base_offset), base_offset,
                                        index_bytes + index_bytes // 2, writable, index_entries)
        except FileNotFoundError:
            self.log.close()
            raise
        self._check_index_room()
        self.txn_index = TransactionIndex(filenames.txnindex_file(directory, base_offset))
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp = None
        self._bytes_since_index = 0
        self._native_state = self._native_target = None  # see append_native
        self._prefaulted = self._prefault_mark = 0         # see _prefault_ahead
        self._allocated_mark = 0                           # see _allocate_ahead
        self._native_args = None        # (assign, epoch, append time, max size, timestamp limits) set in st
        self._native_fields = self._native_call = self._native_index_files = None
        self._native_expect = None   # the C state's expectation buffer (_expect)
        self.appended = None     # after an OK append_native: (first offset, last offset, max timestamp, batches, records)

    # -- state --------------------------------------------------------------------
    @property
    def size(self):
        return self.log.size

    @property
    def is_empty(self):
        return self.log.size == 0

    @property
    def writable(self):
        return self.log.writable

    def __repr__(self):
        return (f"LogSegment(base={self.base_offset}, next={self.next_offset}, size={self.size}, "
                f"{'active' if self.writable else 'closed'})")

    # -- appending ----------------------------------------------------------------
    def fits(self, nbytes):
        """Whether `nbytes` more can go in without rolling (an empty segment takes any)."""
        size = self.log.size
        if not size:
            return True
        end = size + nbytes
        return (end <= self._segment_bytes and end <= self.log.capacity and not self._indexes_full
                and self.next_offset - self.base_offset + (1 << 31) < 1 << 32)

    def _check_index_room(self):
        # fits() runs before every append, and asking both indexes is_full there cost
        # ~1.1 us of a ~25 us 16 KiB append (perf/log_append.py). Their fullness only
        # changes when entries are added or removed (_track, recover, truncate_to,
        # seal), which call this.
        self._indexes_full = self.index.is_full or self.time_index.is_full

    def append(self, data, infos, assign_from=None, leader_epoch=None, append_time_ms=None):
        """Copy validated batches into the log and index them, in Python: the reference
        append_native is tested against (tests/daemon/storage/test_native_append.py).

        `infos`: native.BatchInfo of each batch in `data` (positions relative to it).
        `assign_from`: first offset to assign, batch by batch (None: keep baseOffsets, as a
        follower does). `leader_epoch`: written into each batch if given.
        `append_time_ms`: for LogAppendTime topics, the broker's timestamp for the batches.
        Returns the list of BatchPosition written (positions in this segment).
        """
        log = self.log
        if not log.size and len(data) > log.capacity:
            raise InvalidSegment(f"{log.path}: batch of {len(data)} bytes exceeds segment capacity")
        if log.size + len(data) > self._allocated_mark:
            self._allocate_ahead(log.size + len(data))
        start = log.append(data)
        buf = log.buffer
        written = []
        next_offset = assign_from
        # Per-batch Python is most of an append's cost (perf/log_append.py): BatchInfo
        # fields by index (~1.5 us each by name), baseOffset packed inline
        # (write_base_offset's body), _track given plain values.
        for b in infos:
            pos = start + b[INFO_POSITION]
            if next_offset is not None:
                base = next_offset
                last = base + (b[INFO_LAST_OFFSET] - b[INFO_BASE_OFFSET])
                _pack_i64(buf, pos + BASE_OFFSET_OFFSET, base)
                next_offset = last + 1
            else:
                base, last = b[INFO_BASE_OFFSET], b[INFO_LAST_OFFSET]
            if leader_epoch is not None:
                write_partition_leader_epoch(buf, pos, leader_epoch)
            max_ts = b[INFO_MAX_TIMESTAMP]
            if append_time_ms is not None:
                max_ts = append_time_ms
                write_log_append_time(buf, pos, max_ts)
            self._track(pos, last, b[INFO_SIZE], max_ts)
            written.append(_new_position(BatchPosition, (pos, base, last, b[INFO_SIZE], max_ts)))
        return written

    # -- the native append (the hot path) -----------------------------------------
    def append_native(self, data, assign, leader_epoch, append_time, max_batch_size, expect=None, timestamps=None):
        """Append a buffer of batches with one C call (storage_native.append_into; odradek.h,
        odk_append): copy after the data, validate the copy (never the source, which a
        producer may still change), rewrite baseOffset, epoch and LogAppendTime, add
        index entries. Returns the status: Status.OK, or why nothing changed (the copied
        bytes are zeroed again; the details are in the append state, self.native_state).
        `expect`: the BatchHeaders the caller checked in `data` before the call (at most
        EXPECT_HEADERS, else ValueError): the copy must hold exactly those batches with
        exactly those headers, else Status.CHANGED (a producer rewrote its ring entry
        between the caller's checks and the copy). `timestamps`: (now, before, after) in
        ms for a CreateTime leader: every record timestamp of an uncompressed batch must
        lie within [now - before, now + after], else Status.BAD_TIMESTAMP (odk_append's
        check_timestamps); None: not checked.

        Measured (perf/log_append.py, 16 KiB batches): ~24 us an append when Python did
        the scan, copy, rewrite and indexes around two native calls, ~6 us for this call.
        The C state is the truth while appends go through here; any change made in
        Python (recover, load, truncate_to, seal) drops it (_native_reset) and the next
        append rebuilds it from the fields below.
        """
        n = len(data)
        self._native_prepare(n, assign, leader_epoch, append_time, max_batch_size, timestamps)
        count = self._expect(expect) if expect else 0
        pwritten = n >= PWRITE_MIN and self.log.size + n <= self.log.capacity   # else NO_SPACE
        if pwritten:
            status = self._append_pwritten((data,), n, count)
        else:
            if count:   # set right before the C call, which consumes it
                self._native_state.expect_count = count
            status = self._native_call(data)
        if status == _OK:
            position = self._native_mirror()
            if position >= self._prefault_mark and not pwritten:   # PWRITE_MIN: pwrite needs none
                self._prefault_ahead(position)
        return status

    def append_parts(self, parts, n, leader_epoch, append_time, max_batch_size, expect=None, timestamps=None):
        """append_native(b"".join(parts), True, ...) without the join, for a leader's run
        of batches that arrived in separate ring entries: the n bytes (PWRITE_MIN or
        more, fitting the capacity: the caller checks, else NO_SPACE and nothing
        written) go after the data with one pwritev, and are then validated, rewritten
        and indexed where they lie, as _append_pwritten does. The same statuses, bytes
        and index entries as the joined append; `expect` and `timestamps` as append_native's."""
        if n < PWRITE_MIN or self.log.size + n > self.log.capacity:
            return native.Status.NO_SPACE
        self._native_prepare(n, True, leader_epoch, append_time, max_batch_size, timestamps)
        status = self._append_pwritten(parts, n, self._expect(expect) if expect else 0)
        if status == _OK:
            self._native_mirror()
        return status

    def _native_prepare(self, n, assign, leader_epoch, append_time, max_batch_size, timestamps=None):
        """Before an append of n bytes: the C state, the disk blocks (StorageError when the
        filesystem is full: nothing written), the per-call settings."""
        st = self._native_state
        if st is None:
            st = self._native_begin()
        if self.log.size + n > self._allocated_mark:
            self._allocate_ahead(self.log.size + n)   # raises StorageError when full
        epoch = -1 if leader_epoch is None else leader_epoch
        limits = None if timestamps is None else timestamps[1:]
        if self._native_args != (assign, epoch, append_time, max_batch_size, limits):
            # per-call settings change rarely: each cffi field store costs ~0.15 us
            st.assign, st.leader_epoch, st.append_time, st.max_batch_size = assign, epoch, append_time, max_batch_size
            st.check_timestamps = limits is not None
            if limits is not None:
                st.timestamp_before_ms, st.timestamp_after_ms = limits
            self._native_args = (assign, epoch, append_time, max_batch_size, limits)
        if limits is not None:
            st.now_ms = timestamps[0]

    def prepare_appends(self):
        """What the first append_native would do first, done now: the C append state, the
        blocks ahead, the first prefault. A leader calls it at open, so that its first
        record does not wait for them (milliseconds, the prefault thread's start among
        them). A full disk is left for an append to meet (StorageError there)."""
        if self._native_state is None:
            self._native_begin()
        if self.log.size >= self.log.capacity:
            return
        try:
            if self.log.size + 1 > self._allocated_mark:
                self._allocate_ahead(self.log.size + 1)
        except StorageError:
            return
        self._prefault_ahead(self.log.size)

    def _expect(self, expect):
        """Pack `expect` (BatchHeaders) into the C state's expectation buffer (the fields
        packed back give exactly the bytes they were read from: layout.py); returns how
        many, the st.expect_count to set right before the C call (which consumes it)."""
        count = len(expect)
        if count > EXPECT_HEADERS:
            raise ValueError(f"an append can be held to at most {EXPECT_HEADERS} batch headers, not {count}")
        buf, at = self._native_expect, 0
        for header in expect:
            _pack_header(buf, at, *header)
            at += BATCH_HEADER_SIZE
        return count

    def _append_pwritten(self, parts, n, expect_count=0):
        """append_native's copy for a large buffer (or append_parts' run of them): write
        the n bytes of `parts` after the data with one system call (the whole pages they
        cover are not zeroed first, as the pages a store into the map faults in are),
        then the C call validates, rewrites and indexes that copy where it lies
        (storage_native.append_in_place; a failure zeroes it again). The copy is read
        only there, so a producer changing the parts meanwhile changes nothing checked
        (and with expect_count, _expect's, nothing the caller checked either)."""
        log = self.log
        position = log.write_parts(parts, n)   # raises StorageError (nothing appended) if it fails
        if expect_count:
            self._native_state.expect_count = expect_count
        status = storage_native.append_in_place(n, self._native_target, self._native_state)
        if status != _OK:
            log.size = position
        return status

    def append_written(self, data, max_batch_size):
        """A follower's append: append_native(data, False, None, -1, max_batch_size) (the
        same checks, statuses, .log bytes, index entries and state) without the copy
        into the map. `data` is the follower's own buffer, which nobody else changes, so
        it is validated where it lies (storage_native.append_check), written after the
        data with pwrite (MappedFile.write: the same page cache the map reads) and then
        indexed (storage_native.append_commit). Stores into fresh pages of the shared
        mapping made the kernel zero every page first: ~35-50% of a follower's CPU with 1 KiB records
        (issue 9's profile); a pwrite of whole pages skips that. Returns the status; a
        failed write raises StorageError (MappedFile.write)."""
        st = self._native_state
        if st is None:
            st = self._native_begin()
        end = self.log.size + len(data)
        if end > self._allocated_mark:
            self._allocate_ahead(end)   # the blocks, as for the map: a full disk fails here
        if self._native_args != (False, -1, -1, max_batch_size, None):
            st.assign, st.leader_epoch, st.append_time, st.max_batch_size = False, -1, -1, max_batch_size
            st.check_timestamps = False
            self._native_args = (False, -1, -1, max_batch_size, None)
        target = self._native_target
        status = storage_native.append_check(data, target, st)
        if status != _OK:
            return status
        position = self.log.write(data)
        if storage_native.append_commit(data, target, st) != _OK:   # only if data changed since the check
            self.log.truncate(position)
            raise StorageError(f"{self.log.path}: the batches written at {position} changed before "
                               f"they were indexed; the write was undone")
        self._native_mirror()
        return _OK

    def _native_begin(self):
        """The C append state and bound buffers, from the segment's Python fields."""
        st = self._native_state = storage_native.append_state(
            segment_base=self.base_offset, index_interval=self._index_interval_bytes,
            next_offset=self.next_offset, position=self.log.size, index_entries=self.index.entries,
            time_entries=self.time_index.entries, bytes_since_index=self._bytes_since_index,
            max_timestamp=self.max_timestamp, offset_of_max=self.offset_of_max_timestamp)
        self._native_target = storage_native.append_target(self.log.buffer, self.index.buffer,
                                                           self.time_index.buffer)
        # no readahead on faults in this map: a read fault (the validation's, right after
        # a pwrite) would read ahead into the fresh pages past the data, zero-filling
        # pages the next appends overwrite whole: most of a 1 KiB producer's leader CPU
        # (perf, 600k records into one partition), ~20% more throughput without it
        self.log.advise_no_readahead()
        # nor in the indexes': the first entry's fault read ahead a window of the fresh,
        # preallocated index file, zero-filling it: ~5 ms of the first append after each
        # roll (16 MiB segments, 64 KiB batches: 6 -> 0.3-1.5 ms; produce p99 at 50k
        # records/s 21 -> 4 ms, README "a segment roll")
        self.index.advise_no_readahead()
        self.time_index.advise_no_readahead()
        self._native_entries = (self.index.entries, self.time_index.entries)
        self._prefaulted = self._prefault_mark = st.position
        self._native_args = None
        self._native_fields = storage_native.append_fields_reader(st)
        self._native_call = storage_native.append_call(self._native_target, st)
        self._native_expect = storage_native.expect_buffer(st, EXPECT_HEADERS)
        # the two index files and their entry limits, for the mirror below
        self._native_index_files = (self.index._file, self.time_index._file,
                                    self.index.max_entries, self.time_index.max_entries)
        return st

    def _native_mirror(self):
        """After an OK append: what the C call moved, into the fields the rest of the
        segment reads (one unpack of the state: see storage_native.append_fields_reader).
        Returns the new data size."""
        (position, self.next_offset, entries, time_entries, self._bytes_since_index, self.max_timestamp,
         self.offset_of_max_timestamp, _, _, batches, _, _, _, first, last, records, max_ts, first_max_ts,
         _) = self._native_fields()
        self.log.size = position
        if entries != self._native_entries[0] or time_entries != self._native_entries[1]:
            # SparseIndex.set_entries for both, and their is_full, inlined: with
            # 16 KiB batches every append adds an index entry, and the four calls
            # cost ~1 us of a ~15 us append
            self._native_entries = (entries, time_entries)
            ixf, txf, ix_max, tx_max = self._native_index_files
            ixf.size = entries * OFFSET_ENTRY_SIZE
            txf.size = time_entries * TIME_ENTRY_SIZE
            self.index._last = self.time_index._last = None
            self._indexes_full = entries >= ix_max or time_entries >= tx_max
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = first_max_ts
        self.appended = (first, last, max_ts, batches, records)
        return position

    @property
    def native_state(self):
        """The C append state (None until the first append_native): the details of a
        refused append."""
        return self._native_state

    def _allocate_ahead(self, end):
        """Give log bytes [0, end) disk blocks, ALLOCATE_AHEAD more if there is room, and
        both indexes blocks for every entry that many log bytes can add (index_policy's
        max_new_entries), plus the time entry seal() adds. Raises StorageError
        (nothing written) when the filesystem has no room for `end`."""
        log = self.log
        if end <= log.allocated < min(end + PREFAULT_AHEAD, log.capacity):
            # this append has its blocks, the run-ahead ran short: extend it (allocate()
            # does nothing for a `need` already allocated, which left the mark at `end`
            # and brought every append here until the next append past the blocks)
            try:
                log.allocate(log.allocated + 1, end + ALLOCATE_AHEAD)
            except StorageError:
                pass   # no room for more: this append fits; the next one asks again
        else:
            log.allocate(end, end + ALLOCATE_AHEAD)
        span = log.allocated - log.size
        new_entries = max_new_entries(span, self._index_interval_bytes) + 1
        for index, extra in ((self.index, 0), (self.time_index, 1)):
            need = (index.entries + new_entries + extra) * index.entry_size
            index.allocate(need)
        # reached with PREFAULT_AHEAD still allocated: the prefault thread never waits
        self._allocated_mark = max(end, log.allocated - PREFAULT_AHEAD)

    def _prefault_ahead(self, position):
        """Keep PREFAULT_AHEAD bytes past `position` faulted in by the process's prefault
        thread (storage_native.prefault), so appends copy into pages that exist: first-touch
        faults of the sparse file were about half the cost of a 16 KiB append. Only
        allocated bytes: populating a hole would take a block nobody checked for."""
        end = min(position + PREFAULT_AHEAD, self.log.allocated)
        start = max(self._prefaulted, position)
        if start < end and storage_native.prefault(self._native_target, start, end) == 0:
            self._prefaulted = end
        self._prefault_mark = position + PREFAULT_AHEAD // 2

    def _native_reset(self):
        """Forget the C append state (Python changed the segment) and let go of the maps."""
        if self._native_target is not None:
            storage_native.release_target(self._native_target)
        self._native_state = self._native_target = self._native_expect = None
        self._allocated_mark = 0  # truncations free blocks: the next append checks again

    def _track(self, position, last_offset, size, max_timestamp):
        """Account for a batch now in the log: end offset, timestamps, sparse indexes.
        A full index takes no more entries (the log rolls before the next append; within
        one multi-batch append the last batches just go unindexed: sparse)."""
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = max_timestamp
        self._index_batch(position, last_offset, size, max_timestamp, not self._indexes_full)
        self.next_offset = last_offset + 1

    def _add_index_entry(self, last_offset, position):
        """SparseIndexing's entry, into both index files."""
        try:
            self.index.append(last_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        finally:  # _check_index_room(), inlined: this runs for every indexed batch
            self._indexes_full = self.index.is_full or self.time_index.is_full

    # -- reading ------------------------------------------------------------------
    def batch_at(self, position):
        """BatchPosition of the batch starting at `position` (header fields only)."""
        fits = position + BATCH_HEADER_SIZE <= self.log.size
        header = read_header(self.log.buffer, position) if fits else None
        length = header.batch_length if fits else -1
        if length < MIN_BATCH_LENGTH or position + length + LOG_OVERHEAD > self.log.size:
            # only a wrong index entry leads here (appends and recovery validate batches):
            # refuse rather than walk garbage, or loop on a length of 0
            raise InvalidSegment(f"{self.log.path}: no batch at position {position} (batchLength {length}, "
                                 f"data size {self.log.size}): the segment is damaged there, or its index is; "
                                 f"'odradek dump-log --verify' on the partition dir names what is wrong")
        base = header.base_offset
        return BatchPosition((position, base, base + header.last_offset_delta, length + LOG_OVERHEAD,
                              header.max_timestamp))

    def batches_from(self, position=0, end=None):
        """Yield each BatchPosition from `position` up to `end` (default: the data size)."""
        end = self.size if end is None else end
        while position < end:
            b = self.batch_at(position)
            yield b
            position += b.size

    def find(self, offset):
        """BatchPosition of the first batch whose last offset >= `offset`, or None."""
        if offset >= self.next_offset:
            return None
        _, position = self.index.lookup(offset)
        for b in self.batches_from(position):
            if b.last_offset >= offset:
                return b
        return None

    def find_for_reader(self, offset):
        """find(offset) for a consumer, who names damage itself: a batch whose frame
        is broken on disk (its batchLength no longer leads to a batch: a bit flipped
        after the append, which validated it) does not end the walk with InvalidSegment.
        The walk goes on from the first whole, CRC-valid batch after it; if that batch
        starts above `offset`, the damaged bytes may hold it, and the answer is a
        BatchPosition with `damaged` set, from them to the end of the data (offsets
        unknown: `offset` for both), so that the reader reads them, and its decoder
        raises CORRUPT_MESSAGE
        with the partition, the offsets and where to read on (client/_unreadable.py)."""
        if offset >= self.next_offset:
            return None
        _, position = self.index.lookup(offset)
        end = self.size
        while position < end:
            try:
                b = self.batch_at(position)
            except InvalidSegment:
                found = next_whole_batch(self.log.buffer, position, end, self.next_offset)
                if found is None or found[0] > offset:
                    return BatchPosition((position, offset, offset, end - position, -1, True))
                position = found[1]
                continue
            if b.last_offset >= offset:
                return b
            position += b.size
        return None

    def find_by_timestamp(self, timestamp):
        """BatchPosition of the first batch with maxTimestamp >= `timestamp`, or None."""
        start = self.time_index.scan_start(timestamp)
        first = self.find(start)
        if first is None:
            return None
        for b in self.batches_from(first.position):
            if b.max_timestamp >= timestamp:
                return b
        return None

    def view(self, start, end):
        """Zero-copy memoryview of log bytes [start, end)."""
        return self.log.view(start, end)

    # -- recovery -----------------------------------------------------------------
    def recover(self, max_batch_size=0):
        """Rebuild the indexes from the log and cut it after the last valid batch.

        Scans every batch (lengths, magic, CRC, increasing offsets) from the start of the
        file. Returns (the native.ScanResult of the scan's stop: status OK, or where
        and why it stopped; how many bytes after the valid prefix were written, up to the
        last non-zero one: 0 for a tail of zeros, the normal end of a preallocated file,
        else the torn or corrupt bytes cut). Bytes after the prefix are removed and zeroed.
        """
        self._native_reset()
        try:
            self.index.reset()
            self.time_index.reset()
        finally:
            self._check_index_room()
        self.next_offset = self.base_offset
        self.max_timestamp, self.offset_of_max_timestamp = -1, self.base_offset
        self.first_batch_timestamp = None
        self._bytes_since_index = 0
        whole = self.log.buffer[:max(self.log.size, 0)]
        pos = 0
        while True:
            result = native.scan_batches(whole[pos:], max_batch_size, True, self.next_offset, _SCAN_CHUNK)
            for b in result.infos:
                self._track(pos + b[INFO_POSITION], b[INFO_LAST_OFFSET], b[INFO_SIZE], b[INFO_MAX_TIMESTAMP])
            pos += result.valid_bytes
            if result.status != native.Status.MORE:
                break
        result.valid_bytes = pos
        cut = self._written_after(pos)
        if pos < self.log.size:
            self.log.truncate(pos)
        self._recover_txn_index()
        return result, cut

    def _recover_txn_index(self):
        """Cut a partial .txnindex entry and those past the log's end (txn_index.py)."""
        cut = self.txn_index.recover(self.next_offset)
        if cut:
            log.warning("%s: cut %d bytes of its aborted-transaction index (a partial entry, or markers "
                        "past the log's end)", self.txn_index.path, cut)

    def _written_after(self, pos):
        """Bytes from `pos` to the end of the written data (its last non-zero byte): a
        binary search, since 'all zero from q on' only turns true as q grows."""
        size = self.log.size
        if self.log.is_zero(pos, size):
            return 0
        low, high = pos, size   # not all zero from low; all zero from high
        while high - low > 1:
            mid = (low + high) // 2
            if self.log.is_zero(mid, size):
                high = mid
            else:
                low = mid
        return high - pos

    def load(self):
        """Open a segment trusted to be whole (below the recovery point, or cleanly
        closed): state from its last index entry and a scan of the batches after it.
        Raises InvalidSegment or CorruptRecord if what it finds is inconsistent."""
        self._native_reset()
        off, pos = self.index.last_entry
        result = native.scan_batches(self.log.buffer[pos:self.log.size], 0, True, self.base_offset)
        if result.status != native.Status.OK:
            raise CorruptRecord(f"{self.log.path}: batch at position {pos + result.valid_bytes} is "
                                f"{result.status_name.lower().replace('_', ' ')} (expected {result.expected}, "
                                f"found {result.found})")
        self.next_offset = result.last_offset + 1 if result.batches else self.base_offset
        self.index.sanity_check(self.size, self.next_offset)
        self.time_index.sanity_check(self.next_offset)
        self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry
        if result.max_timestamp > self.max_timestamp:
            # the batches after the last index entry; offset of max found by walking them
            for b in self.batches_from(pos):
                if b.max_timestamp > self.max_timestamp:
                    self.max_timestamp, self.offset_of_max_timestamp = b.max_timestamp, b.last_offset
        self.first_batch_timestamp = None if self.is_empty else self.batch_at(0).max_timestamp
        self._bytes_since_index = self.size - pos if self.index.entries else self.size
        self._recover_txn_index()

    # -- lifecycle ----------------------------------------------------------------
    def truncate_to(self, offset):
        """Remove every batch holding an offset >= `offset` (whole batches only)."""
        b = self.find(offset)
        if b is None:
            return 0
        removed = self.size - b.position
        self._native_reset()
        try:
            self.index.truncate_to_offset(offset)
            self.time_index.truncate_to_offset(offset)
        finally:
            self._check_index_room()
        self.log.truncate(b.position)
        self.txn_index.truncate_to(offset)
        self.load()  # cheap: walks only the batches after the last index entry
        return removed

    def seal(self, sync=True):
        """Stop writing: make sure the time index holds the largest timestamp, then trim
        all three files to their data (Kafka's onBecomeInactiveSegment), flushed and
        fsynced (sync: a clean close, recovery). sync=False (a roll): no msync or fsync
        here; returns the descriptors to fsync (.index, .timeindex, .log and the
        .txnindex if there is one), now the caller's to fsync and close
        (PartitionLog.roll hands them to background_flush.py). Returns [] otherwise, and
        when the segment was sealed already."""
        self._native_reset()  # the maps must not be exported when the files shrink or close
        fds = []
        if self.log.writable:
            if self.max_timestamp >= 0:
                try:
                    self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
                except StorageError as e:
                    # no block for the entry (appends allocate it; a segment opened and
                    # sealed without one may not have it): the index stays valid without
                    # it, lookups past its last entry only scan further (load() finds the
                    # largest timestamp by walking the batches after the last entry)
                    log.warning("%s: sealed without its last time-index entry: %s", self.log.path, e)
            # indexes first: a crash between leaves the log untrimmed, which recovery
            # notices (zero tail) and repairs; the reverse order could leave stale
            # zero entries in an index that a trimmed, valid-looking log vouches for
            try:
                try:
                    fds.append(self.index.trim(sync))
                    fds.append(self.time_index.trim(sync))
                finally:
                    self._check_index_room()
                fds.append(self.log.trim(sync))
                if not sync:
                    fds.append(self._open_txn_index())
            except BaseException:
                _close_all(fds)
                raise
        return [fd for fd in fds if fd is not None]

    def _open_txn_index(self):
        """A descriptor of the .txnindex to fsync (appended to with write(2), not mapped),
        or None if the segment has none."""
        try:
            return os.open(self.txn_index.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot open {self.txn_index.path}: {e.strerror or e}") from e

    def flush(self):
        self.log.flush()
        self.index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def close(self):
        self._native_reset()
        self.log.close()
        self.index.close()
        self.time_index.close()

    def delete(self):
        """Close and remove the segment's files."""
        self.close()
        for path in (self.log.path, self.index.path, self.time_index.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.txn_index.delete()


def _close_all(fds):
    for fd in fds:
        if fd is not None:
            os.close(fd)
