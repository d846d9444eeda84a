"""ProducerState: Kafka's idempotent-producer checks for one partition leader, its
rebuild from the log, and batches_from_buffer reading producer fields from batch headers."""
import mmap

import pytest
from support.records import make_batch

from odradek.client.errors import InvalidProducerEpoch, InvalidRecord, OutOfOrderSequenceNumber
from odradek.client.records import write_base_offset
from odradek.daemon.worker.producer_state import (
    MAX_SEQUENCE, NUM_BATCHES_TO_RETAIN, Outcome, ProducerEntry, ProducerState, Verdict,
    batches_from_buffer, next_sequence)

PID = 7


def append(state, pid, epoch, first_seq, count, first_offset):
    """check, then record, a batch of `count` records; returns the verdict."""
    last_seq = next_sequence(first_seq, count - 1)
    verdict = state.check(pid, epoch, first_seq, last_seq)
    assert verdict.outcome is Outcome.APPEND, verdict
    state.record(pid, epoch, first_seq, last_seq, first_offset, first_offset + count - 1)
    return verdict


def fill(state, pid=PID, epoch=0, batches=8, count=3):
    """`batches` in-order batches of `count` records: batch i holds sequences and
    offsets 3i .. 3i+2 (count 3)."""
    for i in range(batches):
        append(state, pid, epoch, i * count, count, i * count)


# ---- check ----------------------------------------------------------------------------

def test_non_idempotent_batches_always_append_and_are_not_recorded():
    state = ProducerState()
    for _ in range(3):
        assert state.check(-1, -1, -1, -1).outcome is Outcome.APPEND
        state.record(-1, -1, -1, -1, 0, 0)
    assert len(state) == 0


@pytest.mark.parametrize("first_seq", [0, 1, 17, MAX_SEQUENCE])
def test_an_unknown_producer_is_accepted_at_any_sequence(first_seq):
    verdict = ProducerState().check(PID, 3, first_seq, first_seq)
    assert verdict.outcome is Outcome.APPEND
    assert verdict.error is None and verdict.exception() is None


def test_in_order_appends():
    state = ProducerState()
    fill(state, batches=20)
    assert state.entry(PID).last_seq == 59
    assert state.check(PID, 0, 60, 60).outcome is Outcome.APPEND
    assert PID in state and len(state) == 1


def test_check_changes_nothing():
    state = ProducerState()
    fill(state, batches=2)
    before = state.entry(PID)
    for args in [(PID, 0, 6, 8), (PID, 0, 9, 9), (PID, 1, 0, 0), (99, 0, 5, 5)]:
        state.check(*args)
    assert state.entry(PID) == before and 99 not in state


@pytest.mark.parametrize("back", range(1, NUM_BATCHES_TO_RETAIN + 1))
def test_a_duplicate_of_each_of_the_last_five_batches_gets_its_offsets(back):
    state = ProducerState()
    fill(state, batches=8)                     # batch i: sequences/offsets 3i..3i+2
    i = 8 - back
    verdict = state.check(PID, 0, 3 * i, 3 * i + 2)
    assert verdict.outcome is Outcome.DUPLICATE
    assert (verdict.first_offset, verdict.last_offset) == (3 * i, 3 * i + 2)
    assert verdict.error is None


def test_a_batch_older_than_the_last_five_is_out_of_order():
    state = ProducerState()
    fill(state, batches=8)
    verdict = state.check(PID, 0, 6, 8)        # batch 2: six back
    assert verdict.outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert verdict.error is OutOfOrderSequenceNumber


@pytest.mark.parametrize("first_seq, last_seq", [
    (25, 27),     # a gap: 24 expected
    (23, 25),     # overlaps the last batch without being it
    (21, 22),     # the last batch's first sequence, another last sequence
    (0, 2),       # the very first batch, long forgotten
])
def test_out_of_order_sequences(first_seq, last_seq):
    state = ProducerState()
    fill(state, batches=8)
    verdict = state.check(PID, 0, first_seq, last_seq)
    assert verdict.outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER
    err = verdict.exception()
    assert isinstance(err, OutOfOrderSequenceNumber)
    assert "expected 24" in err.message and str(first_seq) in err.message


