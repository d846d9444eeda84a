"""Unmodified Kafka clients against odradek's Kafka listener (issue 13): kcat, kafkajs,
Apache Kafka's Java client and CLI tools, confluent-kafka, kafka-python and aiokafka.

One broker with its listener serves the whole folder (topics are named per test). The
tools come from `make interop-tools` (.cache/interop) and the test extras.

ODRADEK_INTEROP_BOOTSTRAP=host:port points these tests at another Kafka-protocol broker
instead, such as a real Apache Kafka (shared/tools/kafka-peer): a test that fails there
is a wrong test, not a gap of odradek's.
"""
import os
import uuid

import pytest

from support.broker import BrokerProcess, stop_cleanly


# A new group's first rebalance waits group.initial.rebalance.delay.ms (3 s) for more
# members; these tests start one member at a time, so they run with none (as Kafka's
# quickstart config does).
NO_GROUP_DELAY = ["--override", "group.initial.rebalance.delay.ms=0"]


@pytest.fixture(scope="session")
def odradek_broker(tmp_path_factory):
    """The odradek broker, with its listener, that serves this folder."""
    broker = BrokerProcess(tmp_path_factory.mktemp("interop") / "data", listener=True, args=NO_GROUP_DELAY).start()
    try:
        yield broker
    finally:
        stop_cleanly(broker)


@pytest.fixture(scope="session")
def bootstrap(request):
    """host:port of the Kafka listener under test."""
    other = os.environ.get("ODRADEK_INTEROP_BOOTSTRAP")
    if other:
        return other
    return f"127.0.0.1:{request.getfixturevalue('odradek_broker').kafka_port()}"


@pytest.fixture
def topic_name(request):
    """A topic name of this test's own."""
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"
