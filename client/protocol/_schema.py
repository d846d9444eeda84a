"""The body type system: wire types, Struct (a message declared as a table), Api.

    type              wire form (all integers big-endian, two's complement)
    INT8/16/32/64     1/2/4/8 bytes
    BOOL              1 byte, 0 or 1 (anything else is garbage)
    STRING            int16 length n, then n bytes of UTF-8; n = -1 is null
    BYTES             int32 length n, then n bytes; n = -1 is null
    Array(T)          int32 count n, then n values of T; n = -1 is null
    Map(K, V)         int32 count n, then n (key, value) pairs; same bytes as an array
                      of struct {key, value}; decodes to a dict, a repeated key is garbage
    a Struct          its fields in declaration order, no framing of its own

Null is legal only where the type says so (NULLABLE_STRING, NULLABLE_BYTES,
Array(T, nullable=True)); elsewhere -1 is garbage on the way in and a LocalProtocolError
on the way out. Full description: PROTOCOL.md beside this file.

A message is a Struct subclass whose FIELDS table lists (name, type, default,
since_version[, until_version]). Codecs are generated from that table: nothing is
written per message. A field is on the wire at version v if since_version <= v (and
v <= until_version, when given); at other versions it is skipped when writing and takes
its default when reading.

Kafka's data records outside a request (the consumer protocol's Subscription and
Assignment, the keys and values of __consumer_offsets) are version-prefixed: an int16
version, then the struct at that version (Struct.encode_versioned, read_version).

Decoding is total over garbage: every read is bounds-checked first, every count is
bounded by the bytes left (count * smallest element size <= bytes left) before anything
is allocated, and every failure is a named RemoteProtocolError carrying the field path.
Pure code: no I/O, no clock, no global state.
"""
import struct
from types import MappingProxyType
from typing import Any, ClassVar

from odradek.client.protocol._errors import (
    BadLength, InvalidUtf8, InvalidValue, LocalProtocolError, ProtocolError,
    RemoteProtocolError, TrailingBytes, Truncated)

__all__ = [
    "Type", "INT8", "INT16", "INT32", "INT64", "BOOL", "STRING", "NULLABLE_STRING",
    "BYTES", "NULLABLE_BYTES", "Array", "Map", "Struct", "Field", "Api", "ApiTable",
    "read_version",
]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
INT16_MAX = (1 << 15) - 1
INT32_MAX = (1 << 31) - 1


# ---- Primitive types -------------------------------------------------------------------

class Type:
    """How one value is written and read. Stateless: safe to share between threads.

    encode(value, out, version) appends to the bytearray `out`; decode(buf, pos, end,
    version) reads from buf[pos:end] and returns (value, new_pos); min_size(version) is
    the fewest bytes any value occupies (used to bound hostile counts).
    """

    name = "?"

    def min_size(self, version):
        raise NotImplementedError

    def encode(self, value, out, version):
        raise NotImplementedError

    def decode(self, buf, pos, end, version):
        raise NotImplementedError

    def __repr__(self):
        return self.name


class Int(Type):
    """A fixed-width big-endian signed integer."""

    def __init__(self, name, fmt):
        self.name = name
        self._struct = struct.Struct(fmt)
        self.size = self._struct.size
        self.min_value = -(1 << (8 * self.size - 1))
        self.max_value = (1 << (8 * self.size - 1)) - 1

    def min_size(self, version):
        return self.size

    def encode(self, value, out, version):
        if isinstance(value, bool) or not isinstance(value, int):
            raise LocalProtocolError(f"{self.name} needs an int, got {type(value).__name__}")
        if not self.min_value <= value <= self.max_value:
            raise LocalProtocolError(f"{value} does not fit {self.name}")
        out += self._struct.pack(value)

    def decode(self, buf, pos, end, version):
        if pos + self.size > end:
            raise Truncated(f"{self.name} needs {self.size} bytes, {end - pos} left")
        return self._struct.unpack_from(buf, pos)[0], pos + self.size


