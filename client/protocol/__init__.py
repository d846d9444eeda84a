"""odradek.client.protocol: the control-plane protocol, shared by clients and the broker.

Frames over a Unix stream socket, Kafka-like typed bodies, versioned APIs, correlation
ids, error responses, and file descriptors passed alongside (SCM_RIGHTS). The grammar,
tables, rules and a worked example are in PROTOCOL.md beside this file.

Sans-IO core (no sockets, clocks or fds inside): Connection, the message Structs in
`messages`, the type system, and Kafka's consumer-protocol records (the Subscription and
Assignment bytes inside JoinGroup and SyncGroup) in `consumer_protocol`. I/O shells in `transport`: ControlClient (blocking, for
programs and the CLI) and Channel (non-blocking, for the broker's selector loop).

    from odradek.client.protocol import ControlClient, messages as m
    with ControlClient("/run/odradek/odradek.sock", timeout=5) as client:
        metadata, _ = client.call(m.MetadataRequest(topics=["orders"]))
        answer, fds = client.call(m.OpenFetchRequest(topic="orders", partition=0))
"""
from odradek.client.protocol import messages
from odradek.client.protocol._connection import (
    CLIENT, MAX_FDS_PER_FRAME, SERVER, Connection, ConnectionClosed, Event,
    ProtocolErrorEvent, Request, Response, Role, State)
from odradek.client.protocol._errors import (
    BadFrame, BadLength, DuplicateCorrelationId, FdMismatch, FrameTooLarge, InvalidUtf8,
    InvalidValue, LocalProtocolError, ProtocolError, RemoteProtocolError, TrailingBytes,
    Truncated, UnknownApiKey, UnknownCorrelationId, UnsupportedApiVersion, error_from_wire,
    error_to_wire, raise_for_error)
from odradek.client.protocol._framing import (
    DEFAULT_MAX_FRAME_SIZE, FLAG_ERROR, FLAG_FDS, FLAG_RESPONSE, HEADER_SIZE)
from odradek.client.protocol._schema import (
    BOOL, BYTES, INT8, INT16, INT32, INT64, NULLABLE_BYTES, NULLABLE_STRING, STRING, Api,
    ApiTable, Array, Map, Struct, read_version)
from odradek.client.protocol.messages import APIS, GROUP_API_KEYS, ApiKey
from odradek.client.protocol.transport import DEFAULT_TIMEOUT, Channel, ControlClient, close_fds

__all__ = [
    # sans-IO connection and its events
    "Connection", "Role", "CLIENT", "SERVER", "State", "Event", "Request", "Response",
    "ProtocolErrorEvent", "ConnectionClosed", "MAX_FDS_PER_FRAME",
    # messages and the api table
    "messages", "APIS", "GROUP_API_KEYS", "ApiKey", "Api", "ApiTable",
    # the type system, for declaring messages
    "Struct", "INT8", "INT16", "INT32", "INT64", "BOOL", "STRING", "NULLABLE_STRING",
    "BYTES", "NULLABLE_BYTES", "Array", "Map", "read_version",
    # framing constants
    "DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "FLAG_RESPONSE", "FLAG_ERROR", "FLAG_FDS",
    # errors and the wire mapping
    "ProtocolError", "LocalProtocolError", "RemoteProtocolError", "Truncated", "BadLength",
    "InvalidUtf8", "TrailingBytes", "InvalidValue", "BadFrame", "FrameTooLarge",
    "UnknownApiKey", "UnsupportedApiVersion", "UnknownCorrelationId",
    "DuplicateCorrelationId", "FdMismatch", "error_from_wire", "error_to_wire",
    "raise_for_error",
    # transport
    "ControlClient", "Channel", "DEFAULT_TIMEOUT", "close_fds",
]
