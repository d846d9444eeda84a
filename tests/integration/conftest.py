import pytest

from support.broker import BrokerProcess

GROUP_TEST_ARGS = ["--override", "group.initial.rebalance.delay.ms=0"]


@pytest.fixture
def broker(tmp_path):
    """A running broker on a temp data dir; stopped (exit 0 required) after the test.
    Groups rebalance without Kafka's 3 s initial delay, so tests run fast."""
    b = BrokerProcess(tmp_path / "data", args=GROUP_TEST_ARGS).start()
    yield b
    try:
        code = b.stop()
        assert code == 0, f"broker exit status {code}: {b.stderr()}"
        assert not b.leftovers(), f"processes left behind: {b.leftovers()}"
    finally:
        b.kill()
