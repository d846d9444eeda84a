"""The public surface of odradek.client.shm, pinned: the broker and the client code
against these names."""
import inspect

import odradek.client.shm as shm
from odradek.client.errors import OdradekError

EXPECTED = {"Ring", "Completion", "Doorbell", "PartitionState", "PartitionStateFds",
            "PartitionSnapshot", "BatchDescriptor", "readonly_fd", "WaitSet", "wait_for_any",
            "TornState", "ShmCorrupt", "RingFull", "NotInWindow", "BadLayout", "SealUnsupported"}

METHODS = {
    "Ring": ["create", "attach", "set_doorbell", "reserve", "commit", "cancel", "write",
             "wait_for_space", "write_completion", "peek", "release", "wait",
             "read_completion", "close"],
    "Doorbell": ["create", "attach", "ring", "wait", "close"],
    "PartitionState": ["create", "attach", "read", "wait_for_change", "find", "update",
                       "append", "truncate", "fence", "take_over", "close"],
}


def test_all_lists_exactly_the_public_names():
    assert set(shm.__all__) == EXPECTED and len(shm.__all__) == len(EXPECTED)
    for name in shm.__all__:
        assert getattr(shm, name) is not None


def test_each_class_has_its_promised_methods():
    for cls, names in METHODS.items():
        for name in names:
            assert callable(getattr(getattr(shm, cls), name)), f"{cls}.{name}"


def test_errors_are_odradek_errors_with_distinct_codes_and_names():
    errors = [shm.TornState, shm.ShmCorrupt, shm.RingFull, shm.NotInWindow, shm.BadLayout,
              shm.SealUnsupported]
    assert all(inspect.isclass(e) and issubclass(e, OdradekError) for e in errors)
    assert len({e.code for e in errors}) == len({e.name for e in errors}) == len(errors)
    assert all(1100 <= e.code < 1200 for e in errors)
    from odradek.client import errors as client_errors
    assert all(client_errors.error_for_code(e.code) is e for e in errors), "one table for all errors"
