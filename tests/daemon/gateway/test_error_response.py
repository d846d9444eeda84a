"""Kafka's whole-request error answer (error_response.py): one can be built and encoded for
every request kio knows, with the code at the top and mirrored per entry."""
from dataclasses import fields

from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic

from odradek.daemon.gateway.codec import ErrorCode, UnsupportedRequest, build, encode_response, request_class
from odradek.daemon.gateway.error_response import error_response


def _known():
    for key in range(0, 100):
        for version in range(0, 25):
            try:
                yield key, version, request_class(key, version)
            except UnsupportedRequest:
                continue


KNOWN = list(_known())


def test_every_request_kio_knows_has_an_error_answer():
    assert len(KNOWN) > 250
    for key, version, cls in KNOWN:
        response = error_response(key, version, ErrorCode.unsupported_version, build(cls, {}))
        assert encode_response(7, response)[4:8] == b"\0\0\0\7"
        if "error_code" in {f.name for f in fields(response)}:
            assert response.error_code == ErrorCode.unsupported_version, (key, version)


def test_entries_mirror_the_request():
    request = MetadataRequest(topics=(MetadataRequestTopic(topic_id=None, name="a"),
                                      MetadataRequestTopic(topic_id=None, name="b")),
                              allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    response = error_response(3, 12, ErrorCode.unknown_server_error, request, "internal error: x")
    assert [(t.name, t.error_code) for t in response.topics] == [("a", ErrorCode.unknown_server_error),
                                                                  ("b", ErrorCode.unknown_server_error)]

