"""The storage-only native functions (daemon/c_ext/odradek.h), run against both
implementations as tests/client/test_native.py runs the client's: the CFFI wrappers
(daemon/storage/_native_cffi.py) and the pure-Python reference (_native_ref.py), and
the face that picks one (daemon/storage/native.py).
"""
import bisect
import importlib
import mmap
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.daemon.storage import _native_ref as ref
from support.native import impl_fixture

impl = impl_fixture("odradek.daemon.storage._native_cffi", ref)


quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the API surface --------------------------------------------------------------------

def test_both_implementations_export_the_facade_api(impl):
    from odradek.daemon.storage import native
    for name in native.__all__:
        if name != "IMPLEMENTATION":
            assert hasattr(impl, name), name


def test_facade_picks_the_implementation_the_client_facade_picks(impl, monkeypatch):
    from odradek.client import native as client_native
    from odradek.daemon.storage import native
    if impl is ref:
        monkeypatch.setenv("ODRADEK_PURE", "1")
    else:
        monkeypatch.delenv("ODRADEK_PURE", raising=False)
    try:
        importlib.reload(client_native)
        importlib.reload(native)
        assert native.IMPLEMENTATION == client_native.IMPLEMENTATION == ("python" if impl is ref else "c")
        assert native.append_into is impl.append_into
        assert native.index_lookup is impl.index_lookup
    finally:
        monkeypatch.undo()
        importlib.reload(client_native)
        importlib.reload(native)


# ---- index lookups -------------------------------------------------------------------

def pack_index(keys):
    return b"".join(struct.pack(">II", k, 4096 * i) for i, k in enumerate(keys))


def pack_timeindex(stamps):
    return b"".join(struct.pack(">qI", t, i) for i, t in enumerate(stamps))


U32 = st.integers(0, 2**32 - 1)
I64 = st.integers(-2**63, 2**63 - 1)


@quick
@given(keys=st.lists(st.one_of(U32, st.integers(0, 20)), max_size=80).map(sorted),
       target=st.one_of(U32, st.integers(0, 21), st.integers(-5, -1),
                        st.integers(2**32, 2**32 + 5)),
       spare=st.integers(0, 3))
def test_index_lookup_finds_the_last_entry_at_or_below_target_as_bisect_does(
        impl, keys, target, spare):
    # spare zeroed slots after `entries` stand for a preallocated index file's tail
    index = pack_index(keys) + bytes(8 * spare)
    assert impl.index_lookup(index, len(keys), target) == bisect.bisect_right(keys, target) - 1


@quick
@given(stamps=st.lists(st.one_of(I64, st.integers(-3, 20)), max_size=80).map(sorted),
       target=st.one_of(I64, st.integers(-4, 21), st.just(-2**63), st.just(2**63 - 1),
                        st.integers(2**63, 2**63 + 5), st.integers(-2**63 - 5, -2**63 - 1)),
       spare=st.integers(0, 3))
def test_timeindex_lookup_finds_the_first_entry_at_or_after_target_as_bisect_does(
        impl, stamps, target, spare):
    index = pack_timeindex(stamps) + bytes(12 * spare)
    assert impl.timeindex_lookup(index, len(stamps), target) == \
        bisect.bisect_left(stamps, target)


@pytest.mark.parametrize("target", [-1, 0, 5, 2**32 - 1])
def test_index_lookups_on_an_empty_index_find_nothing(impl, target):
    assert impl.index_lookup(b"", 0, target) == -1
    assert impl.timeindex_lookup(b"", 0, target) == 0
    assert impl.index_lookup(bytes(80), 0, target) == -1


def test_index_lookup_over_duplicates_takes_the_last_and_timeindex_the_first(impl):
    keys, stamps = [0, 5, 5, 5, 9], [10, 20, 20, 20, 30]
    assert impl.index_lookup(pack_index(keys), 5, 5) == 3
    assert impl.index_lookup(pack_index(keys), 5, 4) == 0
    assert impl.timeindex_lookup(pack_timeindex(stamps), 5, 20) == 1
    assert impl.timeindex_lookup(pack_timeindex(stamps), 5, 21) == 4
    assert impl.timeindex_lookup(pack_timeindex(stamps), 5, 31) == 5


def test_index_lookups_read_an_mmapped_index_at_a_misaligned_offset(impl, tmp_path):
    keys = list(range(0, 3000, 3))
    stamps = [1_700_000_000_000 + 7 * k for k in keys]
    path = tmp_path / "idx"
    path.write_bytes(b"\x01" * 5 + pack_index(keys) + b"\x02" * 3 + pack_timeindex(stamps))
    split = 5 + 8 * len(keys) + 3
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        index, timeindex = memoryview(m)[5:split - 3], memoryview(m)[split:]
        for target in (-1, 0, 1, 1500, 2997, 2998, 10**6):
            assert impl.index_lookup(index, len(keys), target) == \
                bisect.bisect_right(keys, target) - 1
        for target in (0, stamps[0], stamps[0] + 1, stamps[500], stamps[-1], stamps[-1] + 1):
            assert impl.timeindex_lookup(timeindex, len(stamps), target) == \
                bisect.bisect_left(stamps, target)
        del index, timeindex


@quick
@given(keys=st.lists(U32, max_size=40), stamps=st.lists(I64, max_size=40),
       target=st.integers(-2**64, 2**64))
def test_index_lookups_on_unsorted_entries_stay_in_range(impl, keys, stamps, target):
    assert -1 <= impl.index_lookup(pack_index(keys), len(keys), target) < len(keys)
    assert 0 <= impl.timeindex_lookup(pack_timeindex(stamps), len(stamps), target) <= len(stamps)


@pytest.mark.parametrize("entries", [-1, 3])
def test_index_lookups_refuse_more_entries_than_the_buffer_holds(impl, entries):
    with pytest.raises(ValueError):
        impl.index_lookup(bytes(8 * 2 + 7), entries, 0)
    with pytest.raises(ValueError):
        impl.timeindex_lookup(bytes(12 * 2 + 11), entries, 0)
