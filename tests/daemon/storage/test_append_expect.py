"""An append held to the batch headers its caller checked (odradek.h, odk_append_state's
expect / expect_count; ODK_CHANGED): a leader checks a producer's batch header in the
producer's ring, which the producer can still rewrite, and the log then copies the
ring. The copy must hold exactly the batches whose headers were checked, else nothing
is appended (CorruptRecord). C and the pure-Python reference run the same suite (the
`impl` fixture) and are compared directly on random changes; then PartitionLog.append
and append_parts, small (copied into the map) and large (pwritten) appends."""
import os
import random

import pytest

from odradek.client import _native_ref as client_ref
from odradek.client.errors import CorruptRecord
from odradek.client.records import BATCH_HEADER_SIZE, CONTROL_MASK, TRANSACTIONAL_MASK, BatchBuilder, read_header
from odradek.client.records.layout import (ATTRIBUTES_OFFSET, HEADER_STRUCT, PRODUCER_EPOCH_OFFSET,
                                           PRODUCER_ID_OFFSET, BASE_SEQUENCE_OFFSET, RECORDS_COUNT_OFFSET)
from odradek.daemon.storage import LogConfig, PartitionLog, _native_ref as ref, segment
from support.clock import FakeClock
from support.native import impl_fixture
from support.records import read_all

Status = client_ref.Status
impl = impl_fixture("odradek.daemon.storage._native_cffi", ref)


def batch(seq=0, records=2, producer_id=7, epoch=0, size=20):
    b = BatchBuilder(producer_id=producer_id, producer_epoch=epoch, base_sequence=seq)
    for i in range(records):
        b.append(1_000 + i, b"k%d" % i, bytes([i & 0xFF]) * size)
    return bytes(b.build())


# field: (where it starts in the header, the header changed there)
CHANGES = {
    "producer_id": (PRODUCER_ID_OFFSET, lambda h: h._replace(producer_id=h.producer_id + 1)),
    "producer_epoch": (PRODUCER_EPOCH_OFFSET, lambda h: h._replace(producer_epoch=h.producer_epoch + 1)),
    "base_sequence": (BASE_SEQUENCE_OFFSET, lambda h: h._replace(base_sequence=h.base_sequence + 5)),
    "attributes": (ATTRIBUTES_OFFSET, lambda h: h._replace(attributes=h.attributes | CONTROL_MASK)),
    "records_count": (RECORDS_COUNT_OFFSET, lambda h: h._replace(records_count=h.records_count + 1)),
}


def first_difference(a, b):
    x, y = HEADER_STRUCT.pack(*a), HEADER_STRUCT.pack(*b)
    return next(i for i in range(BATCH_HEADER_SIZE) if x[i] != y[i])


class Target:
    """A segment as native.append sees it, with an expectation buffer bound to its state."""

    def __init__(self, impl, log_cap=1 << 16):
        self.impl = impl
        self.log, self.index, self.timeindex = bytearray(log_cap), bytearray(8 * 64), bytearray(12 * 64)
        self.st = impl.append_state(index_interval=0)
        self.expect = impl.expect_buffer(self.st, 8)
        self.target = impl.append_target(self.log, self.index, self.timeindex)

    def hold_to(self, headers):
        for i, h in enumerate(headers):
            HEADER_STRUCT.pack_into(self.expect, i * BATCH_HEADER_SIZE, *h)
        self.st.expect_count = len(headers)

    def append(self, data, headers=None, in_place=False):
        if headers is not None:
            self.hold_to(headers)
        if not in_place:
            return self.impl.append(data, self.log, self.index, self.timeindex, self.st)
        end = self.st.position + len(data)
        self.log[self.st.position:end] = data
        return self.impl.append_in_place(len(data), self.target, self.st)

    def snapshot(self):
        st = self.st
        return (bytes(self.log), bytes(self.index), bytes(self.timeindex),
                (st.position, st.next_offset, st.index_entries, st.time_entries))

    def result(self):
        st = self.st
        return st.status, st.batches, st.valid_bytes, st.expected, st.found


