"""Topic administration through the gateway, raw Kafka requests at the lowest and highest
version served: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
DescribeLogDirs; what they make is what Admin and `odradek topics describe` see, and the
reverse."""
import uuid

import pytest
from click.testing import CliRunner
from kio.schema.errors import ErrorCode

from odradek.client import Producer
from odradek.daemon.cli import cli
from support.admin_gateway import request, versions
from support.broker import wait_until

CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, DESCRIBE_LOG_DIRS, CREATE_PARTITIONS = 19, 20, 21, 35, 37
ZERO = uuid.UUID(int=0)


def create(wire, version, *topics, validate_only=False):
    return wire.call(request(CREATE_TOPICS, version, topics=list(topics), timeout=5000,
                             validate_only=validate_only)).topics


def topic(name, partitions=-1, replication=-1, configs=None, assignments=()):
    return dict(name=name, num_partitions=partitions, replication_factor=replication, assignments=list(assignments),
                configs=[dict(name=k, value=v) for k, v in (configs or {}).items()])


@pytest.mark.parametrize("version", versions(CREATE_TOPICS))
def test_create_topics_makes_the_topic_admin_sees(wire, admin, version):
    name = f"created-v{version}"
    (r,) = create(wire, version, topic(name, 3, -1, {"retention.ms": "3600000"}))
    assert (r.name, r.error_code, r.error_message) == (name, ErrorCode.none, None)
    described = admin.describe_topic(name)
    assert len(described.partitions) == 3
    assert admin.describe_configs(name)["retention.ms"] == ("3600000", "topic")
    if version >= 5:     # the created topic's shape, configs and id come back
        assert (r.num_partitions, r.replication_factor) == (3, 1)
        configs = {c.name: (c.value, c.config_source) for c in r.configs}
        assert configs["retention.ms"] == ("3600000", 1)         # TOPIC_CONFIG
        assert configs["segment.bytes"][1] == 5                   # DEFAULT_CONFIG
        assert r.topic_id is not None


def test_create_topics_broker_defaults_and_validate_only(wire, admin):
    (r,) = create(wire, 7, topic("only-validated", -1, -1), validate_only=True)
    assert r.error_code == ErrorCode.none and r.num_partitions == 8 and r.topic_id is None   # num.partitions; kio reads the zero UUID as None
    assert "only-validated" not in admin.list_topics()


@pytest.mark.parametrize("version", versions(CREATE_TOPICS))
def test_create_topics_errors_per_topic_with_messages(wire, admin, version):
    admin.create_topic(f"exists-v{version}", 1)
    results = create(wire, version,
                     topic(f"exists-v{version}", 1),
                     topic(f"bad-config-v{version}", 1, -1, {"retention.ms": "soon"}),
                     topic(f"unknown-config-v{version}", 1, -1, {"no.such.config": "1"}),
                     topic(f"no-partitions-v{version}", 0),
                     topic(f"too-many-replicas-v{version}", 1, 5),
                     topic("bad/name", 1),
                     topic(f"assigned-v{version}", 1, -1, assignments=[dict(partition_index=0, broker_ids=[0])]),
                     topic(f"no-such-dir-v{version}", assignments=[dict(partition_index=0, broker_ids=[1])]),
                     topic(f"twice-v{version}", 1), topic(f"twice-v{version}", 1),
                     topic(f"fine-v{version}", 1))
    codes = {r.name: r.error_code for r in results}
    assert codes == {f"exists-v{version}": ErrorCode.topic_already_exists,
                     f"bad-config-v{version}": ErrorCode.invalid_config,
                     f"unknown-config-v{version}": ErrorCode.invalid_config,
                     f"no-partitions-v{version}": ErrorCode.invalid_partitions,
                     f"too-many-replicas-v{version}": ErrorCode.invalid_replication_factor,
                     "bad/name": ErrorCode.invalid_topic_exception,
                     f"assigned-v{version}": ErrorCode.invalid_request,     # a count and assignments
                     f"no-such-dir-v{version}": ErrorCode.invalid_replica_assignment,
                     f"twice-v{version}": ErrorCode.invalid_request,
                     f"fine-v{version}": ErrorCode.none}
    assert all(r.error_message for r in results if r.error_code != ErrorCode.none)
    if version >= 5:
        assert all((r.num_partitions, r.replication_factor) == (-1, -1) for r in results if r.error_code)
    created = admin.list_topics()
    assert f"fine-v{version}" in created
    assert not any(n in created for n in codes if n not in (f"exists-v{version}", f"fine-v{version}"))


