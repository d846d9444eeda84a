"""The systemd notify protocol, against a real datagram socket of the test's own."""
import os
import socket

import pytest

from odradek.daemon.broker.sd_notify import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_ready_status_and_watchdog_reach_the_socket(notify_socket):
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_interval_s == 1.0
    n.ready("recovered 3 partitions")
    assert sock.recv(4096).decode().splitlines() == ["READY=1", "STATUS=recovered 3 partitions"]
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.close()


def test_without_systemd_every_call_is_a_no_op():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False


def test_a_watchdog_meant_for_another_pid_is_ignored():
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval_s is None
    assert n.send("X=1") is False  # the socket does not exist: swallowed