def test_an_old_epoch_is_fenced():
    state = ProducerState()
    fill(state, epoch=3, batches=2)
    for first_seq in (6, 0, 3):                # in order, a restart, a duplicate: all fenced
        verdict = state.check(PID, 2, first_seq, first_seq)
        assert verdict.outcome is Outcome.INVALID_PRODUCER_EPOCH
        assert verdict.error is InvalidProducerEpoch
        assert isinstance(verdict.exception(), InvalidProducerEpoch)
        assert "epoch 3" in verdict.message


def test_a_new_epoch_must_start_at_zero_and_resets_the_sequences():
    state = ProducerState()
    fill(state, epoch=0, batches=3)            # sequences 0..8
    assert state.check(PID, 1, 9, 9).outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(PID, 1, 3, 5).outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER
    append(state, PID, 1, 0, 2, 100)           # epoch 1 starts over: 0..1 at 100..101
    assert state.entry(PID) == ProducerEntry(1, 1, ((0, 1, 100, 101),))
    assert state.check(PID, 1, 2, 2).outcome is Outcome.APPEND
    assert state.check(PID, 1, 0, 1).outcome is Outcome.DUPLICATE
    assert state.check(PID, 1, 3, 5).outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(PID, 0, 9, 9).outcome is Outcome.INVALID_PRODUCER_EPOCH


def test_sequences_wrap_after_2_31_minus_1():
    assert next_sequence(MAX_SEQUENCE) == 0
    assert next_sequence(MAX_SEQUENCE - 1, 3) == 1
    state = ProducerState()
    append(state, PID, 0, MAX_SEQUENCE - 4, 5, 0)      # ends exactly at 2^31-1
    assert state.entry(PID).last_seq == MAX_SEQUENCE
    assert state.check(PID, 0, 0, 2).outcome is Outcome.APPEND
    assert state.check(PID, 0, MAX_SEQUENCE + 1, MAX_SEQUENCE + 1).outcome \
        is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER
    append(state, PID, 0, 0, 3, 5)
    append(state, PID, 0, 3, 3, 8)
    assert state.check(PID, 0, MAX_SEQUENCE - 4, MAX_SEQUENCE).outcome is Outcome.DUPLICATE


def test_a_batch_spanning_the_wrap():
    state = ProducerState()
    append(state, PID, 0, MAX_SEQUENCE - 1, 4, 10)     # MAX-1, MAX, 0, 1
    assert state.entry(PID).last_seq == 1
    assert state.check(PID, 0, 2, 2).outcome is Outcome.APPEND
    verdict = state.check(PID, 0, MAX_SEQUENCE - 1, 1)
    assert (verdict.outcome, verdict.first_offset, verdict.last_offset) == \
        (Outcome.DUPLICATE, 10, 13)


def test_a_producer_id_without_a_sequence_is_an_invalid_record():
    verdict = ProducerState().check(PID, 0, -1, -1)
    assert verdict.outcome is Outcome.INVALID_RECORD
    assert isinstance(verdict.exception(), InvalidRecord)


def test_producers_are_independent():
    state = ProducerState()
    fill(state, pid=1, batches=3)
    fill(state, pid=2, epoch=5, batches=1)
    assert state.check(1, 0, 9, 9).outcome is Outcome.APPEND
    assert state.check(2, 5, 3, 3).outcome is Outcome.APPEND
    assert state.check(2, 0, 3, 3).outcome is Outcome.INVALID_PRODUCER_EPOCH
    assert len(state) == 2 and state.entry(3) is None


def test_remember_bounds_the_batches_kept():
    state = ProducerState(remember=2)
    fill(state, batches=4)
    assert [b[0] for b in state.entry(PID).batches] == [6, 9]
    with pytest.raises(ValueError):
        ProducerState(remember=0)


# ---- rebuild ----------------------------------------------------------------------------

def log_of(pid, epoch, batches, count=3, first_offset=0, first_seq=0):
    """(pid, epoch, first_seq, last_seq, first_offset, last_offset) of consecutive batches."""
    out = []
    for i in range(batches):
        seq = next_sequence(first_seq, i * count)
        off = first_offset + i * count
        out.append((pid, epoch, seq, next_sequence(seq, count - 1), off, off + count - 1))
    return out


