"""The public surface of odradek.client, pinned: applications code against these names,
and each lives where users look for it (message types in message.py, errors in errors.py)."""
import odradek.client as client
from odradek.client import consumer, errors, message, producer

EXPECTED = [
    "errors", "OdradekError", "Admin", "Producer", "Consumer", "Record", "TopicPartition",
    "OffsetAndMetadata", "GroupMetadata", "MaxPollIntervalExceeded", "IllegalState", "TransactionAborted",
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
    for name in ["MaxPollIntervalExceeded", "IllegalState", "TransactionAborted"]:
        assert getattr(client, name) is getattr(errors, name), name
        assert name in errors.__all__
    assert client.Consumer is consumer.Consumer and client.Producer is producer.Producer


def test_max_poll_interval_exceeded_is_an_odradek_error_that_never_goes_on_the_wire():
    e = client.MaxPollIntervalExceeded("slow")
    assert isinstance(e, client.OdradekError) and e.retriable and e.name == "MAX_POLL_INTERVAL_EXCEEDED"
    assert errors.error_for_code(e.code) is errors.UnknownServerError


def test_offset_and_metadata_compares_equal_to_its_topic_partition():
    om = client.OffsetAndMetadata("t", 1, 5, "ckpt")
    assert om == client.TopicPartition("t", 1, 5) and om.metadata == "ckpt"
    assert client.GroupMetadata("g", 3, "m-1", None).generation_id == 3


def test_client_side_transaction_errors_never_go_on_the_wire():
    for cls in (client.IllegalState, client.TransactionAborted):
        e = cls("misused")
        assert isinstance(e, client.OdradekError) and not (e.retriable or e.fatal or e.txn_requires_abort)
        assert errors.error_for_code(e.code) is errors.UnknownServerError


def test_an_errors_classification_flags_default_to_its_class_and_can_be_set_per_instance():
    fenced = errors.ProducerFenced("newer instance", fatal=True)
    assert fenced.fatal and not errors.ProducerFenced("x").fatal and not errors.ProducerFenced.fatal
    timed_out = errors.RequestTimedOut("commit", retriable=False, txn_requires_abort=True)
    assert not timed_out.retriable and timed_out.txn_requires_abort and errors.RequestTimedOut("x").retriable
