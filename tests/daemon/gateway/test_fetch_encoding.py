"""Fetch responses with records as FileSlices: the bytes sent are exactly kio's encoding
of the same response with the records inline, in every layout the gateway serves (int32
length prefixes before v12, varints in the flexible versions, topic ids from v13)."""
import os
import uuid

import pytest
from kio.schema.errors import ErrorCode

from odradek.client.records import BatchBuilder
from odradek.daemon.gateway.apis import FileSlice
from odradek.daemon.gateway.codec import build, encode_response, response_class
from odradek.daemon.gateway.fetch import splice_records


def _batches(n, size):
    out = b""
    for i in range(n):
        b = BatchBuilder(base_offset=i)
        b.append(1_700_000_000_000 + i, b"k%d" % i, b"v" * size, [("h", b"x")])
        out += b.build()
    return out


def _response(version, records):
    """A two-topic response; `records` per partition (bytes or a placeholder)."""
    key = "topic_id" if version >= 13 else "topic"
    topics = []
    for t, (name, parts) in enumerate([("alpha", records[:2]), ("beta", records[2:])]):
        topics.append({key: uuid.UUID(int=t + 1) if version >= 13 else name, "partitions": [
            dict(partition_index=i, error_code=ErrorCode.none, high_watermark=10, last_stable_offset=10,
                 log_start_offset=0, aborted_transactions=[], records=r, preferred_read_replica=-1)
            for i, r in enumerate(parts)]})
    return build(response_class(1, version), throttle_time=0, error_code=ErrorCode.none, session_id=7,
                 responses=topics)


def _sent(parts):
    out = b""
    for p in parts:
        out += os.pread(p.fd, p.length, p.offset) if isinstance(p, FileSlice) else p
    return out


@pytest.mark.parametrize("version", [4, 7, 11, 12, 13, 16, 18])
@pytest.mark.parametrize("sizes", [(1, 0, 3, 2), (200, 1, 0, 300)])   # batches of 1-byte .. 300-byte values
def test_spliced_response_is_kios_encoding_with_records_inline(tmp_path, version, sizes):
    payloads = [_batches(n, 20 + n * 40) if n else b"" for n in sizes]
    path = tmp_path / "segment.log"
    path.write_bytes(b"junk" + b"".join(payloads))
    fd = os.open(path, os.O_RDONLY)
    try:
        slices, placeholders, pos = {}, [], 4
        for p in payloads:
            if p:
                marker = os.urandom(16)
                slices[marker] = FileSlice(fd, pos, len(p))
                placeholders.append(marker)
            else:
                placeholders.append(b"")
            pos += len(p)
        expected = encode_response(99, _response(version, payloads))
        framed = encode_response(99, _response(version, placeholders))
        assert _sent(splice_records(framed, slices, version >= 12)) == expected
    finally:
        os.close(fd)


def test_a_missing_placeholder_is_a_bug_not_a_silent_answer():
    framed = encode_response(1, _response(12, [b"", b"", b"", b""]))
    with pytest.raises(AssertionError):
        splice_records(framed, {os.urandom(16): FileSlice(0, 0, 1)}, True)
