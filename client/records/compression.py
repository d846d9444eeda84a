"""The four codecs of a v2 batch's records region (attribute bits 0-2): compress and
decompress each in the framing Apache Kafka writes and reads, through one library,
cramjam (one native extension with all four codecs and wheels for every platform,
instead of python-snappy + lz4 + zstandard). FORMAT.md beside this file,
"Compression", draws each framing (gzip stream; snappy in xerial's framing; one LZ4 frame
as Kafka's Lz4BlockOutputStream writes it; zstd frames) and what is read besides; the
constants below are its bytes.

    region = compress(Compression.ZSTD, records, level=None)    # Kafka's default level
    records = decompress(Compression.ZSTD, region)               # bytearray

Decompression is bounded: output past `limit` bytes (DECOMPRESSED_LIMIT unless the caller
gives its own) makes the region corrupt (CorruptRecord), never an allocation of what a
hostile batch claims. Pure functions: no I/O, no state.
"""
import struct

import cramjam

from odradek.client.errors import CorruptRecord, InvalidConfig
from odradek.client.records.layout import Compression

__all__ = ["compress", "decompress", "compressed_bound", "LEVEL_CONFIGS", "configured_level", "DECOMPRESSED_LIMIT",
           "XERIAL_HEADER", "XERIAL_BLOCK", "LZ4_HEADER", "LZ4_BLOCK"]

# The most bytes one batch's records may decompress to: librdkafka's cap for the same
# case (receive.message.max.bytes, 100 MB by default). Far above any batch a producer
# builds (Kafka's and ours stop a batch near batch.size, a record at max.request.size /
# max.message.bytes, uncompressed) and small enough to allocate on any host.
DECOMPRESSED_LIMIT = 100_000_000

XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
XERIAL_BLOCK = 32 * 1024          # input bytes per snappy block (xerial's default, Kafka's)
_XERIAL_MAGIC = XERIAL_HEADER[:8]
_I32 = struct.Struct(">i")
# magic, FLG, BD, then the header checksum: (xxh32(FLG BD, seed 0) >> 8) & 0xff
LZ4_HEADER = bytes.fromhex("04224d18" "60" "40" "82")
LZ4_BLOCK = 64 * 1024             # input bytes per LZ4 block (BD 0x40)
_LZ4_STORED = 0x80000000          # block length bit: the block is stored uncompressed
_LZ4_END = bytes(4)
_U32LE = struct.Struct("<I")

# Kafka's level configs (KIP-390): name, allowed range, default. The default means the
# codec's usual setting: zlib's 6 for gzip (-1: Deflater.DEFAULT_COMPRESSION), LZ4's fast
# compressor for lz4 (Kafka uses lz4-java's fast compressor at its default 9 and the high
# compressor at any other level), zstd's 3.
_LEVELS = {
    Compression.GZIP: ("compression.gzip.level", 1, 9, -1),
    Compression.LZ4: ("compression.lz4.level", 1, 17, 9),
    Compression.ZSTD: ("compression.zstd.level", -131072, 22, 3),
}
_GZIP_DEFAULT = 6
_WHOLE_BUFFER = "whole buffer"    # cramjam's words when the output buffer is full
_FIRST_GUESS = 8                  # output buffer, first try: this times the input (grown x8)


def _level_parser(low, high, default):
    def parse(raw):
        value = int(raw)
        if value != default and not low <= value <= high:
            raise ValueError(f"must be {low}..{high} (default {default})")
        return value
    return parse


# {config name: (parse, default)}: Kafka's level configs, for a client's config schema
# (client/_config.py)
LEVEL_CONFIGS = {name: (_level_parser(low, high, default), default) for name, low, high, default in _LEVELS.values()}


def configured_level(codec, config):
    """The level a parsed client config gives `codec` (None: snappy and none have none)."""
    spec = _LEVELS.get(Compression(codec))
    return None if spec is None else config[spec[0]]


def _level(codec, level):
    if level is None or level == _LEVELS[codec][3]:
        return None
    name, low, high, default = _LEVELS[codec]
    if not low <= level <= high:
        raise InvalidConfig(f"{name}={level} is out of range: {low}..{high} (default {default})")
    return level


def compress(codec, data, level=None):
    """The records region for the uncompressed records `data` (bytes-like) in `codec`
    (GZIP, SNAPPY, LZ4 or ZSTD), as bytes. level: Kafka's level for the codec (None or
    Kafka's default: the codec's default); snappy has none."""
    codec = Compression(codec)
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data, level=_level(codec, level) or _GZIP_DEFAULT))
    if codec == Compression.SNAPPY:
        view = memoryview(data).cast("B")
        parts = [XERIAL_HEADER]
        for start in range(0, len(view), XERIAL_BLOCK):
            block = cramjam.snappy.compress_raw(view[start:start + XERIAL_BLOCK])
            parts.append(_I32.pack(len(block)))
            parts.append(bytes(block))
        return b"".join(parts)
    if codec == Compression.LZ4:
        return _lz4_frame(memoryview(data).cast("B"), _level(codec, level))
    if codec == Compression.ZSTD:
        chosen = _level(codec, level)
        return bytes(cramjam.zstd.compress(data, level=_LEVELS[codec][3] if chosen is None else chosen))
    raise ValueError(f"compress() takes gzip, snappy, lz4 or zstd, not {codec.label}")


