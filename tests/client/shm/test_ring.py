"""The SPSC ring: round trips across the wrap, zero copy, blocking both ways, wake-ups
from another process, ~0 CPU while idle, and a writer SIGKILLed at random moments."""
import os
import random
import struct
import threading
import time

import psutil
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from odradek.client.errors import MessageTooLarge
from odradek.client.shm import BadLayout, Completion, Doorbell, Ring, RingFull, ShmCorrupt
from odradek.client.shm import ring as ring_module
from odradek.client.shm._lib import ffi
from odradek.client.shm._memfd import create_memfd

DEADLINE = 30.0


@pytest.fixture
def pair(fds_to_close):
    """make(capacity) -> (writer, reader): two separate mappings of one ring, as the
    two processes would have."""
    made = []

    def make(capacity=4096):
        writer, fd = Ring.create(capacity)
        fds_to_close.append(fd)
        reader = Ring.attach(fd)
        made.extend((writer, reader))
        return writer, reader
    yield make
    for r in made:
        r.close()


def drain(reader):
    out = []
    while (got := reader.peek()) is not None:
        tag, view = got
        out.append((tag, bytes(view)))
        reader.release()
    return out


def address(buf):
    return int(ffi.cast("uintptr_t", ffi.from_buffer("uint8_t[]", buf)))


# ---- round trips ------------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.sampled_from([64, 128, 512, 4096]),
       ops=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 3), st.booleans()),
                    max_size=120))
def test_entries_come_out_whole_and_in_order_across_wrap_arounds(capacity, ops):
    writer, fd = Ring.create(capacity)
    reader = Ring.attach(fd)
    os.close(fd)
    with writer, reader:
        round_trip(writer, reader, ops)


def round_trip(writer, reader, ops):
    maxp = writer.max_payload
    sent, got = [], []
    for i, (size_seed, reads, in_place) in enumerate(ops):
        payload = os.urandom(size_seed % (maxp + 1))
        tag = (i * 7919) & 0xFFFFFFFF
        while True:
            try:
                if in_place:
                    view = writer.reserve(len(payload), tag)
                    view[:] = payload
                    writer.commit()
                else:
                    writer.write(payload, tag)
                break
            except RingFull:   # reader makes room, as the other process would
                got.extend(drain_one(reader))
        sent.append((tag, payload))
        for _ in range(reads):
            got.extend(drain_one(reader))
    got.extend(drain(reader))
    event("wrapped" if writer.tail > writer.capacity else "did not wrap")
    assert got == sent
    assert reader.head == writer.tail
    assert reader.peek() is None


def drain_one(reader):
    got = reader.peek()
    if got is None:
        return []
    tag, view = got
    item = (tag, bytes(view))
    reader.release()
    return [item]


def test_an_entry_that_does_not_fit_before_the_end_wraps_to_the_start(pair):
    # LAYOUT.md's worked example, byte for byte.
    writer, reader = pair(64)
    writer.write(b"A" * 20, tag=1)
    writer.write(b"B" * 12, tag=2)
    assert reader.peek()[0] == 1
    reader.release()
    assert reader.head == 32
    writer.write(b"C" * 20, tag=3)
    assert writer.tail == 96
    data = writer._map.view[ring_module.HEADER_SIZE:ring_module.HEADER_SIZE + 64]
    assert bytes(data[56:64]) == b"\xff\xff\xff\xff\x00\x00\x00\x00"
    assert bytes(data[0:8]) == struct.pack("<II", 20, 3)
    with pytest.raises(RingFull):
        writer.write(b"", tag=4)   # 64 of 64 bytes in use
    assert drain(reader) == [(2, b"B" * 12), (3, b"C" * 20)]
    assert reader.head == 96
    data.release()


def test_commit_can_shrink_the_reserved_entry(pair):
    writer, reader = pair()
    view = writer.reserve(1000, tag=9)
    view[:5] = b"hello"
    writer.commit(5)
    assert drain(reader) == [(9, b"hello")]
    assert writer.tail == 16


def test_a_cancelled_reservation_is_never_seen(pair):
    writer, reader = pair()
    writer.reserve(100, tag=1)[:3] = b"bad"
    writer.cancel()
    writer.write(b"good", tag=2)
    assert drain(reader) == [(2, b"good")]


def test_completions_round_trip(pair):
    writer, reader = pair()
    writer.write_completion(5, 1234, 0)
    writer.write_completion(6, -1, 87)
    assert reader.read_completion() == Completion(5, 1234, 0)
    assert reader.read_completion() == Completion(6, -1, 87)
    assert reader.read_completion() is None