def test_rebuild_with_remember_4096_finds_a_duplicate_1000_batches_back():
    tail = log_of(PID, 2, 2000)
    state = ProducerState(remember=4096)
    assert state.rebuild(tail) == 2000
    pid, epoch, first_seq, last_seq, first_offset, last_offset = tail[-1000]
    verdict = state.check(pid, epoch, first_seq, last_seq)
    assert (verdict.outcome, verdict.first_offset, verdict.last_offset) == \
        (Outcome.DUPLICATE, first_offset, last_offset)
    assert state.check(PID, 2, 6000, 6000).outcome is Outcome.APPEND
    # With Kafka's 5 the same re-delivery is no longer recognised.
    small = ProducerState()
    small.rebuild(tail)
    assert small.check(pid, epoch, first_seq, last_seq).outcome \
        is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_rebuild_equals_recording_and_replaces_earlier_state():
    tail = log_of(1, 0, 3) + [(-1, -1, -1, -1, 9, 9)] + log_of(2, 4, 2, first_offset=10) \
        + log_of(1, 1, 2, first_offset=16)     # producer 1 bumped its epoch
    recorded = ProducerState()
    for batch in tail:
        recorded.record(*batch)
    rebuilt = ProducerState()
    fill(rebuilt, pid=99, batches=1)
    assert rebuilt.rebuild(iter(tail)) == len(tail) - 1
    assert 99 not in rebuilt
    for pid in (1, 2):
        assert rebuilt.entry(pid) == recorded.entry(pid)
    assert rebuilt.entry(1) == ProducerEntry(1, 5, ((0, 2, 16, 18), (3, 5, 19, 21)))


# ---- batches_from_buffer ----------------------------------------------------------------

def built(values, base_offset, **producer):
    data = bytearray(make_batch(values, keys=[b"k"] * len(values), **producer))
    write_base_offset(data, 0, base_offset)        # as the leader assigns offsets
    return bytes(data)


def sample_log():
    return b"".join([
        built([b"a", b"b", b"c"], 0, producer_id=7, producer_epoch=1, base_sequence=0),
        built([b"d"], 3),                                              # not idempotent
        built([b"e", b"f"], 4, producer_id=8, producer_epoch=0, base_sequence=40),
        built([b"g", b"h", b"i"], 6, producer_id=7, producer_epoch=1,
              base_sequence=MAX_SEQUENCE - 1),                          # wraps: MAX-1, MAX, 0
    ])


EXPECTED = [
    (7, 1, 0, 2, 0, 2),
    (-1, -1, -1, -1, 3, 3),
    (8, 0, 40, 41, 4, 5),
    (7, 1, MAX_SEQUENCE - 1, 0, 6, 8),
]


def test_batches_from_buffer_reads_the_producer_fields():
    data = sample_log()
    assert list(batches_from_buffer(memoryview(data))) == EXPECTED
    assert list(batches_from_buffer(data)) == EXPECTED
    assert list(batches_from_buffer(bytearray(data))) == EXPECTED


def test_batches_from_buffer_from_a_position_and_through_an_mmap():
    data = sample_log()
    first_len = len(built([b"a", b"b", b"c"], 0, producer_id=7, producer_epoch=1,
                          base_sequence=0))
    assert list(batches_from_buffer(memoryview(data), first_len)) == EXPECTED[1:]
    with mmap.mmap(-1, len(data) + 4096) as mm:          # zero-filled tail, as preallocated
        mm[:len(data)] = data
        assert list(batches_from_buffer(mm)) == EXPECTED


@pytest.mark.parametrize("tail", [
    b"\x00" * 200,                                   # zero length: preallocated space
    b"\x00" * 8 + b"\x00\x00\x00\x10" + b"\x00" * 100,  # length 16: below a header
    b"\x00" * 8 + b"\x7f\xff\xff\xff" + b"\x00" * 100,  # runs past the end
    b"\x00" * 30,                                    # too short for a header
], ids=["zero-length", "length-below-header", "past-the-end", "short-tail"])
def test_batches_from_buffer_stops_at_an_impossible_header(tail):
    assert list(batches_from_buffer(sample_log() + tail)) == EXPECTED