class Boolean(Type):
    """One byte, 0 or 1. Kafka reads any non-zero byte as true; we call it garbage, so
    that every accepted body has exactly one encoding."""

    name = "BOOL"

    def min_size(self, version):
        return 1

    def encode(self, value, out, version):
        if value is True:
            out.append(1)
        elif value is False:
            out.append(0)
        else:
            raise LocalProtocolError(f"BOOL needs True or False, got {value!r}")

    def decode(self, buf, pos, end, version):
        if pos >= end:
            raise Truncated("BOOL needs 1 byte, 0 left")
        b = buf[pos]
        if b > 1:
            raise InvalidValue(f"BOOL byte is {b}, not 0 or 1")
        return b == 1, pos + 1


class String(Type):
    """int16 length, then UTF-8; length -1 is null where `nullable`."""

    def __init__(self, nullable):
        self.nullable = nullable
        self.name = "NULLABLE_STRING" if nullable else "STRING"

    def min_size(self, version):
        return 2

    def encode(self, value, out, version):
        if value is None:
            if not self.nullable:
                raise LocalProtocolError("null is not allowed here (STRING)")
            out += b"\xff\xff"
            return
        if not isinstance(value, str):
            raise LocalProtocolError(f"{self.name} needs a str, got {type(value).__name__}")
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise LocalProtocolError(f"string is not encodable as UTF-8 ({e.reason})") from None
        if len(data) > INT16_MAX:
            raise LocalProtocolError(f"string of {len(data)} bytes exceeds {INT16_MAX}")
        out += _I16.pack(len(data))
        out += data

    def decode(self, buf, pos, end, version):
        if pos + 2 > end:
            raise Truncated(f"string length needs 2 bytes, {end - pos} left")
        n = _I16.unpack_from(buf, pos)[0]
        pos += 2
        if n < 0:
            if n == -1 and self.nullable:
                return None, pos
            if n == -1:
                raise InvalidValue("null string where a string is required")
            raise BadLength(f"string length {n}")
        if pos + n > end:
            raise Truncated(f"string of {n} bytes, {end - pos} left")
        try:
            return str(buf[pos:pos + n], "utf-8"), pos + n
        except UnicodeDecodeError as e:
            raise InvalidUtf8(f"string is not UTF-8 ({e.reason} at byte {e.start})") from None


class Bytes(Type):
    """int32 length, then raw bytes; length -1 is null where `nullable`."""

    def __init__(self, nullable):
        self.nullable = nullable
        self.name = "NULLABLE_BYTES" if nullable else "BYTES"

    def min_size(self, version):
        return 4

    def encode(self, value, out, version):
        if value is None:
            if not self.nullable:
                raise LocalProtocolError("null is not allowed here (BYTES)")
            out += b"\xff\xff\xff\xff"
            return
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"{self.name} needs bytes, got {type(value).__name__}")
        n = memoryview(value).nbytes
        if n > INT32_MAX:
            raise LocalProtocolError(f"bytes of length {n} exceed {INT32_MAX}")
        out += _I32.pack(n)
        out += value

    def decode(self, buf, pos, end, version):
        if pos + 4 > end:
            raise Truncated(f"bytes length needs 4 bytes, {end - pos} left")
        n = _I32.unpack_from(buf, pos)[0]
        pos += 4
        if n < 0:
            if n == -1 and self.nullable:
                return None, pos
            if n == -1:
                raise InvalidValue("null bytes where bytes are required")
            raise BadLength(f"bytes length {n}")
        if pos + n > end:
            raise Truncated(f"bytes of length {n}, {end - pos} left")
        return bytes(buf[pos:pos + n]), pos + n


INT8 = Int("INT8", ">b")
INT16 = Int("INT16", ">h")
INT32 = Int("INT32", ">i")
INT64 = Int("INT64", ">q")
BOOL = Boolean()
STRING = String(nullable=False)
NULLABLE_STRING = String(nullable=True)
BYTES = Bytes(nullable=False)
NULLABLE_BYTES = Bytes(nullable=True)


# ---- Compound types --------------------------------------------------------------------

