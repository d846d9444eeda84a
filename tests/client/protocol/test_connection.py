"""The sans-IO Connection: requests, responses, errors, pipelining, fds, bad peers."""
import pytest

from odradek.client import errors
from odradek.client.protocol import (
    CLIENT, SERVER, APIS, Api, ApiTable, BadFrame, Connection, ConnectionClosed, DuplicateCorrelationId,
    FdMismatch, FrameTooLarge, InvalidValue, LocalProtocolError, ProtocolErrorEvent,
    Request, Response, State, Truncated, UnknownApiKey, UnknownCorrelationId,
    UnsupportedApiVersion, messages as m)
from odradek.client.protocol._framing import FLAG_ERROR, FLAG_FDS, FLAG_RESPONSE, encode_frame


def pair(**kw):
    return Connection(CLIENT, **kw), Connection(SERVER, **kw)


def only(events, kind=None):
    assert len(events) == 1, events
    if kind is not None:
        assert isinstance(events[0], kind), events[0]
    return events[0]


def test_a_request_and_its_response_cross_with_the_same_correlation_id():
    client, server = pair()
    request = m.ListOffsetsRequest(topics=[m.ListOffsetsTopic(
        name="t", partitions=[m.ListOffsetsPartition(partition_index=0, timestamp=-2)])])
    req = only(server.receive_data(client.send_request(request)), Request)
    assert (req.correlation_id, req.api_key, req.api_version) == (1, 2, 0)
    assert req.message == request and client.in_flight == server.in_flight == 1

    answer = m.ListOffsetsResponse(topics=[m.ListOffsetsTopicResponse(name="t", partitions=[
        m.ListOffsetsPartitionResponse(partition_index=0, offset=0, timestamp=-1)])])
    resp = only(client.receive_data(server.send_response(1, answer)), Response)
    assert resp.message == answer and resp.error is None and resp.request is request
    assert resp.result() == answer
    assert client.in_flight == server.in_flight == 0


def test_pipelined_requests_are_matched_by_correlation_id_when_answered_out_of_order():
    client, server = pair()
    sent = [m.StatusRequest(topics=[str(i)]) for i in range(3)]
    wire = b"".join(client.send_request(r) for r in sent)
    requests = server.receive_data(wire)
    assert [r.correlation_id for r in requests] == [1, 2, 3]
    answers = b"".join(server.send_response(r.correlation_id, m.StatusResponse(
        version=r.message.topics[0])) for r in reversed(requests))
    responses = client.receive_data(answers)
    assert [r.correlation_id for r in responses] == [3, 2, 1]
    for r in responses:
        assert r.message.version == r.request.topics[0]   # each answer met its request


def test_correlation_ids_wrap_below_two_to_the_32_and_skip_ids_in_flight():
    client, _ = pair()
    client.send_request(m.StatusRequest())            # id 1 stays in flight
    client._next_id = 2**32 - 1
    client.send_request(m.StatusRequest())
    assert client.last_correlation_id == 2**32 - 1
    client.send_request(m.StatusRequest())
    assert client.last_correlation_id == 0
    client.send_request(m.StatusRequest())
    assert client.last_correlation_id == 2             # 1 is still in flight


def test_an_unknown_api_key_gets_invalid_request_and_the_connection_stays_open():
    client, server = pair()
    event = only(server.receive_data(encode_frame(999, 0, 77, 0, b"whatever")),
                 ProtocolErrorEvent)
    assert isinstance(event.error, UnknownApiKey)
    assert (event.correlation_id, event.fatal, server.state) == (77, False, State.OPEN)
    reply = server.data_to_send()
    assert reply[4:13] == bytes.fromhex("03e7 0000 0000004d 03".replace(" ", ""))
    assert server.data_to_send() == b""                 # drained
    # the connection still serves
    only(server.receive_data(client.send_request(m.StatusRequest())), Request)


def test_an_unsupported_version_gets_unsupported_version_which_the_client_raises():
    # a newer client that knows Metadata v0..v5, talking to this v0..v1 server
    newer = Connection(CLIENT, apis=ApiTable([Api(3, m.MetadataRequest, m.MetadataResponse, 0, 5)]))
    server = Connection(SERVER)
    event = only(server.receive_data(newer.send_request(m.MetadataRequest())), ProtocolErrorEvent)
    assert isinstance(event.error, UnsupportedApiVersion) and not event.fatal
    assert server.state is State.OPEN
    resp = only(newer.receive_data(server.data_to_send()), Response)
    assert type(resp.error) is errors.UnsupportedVersion
    assert "Metadata v5 is not supported; this broker serves v0..v1" in str(resp.error)
    with pytest.raises(errors.UnsupportedVersion):
        resp.result()