def test_batches_from_buffer_stops_at_a_torn_batch_and_a_bad_magic():
    data = sample_log()
    assert list(batches_from_buffer(data[:-1])) == EXPECTED[:3]
    bad = bytearray(data)
    bad[16] = 1                                      # the first batch's magic
    assert list(batches_from_buffer(bad)) == []


def test_rebuild_from_buffer_recognises_redelivered_batches():
    state = ProducerState(remember=4096)
    assert state.rebuild(batches_from_buffer(sample_log())) == 3
    verdict = state.check(7, 1, 0, 2)
    assert (verdict.outcome, verdict.first_offset, verdict.last_offset) == \
        (Outcome.DUPLICATE, 0, 2)
    assert state.check(7, 1, 1, 1).outcome is Outcome.APPEND      # after the wrap to 0
    assert state.check(8, 0, 42, 42).outcome is Outcome.APPEND


# ---- snapshots: last_batches / load -------------------------------------------------

def test_last_batches_and_load_carry_the_last_batch_and_a_refused_one():
    state = ProducerState()
    fill(state, batches=3)                                     # seqs 0..8 at offsets 0..8
    append(state, 8, 2, 10, 4, 20)                             # producer 8: seqs 10..13 at 20..23
    state.record(8, 2, 14, 15, -1, -1)                         # refused: used up 14..15
    assert state.last_batches() == [(PID, 0, 8, 8, 2), (8, 2, 15, -1, 1)]
    loaded = ProducerState()
    loaded.load(state.last_batches())
    assert loaded.last_batches() == state.last_batches()
    assert loaded.check(PID, 0, 9, 9).outcome is Outcome.APPEND
    dup = loaded.check(PID, 0, 6, 8)
    assert (dup.outcome, dup.first_offset, dup.last_offset) == (Outcome.DUPLICATE, 6, 8)
    assert loaded.check(8, 2, 16, 16).outcome is Outcome.APPEND            # after the refused one
    assert loaded.check(8, 2, 14, 15) == Verdict(Outcome.DUPLICATE, -1, -1)  # refused again
    assert loaded.check(PID, 0, 3, 5).outcome is Outcome.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_load_then_replay_equals_recording_everything():
    whole, part = ProducerState(remember=4096), ProducerState(remember=4096)
    fill(whole, batches=4)
    fill(part, batches=2)
    snap = part.last_batches()
    part.load(snap)
    part.replay([(PID, 0, 6, 8, 6, 8), (PID, 0, 9, 11, 9, 11)])
    assert part.entry(PID).last_seq == whole.entry(PID).last_seq == 11
    assert part.entry(PID).batches == ((3, 5, 3, 5), (6, 8, 6, 8), (9, 11, 9, 11))


def test_a_snapshot_entry_spanning_the_sequence_wrap_loads():
    state = ProducerState()
    append(state, PID, 0, MAX_SEQUENCE - 1, 4, 100)            # seqs 2^31-2 .. 1
    assert state.last_batches() == [(PID, 0, 1, 103, 3)]
    loaded = ProducerState()
    loaded.load(state.last_batches())
    assert loaded.check(PID, 0, MAX_SEQUENCE - 1, 1) == Verdict(Outcome.DUPLICATE, 100, 103)
    assert loaded.check(PID, 0, 2, 2).outcome is Outcome.APPEND


def test_is_gap_ahead_tells_a_forward_gap_from_an_old_or_wrapped_sequence():
    s = ProducerState()
    assert not s.is_gap_ahead(7, 0, 5)                 # never seen: no gap to speak of
    s.record(7, 0, 0, 4, 100, 104)                     # sequences 0..4: next is 5
    assert not s.is_gap_ahead(7, 0, 5)                 # in order
    assert s.is_gap_ahead(7, 0, 9)                     # 5..8 skipped (refused elsewhere)
    assert not s.is_gap_ahead(7, 0, 2)                 # behind: an old batch
    assert not s.is_gap_ahead(7, 1, 9)                 # another epoch: check() decides
    s.record(7, 0, MAX_SEQUENCE - 1, MAX_SEQUENCE, 105, 106)   # next wraps to 0
    assert s.is_gap_ahead(7, 0, 3)
    assert not s.is_gap_ahead(7, 0, MAX_SEQUENCE - 5)
