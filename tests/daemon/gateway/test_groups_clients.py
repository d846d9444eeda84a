"""Consumer groups through the gateway with unmodified Kafka clients (kafka-python and
confluent-kafka): two members share a topic and rebalance, a group commits and a new
member resumes from the commit, and a Kafka consumer shares a group with odradek's own
Consumer. The records come from odradek's Producer on the Unix socket, the committed
offsets are checked with odradek's Admin: one set of groups for both kinds of client.

These clients need Metadata, ListOffsets and Fetch besides the group APIs."""
import threading
import uuid

import pytest

from odradek.client import Admin, Consumer, Producer
from support.broker import wait_until
from support.group_gateway import group_gateway

for _module in ("metadata_api", "offsets_api", "fetch"):     # gw-data's part of issue 13
    pytest.importorskip(f"odradek.daemon.gateway.{_module}", reason=f"the gateway has no {_module} yet")

kafka = pytest.importorskip("kafka")

PARTITIONS = 4


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with group_gateway(tmp_path_factory.mktemp("gw")) as gw:
        yield gw


@pytest.fixture
def topic(gateway):
    """A new topic of PARTITIONS partitions with 10 records in each (values p<partition>-<i>)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    with Admin(gateway.broker.socket_path) as admin:
        admin.create_topic(name, num_partitions=PARTITIONS)
    produce(gateway, name, range(10))
    return name


def produce(gateway, topic, numbers):
    with Producer({"socket": gateway.broker.socket_path, "linger.ms": 1}) as p:
        for i in numbers:
            for partition in range(PARTITIONS):
                p.produce(topic, b"p%d-%d" % (partition, i), partition=partition)
        assert p.flush(10) == 0


def committed(gateway, group):
    with Admin(gateway.broker.socket_path) as admin:
        return {tp: value[0] for tp, value in admin.list_group_offsets(group).items()}


class Poller:
    """Polls a consumer on a thread of its own (a Kafka consumer is single-threaded) and
    keeps its assignment and every value it got; `run(fn)` calls fn(consumer) on that thread.
    Leaving its `with` block closes the consumer."""

    def __init__(self, consumer, poll, assignment):
        self.consumer, self._poll, self._assignment = consumer, poll, assignment
        self.owned, self.values = set(), []
        self._calls, self._stop = [], threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop.is_set():
            self.values.extend(self._poll(self.consumer))
            self.owned = self._assignment(self.consumer)
            while self._calls:
                fn, done, out = self._calls.pop(0)
                out.append(fn(self.consumer))
                done.set()

    def run(self, fn, timeout=10):
        done, out = threading.Event(), []
        self._calls.append((fn, done, out))
        assert done.wait(timeout), "the consumer thread did not run the call"
        return out[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Stop polling, close the consumer."""
        self._stop.set()
        self.thread.join(10)
        self.consumer.close()


# ---- kafka-python and confluent-kafka consumers --------------------------------------------

def kafka_python(gateway, group, topic):
    """A kafka-python KafkaConsumer in `group`, subscribed to `topic`, on a Poller."""
    c = kafka.KafkaConsumer(bootstrap_servers=gateway.bootstrap, group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False, session_timeout_ms=10_000, heartbeat_interval_ms=200,
                            client_id=f"kp-{group}")
    c.subscribe([topic])
    return Poller(c, lambda c: [r.value for rs in c.poll(100).values() for r in rs],
                  lambda c: {(tp.topic, tp.partition) for tp in c.assignment()})


def confluent(gateway, group, topic):
    """A confluent-kafka Consumer in `group`, subscribed to `topic`, on a Poller."""
    ck = pytest.importorskip("confluent_kafka")
    c = ck.Consumer({"bootstrap.servers": gateway.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 10_000, "heartbeat.interval.ms": 200,
                     "client.id": f"ck-{group}"})
    c.subscribe([topic])

    def poll(c):
        m = c.poll(0.1)
        return [m.value()] if m is not None and m.error() is None else []
    return Poller(c, poll, lambda c: {(tp.topic, tp.partition) for tp in c.assignment()})


# (make a consumer on a Poller, commit what it consumed: a call for Poller.run)
CLIENTS = {"kafka-python": (kafka_python, lambda c: c.commit()),
           "confluent-kafka": (confluent, lambda c: c.commit(asynchronous=False))}


