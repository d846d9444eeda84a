"""kcat (librdkafka 2.0, Debian's package) against the listener: produce and consume with keys
and headers, every codec, and a consumer group that commits and resumes."""
import shutil

import pytest

from support.interop import create_topic, run

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is missing: run `make interop-tools`")

FORMAT = "%k|%s|%h|%p|%o\\n"     # key|value|headers|partition|offset


def produce(bootstrap, topic, lines, *extra):
    run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-K", ":", *extra], input="".join(f"{l}\n" for l in lines))


def consume_all(bootstrap, topic, *extra):
    out = run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT, *extra])
    return [line.split("|") for line in out.stdout.splitlines()]


def test_keys_headers_and_offsets(bootstrap, topic_name):
    create_topic(bootstrap, topic_name)
    produce(bootstrap, topic_name, [f"k{i}:v{i}" for i in range(5)], "-H", "trace=abc")
    got = consume_all(bootstrap, topic_name)
    assert [(k, v, h, p, o) for k, v, h, p, o in got] == [
        (f"k{i}", f"v{i}", "trace=abc", "0", str(i)) for i in range(5)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_codec(bootstrap, topic_name, codec):
    create_topic(bootstrap, topic_name)
    values = [f"k{i}:{codec}-{'x' * (i * 50)}" for i in range(20)]
    produce(bootstrap, topic_name, values, "-z", codec, "-X", "linger.ms=50")
    got = consume_all(bootstrap, topic_name)
    assert [(k, v) for k, v, *_ in got] == [tuple(l.split(":", 1)) for l in values]


def test_group_commits_and_resumes(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, partitions=2)
    group = f"g-{topic_name}"
    produce(bootstrap, topic_name, [f"k{i}:first{i}" for i in range(10)])
    first = run(["kcat", "-b", bootstrap, "-G", group, topic_name, "-o", "beginning", "-e", "-q", "-f", FORMAT,
                 "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=100"])
    assert sorted(l.split("|")[1] for l in first.stdout.splitlines()) == sorted(f"first{i}" for i in range(10))
    produce(bootstrap, topic_name, [f"k{i}:second{i}" for i in range(4)])
    second = run(["kcat", "-b", bootstrap, "-G", group, topic_name, "-e", "-q", "-f", FORMAT])
    assert sorted(l.split("|")[1] for l in second.stdout.splitlines()) == sorted(f"second{i}" for i in range(4))