def test_a_server_serving_fewer_apis_refuses_the_others_as_unknown():
    client = Connection(CLIENT)
    server = Connection(SERVER, apis=APIS.only(m.ApiKey.API_VERSIONS))
    server.receive_data(client.send_request(m.JoinGroupRequest(group_id="g")))
    resp = only(client.receive_data(server.data_to_send()), Response)
    assert isinstance(resp.error, errors.InvalidRequest)


def test_a_request_body_that_does_not_decode_gets_invalid_request_naming_the_field():
    client, server = pair()
    good = client.send_request(m.DeleteTopicsRequest(topic_names=["ab"]))
    bad = good.replace(b"\x00\x02ab", b"\x00\x02\xff\xfe")
    event = only(server.receive_data(bad), ProtocolErrorEvent)
    assert not event.fatal and event.correlation_id == 1 and server.state is State.OPEN
    resp = only(client.receive_data(server.data_to_send()), Response)
    assert isinstance(resp.error, errors.InvalidRequest)
    assert "DeleteTopicsRequest.topic_names[0]: string is not UTF-8" in str(resp.error)


@pytest.mark.parametrize("code", sorted(errors.ERRORS))
def test_an_error_response_becomes_the_odradek_error_class_of_its_code(code):
    client, server = pair()
    req = only(server.receive_data(client.send_request(m.StatusRequest())))
    cls = errors.ERRORS[code]
    resp = only(client.receive_data(server.send_error(req.correlation_id, cls("why"))))
    assert type(resp.error) is cls
    assert resp.error.message == "why" and resp.message is None


def test_a_non_odradek_exception_in_a_handler_becomes_unknown_server_error():
    client, server = pair()
    req = only(server.receive_data(client.send_request(m.StatusRequest())))
    wire = server.send_error(req.correlation_id, KeyError("boom"))
    resp = only(client.receive_data(wire))
    assert type(resp.error) is errors.UnknownServerError
    assert resp.error.message == "KeyError: 'boom'"


def test_a_response_of_the_wrong_type_is_refused_and_the_request_can_still_be_answered():
    client, server = pair()
    server.receive_data(client.send_request(m.StatusRequest()))
    with pytest.raises(LocalProtocolError, match="answered with StatusResponse"):
        server.send_response(1, m.MetadataResponse())
    with pytest.raises(LocalProtocolError, match="StatusResponse.broker_pid"):
        server.send_response(1, m.StatusResponse(broker_pid=2**40))
    resp = only(client.receive_data(server.send_error(1, errors.InvalidRequest("x"))))
    assert isinstance(resp.error, errors.InvalidRequest)


def test_answering_a_request_never_received_is_a_local_error():
    _, server = pair()
    with pytest.raises(LocalProtocolError, match="no request 5"):
        server.send_response(5, m.StatusResponse())


def test_each_role_refuses_the_other_roles_sends():
    client, server = pair()
    with pytest.raises(LocalProtocolError):
        server.send_request(m.StatusRequest())
    with pytest.raises(LocalProtocolError):
        client.send_error(1, errors.InvalidRequest())
    with pytest.raises(TypeError):
        Connection("client")


def test_a_client_refuses_to_send_a_frame_over_max_frame_size_and_keeps_its_ids():
    client = Connection(CLIENT, max_frame_size=64)
    with pytest.raises(LocalProtocolError, match="exceeds max_frame_size 64"):
        client.send_request(m.DeleteTopicsRequest(topic_names=["x" * 100]))
    client.send_request(m.StatusRequest())
    assert client.last_correlation_id == 1 and client.in_flight == 1


def test_a_client_refuses_a_message_that_is_not_a_request_of_its_table():
    with pytest.raises(LocalProtocolError, match="not a request"):
        Connection(CLIENT).send_request(m.StatusResponse())
    with pytest.raises(LocalProtocolError, match="outside v0..v0"):
        Connection(CLIENT).send_request(m.StatusRequest(), version=1)


# ---- Fatal errors ----------------------------------------------------------------------