@pytest.mark.parametrize("version", versions(CREATE_TOPICS))
def test_create_topics_with_replica_assignments(wire, admin, version):
    """Replica ids are log dir ids (this broker has one: 0); the assignments give the count."""
    (r,) = create(wire, version, topic(f"placed-v{version}", assignments=[
        dict(partition_index=1, broker_ids=[0]), dict(partition_index=0, broker_ids=[0])]))
    assert r.error_code == ErrorCode.none
    assert [(p.partition, p.replicas) for p in admin.describe_topic(f"placed-v{version}").partitions] == [
        (0, [0]), (1, [0])]
    (r,) = create(wire, version, topic(f"gap-v{version}", assignments=[
        dict(partition_index=0, broker_ids=[0]), dict(partition_index=2, broker_ids=[0])]))
    assert r.error_code == ErrorCode.invalid_replica_assignment and "0..1" in r.error_message


@pytest.mark.parametrize("version", versions(DELETE_TOPICS))
def test_delete_topics_by_name_and_unknown(wire, admin, version):
    name = f"doomed-v{version}"
    admin.create_topic(name, 1)
    if version < 6:
        body = dict(topic_names=[name, "never-was"])
    else:
        body = dict(topics=[dict(name=name, topic_id=ZERO), dict(name="never-was", topic_id=ZERO)])
    results = wire.call(request(DELETE_TOPICS, version, timeout=5000, **body)).responses
    assert [(r.name, r.error_code) for r in results] == [
        (name, ErrorCode.none), ("never-was", ErrorCode.unknown_topic_or_partition)]
    assert name not in admin.list_topics()


def test_delete_topics_v6_by_topic_id(wire, admin):
    (made,) = create(wire, 7, topic("doomed-by-id", 1))
    unknown = uuid.uuid4()
    results = wire.call(request(DELETE_TOPICS, 6, timeout=5000, topics=[
        dict(name=None, topic_id=made.topic_id), dict(name=None, topic_id=unknown),
        dict(name="doomed-by-id", topic_id=made.topic_id)])).responses
    assert [(r.name, r.topic_id, r.error_code) for r in results] == [
        ("doomed-by-id", made.topic_id, ErrorCode.none), (None, unknown, ErrorCode.unknown_topic_id),
        ("doomed-by-id", made.topic_id, ErrorCode.invalid_request)]    # a name and an id: one of them
    assert "doomed-by-id" not in admin.list_topics()


def test_a_topic_created_by_admin_is_deleted_over_kafka_and_the_reverse(wire, admin, broker):
    admin.create_topic("from-admin", 2)
    (r,) = wire.call(request(DELETE_TOPICS, 6, timeout=5000, topics=[dict(name="from-admin", topic_id=ZERO)])).responses
    assert r.error_code == ErrorCode.none
    create(wire, 7, topic("from-kafka", 2, -1, {"cleanup.policy": "compact"}))
    out = CliRunner().invoke(cli, ["topics", "describe", "from-kafka", "--socket", broker.socket_path])
    assert out.exit_code == 0, out.output
    assert "PartitionCount: 2" in out.output and "cleanup.policy=compact" in out.output
    admin.delete_topic("from-kafka")
    (again,) = create(wire, 2, topic("from-kafka", 1))
    assert again.error_code == ErrorCode.none


