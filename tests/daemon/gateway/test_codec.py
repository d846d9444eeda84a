"""The gateway's codec: what it accepts that kio alone would not; the layouts it loads
kept out of the cyclic collector's way."""
import subprocess
import sys

from odradek.daemon.gateway.codec import decode_request

# librdkafka 2.16's Metadata v13 request for all topics (AdminClient.list_topics), as sent:
# header v2 (key 3, v13, correlation id 3, client "rdkafka", no tags), then topics null,
# allow_auto_topic_creation false, include_topic_authorized_operations false, no tags,
# and three bytes more, which Kafka's parser ignores.
LIBRDKAFKA_METADATA_V13 = bytes.fromhex("0003000d00000003000772646b61666b610000000000010000")


def test_bytes_after_the_body_are_ignored_as_kafka_does():
    request = decode_request(LIBRDKAFKA_METADATA_V13)
    assert (request.api_key, request.api_version, request.correlation_id) == (3, 13, 3)
    assert request.body.topics is None and request.trailing == 3


FROZEN_PROBE = """
import gc, sys
from odradek.daemon.gateway import codec
codec.freeze_layouts()
request = codec.decode_request(bytes.fromhex(sys.argv[1]))          # a layout first used now
answer = codec.build(codec.response_class(3, 13), throttle_time=0, brokers=[], cluster_id=None,
                     controller_id=0, topics=[])
codec.encode_response(request.correlation_id, answer)
tracked = {id(o) for o in gc.get_objects()}
made = [type(request.body), codec.response_class(3, 13), codec._readers[type(request.body)],
        codec._writers[codec.response_class(3, 13)]]
print(sum(id(o) in tracked for o in made), gc.get_freeze_count() > 10_000)
"""


def test_layouts_loaded_while_serving_are_out_of_the_collectors_way():
    """freeze_layouts (the gateway process calls it at start): kio's classes, readers and
    writers made for a request are frozen as they are made, so a full collection never
    walks them (tens of milliseconds otherwise). In a process of its own: freezing is
    for the whole process."""
    out = subprocess.run([sys.executable, "-c", FROZEN_PROBE, LIBRDKAFKA_METADATA_V13.hex()], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == ["0", "True"]
