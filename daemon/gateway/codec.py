"""Kafka's wire codec for the gateway: request frames in, kio entities out, and back.

The gateway speaks Kafka's protocol (https://kafka.apache.org/protocol) on TCP. A frame
is `size:int32` then `size` bytes: a request header (v1: api_key:int16 api_version:int16
correlation_id:int32 client_id:nullable int16-length string; v2 adds tagged fields) and
the body at that api_version. A response frame is `size:int32`, a response header
(v0: correlation_id:int32; v1 adds tagged fields; ApiVersions always uses v0) and the body.

Message layouts are not ours: they come from kio (Aiven's dataclasses generated from
Kafka's JSON message specs, pinned in setup.py), one class per API, version and kind,
and from newer_layouts.py for the few a current client uses that kio does not have yet.
This module is the only one that touches kio's serializers; handlers get and return
entities. Record batches inside Produce and Fetch stay opaque bytes here.

kio refuses a tagged field its schema does not know (Kafka says skip it) and a version
it does not know; both become UnsupportedRequest or MalformedRequest below, which the
connection answers (ApiVersions: KIP-511's v0 fallback) instead of crashing.
"""
import datetime
import functools
import gc
import io
import struct
import uuid
from dataclasses import MISSING, fields

import kio.index
import kio.serial
from kio.schema.errors import ErrorCode
from kio.serial._introspect import EntityField, EntityTupleField, PrimitiveTupleField, classify_field

from odradek.daemon.gateway import newer_layouts

__all__ = ["Request", "RequestError", "UnsupportedRequest", "MalformedRequest", "peek_header",
           "decode_request", "encode_response", "response_class", "build", "respond", "freeze_layouts", "ErrorCode",
           "HEADER_PREFIX"]

HEADER_PREFIX = struct.Struct(">hhi")    # api_key, api_version, correlation_id: fixed in every header version
_SIZE = struct.Struct(">i")


class RequestError(Exception):
    """A request the gateway cannot decode; carries what the fixed header prefix said."""

    def __init__(self, message, api_key=-1, api_version=-1, correlation_id=-1):
        super().__init__(message)
        self.api_key, self.api_version, self.correlation_id = api_key, api_version, correlation_id


class UnsupportedRequest(RequestError):
    """An API key or version kio (and so the gateway) has no schema for."""


class MalformedRequest(RequestError):
    """Bytes that do not decode as the request they claim to be."""


class Request:
    """One decoded request: its header entity and body entity."""
    __slots__ = ("api_key", "api_version", "correlation_id", "client_id", "header", "body", "trailing")

    def __init__(self, api_key, api_version, header, body):
        self.api_key, self.api_version = api_key, api_version
        self.correlation_id = header.correlation_id
        self.client_id = header.client_id
        self.header, self.body = header, body
        self.trailing = 0         # bytes after the body, ignored (decode_request)


def peek_header(frame):
    """(api_key, api_version, correlation_id) from a frame body's first 8 bytes."""
    if len(frame) < HEADER_PREFIX.size:
        raise MalformedRequest(f"a request of {len(frame)} bytes is shorter than its header's 8")
    return HEADER_PREFIX.unpack_from(frame, 0)


_readers: dict = {}
_writers: dict = {}


def _reader(cls):
    r = _readers.get(cls)
    if r is None:
        r = _readers[cls] = kio.serial.entity_reader(cls)
        _made()
    return r


def _writer(cls):
    w = _writers.get(cls)
    if w is None:
        w = _writers[cls] = kio.serial.entity_writer(cls)
        _made()
    return w


@functools.lru_cache(maxsize=4096)     # kio's lookup imports by name: ~20 us a request
def request_class(api_key, api_version):
    """kio's request class (or newer_layouts.py's), or UnsupportedRequest."""
    try:
        cls = newer_layouts.REQUESTS.get((api_key, api_version)) or kio.index.load_request_schema(api_key, api_version)
    except (kio.index.KioIndexError, ModuleNotFoundError, KeyError) as e:
        raise UnsupportedRequest(f"no schema for api key {api_key} version {api_version}",
                                 api_key, api_version) from e
    _made()
    return cls


@functools.lru_cache(maxsize=4096)
def response_class(api_key, api_version):
    """kio's response class (or newer_layouts.py's) for a request class's key and version."""
    cls = newer_layouts.RESPONSES.get((api_key, api_version)) or kio.index.load_response_schema(api_key, api_version)
    _made()
    return cls


