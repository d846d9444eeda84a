"""Kafka's topic administration through the gateway: CreateTopics, DeleteTopics,
CreatePartitions, DeleteRecords and DescribeLogDirs, answered by our broker over its
control socket, so a topic made through Kafka's protocol is the one `odradek` and the
Unix-socket clients see, and the reverse. (Configs: configs_api.py.)

Replicas are log dirs on this one broker: the replica ids Metadata shows, and those that
replica assignments (CreateTopics, CreatePartitions) name, are log dir ids (their place
in log.dirs); an assignment naming a dir that is not there, or one twice, is
INVALID_REPLICA_ASSIGNMENT.

What differs from Kafka, and why:
- DescribeLogDirs answers for this broker's log dirs; a partition has one replica per
  dir it lives in, so with several dirs it is listed under each (Admin.describe_log_dirs).
- DeleteRecords moves the leader's log start offset at once; its followers follow as
  soon as they see it (daemon/worker/follower.py).
"""
from collections import Counter

from kio.schema.errors import ErrorCode

from odradek.client.log_dirs import from_status
from odradek.client.protocol import messages as m
from odradek.client.errors import OdradekError
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.error_codes import error_fields, kafka_code
from odradek.daemon.gateway.codec import respond
from odradek.daemon.gateway.topics import NO_TOPIC_ID, topic_uuid

__all__ = ["APIS"]

CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, DESCRIBE_LOG_DIRS, CREATE_PARTITIONS = 19, 20, 21, 35, 37


# ---- CreateTopics ----------------------------------------------------------------------

def create_topics(ctx, request):
    body = request.body
    counts = Counter(t.name for t in body.topics)
    refused, asked = {}, []
    for t in body.topics:
        nulls = [c.name for c in t.configs if c.value is None]
        if counts[t.name] > 1:
            refused[t.name] = error_fields(ErrorCode.invalid_request.value,
                                           f"topic {t.name!r} is named {counts[t.name]} times in the request")
        elif nulls:            # Kafka refuses them too (the broker's own protocol reads None as the default)
            refused[t.name] = error_fields(ErrorCode.invalid_config.value,
                                           f"null value not supported for topic configs: {nulls[0]}")
        else:
            asked.append(m.CreatableTopic(
                name=t.name, num_partitions=t.num_partitions, replication_factor=t.replication_factor,
                configs={c.name: c.value for c in t.configs},
                assignments=[m.CreatableReplicaAssignment(partition_index=a.partition_index,
                                                          broker_ids=list(a.broker_ids)) for a in t.assignments]))
    created = {}
    if asked:
        try:
            answer = ctx.gateway.links.ask(m.CreateTopicsRequest(topics=asked, timeout_ms=_ms(body.timeout),
                                                     validate_only=body.validate_only))
            created = {r.name: r for r in answer.topics}
        except OdradekError as e:
            refused.update({t.name: error_fields(e) for t in asked})
    results = []
    for name in dict.fromkeys(t.name for t in body.topics):
        if name in refused:
            results.append(dict(name=name, num_partitions=-1, replication_factor=-1, **refused[name]))
            continue
        r = created[name]
        results.append(dict(
            name=name, num_partitions=r.num_partitions, replication_factor=r.replication_factor,
            topic_id=topic_uuid(r.topic_id), **error_fields(r.error_code, r.error_message),
            configs=[dict(name=c.name, value=c.value, read_only=c.read_only, config_source=c.config_source,
                          is_sensitive=c.is_sensitive) for c in r.configs]))
    return respond(request, topics=results)


def _ms(timeout):
    return max(0, int(timeout.total_seconds() * 1000))


# ---- DeleteTopics ----------------------------------------------------------------------

