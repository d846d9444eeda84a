"""Our error codes as Kafka's: odradek's errors carry Kafka's codes where Kafka has the
error (client/errors.py), so a code passes through; one of our own (1000 and up) has no
Kafka name and becomes UNKNOWN_SERVER_ERROR (-1)."""
from kio.schema.errors import ErrorCode

from odradek.client.errors import OdradekError

__all__ = ["kafka_code"]

_KNOWN = {e.value for e in ErrorCode}


def kafka_code(error):
    """The ErrorCode of `error`: an OdradekError, an int code, or None (none)."""
    if error is None:
        return ErrorCode.none
    code = error.code if isinstance(error, OdradekError) else int(error)
    return ErrorCode(code) if code in _KNOWN else ErrorCode.unknown_server_error
