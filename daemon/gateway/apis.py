"""The gateway's API table: which Kafka APIs it serves, at which versions, by which handler.

A handler module declares `APIS = [Api(key, min_version, max_version, handler), ...]`
and is listed in `HANDLER_MODULES`; `table()` collects them. ApiVersions (key 18)
answers from the same table, so what the gateway advertises is exactly what it serves.

A handler is `handler(ctx: RequestContext, request: codec.Request)` and returns one of:
- a kio response entity of the request's api key and version (encoded and sent);
- `NO_RESPONSE` (Produce with acks=0: Kafka sends nothing back);
- `CLOSE_CONNECTION`: no answer, and the connection closes (a refused acks=0 Produce);
- a `Reply`: response bytes in parts, some of which may be `FileSlice`s that the
  connection writes with sendfile (Fetch). The parts are sent in order, nothing between.
An API may also have a `start(ctx, request)`: the part of its work that waits for
nothing (Produce: its batches written into the leaders' rings). It returns `finish()`,
which waits and returns what a handler returns; it may have a `ready()` (whether
finish() would not wait: answers ready together leave in one send) and an `abandon()`,
called instead of finish() when the connection closes before the answer is due. A connection may start
the next requests of such an API before finishing this one, and finishes them in
order (server.py); `handler` must be `start(...)()`, for a request that is not started.
An API may also have a `lone(ctx, frame)`: the request read from its frame body without
kio (Produce of one batch: the shape nearly every request has), for a request the
connection answers at once (nothing started, nothing behind it). It returns (a
LoneRequest, a call that serves it and returns what a handler returns), or None having
done nothing: then the frame goes the general way.
A handler raises `codec.RequestError` (or returns an error entity) for bad input: the
connection answers INVALID_REQUEST and closes; any other exception is a gateway bug: the
connection logs it, answers UNKNOWN_SERVER_ERROR and goes on (server.py).
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from odradek.daemon.gateway.codec import ErrorCode, RequestError, build, decode_request, response_class

__all__ = ["Api", "LoneRequest", "RequestContext", "Reply", "FileSlice", "NO_RESPONSE", "CLOSE_CONNECTION", "HANDLER_MODULES", "table",
           "API_VERSIONS"]

API_VERSIONS = 18
# Modules holding `APIS` lists. Each family of Kafka APIs has its own module.
HANDLER_MODULES = ["odradek.daemon.gateway.apis", "odradek.daemon.gateway.cluster_api",
                   "odradek.daemon.gateway.sasl", "odradek.daemon.gateway.metadata_api",
                   "odradek.daemon.gateway.produce", "odradek.daemon.gateway.fetch",
                   "odradek.daemon.gateway.offsets_api", "odradek.daemon.gateway.groups_api",
                   "odradek.daemon.gateway.admin_api", "odradek.daemon.gateway.configs_api",
                   "odradek.daemon.gateway.txn_api"]


@dataclass(frozen=True)
class Api:
    key: int
    min_version: int
    max_version: int
    handler: Callable
    start: Callable | None = None
    lone: Callable | None = None


class LoneRequest:
    """A request an API's `lone` read itself: the header fields the connection answers
    with; `body`, kio's decoding of the frame, only when an error answer needs it (None
    if kio cannot read it: the error answer is then the bare one, error_response.py)."""

    __slots__ = ("api_key", "api_version", "correlation_id", "_frame")

    def __init__(self, api_key, api_version, correlation_id, frame):
        self.api_key, self.api_version, self.correlation_id, self._frame = api_key, api_version, correlation_id, frame

    @property
    def body(self):
        try:
            return decode_request(self._frame).body
        except RequestError:
            return None


NO_RESPONSE = object()
# no answer, and the connection closes: how Kafka tells an acks=0 producer its batch was refused
CLOSE_CONNECTION = object()


@dataclass
class FileSlice:
    """`length` bytes of the file open as `fd` from `offset`, sent with sendfile. `owner`
    keeps whatever owns the fd alive (and the fd open) until the slice is sent. `data`:
    those bytes when a handler has read them already (fetch.py reads a small slice whole
    to look at its batch headers): an answer sent from memory uses them instead of
    reading the file again."""
    fd: int
    offset: int
    length: int
    owner: Any = None
    data: bytes | None = None


@dataclass
class Reply:
    """A response already framed, in parts (bytes or FileSlice), sent in order."""
    parts: list


@dataclass
class RequestContext:
    """What a handler may use besides the request itself.

    `gateway` is the process-wide state (the broker link pool, caches), `conn` the
    connection's own (peer address and uid, per-connection state a handler keeps)."""
    gateway: Any
    conn: Any
    table: dict = field(default_factory=dict)


def table(modules=None):
    """{api_key: Api} from every handler module's APIS."""
    out = {}
    for name in modules or HANDLER_MODULES:
        for api in importlib.import_module(name).APIS:
            if api.key in out:
                raise ValueError(f"api key {api.key} is served twice ({name})")
            out[api.key] = api
    return out


def api_versions(ctx, request):
    """ApiVersions: every key of the table with its version range.

    v5 names the cluster and node the client expects (newer_layouts.py). As Kafka 4.4
    answers: both or neither, else INVALID_REQUEST; both, and either is not this broker's,
    REBOOTSTRAP_REQUIRED (the client then forgets its metadata and bootstraps again). An
    error answer lists no APIs."""
    cls = response_class(API_VERSIONS, request.api_version)
    error = _expected_node_error(ctx, request.body) if request.api_version >= 5 else None
    if error is not None:
        return build(cls, error_code=error, throttle_time=0, api_keys=[])
    return build(cls, error_code=0, throttle_time=0,
                 api_keys=[dict(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
                           for a in sorted(ctx.table.values(), key=lambda a: a.key)])


def _expected_node_error(ctx, body):
    from odradek.daemon.gateway.cluster_api import cluster_id     # cluster_api imports this module
    from odradek.daemon.gateway.metadata_api import NODE_ID
    if (body.cluster_id is None) != (body.node_id == -1):
        return ErrorCode.invalid_request
    if body.cluster_id is not None and (body.cluster_id != cluster_id(ctx.gateway) or body.node_id != NODE_ID):
        return ErrorCode.rebootstrap_required
    return None


APIS = [Api(API_VERSIONS, 0, 5, api_versions)]
