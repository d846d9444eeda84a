"""Zigzag varints, as Kafka's v2 records use them (Protocol Buffers' sint32/sint64).

A signed n is zigzagged to an unsigned z = (n << 1) ^ (n >> 63), so small magnitudes of
either sign stay short (0->0, -1->1, 1->2, -2->3, ...), then written 7 bits at a time,
least significant group first, with the top bit set on every byte but the last.

    varint   int32 values, at most 5 bytes   (record length, offsetDelta, lengths, counts)
    varlong  int64 values, at most 10 bytes  (record timestampDelta)

    encode_varint(-1) == b"\\x01"; encode_varint(300) == b"\\xd8\\x04"
    decode_varint(b"\\xd8\\x04", 0) == (300, 2)

Decoding is strict: a value that runs past the end of the buffer, uses more bytes than
its type allows, or carries bits beyond 32 (varint) / 64 (varlong) raises CorruptRecord
with the position. Encoding a value outside the type's range is a caller bug: ValueError.
See FORMAT.md for where each varint sits in a record.
"""
from odradek.client.errors import CorruptRecord

__all__ = ["encode_varint", "encode_varlong", "encode_uvarint", "decode_varint", "decode_varlong",
           "size_of_varint", "size_of_varlong", "SMALL_VARINTS",
           "INT32_MIN", "INT32_MAX", "INT64_MIN", "INT64_MAX"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _encode_zigzag(z):
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# SMALL_VARINTS[n] == encode_varint(n) for 0 <= n < 8192: exactly the non-negative values
# whose varint is 1 or 2 bytes (z = 2n < 2**14). The builder's hot path indexes it for
# lengths, offset deltas and timestamp deltas instead of calling an encoder: on the dev
# box a lookup is ~30 ns, a call to encode_varint ~400 ns, and a record needs 4 to 5.
# 8192 small bytes objects, built in ~4 ms at import (~300 KB).
SMALL_VARINTS = tuple(
    [bytes((n << 1,)) for n in range(64)]
    + [bytes((((n << 1) & 0x7F) | 0x80, n >> 6)) for n in range(64, 8192)])


def encode_varint(n):
    """The zigzag varint bytes of an int32 (1 to 5 bytes)."""
    if 0 <= n < 8192:
        return SMALL_VARINTS[n]
    if not INT32_MIN <= n <= INT32_MAX:
        raise ValueError(f"varint value {n} is outside the int32 range")
    return _encode_zigzag((n << 1) ^ (n >> 63))


def encode_varlong(n):
    """The zigzag varint bytes of an int64 (1 to 10 bytes)."""
    if 0 <= n < 8192:
        return SMALL_VARINTS[n]
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"varlong value {n} is outside the int64 range")
    return _encode_zigzag((n << 1) ^ (n >> 63))


def encode_uvarint(n):
    """The unsigned varint bytes of n >= 0 (no zigzag): Kafka's flexible message
    versions use them for compact lengths and tagged-field counts and sizes."""
    if n < 0:
        raise ValueError(f"unsigned varint value {n} is negative")
    return _encode_zigzag(n)


def _size_of_zigzag(z):
    size = 1
    while z > 0x7F:
        z >>= 7
        size += 1
    return size


def size_of_varint(n):
    """How many bytes encode_varint(n) takes, without encoding it."""
    if 0 <= n < 64:
        return 1
    if not INT32_MIN <= n <= INT32_MAX:
        raise ValueError(f"varint value {n} is outside the int32 range")
    return _size_of_zigzag((n << 1) ^ (n >> 63))


def size_of_varlong(n):
    """How many bytes encode_varlong(n) takes, without encoding it."""
    if 0 <= n < 64:
        return 1
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"varlong value {n} is outside the int64 range")
    return _size_of_zigzag((n << 1) ^ (n >> 63))


def _decode(buf, pos, max_bytes, bits, what):
    # Reads at most max_bytes; the last byte may not have its continuation bit set, and
    # the unsigned value must fit in `bits` bits (else the writer was not Kafka).
    start = pos
    end = len(buf)
    z = 0
    shift = 0
    while True:
        if pos >= end:
            raise CorruptRecord(f"{what} at byte {start} is truncated: the buffer ends at "
                                f"byte {end} inside it")
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if pos - start >= max_bytes:
            raise CorruptRecord(f"{what} at byte {start} is longer than {max_bytes} bytes "
                                f"(expected at most {max_bytes}, found a continuation bit "
                                f"on byte {max_bytes})")
    if z >> bits:
        raise CorruptRecord(f"{what} at byte {start} holds a value wider than {bits} bits "
                            f"(found {z:#x})")
    return (z >> 1) ^ -(z & 1), pos


def decode_varint(buf, pos=0):
    """(value, position after it) of the zigzag int32 varint at buf[pos]."""
    if pos < len(buf):
        b = buf[pos]
        if b < 0x80:                      # one byte: by far the common case
            return (b >> 1) ^ -(b & 1), pos + 1
    return _decode(buf, pos, 5, 32, "varint")


def decode_varlong(buf, pos=0):
    """(value, position after it) of the zigzag int64 varint at buf[pos]."""
    if pos < len(buf):
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
    return _decode(buf, pos, 10, 64, "varlong")