@pytest.mark.parametrize("client", CLIENTS)
def test_two_members_rebalance_and_share_the_records(gateway, topic, client):
    make, _ = CLIENTS[client]
    group = f"pair-{topic}"
    with make(gateway, group, topic) as first:
        wait_until(lambda: len(first.owned) == PARTITIONS, 30, 0.05, "the first member to own every partition")
        with make(gateway, group, topic) as second:
            wait_until(lambda: len(first.owned) == len(second.owned) == PARTITIONS // 2, 30, 0.05, "a rebalance")
            assert first.owned.isdisjoint(second.owned)
            wait_until(lambda: len(set(first.values) | set(second.values)) == 10 * PARTITIONS, 20, 0.05,
                       "every record")


@pytest.mark.parametrize("client", CLIENTS)
def test_a_group_commits_and_a_new_member_resumes(gateway, topic, client):
    make, commit = CLIENTS[client]
    group = f"resume-{topic}"
    with make(gateway, group, topic) as first:
        wait_until(lambda: len(first.values) == 10 * PARTITIONS, 30, 0.05, "the first 10 records of each partition")
        first.run(commit)
    assert committed(gateway, group) == {(topic, p): 10 for p in range(PARTITIONS)}
    produce(gateway, topic, range(10, 15))
    with make(gateway, group, topic) as second:
        wait_until(lambda: len(second.values) == 5 * PARTITIONS, 30, 0.05, "the 5 new records of each partition")
        assert sorted(second.values) == sorted(b"p%d-%d" % (p, i) for p in range(PARTITIONS) for i in range(10, 15))


def test_a_kafka_python_consumer_and_an_odradek_consumer_share_a_group(gateway, topic):
    group = f"mixed-{topic}"
    ours = Consumer({"socket": gateway.broker.socket_path, "group.id": group, "heartbeat.interval.ms": 100,
                     "session.timeout.ms": 10_000, "auto.offset.reset": "earliest",
                     "partition.assignment.strategy": "range"})
    ours.subscribe([topic])
    with Poller(ours, lambda c: [bytes(r.value()) for r in filter(None, [c.poll(0.05)])],
                lambda c: {(tp.topic, tp.partition) for tp in c.assignment()}) as odradek:
        wait_until(lambda: len(odradek.owned) == PARTITIONS, 20, 0.05, "the odradek Consumer to own every partition")
        with kafka_python(gateway, group, topic) as theirs:
            wait_until(lambda: len(odradek.owned) == len(theirs.owned) == PARTITIONS // 2, 20, 0.05, "a rebalance")
            assert odradek.owned.isdisjoint(theirs.owned)


# ---- admin clients -------------------------------------------------------------------------

def test_kafka_admin_clients_see_and_change_odradek_groups(gateway, topic):
    """Offsets committed by odradek's Admin are listed, altered and deleted through
    kafka-python's KafkaAdminClient and confluent-kafka's AdminClient, and the reverse."""
    from kafka.structs import OffsetAndMetadata as KafkaOffset
    from kafka.structs import TopicPartition as KafkaTP
    group = f"admin-{topic}"
    with Admin(gateway.broker.socket_path) as admin:
        admin.alter_group_offsets(group, {(topic, 0): 5})
    kp = kafka.KafkaAdminClient(bootstrap_servers=gateway.bootstrap)
    try:
        listed = {g["group_id"]: g for g in kp.list_groups(states_filter=["Empty"])}
        assert listed[group]["group_state"] == "Empty"
        assert kp.describe_groups([group])[group]["group_state"] == "Empty"
        assert {tp.partition: o.offset for tp, o in kp.list_group_offsets({group: None})[group].items()} == {0: 5}
        kp.alter_group_offsets(group, {KafkaTP(topic, 1): KafkaOffset(9, "", -1)})
        assert committed(gateway, group) == {(topic, 0): 5, (topic, 1): 9}
        kp.delete_group_offsets(group, [KafkaTP(topic, 0)])            # OffsetDelete
        assert committed(gateway, group) == {(topic, 1): 9}
    finally:
        kp.close()
    ck = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": gateway.bootstrap})
    offsets = admin.list_consumer_group_offsets([ck.ConsumerGroupTopicPartitions(group)])[group].result()
    assert [(tp.partition, tp.offset) for tp in offsets.topic_partitions] == [(1, 9)]
    assert admin.describe_consumer_groups([group])[group].result().state == ck.ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group], request_timeout=10)[group].result()
    assert committed(gateway, group) == {}
    with pytest.raises(ck.KafkaException, match="GROUP_ID_NOT_FOUND"):
        admin.delete_consumer_groups([group], request_timeout=10)[group].result()
