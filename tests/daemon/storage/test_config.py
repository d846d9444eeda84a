"""LogConfig: Kafka's names and defaults; bad keys and values refused with the key named."""
import re

import pytest

from odradek.client.errors import InvalidConfig
from odradek.daemon.storage.config import NO_LIMIT, TOPIC_CONFIGS, LogConfig


def test_defaults_are_kafkas():
    c = LogConfig()
    assert c.segment_bytes == 1 << 30
    assert c.retention_ms == 7 * 24 * 3600 * 1000
    assert c.retention_bytes == -1
    assert c.index_interval_bytes == 4096
    assert c.flush_messages == NO_LIMIT and c.flush_ms == NO_LIMIT
    assert c.max_message_bytes == 1048588
    assert c.cleanup_policy == "delete" and c.delete


def test_values_from_strings_are_parsed():
    c = LogConfig({"segment.bytes": "2048", "message.timestamp.type": "LogAppendTime"})
    assert c.segment_bytes == 2048 and c.log_append_time


@pytest.mark.parametrize("values, message", [
    ({"segment.byte": 1}, "unknown topic config 'segment.byte'"),
    ({"segment.bytes": "ten"}, "segment.bytes='ten' is not valid"),
    ({"segment.bytes": 10}, "segment.bytes=10 is out of range"),
    ({"segment.bytes": 2 ** 31}, "out of range"),
    ({"retention.ms": -2}, "retention.ms=-2 is out of range"),
    ({"message.timestamp.type": "Now"}, "one of CreateTime, LogAppendTime"),
    ({"cleanup.policy": "compacted"}, "expected a comma-separated list of compact, delete"),
    ({"flush.messages": True}, "flush.messages=True is not valid"),
    ({"segment.bytes": 1.5}, "not valid"),
])
def test_bad_keys_and_values_are_refused_naming_the_key(values, message):
    with pytest.raises(InvalidConfig, match=re.escape(message)):
        LogConfig(values)


def test_overrides_make_a_new_config_and_leave_the_old_one():
    base = LogConfig({"segment.bytes": 4096})
    new = base.with_overrides({"retention.bytes": 100})
    assert base.retention_bytes == -1 and new.retention_bytes == 100 and new.segment_bytes == 4096
    with pytest.raises(AttributeError):
        base.segment_bytes = 1


def test_the_readme_lists_every_topic_config_with_its_default():
    import pathlib
    readme = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("## Topic configuration", 1)[1].split("\n## ", 1)[0]  # min.insync.replicas: both tables
    for key in TOPIC_CONFIGS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{key.name}` |")), None)
        assert row is not None, f"README has no row for {key.name}"
        default = ("never" if key.default == NO_LIMIT and key.kind is not bool else
                   str(key.default).lower() if key.kind is bool else str(key.default))   # Kafka writes false
        assert f"| {default} |" in row or f"| {default} " in row, f"README default of {key.name}: {row}"


def test_min_insync_replicas_is_a_topic_config_of_at_least_one():
    assert LogConfig().min_insync_replicas == 1            # Kafka's default
    assert LogConfig({"min.insync.replicas": "3"}).min_insync_replicas == 3
    # above any replication factor is accepted, as Kafka does: acks=all produces then fail
    assert LogConfig({"min.insync.replicas": 1000}).min_insync_replicas == 1000
    for bad, message in ((0, "min.insync.replicas=0 is out of range; expected an integer >= 1"),
                         (-1, "out of range"), ("two", "min.insync.replicas='two' is not valid"),
                         (1.5, "not valid"), (True, "not valid")):
        with pytest.raises(InvalidConfig, match=re.escape(message)):
            LogConfig({"min.insync.replicas": bad})
