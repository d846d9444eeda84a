"""Kafka's config APIs through the gateway: DescribeConfigs, AlterConfigs and
IncrementalAlterConfigs, answered by our broker's DescribeConfigs and
IncrementalAlterConfigs, so a config set through Kafka's protocol is the one `odradek`
and Admin.describe_configs see, and the reverse.

Resources: topics, and this broker as Kafka node NODE_ID (its settings are static:
read-only; altering one is INVALID_REQUEST, as Kafka answers for a setting that is not
dynamic). The broker resource "" (Kafka's cluster-wide dynamic defaults) has no configs.
Other resource types (broker loggers, client metrics, groups) are INVALID_REQUEST.

AlterConfigs (Kafka's deprecated full replacement) becomes one IncrementalAlterConfigs:
SET every config given, DELETE every other topic override the topic has (read just
before: an alteration between the two calls by someone else is overwritten, as with
Kafka's own read-modify-write clients).

Synonyms (DescribeConfigs v1+, include_synonyms) are Kafka's chain for a topic config:
the topic's override, the broker's setting of its default (log.retention.ms for
retention.ms), the built-in default; a broker setting is its own only synonym.
"""
from collections import Counter

from kio.schema.errors import ErrorCode

from odradek.client.errors import OdradekError
from odradek.client.protocol import messages as m
from odradek.client.protocol.messages import ConfigOperation, ConfigResourceType, ConfigSource
from odradek.daemon.broker.config import BROKER_CONFIGS, BROKER_TO_TOPIC
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.codec import respond
from odradek.daemon.gateway.error_codes import error_fields
from odradek.daemon.gateway.metadata_api import NODE_ID
from odradek.daemon.storage.config import LIST_CONFIGS, TOPIC_CONFIGS

__all__ = ["APIS"]

DESCRIBE_CONFIGS, ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 32, 33, 44

# Kafka's ConfigEntry types (DescribeConfigs v3+ config_type)
_BOOLEAN, _STRING, _LONG, _DOUBLE, _LIST = 1, 2, 5, 6, 7
_KIND_TYPES = {bool: _BOOLEAN, str: _STRING, int: _LONG, float: _DOUBLE}
_KEYS = {k.name: k for k in (*TOPIC_CONFIGS, *BROKER_CONFIGS)}
_TOPIC_TO_BROKER = {t: b for b, t in BROKER_TO_TOPIC.items()}


def _config_type(name):
    name = BROKER_TO_TOPIC.get(name, name)      # log.retention.ms is retention.ms's default
    key = _KEYS.get(name)
    if name in LIST_CONFIGS or isinstance(getattr(key, "default", None), tuple):
        return _LIST
    return _KIND_TYPES.get(getattr(key, "kind", None), _STRING)


def _default_text(name):
    default = _KEYS[name].default
    return str(default).lower() if isinstance(default, bool) else str(default)


def _ours(resource_type, resource_name):
    """(our resource type, our name) of a Kafka resource, or an error_fields dict."""
    if resource_type == ConfigResourceType.TOPIC:
        return ConfigResourceType.TOPIC, resource_name
    if resource_type == ConfigResourceType.BROKER and resource_name == str(NODE_ID):
        return ConfigResourceType.BROKER, ""
    if resource_type == ConfigResourceType.BROKER and resource_name == "":
        return error_fields(ErrorCode.invalid_request.value,
                            "there are no cluster-wide dynamic configs: the broker reads its settings from its "
                            "config file at start (odradek serve --config, --override)")
    if resource_type == ConfigResourceType.BROKER:
        return error_fields(ErrorCode.invalid_request.value,
                            f"no broker {resource_name!r} here: this broker is node {NODE_ID}")
    return error_fields(ErrorCode.invalid_request.value,
                        f"resource type {resource_type} is not served: configs of topics and brokers only")


def _duplicate(names):
    counts = Counter(names)
    twice = sorted(n for n, c in counts.items() if c > 1)
    return error_fields(ErrorCode.invalid_request.value, f"duplicate config keys: {', '.join(twice)}") \
        if twice else None


# ---- DescribeConfigs -------------------------------------------------------------------

def describe_configs(ctx, request):
    body = request.body
    synonyms = getattr(body, "include_synonyms", False)
    documentation = getattr(body, "include_documentation", False)
    answers, asked = {}, []
    for i, res in enumerate(body.resources):
        ours = _ours(res.resource_type, res.resource_name)
        if res.resource_type == ConfigResourceType.BROKER and res.resource_name == "":
            answers[i] = {}                          # no dynamic cluster-wide defaults
        elif isinstance(ours, dict):
            answers[i] = ours
        else:
            asked.append((i, m.DescribeConfigsResource(resource_type=ours[0], resource_name=ours[1])))
    broker_entries = {}
    if asked:
        resources = [r for _, r in asked]
        if synonyms:                                 # the broker's settings behind topic defaults
            resources.append(m.DescribeConfigsResource(resource_type=ConfigResourceType.BROKER, resource_name=""))
        try:
            answer = ctx.gateway.links.ask(m.DescribeConfigsRequest(resources=resources,
                                                        include_documentation=documentation))
            results = answer.results
            if synonyms:
                results, (broker,) = results[:-1], results[-1:]
                broker_entries = {c.name: c for c in broker.configs}
            answers.update({i: r for (i, _), r in zip(asked, results)})
        except OdradekError as e:
            answers.update({i: error_fields(e) for i, _ in asked})
    out = []
    for i, res in enumerate(body.resources):
        r = answers[i]
        base = dict(resource_type=res.resource_type, resource_name=res.resource_name)
        if isinstance(r, dict):
            out.append(dict(base, configs=[], **(r or error_fields(0))))
            continue
        keys = None if res.configuration_keys is None else set(res.configuration_keys)
        out.append(dict(base, **error_fields(r.error_code, r.error_message), configs=[
            _entry(c, res.resource_type, synonyms, broker_entries)
            for c in r.configs if keys is None or c.name in keys]))   # unknown keys: left out, as Kafka
    return respond(request, results=out)


