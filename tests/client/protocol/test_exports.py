"""The public surface of odradek.client.protocol, pinned: the broker and clients code
against these names."""
import inspect

import odradek.client.protocol as protocol

EXPECTED = {
    "Connection", "Role", "CLIENT", "SERVER", "State", "Event", "Request", "Response",
    "ProtocolErrorEvent", "ConnectionClosed", "MAX_FDS_PER_FRAME",
    "messages", "APIS", "GROUP_API_KEYS", "ApiKey", "Api", "ApiTable",
    "Struct", "INT8", "INT16", "INT32", "INT64", "BOOL", "STRING", "NULLABLE_STRING",
    "BYTES", "NULLABLE_BYTES", "Array", "Map", "read_version",
    "DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "FLAG_RESPONSE", "FLAG_ERROR", "FLAG_FDS",
    "ProtocolError", "LocalProtocolError", "RemoteProtocolError", "Truncated", "BadLength",
    "InvalidUtf8", "TrailingBytes", "InvalidValue", "BadFrame", "FrameTooLarge",
    "UnknownApiKey", "UnsupportedApiVersion", "UnknownCorrelationId",
    "DuplicateCorrelationId", "FdMismatch", "error_from_wire", "error_to_wire",
    "raise_for_error",
    "ControlClient", "Channel", "DEFAULT_TIMEOUT", "close_fds",
}

SIGNATURES = {
    protocol.Connection: "(role, *, apis=APIS, max_frame_size=1048576)",
    protocol.Connection.send_request: "(self, message, fds=(), *, version=None)",
    protocol.Connection.send_response: "(self, correlation_id, message, fds=())",
    protocol.Connection.send_error: "(self, correlation_id, error)",
    protocol.Connection.receive_data: "(self, data, fds=(), *, fds_truncated=False)",
    protocol.Connection.data_to_send: "(self)",
    protocol.Connection.take_unclaimed_fds: "(self)",
    protocol.Connection.close: "(self)",
    protocol.ControlClient: "(path, timeout=30.0, *, apis=APIS, max_frame_size=1048576)",
    protocol.ControlClient.call: "(self, request, fds=(), *, timeout=None, version=None)",
    protocol.ControlClient.from_socket: "(sock, timeout=30.0, *, apis=APIS, max_frame_size=1048576)",
    protocol.Channel: "(*, apis=APIS, max_frame_size=1048576, recv_size=65536, max_reads=16, role=<Role.SERVER: 'server'>)",
    protocol.Channel.request: "(self, message, fds=(), *, close_fds=False)",
    protocol.Channel.feed: "(self, sock)",
    protocol.Channel.flush: "(self, sock)",
    protocol.Channel.send: "(self, frame, fds=(), *, close_fds=False)",
    protocol.Channel.respond: "(self, correlation_id, message, fds=(), *, close_fds=False)",
    protocol.Channel.respond_error: "(self, correlation_id, error)",
}


def test_all_lists_exactly_the_public_names():
    assert set(protocol.__all__) == EXPECTED
    assert len(protocol.__all__) == len(EXPECTED)


def test_every_public_name_is_importable_from_the_package():
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None, name


def test_the_calls_the_broker_and_clients_make_keep_their_signatures():
    for func, expected in SIGNATURES.items():
        sig = str(inspect.signature(func)).replace(repr(protocol.APIS), "APIS")
        assert sig == expected, func


def test_the_sans_io_modules_import_no_io_or_clock_modules():
    import ast
    from pathlib import Path
    here = Path(protocol.__file__).parent
    for name in ["_connection.py", "_schema.py", "_framing.py", "_errors.py", "messages.py",
                 "_messages_base.py", "_messages_admin.py", "_messages_data.py", "_messages_replicas.py",
                 "_messages_groups.py", "consumer_protocol.py"]:
        tree = ast.parse((here / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module.split(".")[0])
        assert not imported & {"socket", "os", "time", "selectors", "threading"}, name
