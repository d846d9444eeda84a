"""odradek._hotpath.BytesView (daemon/c_ext/hp_bytes_view.c), a zero-copy Record's key or
value, against what it stands for: the bytes it views. Everything a user may rely on (the
buffer protocol, read-only; len, indexing, slicing, iteration; == and order and hash as
bytes) must give what the same operation gives on bytes; and a view keeps its owner's
buffer for as long as it lives.
"""
import ctypes
import gc
import mmap
import pickle

import pytest
from hypothesis import given, strategies as st

from odradek._hotpath import BytesView

data_st = st.binary(max_size=40)
index_st = st.none() | st.integers(-50, 50)


@given(data_st, data_st, index_st, index_st, st.none() | st.integers(-4, 4).filter(bool), st.integers(-50, 50))
def test_a_view_reads_as_the_bytes_it_views(data, other, start, stop, step, i):
    padded = b"<" + data + b">"
    v = BytesView(memoryview(padded)[1:-1])       # a view inside a larger buffer
    assert len(v) == len(data) and bytes(v) == data and v.tobytes() == data and list(v) == list(data)
    assert memoryview(v).tobytes() == data and memoryview(v).readonly and bytearray(v) == data
    assert (v == data) and (data == v) and not (v != data) and hash(v) == hash(data)
    assert {data: 1}[v] == 1
    for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
        assert getattr(v, op)(other) == getattr(data, op)(other), op
        assert getattr(v, op)(BytesView(other)) == getattr(data, op)(other), op
    part = v[start:stop:step]
    assert bytes(part) == data[start:stop:step]
    if step in (None, 1):
        assert type(part) is BytesView
    if -len(data) <= i < len(data):
        assert v[i] == data[i]
    else:
        with pytest.raises(IndexError):
            v[i]


def test_a_view_is_read_only_and_refuses_what_bytes_refuses():
    v = BytesView(b"abc")
    with pytest.raises(TypeError):
        v[0] = 1
    with pytest.raises(TypeError):
        memoryview(v)[0] = 1
    with pytest.raises((TypeError, BufferError)):
        (ctypes.c_char * 3).from_buffer(v)         # asks for a writable buffer
    with pytest.raises(TypeError):
        v["a"]
    with pytest.raises(TypeError):
        pickle.dumps(v)
    assert v.__eq__("abc") is NotImplemented and v != "abc"
    with pytest.raises(TypeError):
        v < "abc"
    assert repr(v).startswith("<odradek BytesView of 3 bytes")


@pytest.mark.parametrize("bad, error", [
    ("text", TypeError),                                  # no buffer
    (None, TypeError),
    (memoryview(bytes(8)).cast("q"), ValueError),         # not bytes
    (memoryview(bytes(8))[::2], ValueError),              # not contiguous
])
def test_a_view_is_made_of_contiguous_bytes_only(bad, error):
    with pytest.raises(error):
        BytesView(bad)


def test_a_view_keeps_its_owners_buffer_and_is_not_tracked():
    mm = mmap.mmap(-1, 4096)
    mm[:5] = b"hello"
    v = BytesView(mm)[:5]
    assert not gc.is_tracked(v) and bytes(v) == b"hello"
    with pytest.raises(BufferError):
        mm.close()                                     # the view holds the map
    m = memoryview(v)
    del v
    gc.collect()
    assert m.tobytes() == b"hello"                     # a memoryview of a view holds it too
    with pytest.raises(BufferError):
        mm.close()
    m.release()
    mm.close()                                         # the last view gone: the map goes
    source = memoryview(b"still here")
    kept = BytesView(source)[6:]
    source.release()                                   # the view's owner is its own memoryview
    assert bytes(kept) == b"here"
    grow = bytearray(b"abc")
    w = BytesView(grow)
    with pytest.raises(BufferError):
        grow += b"more"                                # no resize under a view
    del w
    grow += b"more"


def test_many_views_made_and_freed_stay_distinct():
    base = bytes(range(256)) * 64
    for _ in range(3):                                 # through the free list and past it
        views = [BytesView(base)[i:i + 7] for i in range(5000)]
        assert all(bytes(v) == base[i:i + 7] for i, v in enumerate(views))
        del views
