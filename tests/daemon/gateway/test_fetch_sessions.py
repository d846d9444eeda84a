"""KIP-227 fetch sessions, sans-IO: what each (session_id, epoch) pair means, epochs,
the bounded cache, and which partitions an incremental answer lists."""
import random

from kio.schema.errors import ErrorCode

from odradek.daemon.gateway.fetch_sessions import FetchSessions, SessionPartition


def test_sessionless_and_new_sessions():
    s = FetchSessions(rng=random.Random(1))
    assert s.resolve(0, -1) == (None, False, ErrorCode.none)          # full fetch, no session
    new, incremental, error = s.resolve(0, 0)
    assert new.id > 0 and new.epoch == 1 and not incremental and error == ErrorCode.none
    assert s.resolve(0, 3) == (None, False, ErrorCode.invalid_fetch_session_epoch)


def test_incremental_epochs_and_unknown_ids():
    s = FetchSessions(rng=random.Random(2))
    session, _, _ = s.resolve(0, 0)
    assert s.resolve(session.id, 2)[2] == ErrorCode.invalid_fetch_session_epoch
    got, incremental, error = s.resolve(session.id, 1)
    assert got is session and incremental and error == ErrorCode.none
    session.advance()
    assert s.resolve(session.id, 1)[2] == ErrorCode.invalid_fetch_session_epoch   # an epoch used already
    assert s.resolve(session.id, 2)[0] is session
    assert s.resolve(session.id + 1, 1)[2] == ErrorCode.fetch_session_id_not_found


def test_closing_and_replacing_a_session():
    s = FetchSessions(rng=random.Random(3))
    first, _, _ = s.resolve(0, 0)
    assert s.resolve(first.id, -1) == (None, False, ErrorCode.none)     # closed: a full sessionless fetch
    assert s.resolve(first.id, 1)[2] == ErrorCode.fetch_session_id_not_found
    second, _, _ = s.resolve(0, 0)
    third, _, _ = s.resolve(second.id, 0)                               # closes second, opens another
    assert third is not second and s.resolve(second.id, 1)[2] == ErrorCode.fetch_session_id_not_found


def test_the_cache_is_bounded_least_recently_used_first():
    s = FetchSessions(max_sessions=3, rng=random.Random(4))
    a, b, c = (s.resolve(0, 0)[0] for _ in range(3))
    s.resolve(a.id, 1)                      # a used: b is now the oldest
    s.resolve(0, 0)
    assert len(s) == 3
    assert s.resolve(b.id, 1)[2] == ErrorCode.fetch_session_id_not_found
    assert s.resolve(c.id, 1)[0] is c


def test_epoch_wraps_to_one():
    s = FetchSessions(rng=random.Random(5))
    session, _, _ = s.resolve(0, 0)
    session.epoch = (1 << 31) - 1
    session.advance()
    assert session.epoch == 1


def test_an_incremental_answer_lists_what_changed():
    s = FetchSessions(rng=random.Random(6))
    session, _, _ = s.resolve(0, 0)
    session.partitions[("t", 0)] = SessionPartition("t", 0, 1024, -1)
    assert session.changed(("t", 0), ErrorCode.none, None, (5, 5, 0))           # first answer
    assert not session.changed(("t", 0), ErrorCode.none, None, (5, 5, 0))       # nothing new
    assert session.changed(("t", 0), ErrorCode.none, object(), (5, 5, 0))       # records
    assert session.changed(("t", 0), ErrorCode.none, None, (6, 5, 0))           # high watermark moved
    assert session.changed(("t", 0), ErrorCode.offset_out_of_range, None, (6, 5, 0))   # an error
