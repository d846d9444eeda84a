"""The partition state: seqlocked snapshots that are never torn, bounded failure when
the writer died mid-update, change waits across processes, and the batch descriptor
window searched like a sorted Python list."""
import contextlib
import mmap
import os
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.client.shm import (BadLayout, BatchDescriptor, NotInWindow, PartitionState,
                                 SealUnsupported, TornState)
from odradek.client.shm._memfd import Mapping, create_memfd, seal_writes
from odradek.client.shm import partition_state as ps_module
from odradek.client.shm._lib import lib

DEADLINE = 30.0


@pytest.fixture
def state(fds_to_close):
    """make(slots, **initial) -> (writer, reader, fds): the reader maps the read-only
    fds a consumer would get."""
    made = []

    def make(slots=16, **initial):
        writer, fds = PartitionState.create(slots, **initial)
        fds_to_close.extend(fds)
        rfds = fds.for_readers()
        fds_to_close.extend(rfds)
        reader = PartitionState.attach(*rfds)
        made.extend((writer, reader))
        return writer, reader, fds
    yield make
    for obj in made:
        obj.close()


@contextlib.contextmanager
def writer_and_reader(slots):
    """(writer, reader) of a new state, closed at the end: the `state` fixture for a
    hypothesis test, which makes one state per example."""
    writer, fds = PartitionState.create(slots)
    rfds = fds.for_readers()
    reader = PartitionState.attach(*rfds)
    fds.close()
    rfds.close()
    with writer, reader:
        yield writer, reader


def publish_forever(writer):
    """In a forked child: publish state n = 1, 2, 3, ... as fast as it can, every field
    a function of n (see consistent_state), until killed (or DEADLINE passes)."""
    ps = writer.take_over()
    deadline = time.monotonic() + DEADLINE
    n = 0
    while n % 4096 or time.monotonic() < deadline:
        n += 1
        ps.update(log_start_offset=n, high_watermark=2 * n, log_end_offset=3 * n,
                  leader_epoch=n & 0x7FFFFFFF, active_segment_base=5 * n)


def append_forever(writer):
    """In a forked child: append batch i = 0, 1, 2, ... (see descriptor_for) as fast as
    it can, until killed (or DEADLINE passes)."""
    ps = writer.take_over()
    deadline = time.monotonic() + DEADLINE
    i = 0
    while i % 4096 or time.monotonic() < deadline:
        d = descriptor_for(i)
        ps.append(d.base_offset, d.last_offset, d.segment_base, d.position, d.size,
                  d.max_timestamp, high_watermark=10 * i + 10)
        i += 1


def consistent_state(snap):
    """publish_forever publishes every field as a function of one n."""
    n = snap.log_start_offset
    return (snap.high_watermark, snap.log_end_offset, snap.leader_epoch,
            snap.active_segment_base) == (2 * n, 3 * n, n & 0x7FFFFFFF, 5 * n)