def delete_topics(ctx, request):
    """v1-v5 name topics; v6 names or ids (one of them per topic)."""
    body = request.body
    if request.api_version < 6:
        wanted = [(name, None) for name in body.topic_names]
    else:
        wanted = [(t.name, t.topic_id if t.topic_id != NO_TOPIC_ID else None) for t in body.topics]
    refused, names, ids = {}, [], []
    for i, (name, topic_id) in enumerate(wanted):
        if (name is None) == (topic_id is None):
            refused[i] = error_fields(ErrorCode.invalid_request.value,
                                      "name a topic by its name or by its id, one of the two")
        elif topic_id is None:
            names.append(i)
        else:
            ids.append(i)
    answers = {}
    if names or ids:
        try:
            answer = ctx.gateway.links.ask(m.DeleteTopicsRequest(topic_names=[wanted[i][0] for i in names],
                                                     topic_ids=[wanted[i][1].hex for i in ids],
                                                     timeout_ms=_ms(body.timeout)))
            answers = dict(zip(names + ids, answer.responses))
        except OdradekError as e:
            refused.update({i: error_fields(e) for i in names + ids})
    results = []
    for i, (name, topic_id) in enumerate(wanted):
        if i in refused:
            results.append(dict(name=name, topic_id=topic_id or NO_TOPIC_ID, **refused[i]))
            continue
        r = answers[i]
        if topic_id is not None and r.error_code == ErrorCode.unknown_topic_or_partition.value:
            results.append(dict(name=None, topic_id=topic_id, error_code=ErrorCode.unknown_topic_id.value,
                                error_message=f"no topic has id {topic_id}"))
            continue
        results.append(dict(name=r.name, topic_id=topic_uuid(r.topic_id), **error_fields(r.error_code,
                                                                                          r.error_message)))
    return respond(request, responses=results)


# ---- CreatePartitions ------------------------------------------------------------------

def create_partitions(ctx, request):
    body = request.body
    asked = [m.CreatePartitionsTopic(
        name=t.name, count=t.count,
        assignments=None if t.assignments is None else [m.CreatePartitionsAssignment(broker_ids=list(a.broker_ids))
                                                        for a in t.assignments])
        for t in body.topics]
    try:
        answer = ctx.gateway.links.ask(m.CreatePartitionsRequest(topics=asked, timeout_ms=_ms(body.timeout),
                                                     validate_only=body.validate_only))
        results = [dict(name=r.name, **error_fields(r.error_code, r.error_message)) for r in answer.results]
    except OdradekError as e:
        results = [dict(name=t.name, **error_fields(e)) for t in body.topics]
    return respond(request, results=results)


# ---- DeleteRecords ---------------------------------------------------------------------

def delete_records(ctx, request):
    body = request.body
    asked = [m.DeleteRecordsTopic(name=t.name, partitions=[
        m.DeleteRecordsPartition(partition_index=p.partition_index, offset=p.offset) for p in t.partitions])
        for t in body.topics]
    try:
        answer = ctx.gateway.links.ask(m.DeleteRecordsRequest(topics=asked, timeout_ms=_ms(body.timeout)))
        topics = [dict(name=t.name, partitions=[
            dict(partition_index=p.partition_index, low_watermark=p.low_watermark, error_code=kafka_code(p.error_code))
            for p in t.partitions]) for t in answer.topics]
    except OdradekError as e:
        topics = [dict(name=t.name, partitions=[
            dict(partition_index=p.partition_index, low_watermark=-1, error_code=kafka_code(e.code))
            for p in t.partitions]) for t in body.topics]
    return respond(request, topics=topics)


# ---- DescribeLogDirs -------------------------------------------------------------------

def describe_log_dirs(ctx, request):
    """Every log dir of the broker with the replicas it holds of the topics asked (null:
    every topic); a partition asked that does not exist is left out, as in Kafka."""
    wanted = None if request.body.topics is None else {
        (t.topic, p) for t in request.body.topics for p in t.partitions}
    try:
        dirs = from_status(ctx.gateway.links.ask(m.StatusRequest()))
    except OdradekError as e:
        return respond(request, error_code=kafka_code(e.code), results=[])
    results = []
    for d in dirs:
        by_topic = {}
        for r in d.replicas:
            if wanted is None or (r.topic, r.partition) in wanted:
                by_topic.setdefault(r.topic, []).append(dict(
                    partition_index=r.partition, partition_size=r.size, offset_lag=r.offset_lag,
                    is_future_key=r.is_future))
        results.append(dict(
            error_code=ErrorCode.none.value if d.error is None else ErrorCode.kafka_storage_error.value,
            log_dir=d.path, total_bytes=d.total_bytes, usable_bytes=d.usable_bytes,
            topics=[dict(name=name, partitions=parts) for name, parts in by_topic.items()]))
    return respond(request, error_code=0, results=results)


APIS = [
    Api(CREATE_TOPICS, 2, 7, create_topics),
    Api(DELETE_TOPICS, 1, 6, delete_topics),
    Api(DELETE_RECORDS, 0, 2, delete_records),
    Api(DESCRIBE_LOG_DIRS, 1, 5, describe_log_dirs),
    Api(CREATE_PARTITIONS, 0, 3, create_partitions),
]
