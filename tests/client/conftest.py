import pytest
from support.broker import BrokerProcess


@pytest.fixture
def broker(tmp_path):
    """A running broker on a temp data dir; stopped (exit 0 required) after the test."""
    b = BrokerProcess(tmp_path / "data").start()
    yield b
    try:
        assert b.stop() == 0, b.stderr()
    finally:
        b.kill()