def _lz4_frame(view, level):
    """Kafka's LZ4 frame of `view` from LZ4's fast block compressor (as Kafka at its
    default level); at another level, liblz4's frame compressor at that level (cramjam's
    block compressor has one level only; its frame compressor takes bytes, one copy)."""
    if level is not None:
        c = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
        c.compress(bytes(view))
        return bytes(c.finish())
    parts = [LZ4_HEADER]
    for start in range(0, len(view), LZ4_BLOCK):
        chunk = view[start:start + LZ4_BLOCK]
        block = cramjam.lz4.compress_block(chunk, store_size=False)
        if len(block) < len(chunk):
            parts.append(_U32LE.pack(len(block)))
            parts.append(bytes(block))
        else:                                   # incompressible: stored as it is
            parts.append(_U32LE.pack(len(chunk) | _LZ4_STORED))
            parts.append(bytes(chunk))
    parts.append(_LZ4_END)
    return b"".join(parts)


def compressed_bound(codec, size):
    """The most bytes compress(codec, x) can return for `size` bytes of x, however
    incompressible: so a batch whose uncompressed size passes a limit check through this
    fits the limit once compressed. (On the producer's per-record path: no enum lookups.)"""
    if codec == Compression.GZIP:      # zlib's compressBound, the gzip header and trailer
        return size + (size >> 12) + (size >> 14) + (size >> 25) + 13 + 18
    if codec == Compression.SNAPPY:    # snappy's MaxCompressedLength per block, framed
        blocks = -(-size // XERIAL_BLOCK)
        return len(XERIAL_HEADER) + size + blocks * (4 + 32) + size // 6 + blocks
    if codec == Compression.LZ4:       # header, blocks (never above their input) with a
        # length and (at a set level) a checksum each, end mark
        return len(LZ4_HEADER) + size + -(-size // LZ4_BLOCK) * 8 + len(_LZ4_END)
    if codec == Compression.ZSTD:      # ZSTD_compressBound, and room for the frame header
        return size + (size >> 8) + (((128 << 10) - size) >> 11 if size < 128 << 10 else 0) + 32
    return size


def decompress(codec, data, limit=DECOMPRESSED_LIMIT, head=0):
    """The records region `data` (bytes-like, in `codec`) decompressed, as a bytearray
    that starts with `head` zero bytes (room for a caller's header: no second copy).
    CorruptRecord when it does not decompress (naming the codec and why), has bytes after
    its end, or would pass `limit` bytes; ValueError for NONE."""
    codec = Compression(codec)
    try:
        if codec == Compression.SNAPPY:
            return _snappy(memoryview(data).cast("B"), limit, head)
        if codec == Compression.NONE:
            raise ValueError("decompress() of an uncompressed region")
        module = {Compression.GZIP: cramjam.gzip, Compression.LZ4: cramjam.lz4, Compression.ZSTD: cramjam.zstd}[codec]
        return _grown(module, data, limit, head, codec)
    except cramjam.DecompressionError as e:
        raise CorruptRecord(f"{codec.label} records do not decompress: {e}") from None


def _grown(module, data, limit, head, codec):
    """decompress_into a buffer, tried at 8x the input (at least 64 KiB), then 8x that,
    up to `limit` (as librdkafka grows its zstd buffer): memory follows what the data
    really holds; the work wasted on retries is under a seventh of the last try."""
    size = min(limit, max(64 << 10, _FIRST_GUESS * len(data)))
    for _ in range(64):    # each round grows size 8x until it reaches limit
        out = bytearray(head + size)
        try:
            n = module.decompress_into(data, memoryview(out)[head:])
        except cramjam.DecompressionError as e:
            if _WHOLE_BUFFER not in str(e):
                raise
            if size >= limit:
                raise CorruptRecord(f"{codec.label} records decompress to more than {limit} bytes "
                                    f"(the limit of one batch)") from None
            size = min(limit, size * 8)
            continue
        del out[head + n:]
        return out
    raise AssertionError("unreachable: the buffer reaches limit within 64 rounds")


def _snappy(view, limit, head):
    """xerial-framed blocks, or one raw block: each block's length is read from its
    header first, so nothing is allocated beyond `limit`."""
    if bytes(view[:len(_XERIAL_MAGIC)]) == _XERIAL_MAGIC and len(view) >= len(XERIAL_HEADER):
        blocks, pos = [], len(XERIAL_HEADER)      # version and compat are not checked, as Kafka
        while pos < len(view):
            if len(view) - pos < 4:
                raise CorruptRecord(f"snappy records end inside a block length at byte {pos}")
            n = _I32.unpack_from(view, pos)[0]
            if n < 0 or n > len(view) - pos - 4:
                raise CorruptRecord(f"snappy block at byte {pos} claims {n} bytes; "
                                    f"{len(view) - pos - 4} follow")
            blocks.append(view[pos + 4:pos + 4 + n])
            pos += 4 + n
    else:
        blocks = [view]
    sizes = [cramjam.snappy.decompress_raw_len(b) for b in blocks]
    total = sum(sizes)
    if total > limit:
        raise CorruptRecord(f"snappy records decompress to {total} bytes, more than {limit} "
                            f"(the limit of one batch)")
    out = bytearray(head + total)
    mv, at = memoryview(out), head
    for block, size in zip(blocks, sizes):
        n = cramjam.snappy.decompress_raw_into(block, mv[at:at + size])
        if n != size:
            raise CorruptRecord(f"snappy block decompressed to {n} bytes; its header says {size}")
        at += size
    return out