def descriptor_for(i):
    """append_forever's batch i."""
    return BatchDescriptor(10 * i, 10 * i + 9, 1000 * (i // 100), 100 * (i % 100),
                           77 + i % 50, 5000 + i)


# ---- snapshots -----------------------------------------------------------------------

def test_a_new_state_holds_the_values_it_was_created_with(state):
    _, reader, _ = state(log_start_offset=5, high_watermark=9, log_end_offset=12,
                         leader_epoch=3, active_segment_base=5)
    snap = reader.read()
    assert snap[:6] == (5, 9, 12, 3, 5, False)
    assert snap.change % 2 == 0 and snap.change > 0


def test_update_changes_only_the_fields_given_and_bumps_the_change_counter_by_two(state):
    writer, reader, _ = state(log_end_offset=10, high_watermark=4)
    before = reader.read()
    change = writer.update(high_watermark=8)
    after = reader.read()
    assert after.change == change == before.change + 2
    assert after._replace(change=0) == before._replace(high_watermark=8, change=0)


def test_readers_map_the_state_read_only(state):
    _, reader, fds = state()
    assert not reader.writable
    with pytest.raises(PermissionError):
        reader.update(high_watermark=1)
    with pytest.raises(TypeError):
        reader._map.view[ps_module.OFF_HIGH_WATERMARK] = 1
    ro = fds.for_readers()
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(ro.state, 0, access=mmap.ACCESS_WRITE)
    finally:
        ro.close()


def test_no_fd_of_the_state_can_write_it_not_even_one_reopened_read_write(state, fds_to_close):
    # Issue 8, defect 2: a consumer reopened /proc/self/fd/N read-write and forged the
    # log start that every other consumer read.
    writer, reader, fds = state(log_start_offset=3)
    ro = fds.for_readers()
    fds_to_close.extend(ro)
    rw = os.open(f"/proc/self/fd/{ro.state}", os.O_RDWR)
    fds_to_close.append(rw)
    for fd in (rw, fds.state):       # the consumer's reopened fd, and the creator's own
        with pytest.raises(PermissionError):
            os.pwrite(fd, struct.pack("<q", 15), ps_module.OFF_LOG_START)
        with pytest.raises(PermissionError):
            mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE)
    with pytest.raises(BadLayout, match="sealed against writes"):
        Mapping(rw, writable=True)
    other = PartitionState.attach(rw)
    assert not other.writable
    other.close()
    assert reader.read().log_start_offset == 3
    writer.update(log_start_offset=4)    # the mapping made before the seal still writes
    assert reader.read().log_start_offset == 4


def test_attach_refuses_a_state_not_sealed_against_writes(state, fds_to_close):
    _, _, fds = state()
    size = os.fstat(fds.state).st_size
    copy = create_memfd("unsealed-copy", size)
    fds_to_close.append(copy)
    os.pwrite(copy, os.pread(fds.state, size, 0), 0)
    with pytest.raises(BadLayout, match="not sealed against writes"):
        PartitionState.attach(copy)


def test_a_kernel_that_refuses_the_write_seal_is_a_named_error(fds_to_close):
    fd = os.open(os.devnull, os.O_RDWR)   # F_ADD_SEALS answers EINVAL, as Linux < 5.1 does
    fds_to_close.append(fd)
    with pytest.raises(SealUnsupported, match="Linux 5.1"):
        seal_writes(fd)


def test_a_reader_never_sees_a_torn_state_while_another_process_writes(state, forks):
    # Control, measured on the dev VM: the same loop reading the fields without the
    # seqlock (one 56-byte copy) finds ~1% of them torn, ~1000 of 100k.
    writer, reader, fds = state()
    forks.start(lambda: publish_forever(writer))
    changes, reads = set(), 0
    deadline = time.monotonic() + DEADLINE
    # at least 100k reads, and on until they overlapped 1000 updates (a loaded machine
    # may run the two processes in turns rather than at once)
    while reads < 100_000 or (len(changes) < 1000 and time.monotonic() < deadline):
        snap = reader.read()
        assert consistent_state(snap), snap
        changes.add(snap.change)
        reads += 1
    assert len(changes) >= 1000, "the writer hardly ran: the test proved nothing"


def test_a_writer_that_died_mid_update_makes_readers_fail_fast_not_hang(state):
    writer, reader, _ = state()
    snap = reader.read()
    lib.odk_atomic_store_u32(writer._ptr, ps_module.OFF_SEQ, snap.change + 1)   # odd: died
    t0 = time.monotonic()
    with pytest.raises(TornState):
        reader.read()
    with pytest.raises(TornState):
        reader.find(0)
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(TornState):
        reader.read(max_retries=3)
    # a waiter does not sleep through it: the word is not the even value it waits on
    assert reader.wait_for_change(snap.change, timeout=DEADLINE) is True


