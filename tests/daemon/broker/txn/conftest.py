"""Fixtures of the transaction coordinator's tests: a Harness (support/txn.py) per test."""
import pytest
from support.txn import Harness


@pytest.fixture
def h():
    return Harness()
