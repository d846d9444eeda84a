"""storage native.append (odk_append, daemon/c_ext/odradek.h): the fused copy + validate +
rewrite + index of one PartitionLog append, and its follower variant without the copy
(append_check + append_commit), run against both implementations (the CFFI wrapper and
the pure-Python reference in daemon/storage), like tests/client/test_native.py.

The oracle is twofold: a straightforward Python model built from client/records (copy,
write_base_offset, write_partition_leader_epoch, write_log_append_time, then the
sparse-index rule of daemon/storage/index_policy.py, its one Python owner), and the real
LogSegment writing real files. So this is also the twin test of the rule: C's track()
in odradek.c against index_policy.SparseIndexing.

`python tests/daemon/storage/test_native_append.py` prints a micro benchmark of the C call.
"""
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.client import _native_ref as client_ref
from odradek.client.records import (BatchBuilder, RecordBatch, TimestampType, write_base_offset,
                                    write_log_append_time, write_partition_leader_epoch)
from odradek.daemon.storage import _native_ref as ref
from odradek.daemon.storage.index_policy import SparseIndexing, time_entry_due
from support.native import impl_fixture

Status = client_ref.Status
SEGMENT_FIELDS = ("position", "next_offset", "index_entries", "time_entries", "bytes_since_index",
                  "max_timestamp", "offset_of_max")

impl = impl_fixture("odradek.daemon.storage._native_cffi", ref)


quick = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- batches ---------------------------------------------------------------------------

def build(records=1, ts=1_000, step=1, value_size=20, **kw):
    """One v2 batch from the real producer-side builder."""
    b = BatchBuilder(**kw)
    for i in range(records):
        b.append(ts + i * step, b"k%d" % i, bytes([i & 0xFF]) * value_size)
    return bytes(b.build())


def raw_batch(base_offset=0, records=1, last_offset_delta=None, max_timestamp=1_000, attributes=0,
              payload=b"xyz", magic=2, crc=None, length=None):
    """A v2 header + opaque bytes (for batches BatchBuilder refuses to build)."""
    if last_offset_delta is None:
        last_offset_delta = records - 1
    body = struct.pack(">hiqqqhii", attributes, last_offset_delta, 1_000, max_timestamp, -1, -1, -1,
                       records) + payload
    crc = client_ref.crc32c(body) if crc is None else crc
    length = 9 + len(body) if length is None else length
    return struct.pack(">qiibI", base_offset, length, -1, magic, crc) + body


def with_offsets(batches, start):
    """Follower input: the batches with dense baseOffsets from start."""
    out = []
    for b in batches:
        b = bytearray(b)
        write_base_offset(b, 0, start)
        start += struct.unpack_from(">i", b, 23)[0] + 1
        out.append(bytes(b))
    return out


# ---- the oracle: a Python loop over client/records, with index_policy's rule -----------

class Model(SparseIndexing):
    def __init__(self, base=0, interval=300, log_cap=1 << 16, index_cap=64, time_cap=64):
        self.base, self._index_interval_bytes = base, interval
        self.log, self.index, self.timeindex = bytearray(log_cap), bytearray(8 * index_cap), \
            bytearray(12 * time_cap)
        self.position, self.next_offset = 0, base
        self.max_timestamp, self.offset_of_max_timestamp = -1, base
        self._bytes_since_index = self.index_entries = self.time_entries = 0
        self.last_time = (-1, base)
        self.first_batch_timestamp = None

    bytes_since_index = property(lambda self: self._bytes_since_index)
    offset_of_max = property(lambda self: self.offset_of_max_timestamp)

    def append(self, data, assign=True, epoch=None, append_time=None):
        infos = client_ref.scan_batches(data, 0, not assign, self.next_offset, cap=10_000).infos
        start = self.position
        self.log[start:start + len(data)] = data
        self.position += len(data)
        written, nxt = [], self.next_offset
        for b in infos:
            pos = start + b.position
            base, last = (nxt, nxt + b.last_offset - b.base_offset) if assign else (b.base_offset, b.last_offset)
            if assign:
                write_base_offset(self.log, pos, base)
            nxt = last + 1
            if epoch is not None:
                write_partition_leader_epoch(self.log, pos, epoch)
            ts = b.max_timestamp
            if append_time is not None:
                ts = append_time
                write_log_append_time(self.log, pos, ts)
            self.track(pos, last, b.size, ts)
            written.append((base, last, ts))
        return written

    def track(self, position, last_offset, size, ts):
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = ts
        self._index_batch(position, last_offset, size, ts)
        self.next_offset = last_offset + 1

    def _add_index_entry(self, last_offset, position):
        struct.pack_into(">II", self.index, 8 * self.index_entries, last_offset - self.base, position)
        self.index_entries += 1
        ts, offset = self.max_timestamp, self.offset_of_max_timestamp
        if time_entry_due(ts, offset, *self.last_time, self.time_entries > 0):
            struct.pack_into(">qI", self.timeindex, 12 * self.time_entries, ts, offset - self.base)
            self.time_entries += 1
            self.last_time = (ts, offset)