def test_the_creator_can_take_over_a_dead_writers_state_and_fence_it(state, forks):
    writer, reader, fds = state(high_watermark=7)
    seen = reader.read().change

    def die_mid_update():    # a worker forked from the broker: one update, then killed in the next
        w = writer.take_over()
        change = w.update(high_watermark=9)
        lib.odk_atomic_store_u32(w._ptr, ps_module.OFF_SEQ, change + 1)
    assert forks.join(forks.start(die_mid_update)) == 0
    with pytest.raises(TornState):
        reader.read(max_retries=3)
    writer.take_over().fence()        # the broker, writer again: from the page, not its old copy
    snap = reader.read()
    assert snap.fenced and snap.high_watermark == 9 and snap.change == seen + 4


# ---- waiting -------------------------------------------------------------------------

def test_wait_for_change_times_out_when_nothing_changes(state):
    _, reader, _ = state()
    seen = reader.read().change
    t0 = time.monotonic()
    assert reader.wait_for_change(seen, timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.05


def test_a_consumer_in_another_process_is_woken_by_an_append(state, spawn, futex_sleep):
    writer, reader, fds = state()
    rfds = fds.for_readers()
    child = spawn("pstate-wait-change", *rfds, fds=tuple(rfds))
    rfds.close()
    child.expect("waiting")
    futex_sleep(child.pid)
    writer.append(0, 9, 0, 0, 100, 1, high_watermark=10)
    got, hw, fenced = child.expect("done")
    assert (got, hw, fenced) == ("True", "10", "0")


def test_fencing_wakes_sleeping_consumers(state, spawn, futex_sleep):
    writer, _, fds = state()
    rfds = fds.for_readers()
    child = spawn("pstate-wait-change", *rfds, fds=tuple(rfds))
    rfds.close()
    child.expect("waiting")
    futex_sleep(child.pid)
    writer.fence()
    assert child.expect("done") == ["True", "0", "1"]


# ---- the descriptor window -------------------------------------------------------------

def reference_find(descs, first, slots, log_end_offset, offset):
    """What find() must answer, from a plain list of every descriptor ever appended."""
    end = len(descs)
    window = descs[max(first, end - (slots - 1)):end]
    if not window:
        return None if offset >= log_end_offset else NotInWindow
    for i, d in enumerate(window):
        if d.last_offset >= offset:
            if i == 0 and offset < d.base_offset:
                return NotInWindow
            return d
    return None


def answer(reader, offset):
    try:
        return reader.find(offset)
    except NotInWindow:
        return NotInWindow


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slots=st.integers(2, 12),
       batches=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.booleans()),
                        max_size=60),
       queries=st.lists(st.integers(-3, 400), max_size=40))
def test_find_agrees_with_a_search_of_the_list_of_appended_batches(slots, batches, queries):
    with writer_and_reader(slots) as (writer, reader):
        check_against_list(writer, reader, slots, batches, queries)


def check_against_list(writer, reader, slots, batches, queries):
    descs, first, leo = [], 0, 0
    for i, (records_minus_1, gap, truncate) in enumerate(batches):
        if truncate and descs:
            leo = descs[-1].base_offset          # drop the last batch from the log
            writer.truncate(leo)
            first = len(descs)
        base = leo + gap
        d = BatchDescriptor(base, base + records_minus_1, base - base % 50, 61 * i, 61, i)
        writer.append(d.base_offset, d.last_offset, d.segment_base, d.position, d.size,
                      d.max_timestamp)
        descs.append(d)
        leo = d.last_offset + 1
    assert reader.read().log_end_offset == leo
    for offset in queries + [d.base_offset for d in descs] + [d.last_offset for d in descs]:
        assert answer(reader, offset) == reference_find(descs, first, slots, leo, offset), offset


def test_the_window_holds_the_last_slots_minus_one_batches(state):
    writer, reader, _ = state(slots=4)
    for i in range(10):
        writer.append(10 * i, 10 * i + 9, 0, i, 10, 0)
    assert reader.find(70).base_offset == 70
    assert reader.find(99).base_offset == 90
    assert reader.find(100) is None
    with pytest.raises(NotInWindow):
        reader.find(69)