def _read_count(buf, pos, end, nullable, element_size, what):
    """An int32 count, checked against the bytes left before anything is allocated."""
    if pos + 4 > end:
        raise Truncated(f"{what} count needs 4 bytes, {end - pos} left")
    n = _I32.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0:
        if n == -1 and nullable:
            return None, pos
        if n == -1:
            raise InvalidValue(f"null {what} where one is required")
        raise BadLength(f"{what} count {n}")
    # Every element takes at least one byte (Array and Map refuse empty elements at
    # declaration; max() is a second guard), so a hostile count costs at most what the
    # peer actually sent.
    if n * max(1, element_size) > end - pos:
        raise BadLength(f"{what} count {n} cannot fit in the {end - pos} bytes left")
    return n, pos


class Array(Type):
    """int32 count, then that many values of `item`; count -1 is null where `nullable`."""

    def __init__(self, item, nullable=False):
        self.item = as_type(item)
        if self.item.min_size(0) < 1:
            # Decoding bounds a count by the bytes left; an element of zero bytes would
            # let a 4-byte count ask for 2**31 objects.
            raise TypeError(f"an array element must take at least one byte: {self.item!r}")
        self.nullable = nullable
        self.name = f"Array({self.item!r}{', nullable=True' if nullable else ''})"

    def min_size(self, version):
        return 4

    def encode(self, value, out, version):
        if value is None:
            if not self.nullable:
                raise LocalProtocolError("null is not allowed here (Array)")
            out += b"\xff\xff\xff\xff"
            return
        if not isinstance(value, (list, tuple)):
            raise LocalProtocolError(f"Array needs a list, got {type(value).__name__}")
        out += _I32.pack(len(value))
        item = self.item
        for i, v in enumerate(value):
            try:
                item.encode(v, out, version)
            except ProtocolError as e:
                e.path.insert(0, i)
                raise

    def decode(self, buf, pos, end, version):
        item = self.item
        n, pos = _read_count(buf, pos, end, self.nullable, item.min_size(version), "array")
        if n is None:
            return None, pos
        values = []
        for i in range(n):
            try:
                v, pos = item.decode(buf, pos, end, version)
            except RemoteProtocolError as e:
                e.path.insert(0, i)
                raise
            values.append(v)
        return values, pos


class Map(Type):
    """A dict on the wire as int32 count and (key, value) pairs, the same bytes as an
    array of struct {key, value} (Kafka's way of sending a map, e.g. topic configs)."""

    def __init__(self, key, value):
        self.key = as_type(key)
        self.value = as_type(value)
        if self.key.min_size(0) + self.value.min_size(0) < 1:
            raise TypeError(f"a map entry must take at least one byte: {key!r}, {value!r}")
        self.name = f"Map({self.key!r}, {self.value!r})"

    def min_size(self, version):
        return 4

    def encode(self, value, out, version):
        if not isinstance(value, dict):
            raise LocalProtocolError(f"Map needs a dict, got {type(value).__name__}")
        out += _I32.pack(len(value))
        for k, v in value.items():
            try:
                self.key.encode(k, out, version)
                self.value.encode(v, out, version)
            except ProtocolError as e:
                e.path.insert(0, repr(k))
                raise

    def decode(self, buf, pos, end, version):
        pair = self.key.min_size(version) + self.value.min_size(version)
        n, pos = _read_count(buf, pos, end, False, pair, "map")
        result = {}
        for i in range(n):
            try:
                k, pos = self.key.decode(buf, pos, end, version)
                v, pos = self.value.decode(buf, pos, end, version)
            except RemoteProtocolError as e:
                e.path.insert(0, i)
                raise
            if k in result:
                raise InvalidValue(f"map key {k!r} appears twice")
            result[k] = v
        return result, pos


class StructType(Type):
    """A Struct subclass used as a field type: its fields, in order, no framing."""

    def __init__(self, cls):
        self.cls = cls
        self.name = cls.__name__

    def min_size(self, version):
        return sum(f.type.min_size(version) for f in self.cls._fields if f.present(version))

    def encode(self, value, out, version):
        if not isinstance(value, self.cls):
            raise LocalProtocolError(f"{self.name} needed, got {type(value).__name__}")
        name = None
        try:
            for f in self.cls._fields:
                if f.present(version):
                    name = f.name
                    f.type.encode(getattr(value, name), out, version)
        except ProtocolError as e:
            e.path.insert(0, name)
            raise

    def decode(self, buf, pos, end, version):
        cls = self.cls
        obj = cls.__new__(cls)
        name = None
        try:
            for f in cls._fields:
                name = f.name
                if f.present(version):
                    value, pos = f.type.decode(buf, pos, end, version)
                else:
                    value = _fresh(f.default)
                setattr(obj, name, value)
        except RemoteProtocolError as e:
            e.path.insert(0, name)
            raise
        return obj, pos