@pytest.mark.parametrize("version", versions(CREATE_PARTITIONS))
def test_create_partitions_grows_a_topic_and_refuses_bad_counts(wire, admin, version):
    name = f"growing-v{version}"
    admin.create_topic(name, 1)
    results = wire.call(request(CREATE_PARTITIONS, version, timeout=5000, validate_only=False, topics=[
        dict(name=name, count=3, assignments=None),
        dict(name="never-was", count=2, assignments=None)])).results
    assert [(r.name, r.error_code) for r in results] == [
        (name, ErrorCode.none), ("never-was", ErrorCode.unknown_topic_or_partition)]
    assert len(admin.describe_topic(name).partitions) == 3
    (r,) = wire.call(request(CREATE_PARTITIONS, version, timeout=5000, validate_only=False, topics=[
        dict(name=name, count=2, assignments=None)])).results
    assert r.error_code == ErrorCode.invalid_partitions and r.error_message
    (r,) = wire.call(request(CREATE_PARTITIONS, version, timeout=5000, validate_only=False, topics=[
        dict(name=name, count=5, assignments=[dict(broker_ids=[0])])])).results
    assert r.error_code == ErrorCode.invalid_replica_assignment                # 2 new partitions, 1 assignment
    (r,) = wire.call(request(CREATE_PARTITIONS, version, timeout=5000, validate_only=False, topics=[
        dict(name=name, count=4, assignments=[dict(broker_ids=[0])])])).results
    assert r.error_code == ErrorCode.none
    (r,) = wire.call(request(CREATE_PARTITIONS, version, timeout=5000, validate_only=True, topics=[
        dict(name=name, count=9, assignments=None)])).results
    assert r.error_code == ErrorCode.none
    assert len(admin.describe_topic(name).partitions) == 4


@pytest.mark.parametrize("version", versions(DELETE_RECORDS))
def test_delete_records_moves_the_log_start_offset(wire, admin, broker, version):
    name = f"trimmed-v{version}"
    admin.create_topic(name, 2)
    with Producer({"socket": broker.socket_path}) as producer:
        for i in range(10):
            producer.produce(name, b"v%d" % i, partition=0)
        producer.flush(10)
    results = wire.call(request(DELETE_RECORDS, version, timeout=5000, topics=[
        dict(name=name, partitions=[dict(partition_index=0, offset=4), dict(partition_index=1, offset=1),
                                    dict(partition_index=7, offset=0)]),
        dict(name="never-was", partitions=[dict(partition_index=0, offset=0)]),
        dict(name="__consumer_offsets", partitions=[dict(partition_index=0, offset=0)])])).topics
    got = {(t.name, p.partition_index): (p.low_watermark, p.error_code) for t in results for p in t.partitions}
    assert got == {(name, 0): (4, ErrorCode.none),
                   (name, 1): (-1, ErrorCode.offset_out_of_range),          # above its high watermark (0)
                   (name, 7): (-1, ErrorCode.unknown_topic_or_partition),
                   ("never-was", 0): (-1, ErrorCode.unknown_topic_or_partition),
                   ("__consumer_offsets", 0): (-1, ErrorCode.invalid_topic_exception)}   # internal, as in Kafka
    assert admin.list_offsets(name, 0, "earliest")[0] == 4
    (t,) = wire.call(request(DELETE_RECORDS, version, timeout=5000, topics=[
        dict(name=name, partitions=[dict(partition_index=0, offset=-1)])])).topics    # -1: the high watermark
    assert t.partitions[0].low_watermark == 10 and admin.list_offsets(name, 0, "earliest")[0] == 10


@pytest.mark.parametrize("version", versions(DESCRIBE_LOG_DIRS))
def test_describe_log_dirs_lists_the_replicas_of_each_dir(wire, admin, version):
    admin.create_topic(f"on-disk-v{version}", 2)
    # a partition whose worker has not answered yet has size -1 (client/log_dirs.py): wait for both
    wait_until(lambda: all(r.size >= 0 for r in admin.describe_log_dirs([f"on-disk-v{version}"])[0].replicas),
               10, interval=0.05, what="both partitions' workers to answer")
    response = wire.call(request(DESCRIBE_LOG_DIRS, version, topics=[
        dict(topic=f"on-disk-v{version}", partitions=[0, 1, 5])]))
    (d,) = response.results
    expected = admin.describe_log_dirs([f"on-disk-v{version}"])[0]
    assert (d.error_code, d.log_dir) == (ErrorCode.none, expected.path)
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in d.topics] == [(f"on-disk-v{version}", [0, 1])]
    assert all(p.partition_size >= 0 and p.offset_lag == 0 and not p.is_future_key for p in d.topics[0].partitions)
    if version >= 4:
        assert d.total_bytes > 0 and 0 <= d.usable_bytes <= d.total_bytes
    everything = wire.call(request(DESCRIBE_LOG_DIRS, version, topics=None)).results[0]
    assert {t.name for t in everything.topics} >= {f"on-disk-v{version}", "__consumer_offsets"}