class Target:
    """A segment as native.append sees it: three buffers and a state."""

    def __init__(self, impl, base=0, interval=300, log_cap=1 << 16, index_cap=64, time_cap=64,
                 max_batch_size=0):
        self.impl = impl
        self.log, self.index, self.timeindex = bytearray(log_cap), bytearray(8 * index_cap), \
            bytearray(12 * time_cap)
        self.st = impl.append_state(segment_base=base, index_interval=interval,
                                    max_batch_size=max_batch_size)

    def append(self, data, assign=True, epoch=None, append_time=None):
        st = self.st
        st.assign = assign
        st.leader_epoch = -1 if epoch is None else epoch
        st.append_time = -1 if append_time is None else append_time
        return self.impl.append(data, self.log, self.index, self.timeindex, st)

    def snapshot(self):
        return (bytes(self.log), bytes(self.index), bytes(self.timeindex),
                {f: getattr(self.st, f) for f in SEGMENT_FIELDS})


def assert_same(t, m):
    assert bytes(t.log) == bytes(m.log)
    assert bytes(t.index) == bytes(m.index)
    assert bytes(t.timeindex) == bytes(m.timeindex)
    assert {f: getattr(t.st, f) for f in SEGMENT_FIELDS} == {f: getattr(m, f) for f in SEGMENT_FIELDS}
    assert t.st.last_time_timestamp == m.last_time[0]


def check_results(st, written, data):
    assert st.status == Status.OK
    assert (st.batches, st.valid_bytes, st.expected, st.found) == (len(written), len(data), 0, 0)
    assert st.first_offset == written[0][0] and st.last_offset == written[-1][1]
    assert st.append_max_timestamp == max([-1] + [w[2] for w in written])
    assert st.first_max_timestamp == written[0][2]
    assert st.records == sum(w[1] - w[0] + 1 for w in written)


# ---- success: byte-identical to the model -----------------------------------------------

def test_state_names_match_the_c_struct_and_defaults_describe_an_empty_segment(impl):
    st = impl.append_state(segment_base=500)
    assert {f: getattr(st, f) for f in SEGMENT_FIELDS} == dict(
        position=0, next_offset=500, index_entries=0, time_entries=0, bytes_since_index=0,
        max_timestamp=-1, offset_of_max=500)
    for name in ref.APPEND_STATE_FIELDS:
        getattr(st, name)


def test_a_single_batch_is_copied_offset_assigned_and_tracked(impl):
    t, m = Target(impl, base=100), Model(base=100)
    data = build(records=5, ts=7_000)
    assert t.append(data) == Status.OK
    written = m.append(data)
    assert_same(t, m)
    check_results(t.st, written, data)
    assert (t.st.first_offset, t.st.last_offset, t.st.records) == (100, 104, 5)
    assert t.st.first_max_timestamp == 7_004


@pytest.mark.parametrize("assign", [True, False], ids=["leader", "follower"])
@pytest.mark.parametrize("epoch", [None, 0, 7, 2 ** 31 - 1])
@pytest.mark.parametrize("append_time", [None, 0, 1_700_000_000_123])
def test_many_appends_of_many_batches_match_the_model(impl, assign, epoch, append_time):
    t, m = Target(impl, base=1_000, interval=250), Model(base=1_000, interval=250)
    nxt = 1_000
    for round_ in range(12):
        batches = [build(records=1 + (round_ * 3 + k) % 6, ts=5_000 - 100 * round_ + 37 * k,
                         value_size=10 + 40 * k) for k in range(1 + round_ % 4)]
        if not assign:
            batches = with_offsets(batches, nxt + round_ % 3)  # followers may skip offsets
        data = b"".join(batches)
        assert t.append(data, assign, epoch, append_time) == Status.OK, t.st.status
        written = m.append(data, assign, epoch, append_time)
        assert_same(t, m)
        check_results(t.st, written, data)
        nxt = m.next_offset
    assert m.index_entries > 3 and m.time_entries >= 1


def test_the_first_batch_max_timestamp_is_reported_for_the_segment_ms_anchor(impl):
    t = Target(impl)
    data = build(records=2, ts=50) + build(records=2, ts=900)
    assert t.append(data) == Status.OK
    assert (t.st.first_max_timestamp, t.st.append_max_timestamp) == (51, 901)


def test_log_append_time_sets_bit_3_and_max_timestamp_with_a_valid_crc(impl):
    t = Target(impl)
    data = build(records=3, ts=10) + build(records=2, ts=20)
    assert t.append(data, append_time=1_234_567) == Status.OK
    stored = bytes(t.log[:t.st.position])
    scan = client_ref.scan_batches(stored, 0, True, 0, cap=10)
    assert scan.status == Status.OK and scan.batches == 2
    for info in scan.infos:
        batch = RecordBatch(stored[info.position:info.position + info.size])
        assert batch.timestamp_type == TimestampType.LOG_APPEND_TIME
        assert batch.max_timestamp == 1_234_567
        assert all(r.timestamp == 1_234_567 for r in batch.records())
    assert t.st.max_timestamp == t.st.append_max_timestamp == 1_234_567


def test_index_entries_follow_the_interval_and_time_entries_only_grow(impl):
    t, m = Target(impl, interval=0), Model(interval=0)   # interval 0: every batch after the first
    for ts in (100, 100, 90, 300, 200, 400):
        data = build(ts=ts)
        assert t.append(data) == Status.OK
        m.append(data)
        assert_same(t, m)
    assert t.st.index_entries == 5
    stamps = [struct.unpack_from(">q", t.timeindex, 12 * i)[0] for i in range(t.st.time_entries)]
    assert stamps == sorted(set(stamps)) == [100, 300, 400]


