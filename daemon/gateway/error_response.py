"""Kafka's answer to a request that failed as a whole: its response with the error in it.

Kafka's AbstractRequest.getErrorResponse answers a request the broker cannot serve
(an unsupported version, an internal error) with that API's response, the error code
set wherever the response has one: at the top, and in the per-topic / per-partition
entries mirroring the request's. `error_response` does the same from kio's classes:
every `error_code` field of the response gets `code`, and an array of the response
whose name matches an array of the request is filled with one entry per request
entry, copying the fields both have (name, partition_index, topic_id, group_id ...).
Where the names differ (Produce's topic_data / responses) the array stays empty and
only a top-level error, if the response has one, carries the code.
"""
from dataclasses import fields

from kio.serial._introspect import EntityField, EntityTupleField, classify_field, is_optional

from odradek.daemon.gateway.codec import ErrorCode, build, response_class

__all__ = ["error_response"]


def error_response(api_key, api_version, code, body=None, message=None):
    """The response entity of `api_key` at `api_version` carrying ErrorCode `code`,
    mirroring the request `body` (a kio entity) when there is one; raises what kio
    raises if it has no response class for them."""
    return build(response_class(api_key, api_version), _mirror(response_class(api_key, api_version), body,
                                                                 ErrorCode(code), message))


def _mirror(cls, request, code, message):
    values = {}
    request_fields = {f.name: getattr(request, f.name) for f in fields(request)} if request is not None else {}
    for f in fields(cls):
        kind = classify_field(f)
        if f.name == "error_code":
            values[f.name] = code
        elif f.name == "error_message" and message is not None:
            values[f.name] = message
        elif isinstance(kind, EntityTupleField) and isinstance(request_fields.get(f.name), tuple):
            values[f.name] = [_mirror(kind.type_, entry, code, message) for entry in request_fields[f.name]]
        elif isinstance(kind, EntityField):
            continue
        elif f.name in request_fields and not isinstance(request_fields[f.name], tuple):
            if request_fields[f.name] is not None or is_optional(f):   # a null the response cannot carry: its zero
                values[f.name] = request_fields[f.name]
    return values
