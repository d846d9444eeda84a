"""Partition limits: derived from the host's memory, open files and tasks, or configured."""
import pytest

from odradek.client.errors import InvalidPartitions, PolicyViolation
from odradek.daemon.broker import limits
from odradek.daemon.broker.limits import BROKER_FDS_PER_PARTITION, TASKS_PER_WORKER, WORKER_MEMORY_BYTES
from odradek.daemon.broker.metadata import Metadata
from odradek.daemon.storage import LogConfig

GIB = 1 << 30


@pytest.mark.parametrize("mem, nofile, tasks, expected", [
    (24 * GIB, 20_000, 32_768, 20_000 // 2 // BROKER_FDS_PER_PARTITION),     # open files bind (this VM)
    (2 * GIB, 1 << 20, 1 << 22, 2 * GIB // 2 // WORKER_MEMORY_BYTES),       # memory binds
    (64 * GIB, 1 << 20, 3000, 3000 // 2 // TASKS_PER_WORKER),               # tasks bind
    (0, 0, 0, 1),                                                           # never below one
])
def test_the_default_is_the_smallest_of_the_three_budgets(mem, nofile, tasks, expected):
    got = limits.derive(mem_total=mem, nofile=nofile, tasks=tasks)
    assert (got.total, got.per_topic) == (expected, expected)
    assert f"derived {expected} = min(memory " in got.derived_from


def test_configured_limits_win_and_per_topic_defaults_to_the_total():
    assert (limits.derive(500, 0, GIB, 1024, 1000).total, limits.derive(500, 0, GIB, 1024, 1000).per_topic) == (500, 500)
    assert limits.derive(500, 20, GIB, 1024, 1000).per_topic == 20


def test_this_host_gets_a_positive_limit():
    assert limits.derive().total >= 1


def test_creates_and_increases_above_the_limits_change_nothing(tmp_path):
    md = Metadata([str(tmp_path)])
    lim = limits.PartitionLimits(total=10, per_topic=6)
    md.create_topic("a", 6, 1, {}, LogConfig(), lim)
    with pytest.raises(InvalidPartitions, match=r"would have 7 partitions; the limit is 6 \(max.partitions.per.topic\)"):
        md.create_topic("b", 7, 1, {}, LogConfig(), lim)
    with pytest.raises(PolicyViolation, match=r"would have 11 partitions \(6 in use \+ 5\); the limit is 10 "
                                               r"\(max.partitions\)"):
        md.create_topic("b", 5, 1, {}, LogConfig(), lim)
    with pytest.raises(InvalidPartitions, match="max.partitions.per.topic"):
        md.create_partitions("a", 7, lim)
    md.create_topic("b", 4, 1, {}, LogConfig(), lim)
    with pytest.raises(PolicyViolation, match="max.partitions"):
        md.create_partitions("b", 5, lim)
    assert {n: len(t.partitions) for n, t in md.topics.items()} == {"a": 6, "b": 4}