def test_existing_index_entries_are_continued_from_the_state(impl):
    """A segment reopened mid-way: the state says where the indexes end, and the last
    time entry is read back from the time index bytes."""
    m = Model(base=10, interval=0)
    for ts in (5, 8, 3):
        m.append(build(ts=ts))
    t = Target(impl, base=10, interval=0)
    t.log[:], t.index[:], t.timeindex[:] = m.log, m.index, m.timeindex
    st = t.st
    for f in SEGMENT_FIELDS:
        setattr(st, f, getattr(m, f))
    for ts in (4, 8, 9, 2):
        data = build(ts=ts)
        assert t.append(data) == Status.OK
        m.append(data)
        assert_same(t, m)


def test_mmapped_buffers_and_a_memoryview_source(impl, tmp_path):
    import mmap
    path = tmp_path / "seg"
    path.write_bytes(bytes(4096 + 8 * 16 + 12 * 16))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        mv = memoryview(mm)
        log, index, timeindex = mv[:4096], mv[4096:4096 + 128], mv[4096 + 128:]
        st = impl.append_state(index_interval=0)
        m = Model(interval=0, log_cap=4096, index_cap=16, time_cap=16)
        for k in range(4):
            data = build(records=2, ts=100 * k)
            assert impl.append(memoryview(bytearray(data)), log, index, timeindex, st) == Status.OK
            m.append(data)
        assert bytes(log) == bytes(m.log) and bytes(index) == bytes(m.index)
        assert bytes(timeindex) == bytes(m.timeindex)
        del log, index, timeindex, mv


def test_a_bound_target_appends_the_same_and_is_released_before_the_map_closes(impl, tmp_path):
    import mmap
    a, m = Target(impl, interval=100), Model(interval=100)
    path = tmp_path / "seg"
    path.write_bytes(bytes(len(a.log) + len(a.index) + len(a.timeindex)))
    f = open(path, "r+b")
    mm = mmap.mmap(f.fileno(), 0)
    n, k = len(a.log), len(a.index)
    with memoryview(mm) as mv:
        target = impl.append_target(mv[:n], mv[n:n + k], mv[n + k:])
    st = impl.append_state(index_interval=100)
    for j in range(6):
        data = build(records=1 + j % 3, ts=100 - 7 * j, value_size=30)
        assert impl.append_into(data, target, st) == Status.OK
        m.append(data)
        assert (st.position, st.index_entries, st.time_entries) == \
            (m.position, m.index_entries, m.time_entries)
    with pytest.raises(BufferError):
        mm.close()                          # the target holds the map
    impl.release_target(target)
    impl.release_target(target)             # idempotent
    with pytest.raises(ValueError):
        impl.append_into(build(), target, st)
    assert mm[:n] == bytes(m.log) and mm[n:n + k] == bytes(m.index) and mm[n + k:] == bytes(m.timeindex)
    mm.close()
    f.close()


def test_read_only_buffers_are_refused(impl):
    with pytest.raises(BufferError):
        impl.append(build(), bytes(1000), bytearray(80), bytearray(120), impl.append_state())
    with pytest.raises(BufferError):
        impl.append_target(bytearray(1000), bytes(80), bytearray(120))


# ---- the real LogSegment writes the same files ----------------------------------------

@pytest.mark.parametrize("assign,epoch,append_time", [(True, None, None), (True, 3, 1_700_000_000_000),
                                                      (False, 9, None)])
def test_files_match_what_log_segment_append_writes(impl, tmp_path, assign, epoch, append_time):
    from odradek.daemon.storage.config import LogConfig
    from odradek.daemon.storage.segment import LogSegment
    cfg = LogConfig.from_dict({"segment.bytes": 1 << 16, "index.interval.bytes": 200,
                               "segment.index.bytes": 400})
    seg = LogSegment(str(tmp_path), 42, cfg, writable=True, create=True, index_entries=0)
    other = tmp_path / "other"
    other.mkdir()
    mine = LogSegment(str(other), 42, cfg, writable=True, create=True, index_entries=0)
    st = impl.append_state(segment_base=42, index_interval=200, assign=assign,
                           leader_epoch=-1 if epoch is None else epoch,
                           append_time=-1 if append_time is None else append_time)
    try:
        for k in range(15):
            batches = [build(records=1 + (k + j) % 4, ts=1_000 + 10 * ((k * 7) % 5) + j, value_size=30 * j)
                       for j in range(1 + k % 3)]
            if not assign:
                batches = with_offsets(batches, seg.next_offset)
            data = b"".join(batches)
            infos = client_ref.scan_batches(data, 0, not assign, seg.next_offset, cap=100).infos
            seg.append(data, infos, seg.next_offset if assign else None, epoch, append_time)
            status = impl.append(data, mine.log.buffer, mine.index._file.buffer,
                                 mine.time_index._file.buffer, st)
            assert status == Status.OK
            assert (st.next_offset, st.max_timestamp, st.offset_of_max, st.bytes_since_index) == \
                (seg.next_offset, seg.max_timestamp, seg.offset_of_max_timestamp, seg._bytes_since_index)
            assert (st.index_entries, st.time_entries) == (seg.index.entries, seg.time_index.entries)
            assert st.last_time_timestamp == seg.time_index.last_entry[0]
            assert st.position == seg.size
        assert seg.index.entries > 2
        assert bytes(mine.log.buffer) == bytes(seg.log.buffer)
        assert bytes(mine.index._file.buffer) == bytes(seg.index._file.buffer)
        assert bytes(mine.time_index._file.buffer) == bytes(seg.time_index._file.buffer)
    finally:
        seg.close()
        mine.close()


# ---- failures: nothing changes, dst past the position stays zero -------------------------

