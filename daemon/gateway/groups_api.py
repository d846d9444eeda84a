"""Kafka's classic consumer-group APIs through the gateway, answered by odradek's own group
coordinator (daemon/broker/groups) over the control socket (client/protocol/_messages_groups.py).

Each Kafka request becomes the control message of the same name and its answer the Kafka
response at the request's version: the groups, members, generations and offsets are the
coordinator's, so a group made over TCP is the one `odradek groups` and the Unix-socket
Consumer see, and the reverse. The bytes members exchange (protocol_type, each
protocol's metadata, the leader's assignments) pass through unchanged: they are Kafka's
ConsumerProtocol, which odradek's Consumer speaks too, so both kinds share a group.

Versions (Kafka 4.x floors as kio has them): FindCoordinator 0-6, JoinGroup 0-9,
SyncGroup 0-5, Heartbeat 0-4, LeaveGroup 0-5, OffsetCommit 2-9, OffsetFetch 1-9,
OffsetDelete 0, DescribeGroups 0-6, ListGroups 0-5, DeleteGroups 0-2. OffsetCommit v10
and OffsetFetch v10 name topics by id and are not served; clients negotiate down.

Membership and connections. The coordinator removes a dynamic member once every control
connection it joined on has closed. So each Kafka connection that sends JoinGroup,
SyncGroup, Heartbeat or LeaveGroup gets a control connection of its own, opened on first
use and closed with the TCP connection (`ctx.conn.state["closer:groups"]`). When a Kafka
client's TCP connection drops, its dynamic members leave at once and the group
rebalances, sooner than Kafka, which waits for session.timeout.ms; a client that comes
back gets UNKNOWN_MEMBER_ID and rejoins, as after a session timeout. Static members
(group.instance.id) keep their place until their session times out, as in Kafka. The other
group APIs hold no state on a connection and use the gateway's pooled links.

KIP-394: the coordinator answers a new dynamic member's JoinGroup with MEMBER_ID_REQUIRED
and its id. JoinGroup v4+ clients get that answer and join again, as in Kafka; below v4
(clients that do not know the error) the gateway joins again for them at once with the
given id, on the same control connection.

A member joined through the gateway tells the coordinator its TCP address (JoinGroup v1's
client_host), so DescribeGroups shows "/127.0.0.1:54321" (Kafka shows "/127.0.0.1").
An OffsetFetch partition in error carries offset -1 and no metadata, as in Kafka.

Not carried: OffsetCommit v2-v4's retention_time (the coordinator keeps offsets until
deleted: no offsets.retention.minutes); DescribeGroups' authorized_operations (no ACLs:
Kafka's "not provided", INT32_MIN). A broker that cannot be reached is
COORDINATOR_NOT_AVAILABLE, which makes clients look for the coordinator again.
"""
from odradek.client.errors import (
    CoordinatorNotAvailable, MemberIdRequired, NetworkException, OdradekError, RequestTimedOut)
from odradek.client.protocol import messages as m
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.codec import build, response_class
from odradek.daemon.gateway.error_codes import kafka_code

__all__ = ["APIS", "SESSION_KEY"]

SESSION_KEY = "closer:groups"
AUTHORIZED_OPERATIONS_NOT_PROVIDED = -2 ** 31
CLASSIC = "classic"               # ListGroups v5's group_type of every group here
_REPLY_MARGIN_S = 30.0            # how much longer than the coordinator may take we wait


def _ms(delta):
    return int(delta.total_seconds() * 1000)


class _MemberLink:
    """A Kafka connection's own control connection for membership requests."""

    def __init__(self, links):
        self.links = links
        self.client = None
        self.wait_ms = 0          # the longest rebalance wait a JoinGroup on it asked for

    def call(self, request, wait_ms=0):
        if self.client is None or self.client.closed:
            self.client = self.links.open()
        return self.client.call(request, timeout=max(self.links.timeout, wait_ms / 1000 + _REPLY_MARGIN_S))[0]

    def close(self):
        if self.client is not None:
            self.client.close()


def _member_link(ctx):
    link = ctx.conn.state.get(SESSION_KEY)
    if link is None:
        link = ctx.conn.state[SESSION_KEY] = _MemberLink(ctx.gateway.links)
    return link


def _ask(call, request, *args):
    """(response, None) or (None, the OdradekError): the broker's error answer, or
    COORDINATOR_NOT_AVAILABLE when the broker could not be asked."""
    try:
        return call(request, *args), None
    except (NetworkException, RequestTimedOut) as e:
        return None, CoordinatorNotAvailable(f"the broker did not answer: {e}")
    except OdradekError as e:
        return None, e