def as_type(t):
    """A Type for a field declaration: a Type as is, a Struct subclass wrapped."""
    if isinstance(t, Type):
        return t
    if isinstance(t, type) and issubclass(t, Struct) and t is not Struct:
        return t._type
    raise TypeError(f"{t!r} is not a wire type or a Struct subclass")


def _fresh(default):
    """A default value that no two instances share (lists and dicts are copied, a
    Struct class is instantiated)."""
    if isinstance(default, list):
        return list(default)
    if isinstance(default, dict):
        return dict(default)
    if isinstance(default, type):
        return default()
    return default


# ---- Struct: a message declared as a table ---------------------------------------------

class Field:
    """One row of a FIELDS table: name, type, default, since_version and, for a field
    that a later version dropped (Kafka's "versions": "1"), until_version (None: still
    on the wire at every version from since_version on)."""

    __slots__ = ("name", "type", "default", "since", "until")

    def __init__(self, name, type, default, since, until=None):
        self.name, self.type, self.default, self.since, self.until = name, type, default, since, until

    def present(self, version):
        """Is this field on the wire at `version`?"""
        return self.since <= version and (self.until is None or version <= self.until)

    def __repr__(self):
        until = "" if self.until is None else f", {self.until}"
        return f"Field({self.name!r}, {self.type!r}, {self.default!r}, {self.since}{until})"


class _StructMeta(type):
    """Turns a FIELDS table into __slots__ and a generated codec at class creation, and
    checks the table (unique names, known types, defaults that encode)."""

    def __new__(mcls, name, bases, ns):
        raw = ns.get("FIELDS")
        if raw is None:
            ns.setdefault("__slots__", ())
            return super().__new__(mcls, name, bases, ns)
        fields = []
        for row in raw:
            fname, ftype, default, since, *until = row
            if not fname.isidentifier() or fname.startswith("_") or hasattr(Struct, fname):
                raise TypeError(f"{name}: bad field name {fname!r}")
            if not isinstance(since, int) or since < 0:
                raise TypeError(f"{name}.{fname}: since_version must be an int >= 0")
            if len(until) > 1 or until and not (isinstance(until[0], int) and until[0] >= since):
                raise TypeError(f"{name}.{fname}: until_version must be one int >= since_version")
            fields.append(Field(fname, as_type(ftype), default, since, *until))
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise TypeError(f"{name}: a field name appears twice in {names}")
        ns["__slots__"] = tuple(names)
        ns["_fields"] = tuple(fields)
        cls = super().__new__(mcls, name, bases, ns)
        cls._type = StructType(cls)
        for version in {f.since for f in fields} | {0}:
            cls().encode(version)  # every default must be encodable, or the table is wrong
        return cls