def prepared(impl, **kw):
    """A target holding two appends already (so 'unchanged' is not trivially zero)."""
    t = Target(impl, base=0, interval=0, **kw)
    for ts in (10, 20):
        assert t.append(build(records=2, ts=ts)) == Status.OK
    return t


def assert_refused(t, data, status, *, assign=True, before=None, **kw):
    before = before or t.snapshot()
    got = t.append(data, assign, **kw)
    st = t.st
    assert (got, st.status) == (status, status), Status.NAMES.get(got, got)
    assert t.snapshot() == before                       # dst zero past position, state intact
    assert not any(t.log[st.position:])
    assert (st.first_offset, st.last_offset, st.records) == (-1, -1, 0)
    return st


def corrupt(batch, offset, value, fmt=">b"):
    b = bytearray(batch)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


SCAN_FAILURES = {
    "truncated": lambda good: good + good[:30],
    "bad_length": lambda good: good + corrupt(good, 8, 10, ">i"),
    "bad_magic": lambda good: good + corrupt(good, 16, 1),
    "bad_crc": lambda good: good + corrupt(good, len(good) - 1, 0x55, ">B"),
    "negative_records": lambda good: good + raw_batch(records=-1, last_offset_delta=0),
    "offset_overflow": lambda good: good + raw_batch(base_offset=2 ** 63 - 2, last_offset_delta=5,
                                                     records=6),
}


@pytest.mark.parametrize("name", sorted(SCAN_FAILURES))
@pytest.mark.parametrize("assign", [True, False])
def test_scan_failures_report_what_scan_batches_reports(impl, name, assign):
    t = prepared(impl)
    good = build(records=2, ts=30)
    if not assign:
        good = with_offsets([good], t.st.next_offset)[0]
    data = SCAN_FAILURES[name](good)
    want = client_ref.scan_batches(data, 0, not assign, t.st.next_offset)
    st = assert_refused(t, data, want.status, assign=assign, epoch=4, append_time=99)
    assert want.status not in (Status.OK, Status.MORE)
    assert (st.batches, st.valid_bytes, st.expected, st.found) == \
        (want.batches, want.valid_bytes, want.expected, want.found)


def test_a_follower_batch_below_the_log_end_is_bad_offset(impl):
    t = prepared(impl)
    data = with_offsets([build(records=3)], t.st.next_offset - 1)[0]
    st = assert_refused(t, data, Status.BAD_OFFSET, assign=False)
    assert (st.expected, st.found, st.valid_bytes) == (4, 3, 0)


def test_a_leader_ignores_the_producer_base_offsets(impl):
    t = prepared(impl)
    assert t.append(with_offsets([build(), build()], 0)[0] * 2) == Status.OK


def test_too_large(impl):
    t = prepared(impl, max_batch_size=300)
    small, big = build(value_size=5), build(records=3, value_size=200)
    st = assert_refused(t, small + big, Status.TOO_LARGE)
    assert (st.batches, st.valid_bytes, st.expected, st.found) == (1, len(small), 300, len(big))
    st = assert_refused(t, with_offsets([big], 4)[0], Status.TOO_LARGE, assign=False)  # followers too
    assert st.batches == 0


@pytest.mark.parametrize("records,delta", [(0, 0), (3, 1), (1, 2)])
def test_bad_record_counts_are_refused_when_assigning_only(impl, records, delta):
    t = prepared(impl)
    bad = raw_batch(records=records, last_offset_delta=delta)
    st = assert_refused(t, build() + bad, Status.BAD_RECORDS)
    assert (st.batches, st.expected, st.found) == (1, records, delta)
    assert t.append(with_offsets([bad], 10)[0], assign=False) == Status.OK


# records a v2 batch cannot hold, each after a batch header whose CRC holds (raw_batch):
# (records, the records region) -> refused at record `index` with odk_decode_records' status
UNDECODABLE = {
    "length varint of 6 bytes": (1, b"\xff" * 6 + bytes(4), 0, Status.BAD_VARINT),
    "length past the batch": (1, b"\x40" + bytes(10), 0, Status.BAD_RECORD),
    "length below a record's least": (1, b"\x04" + bytes(8), 0, Status.BAD_RECORD),
    "key longer than its record": (1, b"\x0e\x00\x00\x00\x20" + bytes(4), 0, Status.BAD_RECORD),
    "more records counted than bytes hold": (2, b"\x0c\x00\x00\x00\x01\x01\x00", 0, Status.BAD_COUNT),
    "bytes after the last record": (1, b"\x0c\x00\x00\x00\x01\x01\x00junk", 1, Status.BAD_COUNT),
}


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_a_leader_refuses_an_uncompressed_batch_whose_records_do_not_decode(impl, name):
    """Kafka's LogValidator iterates every record of a batch it appends: a CRC over bytes
    that are no records is no batch to store, whatever its header says (every reader after
    would fail on it). Checked on the copy, whole batch refused, with odk_decode_records'
    own verdict; a follower takes the leader's bytes as they are."""
    records, region, index, status = UNDECODABLE[name]
    bad = raw_batch(records=records, payload=region)
    want = client_ref.decode_records(bad)
    assert (want.status, want.records) == (status, index)
    t = prepared(impl)
    good = build(records=2, ts=30)
    st = assert_refused(t, good + bad, Status.BAD_RECORD_BYTES)
    assert (st.batches, st.valid_bytes, st.expected, st.found) == (1, len(good), index, status)
    assert t.append(with_offsets([bad], t.st.next_offset)[0], assign=False) == Status.OK


