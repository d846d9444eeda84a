"""The gateway's codec: what it accepts that kio alone would not."""
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
