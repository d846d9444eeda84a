"""native.parse_produce_one (odk_parse_produce_one, odradek.h): the gateway's reading of a
lone Produce request without kio. C against its Python twin, and both against kio's
decoding of the same frames: Produce requests of every served version (3-13) encoded by
kio with random client ids, transactional ids, acks, timeouts, topics, partitions and
records; the one-topic, one-partition, non-null shape is read field for field as kio
reads it, and every other shape is None. Damaged frames (cut, bytes changed, tagged
fields added) never crash either and never disagree."""
import datetime
import io
import struct
import uuid

import kio.index
import kio.serial
from hypothesis import given, settings, strategies as st

from odradek.client import _native_ref as ref
from odradek.client import native
from odradek.daemon.gateway.codec import build, decode_request

VERSIONS = range(3, 14)


def frame_body(version, cid, client_id, body):
    cls = kio.index.load_request_schema(0, version)
    header = cls.__header_schema__
    buf = io.BytesIO()
    kio.serial.entity_writer(header)(buf, header(request_api_key=0, request_api_version=version,
                                                 correlation_id=cid, client_id=client_id))
    kio.serial.entity_writer(cls)(buf, build(cls, body))
    return buf.getvalue()


names = st.text(alphabet="abcXYZ._-0189é", min_size=0, max_size=20)


@st.composite
def produce_requests(draw):
    version = draw(st.sampled_from(VERSIONS))
    topics = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2, 3]))):
        partitions = [dict(index=draw(st.integers(-5, 2 ** 31 - 1)),
                           records=draw(st.one_of(st.none(), st.binary(max_size=300))))
                      for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2])))]
        topic = dict(topic_id=uuid.UUID(bytes=draw(st.binary(min_size=16, max_size=16)))) if version >= 13 \
            else dict(name=draw(names))
        topics.append(dict(topic, partition_data=partitions))
    body = dict(transactional_id=draw(st.one_of(st.none(), names)), acks=draw(st.integers(-32768, 32767)),
                timeout=draw(st.integers(0, 2 ** 31 - 1)), topic_data=topics)
    cid = draw(st.integers(-2 ** 31, 2 ** 31 - 1))
    client_id = draw(st.one_of(st.none(), names))
    return version, frame_body(version, cid, client_id, body)


def both(frame, lo=3, hi=13):
    got = native.parse_produce_one(frame, lo, hi)
    assert ref.parse_produce_one(frame, lo, hi) == got
    return got


@settings(max_examples=400, deadline=None)
@given(produce_requests())
def test_the_one_partition_shape_is_read_as_kio_reads_it(request):
    version, frame = request
    got = both(frame)
    body = decode_request(frame).body
    topics = body.topic_data
    one = len(topics) == 1 and len(topics[0].partition_data) == 1 and topics[0].partition_data[0].records is not None
    assert (got is not None) == one
    if got is None:
        return
    v, cid, transactional, acks, timeout_ms, index, t_at, t_len, r_at, r_len = got
    part = topics[0].partition_data[0]
    assert (v, cid) == (version, decode_request(frame).correlation_id)
    assert transactional == (body.transactional_id is not None)
    assert acks == body.acks and timeout_ms == body.timeout // datetime.timedelta(milliseconds=1)
    assert index == part.index
    topic = frame[t_at:t_at + t_len]
    if version >= 13:       # kio reads the zero id (Kafka's "no id") as None
        assert (uuid.UUID(bytes=topic) if any(topic) else None) == topics[0].topic_id
    else:
        assert topic.decode() == topics[0].name
    assert frame[r_at:r_at + r_len] == part.records


@settings(max_examples=300, deadline=None)
@given(produce_requests(), st.data())
def test_damaged_frames_never_crash_and_both_agree(request, data):
    _, frame = request
    frame = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        at = data.draw(st.integers(0, max(0, len(frame) - 1)))
        if how == "cut":
            del frame[at:]
        elif how == "flip" and frame:
            frame[at] = data.draw(st.integers(0, 255))
        else:
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=5))
    got = both(bytes(frame))
    if got is not None:
        _, _, _, _, _, _, t_at, t_len, r_at, r_len = got
        assert 0 <= t_at <= t_at + t_len <= r_at <= r_at + r_len <= len(frame)


def test_other_keys_versions_outside_the_range_and_tagged_fields_are_not_the_shape():
    records = b"r" * 70
    body = dict(transactional_id=None, acks=1, timeout=1000,
                topic_data=[dict(name="t", partition_data=[dict(index=0, records=records)])])
    v9 = frame_body(9, 7, "c", body)
    assert both(v9) is not None
    assert both(v9, 3, 8) is None and both(v9, 10, 13) is None          # outside what is served
    assert both(struct.pack(">h", 1) + v9[2:]) is None                   # a Fetch's key
    # request header v2: api key, version, correlation id, client id ("c"), then its tagged fields
    at = 2 + 2 + 4 + 2 + 1
    assert v9[at] == 0
    tagged = v9[:at] + bytes([1, 0, 1, 0x55]) + v9[at + 1:]             # one tagged field, tag 0, 1 byte
    assert both(tagged) is None
    assert both(b"") is None and both(v9[:7]) is None


def test_bytes_after_the_body_are_ignored_as_the_general_decoding_ignores_them():
    body = dict(transactional_id="tx", acks=-1, timeout=1000,
                topic_data=[dict(name="t", partition_data=[dict(index=2, records=b"r" * 70)])])
    for version in (3, 9):
        frame = frame_body(version, 7, None, body)
        assert both(frame + b"\0\0\0") == both(frame)
