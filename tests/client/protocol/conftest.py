"""Fixtures for the protocol tests: hypothesis strategies derived from the schema itself,
and helpers that count open fds (so a test can prove it leaked none)."""
import os

import pytest
from hypothesis import strategies as st

from odradek.client.protocol import _schema


def strategy_for(t, version=0):
    """Values of wire type `t` as the encoder accepts them at `version`."""
    if isinstance(t, _schema.Int):
        return st.integers(t.min_value, t.max_value)
    if isinstance(t, _schema.Boolean):
        return st.booleans()
    if isinstance(t, _schema.String):
        base = st.text(max_size=12)
        return st.none() | base if t.nullable else base
    if isinstance(t, _schema.Bytes):
        base = st.binary(max_size=12)
        return st.none() | base if t.nullable else base
    if isinstance(t, _schema.Array):
        base = st.lists(strategy_for(t.item, version), max_size=3)
        return st.none() | base if t.nullable else base
    if isinstance(t, _schema.Map):
        return st.dictionaries(strategy_for(t.key, version), strategy_for(t.value, version),
                               max_size=3)
    if isinstance(t, _schema.StructType):
        return message_strategy(t.cls, version)
    raise AssertionError(f"no strategy for {t!r}")


def message_strategy(cls, version=0):
    """Instances of Struct `cls` with every field present at `version` drawn freely
    (fields added later keep their defaults, as decoding at `version` gives them)."""
    return st.builds(cls, **{f.name: strategy_for(f.type, version)
                             for f in cls._fields if f.since <= version})


class Strategies:
    """Handed to tests as a fixture: @given needs strategies, and tests/ helpers live
    outside this folder's reach, so the builders travel this way."""
    of_type = staticmethod(strategy_for)
    message = staticmethod(message_strategy)


@pytest.fixture(scope="session")
def strategies():
    return Strategies()


def open_fds():
    """The set of this process's open fd numbers."""
    return set(int(n) for n in os.listdir("/proc/self/fd"))


@pytest.fixture
def no_fd_leak():
    """Fails the test if it ends with more open fds than it began with."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert not leaked, f"fds leaked: {sorted(leaked)}"