def test_an_oversized_frame_is_answered_with_its_correlation_id_then_the_connection_breaks():
    client = Connection(CLIENT, max_frame_size=1 << 20)
    server = Connection(SERVER, max_frame_size=100)
    wire = client.send_request(m.DeleteTopicsRequest(topic_names=["x" * 200]))
    event = only(server.receive_data(wire[:13]), ProtocolErrorEvent)   # header only
    assert isinstance(event.error, FrameTooLarge)
    assert (event.correlation_id, event.fatal, server.state) == (1, True, State.BROKEN)
    resp = only(client.receive_data(server.data_to_send()), Response)
    assert isinstance(resp.error, errors.MessageTooLarge)
    assert "exceeds max_frame_size 100" in str(resp.error)
    with pytest.raises(LocalProtocolError, match="broken"):
        server.receive_data(wire[13:])


def test_a_response_for_no_request_in_flight_breaks_the_client_connection():
    client, _ = pair()
    stray = encode_frame(3, 0, 42, FLAG_RESPONSE, m.MetadataResponse().encode(0))
    event = only(client.receive_data(stray), ProtocolErrorEvent)
    assert isinstance(event.error, UnknownCorrelationId) and event.fatal
    assert client.state is State.BROKEN
    with pytest.raises(LocalProtocolError):
        client.send_request(m.StatusRequest())


def test_a_reused_correlation_id_in_flight_breaks_the_connection_without_an_answer():
    client, server = pair()
    wire = client.send_request(m.StatusRequest())
    events = server.receive_data(wire + wire)
    assert isinstance(events[0], Request)
    assert isinstance(events[1].error, DuplicateCorrelationId) and events[1].fatal
    assert server.data_to_send() == b""
    # the first request may still be answered before closing
    assert server.send_response(1, m.StatusResponse())


@pytest.mark.parametrize("role, flags, match", [
    (SERVER, FLAG_RESPONSE, "a client sent a response frame"),
    (CLIENT, 0, "the server sent a request frame"),
    (SERVER, 0x40, "unknown flag bits"),
])
def test_a_frame_going_the_wrong_way_or_with_unknown_flags_breaks_the_connection(role, flags, match):
    conn = Connection(role)
    if role is CLIENT:
        conn.send_request(m.StatusRequest())
    event = only(conn.receive_data(encode_frame(1003, 0, 1, flags, b"")), ProtocolErrorEvent)
    assert isinstance(event.error, BadFrame) and event.fatal and match in str(event.error)
    assert conn.state is State.BROKEN


def test_frames_after_a_fatal_one_in_the_same_bytes_are_not_processed():
    client, server = pair()
    good = client.send_request(m.StatusRequest())
    events = server.receive_data(good + b"\x00\x00\x00\x01" + bytes(9) + good)
    assert [type(e) for e in events] == [Request, ProtocolErrorEvent]


def test_a_response_body_that_does_not_decode_fails_only_its_own_request():
    client, server = pair()
    for _ in range(2):
        server.receive_data(client.send_request(m.StatusRequest()))
    bad = encode_frame(1003, 0, 1, FLAG_RESPONSE, b"\x00")
    event = only(client.receive_data(bad), ProtocolErrorEvent)
    assert isinstance(event.error, Truncated) and not event.fatal and event.correlation_id == 1
    assert client.state is State.OPEN and client.in_flight == 1
    only(client.receive_data(server.send_response(2, m.StatusResponse())), Response)


def test_a_response_echoing_another_api_fails_its_request():
    client, _ = pair()
    client.send_request(m.StatusRequest())
    event = only(client.receive_data(encode_frame(3, 0, 1, FLAG_RESPONSE, b"")))
    assert isinstance(event.error, BadFrame) and "the request was Status (1003)" in str(event.error)


def test_an_error_response_with_error_code_zero_is_garbage():
    client, _ = pair()
    client.send_request(m.StatusRequest())
    event = only(client.receive_data(encode_frame(1003, 0, 1, FLAG_RESPONSE | FLAG_ERROR,
                                                  b"\x00\x00\xff\xff")))
    assert isinstance(event.error, InvalidValue)


def test_the_peer_closing_reports_unanswered_requests():
    client, server = pair()
    client.send_request(m.StatusRequest())
    client.send_request(m.StatusRequest())
    closed = only(client.receive_data(b""), ConnectionClosed)
    assert closed.unanswered == (1, 2) and client.state is State.CLOSED
    assert client.in_flight == 0


