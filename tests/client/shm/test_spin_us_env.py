"""ODRADEK_SPIN_US (client/shm/waiting.py): read once at import; a value that is no number
warns and leaves the default instead of making every import of the client fail."""
import os
import subprocess
import sys

import pytest

from odradek._native import lib

PRINT = "import odradek.client.shm.waiting as w; print(w.SPIN_MAX_NS)"


def spin_max_ns(value):
    env = {**os.environ, "ODRADEK_SPIN_US": value}
    p = subprocess.run([sys.executable, "-W", "always", "-c", PRINT], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return int(p.stdout), p.stderr


@pytest.mark.parametrize("value", ["fifty", "1e", "nan", "50us"])
def test_a_value_that_is_no_number_warns_and_spins_the_default(value):
    ns, err = spin_max_ns(value)
    assert ns == 50_000 and "RuntimeWarning" in err and "ODRADEK_SPIN_US" in err and repr(value) in err


@pytest.mark.parametrize("value, expected", [("", 50_000), ("0", 0), ("12.5", 12_500), ("-3", 0),
                                             ("inf", lib.ODK_SPIN_MAX_NS), ("1e9", lib.ODK_SPIN_MAX_NS)])
def test_numbers_are_microseconds_within_the_c_limit(value, expected):
    ns, err = spin_max_ns(value)
    assert ns == expected and "Warning" not in err
