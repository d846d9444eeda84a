"""Request frames off a socket (frames.py): whole and byte for byte at every size around
its buffer and chunk sizes, many small ones out of one recv without one overwriting
another, ready() without waiting, end of file mid-frame, sizes out of bounds refused
before anything is read or allocated."""
import socket
import struct
import threading

import pytest

from odradek.daemon.gateway.frames import BUFFER_BYTES, READ_CHUNK, FrameReader, FrameSizeError
from odradek.daemon.gateway.server import _set_timeouts

LIMIT = 8 * READ_CHUNK


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    _set_timeouts(ours, 10)      # as the gateway's connections: blocking, with SO_RCVTIMEO
    yield ours, theirs
    ours.close()
    theirs.close()


def framed(body):
    return struct.pack(">i", len(body)) + body


def send_in_pieces(sock, data, piece=100_000):
    t = threading.Thread(target=lambda: [sock.sendall(data[i:i + piece]) for i in range(0, len(data), piece)],
                         daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("size", [8, BUFFER_BYTES - 4, BUFFER_BYTES - 3, BUFFER_BYTES, READ_CHUNK, READ_CHUNK + 1,
                                  2 * READ_CHUNK + 12345])
def test_a_frame_arrives_whole_and_read_only(pair, size):
    ours, theirs = pair
    body = bytes(i % 251 for i in range(size))
    sender = send_in_pieces(theirs, framed(body))
    got = FrameReader(ours, LIMIT).next()
    sender.join(10)
    assert got.readonly and got == body


def test_frames_sent_back_to_back_stay_intact_across_buffers(pair):
    """Frames of every size in one stream: each handed-out view still holds its own
    bytes after the reader moved on to later frames and new buffers."""
    ours, theirs = pair
    bodies = [bytes([n % 256]) * size for n, size in enumerate([8, 100, 5000, BUFFER_BYTES // 2, 9, BUFFER_BYTES - 4,
                                                                 70_000, 13, 3 * BUFFER_BYTES, 8] * 3)]
    sender = send_in_pieces(theirs, b"".join(framed(b) for b in bodies), piece=7777)
    reader = FrameReader(ours, LIMIT)
    got = [reader.next() for _ in bodies]
    sender.join(10)
    assert [bytes(g) for g in got] == bodies


def test_ready_says_whether_a_whole_frame_is_here_without_waiting(pair):
    ours, theirs = pair
    reader = FrameReader(ours, LIMIT)
    assert not reader.ready()                       # nothing sent: no wait either
    theirs.sendall(framed(b"a" * 20) + framed(b"b" * 30)[:10])
    assert reader.ready() and bytes(reader.next()) == b"a" * 20
    assert not reader.ready()                       # half a frame
    theirs.sendall(framed(b"b" * 30)[10:])
    assert reader.ready() and bytes(reader.next()) == b"b" * 30
    theirs.sendall(framed(b"c" * (BUFFER_BYTES * 2))[:100])
    assert not reader.ready()                       # a large frame's start


def test_end_of_file_mid_frame_is_none(pair):
    ours, theirs = pair
    def send_part_and_close():
        theirs.sendall(struct.pack(">i", 3 * READ_CHUNK) + bytes(READ_CHUNK + 5))
        theirs.close()
    sender = threading.Thread(target=send_part_and_close, daemon=True)
    sender.start()
    reader = FrameReader(ours, LIMIT)
    assert reader.next() is None
    sender.join(10)
    assert reader.ready()                           # next() returns at once from now on
    ours2, theirs2 = socket.socketpair()
    with ours2, theirs2:
        theirs2.sendall(framed(b"x" * 20)[:9])
        theirs2.close()
        small = FrameReader(ours2, LIMIT)
        assert small.ready() and small.next() is None      # a small frame cut short too


@pytest.mark.parametrize("size", [-1, 0, 7, LIMIT + 1])
def test_a_size_out_of_bounds_is_refused_before_it_is_read(pair, size):
    ours, theirs = pair
    theirs.sendall(struct.pack(">i", size))
    reader = FrameReader(ours, LIMIT)
    assert reader.ready()
    with pytest.raises(FrameSizeError) as e:
        reader.next()
    assert e.value.size == size
