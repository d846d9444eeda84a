"""Kafka's default partitioner: murmur2, keyed partitions, and the sticky partitioner.

kafka-python's murmur2 returns the 32 bits unsigned, Java (and ours) signed: they are
compared as `ours & 0xffffffff == theirs`.
"""
import random
import warnings

import pytest
from hypothesis import given, settings, strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # kafka-python's import-time noise
    from kafka.partitioner.default import DefaultPartitioner, murmur2 as kafka_python_murmur2

from odradek.client.partitioner import StickyPartitioner, murmur2, partition_for_key

# Apache Kafka's UtilsTest.testMurmur2 (signed, as Java returns them).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# kafka-python's test_murmur2_java_compatibility: partitions out of 1000, checked there
# against Java's DefaultPartitioner.
JAVA_PARTITIONS_OF_1000 = [
    (b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742),
]


class FakeCluster:
    """The three methods of kafka-python's ClusterMetadata its partitioners call."""

    def __init__(self, topic, partitions):
        self.topic, self.partitions = topic, list(partitions)

    def topics(self):
        return {self.topic}

    def partitions_for_topic(self, topic):
        return set(self.partitions)

    def available_partitions_for_topic(self, topic):
        return set(self.partitions)


@pytest.mark.parametrize("data, expected", KAFKA_VECTORS)
def test_murmur2_matches_kafkas_own_vectors(data, expected):
    assert murmur2(data) == expected


@pytest.mark.parametrize("key, partition", JAVA_PARTITIONS_OF_1000)
def test_partition_for_key_matches_javas_default_partitioner(key, partition):
    assert partition_for_key(key, 1000) == partition


@settings(max_examples=500)
@given(st.binary(min_size=0, max_size=300))
def test_murmur2_equals_kafka_python(data):
    ours = murmur2(data)
    assert -2**31 <= ours < 2**31
    assert ours & 0xffffffff == kafka_python_murmur2(data)


def test_murmur2_every_length_and_tail_including_high_bytes():
    # Every tail length (0-3) with bytes >= 0x80, where Java's signed bytes are masked.
    rng = random.Random(7)
    for n in range(0, 300):
        for data in (bytes(rng.randrange(256) for _ in range(n)), b"\xff" * n, b"\x80" * n):
            assert murmur2(data) & 0xffffffff == kafka_python_murmur2(data)


def test_murmur2_takes_bytes_like_objects():
    data = b"0123456789abcdefg"
    assert murmur2(bytearray(data)) == murmur2(memoryview(data)) == murmur2(data)


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=300), st.integers(min_value=1, max_value=5000))
def test_partition_for_key_equals_kafka_python_default_partitioner(key, n):
    cluster = FakeCluster("t", range(n))
    expected = DefaultPartitioner().partition("t", key, key, None, None, cluster)
    assert partition_for_key(key, n) == expected


def test_partition_for_key_uses_to_positive_not_abs():
    # murmur2(b"21") is negative: toPositive masks the sign bit; abs() would differ.
    h = murmur2(b"21")
    assert h < 0
    assert partition_for_key(b"21", 1000) == (h & 0x7fffffff) % 1000 != abs(h) % 1000


def test_partition_for_key_one_partition_and_bad_counts():
    assert partition_for_key(b"anything", 1) == 0
    for bad in (0, -3):
        with pytest.raises(ValueError):
            partition_for_key(b"k", bad)


# ---- StickyPartitioner --------------------------------------------------------------

def test_sticky_partition_stays_until_a_batch_is_sent():
    sticky = StickyPartitioner(random.Random(1))
    first = sticky.partition("t", 8)
    assert 0 <= first < 8
    assert all(sticky.partition("t", 8) == first for _ in range(50))


def test_sticky_new_batch_moves_to_a_different_partition_and_sticks_there():
    sticky = StickyPartitioner(random.Random(2))
    current = sticky.partition("t", 4)
    for _ in range(200):
        nxt = sticky.new_batch("t", 4, current)
        assert nxt != current and 0 <= nxt < 4
        assert sticky.partition("t", 4) == nxt
        current = nxt


def test_sticky_new_batch_spreads_over_all_other_partitions():
    sticky = StickyPartitioner(random.Random(3))
    seen = set()
    current = sticky.partition("t", 5)
    for _ in range(500):
        current = sticky.new_batch("t", 5, current)
        seen.add(current)
    assert seen == set(range(5))


def test_sticky_stale_new_batch_changes_nothing():
    sticky = StickyPartitioner(random.Random(4))
    current = sticky.partition("t", 6)
    other = (current + 1) % 6
    assert sticky.new_batch("t", 6, other) == current
    assert sticky.partition("t", 6) == current


def test_sticky_single_partition_stays_on_zero():
    sticky = StickyPartitioner(random.Random(5))
    assert sticky.partition("t", 1) == 0
    assert sticky.new_batch("t", 1, 0) == 0


def test_sticky_is_deterministic_with_a_seeded_random():
    def run(seed):
        sticky = StickyPartitioner(random.Random(seed))
        out = [sticky.partition("a", 10), sticky.partition("b", 10)]
        for _ in range(20):
            out.append(sticky.new_batch("a", 10, out[-2]))
        return out

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_sticky_topics_are_independent():
    sticky = StickyPartitioner(random.Random(6))
    a, b = sticky.partition("a", 1000), sticky.partition("b", 1000)
    sticky.new_batch("a", 1000, a)
    assert sticky.partition("b", 1000) == b


def test_sticky_repicks_when_partition_count_shrinks_and_forget():
    sticky = StickyPartitioner(random.Random(7))
    current = sticky.partition("t", 100)
    while current < 10:
        current = sticky.new_batch("t", 100, current)
    assert sticky.partition("t", 10) < 10
    sticky.forget("t")
    assert 0 <= sticky.partition("t", 3) < 3


def test_sticky_first_new_batch_without_partition_call_picks_one():
    sticky = StickyPartitioner(random.Random(8))
    p = sticky.new_batch("t", 4, -1)
    assert 0 <= p < 4 and sticky.partition("t", 4) == p
    with pytest.raises(ValueError):
        StickyPartitioner().partition("t", 0)