def test_peek_returns_the_same_entry_until_release(pair):
    writer, reader = pair()
    writer.write(b"one", 1)
    writer.write(b"two", 2)
    first = reader.peek()
    assert reader.peek() == first and reader.peek()[1] is first[1]
    reader.release()
    assert bytes(reader.peek()[1]) == b"two"


# ---- zero copy --------------------------------------------------------------------------

def test_the_readers_view_points_into_the_shared_mapping(pair):
    writer, reader = pair()
    view = writer.reserve(64, tag=1)
    base = address(writer._map.mm)
    assert base <= address(view) < base + writer._map.size
    view[:] = b"x" * 64
    writer.commit()
    tag, seen = reader.peek()
    rbase = address(reader._map.mm)
    assert rbase + ring_module.HEADER_SIZE <= address(seen) < rbase + reader._map.size
    # a change through the writer's mapping shows in the reader's view: no copy between
    offset = address(seen) - rbase
    writer._map.view[offset:offset + 4] = b"ZZZZ"
    assert bytes(seen[:4]) == b"ZZZZ"
    assert seen.readonly


def test_views_are_released_so_stale_use_fails_loudly(pair):
    writer, reader = pair()
    view = writer.reserve(8)
    writer.commit()
    with pytest.raises(ValueError):
        view[0] = 1
    _, seen = reader.peek()
    reader.release()
    with pytest.raises(ValueError):
        bytes(seen)


# ---- blocking ------------------------------------------------------------------------

def test_a_full_ring_blocks_the_writer_until_the_reader_makes_room(pair, wait_for):
    writer, reader = pair(256)
    n = 0
    with pytest.raises(RingFull):
        while True:
            writer.write(bytes([n]) * 40, tag=n)
            n += 1
    assert n == 5   # 5 x 48 bytes of 256
    done = threading.Event()

    def blocked_write():
        writer.write(b"late" * 10, tag=99, timeout=DEADLINE)
        done.set()
    t = threading.Thread(target=blocked_write)
    t.start()
    wait_for(lambda: writer.writer_waiting, what="writer asleep")
    assert not done.is_set()
    assert reader.peek()[0] == 0
    reader.release()                      # 48 bytes free: enough for the 48-byte entry
    assert done.wait(DEADLINE)
    t.join(DEADLINE)
    assert not writer.writer_waiting      # the sleeper withdrew its flag once awake
    assert [tag for tag, _ in drain(reader)] == [1, 2, 3, 4, 99]


