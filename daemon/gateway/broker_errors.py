"""Our broker's errors as Kafka's error codes, for the gateway's answers.

odradek's errors carry Kafka's numbers (client/errors.py), so a code passes through as
it is; odradek's own codes (1000 and up) have no Kafka name and go out as
UNKNOWN_SERVER_ERROR (-1), their message kept where the response has one.
"""
from kio.schema.errors import ErrorCode

from odradek.client.errors import OdradekError

__all__ = ["kafka_code", "error_fields", "call"]

_KAFKA_CODES = frozenset(e.value for e in ErrorCode)


def kafka_code(code):
    """Kafka's error code for one of ours."""
    return code if code in _KAFKA_CODES else ErrorCode.unknown_server_error.value


def error_fields(error, message=None):
    """{error_code, error_message} of an OdradekError, or of a code and message."""
    if isinstance(error, OdradekError):
        error, message = error.code, error.message
    return {"error_code": kafka_code(error), "error_message": message}


def call(ctx, request):
    """The broker's response to `request` on a pooled control connection (it passes no
    fds); raises the OdradekError the broker answered with."""
    response, _ = ctx.gateway.links.call(request)
    return response