# ---- FindCoordinator -------------------------------------------------------------------

def find_coordinator(ctx, request):
    """v0-v3: one key; v4+: a batch of coordinator_keys. Key type 0 groups, 1 transactions:
    both are this broker."""
    body, version = request.body, request.api_version
    key_type = body.key_type if version >= 1 else m.CoordinatorType.GROUP
    keys = body.coordinator_keys if version >= 4 else (body.key,)
    host, port = ctx.gateway.advertised
    coordinators = []
    for key in keys:
        response, error = _ask(ctx.gateway.links.ask, m.FindCoordinatorRequest(key=key, key_type=key_type))
        if error is None:
            coordinators.append(dict(key=key, node_id=response.node_id, host=host, port=port, error_code=0))
        else:
            coordinators.append(dict(key=key, node_id=-1, host="", port=-1, error_code=kafka_code(error),
                                     error_message=error.message))
    cls = response_class(request.api_key, version)
    if version >= 4:
        return build(cls, coordinators=coordinators)
    return build(cls, coordinators[0])


# ---- membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup ------------------------------

def _client_host(ctx):
    """Where the Kafka client is, as DescribeGroups shows it ("/127.0.0.1:54321")."""
    host, port = ctx.conn.peer[:2]
    return f"/{host}:{port}"


def join_group(ctx, request):
    body, version = request.body, request.api_version
    session_ms = _ms(body.session_timeout)
    rebalance_ms = _ms(body.rebalance_timeout) if version >= 1 else session_ms
    link = _member_link(ctx)
    link.wait_ms = max(link.wait_ms, rebalance_ms, session_ms)
    join = dict(group_id=body.group_id, session_timeout_ms=session_ms, rebalance_timeout_ms=rebalance_ms,
                member_id=body.member_id, group_instance_id=getattr(body, "group_instance_id", None),
                protocol_type=body.protocol_type, reason=getattr(body, "reason", None),
                client_id=request.client_id or "", client_host=_client_host(ctx),
                protocols=[m.JoinGroupRequestProtocol(name=p.name, metadata=bytes(p.metadata))
                           for p in body.protocols])
    response, error = _ask(link.call, m.JoinGroupRequest(**join), link.wait_ms)
    if error is None and response.error_code == MemberIdRequired.code and version < 4:
        join["member_id"] = response.member_id      # KIP-394's round trip, for a client that predates it
        response, error = _ask(link.call, m.JoinGroupRequest(**join), link.wait_ms)
    cls = response_class(request.api_key, version)
    no_name = "" if version < 7 else None
    if error is not None:
        return build(cls, error_code=kafka_code(error), generation_id=-1, protocol_name=no_name, leader="",
                     member_id=body.member_id, members=[])
    return build(cls, error_code=response.error_code, generation_id=response.generation_id,
                 protocol_type=response.protocol_type,
                 protocol_name=response.protocol_name if response.protocol_name is not None else no_name,
                 leader=response.leader, skip_assignment=response.skip_assignment, member_id=response.member_id,
                 members=[dict(member_id=x.member_id, group_instance_id=x.group_instance_id, metadata=x.metadata)
                          for x in response.members])


def sync_group(ctx, request):
    body, version = request.body, request.api_version
    link = _member_link(ctx)
    response, error = _ask(link.call, m.SyncGroupRequest(
        group_id=body.group_id, generation_id=body.generation_id, member_id=body.member_id,
        group_instance_id=getattr(body, "group_instance_id", None),
        protocol_type=getattr(body, "protocol_type", None), protocol_name=getattr(body, "protocol_name", None),
        assignments=[m.SyncGroupRequestAssignment(member_id=a.member_id, assignment=bytes(a.assignment))
                     for a in body.assignments]), link.wait_ms)
    cls = response_class(request.api_key, version)
    if error is not None:
        return build(cls, error_code=kafka_code(error), assignment=b"")
    return build(cls, error_code=0, protocol_type=response.protocol_type, protocol_name=response.protocol_name,
                 assignment=response.assignment)


def heartbeat(ctx, request):
    body = request.body
    _, error = _ask(_member_link(ctx).call, m.HeartbeatRequest(
        group_id=body.group_id, generation_id=body.generation_id, member_id=body.member_id,
        group_instance_id=getattr(body, "group_instance_id", None)))
    return build(response_class(request.api_key, request.api_version),
                 error_code=kafka_code(error) if error is not None else 0)


