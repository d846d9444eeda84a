"""Calls to our broker for the admin, config and transaction APIs, and its errors as the
error fields of Kafka's responses (codes: error_codes.py)."""
from odradek.client.errors import OdradekError
from odradek.daemon.gateway.error_codes import kafka_code

__all__ = ["error_fields", "call"]


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