def _entry(c, resource_type, synonyms, broker_entries):
    entry = dict(name=c.name, value=c.value, read_only=c.read_only, config_source=c.config_source,
                 is_sensitive=c.is_sensitive, config_type=_config_type(c.name), documentation=c.documentation)
    if synonyms:
        entry["synonyms"] = _synonyms(c, resource_type, broker_entries)
    return entry


def _synonyms(c, resource_type, broker_entries):
    if resource_type != ConfigResourceType.TOPIC:
        return [dict(name=c.name, value=c.value, source=c.config_source)]
    out = []
    if c.config_source == ConfigSource.TOPIC_CONFIG:
        out.append(dict(name=c.name, value=c.value, source=ConfigSource.TOPIC_CONFIG))
    broker_name = _TOPIC_TO_BROKER.get(c.name, c.name)
    setting = broker_entries.get(broker_name)
    if setting is not None and setting.config_source == ConfigSource.STATIC_BROKER_CONFIG:
        out.append(dict(name=broker_name, value=setting.value, source=ConfigSource.STATIC_BROKER_CONFIG))
    out.append(dict(name=broker_name, value=_default_text(c.name), source=ConfigSource.DEFAULT_CONFIG))
    return out


# ---- IncrementalAlterConfigs and AlterConfigs ------------------------------------------

def incremental_alter_configs(ctx, request):
    """SET and DELETE any topic config; APPEND and SUBTRACT the list ones (cleanup.policy),
    else INVALID_REQUEST."""
    body = request.body
    refused, asked = {}, []
    for i, res in enumerate(body.resources):
        ours = _ours(res.resource_type, res.resource_name)
        refused[i] = ours if isinstance(ours, dict) else _duplicate(c.name for c in res.configs)
        if refused[i] is None:
            asked.append((i, m.AlterConfigsResource(resource_type=ours[0], resource_name=ours[1], configs=[
                m.AlterableConfig(name=c.name, config_operation=c.config_operation, value=c.value)
                for c in res.configs])))
    return _alter(ctx, request, refused, asked)


def alter_configs(ctx, request):
    """Full replacement: the configs given become the resource's whole set of overrides."""
    body = request.body
    refused, wanted = {}, []
    for i, res in enumerate(body.resources):
        ours = _ours(res.resource_type, res.resource_name)
        nulls = [c.name for c in res.configs if c.value is None]
        refused[i] = ours if isinstance(ours, dict) else _duplicate(c.name for c in res.configs) or (
            error_fields(ErrorCode.invalid_request.value, f"null value for {', '.join(nulls)}") if nulls else None)
        if refused[i] is None:
            wanted.append((i, ours, res))
    overrides = _overrides(ctx, [(i, ours) for i, ours, _ in wanted if ours[0] == ConfigResourceType.TOPIC])
    asked = []
    for i, ours, res in wanted:
        have = overrides.get(i, set())
        if isinstance(have, dict):
            refused[i] = have
            continue
        given = {c.name for c in res.configs}
        ops = [m.AlterableConfig(name=c.name, config_operation=ConfigOperation.SET, value=c.value) for c in res.configs]
        ops += [m.AlterableConfig(name=n, config_operation=ConfigOperation.DELETE) for n in sorted(have - given)]
        asked.append((i, m.AlterConfigsResource(resource_type=ours[0], resource_name=ours[1], configs=ops)))
    return _alter(ctx, request, refused, asked)


def _overrides(ctx, topics):
    """{index: set of the names the topic overrides, or error_fields} of [(index, (type, name))]."""
    if not topics:
        return {}
    try:
        answer = ctx.gateway.links.ask(m.DescribeConfigsRequest(resources=[
            m.DescribeConfigsResource(resource_type=t, resource_name=n) for _, (t, n) in topics]))
    except OdradekError as e:
        return {i: error_fields(e) for i, _ in topics}
    return {i: error_fields(r.error_code, r.error_message) if r.error_code else
            {c.name for c in r.configs if c.config_source == ConfigSource.TOPIC_CONFIG}
            for (i, _), r in zip(topics, answer.results)}


def _alter(ctx, request, refused, asked):
    """One IncrementalAlterConfigs for `asked` [(index, our resource)], and the Kafka
    response for every resource of the request (`refused`: {index: error_fields})."""
    body = request.body
    answers = dict(refused)
    if asked:
        try:
            answer = ctx.gateway.links.ask(m.IncrementalAlterConfigsRequest(resources=[r for _, r in asked],
                                                                validate_only=body.validate_only))
            answers.update({i: error_fields(r.error_code, r.error_message)
                            for (i, _), r in zip(asked, answer.responses)})
        except OdradekError as e:
            answers.update({i: error_fields(e) for i, _ in asked})
    return respond(request, responses=[
        dict(resource_type=res.resource_type, resource_name=res.resource_name, **answers[i])
        for i, res in enumerate(body.resources)])


APIS = [
    Api(DESCRIBE_CONFIGS, 1, 4, describe_configs),
    Api(ALTER_CONFIGS, 0, 2, alter_configs),
    Api(INCREMENTAL_ALTER_CONFIGS, 0, 1, incremental_alter_configs),
]
