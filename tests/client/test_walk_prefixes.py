"""native.walk_prefixes (odk_walk_prefixes, odradek.h): the gateway's walk of whole
batches by their prefixes, C against its Python twin and against a plain model of the
rule (the per-batch loop the gateway had before), on random prefixes, windows and
bounds, damaged ones included."""
import struct

from hypothesis import given, settings, strategies as st

from odradek.client import _native_ref as ref
from odradek.client import native

PREFIX = struct.Struct(">qi")


def model(file, pos, start, end, upper, max_bytes, at_least_one, max_batches):
    """The rule on the whole file, batch by batch (no window)."""
    for _ in range(max_batches):
        if pos >= end or pos + 12 > len(file):
            break
        base, length = PREFIX.unpack_from(file, pos)
        size = length + 12
        if base >= upper or length < 0 or pos + size > end or \
                ((pos > start or not at_least_one) and pos + size - start > max_bytes):
            break
        pos += size
    return pos


@st.composite
def files(draw):
    out, base = bytearray(), draw(st.integers(0, 1000))
    for _ in range(draw(st.integers(0, 30))):
        length = draw(st.one_of(st.integers(0, 300), st.just(-1), st.integers(-2 ** 31, 2 ** 31 - 1)))
        out += PREFIX.pack(base, length) + bytes(max(0, min(length, 300)))
        base += draw(st.integers(-2, 50))
    if draw(st.booleans()):
        out += bytes(draw(st.integers(1, 11)))            # a torn prefix at the end
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(file=files(), data=st.data())
def test_c_and_twin_walk_as_the_model(file, data):
    start = data.draw(st.integers(0, max(0, len(file) - 1)))
    end = data.draw(st.integers(start, len(file) + 50))
    upper = data.draw(st.integers(0, 2000))
    max_bytes = data.draw(st.integers(0, 3000))
    at_least_one = data.draw(st.booleans())
    max_batches = data.draw(st.integers(0, 40))
    want = model(file, start, start, end, upper, max_bytes, at_least_one, max_batches)
    # the whole file in one buffer: the walk is the model's
    for walk in (native.walk_prefixes, ref.walk_prefixes):
        assert walk(file, 0, start, start, end, upper, max_bytes, at_least_one, max_batches) == want
    # in windows, as the gateway reads them: each walk goes on where the last stopped
    size = data.draw(st.integers(12, 400))
    pos, rounds = start, 0
    while rounds < 1000:
        rounds += 1
        buf = file[pos:pos + size]
        got = [w(buf, pos, pos, start, end, upper, max_bytes, at_least_one, max_batches)
               for w in (native.walk_prefixes, ref.walk_prefixes)]
        assert got[0] == got[1]
        if got[0] == pos or got[0] >= end or got[0] - pos + 12 <= len(buf):
            pos = got[0]
            break
        pos = got[0]
    if max_batches >= 30:           # windows restart the budget: only unbounded walks agree
        assert pos == want


def test_a_buffer_starting_after_pos_walks_nothing():
    file = PREFIX.pack(0, 0) * 4
    assert native.walk_prefixes(file[12:], 12, 0, 0, 48, 10, 100, True, 10) == 0
    assert ref.walk_prefixes(file[12:], 12, 0, 0, 48, 10, 100, True, 10) == 0