def test_the_record_check_takes_every_record_a_producer_writes(impl):
    """Nulls, headers, negative and wide deltas, empty values: all decode, all appended."""
    b = BatchBuilder()
    b.append(1_000, None, None, [("h", b"v"), ("e", None)])
    b.append(-5, b"", b"", [])
    b.append(2 ** 40, b"k" * 300, b"v" * 3_000, [("x" * 200, b"y" * 200)])
    t = prepared(impl)
    assert t.append(bytes(b.build())) == Status.OK


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_compression_ids_that_are_no_codec_are_refused_when_assigning_only(impl, codec):
    t = prepared(impl)
    bad = raw_batch(attributes=codec | 0x10)
    st = assert_refused(t, bad, Status.BAD_CODEC)
    assert (st.batches, st.valid_bytes, st.expected, st.found) == (0, 0, 4, codec)
    for taken in (1, 2, 3, 4):                         # gzip, snappy, lz4, zstd are taken
        assert t.append(raw_batch(attributes=taken | 0x10)) == Status.OK
    assert t.append(with_offsets([bad], 10)[0], assign=False) == Status.OK


def test_leader_checks_run_in_python_order_and_a_later_scan_failure_wins(impl):
    t = prepared(impl, max_batch_size=200)
    big_and_empty = raw_batch(records=0, last_offset_delta=0, payload=bytes(300))
    st = assert_refused(t, big_and_empty, Status.TOO_LARGE)                  # size before count
    st = assert_refused(t, raw_batch(records=0, last_offset_delta=0, attributes=3), Status.BAD_RECORDS)  # count before codec
    bad_crc = corrupt(build(), 30, 1)
    st = assert_refused(t, big_and_empty + bad_crc, Status.BAD_CRC)          # the scan comes first
    assert st.batches == 1


def test_empty_source(impl):
    t = prepared(impl)
    assert_refused(t, b"", Status.EMPTY)


def test_no_space(impl):
    t = prepared(impl, log_cap=400)
    data = build(records=4, value_size=50)
    st = assert_refused(t, data, Status.NO_SPACE)
    assert (st.expected, st.found) == (400 - t.st.position, len(data))


def test_a_full_index_is_refused_before_copying(impl):
    t = prepared(impl, index_cap=1)                 # prepared filled the one entry
    assert t.st.index_entries == 1
    st = assert_refused(t, build(), Status.INDEX_FULL)
    assert (st.expected, st.found) == (0, 1)
    t = prepared(impl, time_cap=1)
    assert t.st.time_entries == 1
    assert_refused(t, build(ts=999), Status.INDEX_FULL)


def test_an_append_needing_more_entries_than_free_is_refused_whole(impl):
    t = prepared(impl, index_cap=3)                 # 1 used, 2 free; 3 batches need 3
    st = assert_refused(t, build(ts=50) + build(ts=60) + build(ts=70), Status.INDEX_FULL)
    assert (st.expected, st.found) == (2, 3)
    assert t.append(build(ts=50) + build(ts=60)) == Status.OK
    assert t.st.index_entries == 3


def test_offsets_outside_the_u32_index_range(impl):
    t = Target(impl, base=100)
    t.st.next_offset = 50   # a follower state below the segment base: refuse, not wrap
    st = assert_refused(t, with_offsets([build()], 60)[0], Status.OUT_OF_RANGE, assign=False)
    assert (st.expected, st.found) == (100, 60)
    t.st.next_offset = 100
    st = assert_refused(t, with_offsets([build()], 100)[0] + with_offsets([build(records=2)], 100 + 2 ** 32 - 1)[0],
                        Status.OUT_OF_RANGE, assign=False)
    assert (st.batches, st.expected, st.found) == (1, 100 + 2 ** 32 - 1, 100 + 2 ** 32)
    t.st.next_offset = 100 + 2 ** 32 - 3
    assert_refused(t, build(records=4), Status.OUT_OF_RANGE)
    assert t.append(build(records=3)) == Status.OK          # relative offset 2**32 - 1: the last
    assert t.st.next_offset == 100 + 2 ** 32


def test_inconsistent_state_is_refused(impl):
    t = prepared(impl, index_cap=4)
    t.st.index_entries = 5
    assert t.append(build()) == Status.BAD_STATE
    t.st.index_entries, t.st.position = 1, len(t.log) + 1
    assert t.append(build()) == Status.BAD_STATE


# ---- property: any sequence of appends equals the model ---------------------------------

batch_spec = st.tuples(st.integers(1, 5), st.integers(-5, 3_000), st.integers(0, 120))


@quick
@given(appends=st.lists(st.lists(batch_spec, min_size=1, max_size=4), min_size=1, max_size=8),
       interval=st.integers(0, 700), base=st.integers(0, 2 ** 40), assign=st.booleans(),
       epoch=st.one_of(st.none(), st.integers(0, 2 ** 31 - 1)),
       append_time=st.one_of(st.none(), st.integers(0, 2 ** 62)), skip=st.integers(0, 3))
def test_any_sequence_of_appends_matches_the_model(impl, appends, interval, base, assign, epoch,
                                                   append_time, skip):
    t, m = Target(impl, base=base, interval=interval), Model(base=base, interval=interval)
    for specs in appends:
        batches = [build(records=n, ts=ts, value_size=v) for n, ts, v in specs]
        if not assign:
            batches = with_offsets(batches, m.next_offset + skip)
        data = b"".join(batches)
        assert t.append(data, assign, epoch, append_time) == Status.OK
        written = m.append(data, assign, epoch, append_time)
        assert_same(t, m)
        check_results(t.st, written, data)


