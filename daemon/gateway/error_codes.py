"""Our errors as Kafka's: odradek's errors carry Kafka's codes where Kafka has the error
(client/errors.py), so a code passes through; one of our own (1000 and up) has no Kafka
name and becomes UNKNOWN_SERVER_ERROR (-1). error_fields: an error as the
error_code/error_message fields of Kafka's responses."""
from kio.schema.errors import ErrorCode

from odradek.client.errors import OdradekError

__all__ = ["kafka_code", "error_fields"]

_BY_CODE = {e.value: e for e in ErrorCode}   # a dict lookup: ErrorCode(code) costs ~1 us a call


def kafka_code(error):
    """The ErrorCode of `error`: an OdradekError, an int code, or None (none)."""
    if error is None:
        return ErrorCode.none
    code = error.code if isinstance(error, OdradekError) else int(error)
    return _BY_CODE.get(code, ErrorCode.unknown_server_error)


def error_fields(error, message=None):
    """{error_code, error_message} of an OdradekError, or of a code and message."""
    if isinstance(error, OdradekError):
        error, message = error.code, error.message
    return {"error_code": kafka_code(error), "error_message": message}
