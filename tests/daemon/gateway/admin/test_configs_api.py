"""Configs through the gateway, raw Kafka requests at the lowest and highest version
served: DescribeConfigs (topics, the broker, synonyms, documentation), AlterConfigs
(full replacement), IncrementalAlterConfigs (SET, DELETE, APPEND/SUBTRACT on list
configs); what they change is what Admin sees, and the reverse."""
import pytest
from kio.schema.errors import ErrorCode

from support.admin_gateway import request, versions

DESCRIBE_CONFIGS, ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 32, 33, 44
TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5


BROKER_ARGS = ["--override", "log.retention.ms=7200000"]


def describe(wire, version, *resources, synonyms=False, documentation=False):
    return wire.call(request(DESCRIBE_CONFIGS, version, include_synonyms=synonyms,
                             include_documentation=documentation, resources=[
                                 dict(resource_type=t, resource_name=n, configuration_keys=keys)
                                 for t, n, keys in resources])).results


@pytest.mark.parametrize("version", versions(DESCRIBE_CONFIGS))
def test_describe_configs_of_a_topic_with_sources_synonyms_and_docs(wire, admin, version):
    name = f"described-v{version}"
    admin.create_topic(name, 1, config={"retention.ms": 60000})
    (r,) = describe(wire, version, (TOPIC, name, None), synonyms=True, documentation=True)
    assert (r.error_code, r.resource_type, r.resource_name) == (ErrorCode.none, TOPIC, name)
    configs = {c.name: c for c in r.configs}
    assert set(configs) == set(admin.describe_configs(name))
    retention = configs["retention.ms"]
    assert (retention.value, retention.config_source, retention.read_only, retention.is_sensitive) == (
        "60000", TOPIC_CONFIG, False, False)
    assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
        ("retention.ms", "60000", TOPIC_CONFIG), ("log.retention.ms", "7200000", STATIC_BROKER_CONFIG),
        ("log.retention.ms", "604800000", DEFAULT_CONFIG)]
    assert configs["segment.bytes"].config_source == DEFAULT_CONFIG
    assert configs["acks.all.fsync"].value == "false"
    if version >= 3:
        assert (retention.config_type, configs["cleanup.policy"].config_type,
                configs["acks.all.fsync"].config_type) == (5, 7, 1)        # LONG, LIST, BOOLEAN
        assert retention.documentation
    (only,) = describe(wire, version, (TOPIC, name, ["cleanup.policy", "no.such.config"]))
    assert [c.name for c in only.configs] == ["cleanup.policy"]            # unknown keys left out, as Kafka
    assert only.configs[0].synonyms == ()


@pytest.mark.parametrize("version", versions(DESCRIBE_CONFIGS))
def test_describe_configs_of_the_broker_and_errors(wire, version):
    results = describe(wire, version, (BROKER, "0", ["num.partitions", "log.retention.ms"]), (BROKER, "", None),
                       (BROKER, "7", None), (TOPIC, "never-was", None), (BROKER_LOGGER, "0", None))
    node, cluster, other, unknown, logger = results
    assert node.error_code == ErrorCode.none
    assert {c.name: (c.value, c.config_source, c.read_only) for c in node.configs} == {
        "num.partitions": ("8", DEFAULT_CONFIG, True), "log.retention.ms": ("7200000", STATIC_BROKER_CONFIG, True)}
    assert (cluster.error_code, cluster.configs) == (ErrorCode.none, ())   # no dynamic cluster defaults
    assert other.error_code == ErrorCode.invalid_request and other.error_message
    assert unknown.error_code == ErrorCode.unknown_topic_or_partition
    assert logger.error_code == ErrorCode.invalid_request


def incremental(wire, version, name, *ops, validate_only=False, resource_type=TOPIC):
    (r,) = wire.call(request(INCREMENTAL_ALTER_CONFIGS, version, validate_only=validate_only, resources=[
        dict(resource_type=resource_type, resource_name=name, configs=[
            dict(name=k, config_operation=op, value=v) for k, op, v in ops])])).responses
    return r