def leave_group(ctx, request):
    """v0-v2: one member_id, its error the response's; v3+: a members list, an error each."""
    body, version = request.body, request.api_version
    if version >= 3:
        members = [m.MemberIdentity(member_id=x.member_id, group_instance_id=x.group_instance_id,
                                    reason=getattr(x, "reason", None)) for x in body.members]
    else:
        members = [m.MemberIdentity(member_id=body.member_id)]
    response, error = _ask(_member_link(ctx).call, m.LeaveGroupRequest(group_id=body.group_id, members=members))
    cls = response_class(request.api_key, version)
    if error is not None:
        return build(cls, error_code=kafka_code(error), members=[])
    if version < 3:
        return build(cls, error_code=response.members[0].error_code)
    return build(cls, error_code=0, members=[
        dict(member_id=x.member_id, group_instance_id=x.group_instance_id, error_code=x.error_code)
        for x in response.members])


# ---- offsets: OffsetCommit, OffsetFetch, OffsetDelete --------------------------------------

def offset_commit(ctx, request):
    """OffsetCommit v2-v9. v2-v4's retention_time is ignored: the coordinator keeps a
    committed offset until it is deleted (OffsetDelete, DeleteGroups) and has no
    offsets.retention.minutes, so -1 (the broker's default) and any other value mean
    the same; the commit succeeds as Kafka's does."""
    body = request.body
    response, error = _ask(ctx.gateway.links.ask, m.OffsetCommitRequest(
        group_id=body.group_id, generation_id=body.generation_id_or_member_epoch, member_id=body.member_id,
        group_instance_id=getattr(body, "group_instance_id", None),
        topics=[m.OffsetCommitRequestTopic(name=t.name, partitions=[m.OffsetCommitRequestPartition(
            partition_index=p.partition_index, committed_offset=p.committed_offset,
            committed_leader_epoch=getattr(p, "committed_leader_epoch", -1),
            committed_metadata=p.committed_metadata) for p in t.partitions]) for t in body.topics]))
    if error is not None:      # the whole request failed: every partition says so, as in Kafka
        topics = [dict(name=t.name, partitions=[dict(partition_index=p.partition_index, error_code=kafka_code(error))
                                                for p in t.partitions]) for t in body.topics]
    else:
        topics = [dict(name=t.name, partitions=[dict(partition_index=p.partition_index, error_code=p.error_code)
                                                for p in t.partitions]) for t in response.topics]
    return build(response_class(request.api_key, request.api_version), topics=topics)


def _fetch_group(ctx, group_id, topics, require_stable):
    """(topics as dicts, error or None) of one group's OffsetFetch; `topics` None: all."""
    response, error = _ask(ctx.gateway.links.ask, m.OffsetFetchRequest(
        group_id=group_id, require_stable=require_stable,
        topics=None if topics is None else [m.OffsetFetchRequestTopic(name=t.name,
                                                                      partition_indexes=list(t.partition_indexes))
                                            for t in topics]))
    if error is not None:
        return [], error
    return [dict(name=t.name, partitions=[_fetched(p) for p in t.partitions]) for t in response.topics], None


def _fetched(p):
    """A partition of an OffsetFetch answer; one in error carries no offset (Kafka's -1 and
    "": the coordinator also gives the last committed one with UNSTABLE_OFFSET_COMMIT)."""
    if p.error_code:
        return dict(partition_index=p.partition_index, committed_offset=-1, committed_leader_epoch=-1,
                    metadata="", error_code=p.error_code)
    return dict(partition_index=p.partition_index, committed_offset=p.committed_offset,
                committed_leader_epoch=p.committed_leader_epoch, metadata=p.metadata, error_code=0)


def offset_fetch(ctx, request):
    """v1-v7: one group (topics null: every committed offset, v2+); v8+: a batch of groups.
    require_stable (v7+): UNSTABLE_OFFSET_COMMIT for an offset a transaction holds."""
    body, version = request.body, request.api_version
    require_stable = getattr(body, "require_stable", False)
    cls = response_class(request.api_key, version)
    if version >= 8:
        groups = []
        for group in body.groups:
            topics, error = _fetch_group(ctx, group.group_id, group.topics, require_stable)
            groups.append(dict(group_id=group.group_id, topics=topics,
                               error_code=kafka_code(error) if error is not None else 0))
        return build(cls, groups=groups)
    topics, error = _fetch_group(ctx, body.group_id, body.topics, require_stable)
    if error is not None and version < 2:     # no top-level error code yet: each partition says it
        topics = [dict(name=t.name, partitions=[dict(partition_index=p, committed_offset=-1, metadata="",
                                                     error_code=kafka_code(error)) for p in t.partition_indexes])
                  for t in body.topics]
    return build(cls, topics=topics, error_code=kafka_code(error) if error is not None else 0)


