"""Frame layout and the incremental frame splitter.

    frame = length:u32 | api_key:u16 | api_version:u16 | correlation_id:u32 | flags:u8 | body
    (all big-endian; `length` counts every byte after itself: 9 header bytes + the body)

      off size type  field            off size type  field
        0   4  u32   length             8   4  u32   correlation_id
        4   2  u16   api_key           12   1  u8    flags (RESPONSE 1, ERROR 2, FDS 4)
        6   2  u16   api_version       13      body

Each offset below is derived from the one before it; tests/client/protocol/test_framing.py
checks them against the table in PROTOCOL.md. The splitter never allocates from a length
prefix: it waits for the whole 13-byte header, refuses a length above max_frame_size
before buffering a byte of the body, and holds at most one partial frame.
Pure code: no I/O, no clock.
"""
import struct
from typing import NamedTuple

from odradek.client.protocol._errors import BadFrame, FrameTooLarge

__all__ = [
    "LENGTH_OFFSET", "LENGTH_SIZE", "API_KEY_OFFSET", "API_KEY_SIZE", "API_VERSION_OFFSET",
    "API_VERSION_SIZE", "CORRELATION_ID_OFFSET", "CORRELATION_ID_SIZE", "FLAGS_OFFSET",
    "FLAGS_SIZE", "BODY_OFFSET", "HEADER_SIZE", "MIN_LENGTH", "FLAG_RESPONSE", "FLAG_ERROR",
    "FLAG_FDS", "KNOWN_FLAGS", "DEFAULT_MAX_FRAME_SIZE", "MAX_CORRELATION_ID",
    "FrameHeader", "Frame", "FrameSplitter", "encode_frame",
]

LENGTH_OFFSET = 0
LENGTH_SIZE = 4
API_KEY_OFFSET = LENGTH_OFFSET + LENGTH_SIZE
API_KEY_SIZE = 2
API_VERSION_OFFSET = API_KEY_OFFSET + API_KEY_SIZE
API_VERSION_SIZE = 2
CORRELATION_ID_OFFSET = API_VERSION_OFFSET + API_VERSION_SIZE
CORRELATION_ID_SIZE = 4
FLAGS_OFFSET = CORRELATION_ID_OFFSET + CORRELATION_ID_SIZE
FLAGS_SIZE = 1
BODY_OFFSET = FLAGS_OFFSET + FLAGS_SIZE
HEADER_SIZE = BODY_OFFSET
# The smallest legal `length`: the header after the prefix and an empty body.
MIN_LENGTH = HEADER_SIZE - LENGTH_SIZE

FLAG_RESPONSE = 0x01   # set on responses, clear on requests
FLAG_ERROR = 0x02      # an error response: the body is (error_code, error_message)
FLAG_FDS = 0x04        # file descriptors came with this frame's first byte (SCM_RIGHTS)
KNOWN_FLAGS = FLAG_RESPONSE | FLAG_ERROR | FLAG_FDS

# The largest `length` accepted unless configured otherwise (Kafka's
# socket.request.max.bytes plays the same part). A Metadata or Status answer for some
# 20,000 partitions fits; record bytes never travel here.
DEFAULT_MAX_FRAME_SIZE = 1 << 20
MAX_CORRELATION_ID = (1 << 32) - 1

_HEADER = struct.Struct(">IHHIB")
assert _HEADER.size == HEADER_SIZE


class FrameHeader(NamedTuple):
    length: int
    api_key: int
    api_version: int
    correlation_id: int
    flags: int

    @property
    def is_response(self):
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_error(self):
        return bool(self.flags & FLAG_ERROR)

    @property
    def has_fds(self):
        return bool(self.flags & FLAG_FDS)


class Frame(NamedTuple):
    start: int           # stream position of the frame's first byte (for fd matching)
    header: FrameHeader
    body: bytes


def encode_frame(api_key, api_version, correlation_id, flags, body):
    """One whole frame. The caller has checked the header values and the size."""
    return _HEADER.pack(MIN_LENGTH + len(body), api_key, api_version, correlation_id,
                        flags) + body


class FrameSplitter:
    """Cuts a byte stream into frames. Owned by one Connection; not thread-safe.

    feed() appends bytes; next_frame() returns the next whole Frame, None if more bytes
    are needed, or raises BadFrame / FrameTooLarge (with the header attached, so the
    caller can answer its correlation id). After an error the stream is unusable.
    """

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        if max_frame_size < MIN_LENGTH:
            raise ValueError(f"max_frame_size must be at least {MIN_LENGTH}")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._head = 0          # stream position of _buf[0]
        self.received = 0       # bytes fed so far

    @property
    def head_position(self):
        """Stream position of the first byte not yet returned as a frame."""
        return self._head

    @property
    def buffered(self):
        """Bytes of an incomplete frame held (at most max_frame_size + 4)."""
        return len(self._buf)

    def feed(self, data):
        self._buf += data
        self.received += len(data)

    def next_frame(self):
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        header = FrameHeader(*_HEADER.unpack_from(buf, 0))
        if header.length < MIN_LENGTH:
            raise BadFrame(f"frame length {header.length} is shorter than the "
                           f"{MIN_LENGTH}-byte header", header=header)
        if header.length > self.max_frame_size:
            raise FrameTooLarge(f"control-plane frame of {header.length} bytes exceeds "
                                f"max_frame_size {self.max_frame_size}", header=header)
        if header.flags & ~KNOWN_FLAGS:
            raise BadFrame(f"unknown flag bits {header.flags & ~KNOWN_FLAGS:#04x}",
                           header=header)
        if header.is_error and not header.is_response:
            raise BadFrame("ERROR flag on a frame that is not a response", header=header)
        total = LENGTH_SIZE + header.length
        if len(buf) < total:
            return None
        with memoryview(buf) as view:
            body = bytes(view[HEADER_SIZE:total])
        start = self._head
        del buf[:total]           # O(1) amortised: bytearray moves its start pointer
        self._head += total
        return Frame(start, header, body)
