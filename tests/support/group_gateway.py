"""A broker (group.initial.rebalance.delay.ms=0, so a group's first join is not held back)
with topics and a gateway in front of it, for the consumer-group tests of the gateway, and
the group calls those tests make raw on the wire (kio entities over a KafkaWire)."""
import contextlib
import dataclasses

import kio.index
from kio.schema.errors import ErrorCode

from odradek.client import Admin
from odradek.client.protocol.consumer_protocol import ConsumerProtocolSubscription
from odradek.daemon.gateway.codec import build
from support.broker import BrokerProcess, stop_cleanly
from support.gateway import GatewayProcess

JOIN, SYNC = 11, 14
SESSION_MS = 30_000


@contextlib.contextmanager
def group_gateway(tmp, topics=None):
    """A started GatewayProcess whose `broker` attribute is its BrokerProcess; `topics`:
    {name: partitions} created first."""
    broker = BrokerProcess(tmp / "data", args=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    gw = None
    try:
        with Admin(broker.socket_path) as admin:
            for name, partitions in (topics or {}).items():
                admin.create_topic(name, num_partitions=partitions)
        gw = GatewayProcess(broker.socket_path, tmp).start()
        gw.broker = broker
        yield gw
    finally:
        if gw is not None:
            gw.stop()
        stop_cleanly(broker)


def req(api_key, version, **values):
    """A kio request entity of `api_key` at `version` from plain values (codec.build takes
    no None for an array: a null one, e.g. OffsetFetch's topics, is set after)."""
    nulls = {k for k, v in values.items() if v is None}
    entity = build(kio.index.load_request_schema(api_key, version), {k: v for k, v in values.items() if k not in nulls})
    return dataclasses.replace(entity, **{k: None for k in nulls if hasattr(entity, k)})


def subscription(*topics):
    return ConsumerProtocolSubscription(topics=list(topics)).encode_versioned(0)


def join(wire, group, version=9, member_id="", metadata=b"sub", instance=None, session_ms=SESSION_MS):
    return wire.call(req(JOIN, version, group_id=group, session_timeout=session_ms, rebalance_timeout=SESSION_MS,
                         member_id=member_id, group_instance_id=instance, protocol_type="consumer",
                         protocols=[dict(name="range", metadata=metadata)]))


def join_new(wire, group, **kw):
    """KIP-394: the first JoinGroup gets MEMBER_ID_REQUIRED with an id; the second joins."""
    first = join(wire, group, **kw)
    assert first.error_code == ErrorCode.member_id_required and first.member_id
    assert first.generation_id == -1
    return join(wire, group, member_id=first.member_id, **kw)


def sync(wire, group, generation, member_id, assignments=(), version=5):
    return wire.call(req(SYNC, version, group_id=group, generation_id=generation, member_id=member_id,
                         protocol_type="consumer", protocol_name="range",
                         assignments=[dict(member_id=k, assignment=v) for k, v in assignments]))
