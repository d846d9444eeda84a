"""The public surface of odradek.client, pinned: applications code against these names,
and each lives where users look for it (message types in message.py, errors in errors.py)."""
import pickle

import pytest

import odradek.client as client
from odradek.client import consumer, errors, message, producer

EXPECTED = [
    "errors", "KafkaError", "KafkaException", "OdradekError", "Admin", "Producer", "Consumer", "Record",
    "TopicPartition", "OffsetAndMetadata", "GroupMetadata", "MaxPollIntervalExceeded", "IllegalState",
    "TransactionAborted", "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "TIMESTAMP_NOT_AVAILABLE",
    "TIMESTAMP_CREATE_TIME", "TIMESTAMP_LOG_APPEND_TIME",
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
    for name in ["KafkaError", "KafkaException", "MaxPollIntervalExceeded", "IllegalState", "TransactionAborted"]:
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


def test_an_odradek_error_is_a_kafka_exception_whose_first_arg_is_a_live_kafka_error():
    e = errors.UnknownTopicOrPartition("no topic 'x'")
    assert isinstance(e, client.KafkaException) and isinstance(e.args[0], client.KafkaError)
    kerr = e.args[0]
    assert (kerr.code(), kerr.name(), kerr.str()) == (3, "UNKNOWN_TOPIC_OR_PARTITION", "no topic 'x'")
    assert kerr == client.KafkaError.UNKNOWN_TOPIC_OR_PART == client.KafkaError.UNKNOWN_TOPIC_OR_PARTITION == 3
    assert kerr.retriable() and not kerr.fatal() and not kerr.txn_requires_abort()
    e.retriable, e.txn_requires_abort = False, True            # as the transactional producer sets them
    assert not kerr.retriable() and kerr.txn_requires_abort()
    assert str(e) == "UNKNOWN_TOPIC_OR_PARTITION: no topic 'x'"
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is type(e) and again.txn_requires_abort and again.args[0].str() == "no topic 'x'"


def test_kafka_error_and_exception_have_confluent_kafkas_shape_and_codes():
    confluent = pytest.importorskip("confluent_kafka")
    for name in ("_PARTITION_EOF", "_STATE", "_MAX_POLL_EXCEEDED", "_PURGE_QUEUE", "_TIMED_OUT", "_FENCED",
                 "UNKNOWN_TOPIC_OR_PART", "NOT_LEADER_FOR_PARTITION", "MSG_SIZE_TOO_LARGE", "PRODUCER_FENCED",
                 "INVALID_TXN_STATE", "CONCURRENT_TRANSACTIONS", "NO_ERROR", "UNKNOWN"):
        assert getattr(client.KafkaError, name) == getattr(confluent.KafkaError, name), name
    ours = client.KafkaError(47, "old epoch", fatal=True, txn_requires_abort=True)
    theirs = confluent.KafkaError(47, "old epoch", fatal=True, txn_requires_abort=True)
    for method in ("code", "str", "fatal", "retriable", "txn_requires_abort"):
        assert getattr(ours, method)() == getattr(theirs, method)(), method
    assert ours == 47 and hash(ours) == hash(theirs)
    raised = client.KafkaException(ours)
    assert raised.args[0] is ours and client.KafkaException(47).args[0] == 47
    assert [errors.MaxPollIntervalExceeded().args[0].code(), errors.IllegalState().args[0].code(),
            errors.TransactionAborted().args[0].code()] == [confluent.KafkaError._MAX_POLL_EXCEEDED,
                                                            confluent.KafkaError._STATE,
                                                            confluent.KafkaError._PURGE_QUEUE]


def test_the_producer_takes_librdkafkas_name_for_its_key_hashing_and_refuses_the_others():
    with pytest.raises(errors.InvalidConfig, match="partitioner='consistent_random'.*murmur2_random"):
        client.Producer({"partitioner": "consistent_random", "socket": "/nonexistent"})
    with pytest.raises(errors.NetworkException):     # murmur2_random is accepted: the missing socket fails
        client.Producer({"partitioner": "murmur2_random", "socket": "/nonexistent"})