def offset_delete(ctx, request):
    body = request.body
    response, error = _ask(ctx.gateway.links.ask, m.OffsetDeleteRequest(group_id=body.group_id, topics=[
        m.OffsetDeleteRequestTopic(name=t.name, partitions=[p.partition_index for p in t.partitions])
        for t in body.topics]))
    cls = response_class(request.api_key, request.api_version)
    if error is not None:
        return build(cls, error_code=kafka_code(error), topics=[])
    return build(cls, error_code=0, topics=[
        dict(name=t.name, partitions=[dict(partition_index=p.partition_index, error_code=p.error_code)
                                      for p in t.partitions]) for t in response.topics])


# ---- administration: DescribeGroups, ListGroups, DeleteGroups -----------------------------

def describe_groups(ctx, request):
    body = request.body
    cls = response_class(request.api_key, request.api_version)
    response, error = _ask(ctx.gateway.links.ask, m.DescribeGroupsRequest(groups=list(body.groups)))
    if error is not None:
        return build(cls, groups=[dict(group_id=g, error_code=kafka_code(error), error_message=error.message,
                                       authorized_operations=AUTHORIZED_OPERATIONS_NOT_PROVIDED)
                                  for g in body.groups])
    return build(cls, groups=[dict(
        error_code=g.error_code, error_message=g.error_message, group_id=g.group_id, group_state=g.group_state,
        protocol_type=g.protocol_type, protocol_data=g.protocol_data,
        authorized_operations=AUTHORIZED_OPERATIONS_NOT_PROVIDED,
        members=[dict(member_id=x.member_id, group_instance_id=x.group_instance_id, client_id=x.client_id,
                      client_host=x.client_host, member_metadata=x.member_metadata,
                      member_assignment=x.member_assignment) for x in g.members])
        for g in response.groups])


def list_groups(ctx, request):
    """states_filter (v4+) as the coordinator reads it; types_filter (v5): every group here
    is a classic one."""
    body = request.body
    cls = response_class(request.api_key, request.api_version)
    types = {t.lower() for t in getattr(body, "types_filter", ())}
    if types and CLASSIC not in types:
        return build(cls, error_code=0, groups=[])
    response, error = _ask(ctx.gateway.links.ask,
                           m.ListGroupsRequest(states_filter=list(getattr(body, "states_filter", ()))))
    if error is not None:
        return build(cls, error_code=kafka_code(error), groups=[])
    return build(cls, error_code=0, groups=[dict(group_id=g.group_id, protocol_type=g.protocol_type,
                                                 group_state=g.group_state, group_type=CLASSIC)
                                            for g in response.groups])


def delete_groups(ctx, request):
    body = request.body
    cls = response_class(request.api_key, request.api_version)
    response, error = _ask(ctx.gateway.links.ask, m.DeleteGroupsRequest(groups_names=list(body.groups_names)))
    if error is not None:
        return build(cls, results=[dict(group_id=g, error_code=kafka_code(error)) for g in body.groups_names])
    return build(cls, results=[dict(group_id=r.group_id, error_code=r.error_code) for r in response.results])


_K = m.ApiKey
APIS = [
    Api(_K.OFFSET_COMMIT, 2, 9, offset_commit),
    Api(_K.OFFSET_FETCH, 1, 9, offset_fetch),
    Api(_K.FIND_COORDINATOR, 0, 6, find_coordinator),
    Api(_K.JOIN_GROUP, 0, 9, join_group),
    Api(_K.HEARTBEAT, 0, 4, heartbeat),
    Api(_K.LEAVE_GROUP, 0, 5, leave_group),
    Api(_K.SYNC_GROUP, 0, 5, sync_group),
    Api(_K.DESCRIBE_GROUPS, 0, 6, describe_groups),
    Api(_K.LIST_GROUPS, 0, 5, list_groups),
    Api(_K.DELETE_GROUPS, 0, 2, delete_groups),
    Api(_K.OFFSET_DELETE, 0, 0, offset_delete),
]
