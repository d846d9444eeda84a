"""client/records/compression.py: Kafka's framing of each codec, reading what other
writers write (lz4 and zstandard, over liblz4 and libzstd; for snappy, whose Python
binding is cramjam itself, a decoder and a literal-only encoder written here from the
format's description), bounded decompression, the size bound the producer relies on, and
the level configs."""
import gzip
import os
import struct

import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from odradek.client import Producer
from odradek.client.errors import CorruptRecord, InvalidConfig
from odradek.client.records import RECORDS_OFFSET, BatchBuilder, Compression, RecordBatch
from odradek.client.records.compression import (
    DECOMPRESSED_LIMIT, LEVEL_CONFIGS, LZ4_BLOCK, LZ4_HEADER, XERIAL_BLOCK, XERIAL_HEADER, compress,
    compressed_bound, decompress)

CODECS = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]
TEXT = b"".join(b"record %d: the quick brown fox %d\n" % (i, i % 13) for i in range(5000))   # ~170 KB


def xxh32(data, seed=0):
    """XXH32 (the LZ4 frame's header checksum), bit by bit from its specification."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    mask = 0xFFFFFFFF

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & mask
    assert len(data) < 16
    h = (seed + p5 + len(data)) & mask
    i = 0
    while i + 4 <= len(data):
        h = rotl((h + struct.unpack_from("<I", data, i)[0] * p3) & mask, 17) * p4 & mask
        i += 4
    for b in data[i:]:
        h = rotl((h + b * p5) & mask, 11) * p1 & mask
    h ^= h >> 15
    h = h * p2 & mask
    h ^= h >> 13
    h = h * p3 & mask
    return h ^ (h >> 16)


def snappy_varint(data, pos):
    value = shift = 0
    while True:
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if b < 0x80:
            return value, pos


def snappy_block_decode(block):
    """Snappy's raw block format: the uncompressed length (varint), then elements whose
    tag's low two bits say literal (0), copy with a 1-, 2- or 4-byte offset (1, 2, 3)."""
    n, pos = snappy_varint(block, 0)
    out = bytearray()
    while pos < len(block):
        tag = block[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(block[pos:pos + extra], "little")
                pos += extra
            out += block[pos:pos + length + 1]
            pos += length + 1
            continue
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | block[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            length, offset = (tag >> 2) + 1, int.from_bytes(block[pos:pos + width], "little")
            pos += width
        for _ in range(length):     # copies may overlap what they produce
            out.append(out[-offset])
    assert len(out) == n
    return bytes(out)


def snappy_literal_block(data):
    """A valid raw snappy block holding `data` as literals only (60-byte-tag form)."""
    n, head = len(data), bytearray()
    while True:
        head.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    parts = [bytes(head)]
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        parts.append(bytes([61 << 2]) + (len(chunk) - 1).to_bytes(2, "little") + chunk)
    return b"".join(parts)


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_and_compresses(codec):
    for data in (b"", b"x", TEXT, os.urandom(100_000)):
        assert decompress(codec, compress(codec, data)) == data
        if codec != Compression.SNAPPY:
            assert decompress(codec, compress(codec, data, {Compression.GZIP: 1, Compression.LZ4: 12,
                                                            Compression.ZSTD: 19}[codec])) == data
    assert len(compress(codec, TEXT)) < len(TEXT) / 3
    assert decompress(codec, compress(codec, TEXT), head=61)[61:] == TEXT


def test_gzip_is_one_stream_with_mtime_0_and_concatenated_members_are_read():
    region = compress(Compression.GZIP, TEXT)
    assert region[:3] == b"\x1f\x8b\x08" and region[4:8] == bytes(4)   # deflate, mtime 0
    assert gzip.decompress(region) == TEXT and compress(Compression.GZIP, TEXT) == region
    members = gzip.compress(TEXT[:1000], mtime=0) + gzip.compress(TEXT[1000:], mtime=0)
    assert decompress(Compression.GZIP, members) == TEXT


def test_snappy_is_xerial_framed_in_32_kib_blocks_and_raw_snappy_is_read():
    region = compress(Compression.SNAPPY, TEXT)
    assert region[:16] == XERIAL_HEADER == bytes.fromhex("82534e415050590000000001 00000001".replace(" ", ""))
    pos, blocks = 16, []
    while pos < len(region):
        (n,) = struct.unpack_from(">i", region, pos)
        blocks.append(snappy_block_decode(region[pos + 4:pos + 4 + n]))
        pos += 4 + n
    assert pos == len(region) and b"".join(blocks) == TEXT
    assert [len(b) for b in blocks[:-1]] == [XERIAL_BLOCK] * (len(blocks) - 1) == [32768] * (len(blocks) - 1)
    raw = snappy_literal_block(TEXT)
    assert decompress(Compression.SNAPPY, raw) == TEXT                           # no framing: raw
    framed = XERIAL_HEADER + b"".join(struct.pack(">i", len(b)) + b for b in (
        snappy_literal_block(TEXT[i:i + XERIAL_BLOCK]) for i in range(0, len(TEXT), XERIAL_BLOCK)))
    assert decompress(Compression.SNAPPY, framed) == TEXT
    assert decompress(Compression.SNAPPY, XERIAL_HEADER) == b""


def test_lz4_is_kafkas_frame_with_a_correct_header_checksum():
    region = compress(Compression.LZ4, TEXT)
    assert region[:7] == LZ4_HEADER
    flg, bd, hc = region[4], region[5], region[6]
    assert flg == 0b01_1_0_0_0_00 and bd == 0x40 and LZ4_BLOCK == 64 << 10  # v1, independent blocks
    assert hc == (xxh32(bytes([flg, bd])) >> 8) & 0xFF                      # what Kafka >= 0.10 checks
    assert lz4.frame.decompress(region) == TEXT                              # liblz4 checks it too
    assert region[-4:] == bytes(4)                                           # end mark
    stored = compress(Compression.LZ4, os.urandom(1000))                     # incompressible
    assert struct.unpack_from("<I", stored, 7)[0] == 1000 | 0x80000000
    # frames other writers make: checksums, content size, linked blocks
    for options in ({}, {"block_linked": True, "content_checksum": True, "store_size": True},
                    {"block_size": lz4.frame.BLOCKSIZE_MAX4MB, "block_checksum": True}):
        assert decompress(Compression.LZ4, lz4.frame.compress(TEXT, **options)) == TEXT


def test_zstd_frames_are_read_by_zstandard_and_several_frames_read_as_one():
    region = compress(Compression.ZSTD, TEXT)
    assert region[:4] == bytes.fromhex("28b52ffd")
    assert zstandard.ZstdDecompressor().decompressobj().decompress(region) == TEXT
    two = zstandard.ZstdCompressor().compress(TEXT[:999]) + zstandard.ZstdCompressor(write_content_size=False) \
        .compress(TEXT[999:])
    assert decompress(Compression.ZSTD, two) == TEXT


@pytest.mark.parametrize("codec", CODECS)
def test_output_past_the_limit_is_corrupt_at_every_size_tried(codec):
    zeros = compress(codec, bytes(3 << 20))
    assert len(decompress(codec, zeros, limit=3 << 20)) == 3 << 20
    for limit in (1000, 100_000, (3 << 20) - 1):
        with pytest.raises(CorruptRecord, match=f"{codec.label} records decompress to .*{limit}"):
            decompress(codec, zeros, limit=limit)


def test_a_snappy_block_claiming_more_than_the_limit_allocates_nothing():
    claim = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + b"\x00" * 10           # varint 2**32 - 1
    for region in (claim, XERIAL_HEADER + struct.pack(">i", len(claim)) + claim):
        with pytest.raises(CorruptRecord, match=f"4294967295 bytes, more than {DECOMPRESSED_LIMIT}"):
            decompress(Compression.SNAPPY, region)


def test_a_batch_inflating_past_100_mb_is_corrupt_not_an_allocation():
    b = BatchBuilder(compression=Compression.ZSTD)
    b.append(0, None, b"v")
    data = bytearray(b.build()[:RECORDS_OFFSET]) + compress(Compression.ZSTD, bytes(DECOMPRESSED_LIMIT + 1))
    struct.pack_into(">i", data, 8, len(data) - 12)
    assert DECOMPRESSED_LIMIT == 100_000_000
    with pytest.raises(CorruptRecord, match="batch at base offset 0: zstd records decompress to more than 100000000"):
        RecordBatch(bytes(data)).records()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("damage", ["truncated", "garbage", "trailing bytes"])
def test_damaged_regions_are_corrupt_naming_the_codec(codec, damage):
    region = compress(codec, TEXT)
    bad = {"truncated": region[:len(region) // 2], "garbage": bytes(range(256)) * 4,
           "trailing bytes": region + b"\x01\x02\x03\x04\x05"}[damage]
    with pytest.raises(CorruptRecord, match=codec.label):
        decompress(codec, bad)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CODECS), st.binary(max_size=3000), st.integers(0, 200_000), st.booleans())
def test_compressed_bound_holds_for_incompressible_data(codec, data, random_size, high):
    level = {Compression.GZIP: 9, Compression.LZ4: 12, Compression.ZSTD: 19}.get(codec) if high else None
    for sample in (data, os.urandom(random_size)):
        assert len(compress(codec, sample, level)) <= compressed_bound(codec, len(sample))


def test_levels_are_kafkas_configs_with_kafkas_ranges_and_defaults():
    assert {name: default for name, (_, default) in LEVEL_CONFIGS.items()} == \
        {"compression.gzip.level": -1, "compression.lz4.level": 9, "compression.zstd.level": 3}
    for codec, low, high in [(Compression.GZIP, 1, 9), (Compression.LZ4, 3, 12), (Compression.ZSTD, -5, 19)]:
        sizes = {len(compress(codec, TEXT, level)) for level in (low, high)}
        assert len(sizes) == 2                                                 # the level is used
        assert decompress(codec, compress(codec, TEXT, high)) == TEXT
    high = compress(Compression.LZ4, TEXT, 12)          # liblz4's frame: block checksums added
    assert high[:7] == bytes.fromhex("04224d18" "70" "40") + bytes([(xxh32(b"\x70\x40") >> 8) & 0xFF])
    assert lz4.frame.decompress(high) == TEXT and len(high) < len(compress(Compression.LZ4, TEXT))
    assert compress(Compression.ZSTD, TEXT) == compress(Compression.ZSTD, TEXT, 3)
    assert compress(Compression.GZIP, TEXT) == compress(Compression.GZIP, TEXT, -1) == \
        compress(Compression.GZIP, TEXT, 6)
    with pytest.raises(InvalidConfig, match="compression.zstd.level=23"):
        compress(Compression.ZSTD, TEXT, 23)


@pytest.mark.parametrize("config,words", [
    ({"compression.type": "brotli"}, "must be one of none, gzip, snappy, lz4, zstd"),
    ({"compression.type": "zstd", "compression.zstd.level": 23}, "must be -131072..22"),
    ({"compression.gzip.level": 0}, "must be 1..9"),
    ({"compression.lz4.level": "fast"}, "compression.lz4.level"),
])
def test_the_producer_refuses_unknown_codecs_and_levels_out_of_range(config, words):
    with pytest.raises(InvalidConfig, match=words):
        Producer({"socket": "/nonexistent/odradek.sock", **config})
