"""Protocol errors and the (error_code, error_message) <-> OdradekError mapping."""
import pytest

from odradek.client import errors
from odradek.client.protocol import (
    FrameTooLarge, LocalProtocolError, ProtocolError, RemoteProtocolError, Truncated,
    UnsupportedApiVersion, error_from_wire, error_to_wire, raise_for_error)


@pytest.mark.parametrize("code", sorted(errors.ERRORS))
def test_every_code_in_the_error_table_maps_to_its_class_and_back(code):
    error = error_from_wire(code, "what happened")
    assert type(error) is errors.ERRORS[code]
    assert error_to_wire(error) == (code, "what happened")


def test_an_unknown_error_code_becomes_unknown_server_error_keeping_the_number():
    error = error_from_wire(4242, "from the future")
    assert type(error) is errors.UnknownServerError
    assert "error code 4242" in str(error) and "from the future" in str(error)


def test_a_null_error_message_gives_the_error_name():
    assert str(error_from_wire(3, None)) == "UNKNOWN_TOPIC_OR_PARTITION"


def test_any_other_exception_goes_on_the_wire_as_unknown_server_error():
    assert error_to_wire(ValueError("bad")) == (-1, "ValueError: bad")


def test_raise_for_error_raises_for_a_nonzero_item_code_only():
    raise_for_error(0, None)
    with pytest.raises(errors.NotEnoughReplicas, match="only 1 in sync"):
        raise_for_error(19, "only 1 in sync")


def test_remote_and_local_protocol_errors_are_distinct_odradek_errors():
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert issubclass(ProtocolError, errors.OdradekError)


def test_garbage_goes_on_the_wire_as_invalid_request_and_misuse_as_unknown_server_error():
    assert error_to_wire(Truncated("x"))[0] == errors.InvalidRequest.code == 42
    assert error_to_wire(LocalProtocolError("x"))[0] == errors.UnknownServerError.code
    assert error_to_wire(FrameTooLarge("x"))[0] == errors.MessageTooLarge.code
    assert error_to_wire(UnsupportedApiVersion("x"))[0] == errors.UnsupportedVersion.code


def test_a_client_seeing_invalid_request_gets_invalid_request_not_a_remote_protocol_error():
    # INVALID_REQUEST from the broker means *we* sent garbage; it is not the broker's.
    error = error_from_wire(42, "bad body")
    assert type(error) is errors.InvalidRequest
    assert not isinstance(error, RemoteProtocolError)


def test_the_error_table_has_kafkas_network_exception_for_a_lost_broker():
    assert errors.NetworkException.code == 13 and errors.NetworkException.retriable
