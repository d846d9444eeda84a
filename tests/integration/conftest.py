import pytest

from support.broker import BrokerProcess


@pytest.fixture
def broker(tmp_path):
    """A running broker on a temp data dir; stopped (exit 0 required) after the test."""
    b = BrokerProcess(tmp_path / "data").start()
    yield b
    try:
        code = b.stop()
        assert code == 0, f"broker exit status {code}: {b.stderr()}"
        assert not b.leftovers(), f"processes left behind: {b.leftovers()}"
    finally:
        b.kill()
