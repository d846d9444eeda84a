"""client/_liveness.py: the look at the broker that the Producer and the Consumer share,
against a real broker (stopped and started again), and against a socket nobody serves."""
import time

from odradek.client._liveness import LIVENESS_CHECK_S, Liveness, connect_again


def test_a_look_happens_at_most_once_per_check_interval_and_sees_a_stopped_broker(broker):
    client = connect_again(broker.socket_path, time.monotonic() + 5, 0.01)
    try:
        live = Liveness()
        assert live.due(100.0) and live.broker_gone(client, 100.0) is False
        assert broker.stop() == 0
        # the broker is gone, but no look is due before the interval is over
        assert not live.due(100.0 + LIVENESS_CHECK_S / 2)
        assert live.broker_gone(client, 100.0 + LIVENESS_CHECK_S / 2) is False
        assert live.broker_gone(client, 100.0 + LIVENESS_CHECK_S) is True
        live.look_again_soon()
        assert live.due(100.0 + LIVENESS_CHECK_S)
    finally:
        client.close()
        broker.start()


def test_connect_again_gives_up_at_its_deadline_when_nobody_answers(tmp_path):
    t0 = time.monotonic()
    assert connect_again(str(tmp_path / "nobody.sock"), t0 + 0.2, 0.02) is None
    assert 0.2 <= time.monotonic() - t0 < 2.0


def test_connect_again_stops_when_told_to_give_up(tmp_path):
    calls = []
    assert connect_again(str(tmp_path / "nobody.sock"), time.monotonic() + 30, 0.01,
                         give_up=lambda: calls.append(1) or len(calls) >= 3) is None
    assert len(calls) == 3


def test_connect_again_reaches_a_broker_that_answers(broker):
    client = connect_again(broker.socket_path, time.monotonic() + 5, 0.01)
    try:
        assert client is not None and not client.peer_closed()
    finally:
        client.close()