def decode_request(frame):
    """A Request from one frame body (the bytes after the size), or RequestError."""
    api_key, api_version, cid = peek_header(frame)
    try:
        cls = request_class(api_key, api_version)
    except UnsupportedRequest as e:
        e.correlation_id = cid
        raise
    try:
        header, n = _reader(cls.__header_schema__)(frame, 0)
        body, m = _reader(cls)(frame, n)
    except Exception as e:    # kio's Rust and Python readers raise several types on garbage
        raise MalformedRequest(f"api key {api_key} v{api_version}: {type(e).__name__}: {e}",
                               api_key, api_version, cid) from None
    request = Request(api_key, api_version, header, body)
    # Bytes after the body are ignored, as Kafka's request parser does: librdkafka 2.x sends
    # three after its Metadata v13 request's tagged fields, and Kafka answers it.
    request.trailing = len(frame) - n - m
    return request


def encode_response(correlation_id, response):
    """The framed bytes of `response` (a kio response entity) answering `correlation_id`."""
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    header_cls = type(response).__header_schema__
    _writer(header_cls)(out, header_cls(correlation_id=correlation_id))
    _writer(type(response))(out, response)
    buf = out.getbuffer()
    _SIZE.pack_into(buf, 0, len(buf) - 4)
    del buf
    return out.getvalue()


def freeze_layouts():
    """From now on, whatever this module loads or makes for a message layout (kio's
    classes, readers, writers, build()'s plans) is frozen out of the cyclic collector's
    way as soon as it exists (gc.freeze: the process's every object so far). The gateway
    process calls it at start (__main__.py): a full collection of kio's ~100k objects
    takes tens of milliseconds, a pause of every connection's answers, and they live as
    long as the process. A layout is loaded once, so this happens some hundred times at
    most; a garbage cycle that happens to exist at that moment is kept (refcounting
    still frees everything else)."""
    global _freeze
    _freeze = True
    gc.freeze()


_freeze = False


def _made():
    """A layout's objects were made (freeze_layouts)."""
    if _freeze:
        gc.freeze()


# ---- building entities across versions --------------------------------------------------

_plans: dict = {}


def _zero(t):
    """The value of a required field nobody set: Kafka's zero of its type."""
    if t is ErrorCode:
        return ErrorCode.none
    if isinstance(t, type) and issubclass(t, datetime.timedelta):
        return datetime.timedelta(0)
    if isinstance(t, type) and issubclass(t, datetime.datetime):     # kio's TZAware: the epoch
        return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    if t is uuid.UUID:
        return uuid.UUID(int=0)
    if isinstance(t, type) and issubclass(t, bool):
        return False
    if isinstance(t, type) and issubclass(t, str):
        return ""
    if isinstance(t, type) and issubclass(t, bytes):
        return b""
    return 0


def _coerce(t, v):
    if v is None:
        return None
    if t is ErrorCode and not isinstance(v, ErrorCode):
        return ErrorCode(v)
    if isinstance(t, type) and issubclass(t, datetime.timedelta) and not isinstance(v, datetime.timedelta):
        return datetime.timedelta(milliseconds=v)
    return v


def _plan(cls):
    plan = _plans.get(cls)
    if plan is None:
        plan = []
        for f in fields(cls):
            kind = classify_field(f)
            required = f.default is MISSING and f.default_factory is MISSING
            plan.append((f.name, kind, required))
        plan = _plans[cls] = tuple(plan)
        _made()
    return plan


def build(cls, values=None, **kw):
    """An instance of kio entity `cls` from a dict (and/or keywords) of plain values.

    Keys that `cls` (this API version) does not have are dropped, so one handler serves
    every version; nested entities may be given as dicts, milliseconds as ints, error
    codes as ints; a required field left out gets Kafka's zero of its type."""
    if values is None:
        values = kw
    elif kw:
        values = {**values, **kw}
    args = {}
    for name, kind, required in _plan(cls):
        if name in values:
            v = values[name]
            if v is None:       # a nullable field or array: null on the wire
                pass
            elif isinstance(kind, EntityField):
                v = build(kind.type_, v) if isinstance(v, dict) else v
            elif isinstance(kind, EntityTupleField):
                v = tuple(build(kind.type_, x) if isinstance(x, dict) else x for x in v)
            elif isinstance(kind, PrimitiveTupleField):
                v = tuple(_coerce(kind.type_, x) for x in v)
            else:
                v = _coerce(kind.type_, v)
            args[name] = v
        elif required:
            args[name] = () if kind.is_array else (
                build(kind.type_, {}) if isinstance(kind, EntityField) else _zero(kind.type_))
    return cls(**args)



def respond(request, **values):
    """The response to `request` at its version, built from `values` (build), with
    throttle_time 0 where the version has one (the gateway never throttles)."""
    return build(response_class(request.api_key, request.api_version), throttle_time=0, **values)