def headers_of(*batches):
    return [read_header(b) for b in batches]


@pytest.mark.parametrize("in_place", [False, True])
def test_a_copy_holding_the_headers_checked_appends_as_without_them(impl, in_place):
    held, free = Target(impl), Target(impl)
    for n in range(3):
        data = [batch(seq=2 * n), batch(seq=2 * n + 1, records=3)][:n % 2 + 1]
        assert held.append(b"".join(data), headers_of(*data), in_place) == Status.OK
        assert held.st.expect_count == 0                        # consumed
        assert free.append(b"".join(data), in_place=in_place) == Status.OK
        assert held.snapshot() == free.snapshot() and held.result() == free.result()


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changed_header_is_refused_where_it_differs_and_nothing_is_appended(impl, change, in_place):
    t = Target(impl)
    assert t.append(batch(seq=0)) == Status.OK
    before = t.snapshot()
    first, second = batch(seq=1), batch(seq=2)
    start, changed = CHANGES[change]
    checked = [read_header(first), changed(read_header(second))]
    at = first_difference(read_header(second), checked[1])
    assert start <= at < start + 8
    assert t.append(first + second, checked, in_place) == Status.CHANGED
    assert t.result() == (Status.CHANGED, 1, len(first), at, -1)
    assert t.snapshot() == before and not any(t.log[t.st.position:])   # the copy zeroed again
    assert t.st.expect_count == 0
    assert t.append(first + second, headers_of(first, second), in_place) == Status.OK   # then a good one


@pytest.mark.parametrize("in_place", [False, True])
def test_a_copy_with_more_or_fewer_batches_than_checked_is_refused(impl, in_place):
    t = Target(impl)
    a, b, c = batch(seq=0), batch(seq=1), batch(seq=2)
    before = t.snapshot()
    assert t.append(a + b, headers_of(a), in_place) == Status.CHANGED
    assert t.result() == (Status.CHANGED, 1, len(a), 1, 2)             # the extra batch, at its position
    assert t.append(a, headers_of(a, b, c), in_place) == Status.CHANGED
    assert t.result() == (Status.CHANGED, 1, len(a), 3, 1)             # the copy ends where b was expected
    assert t.snapshot() == before and not any(t.log)


def test_every_call_consumes_the_expectation_and_a_scan_failure_wins(impl):
    t = Target(impl)
    good, other = batch(seq=0), batch(seq=0, producer_id=9)
    assert t.append(b"", headers_of(other)) == Status.EMPTY            # refused up front: consumed too
    assert t.st.expect_count == 0 and t.append(good) == Status.OK       # no stale expectation left
    damaged = bytearray(batch(seq=1))
    damaged[-1] ^= 0xFF
    assert t.append(bytes(damaged), headers_of(other)) == Status.BAD_CRC   # validation first
    st = impl.append_state(assign=False)   # a follower's check (its own buffer) holds to nothing
    expect = impl.expect_buffer(st, 1)
    HEADER_STRUCT.pack_into(expect, 0, *read_header(other))
    st.expect_count = 1
    assert impl.append_check(good, t.target, st) == Status.OK and st.expect_count == 0


def test_c_and_the_reference_agree_on_random_changes():
    c_impl = pytest.importorskip("odradek.daemon.storage._native_cffi")
    rnd = random.Random(13)
    for _ in range(300):
        data = [batch(seq=i, records=rnd.randint(1, 4), size=rnd.randint(1, 40)) for i in range(rnd.randint(1, 4))]
        raw = bytearray(b"".join(bytes(HEADER_STRUCT.pack(*h)) for h in headers_of(*data)))
        raw[rnd.randrange(len(raw))] ^= rnd.choice((0, 1 << rnd.randrange(8)))   # 0: unchanged
        count = len(data) + rnd.choice((0, 0, 0, -1, 1)) if len(data) > 1 else 1
        raw += bytes(BATCH_HEADER_SIZE)
        headers = [HEADER_STRUCT.unpack_from(raw, i * BATCH_HEADER_SIZE) for i in range(max(count, 1))]
        in_place = rnd.random() < 0.5
        results = []
        for implementation in (c_impl, ref):
            t = Target(implementation)
            t.append(b"".join(data), headers, in_place)
            results.append((t.result(), t.snapshot()))
        assert results[0] == results[1]


