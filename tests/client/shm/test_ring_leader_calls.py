"""The partition leader's per-entry ring calls in C (Ring.free: odk_ring_free;
Ring.release_completing: odk_ring_complete_release) against their Python references
(capacity - (tail - head); write_completion then release), on real rings: the same
free space, the same completion bytes and tags, the same cursors, whatever the entries;
a completion that does not fit releases nothing; a hostile reader's head costs room,
never a fault."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from odradek.client.errors import RingFull
from odradek.client.shm import Ring
from odradek.client.shm._lib import lib
from odradek.client.shm.ring import COMPLETION_SIZE, OFF_HEAD


def rings(capacity=1 << 12):
    """(requests, completions) as a leader sees them, and the fds to close."""
    req, req_fd = Ring.create(capacity)
    comp, comp_fd = Ring.create(capacity)
    return req, comp, (req_fd, comp_fd)


def close(*things):
    for thing in things:
        if isinstance(thing, int):
            os.close(thing)
        else:
            thing.close()


def test_the_completion_layout_is_the_headers():
    assert COMPLETION_SIZE == lib.ODK_RING_COMPLETION_SIZE


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(-1, 2**63 - 1), st.integers(-(2**31), 2**31 - 1),
                          st.integers(0, 2**32 - 1)), min_size=1, max_size=60))
def test_release_completing_writes_and_releases_as_write_completion_then_release(entries):
    """Two pairs of rings fed the same entries: one leader completes with the C call,
    the other with the Python reference; the completions read back, the cursors and
    the free space agree at every step (wrap-arounds included: the rings are small)."""
    c_req, c_comp, c_fds = rings(1 << 10)
    p_req, p_comp, p_fds = rings(1 << 10)
    try:
        for size, base_offset, code, tag in entries:
            payload = bytes([size & 0xFF]) * size
            for req in (c_req, p_req):
                req.write(payload, tag)
            got_c, got_p = c_req.peek(), p_req.peek()
            assert got_c[0] == got_p[0] == tag
            c_req.release_completing(c_comp, base_offset, code)
            p_comp.write_completion(tag, base_offset, code)
            p_req.release()
            assert (c_req.head, c_req.tail) == (p_req.head, p_req.tail)
            assert c_comp.free == p_comp.capacity - (p_comp.tail - p_comp.head)
            assert c_comp.read_completion() == p_comp.read_completion()
            assert c_comp.free == p_comp.free == c_comp.capacity
    finally:
        close(c_req, c_comp, p_req, p_comp, *c_fds, *p_fds)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 200), max_size=40), st.integers(0, 40))
def test_free_is_capacity_minus_what_the_reader_has_not_released(sizes, released):
    req, comp, fds = rings(1 << 12)
    try:
        for size in sizes:
            try:
                req.write(b"x" * size)
            except RingFull:
                break
        assert req.free == req.capacity - (req.tail - req.head)
        for _ in range(released):
            if req.peek() is None:
                break
            req.release()
            assert req.free == req.capacity - (req.tail - req.head)
    finally:
        close(req, comp, *fds)


def test_a_completion_that_does_not_fit_releases_nothing():
    req, comp, fds = rings(64)      # 64 bytes: two completion entries (24 B each) fit
    try:
        for i in range(3):
            req.write(b"b%d" % i, i)
        for i in range(2):
            assert req.peek()[0] == i
            req.release_completing(comp, i, 0)
        head = req.head
        assert req.peek()[0] == 2
        with pytest.raises(RingFull):
            req.release_completing(comp, 2, 0)
        assert req.head == head                 # not released: taken again next
        assert req.peek()[0] == 2
        assert comp.read_completion().base_offset == 0    # the producer reads one: room again
        req.release_completing(comp, 2, 0)
        assert req.peek() is None
    finally:
        close(req, comp, *fds)


def test_release_completing_without_a_peeked_entry_is_refused():
    req, comp, fds = rings()
    try:
        with pytest.raises(RuntimeError):
            req.release_completing(comp, 0, 0)
        assert lib.odk_ring_complete_release(req._r, comp._r, 0, 0) == lib.ODK_SHM_MISUSE
        assert comp.peek() is None
    finally:
        close(req, comp, *fds)


def test_a_reader_head_past_the_tail_reads_as_a_full_ring():
    """A hostile producer writes its completion ring's head past the leader's tail: the
    leader sees no room (and so stops taking that producer's entries), no wrap-around
    into a huge number."""
    req, comp, fds = rings()
    try:
        lib.odk_atomic_store_u64(comp._map.ptr, OFF_HEAD, comp.tail + 4096)
        assert comp.free == 0
    finally:
        close(req, comp, *fds)
