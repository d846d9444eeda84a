"""Unknown tagged fields dropped from a request, so that kio can read the rest.

Kafka's flexible versions end every struct with tagged fields: `count:uvarint`, then
per field `tag:uvarint size:uvarint bytes[size]`. The spec says a reader skips a tag it
does not know (upstream adds tags to a version without bumping it), but kio's reader
refuses one (KAFKA-PROTOCOL.md, kio pitfall 1). `strip_unknown_tags(frame, cls)` walks
the frame along kio's own schema of the request (header, then body of `cls`) and
returns it with every tag the schema does not declare removed and each section's count
rewritten; known tagged fields and every other byte are copied as they are. The codec
calls it only after kio refused a frame, so well-formed requests never pay for it.

The walk follows the same encoding rules kio's writer does (kio/serial/_serialize.py):
fixed-width primitives; strings, bytes and records as compact (uvarint length + 1, 0 =
null) in flexible structs and int16 / int32 lengths otherwise (the request header's
client_id is always an int16-length string); arrays as compact (uvarint count + 1) or
int32 counts; a nullable struct behind an int8 marker (KIP-893). A frame that does not
follow the schema raises MalformedTags.
"""
from dataclasses import fields

from kio.serial._introspect import (EntityField, EntityTupleField, PrimitiveTupleField, classify_field,
                                    get_field_tag, get_schema_field_type, is_optional)

from odradek.client.records.varint import encode_uvarint

__all__ = ["strip_unknown_tags", "MalformedTags"]

_FIXED = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "uint16": 2, "error_code": 2, "int32": 4, "uint32": 4,
          "timedelta_i32": 4, "int64": 8, "uint64": 8, "float64": 8, "timedelta_i64": 8, "datetime_i64": 8,
          "uuid": 16}
_MAX_DEPTH = 32


class MalformedTags(ValueError):
    """The frame does not follow the request's schema."""


class _Walk:
    def __init__(self, buf):
        self.buf, self.pos, self.out, self.copied, self.dropped = buf, 0, [], 0, 0

    def need(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise MalformedTags(f"{n} bytes wanted at {self.pos} of {len(self.buf)}")
        self.pos += n

    def uvarint(self):
        value = shift = 0
        while True:
            self.need(1)
            b = self.buf[self.pos - 1]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise MalformedTags("a varint longer than 5 bytes")

    def signed(self, size):
        self.need(size)
        return int.from_bytes(self.buf[self.pos - size:self.pos], "big", signed=True)

    def flush_to(self, end):
        """Copy the bytes not yet copied, up to `end`."""
        self.out.append(self.buf[self.copied:end])
        self.copied = end


def strip_unknown_tags(frame, cls):
    """(frame without the tagged fields `cls`'s schema does not declare, how many were
    dropped); raises MalformedTags when the frame does not follow the schema."""
    walk = _Walk(memoryview(frame))
    _entity(walk, cls.__header_schema__, 0, header=True)
    _entity(walk, cls, 0)
    if walk.pos != len(frame):
        raise MalformedTags(f"{len(frame) - walk.pos} bytes after the request")
    walk.flush_to(len(frame))
    return b"".join(walk.out), walk.dropped


def _entity(walk, cls, depth, header=False):
    if depth > _MAX_DEPTH:
        raise MalformedTags("structs nested too deep")
    flexible = cls.__flexible__
    known = set()
    for f in fields(cls):
        tag = get_field_tag(f)
        if tag is not None:
            known.add(tag)
            continue
        kind = classify_field(f)
        if header and f.name == "client_id":
            _bytes(walk, False, 2)
        elif isinstance(kind, (EntityTupleField, PrimitiveTupleField)):
            count = walk.uvarint() - 1 if flexible else walk.signed(4)
            for _ in range(max(count, 0)):
                if isinstance(kind, EntityTupleField):
                    _entity(walk, kind.type_, depth + 1)
                else:
                    _primitive(walk, get_schema_field_type(f), flexible)
        elif isinstance(kind, EntityField):
            if not is_optional(f) or walk.signed(1) >= 0:
                _entity(walk, kind.type_, depth + 1)
        else:
            _primitive(walk, get_schema_field_type(f), flexible)
    if flexible:
        _tags(walk, known)


def _primitive(walk, kafka_type, flexible):
    if kafka_type in _FIXED:
        walk.need(_FIXED[kafka_type])
    elif kafka_type in ("string", "bytes", "records"):
        _bytes(walk, flexible, 2 if kafka_type == "string" else 4)
    else:
        raise MalformedTags(f"no rule for kafka type {kafka_type!r}")


def _bytes(walk, flexible, legacy_size):
    n = walk.uvarint() - 1 if flexible else walk.signed(legacy_size)
    if n > 0:
        walk.need(n)


def _tags(walk, known):
    start = walk.pos
    count = walk.uvarint()
    kept, entries = 0, []
    for _ in range(count):
        at = walk.pos
        tag = walk.uvarint()
        walk.need(walk.uvarint())
        if tag in known:
            kept += 1
            entries.append(walk.buf[at:walk.pos])
    if kept == count:
        return
    walk.dropped += count - kept
    walk.flush_to(start)
    walk.out.append(encode_uvarint(kept))
    walk.out.extend(entries)
    walk.copied = walk.pos

