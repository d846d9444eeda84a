"""The broker's Kafka listener: its gateway process supervised (restarted after a crash,
stopped with the broker), shown in status, bounded by max.connections. (A handler's
unexpected failure: test_server.py.)"""
import os
import signal
import socket

import psutil
import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.errors import ErrorCode

from odradek.daemon.cli.root import cli
from support.broker import BrokerProcess, stop_cleanly, wait_until
from support.gateway import KafkaWire, answers, closed_by_peer, connect, gateways, listener_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = listener_broker(tmp_path_factory.mktemp("listener") / "data", **{"max.connections": 3})
    yield b
    stop_cleanly(b)


def test_status_shows_the_listener(broker):
    from click.testing import CliRunner
    result = CliRunner().invoke(cli, ["status", "--socket", broker.socket_path])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith(f"127.0.0.1:{broker.port} "))
    (g,) = gateways(broker)
    assert row.split()[1:3] == [str(g.pid), "running"]
    with KafkaWire(broker.port) as wire:
        wire.call(ApiVersionsV0())
        assert gateways(broker)[0].connections == 1


def test_a_killed_gateway_is_restarted_and_clients_reconnect(broker):
    (before,) = gateways(broker)
    wire = KafkaWire(broker.port)
    assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none
    os.kill(before.pid, signal.SIGKILL)
    assert closed_by_peer(wire.sock)
    wire.close()
    after = wait_until(lambda: [g for g in gateways(broker) if g.state == "running" and g.pid != before.pid],
                       timeout=30, what="the gateway to be restarted")[0]
    assert after.restarts == before.restarts + 1
    assert psutil.Process(after.pid).ppid() == broker.pid
    assert wait_until(lambda: answers(broker.port), timeout=30, what="a client to reconnect")
    assert "gateway %d ended: killed by signal SIGKILL" % before.pid in broker.stderr(None)


def test_over_max_connections_the_new_one_is_closed_the_others_go_on(broker):
    wait_until(lambda: gateways(broker)[0].connections == 0, what="earlier tests' connections to close")
    refused = gateways(broker)[0].refused
    wires = [KafkaWire(broker.port) for _ in range(3)]
    try:
        for w in wires:
            assert w.call(ApiVersionsV0()).error_code == ErrorCode.none
        lines = broker.stderr(None).count("connection refused")
        for _ in range(5):
            with connect(broker.port) as extra:
                assert closed_by_peer(extra)
        for w in wires:
            assert w.call(ApiVersionsV0()).error_code == ErrorCode.none
        wait_until(lambda: gateways(broker)[0].refused == refused + 5, what="the refusals to be counted")
        assert broker.stderr(None).count("connection refused") == lines + 1     # a flood is one line
    finally:
        for w in wires:
            w.close()


def test_stopping_the_broker_stops_its_gateway(tmp_path):
    b = listener_broker(tmp_path / "data")
    pid = gateways(b)[0].pid
    stop_cleanly(b)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_killed_broker_takes_its_gateway_with_it(tmp_path):
    b = listener_broker(tmp_path / "data")
    pid = gateways(b)[0].pid
    b.kill()
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               timeout=20, what="the gateway to exit with its broker (PR_SET_PDEATHSIG)")


def test_dev_mode_with_the_port_taken_runs_without_a_listener(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    b = BrokerProcess(tmp_path / "data", args=["--override", f"listeners=PLAINTEXT://127.0.0.1:{port}"])
    try:
        b.start()
        assert f"Kafka listener PLAINTEXT://127.0.0.1:{port} not started: the port is taken" in b.stderr(None)
        assert gateways(b) == []
    finally:
        taken.close()
        stop_cleanly(b)


def test_a_configured_broker_with_the_port_taken_stops_with_the_reason(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    run = tmp_path / "run"
    run.mkdir()
    config = tmp_path / "odradek.toml"
    config.write_text(f'log.dirs = ["{tmp_path / "data"}"]\nsocket.path = "{run}/odradek.sock"\n'
                      f'listeners = "PLAINTEXT://127.0.0.1:{port}"\n')
    b = BrokerProcess(run, config=config)
    try:
        b.start(wait=False)
        assert b.proc.wait(30) != 0
        assert f"listeners=PLAINTEXT://127.0.0.1:{port}: cannot bind: the port is taken" in b.stderr(None)
        assert not os.path.exists(run / "odradek.sock")
    finally:
        taken.close()
        b.kill()


def test_several_processes_share_the_one_socket(tmp_path):
    b = listener_broker(tmp_path / "data", **{"listener.processes": 2, "max.connections": 8})
    try:
        rows = gateways(b)
        assert len(rows) == 2 and len({g.pid for g in rows}) == 2
        assert {g.address for g in rows} == {f"127.0.0.1:{b.port}"}
        wires = [KafkaWire(b.port) for _ in range(6)]
        for w in wires:
            assert w.call(ApiVersionsV0()).error_code == ErrorCode.none
        assert sum(g.connections for g in gateways(b)) == 6
        os.kill(rows[0].pid, signal.SIGKILL)       # one dies: the other serves new clients meanwhile
        assert answers(b.port)
        wait_until(lambda: all(g.state == "running" for g in gateways(b)), timeout=30, what="the restart")
        for w in wires:
            w.close()
    finally:
        stop_cleanly(b)


def test_new_connections_go_to_the_process_with_the_fewest(tmp_path):
    """Kafka's acceptor deals connections out to its network threads; the gateway
    processes take each new one in the one with the fewest open (server.py), so clients
    are served in parallel, not in turns by one interpreter."""
    b = listener_broker(tmp_path / "data", **{"listener.processes": 2})
    try:
        warm = []                # until both processes serve (each has taken a connection)
        for _ in range(100):
            warm.append(KafkaWire(b.port))
            assert warm[-1].call(ApiVersionsV0()).error_code == ErrorCode.none
            if all(g.connections for g in gateways(b)):
                break
        for w in warm:
            w.close()
        wait_until(lambda: not any(g.connections for g in gateways(b)), timeout=10, what="the closes")
        wires = []
        for _ in range(16):      # one at a time: each accepted (answered) before the next
            wires.append(KafkaWire(b.port))
            assert wires[-1].call(ApiVersionsV0()).error_code == ErrorCode.none
        counts = sorted(g.connections for g in gateways(b))
        # 8 and 8, or 7 and 9 if the less loaded process could not run within
        # ACCEPT_DEFER_S of a late arrival (a loaded machine); when the kernel's race
        # decides, as without the rule, that is a 55% chance, and 16 and 0 happens
        assert counts[1] - counts[0] <= 2 and sum(counts) == 16, counts
        for w in wires:
            w.close()
    finally:
        stop_cleanly(b)


def test_a_gateway_leaves_ctrl_c_to_its_broker(broker):
    """Ctrl-C reaches the terminal's whole process group: the gateway ignores SIGINT and
    stops when the broker tells it (SIGTERM), so a stop is one clean exit, not a race."""
    (before,) = gateways(broker)
    os.kill(before.pid, signal.SIGINT)
    assert answers(broker.port)
    assert gateways(broker)[0].pid == before.pid and psutil.Process(before.pid).status() != psutil.STATUS_ZOMBIE
