"""The broker implements the ServerAPI its request handlers are written against."""
import inspect

from odradek.daemon.broker import server_api
from odradek.daemon.broker.config import BrokerConfig
from odradek.daemon.broker.server import Broker


def test_the_broker_has_every_method_and_attribute_of_the_server_api(tmp_path):
    broker = Broker(BrokerConfig.for_data_dir(str(tmp_path)))
    try:
        for name, member in vars(server_api.ServerAPI).items():
            if inspect.isfunction(member) and not name.startswith("_"):
                ours = getattr(Broker, name, None)
                assert callable(ours), f"Broker has no method {name}"
                assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name
        for name in server_api.ServerAPI.__annotations__:
            assert hasattr(broker, name), f"Broker has no attribute {name}"
    finally:
        broker.sel.close()


def test_the_handlers_call_no_private_method_of_the_broker():
    from odradek.daemon.broker import (
        data_plane, group_shell, handlers, internal_topics, reassign, replication, txn_shell)
    for module in (handlers, reassign, replication, data_plane, group_shell, txn_shell, internal_topics):
        source = inspect.getsource(module)
        assert "broker._" not in source, f"{module.__name__} reaches into the broker's private parts"