def test_an_expectation_longer_than_its_buffer_is_refused(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({}), FakeClock())
    try:
        data = batch()
        with pytest.raises(ValueError, match="at most 64"):
            log.append(data, expect=headers_of(data) * (segment.EXPECT_HEADERS + 1))
        assert log.log_end_offset == 0
        with pytest.raises(ValueError):
            ref.expect_buffer(ref.append_state(), 0)
    finally:
        log.close()


# ---- PartitionLog: append and append_parts -----------------------------------------------

CONFIG = {"segment.bytes": 1 << 20, "index.interval.bytes": 4096}


def files(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


def big(seq, records=60, producer_id=7):
    """A batch large enough that a few make a pwritten append (segment.PWRITE_MIN)."""
    return batch(seq=seq, records=records, producer_id=producer_id, size=600)


@pytest.mark.parametrize("size", ["copied", "pwritten"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_log_refuses_an_append_whose_batch_is_not_the_one_checked(tmp_path, change, size):
    directory = tmp_path / "t-0"
    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())
    try:
        make = batch if size == "copied" else big
        log.append(make(0), expect=headers_of(make(0)))
        log.flush()
        end, position, before = log.log_end_offset, log.active.size, files(directory)
        data = make(1)
        assert (len(data) >= segment.PWRITE_MIN) == (size == "pwritten")
        with pytest.raises(CorruptRecord, match=f"changed while it was appended .*{change}"):
            log.append(data, expect=[CHANGES[change][1](read_header(data))])
        log.flush()
        assert (log.log_end_offset, log.active.size) == (end, position)
        assert files(directory) == before                       # .log (the copy zeroed), indexes
        info = log.append(data, expect=headers_of(data))        # the same batch, as checked
        assert (info.first_offset, info.batches) == (end, 1)
        assert len(read_all(log)) == 2 * read_header(data).records_count
    finally:
        log.close()


def test_a_run_with_one_changed_header_in_the_middle_is_refused_whole(tmp_path):
    directory = tmp_path / "t-0"
    log = PartitionLog(str(directory), LogConfig(CONFIG), FakeClock())
    try:
        log.append(batch(0))
        log.flush()
        before = files(directory)
        parts = [memoryview(big(seq)) for seq in range(1, 5)]
        n = sum(map(len, parts))
        assert n >= segment.PWRITE_MIN
        checked = headers_of(*parts)
        forged = list(checked)
        forged[2] = forged[2]._replace(attributes=forged[2].attributes | TRANSACTIONAL_MASK)
        with pytest.raises(CorruptRecord, match="batch 2 .* changed"):
            log.append_parts(parts, n, expect=forged)
        log.flush()
        assert log.log_end_offset == 2 and files(directory) == before
        info = log.append_parts(parts, n, expect=checked)
        assert (info.first_offset, info.batches) == (2, 4)
    finally:
        log.close()


def test_the_retry_after_a_roll_is_held_to_the_headers_too(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({"segment.bytes": 16384}), FakeClock())
    try:
        data = big(1, records=4)
        for _ in range(16384 // len(data)):
            if log.active.size + len(data) > 16384:
                break
            log.append(big(0, records=4))
        assert len(log.segments) == 1 and log.active.size + len(data) > 16384   # NO_SPACE, then the roll
        end = log.log_end_offset
        with pytest.raises(CorruptRecord, match="changed"):
            log.append(data, expect=[read_header(data)._replace(producer_id=9)])
        assert log.log_end_offset == end and log.active.size == 0   # rolled, nothing in the new one
        assert log.append(data, expect=headers_of(data)).first_offset == end
    finally:
        log.close()
