"""Metadata (key 3, v0-v13): the broker's topics as Kafka clients expect them.

One broker, node NODE_ID (0), at the gateway's advertised address (`gateway.advertised`:
advertised.listeners, else the bound address). Every partition's leader is node 0 (the
only node a client can connect to; its leader worker is behind it); replica_nodes,
isr_nodes and offline_replicas are our replica ids (the log dirs' indexes,
`odradek topics describe`'s), so a describe shows the replication as it is. A partition
without a leader answers LEADER_NOT_AVAILABLE with leader -1, as Kafka does.

Topics: all of them when `topics` is null (and, at v0, when the list is empty); by name,
or at v12+ by topic id (an unknown id: UNKNOWN_TOPIC_ID; an id or a null name before v12:
INVALID_REQUEST for every topic, as Kafka). A topic that does not exist is
created if the client allows it (v4+; always before v4, as in Kafka) and the broker's
`auto.create.topics.enable` says so (the broker decides, as for its own clients); else
UNKNOWN_TOPIC_OR_PARTITION. Topic ids are the broker's (topics.py): the same UUID forever.
Internal topics (__consumer_offsets, __transaction_state) are marked internal.
"""
from odradek.client.protocol import messages as m
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.codec import ErrorCode, build, response_class
from odradek.daemon.gateway.error_response import error_response
from odradek.daemon.gateway.error_codes import kafka_code
from odradek.daemon.gateway.topics import NO_TOPIC_ID, directory, topic_uuid

__all__ = ["APIS", "NODE_ID"]

NODE_ID = 0                     # this broker's node id on the Kafka wire (every API's)
METADATA = 3
_NO_OPERATIONS = -(1 << 31)     # Kafka's "authorized operations not asked for"


def _wanted(request, tdir):
    """(names to ask the broker for, or None for all; the ids asked by that are unknown)."""
    topics = request.body.topics
    if topics is None or (request.api_version == 0 and not topics):
        return None, []
    names, unknown = [], []
    for t in topics:
        tid = _topic_id(t)
        name = t.name
        if name is None:
            name = tdir.name_of(tid) if tid != NO_TOPIC_ID else None
            if name is None:
                unknown.append(tid)
                continue
        names.append(name)
    return names, unknown


def _topic_id(topic):
    """A requested topic's id; NO_TOPIC_ID before v10, and for the zero id (kio reads it as None)."""
    return getattr(topic, "topic_id", None) or NO_TOPIC_ID


def _partition(p):
    code = kafka_code(p.error_code)
    leader = NODE_ID if p.leader_id >= 0 else -1
    if leader < 0 and code == ErrorCode.none:
        code = ErrorCode.leader_not_available
    return dict(error_code=code, partition_index=p.partition_index, leader_id=leader,
                leader_epoch=p.leader_epoch, replica_nodes=list(p.replica_nodes), isr_nodes=list(p.isr_nodes),
                offline_replicas=list(p.offline_replicas))


def metadata(ctx, request):
    body = request.body
    tdir = directory(ctx.gateway)
    if request.api_version < 12 and any(t.name is None or _topic_id(t) != NO_TOPIC_ID for t in body.topics or ()):
        # Kafka's answer: every topic INVALID_REQUEST, no broker; the connection goes on
        return error_response(METADATA, request.api_version, ErrorCode.invalid_request, body)
    names, unknown_ids = _wanted(request, tdir)
    auto_create = getattr(body, "allow_auto_topic_creation", True)
    topics = []
    if names is None or names:
        res = ctx.gateway.links.ask(m.MetadataRequest(topics=names, allow_auto_topic_creation=auto_create))
        tdir.learn(res.topics)
        for t in res.topics:
            code = kafka_code(t.error_code)
            topics.append(dict(
                error_code=code, name=t.name, topic_id=topic_uuid(t.topic_id), is_internal=t.is_internal,
                partitions=[] if code != ErrorCode.none else [_partition(p) for p in t.partitions],
                topic_authorized_operations=_NO_OPERATIONS))
        cluster_id = res.cluster_id
    else:
        cluster_id = None
    topics += [dict(error_code=ErrorCode.unknown_topic_id, name=None, topic_id=tid, is_internal=False,
                    partitions=[], topic_authorized_operations=_NO_OPERATIONS) for tid in unknown_ids]
    host, port = ctx.gateway.advertised
    return build(response_class(METADATA, request.api_version), dict(
        throttle_time=0, brokers=[dict(node_id=NODE_ID, host=host, port=port, rack=None)],
        cluster_id=cluster_id, controller_id=NODE_ID, topics=topics,
        cluster_authorized_operations=_NO_OPERATIONS, error_code=ErrorCode.none))


APIS = [Api(METADATA, 0, 13, metadata)]
