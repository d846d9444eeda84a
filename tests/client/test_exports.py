"""The public surface of odradek.client, pinned: applications code against these names,
and each lives where users look for it (message types in message.py, errors in errors.py)."""
import odradek.client as client
from odradek.client import consumer, errors, message, producer

EXPECTED = [
    "errors", "OdradekError", "Admin", "Producer", "Consumer", "Record", "TopicPartition",
    "OffsetAndMetadata", "GroupMetadata", "MaxPollIntervalExceeded",
    "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID",
]


def test_all_lists_exactly_the_public_names():
    assert client.__all__ == EXPECTED


def test_every_public_name_is_importable_from_the_package():
    for name in client.__all__:
        assert getattr(client, name) is not None, name


def test_each_public_type_is_defined_where_users_look_for_it():
    for name in ["Record", "TopicPartition", "OffsetAndMetadata", "GroupMetadata"]:
        assert getattr(client, name) is getattr(message, name), name
        assert name in message.__all__
    assert client.MaxPollIntervalExceeded is errors.MaxPollIntervalExceeded
    assert "MaxPollIntervalExceeded" in errors.__all__
    assert client.Consumer is consumer.Consumer and client.Producer is producer.Producer


def test_max_poll_interval_exceeded_is_an_odradek_error_that_never_goes_on_the_wire():
    e = client.MaxPollIntervalExceeded("slow")
    assert isinstance(e, client.OdradekError) and e.retriable and e.name == "MAX_POLL_INTERVAL_EXCEEDED"
    assert errors.error_for_code(e.code) is errors.UnknownServerError


def test_offset_and_metadata_compares_equal_to_its_topic_partition():
    om = client.OffsetAndMetadata("t", 1, 5, "ckpt")
    assert om == client.TopicPartition("t", 1, 5) and om.metadata == "ckpt"
    assert client.GroupMetadata("g", 3, "m-1", None).generation_id == 3
