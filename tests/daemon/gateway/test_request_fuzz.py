"""Well-framed but hostile requests through the broker's own listener (support/kafka_fuzz.py):
every one answered (or its connection closed) with an answer that decodes, no gateway
bug, no restart, and another client answered throughout. Then the defects such requests
found, one regression test each."""
import threading
import time
import uuid

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.errors import ErrorCode

from odradek.client.admin import Admin
from support.broker import stop_cleanly, wait_until
from support.gateway import KafkaWire, listener_broker
from support.records import make_batch
from support.kafka_fuzz import Fuzzer, kio_request
from support.kafka_fuzz_campaign import Campaign, health, set_up

SEEDS = [11, 12, 13]
REQUESTS_PER_SEED = 500
ANSWER_S = 10.0     # "a hang": no answer in that time (kafka_fuzz_campaign.ANSWER_S: 8 s by hand)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = listener_broker(tmp_path_factory.mktemp("fuzz") / "data", **{"group.initial.rebalance.delay.ms": 0})
    yield b
    stop_cleanly(b)


@pytest.fixture
def healthy(broker):
    """The broker's health must hold after the test: no gateway bug or Traceback in its
    log, no restart, no illegal topic name, the listener answering."""
    yield broker
    assert health(broker) == []


def _bystander(port, topic, stop, answered, failures):
    """Another client: ApiVersions (the gateway alone) and Metadata (the broker behind it)
    in turn, until `stop`, each to be answered within a few seconds."""
    with KafkaWire(port, timeout=5) as wire:
        while not stop.wait(0.05):
            try:
                assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none
                meta = wire.call(kio_request(3, 12, topics=[dict(name=topic)], allow_auto_topic_creation=False))
                assert [t.name for t in meta.topics] == [topic]
                answered.append(True)
            except Exception as e:       # reported in the test's thread
                failures.append(e)
                return


@pytest.mark.parametrize("seed", SEEDS)
def test_hostile_requests_are_answered_and_break_nothing(healthy, seed):
    """REQUESTS_PER_SEED requests of a seed; the last seed also checks that a refused
    state-changing request changed nothing (Campaign's refusals)."""
    known = set_up(healthy)
    stop, answered, failures = threading.Event(), [], []
    other = threading.Thread(target=_bystander, args=(healthy.port, known.topic, stop, answered, failures),
                             daemon=True)
    other.start()
    campaign = Campaign(healthy.port, timeout=ANSWER_S, refusals=seed == SEEDS[-1])
    try:
        findings = campaign.run(Fuzzer(seed, known), range(REQUESTS_PER_SEED))
    finally:
        campaign.close()
        stop.set()
        other.join(10)
    assert not findings, "\n".join(map(str, findings))
    assert campaign.sent == REQUESTS_PER_SEED and sum(campaign.served.values()) > REQUESTS_PER_SEED // 10
    assert not failures, f"the other client was not answered: {failures}"
    assert answered


def _call(broker, key, version, **values):
    with KafkaWire(broker.port, timeout=5) as wire:
        return wire.call(kio_request(key, version, **values))


def test_fetch_by_the_zero_topic_id_is_unknown_topic_id(healthy):
    """kio reads the zero uuid as None: the answer (fetch_answer.py) wrote None's bytes."""
    answer = _call(healthy, 1, 13, max_wait=0, min_bytes=0, max_bytes=1024, session_epoch=-1, topics=[
        dict(topic_id=uuid.UUID(int=0), partitions=[dict(partition=0, fetch_offset=0, partition_max_bytes=1024)])])
    assert answer.error_code == ErrorCode.none
    assert [p.error_code for t in answer.responses for p in t.partitions] == [ErrorCode.unknown_topic_id]


@pytest.mark.parametrize("topic", [dict(name=None), dict(name="fuzz-topic", topic_id=uuid.uuid4())])
def test_metadata_before_v12_answers_topics_by_id_invalid_request(healthy, topic):
    """A null name (v10+ may carry one) or a topic id before v12: Kafka answers each topic
    INVALID_REQUEST and the connection goes on. It was a response with a null name the
    v10/v11 layout cannot carry: no answer, the connection thread dead."""
    with KafkaWire(healthy.port, timeout=5) as wire:
        answer = wire.call(kio_request(3, 11, topics=[topic]))
        assert [t.error_code for t in answer.topics] == [ErrorCode.invalid_request]
        assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none


def test_create_topics_with_a_null_config_value_is_invalid_config(healthy):
    """Kafka's INVALID_CONFIG; the topic was created, the null read as the default."""
    answer = _call(healthy, 19, 7, timeout_ms=5000, topics=[dict(
        name="null-config", num_partitions=1, replication_factor=1, configs=[dict(name="retention.ms", value=None)])])
    assert [t.error_code for t in answer.topics] == [ErrorCode.invalid_config]
    meta = _call(healthy, 3, 12, topics=[dict(name="null-config")], allow_auto_topic_creation=False)
    assert [t.error_code for t in meta.topics] == [ErrorCode.unknown_topic_or_partition]


def test_metadata_by_the_zero_topic_id_is_unknown_topic_id(healthy):
    answer = _call(healthy, 3, 12, topics=[dict(name=None, topic_id=uuid.UUID(int=0))])
    assert [(t.error_code, t.name) for t in answer.topics] == [(ErrorCode.unknown_topic_id, None)]


def test_describe_transactions_of_an_unknown_id_decodes(healthy):
    """The broker's -1 start time was passed on for an id it does not know (Kafka's is 0):
    kio cannot read a negative timestamp."""
    answer = _call(healthy, 65, 0, transactional_ids=["no-such-txn"])
    assert [t.error_code for t in answer.transaction_states] == [ErrorCode.transactional_id_not_found]


def test_produce_to_a_deleted_topic_is_unknown_at_once_not_at_its_timeout(healthy):
    """The gateway's ring to the deleted partition never completed: REQUEST_TIMED_OUT after
    the request's whole timeout (30 s for Kafka's clients), on every connection."""
    batch = make_batch([b"doomed"])
    produce = kio_request(0, 9, acks=-1, timeout=5000, topic_data=[
        dict(name="doomed", partition_data=[dict(index=0, records=batch)])])
    with KafkaWire(healthy.port, timeout=10) as wire:
        wire.call(kio_request(19, 7, timeout_ms=5000, topics=[dict(name="doomed", num_partitions=1,
                                                                   replication_factor=1)]))
        assert wire.call(produce).responses[0].partition_responses[0].error_code == ErrorCode.none
        wire.call(kio_request(20, 6, timeout=5000, topics=[dict(name="doomed", topic_id=None)]))
        with Admin(healthy.socket_path) as admin:     # its worker may complete a batch until it exits
            wait_until(lambda: not [w for w in admin.status().workers if w.topic == "doomed"], 10,
                       what="the deleted partition's worker to exit")
        started = time.monotonic()
        answer = wire.call(produce)
        assert answer.responses[0].partition_responses[0].error_code == ErrorCode.unknown_topic_or_partition
        assert time.monotonic() - started < 2.5