def test_wait_for_space_times_out_when_the_reader_does_not_move(pair):
    writer, _ = pair(64)
    writer.write(b"x" * 24)
    writer.write(b"x" * 16)
    t0 = time.monotonic()
    assert writer.wait_for_space(24, timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.05
    with pytest.raises(RingFull):
        writer.write(b"y" * 24, timeout=0.01)


def test_a_blocked_reader_is_woken_by_a_writer_in_another_process(spawn, fds_to_close):
    reader, fd = Ring.create(4096)
    fds_to_close.append(fd)
    child = spawn("ring-write-when-reader-sleeps", fd, "hello", fds=(fd,))
    child.expect("ready")
    t0 = time.monotonic()
    assert reader.wait(timeout=DEADLINE) is True      # the child writes once we sleep
    woke_ns = time.monotonic_ns()
    assert time.monotonic() - t0 < DEADLINE
    tag, view = reader.peek()
    sent_ns, text = bytes(view).split(b" ")
    assert (tag, text) == (7, b"hello")
    assert woke_ns >= int(sent_ns)   # the latency itself is measured by perf/shm_ring.py
    reader.release()
    child.expect("written")
    assert not reader.reader_waiting                  # the sleeper withdrew its flag
    reader.close()


@pytest.mark.parametrize("kind", ["ring", "doorbell", "pstate"])
def test_an_idle_waiter_uses_almost_no_cpu(kind, spawn, fds_to_close):
    from odradek.client.shm import PartitionState
    if kind == "ring":
        obj, fd = Ring.create(4096)
        fds = (fd,)
    elif kind == "doorbell":
        obj, fd = Doorbell.create()
        fds = (fd,)
    else:
        obj, pair_fds = PartitionState.create(16)
        fds = tuple(pair_fds)
    fds_to_close.extend(fds)
    window = 0.5
    child = spawn("idle-wait", kind, window, *fds, fds=fds)
    proc = psutil.Process(child.pid)
    child.expect("waiting")
    before = proc.cpu_times()
    got, elapsed = child.expect("done")
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    assert got == "False" and float(elapsed) >= window
    assert used < 0.05 * window + 0.02, f"{used:.3f} s of CPU in a {window} s idle wait"
    obj.close()


# ---- crashes ------------------------------------------------------------------------

KILLS = 25


def test_a_writer_killed_at_random_moments_leaves_only_whole_committed_entries(
        spawn, child_module, fds_to_close):
    reader, fd = Ring.create(4096)
    fds_to_close.append(fd)
    rng = random.Random("odradek-shm-ring-kill")
    next_seq = 0
    for kill in range(KILLS):
        child = spawn("ring-writer", fd, next_seq, fds=(fd,))
        child.expect("ready")
        for _ in range(rng.randint(0, 300)):       # read while it writes, then kill it
            assert reader.wait(DEADLINE), f"kill {kill}: writer stopped"
            next_seq = check_next(reader, next_seq, child_module, kill)
        child.kill()
        while reader.peek() is not None:           # whatever it committed, whole
            next_seq = check_next(reader, next_seq, child_module, kill)
        assert reader.head == reader.tail
    assert next_seq > KILLS * 50
    reader.close()


def check_next(reader, seq, child_module, kill):
    tag, view = reader.peek()
    want_tag, want = child_module.entry_for(seq, reader.max_payload)
    assert (tag, len(view)) == (want_tag, len(want)), f"kill {kill}: entry {seq}"
    assert view == want, f"kill {kill}: entry {seq} has wrong bytes"
    reader.release()
    return seq + 1


# ---- misuse and hostile peers ----------------------------------------------------------

def test_misuse_is_reported_as_programming_errors(pair):
    writer, reader = pair(256)
    with pytest.raises(RuntimeError):
        writer.commit()
    with pytest.raises(RuntimeError):
        reader.release()
    writer.reserve(8)
    with pytest.raises(RuntimeError):
        writer.reserve(8)
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(ValueError):
        writer.commit(9)
    writer.commit(8)
    with pytest.raises(MessageTooLarge):
        writer.reserve(writer.max_payload + 1)
    with pytest.raises(MessageTooLarge):
        writer.write(b"x" * (writer.max_payload + 1))
    with pytest.raises(ValueError):
        writer.reserve(-1)
    with pytest.raises(ValueError):
        writer.write(b"x", tag=1 << 32)
    with pytest.raises(ValueError):
        Ring.create(1000)


def poke(ring, off, fmt, *values):
    struct.pack_into(fmt, ring._map.view, off, *values)


@pytest.mark.parametrize("damage", ["tail beyond capacity", "tail not aligned",
                                    "length too large", "entry beyond tail",
                                    "wrap marker at the start"])
def test_a_reader_rejects_impossible_entries_from_a_broken_writer(pair, damage):
    writer, reader = pair(256)
    writer.write(b"x" * 8, tag=1)          # entry at 0..15, tail 16
    data = ring_module.HEADER_SIZE
    if damage == "tail beyond capacity":
        poke(writer, ring_module.OFF_TAIL, "<Q", 256 + 8)
    elif damage == "tail not aligned":
        poke(writer, ring_module.OFF_TAIL, "<Q", 13)
    elif damage == "length too large":
        poke(writer, data, "<I", 200)
    elif damage == "entry beyond tail":
        poke(writer, data, "<I", 16)
    else:
        poke(writer, data, "<I", ring_module.WRAP)
    with pytest.raises(ShmCorrupt):
        reader.peek()


def test_attach_refuses_memory_that_is_not_a_sealed_ring(tmp_path, fds_to_close):
    unsealed = os.memfd_create("x")
    fds_to_close.append(unsealed)
    os.ftruncate(unsealed, 8192)
    with pytest.raises(BadLayout):
        Ring.attach(unsealed)
    plain = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    fds_to_close.append(plain)
    os.ftruncate(plain, 8192)
    with pytest.raises(BadLayout):
        Ring.attach(plain)
    zeros = create_memfd("zeros", 8192)
    fds_to_close.append(zeros)
    with pytest.raises(BadLayout):
        Ring.attach(zeros)
    bell, bell_fd = Doorbell.create()
    fds_to_close.append(bell_fd)
    with pytest.raises(BadLayout):
        Ring.attach(bell_fd)
    bell.close()


def test_attach_refuses_a_capacity_larger_than_the_memfd(fds_to_close):
    ring, fd = Ring.create(4096)
    fds_to_close.append(fd)
    poke(ring, ring_module.OFF_CAPACITY, "<Q", 1 << 20)
    with pytest.raises(BadLayout):
        Ring.attach(fd)
    ring.close()


# ---- doorbell wiring -------------------------------------------------------------------

def test_a_commit_rings_the_readers_doorbell(pair):
    (w1, r1), (w2, r2) = pair(), pair()
    bell, fd = Doorbell.create()
    os.close(fd)
    w1.set_doorbell(bell)
    w2.set_doorbell(bell)
    seen = bell.value
    w2.write(b"x")
    assert bell.value == seen + 1
    assert bell.wait(seen, timeout=0) is True
    w1.write(b"y")
    assert bell.value == seen + 2
    w1.set_doorbell(None)
    w1.write(b"z")
    assert bell.value == seen + 2
    bell.close()
    w2.write(b"still safe after the doorbell object closed")
    assert len(drain(r2)) == 2 and len(drain(r1)) == 2
    w2.set_doorbell(None)


def test_an_unrung_write_leaves_the_doorbell_to_one_ring_after_the_row(pair):
    """write(ring=False) publishes the entry without ringing; ring_doorbell() rings once for
    the row; an entry that had to wait for room rings as a commit does."""
    writer, reader = pair(4096)
    bell, fd = Doorbell.create()
    os.close(fd)
    writer.set_doorbell(bell)
    seen = bell.value
    for i in range(3):
        writer.write(b"%d" % i, ring=False)
    assert bell.value == seen and bell.wait(seen, timeout=0) is False
    assert [v for _, v in drain(reader)] == [b"0", b"1", b"2"]        # published all the same
    writer.ring_doorbell()
    assert bell.value == seen + 1
    writer.write(b"a" * 1500, ring=False)
    writer.write(b"b" * 1500, ring=False)
    assert bell.value == seen + 1
    got = []

    def reader_asleep_on_the_doorbell():      # as a leader worker: it looks only when rung
        if bell.wait(seen + 1, timeout=5):
            got.extend(v for _, v in drain(reader))
    drainer = threading.Thread(target=reader_asleep_on_the_doorbell)
    drainer.start()
    started = time.monotonic()
    writer.write(b"c" * 1500, ring=False, timeout=5)   # no room: rings for "a" and "b" first
    drainer.join(5)
    got += [v for _, v in drain(reader)]              # "c", unless the drainer took it too
    assert got == [b"a" * 1500, b"b" * 1500, b"c" * 1500] and time.monotonic() - started < 4
    assert bell.value == seen + 3                      # before its wait and at its commit
    writer.set_doorbell(None)
    writer.ring_doorbell()                                      # no doorbell: nothing to ring
    bell.close()


def test_a_reader_sees_whether_an_entry_follows_the_peeked_one_and_keeps_views_it_takes(pair):
    writer, reader = pair(1 << 16)
    assert not reader.more_after_peeked()                      # nothing peeked
    writer.write(b"a" * 30_000)
    assert reader.peek()[1] == b"a" * 30_000 and not reader.more_after_peeked()
    writer.write(b"b" * 30_000)
    assert reader.more_after_peeked()
    first = reader.peek()[1]
    position = reader.take_keeping_view()
    second = reader.peek()[1]
    assert not reader.more_after_peeked()
    end = reader.take_keeping_view()
    assert bytes(first) == b"a" * 30_000 and bytes(second) == b"b" * 30_000   # both views still read
    first.release()
    reader.release_to(position)
    second.release()
    reader.release_to(end)
    assert writer.free == writer.capacity and reader.peek() is None


def test_a_completion_read_in_one_call_checks_its_size_and_leaves_a_peeked_entry_alone(pair):
    writer, reader = pair()
    writer.write(b"x" * 24, 9)                      # not a completion: 24 bytes, not 16
    with pytest.raises(ShmCorrupt, match="not 24"):
        reader.read_completion()
    assert reader.peek()[0] == 9                    # left peeked, not released
    reader.release()
    writer.write_completion(7, 42, 3)
    writer.write_completion(8, 43, 0)
    assert reader.peek()[0] == 7                    # peeked first: read the way a peek is read
    assert reader.read_completion() == Completion(7, 42, 3)
    assert reader.read_completion() == Completion(8, 43, 0)
    assert reader.read_completion() is None
