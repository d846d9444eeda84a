"""Protocol errors: "the peer sent garbage" versus "we were misused", and the wire mapping.

Two families, as in h11 (python-hyper/h11: h11/_util.py), converted at one boundary:

- RemoteProtocolError: the bytes that came in break the protocol (truncated, bad length,
  invalid UTF-8, trailing bytes, an oversized frame, an unknown api key ...). Only the
  decoder and Connection.receive_data raise it. On the wire it becomes an INVALID_REQUEST
  error response (UNSUPPORTED_VERSION / MESSAGE_TOO_LARGE for those two subclasses).
- LocalProtocolError: our own code asked for something the protocol cannot say (an int16
  field holding 70000, a response for a request that was never received, a send on a
  broken connection). It is a bug on this side; on the wire it is UNKNOWN_SERVER_ERROR.

Both are OdradekErrors, so a CLI prints them as one line. Neither is ever IndexError,
struct.error or UnicodeDecodeError: the codecs translate those where they happen.

The helpers at the bottom turn a response's (error_code, error_message) into the matching
OdradekError subclass (client side) and an exception into (error_code, error_message)
(server side), using the one table in odradek.client.errors.
"""
from odradek.client.errors import (
    ERRORS, InvalidRequest, MessageTooLarge, OdradekError, UnknownServerError, UnsupportedVersion)

__all__ = [
    "ProtocolError", "LocalProtocolError", "RemoteProtocolError",
    "Truncated", "BadLength", "InvalidUtf8", "TrailingBytes", "InvalidValue",
    "BadFrame", "FrameTooLarge", "UnknownApiKey", "UnsupportedApiVersion",
    "UnknownCorrelationId", "DuplicateCorrelationId", "FdMismatch",
    "error_from_wire", "error_to_wire", "raise_for_error",
]


class ProtocolError(OdradekError):
    """Base of LocalProtocolError and RemoteProtocolError; never raised itself.

    `path` names where in a message the problem is, outermost first (["topics", 2,
    "name"]); the decoder and encoder fill it in as the error rises through nested
    structs, and `locate()` folds it into the message once, at the top.
    """

    def __init__(self, message=""):
        super().__init__(message)
        self.detail = self.message
        self.path = []

    def locate(self, root):
        """Prefix the message with `root` and the field path (called once, at the top)."""
        where = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        self.message = f"{where}: {self.detail}"
        self.args = (self.message,)
        return self


class LocalProtocolError(ProtocolError):
    """We were misused: our own code asked for something the protocol cannot express."""

    code = UnknownServerError.code
    name = UnknownServerError.name


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol (answered as INVALID_REQUEST).

    `header` is the FrameHeader of the frame at fault when it was readable, else None.
    """

    code = InvalidRequest.code
    name = InvalidRequest.name

    def __init__(self, message="", header=None):
        super().__init__(message)
        self.header = header


# ---- What exactly was wrong: one class per rule, all RemoteProtocolError ---------------

class Truncated(RemoteProtocolError):
    """A value needs more bytes than the body has left."""


class BadLength(RemoteProtocolError):
    """A length or count is negative (other than -1 for null) or cannot fit what is left."""


class InvalidUtf8(RemoteProtocolError):
    """A string's bytes are not valid UTF-8."""


class TrailingBytes(RemoteProtocolError):
    """A body has bytes left over after its last field."""


class InvalidValue(RemoteProtocolError):
    """A value is outside its type's domain: a bool not 0/1, a null where none is
    allowed, a repeated map key, an error frame with error_code 0."""


class BadFrame(RemoteProtocolError):
    """A frame header is unusable: length shorter than the header, unknown flag bits, or
    a frame going the wrong way (a response to a server, a request to a client)."""


class FrameTooLarge(RemoteProtocolError):
    """A length prefix above max_frame_size: answered, then the connection closes."""

    code = MessageTooLarge.code
    name = MessageTooLarge.name


class UnknownApiKey(RemoteProtocolError):
    """A request for an api_key this side does not serve (the connection stays open)."""


class UnsupportedApiVersion(RemoteProtocolError):
    """A request version outside the api's range (answered UNSUPPORTED_VERSION)."""

    code = UnsupportedVersion.code
    name = UnsupportedVersion.name


class UnknownCorrelationId(RemoteProtocolError):
    """A response whose correlation id matches no request in flight."""


class DuplicateCorrelationId(RemoteProtocolError):
    """A request reusing the correlation id of one still in flight (answers would be
    ambiguous, so the connection closes)."""


class FdMismatch(RemoteProtocolError):
    """File descriptors and frames disagree: fds without the FDS flag, the flag without
    fds, or more fds than the receive buffer holds (the kernel dropped some)."""


# ---- The wire mapping: (error_code, error_message) <-> OdradekError ---------------------

def error_from_wire(error_code, error_message=None):
    """The OdradekError instance an error response stands for (client side).

    Codes come from odradek.client.errors; an unknown code becomes UnknownServerError
    and keeps the number in its message, so nothing is lost.
    """
    cls = ERRORS.get(error_code)
    if cls is None:
        return UnknownServerError(f"error code {error_code} (unknown to this client): "
                                  f"{error_message or ''}".rstrip(": "))
    return cls(error_message or "")


def error_to_wire(exc):
    """(error_code, error_message) for an exception raised while serving (server side).

    An OdradekError keeps its code and message; anything else is UNKNOWN_SERVER_ERROR
    with the exception's type and text (the peer is on the same host, so the detail
    helps and leaks nothing new).
    """
    if isinstance(exc, OdradekError):
        return exc.code, exc.message
    return UnknownServerError.code, f"{type(exc).__name__}: {exc}"


def raise_for_error(error_code, error_message=None):
    """Raise the OdradekError for a per-item error_code (topic, partition ...) unless 0."""
    if error_code:
        raise error_from_wire(error_code, error_message)
