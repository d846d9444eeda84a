"""decode_fetch's read_committed arguments (daemon/c_ext/hp_consumer.c): aborted
transactions' batches skipped by Kafka's abort ranges, a transactional batch the known
aborted list does not cover stops the call (FETCH_NEED_ABORTED), control batches never
become records in either isolation level; bad arguments are named errors. The Python
twin of the rule (the reference below) decides what is expected."""
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from odradek import _hotpath
from odradek._hotpath import FETCH_END, FETCH_NEED_ABORTED
from odradek.client._fetch_decode import HIGH_WATERMARK_MAX as _HIGH_WATERMARK_MAX
from odradek.client.records import (BatchBuilder, Compression, ControlRecordType, RecordBatch, marker_batch,
                                   write_base_offset)

TRIPLE = struct.Struct("=qqq")


def log_of(entries):
    """Bytes of a log from entries: ("data", pid or None, n records, compressed) or
    ("abort"/"commit", pid); offsets assigned in order. Returns (bytes, [(kind, pid,
    base, last)])."""
    out, layout, offset = bytearray(), [], 0
    for e in entries:
        if e[0] == "data":
            _, pid, n, gz = e
            b = BatchBuilder(producer_id=-1 if pid is None else pid, producer_epoch=0 if pid is not None else -1,
                             base_sequence=-1, transactional=pid is not None,
                             compression=Compression.GZIP if gz else Compression.NONE)
            for i in range(n):
                b.append(1_700_000_000_000, None, b"v%d" % (offset + i))
            batch = bytearray(b.build())
            last = offset + n - 1
        else:
            kind = ControlRecordType.ABORT if e[0] == "abort" else ControlRecordType.COMMIT
            batch = bytearray(marker_batch(kind, e[1], 0, 0, 1_700_000_000_000))
            last = offset
        write_base_offset(batch, 0, offset)
        layout.append((e[0], e[1], offset, last))
        out += batch
        offset = last + 1
    return bytes(out), layout


def aborted_of(layout):
    """Kafka's view: (pid, first offset, marker offset) of each aborted transaction."""
    first, out = {}, []
    for kind, pid, base, _ in layout:
        if kind == "data" and pid is not None:
            first.setdefault(pid, base)
        elif kind in ("abort", "commit"):
            f = first.pop(pid, None)
            if kind == "abort" and f is not None:
                out.append((pid, f, base))
    return out


def expected_offsets(layout, committed):
    """The reference: offsets a reader gets (read_committed: Kafka's per-producer abort
    state, opened at an aborted transaction's first offset, closed by its marker)."""
    aborted = aborted_of(layout) if committed else []
    out, active = [], set()
    for kind, pid, base, last in layout:
        for a_pid, a_first, _ in aborted:
            if a_first <= last and a_pid == pid:
                active.add(pid)
        if kind == "abort":
            active.discard(pid)
            aborted = [a for a in aborted if not (a[0] == pid and a[2] == base)]
            continue
        if kind == "commit":
            continue
        if pid is not None and pid in active:
            continue
        out.extend(range(base, last + 1))
    return out


def decode(data, committed, packed=b"", known_upto=_HIGH_WATERMARK_MAX, zero_copy=False):
    extra = (packed, known_upto) if committed else ()
    return _hotpath.decode_fetch(data, 0, 0, 0, _HIGH_WATERMARK_MAX, "t", 0, True, zero_copy, *extra)


def pack(aborted):
    return b"".join(TRIPLE.pack(*a) for a in aborted)


INTERLEAVED = [("data", 7, 2, False), ("data", 8, 1, False), ("data", None, 1, False), ("data", 7, 1, True),
               ("abort", 7), ("commit", 8), ("data", None, 2, False)]


