"""kafkajs (npm) against the listener: admin, a keyed producer with headers, a consumer group
that commits."""
import json
import shutil

import pytest

from support.interop import node

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js: install Node 18+")


def test_admin_produce_and_group_consume(bootstrap, topic_name):
    n = 30
    out = json.loads(node("roundtrip.js", bootstrap, topic_name, f"g-{topic_name}", str(n)).stdout.splitlines()[-1])
    assert out["listed"]
    assert sorted((r["key"], r["value"], r["h"]) for r in out["seen"]) == sorted(
        (f"k{i}", f"v{i}", f"x{i}") for i in range(n))
    per_partition = {}
    for r in out["seen"]:
        per_partition.setdefault(r["partition"], []).append(r["offset"])
    assert all(offs == list(range(len(offs))) for offs in per_partition.values())   # in order, from 0
    committed = {p["partition"]: int(p["offset"]) for t in out["offsets"] for p in t["partitions"]}
    assert committed == {p: len(offs) for p, offs in per_partition.items()}