def test_the_peer_closing_inside_a_frame_reports_the_truncated_frame():
    client, server = pair()
    wire = client.send_request(m.StatusRequest())
    assert server.receive_data(wire[:5]) == []
    assert server.buffered == 5
    events = server.receive_data(b"")
    assert isinstance(events[0].error, Truncated) and isinstance(events[1], ConnectionClosed)


# ---- File descriptors (as plain ints: the Connection never touches them) -------------

def fds_frame(cid, fds=True, body_size=0):
    return encode_frame(1003, 0, cid, FLAG_RESPONSE | (FLAG_FDS if fds else 0),
                        m.StatusResponse(version="v" * body_size).encode(0))


def client_waiting(n):
    client = Connection(CLIENT)
    for _ in range(n):
        client.send_request(m.StatusRequest())
    return client


def test_fds_ride_on_the_last_frame_starting_in_the_bytes_they_came_with():
    client = client_waiting(2)
    events = client.receive_data(fds_frame(1, fds=False) + fds_frame(2), fds=[100, 101])
    assert [e.fds for e in events] == [(), (100, 101)]
    assert client.take_unclaimed_fds() == []


def test_fds_arriving_with_a_partial_frame_wait_for_it_to_complete():
    client = client_waiting(2)
    wire = fds_frame(1, fds=False) + fds_frame(2, body_size=50)
    cut = len(fds_frame(1, fds=False)) + 3           # first recvmsg: frame 1 + 3 bytes
    first = client.receive_data(wire[:cut], fds=[7])
    assert [e.fds for e in first] == [()]
    middle = client.receive_data(wire[cut:cut + 20])
    assert middle == []
    last = only(client.receive_data(wire[cut + 20:]), Response)
    assert last.fds == (7,) and last.correlation_id == 2


def test_fds_with_bytes_in_which_no_frame_starts_are_unclaimed_and_break_nothing():
    client = client_waiting(1)
    wire = fds_frame(1, fds=False, body_size=40)
    assert client.receive_data(wire[:10]) == []
    only(client.receive_data(wire[10:], fds=[9]), Response)
    assert client.take_unclaimed_fds() == [9]


def test_fds_for_a_frame_without_the_fds_flag_break_the_connection_and_are_unclaimed():
    client = client_waiting(1)
    event = only(client.receive_data(fds_frame(1, fds=False), fds=[5, 6]), ProtocolErrorEvent)
    assert isinstance(event.error, FdMismatch) and event.fatal
    assert client.take_unclaimed_fds() == [5, 6]


def test_the_fds_flag_without_fds_breaks_the_connection():
    client = client_waiting(1)
    event = only(client.receive_data(fds_frame(1)), ProtocolErrorEvent)
    assert isinstance(event.error, FdMismatch) and "FDS flag without fds" in str(event.error)


def test_fds_truncated_by_the_kernel_break_the_connection_and_are_unclaimed():
    client = client_waiting(1)
    events = client.receive_data(fds_frame(1), fds=[3], fds_truncated=True)
    assert any(isinstance(e, ProtocolErrorEvent) and e.fatal for e in events)
    assert client.take_unclaimed_fds() == [3]


def test_fds_of_a_failed_frame_or_an_unknown_api_are_unclaimed():
    server = Connection(SERVER)
    only(server.receive_data(encode_frame(999, 0, 1, FLAG_FDS, b""), fds=[11]))
    assert server.take_unclaimed_fds() == [11]
    assert server.state is State.OPEN


def test_closing_releases_fds_held_for_a_partial_frame():
    client = client_waiting(1)
    client.receive_data(fds_frame(1)[:5], fds=[12])
    assert client.take_unclaimed_fds() == []
    client.close()
    assert client.take_unclaimed_fds() == [12]
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"x", fds=[13])
    assert client.take_unclaimed_fds() == [13]


def test_sending_with_fds_sets_the_fds_flag_and_the_peer_gets_them():
    client, server = pair()
    server.receive_data(client.send_request(m.OpenFetchRequest(topic="t")))
    wire = server.send_response(1, m.OpenFetchResponse(fds=[m.PassedFd(kind="partition-state")]),
                                fds=[40])
    assert wire[12] == FLAG_RESPONSE | FLAG_FDS
    resp = only(client.receive_data(wire, fds=[41]), Response)
    assert resp.fds == (41,) and resp.message.fds[0].kind == m.FdKind.PARTITION_STATE
