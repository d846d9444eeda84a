"""A broker (group.initial.rebalance.delay.ms=0, so a group's first join is not held back)
with topics and a gateway in front of it, for the consumer-group tests of the gateway."""
import contextlib

from odradek.client import Admin
from support.broker import BrokerProcess, stop_cleanly
from support.gateway import GatewayProcess


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
