"""Malformed control frames are logged a bounded number of times, with the peer's uid."""
import logging
from types import SimpleNamespace

import pytest

from odradek.daemon.broker.malformed import INTERVAL_S, LINES_PER_INTERVAL, MalformedCount, MalformedLog


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="odradek.daemon.broker.server")
    return lambda: [r.getMessage() for r in caplog.records]


def peer(pid, uid=1000):
    return SimpleNamespace(pid=pid, uid=uid)


def test_a_connection_gets_its_first_frame_a_summary_per_interval_and_a_total_at_close(lines):
    clock = Clock()
    logger, me, count = MalformedLog(clock), peer(42, 1001), MalformedCount()
    for _ in range(1000):
        logger.frame(me, count, "INVALID_REQUEST: bad body")
    assert lines() == ["client pid 42 uid 1001: malformed frame: INVALID_REQUEST: bad body "
                       f"(more from this connection are summarised every {INTERVAL_S:.0f}s)"]
    clock.now += INTERVAL_S
    logger.frame(me, count, "MESSAGE_TOO_LARGE: huge")
    assert lines()[-1] == f"client pid 42 uid 1001: 1000 more malformed frames in the last {INTERVAL_S:.0f}s, " \
                          "latest: MESSAGE_TOO_LARGE: huge"
    logger.frame(me, count, "again")
    logger.closed(me, count)
    assert lines()[-1] == "client pid 42 uid 1001 closed its connection after 1002 malformed frames " \
                          "(1 of them not logged before)"
    assert len(lines()) == 3


def test_a_connection_whose_frames_were_all_logged_closes_quietly(lines):
    logger, count = MalformedLog(Clock()), MalformedCount()
    logger.frame(peer(1), count, "bad")
    logger.closed(peer(1), count)
    assert len(lines()) == 1


def test_many_connections_share_a_budget_then_one_line_counts_the_rest(lines):
    clock = Clock()
    logger = MalformedLog(clock)
    for i in range(500):
        count = MalformedCount()
        logger.frame(peer(i, uid=i % 2), count, "bad")
        logger.frame(peer(i, uid=i % 2), count, "bad")
        logger.closed(peer(i, uid=i % 2), count)
    assert len(lines()) == LINES_PER_INTERVAL
    assert logger.summary_due == 1000.0 + INTERVAL_S
    logger.tick()
    assert len(lines()) == LINES_PER_INTERVAL   # not due yet
    clock.now = logger.summary_due
    logger.tick()
    assert logger.summary_due is None
    logged = LINES_PER_INTERVAL // 2 * 2   # each logged connection: its first frame, then its close
    assert lines()[-1] == f"{1000 - logged} malformed frames from {500 - LINES_PER_INTERVAL // 2} " \
                          f"connections (uids 0, 1) not logged in the last {INTERVAL_S:.0f}s"