@pytest.mark.parametrize("version", versions(INCREMENTAL_ALTER_CONFIGS))
def test_incremental_alter_configs_set_delete_append_subtract(wire, admin, version):
    name = f"altered-v{version}"
    admin.create_topic(name, 1, config={"retention.ms": 60000})
    r = incremental(wire, version, name, ("retention.ms", DELETE, None), ("segment.ms", SET, "3600000"))
    assert (r.error_code, r.resource_name) == (ErrorCode.none, name)
    configs = admin.describe_configs(name)
    assert configs["retention.ms"] == ("7200000", "broker") and configs["segment.ms"] == ("3600000", "topic")
    assert incremental(wire, version, name, ("cleanup.policy", APPEND, "compact")).error_code == ErrorCode.none
    assert admin.describe_configs(name)["cleanup.policy"] == ("delete,compact", "topic")
    assert incremental(wire, version, name, ("cleanup.policy", SUBTRACT, "delete")).error_code == ErrorCode.none
    assert admin.describe_configs(name)["cleanup.policy"] == ("compact", "topic")
    refused = [incremental(wire, version, name, ("retention.ms", APPEND, "5")),      # not a list config
               incremental(wire, version, name, ("retention.ms", SET, "1"), ("retention.ms", DELETE, None)),
               incremental(wire, version, name, ("num.partitions", SET, "3"), resource_type=BROKER)]
    assert [r.error_code for r in refused] == [ErrorCode.invalid_request] * 3
    r = incremental(wire, version, name, ("retention.ms", SET, "soon"))
    assert r.error_code == ErrorCode.invalid_config and "retention.ms" in r.error_message
    assert incremental(wire, version, "never-was", ("retention.ms", SET, "1")).error_code == \
        ErrorCode.unknown_topic_or_partition
    r = incremental(wire, version, name, ("segment.ms", SET, "1000"), validate_only=True)
    assert r.error_code == ErrorCode.none and admin.describe_configs(name)["segment.ms"] == ("3600000", "topic")


@pytest.mark.parametrize("version", versions(ALTER_CONFIGS))
def test_alter_configs_replaces_every_override(wire, admin, version):
    name = f"replaced-v{version}"
    admin.create_topic(name, 1, config={"retention.ms": 60000, "segment.ms": 3600000})

    def alter(resource_name, configs, validate_only=False, resource_type=TOPIC):
        (r,) = wire.call(request(ALTER_CONFIGS, version, validate_only=validate_only, resources=[
            dict(resource_type=resource_type, resource_name=resource_name,
                 configs=[dict(name=k, value=v) for k, v in configs])])).responses
        return r

    r = alter(name, [("max.message.bytes", "2000000")], validate_only=True)
    assert r.error_code == ErrorCode.none and admin.describe_configs(name)["retention.ms"] == ("60000", "topic")
    r = alter(name, [("max.message.bytes", "2000000"), ("segment.ms", "7200000")])
    assert (r.error_code, r.resource_name) == (ErrorCode.none, name)
    overrides = {k: v for k, (v, src) in admin.describe_configs(name).items() if src == "topic"}
    assert overrides == {"max.message.bytes": "2000000", "segment.ms": "7200000"}     # retention.ms went
    assert alter(name, [("retention.ms", None)]).error_code == ErrorCode.invalid_request
    assert alter(name, [("retention.ms", "1"), ("retention.ms", "2")]).error_code == ErrorCode.invalid_request
    assert alter(name, [("retention.ms", "soon")]).error_code == ErrorCode.invalid_config
    assert alter("never-was", []).error_code == ErrorCode.unknown_topic_or_partition
    assert alter("0", [("num.partitions", "2")], resource_type=BROKER).error_code == ErrorCode.invalid_request
    assert {k: v for k, (v, src) in admin.describe_configs(name).items() if src == "topic"} == overrides
    assert alter(name, []).error_code == ErrorCode.none
    assert all(src != "topic" for _, src in admin.describe_configs(name).values())


def test_a_config_set_by_admin_is_described_over_kafka(wire, admin):
    admin.create_topic("shared-configs", 1)
    admin.alter_configs("shared-configs", {"retention.bytes": 123456789})
    (r,) = describe(wire, 4, (TOPIC, "shared-configs", ["retention.bytes"]))
    assert [(c.name, c.value, c.config_source) for c in r.configs] == [("retention.bytes", "123456789", TOPIC_CONFIG)]