def test_append_refuses_batches_out_of_offset_order(state):
    writer, _, _ = state()
    writer.append(0, 9, 0, 0, 10, 0)
    with pytest.raises(ValueError):
        writer.append(5, 12, 0, 10, 10, 0)
    with pytest.raises(ValueError):
        writer.append(20, 19, 0, 10, 10, 0)


def test_a_truncation_empties_the_window_and_caps_the_high_watermark(state):
    writer, reader, _ = state()
    for i in range(5):
        writer.append(10 * i, 10 * i + 9, 0, i, 10, 0, high_watermark=10 * i + 10)
    writer.truncate(30)
    snap = reader.read()
    assert (snap.log_end_offset, snap.high_watermark) == (30, 30)
    with pytest.raises(NotInWindow):
        reader.find(10)
    assert reader.find(30) is None
    writer.append(30, 31, 0, 99, 10, 0)
    assert reader.find(30).position == 99


def test_find_never_returns_a_torn_descriptor_while_another_process_appends(state, forks):
    writer, reader, fds = state(slots=64)
    forks.start(lambda: append_forever(writer))
    found = 0
    hws = set()
    deadline = time.monotonic() + DEADLINE
    while found < 5000 or (len(hws) < 500 and time.monotonic() < deadline):
        hw = reader.read().high_watermark
        hws.add(hw)
        offset = max(0, hw - 300)
        try:
            d = reader.find(offset)
        except NotInWindow:   # the appender lapped the window meanwhile
            continue
        if d is not None:
            assert d == descriptor_for(d.base_offset // 10), d
            assert d.base_offset <= offset <= d.last_offset
            found += 1
    assert len(hws) >= 500, "the appender hardly ran: the test proved nothing"


def test_attach_checks_the_layout(fds_to_close):
    from odradek.client.shm import BadLayout, Doorbell, Ring
    ring, ring_fd = Ring.create(64)
    bell, bell_fd = Doorbell.create()
    ps, fds = PartitionState.create(4)
    fds_to_close.extend((ring_fd, bell_fd, *fds))
    with pytest.raises(BadLayout):
        PartitionState.attach(ring_fd)
    with pytest.raises(BadLayout):
        PartitionState.attach(bell_fd)
    with pytest.raises(ValueError):
        PartitionState.create(1)
    for obj in (ring, bell, ps):
        obj.close()


def test_wait_for_any_wakes_on_a_change_of_any_of_several_states(state, futex_sleep):
    import threading
    from odradek.client.shm import wait_for_any
    states = [state() for _ in range(3)]
    readers = [r for _, r, _ in states]
    seen = [r.read().change for r in readers]
    assert wait_for_any(readers, seen, 0) is False
    t0 = time.monotonic()
    assert wait_for_any(readers, seen, 0.05) is False
    assert time.monotonic() - t0 >= 0.04
    woke = []
    tids = []

    def sleeper():
        tids.append(threading.get_native_id())
        woke.append(wait_for_any(readers, seen, DEADLINE))
    t = threading.Thread(target=sleeper)
    t.start()
    deadline = time.monotonic() + DEADLINE
    while not tids and time.monotonic() < deadline:
        pass
    futex_sleep(os.getpid(), tids[0])
    states[2][0].update(high_watermark=5)
    t.join(DEADLINE)
    assert woke == [True]
    with pytest.raises(ValueError):
        wait_for_any([], [], 0)


# ---- the first unstable offset (transactions; LAYOUT.md "fields added within version 1") ----

def test_the_version_1_additions_table_matches_the_python_constants():
    from pathlib import Path
    layout = (Path(__file__).resolve().parents[3] / "client" / "shm" / "LAYOUT.md").read_text()
    section = layout.split("### Partition state: fields added within version 1\n", 1)[1].split("\n\n**", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and line.split("|")[1].strip().isdigit()]
    assert [(int(r[0]), int(r[1]), r[3]) for r in rows] == [
        (ps_module.OFF_MINOR_VERSION, 4, "minor_version"), (ps_module.OFF_FIRST_UNSTABLE, 8, "first_unstable_offset")]
    # outside the seqlocked block C reads and writes, and inside the header page
    assert ps_module.OFF_FIRST_UNSTABLE >= ps_module.OFF_FLAGS + 4 and ps_module.OFF_FIRST_UNSTABLE % 8 == 0
    assert ps_module.OFF_MINOR_VERSION + 4 <= ps_module.OFF_SEQ


def test_the_last_stable_offset_is_the_high_watermark_until_a_transaction_is_undecided(state):
    writer, reader, _ = state(high_watermark=10, log_end_offset=10)
    snap = reader.read()
    assert reader.first_unstable_offset() is None and reader.last_stable_offset(snap) == 10
    writer.set_first_unstable_offset(12)            # a transaction begins at the log end, 12
    writer.update(high_watermark=15, log_end_offset=15)
    snap = reader.read()
    assert reader.first_unstable_offset() == 12 and reader.last_stable_offset(snap) == 12
    assert reader.last_stable_offset(snap._replace(high_watermark=11)) == 11   # min with the HW
    change = snap.change
    writer.set_first_unstable_offset(None)          # decided and replicated: raised, then published
    writer.update()
    assert reader.wait_for_change(change, timeout=DEADLINE)
    assert reader.last_stable_offset(reader.read()) == 15
    with pytest.raises(PermissionError):
        reader.set_first_unstable_offset(3)


def test_a_state_made_before_the_field_existed_reads_as_having_no_transactions(state):
    writer, reader, _ = state(high_watermark=7, log_end_offset=7)
    view = writer._map.view
    struct.pack_into("=I", view, ps_module.OFF_MINOR_VERSION, 0)     # as C alone formats it
    struct.pack_into("=q", view, ps_module.OFF_FIRST_UNSTABLE, 0)
    assert reader.first_unstable_offset() is None and reader.last_stable_offset(reader.read()) == 7


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slots=st.integers(2, 12),
       runs=st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=15),
                     max_size=12),
       queries=st.lists(st.integers(-3, 400), max_size=40))
