"""The listener's config keys: defaults, dev mode, and each wrong value a named error at start."""
import pytest

from odradek.client.errors import InvalidConfig
from odradek.daemon.broker.config import BrokerConfig


def test_off_under_a_config_file_on_in_dev_mode(tmp_path):
    assert BrokerConfig({"log.dirs": [str(tmp_path)]}).listener is None
    dev = BrokerConfig.for_data_dir(tmp_path).listener
    assert (dev.listener.uri, dev.advertised) == ("PLAINTEXT://127.0.0.1:9092", None)
    assert (dev.max_request_bytes, dev.max_connections, dev.idle_ms, dev.processes) == (100 * 2 ** 20, 1000, 600_000, 2)
    assert dev.uid_check and not dev.allow_remote
    assert BrokerConfig.for_data_dir(tmp_path, {"listeners": ""}).listener is None


def test_advertised_and_ipv6(tmp_path):
    cfg = BrokerConfig({"log.dirs": [str(tmp_path)], "listeners": "PLAINTEXT://[::1]:0",
                        "advertised.listeners": "PLAINTEXT://localhost:19092"}).listener
    assert (cfg.listener.host, cfg.listener.port) == ("::1", 0)
    assert (cfg.advertised.host, cfg.advertised.port) == ("localhost", 19092)


def test_a_remote_bind_needs_allow_remote_and_an_advertised_host(tmp_path):
    base = {"log.dirs": [str(tmp_path)], "listeners": "PLAINTEXT://0.0.0.0:9092"}
    with pytest.raises(InvalidConfig, match="use SASL_PLAINTEXT, or set listener.allow.remote=true"):
        BrokerConfig(base)
    with pytest.raises(InvalidConfig, match="set advertised.listeners"):
        BrokerConfig({**base, "listener.allow.remote": True})
    cfg = BrokerConfig({**base, "listener.allow.remote": True,
                        "advertised.listeners": "PLAINTEXT://broker.example:9092"}).listener
    assert cfg.allow_remote and cfg.advertised.host == "broker.example"


@pytest.mark.parametrize("key,value,message", [
    ("listeners", "127.0.0.1:9092", "expected NAME://host:port"),
    ("listeners", "SSL://127.0.0.1:9092", "listener SSL is not supported"),
    ("listeners", "PLAINTEXT://:9092", "give the host to bind"),
    ("listeners", "PLAINTEXT://127.0.0.1:70000", "port 70000 is above 65535"),
    ("listeners", "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2", "one listener"),
    ("listeners", 9092, "expected NAME://host:port"),
    ("advertised.listeners", "PLAINTEXT//x:1", "advertised.listeners="),
    ("socket.request.max.bytes", 10, "socket.request.max.bytes"),
    ("max.connections", 0, "max.connections"),
    ("connections.max.idle.ms", "soon", "connections.max.idle.ms"),
    ("listener.processes", 0, "listener.processes"),
    ("listener.peer.uid.check", "maybe", "listener.peer.uid.check"),
])
def test_wrong_values_are_named(tmp_path, key, value, message):
    with pytest.raises(InvalidConfig, match=message) as e:
        BrokerConfig.for_data_dir(tmp_path, {key: value})
    assert key in str(e.value)


def test_advertised_without_a_listener_is_an_error(tmp_path):
    with pytest.raises(InvalidConfig, match="advertised.listeners is set but listeners is empty"):
        BrokerConfig({"log.dirs": [str(tmp_path)], "advertised.listeners": "PLAINTEXT://h:1"})


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                           ("::ffff:127.0.0.1", True), ("localhost", True), ("10.0.0.1", False),
                                           ("::ffff:10.0.0.1", False), ("0.0.0.0", False), ("example.com", False)])
def test_what_counts_as_loopback(host, loopback):
    from odradek.daemon.gateway.listeners import is_loopback
    assert is_loopback(host) == loopback


def test_serve_stops_at_start_naming_the_key(tmp_path):
    from click.testing import CliRunner
    from odradek.daemon.cli.root import cli
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path / "d"), "--override",
                                      "listeners=PLAINTEXT://127.0.0.1:99999"])
    assert result.exit_code == 1
    assert "odradek: error: " in result.output and "listeners='PLAINTEXT://127.0.0.1:99999'" in result.output
    assert not (tmp_path / "d").exists()       # nothing was started or created