@quick
@given(flip=st.integers(0, 10_000), value=st.integers(1, 255), interval=st.integers(0, 300))
def test_any_single_byte_corruption_is_either_refused_unchanged_or_accepted_as_scanned(
        impl, flip, value, interval):
    t = Target(impl, interval=interval)
    t.append(build(records=2) + build(records=3))
    data = bytearray(build(records=3, value_size=40) + build(records=1))
    data[flip % len(data)] ^= value
    data = bytes(data)
    before = t.snapshot()
    scan = client_ref.scan_batches(data, 0, False, t.st.next_offset)
    status = t.append(data)
    if status == Status.OK:
        assert scan.status == Status.OK   # the corrupted byte was baseOffset/epoch (not CRC'd)
    else:
        assert t.snapshot() == before and not any(t.log[t.st.position:])
        if scan.status != Status.OK:
            assert (status, t.st.valid_bytes, t.st.expected, t.st.found) == \
                (scan.status, scan.valid_bytes, scan.expected, scan.found)


# ---- append_check + append_commit: a follower's append without the copy -------------------
# (odk_append_check / odk_append_commit). The oracle is append itself: check, a write of
# the bytes at st.position by hand (as LogSegment does with pwrite), then commit leave
# the log, both indexes and the state exactly as append does, and refuse what append
# refuses, writing nothing.

class Follower(Target):
    """A Target appended to by check, a write of the bytes, then commit."""

    def __init__(self, impl, **kw):
        super().__init__(impl, **kw)
        self.st.assign = 0
        self.target = impl.append_target(self.log, self.index, self.timeindex)

    def append(self, data):
        st = self.st
        status = self.impl.append_check(data, self.target, st)
        if status != Status.OK:
            return status
        self.log[st.position:st.position + len(data)] = data
        return self.impl.append_commit(data, self.target, st)


RESULT_FIELDS = ("status", "batches", "valid_bytes", "expected", "found", "first_offset", "last_offset",
                 "records", "append_max_timestamp", "first_max_timestamp", "last_time_timestamp")


def state(t):
    return {f: getattr(t.st, f) for f in SEGMENT_FIELDS + RESULT_FIELDS}


@quick
@given(appends=st.lists(st.lists(batch_spec, min_size=1, max_size=4), min_size=1, max_size=8),
       interval=st.integers(0, 700), base=st.integers(0, 2 ** 40), skip=st.integers(0, 3))
def test_check_write_commit_equals_append(impl, appends, interval, base, skip):
    f, a = Follower(impl, base=base, interval=interval), Target(impl, base=base, interval=interval)
    for specs in appends:
        data = b"".join(with_offsets([build(records=n, ts=ts, value_size=v) for n, ts, v in specs],
                                     a.st.next_offset + skip))
        assert a.append(data, assign=False) == Status.OK
        assert f.append(data) == Status.OK
        assert f.snapshot() == a.snapshot() and state(f) == state(a)


@quick
@given(flip=st.integers(0, 10_000), value=st.integers(1, 255), interval=st.integers(0, 300),
       max_batch_size=st.sampled_from([0, 150]))
def test_a_refusal_is_appends_and_writes_nothing(impl, flip, value, interval, max_batch_size):
    f = Follower(impl, interval=interval, max_batch_size=max_batch_size)
    a = Target(impl, interval=interval, max_batch_size=max_batch_size)
    first = b"".join(with_offsets([build(records=2), build(records=3)], 0))
    assert f.append(first) == a.append(first, assign=False) == Status.OK
    data = bytearray(b"".join(with_offsets([build(records=3, value_size=40), build(records=1)], 5)))
    data[flip % len(data)] ^= value
    data = bytes(data)
    before = f.snapshot()
    status = a.append(data, assign=False)
    assert impl.append_check(data, f.target, f.st) == status
    # (last_time_timestamp: the last entry now; a check adds none, the commit does)
    compared = RESULT_FIELDS[:-1] if status == Status.OK else RESULT_FIELDS
    assert {k: getattr(f.st, k) for k in compared} == {k: getattr(a.st, k) for k in compared}
    assert f.snapshot() == before


@pytest.mark.parametrize("field,value", [("assign", 1), ("leader_epoch", 0), ("append_time", 0)])
def test_settings_that_rewrite_batches_are_a_bad_state(impl, field, value):
    f = Follower(impl)
    setattr(f.st, field, value)
    data = with_offsets([build()], 0)[0]
    assert impl.append_check(data, f.target, f.st) == Status.BAD_STATE
    assert impl.append_commit(data, f.target, f.st) == Status.BAD_STATE


def test_the_up_front_refusals_are_appends(impl):
    f = Follower(impl, log_cap=100)
    assert f.append(b"") == Status.EMPTY
    assert f.append(with_offsets([build(value_size=60)], 0)[0]) == Status.NO_SPACE
    assert (f.st.expected, f.st.found) == (100, len(build(value_size=60)))


def test_commit_without_a_matching_check_writes_nothing(impl):
    f = Follower(impl, interval=0)
    one, two = with_offsets([build(), build(records=2)], 0)
    before = f.snapshot()
    assert impl.append_commit(one, f.target, f.st) == Status.BAD_STATE       # no check yet
    assert impl.append_check(one, f.target, f.st) == Status.OK
    assert impl.append_commit(one + two, f.target, f.st) == Status.BAD_STATE  # other bytes
    assert impl.append_check(one, f.target, f.st) == Status.OK
    assert impl.append_commit(raw_batch(length=10 ** 6)[:len(one)], f.target, f.st) == Status.BAD_STATE
    assert f.snapshot() == before
    assert f.append(one) == Status.OK and f.st.next_offset == 1


