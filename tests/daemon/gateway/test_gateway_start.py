"""What a gateway process loads at start: not hypothesis, which kio would otherwise
import (and register strategies with) whenever it is installed, as in the dev venv:
~0.2 s of every gateway start."""
import subprocess
import sys


def test_the_gateway_process_does_not_import_hypothesis():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "odradek.daemon.gateway", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "kio.serial" in imported                      # the codec was loaded ...
    # ... without hypothesis: its package never loads (kio's attempt at hypothesis.strategies
    # is logged, and fails at once)
    assert "hypothesis" not in imported and "hypothesis.internal" not in " ".join(imported)
