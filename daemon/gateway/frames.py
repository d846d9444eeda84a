"""Request frames off a Kafka connection's socket: `size:int32` then `size` bytes.

A FrameReader receives into a buffer of BUFFER_BYTES as much as the socket holds, so
several small requests a client sent back to back (pipelined) cost one recv; each
frame wholly inside the buffer is handed out as a read-only memoryview of it, which
kio decodes without a copy. Bytes are only ever appended to a buffer, never written
over: when a frame does not fit in what is left of it, the frame's bytes so far move
to a new buffer, and the old one lives on for as long as a frame handed out refers to
it. A frame larger than a buffer gets one of its own, grown READ_CHUNK at a time as its
bytes arrive: a client announcing a 100 MiB request and sending 10 bytes holds a
chunk, not 100 MiB. A size below 8 or above the limit is FrameSizeError before
anything is allocated for it (Kafka's InvalidReceiveException).

`ready()` says whether the next frame can be had without waiting: it is already
buffered, or one non-blocking recv completes it. The connection uses it to decide
whether to start another pipelined request before answering the oldest (server.py).
It polls the socket (timeout 0) before it receives: a lone request (nothing behind it,
the usual case at low rates) then costs one poll, not a recv that fails with EAGAIN,
which Python turns into an exception (10-15 us on a lone request's cold path here). A
socket at end of file or in error polls readable, so the recv that follows meets it as
before.
"""
import select
import socket
import struct

__all__ = ["FrameReader", "FrameSizeError", "BUFFER_BYTES", "READ_CHUNK"]

BUFFER_BYTES = 64 * 1024      # one recv's worth of small requests
READ_CHUNK = 1 << 20          # memory a large request takes ahead of its bytes
_LOOKS = 3                    # ready()'s non-blocking recvs at most: bytes, more, end of file
_SIZE = struct.Struct(">i")
_ZEROS = memoryview(bytes(READ_CHUNK))


class FrameSizeError(Exception):
    """A frame announced a size outside 8..limit."""

    def __init__(self, size, limit):
        super().__init__(f"a request of {size} bytes (allowed: 8 to {limit})")
        self.size, self.limit = size, limit


class FrameReader:
    """Frames of one socket (see the module docstring). Not thread-safe: one reader."""

    def __init__(self, sock, max_bytes):
        self._sock, self._max = sock, max_bytes
        self._buf = bytearray(BUFFER_BYTES)
        self._start = self._end = 0      # the unread bytes: _buf[_start:_end]
        self._eof = False
        self._poll = select.poll()       # ready(): is anything (bytes, an end, an error) there?
        self._poll.register(sock, select.POLLIN)

    def next(self):
        """The next frame's bytes (a read-only memoryview), waiting for them as the
        socket's timeouts allow; None at end of file (also mid-frame)."""
        if not self._fill(4):
            return None
        size = self._size()
        if 4 + size > BUFFER_BYTES:
            return self._large(size)
        if not self._fill(4 + size):
            return None
        at = self._start + 4
        self._start = at + size
        return memoryview(self._buf)[at:at + size].toreadonly()

    def ready(self):
        """Whether next() would return without waiting (a whole frame, an end of file or
        an error is here)."""
        for _ in range(_LOOKS):
            if self._eof or self._whole():
                return True
            if self._large_next():
                return False
            try:
                if not self._poll.poll(0):
                    return False
                self._recv(socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                return True          # next() meets it
        return self._eof or self._whole()

    def _whole(self):
        have = self._end - self._start
        if have < 4:
            return False
        size = _SIZE.unpack_from(self._buf, self._start)[0]
        return not 8 <= size <= self._max or have >= 4 + size

    def _large_next(self):
        return self._end - self._start >= 4 and 4 + _SIZE.unpack_from(self._buf, self._start)[0] > BUFFER_BYTES

    def _size(self):
        size = _SIZE.unpack_from(self._buf, self._start)[0]
        if not 8 <= size <= self._max:
            raise FrameSizeError(size, self._max)
        return size

    def _fill(self, n):
        """At least `n` (<= BUFFER_BYTES) unread bytes in the buffer; False at end of file."""
        while self._end - self._start < n:
            if self._eof:
                return False
            if self._start + n > len(self._buf):
                self._move()
            self._recv(0)
        return True

    def _recv(self, flags):
        if self._end == len(self._buf):
            self._move()
        with memoryview(self._buf) as view:
            got = self._sock.recv_into(view[self._end:], 0, flags)
        if got == 0:
            self._eof = True
        self._end += got

    def _move(self):
        """The unread bytes to the start of a new buffer (frames handed out keep the old)."""
        left = self._end - self._start
        buf = bytearray(BUFFER_BYTES)
        buf[:left] = self._buf[self._start:self._end]
        self._buf, self._start, self._end = buf, 0, left

    def _large(self, size):
        """A frame bigger than a buffer, into one of its own grown as its bytes arrive."""
        had = self._end - self._start - 4          # all of it this frame's: size > a buffer
        frame = bytearray(min(size, READ_CHUNK))
        frame[:had] = self._buf[self._start + 4:self._end]
        self._start = self._end
        got = had
        while True:
            with memoryview(frame) as view:
                while got < len(frame):
                    k = self._sock.recv_into(view[got:])
                    if k == 0:
                        self._eof = True
                        return None
                    got += k
            if got == size:
                return memoryview(frame).toreadonly()
            frame += _ZEROS[:min(size - got, READ_CHUNK)]     # no export of frame is alive here