def test_a_released_target_is_refused(impl):
    f = Follower(impl)
    impl.release_target(f.target)
    with pytest.raises(ValueError, match="released"):
        impl.append_check(build(), f.target, f.st)
    with pytest.raises(ValueError, match="released"):
        impl.append_commit(build(), f.target, f.st)


# ---- micro benchmark (not a test) ---------------------------------------------------------

def _bench():
    import time
    from odradek.daemon.storage import _native_cffi as c
    data = build(records=16, value_size=(16 << 10) // 16 - 30)
    print(f"batch: {len(data)} bytes")
    cap = 256 << 20
    log = memoryview(bytearray(cap))
    index, timeindex = bytearray(10 << 20), bytearray(15 << 20)
    for mode, kw in (("leader", {}), ("leader+LogAppendTime", {"append_time": 1_700_000_000_000}),
                     ("follower", {"assign": False})):
        st = c.append_state(index_interval=4096, max_batch_size=1 << 20, leader_epoch=3, **kw)
        n = cap // len(data) - 1
        src = bytearray(data)
        best = []
        for _ in range(5):
            st.position, st.next_offset, st.index_entries, st.time_entries = 0, 0, 0, 0
            st.bytes_since_index, st.max_timestamp, st.offset_of_max = 0, -1, 0
            t0 = time.perf_counter()
            for _ in range(n):
                if not st.assign:
                    struct.pack_into(">q", src, 0, st.next_offset)
                    if c.append(src, log, index, timeindex, st):
                        raise AssertionError(st.status)
                elif c.append(src, log, index, timeindex, st):
                    raise AssertionError(st.status)
            best.append((time.perf_counter() - t0) / n * 1e6)
        # the raw C call alone, without the Python wrapper
        from odradek._native import ffi, lib
        p_src, p_log = ffi.from_buffer(src), ffi.from_buffer(log)
        p_i, p_t = ffi.from_buffer(index), ffi.from_buffer(timeindex)
        st.position, st.next_offset, st.index_entries, st.time_entries = 0, 0, 0, 0
        st.bytes_since_index, st.max_timestamp, st.offset_of_max = 0, -1, 0
        st.assign = 1
        t0 = time.perf_counter()
        for _ in range(n):
            lib.odk_append(p_src, len(src), p_log, cap, p_i, len(index) // 8, p_t, len(timeindex) // 12, st)
        raw = (time.perf_counter() - t0) / n * 1e6
        target = c.append_target(log, index, timeindex)
        st.position, st.next_offset, st.index_entries, st.time_entries = 0, 0, 0, 0
        st.bytes_since_index, st.max_timestamp, st.offset_of_max = 0, -1, 0
        t0 = time.perf_counter()
        for _ in range(n):
            c.append_into(src, target, st)
        bound = (time.perf_counter() - t0) / n * 1e6
        c.release_target(target)
        print(f"{mode:22s} native.append {min(best):6.2f} us/append (median of 5 runs "
              f"{sorted(best)[2]:.2f}); append_into {bound:.2f} us; lib.odk_append direct {raw:.2f} us")
    # the same copy without validation or indexes, into the same (already faulted) map
    best = []
    for _ in range(5):
        t0 = time.perf_counter()
        pos = 0
        for _ in range(n):
            log[pos:pos + len(data)] = data
            pos += len(data)
        best.append((time.perf_counter() - t0) / n * 1e6)
    print(f"{'raw memoryview copy':22s} {min(best):6.2f} us/copy (median of 5 runs {sorted(best)[2]:.2f})")
    crc = c.crc32c
    t0 = time.perf_counter()
    for _ in range(n):
        crc(data)
    print(f"{'crc32c of the batch':22s} {(time.perf_counter() - t0) / n * 1e6:6.2f} us (hot cache)")


if __name__ == "__main__":
    _bench()


# ---- append_in_place: a leader's large append, copied by the caller (pwrite) -----------
# (odk_append_in_place). The oracle is append: the bytes written at st.position by hand,
# then append_in_place, leave the log, indexes and state exactly as append does; every
# refusal or failure zeroes the written bytes, so the log is as append leaves it.

class InPlace(Target):
    """A Target whose appends are a write of the bytes at st.position, then append_in_place."""

    def __init__(self, impl, **kw):
        super().__init__(impl, **kw)
        self.target = impl.append_target(self.log, self.index, self.timeindex)

    def append(self, data, assign=True, epoch=None, append_time=None):
        st = self.st
        st.assign = assign
        st.leader_epoch = -1 if epoch is None else epoch
        st.append_time = -1 if append_time is None else append_time
        end = st.position + len(data)
        if end <= len(self.log):
            self.log[st.position:end] = data
        return self.impl.append_in_place(len(data), self.target, st)


@quick
@given(appends=st.lists(st.lists(batch_spec, min_size=1, max_size=4), min_size=1, max_size=6),
       interval=st.integers(0, 700), base=st.integers(0, 2 ** 40),
       epoch=st.one_of(st.none(), st.integers(0, 2 ** 31 - 1)),
       append_time=st.one_of(st.none(), st.integers(0, 2 ** 62)), flip=st.integers(-1, 5_000),
       value=st.integers(1, 255))
def test_in_place_equals_append(impl, appends, interval, base, epoch, append_time, flip, value):
    p, a = InPlace(impl, base=base, interval=interval), Target(impl, base=base, interval=interval)
    for n, specs in enumerate(appends):
        data = bytearray(b"".join(build(records=r, ts=ts, value_size=v) for r, ts, v in specs))
        if n == len(appends) - 1 and flip >= 0:      # the last one damaged: refused, zeroed
            data[flip % len(data)] ^= value
        data = bytes(data)
        status = a.append(data, epoch=epoch, append_time=append_time)
        assert p.append(data, epoch=epoch, append_time=append_time) == status
        assert p.snapshot() == a.snapshot() and state(p) == state(a)


def test_in_place_refusals_are_appends_and_zero_the_copy(impl):
    p, a = InPlace(impl, log_cap=400, index_cap=1), Target(impl, log_cap=400, index_cap=1)
    one = build(value_size=60)
    assert p.append(b"") == a.append(b"") == Status.EMPTY
    assert p.append(one * 5) == a.append(one * 5) == Status.NO_SPACE      # never written: too long
    assert p.snapshot() == a.snapshot() and state(p) == state(a)
    p.st.index_entries = a.st.index_entries = 1                          # the index is full
    assert p.append(one) == a.append(one) == Status.INDEX_FULL
    assert p.snapshot() == a.snapshot() and bytes(p.log) == bytes(400)   # the written copy zeroed
    with pytest.raises(ValueError):
        impl.append_in_place(-1, p.target, p.st)
    impl.release_target(p.target)
    with pytest.raises(ValueError, match="released"):
        impl.append_in_place(len(one), p.target, p.st)


# ---- record timestamps (check_timestamps: message.timestamp.before/after.max.ms) --------

NOW = 1_700_000_000_000


def checking(t, before=1_000, after=500, now=NOW):
    t.st.check_timestamps, t.st.now_ms = 1, now
    t.st.timestamp_before_ms, t.st.timestamp_after_ms = before, after
    return t


def stamped(*stamps, **kw):
    b = BatchBuilder(**kw)
    for i, ts in enumerate(stamps):
        b.append(ts, b"k%d" % i, b"v")
    return bytes(b.build())


def test_record_timestamps_within_the_range_are_taken_edges_included(impl):
    t = checking(prepared(impl))
    assert t.append(stamped(NOW - 1_000, NOW, NOW + 500)) == Status.OK
    assert t.append(stamped(NOW, -1, NOW)) == Status.OK           # -1 (NO_TIMESTAMP) is not checked
    assert t.append(stamped(-1)) == Status.OK


@pytest.mark.parametrize("stamps,bound,found", [
    ((NOW, NOW + 501), NOW + 500, NOW + 501),                    # one past the future limit
    ((NOW - 1_001, NOW), NOW - 1_000, NOW - 1_001),              # one past the past limit
    ((NOW + 9_000, NOW - 9_000), NOW - 1_000, NOW - 9_000),      # both: the earliest is named
    ((NOW, 2 ** 62), NOW + 500, 2 ** 62),
])
def test_a_leader_refuses_a_batch_with_a_record_timestamp_out_of_range(impl, stamps, bound, found):
    """Kafka's LogValidator (message.timestamp.before/after.max.ms, CreateTime): the whole
    batch, after a good one in the same append, nothing written; a follower stores the
    leader's bytes as they are, unchecked."""
    t = checking(prepared(impl))
    good = stamped(NOW)
    st = assert_refused(t, good + stamped(*stamps), Status.BAD_TIMESTAMP)
    assert (st.batches, st.valid_bytes, st.expected, st.found) == (1, len(good), bound, found)
    assert t.append(with_offsets([stamped(*stamps)], t.st.next_offset)[0], assign=False) == Status.OK


def test_a_batch_stamped_log_append_time_is_checked_by_its_max_timestamp(impl):
    """Every record of such a batch reads as its maxTimestamp, whatever its deltas say."""
    b = bytearray(stamped(NOW, NOW))
    write_log_append_time(b, 0, NOW + 10_000)
    t = checking(prepared(impl))
    st = assert_refused(t, bytes(b), Status.BAD_TIMESTAMP)
    assert (st.expected, st.found) == (NOW + 500, NOW + 10_000)
    write_log_append_time(b, 0, NOW)
    assert t.append(bytes(b)) == Status.OK


def test_the_range_saturates_and_an_unchecked_state_takes_anything(impl):
    t = checking(prepared(impl), before=2 ** 63 - 1, after=2 ** 63 - 1)   # now +- Long.MAX: saturated
    assert t.append(stamped(-(2 ** 61), 2 ** 61)) == Status.OK
    t.st.check_timestamps = 0
    assert t.append(stamped(NOW + 10 ** 9)) == Status.OK
    t = checking(prepared(impl), before=0, after=0)
    assert t.append(stamped(NOW)) == Status.OK
    assert_refused(t, stamped(NOW + 1), Status.BAD_TIMESTAMP)


def test_wide_timestamp_deltas_saturate_instead_of_wrapping(impl):
    """baseTimestamp + timestampDelta past int64 reads as int64's limit (out of any range),
    not as a wrapped negative timestamp that a wide past limit would let through."""
    b = bytearray(stamped(0, 10))                     # the second record's delta: 10
    struct.pack_into(">q", b, 27, 2 ** 63 - 5)        # baseTimestamp
    struct.pack_into(">I", b, 17, client_ref.crc32c(bytes(b[21:])))
    t = checking(prepared(impl), before=2 ** 63 - 1, after=10)
    st = assert_refused(t, bytes(b), Status.BAD_TIMESTAMP)
    assert (st.expected, st.found) == (NOW + 10, 2 ** 63 - 1)
