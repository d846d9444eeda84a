"""Unknown tagged fields dropped so kio reads the request (tagged_fields.py): at the top,
nested in an array's structs and in the header; known tagged fields kept byte for byte."""
import io
import struct
import uuid

import kio.serial
import pytest
from kio.schema.fetch.v12.request import FetchRequest as FetchV12
from kio.schema.metadata.v12.request import MetadataRequest as MetadataV12, MetadataRequestTopic

from odradek.daemon.gateway.codec import MalformedRequest, build, decode_request
from odradek.daemon.gateway.tagged_fields import MalformedTags, strip_unknown_tags

TOPIC_ID = uuid.UUID(int=0x1234)


def _header(api_key, version, tags=b"\0"):
    return struct.pack(">hhih", api_key, version, 9, 1) + b"c" + tags


def _metadata_body(topic_tags=b"\0", top_tags=b"\0"):
    """Metadata v12 by hand: topics (one: topic_id, name "t"), two bools."""
    return b"\x02" + TOPIC_ID.bytes + b"\x02t" + topic_tags + b"\x01\x00" + top_tags


def test_the_hand_encoding_is_kios():
    out = io.BytesIO()
    kio.serial.entity_writer(MetadataV12)(out, MetadataV12(
        topics=(MetadataRequestTopic(topic_id=TOPIC_ID, name="t"),), allow_auto_topic_creation=True,
        include_topic_authorized_operations=False))
    assert out.getvalue() == _metadata_body()


def test_unknown_tags_everywhere_are_dropped():
    frame = (_header(3, 12, tags=b"\x01\x05\x00")
             + _metadata_body(topic_tags=b"\x02\x07\x02ab\x09\x00", top_tags=b"\x01\x63\x01z"))
    with pytest.raises(MalformedRequest, match="tag"):
        decode_request(frame)          # what kio does with them
    stripped, dropped = strip_unknown_tags(frame, MetadataV12)
    assert (stripped, dropped) == (_header(3, 12) + _metadata_body(), 4)
    request = decode_request(stripped)
    assert request.correlation_id == 9 and request.body.topics[0].name == "t"
    assert request.body.allow_auto_topic_creation is True


def test_known_tags_are_kept():
    out = io.BytesIO()
    kio.serial.entity_writer(FetchV12)(out, build(FetchV12, cluster_id="c", replica_id=-1, min_bytes=1, max_bytes=1,
                                                  session_epoch=-1, topics=[], forgotten_topics_data=[], rack_id=""))
    body = out.getvalue()
    assert body.endswith(b"\x01\x00\x02\x02c")        # one tag: 0 (cluster_id), 2 bytes
    injected = body[:-5] + b"\x02\x00\x02\x02c\x63\x01z"
    stripped, dropped = strip_unknown_tags(_header(1, 12) + injected, FetchV12)
    assert (stripped, dropped) == (_header(1, 12) + body, 1)
    assert decode_request(stripped).body.cluster_id == "c"


def test_nothing_unknown_is_nothing_dropped():
    frame = _header(3, 12) + _metadata_body()
    assert strip_unknown_tags(frame, MetadataV12) == (frame, 0)


@pytest.mark.parametrize("frame", [
    _header(3, 12) + _metadata_body()[:-3],                      # cut short
    _header(3, 12) + _metadata_body() + b"x",                    # bytes after it
    _header(3, 12) + b"\x02" + TOPIC_ID.bytes + b"\xff\xff\xff\xff\xff\xff",   # a runaway varint
    _header(3, 12) + b"\x7f",                                    # 126 topics announced, none there
])
def test_frames_off_the_schema_are_malformed(frame):
    with pytest.raises(MalformedTags):
        strip_unknown_tags(frame, MetadataV12)
