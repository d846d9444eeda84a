"""LeaderFiles: reading a live leader PartitionLog's segment files by pread, as a follower
does. The leader is a real PartitionLog in a temp dir, appending, rolling, deleting by
retention and swapping in compacted segments between reads."""
import os
import struct

import pytest

from odradek.client.errors import CorruptRecord, OffsetOutOfRange
from odradek.client.records import iter_batches
from odradek.daemon.replication.leader_files import LeaderFiles, OffsetBelowLogStart
from odradek.daemon.storage.cleaner import LogCleaner
from support.clock import FakeClock
from support.compaction import Model, fill
from support.replication import Pair, assert_identical, copy_all

SMALL = {"segment.bytes": 1024, "index.interval.bytes": 100}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_pair(tmp_path, clock):
    made = []

    def _make(config=SMALL):
        pair = Pair(tmp_path, clock, config)
        made.append(pair)
        return pair

    yield _make
    for pair in made:
        pair.close()


def batches(data):
    """(baseOffset, lastOffset, crc valid) of each batch in `data`."""
    return [(b.base_offset, b.last_offset, b.crc_valid()) for _, b in iter_batches(memoryview(data))]


def leader_bytes(log, offset, end=None):
    """The leader's own answer: the bytes of its segment from the batch holding `offset`."""
    fetched = log.read(offset, 1 << 30, max_offset=end)
    return bytes(fetched.view), fetched.segment_base


def test_reads_whole_batches_of_one_segment_from_the_batch_holding_the_offset(make_pair):
    pair = make_pair()
    pair.produce(batches=40, records=3)
    leo = pair.leader.log_end_offset
    for offset in (0, 1, 7, 50, 61, leo - 1):
        chunk = pair.files.read(offset, leo, 1 << 20)
        expected, base = leader_bytes(pair.leader, offset)
        assert (chunk.data, chunk.segment_base) == (expected, base)
        found = batches(chunk.data)
        assert found[0][0] <= offset <= found[0][1] and chunk.first_offset == found[0][0]
        assert chunk.next_offset == found[-1][1] + 1
        segment = next(s for s in pair.leader.segments if s.base_offset == base)
        assert chunk.next_offset == segment.next_offset    # the rest of that segment, no more