def test_runs_published_with_append_run_are_found_as_if_appended_one_by_one(slots, runs, queries):
    """A leader's run (PartitionState.append_run: one wake-up, longer runs than the window
    included) leaves the window and every find() answer as one append() per batch would."""
    with writer_and_reader(slots) as (writer, reader):
        descs, leo, i = [], 0, 0
        for run in runs:
            batch = []
            for records_minus_1, gap in run:
                base = leo + gap
                batch.append(BatchDescriptor(base, base + records_minus_1, 0, 61 * i, 61, i))
                leo, i = base + records_minus_1 + 1, i + 1
            before = reader.read().change
            writer.append_run(0, [(d.base_offset, d.last_offset, d.position, d.size, d.max_timestamp)
                                  for d in batch], high_watermark=leo)
            assert reader.read().change > before
            descs.extend(batch)
        snap = reader.read()
        assert (snap.log_end_offset, snap.high_watermark) == (leo, leo)
        for offset in queries + [d.base_offset for d in descs] + [d.last_offset for d in descs]:
            assert answer(reader, offset) == reference_find(descs, 0, slots, leo, offset), offset


def test_append_run_refuses_batches_out_of_offset_order(state):
    writer, reader, _ = state()
    writer.append(0, 9, 0, 0, 10, 0)
    for bad in ([(5, 12, 10, 10, 0)], [(10, 19, 10, 10, 0), (15, 29, 20, 10, 0)], [(10, 9, 10, 10, 0)]):
        with pytest.raises(ValueError):
            writer.append_run(0, bad)
    assert reader.read().log_end_offset == 10 and reader.find(10) is None