class Struct(metaclass=_StructMeta):
    """Base of every message and nested struct. Subclasses set FIELDS and nothing else:

        class ListedGroup(Struct):
            FIELDS = [
                # name            type     default  since
                ("group_id",      STRING,  "",      0),
                ("protocol_type", STRING,  "",      0),
            ]

    Instances are plain values (keyword construction, ==, repr); not thread-safe to
    mutate while another thread encodes them.
    """

    FIELDS: ClassVar[list[tuple[Any, ...]]]   # declared by each subclass
    _fields: tuple[Field, ...] = ()

    def __init__(self, **values):
        for f in self._fields:
            if f.name in values:
                setattr(self, f.name, values.pop(f.name))
            else:
                setattr(self, f.name, _fresh(f.default))
        if values:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(values)}")

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]  # mutable values: unhashable, like a list

    def __repr__(self):
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def to_dict(self):
        """Plain dicts and lists all the way down (for JSON output, logs, tests)."""
        return {f.name: _plain(getattr(self, f.name)) for f in self._fields}

    def encode(self, version):
        """The body bytes of this message at `version` (LocalProtocolError if a field
        holds something its type cannot say, with the field path in the message)."""
        out = bytearray()
        try:
            self._type.encode(self, out, version)
        except ProtocolError as e:
            raise e.locate(type(self).__name__) from None
        return bytes(out)

    def encode_versioned(self, version):
        """Kafka's version-prefixed form (MessageUtil.toVersionPrefixedBytes): int16
        `version`, then this struct's bytes at that version."""
        if not 0 <= version <= INT16_MAX:
            raise LocalProtocolError(f"{type(self).__name__}: version {version} does not fit an int16")
        return _I16.pack(version) + self.encode(version)

    @classmethod
    def decode(cls, data, version, ignore_trailing=False):
        """A message from exactly `data` (bytes-like) at `version`: RemoteProtocolError
        for anything else (truncated, trailing bytes, bad length, invalid UTF-8 ...).
        With `ignore_trailing`, bytes after the last field are allowed and dropped (how
        Kafka reads a record of a newer version than it knows with its newest layout)."""
        buf = data if isinstance(data, bytes) else bytes(data)
        try:
            obj, pos = cls._type.decode(buf, 0, len(buf), version)
            if pos != len(buf) and not ignore_trailing:
                raise TrailingBytes(f"{len(buf) - pos} bytes after the last field")
        except RemoteProtocolError as e:
            raise e.locate(cls.__name__) from None
        return obj


def read_version(data):
    """The int16 version that starts a version-prefixed record and the bytes after it:
    Truncated for fewer than 2 bytes, InvalidValue for a negative version."""
    buf = data if isinstance(data, bytes) else bytes(data)
    if len(buf) < 2:
        raise Truncated(f"version needs 2 bytes, {len(buf)} left")
    version = _I16.unpack_from(buf, 0)[0]
    if version < 0:
        raise InvalidValue(f"version {version} is negative")
    return version, buf[2:]


def _plain(value):
    if isinstance(value, Struct):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---- Api: a request/response pair with its version range --------------------------------

class Api:
    """One API: its key, name, request and response Structs, supported versions."""

    __slots__ = ("key", "name", "request", "response", "min_version", "max_version")

    def __init__(self, key, request, response, min_version, max_version):
        if not 0 <= min_version <= max_version <= INT16_MAX:
            raise TypeError(f"api {key}: bad version range {min_version}..{max_version}")
        if not 0 <= key <= INT16_MAX:
            raise TypeError(f"api key {key} must fit an int16 (ApiVersions lists it)")
        self.key = int(key)
        self.name = request.__name__.removesuffix("Request")
        self.request = request
        self.response = response
        self.min_version = min_version
        self.max_version = max_version

    def supports(self, version):
        return self.min_version <= version <= self.max_version

    def __repr__(self):
        return f"Api({self.key}, {self.name}, v{self.min_version}..v{self.max_version})"


class ApiTable:
    """An immutable set of Apis, looked up by key or by request class. A server passes
    the subset it serves; a client, the ones it may call."""

    def __init__(self, apis):
        by_key, by_request = {}, {}
        for api in apis:
            if api.key in by_key or api.request in by_request:
                raise TypeError(f"{api!r} is declared twice")
            by_key[api.key] = api
            by_request[api.request] = api
        self._by_key = MappingProxyType(by_key)
        self._by_request = MappingProxyType(by_request)

    def __getitem__(self, key):
        return self._by_key[key]

    def get(self, key):
        return self._by_key.get(key)

    def for_request(self, request_class):
        return self._by_request.get(request_class)

    def __iter__(self):
        return iter(sorted(self._by_key.values(), key=lambda a: a.key))

    def __len__(self):
        return len(self._by_key)

    def __contains__(self, key):
        return key in self._by_key

    def only(self, *keys):
        """The sub-table of these keys (KeyError for a key not in this table)."""
        return ApiTable(self._by_key[k] for k in keys)

    def without(self, *keys):
        return ApiTable(a for a in self if a.key not in keys)