def test_max_bytes_bounds_a_chunk_but_one_batch_always_comes(make_pair):
    pair = make_pair()
    pair.produce(batches=5, records=2)
    one = len(pair.files.read(0, 10, 1).data)
    assert batches(pair.files.read(0, 10, 1).data) == [(0, 1, True)]
    assert batches(pair.files.read(0, 10, 2 * one + one // 2).data) == [(0, 1, True), (2, 3, True)]


def test_nothing_at_or_past_end_offset_is_returned(make_pair):
    pair = make_pair({"segment.bytes": 1 << 20})
    pair.produce(batches=10, records=2)              # batches 0-1, 2-3, ... 18-19
    chunk = pair.files.read(0, 7, 1 << 20)
    assert batches(chunk.data) == [(0, 1, True), (2, 3, True), (4, 5, True)]
    assert chunk.next_offset == 6
    assert pair.files.read(6, 7, 1 << 20).data == b""   # the batch holding 6 ends at 7
    assert pair.files.read(6, 7, 1 << 20, hint=chunk.next_hint).data == b""
    assert pair.files.read(7, 7, 1 << 20).data == b""
    # half-written bytes past the published end: a header of garbage is never parsed
    active = pair.leader.active
    with open(active.log.path, "r+b") as f:
        f.seek(active.size)
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05" + b"\xff" * 40)
    chunk = pair.files.read(0, 20, 1 << 20)
    assert [b[1] for b in batches(chunk.data)] == list(range(1, 20, 2)) and chunk.next_offset == 20
    assert pair.files.read(20, 20, 1 << 20, hint=chunk.next_hint).data == b""


def test_a_hint_is_used_when_it_holds_the_offset_and_ignored_when_wrong(make_pair, monkeypatch):
    pair = make_pair()
    pair.produce(batches=40, records=2)
    leo = pair.leader.log_end_offset
    first = pair.files.read(0, leo, 300)
    expected = pair.files.read(first.next_offset, leo, 300)
    preads = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, pos: preads.append(pos) or real_pread(fd, n, pos))
    assert pair.files.read(first.next_offset, leo, 300, hint=first.next_hint) == expected
    assert preads == [first.next_hint[1]]               # one pread at the hinted position
    for wrong in [(first.segment_base, first.next_hint[1] + 5),   # inside a batch
                  (first.segment_base, 0),                          # another batch
                  (first.segment_base, 10 ** 6),                    # past the file
                  (first.segment_base, -1),                         # no position at all
                  (12345, 0)]:                                      # no such segment
        assert pair.files.read(first.next_offset, leo, 300, hint=wrong) == expected


def test_descriptors_stay_open_between_reads_and_close_cleanly(make_pair):
    pair = make_pair()
    pair.produce(batches=40)
    pair.leader.flush()   # its rolls' background fsyncs are done: their descriptors closed

    def open_in_leader_dir():
        fds = os.listdir("/proc/self/fd")
        links = []
        for fd in fds:
            try:
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return [link for link in links if link.startswith(pair.leader_dir)]

    before = open_in_leader_dir()   # the leader's own (active segment files)
    files = LeaderFiles(pair.leader_dir)
    chunk = files.read(0, 40, 200)
    while chunk.data:
        chunk = files.read(chunk.next_offset, 40, 200, hint=chunk.next_hint)
    assert len(open_in_leader_dir()) == len(before) + 1
    files.close()
    assert open_in_leader_dir() == before


def test_retention_below_the_follower_gives_offset_out_of_range_then_copying_resumes(make_pair):
    pair = make_pair({**SMALL, "retention.bytes": 3000})
    pair.produce(batches=15)
    copy_all(pair)
    pair.produce(batches=80)
    assert pair.leader.delete_old_segments() > 0
    assert pair.leader.log_start_offset > pair.follower.log_end_offset
    with pytest.raises(OffsetOutOfRange) as raised:
        pair.files.read(pair.follower.log_end_offset, pair.leader.log_end_offset, 1 << 20)
    assert isinstance(raised.value, OffsetBelowLogStart)
    assert raised.value.earliest_offset == pair.leader.log_start_offset
    pair.follower.truncate_fully_and_start_at(raised.value.earliest_offset)
    copy_all(pair, max_bytes=250)
    assert_identical(pair, from_offset=raised.value.earliest_offset)
    assert pair.follower.log_start_offset == pair.leader.log_start_offset


def test_a_compaction_swap_between_reads_is_relocated_consistently(tmp_path, clock):
    pair = Pair(tmp_path, clock, {"cleanup.policy": "compact", "segment.bytes": 1024,
                                  "index.interval.bytes": 128})
    try:
        model = Model()
        fill(pair.leader, model, 300, keys=2)
        leo = pair.leader.log_end_offset
        read, chunk = [], pair.files.read(0, leo, 400)
        for _ in range(3):
            read += batches(chunk.data)
            chunk = pair.files.read(chunk.next_offset, leo, 400, hint=chunk.next_hint)
        assert LogCleaner(pair.leader).clean().state == "done"
        for hint in (chunk.next_hint, None):      # the stale hint, and locating from scratch
            got, c, offset = list(read), None, read[-1][1] + 1
            for _ in range(1000):
                c = pair.files.read(offset, leo, 400, hint=hint)
                if not c.data:
                    break
                got += batches(c.data)
                offset, hint = c.next_offset, c.next_hint
            assert offset == leo
            firsts = [b[0] for b in got]
            assert all(b[2] for b in got) and firsts == sorted(set(firsts))
            assert all(a[1] < b[0] for a, b in zip(got, got[1:]))
        # after the swap, reads from scratch see the cleaned files: gaps read as the next batch
        first, second = (s.batch_at(0) for s in pair.leader.segments[:2])
        assert first.base_offset > 1 and second.base_offset > first.last_offset + 1   # gaps
        assert pair.files.read(1, leo, 1).first_offset == first.base_offset
        assert pair.files.read(first.last_offset + 1, leo, 1).first_offset == second.base_offset
    finally:
        pair.close()


def test_an_offset_in_a_gap_at_a_segment_end_reads_from_the_next_segment(make_pair):
    pair = make_pair()
    pair.produce(batches=40)
    second = pair.leader.segments[1]
    chunk = pair.files.read(second.base_offset, 40, 1)
    assert (chunk.segment_base, chunk.position, chunk.first_offset) == (second.base_offset, 0, second.base_offset)
    last_of_first = pair.files.read(second.base_offset - 1, 40, 1 << 20)
    assert last_of_first.segment_base == pair.leader.segments[0].base_offset
    nxt = pair.files.read(last_of_first.next_offset, 40, 1, hint=last_of_first.next_hint)
    assert nxt.segment_base == second.base_offset    # the hint at the file's end: the next file


def corrupt(pair, segment_index, batch_index, field_at, fmt, value):
    """Overwrite a header field of a leader batch on disk; returns (path, batch position)."""
    segment = pair.leader.segments[segment_index]
    position = list(segment.batches_from())[batch_index].position
    with open(segment.log.path, "r+b") as f:
        f.seek(position + field_at)
        f.write(struct.pack(fmt, value))
    return segment.log.path, position


@pytest.mark.parametrize("field_at,fmt,value,message", [
    (8, ">i", 5, "impossible batch header"),                   # batchLength below a header
    (8, ">i", -1, "impossible batch header"),
    (8, ">i", 0x7FFFFFF0, "past the end of the file"),        # huge: never allocated
    (0, ">q", 0, "not above the previous batch"),              # baseOffset going backwards
    (23, ">i", -3, "impossible batch header"),                 # lastOffsetDelta
])
def test_corrupt_leader_headers_raise_corrupt_record_naming_file_and_position(make_pair, field_at, fmt, value,
                                                                                message):
    pair = make_pair({"segment.bytes": 1024})   # no index entries: locating walks from position 0
    pair.produce(batches=40)
    path, position = corrupt(pair, 0, 3, field_at, fmt, value)
    leo = pair.leader.log_end_offset
    reads = [lambda: pair.files.read(5, leo, 1),                 # locating: walks through batch 3
             lambda: pair.files.read(3, leo, 1 << 20, hint=(0, position))]
    if field_at == 8 and value > 0x7FFF:
        # a chunk from 0 stops before the batch that does not fit; the read after it raises
        assert pair.files.read(0, leo, 1 << 20).next_offset == 3
    else:
        reads.append(lambda: pair.files.read(0, leo, 1 << 20))   # met inside a chunk
    for read in reads:
        with pytest.raises(CorruptRecord, match=message) as raised:
            read()
        assert path in str(raised.value) and f"position {position}" in str(raised.value)


def test_an_empty_or_missing_partition_dir_reads_nothing(tmp_path):
    files = LeaderFiles(str(tmp_path / "orders-0"))
    assert files.read(0, 10, 100).data == b""
    os.mkdir(tmp_path / "orders-0")
    assert files.read(0, 10, 100) == (None, None, b"", 0, 0)
    files.close()


def test_a_segment_deleted_under_an_open_descriptor_reads_on_then_goes_out_of_range(make_pair):
    pair = make_pair({**SMALL, "retention.bytes": 2000})
    pair.produce(batches=60)
    leo = pair.leader.log_end_offset
    chunk = pair.files.read(0, leo, 200)
    first_segment_end = pair.leader.segments[0].next_offset
    assert pair.leader.delete_old_segments() > 0 and pair.leader.log_start_offset > first_segment_end
    got = batches(chunk.data)
    for _ in range(100):   # the open descriptor keeps the deleted file's bytes: still whole batches
        if chunk.next_offset >= first_segment_end:
            break
        chunk = pair.files.read(chunk.next_offset, leo, 200, hint=chunk.next_hint)
        got += batches(chunk.data)
    assert [b[0] for b in got] == list(range(first_segment_end)) and all(b[2] for b in got)
    with pytest.raises(OffsetBelowLogStart):   # its end: the hint finds no batch, locating finds no file
        pair.files.read(first_segment_end, leo, 200, hint=chunk.next_hint)
