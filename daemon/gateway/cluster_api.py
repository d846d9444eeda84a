"""DescribeCluster (key 60): the cluster is this broker, node NODE_ID, its own controller.

The cluster id is the broker's (meta.properties' cluster.id, as the control protocol's
Metadata returns it), asked once per gateway process: it never changes while the log
dirs are the same. Host and port are `ctx.gateway.advertised` (advertised.listeners,
else the bound address), as in Metadata. Asked for the controllers (endpoint_type 2,
v1+), a broker answers MISMATCHED_ENDPOINT_TYPE, as Kafka's brokers do: clients then ask
a controller endpoint, which a single-host broker does not have. Authorized operations
are not computed (the field keeps Kafka's "not provided", -2147483648): every admitted
client may do everything (auth.py decides who is admitted).
"""
from odradek.client.protocol import messages as m
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.codec import ErrorCode, build, response_class
from odradek.daemon.gateway.metadata_api import NODE_ID

__all__ = ["APIS", "cluster_id"]

DESCRIBE_CLUSTER = 60
BROKERS = 1


def cluster_id(gateway):
    """The broker's cluster id, fetched once per gateway process."""
    cached = gateway.__dict__.get("cluster_id")
    if cached is None:
        answer = gateway.links.ask(m.MetadataRequest(topics=[]))
        cached = gateway.__dict__.setdefault("cluster_id", answer.cluster_id or "")
    return cached


def describe_cluster(ctx, request):
    cls = response_class(DESCRIBE_CLUSTER, request.api_version)
    endpoint_type = getattr(request.body, "endpoint_type", BROKERS)
    if endpoint_type != BROKERS:
        return build(cls, error_code=ErrorCode.mismatched_endpoint_type, endpoint_type=endpoint_type,
                     error_message=f"this is a broker endpoint; endpoint_type {endpoint_type} is not served here",
                     cluster_id=cluster_id(ctx.gateway), controller_id=NODE_ID)
    host, port = ctx.gateway.advertised
    return build(cls, error_code=ErrorCode.none, cluster_id=cluster_id(ctx.gateway), controller_id=NODE_ID,
                 endpoint_type=BROKERS,
                 brokers=[dict(broker_id=NODE_ID, host=host, port=port, rack=None, is_fenced=False)])


APIS = [Api(DESCRIBE_CLUSTER, 0, 2, describe_cluster)]