@pytest.mark.parametrize("zero_copy", [False, True])
def test_aborted_batches_and_markers_are_skipped_and_the_rest_comes_in_order(zero_copy):
    data, layout = log_of(INTERLEAVED)
    records, status, at, next_offset, *_ = decode(data, True, pack(aborted_of(layout)), zero_copy=zero_copy)
    assert [r.offset() for r in records] == expected_offsets(layout, True) == [2, 3, 7, 8]
    assert (status, at, next_offset) == (FETCH_END, len(data), 9)
    records, status, at, *_ = decode(data, False, zero_copy=zero_copy)    # read_uncommitted: the gzip
    assert [r.offset() for r in records] == [0, 1, 2, 3] and status == _hotpath.FETCH_IN_PYTHON   # one is Python's
    records, status, *_ = _hotpath.decode_fetch(data, at + RecordBatch(data[at:]).size, 0, 5,
                                                _HIGH_WATERMARK_MAX, "t", 0, True, zero_copy)
    assert [r.offset() for r in records] == [7, 8] and status == FETCH_END      # then on: no marker
    assert expected_offsets(layout, False) == [0, 1, 2, 3, 4, 7, 8]


def test_a_transactional_batch_not_covered_stops_the_call_where_it_starts():
    data, layout = log_of(INTERLEAVED)
    records, status, at, next_offset, a, _, _ = decode(data, True, b"", 0)
    assert (records, status, at, next_offset, a) == ([], FETCH_NEED_ABORTED, 0, 0, 0)
    records, status, at, next_offset, a, _, _ = decode(data, True, pack(aborted_of(layout)), 3)
    assert [r.offset() for r in records] == [2, 3] and (status, next_offset, a) == (FETCH_NEED_ABORTED, 4, 4)
    rest = _hotpath.decode_fetch(data, at, 0, next_offset, _HIGH_WATERMARK_MAX, "t", 0, True, False,
                                 pack(aborted_of(layout)), _HIGH_WATERMARK_MAX)
    assert [r.offset() for r in rest[0]] == [7, 8] and rest[1] == FETCH_END


def test_bad_aborted_arguments_are_named_errors():
    data, _ = log_of(INTERLEAVED)
    with pytest.raises(TypeError, match="aborted must be bytes"):
        decode(data, True, bytearray(24))
    with pytest.raises(ValueError, match="triples"):
        decode(data, True, b"\0" * 23)
    with pytest.raises(TypeError, match="known_upto"):
        decode(data, True, b"", "9")
    with pytest.raises(TypeError, match="9 or 11 arguments"):
        _hotpath.decode_fetch(data, 0, 0, 0, 10, "t", 0, True, False, b"")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["data", "data", "txn", "end"]), st.integers(0, 2),
                          st.integers(1, 3), st.booleans(), st.booleans()), max_size=25))
def test_random_logs_give_what_kafkas_per_producer_abort_state_gives(steps):
    entries, open_txns = [], set()
    for kind, pid, n, gz, commit in steps:
        pid += 100
        if kind == "data":
            entries.append(("data", None, n, gz))
        elif kind == "txn":
            entries.append(("data", pid, n, gz))
            open_txns.add(pid)
        else:
            entries.append(("commit" if commit else "abort", pid))   # one with no open transaction ends nothing
            open_txns.discard(pid)
    data, layout = log_of(entries)
    packed = pack(aborted_of(layout))
    for zero_copy in (False, True):
        records, status, *_ = decode(data, True, packed, zero_copy=zero_copy)
        if status == FETCH_END:
            assert [r.offset() for r in records] == expected_offsets(layout, True)
        else:   # a gzip batch not aborted: Python decodes it (the consumer's loop); up to there, the same
            assert status == _hotpath.FETCH_IN_PYTHON
            want = expected_offsets(layout, True)
            assert [r.offset() for r in records] == want[:len(records)]


def test_random_bytes_with_aborted_ranges_never_crash():
    rng = random.Random(12)
    data, layout = log_of(INTERLEAVED)
    packed = pack(aborted_of(layout))
    for _ in range(300):
        junk = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            junk[rng.randrange(len(junk))] = rng.randrange(256)
        cut = bytes(junk[:rng.randrange(len(junk) + 1)])
        records, status, at, next_offset, *_ = decode(cut, True, packed, rng.randrange(0, 12))
        assert 0 <= at <= len(cut)
