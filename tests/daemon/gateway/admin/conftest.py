"""A broker with a gateway in front of it for the tests of the gateway's admin, config
and transaction APIs, one per test module. A module may set BROKER_ARGS (extra `odradek
serve` arguments) and TOPICS ({name: partitions}, created before its tests run)."""
import pytest

from odradek.client import Admin
from support.broker import BrokerProcess, stop_cleanly
from support.gateway import GatewayProcess, KafkaWire


@pytest.fixture(scope="module")
def broker(tmp_path_factory, request):
    """A started BrokerProcess whose `gateway` attribute is its started GatewayProcess."""
    tmp = tmp_path_factory.mktemp("gateway")
    b = BrokerProcess(tmp / "data", args=list(getattr(request.module, "BROKER_ARGS", ()))).start()
    gw = None
    try:
        with Admin(b.socket_path) as a:
            for name, partitions in getattr(request.module, "TOPICS", {}).items():
                a.create_topic(name, partitions)
        gw = b.gateway = GatewayProcess(b.socket_path, tmp).start()
        yield b
    finally:
        if gw is not None:
            gw.stop()
        stop_cleanly(b)


@pytest.fixture
def wire(broker):
    """A KafkaWire connection to the gateway."""
    with KafkaWire(broker.gateway.port) as w:
        yield w


@pytest.fixture
def admin(broker):
    """odradek's own Admin on the broker's control socket."""
    with Admin(broker.socket_path) as a:
        yield a
