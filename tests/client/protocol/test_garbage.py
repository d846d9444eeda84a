"""Fuzzing: garbage only ever raises RemoteProtocolError, and splitting never matters."""
import pytest
from hypothesis import given, settings, strategies as st

from odradek.client.protocol import (
    APIS, CLIENT, SERVER, Connection, LocalProtocolError, ProtocolErrorEvent,
    RemoteProtocolError, Request, State, messages as m)
from odradek.client.protocol._framing import encode_frame

MESSAGES = [cls for api in APIS for cls in (api.request, api.response)]


def decode_or_protocol_error(cls, data):
    try:
        cls.decode(data, 0)
    except RemoteProtocolError:
        pass


@settings(max_examples=400, deadline=None)
@given(cls=st.sampled_from(MESSAGES), data=st.binary(max_size=64))
def test_decoding_random_bytes_as_any_message_raises_only_remote_protocol_errors(cls, data):
    decode_or_protocol_error(cls, data)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_decoding_a_mutated_valid_body_raises_only_remote_protocol_errors(strategies, data):
    cls = data.draw(st.sampled_from(MESSAGES))
    body = bytearray(data.draw(strategies.message(cls)).encode(0))
    for _ in range(data.draw(st.integers(1, 4))):
        if not body:
            break
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.sampled_from([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]))
    cut = data.draw(st.integers(0, len(body)))
    decode_or_protocol_error(cls, bytes(body[:cut]) + data.draw(st.binary(max_size=4)))


def feed_chunks(conn, data, cuts):
    """Feed `data` in pieces; stop once the connection is no longer open."""
    events = []
    points = sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]
    start = 0
    for p in points:
        if p > start and conn.state is State.OPEN:
            events += conn.receive_data(data[start:p])
            start = p
    for event in events:
        if isinstance(event, ProtocolErrorEvent):
            assert isinstance(event.error, RemoteProtocolError)
    return events


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_a_server_fed_random_bytes_only_reports_events_and_never_raises(data, cuts):
    server = Connection(SERVER, max_frame_size=128)
    feed_chunks(server, data, cuts)
    server.data_to_send()
    assert server.buffered <= 128 + 4


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_a_client_fed_random_bytes_only_reports_events_and_never_raises(data, cuts):
    client = Connection(CLIENT)
    for _ in range(3):
        client.send_request(m.StatusRequest())
    feed_chunks(client, data, cuts)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_server_fed_framed_garbage_bodies_answers_each_without_closing(data):
    server = Connection(SERVER)
    api = data.draw(st.sampled_from(list(APIS)))
    bodies = data.draw(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
    wire = b"".join(encode_frame(api.key, 0, i, 0, b) for i, b in enumerate(bodies))
    events = server.receive_data(wire)
    assert len(events) == len(bodies) and server.state is State.OPEN
    replies = Connection(CLIENT)
    for i in range(len(bodies)):
        replies._in_flight[i] = (api, 0, None)
    for event in events:
        if isinstance(event, ProtocolErrorEvent):
            assert not event.fatal
        else:
            assert isinstance(event, Request)
            server.send_response(event.correlation_id, api.response())
    # every failed request got exactly one error response
    auto = server.data_to_send()
    answered = replies.receive_data(auto) if auto else []
    assert sorted(e.correlation_id for e in answered) == sorted(
        e.correlation_id for e in events if isinstance(e, ProtocolErrorEvent))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_how_the_bytes_are_split_never_changes_the_requests_received(strategies, data, cuts):
    client = Connection(CLIENT)
    messages = data.draw(st.lists(st.sampled_from([api.request for api in APIS]).flatmap(
        strategies.message), min_size=1, max_size=4))
    wire = b"".join(client.send_request(msg) for msg in messages)
    events = feed_chunks(Connection(SERVER), wire, cuts)
    assert [e.message for e in events] == messages


def test_a_broken_connection_refuses_more_bytes_as_a_local_error():
    server = Connection(SERVER)
    server.receive_data(b"\x00\x00\x00\x00" + bytes(9))
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")
