"""The `impl` fixture of the native test suites: each implementation of a native API in
turn, C (its CFFI wrapper module) then the pure-Python reference; the C run is skipped
only when odradek._native is not built."""
import importlib

import pytest


def impl_fixture(c_module, reference):
    """A module-scoped fixture yielding the module named `c_module`, then `reference`."""
    try:
        c_impl, skip = importlib.import_module(c_module), None
    except ImportError as e:   # odradek._native not built
        c_impl, skip = None, f"odradek._native cannot be imported ({e}); build it first"

    @pytest.fixture(scope="module", params=["c", "python"])
    def impl(request):
        if request.param == "c":
            if c_impl is None:
                pytest.skip(skip)
            return c_impl
        return reference
    return impl
