"""The broker under systemd's notify protocol, and the unit file itself."""
import os
import shutil
import socket
import subprocess

import pytest

from support.broker import BrokerProcess

UNIT = os.path.join(os.path.dirname(__file__), "..", "..", "systemd", "odradek.service")


def test_the_broker_sends_ready_status_and_watchdog_pings(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    b = BrokerProcess(tmp_path / "data", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        b.start(wait=False)
        messages = []
        while not any("READY=1" in msg for msg in messages):
            messages.append(sock.recv(4096).decode())
        ready = next(msg for msg in messages if "READY=1" in msg)
        assert "STATUS=" in ready and "partitions" in ready
        assert any(msg.startswith("STATUS=") for msg in messages)  # progress before READY
        # WATCHDOG_USEC=200000: a ping at least every 100 ms
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert b.stop() == 0, b.stderr()
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        assert "STOPPING=1" in rest
    finally:
        b.kill()
        sock.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_file_passes_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists: point it at this environment's odradek
    import sys
    odradek = os.path.join(os.path.dirname(sys.executable), "odradek")
    if not os.path.exists(odradek):
        pytest.skip("the odradek console script is not installed in this environment")
    text = open(UNIT).read().replace("/opt/odradek/.venv/bin/odradek", odradek)
    unit = tmp_path / "odradek.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "odradek.service" in line]
    assert result.returncode == 0 and not problems, problems
