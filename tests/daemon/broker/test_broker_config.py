"""Broker config: TOML with Kafka's names, an embedded default, bad keys refused by name."""
import pytest

from odradek.client.errors import InvalidConfig
from odradek.daemon.broker.config import BROKER_CONFIGS, BrokerConfig, load
from odradek.daemon.broker.groups import GroupConfig


def write(tmp_path, text):
    path = tmp_path / "odradek.toml"
    path.write_text(text)
    return str(path)


def test_dev_mode_puts_the_socket_inside_the_data_dir(tmp_path):
    c = BrokerConfig.for_data_dir(str(tmp_path))
    assert c.log_dirs == (str(tmp_path),)
    assert c.socket_path == str(tmp_path / "odradek.sock")
    assert c.default_replication_factor == 1 and c.min_insync_replicas == 1


def test_the_default_replication_factor_is_three_where_three_log_dirs_exist(tmp_path):
    dirs = f'log.dirs = ["{tmp_path}/a", "{tmp_path}/b", "{tmp_path}/c", "{tmp_path}/d"]\n'
    c = load(write(tmp_path, dirs))
    assert c.default_replication_factor == 3 and c.min_insync_replicas == 2   # Kafka operators' advice
    assert load(write(tmp_path, f'log.dirs = ["{tmp_path}/a", "{tmp_path}/b"]\n')).default_replication_factor == 2
    one = load(write(tmp_path, f'log.dirs = ["{tmp_path}/a"]\n'))
    assert one.default_replication_factor == 1 and one.min_insync_replicas == 1
    assert load(write(tmp_path, dirs + "default.replication.factor = 1\n")).min_insync_replicas == 1
    with pytest.raises(InvalidConfig, match="default.replication.factor=5 needs at least 5 log.dirs"):
        load(write(tmp_path, dirs + "default.replication.factor = 5\n"))


def test_dotted_keys_and_tables_mean_the_same(tmp_path):
    a = load(write(tmp_path, 'log.retention.ms = 5000\nnum.partitions = 3\n'))
    b = load(write(tmp_path, '[log.retention]\nms = 5000\n[num]\npartitions = 3\n'))
    assert a.topic_defaults == b.topic_defaults and a.topic_defaults.retention_ms == 5000
    assert a.num_partitions == b.num_partitions == 3


def test_broker_names_set_topic_defaults(tmp_path):
    c = load(write(tmp_path, 'log.segment.bytes = 4096\nmessage.max.bytes = 1000\n'
                             'log.message.timestamp.type = "LogAppendTime"\n'))
    assert c.topic_defaults.segment_bytes == 4096
    assert c.topic_defaults.max_message_bytes == 1000
    assert c.topic_defaults.log_append_time


@pytest.mark.parametrize("text, message", [
    ("nope = 1\n", "unknown config key 'nope'"),
    ("segment.bytes = 1\n", "as a broker default it is 'log.segment.bytes'"),
    ('log.segment.bytes = "big"\n', "log.segment.bytes='big' is not valid"),
    ("num.partitions = 0\n", "num.partitions=0 is out of range"),
    ('socket.mode = "rw"\n', "socket.mode='rw' is not valid"),
    ('auto.create.topics.enable = "maybe"\n', "expected true or false"),
    ("log.dirs = []\n", "expected a list of paths"),
    ('log.dirs = ["/a", "/a"]\n', "lists a directory twice"),
    ('log.dirs = ["/a"]\ndefault.replication.factor = 2\n', "needs at least 2 log.dirs"),
    ("this is not toml\n", "is not valid TOML"),
])
def test_a_bad_config_file_is_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(InvalidConfig, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(write(tmp_path, text))


def test_a_missing_config_file_says_what_to_pass(tmp_path):
    with pytest.raises(InvalidConfig, match="does not exist; pass --config PATH or --data-dir DIR"):
        load(str(tmp_path / "missing.toml"))


def test_the_example_config_in_systemd_is_valid():
    import pathlib
    path = pathlib.Path(__file__).parents[3] / "systemd" / "odradek.toml"
    c = load(str(path))
    assert c.socket_path == "/run/odradek/odradek.sock"


def test_describe_lists_every_broker_key(tmp_path):
    described = BrokerConfig.for_data_dir(str(tmp_path)).describe()
    assert all(k.name in described for k in BROKER_CONFIGS)
    assert described["log.segment.bytes"] == 1 << 30


def test_broker_min_insync_replicas_is_the_topic_default(tmp_path):
    derived = BrokerConfig.for_data_dir(str(tmp_path))      # 0: 2 for 3+ replicas, else 1
    assert derived.defaults_for(1).min_insync_replicas == 1
    assert derived.defaults_for(3).min_insync_replicas == 2
    assert not derived.sets_topic_default("min.insync.replicas")  # DEFAULT_CONFIG in describe_configs
    assert derived.defaults_for(3).segment_bytes == derived.topic_defaults.segment_bytes
    set_ = BrokerConfig.for_data_dir(str(tmp_path), {"min.insync.replicas": 3, "log.segment.bytes": 4096})
    assert set_.defaults_for(1).min_insync_replicas == set_.defaults_for(3).min_insync_replicas == 3
    assert set_.defaults_for(1).segment_bytes == 4096
    assert set_.sets_topic_default("min.insync.replicas") and set_.sets_topic_default("segment.bytes")
    assert not set_.sets_topic_default("retention.ms")


def test_the_group_settings_come_from_the_one_table_of_group_keys(tmp_path):
    assert BrokerConfig.for_data_dir(str(tmp_path)).group == GroupConfig()   # the same defaults
    c = load(write(tmp_path, "group.initial.rebalance.delay.ms = 0\ngroup.max.size = 7\n"))
    assert (c.group.initial_rebalance_delay_ms, c.group.max_size) == (0, 7)
    assert c.describe()["group.max.size"] == 7
    with pytest.raises(InvalidConfig, match="odradek.toml: group.min.session.timeout.ms is above"):
        load(write(tmp_path, "group.min.session.timeout.ms = 10\ngroup.max.session.timeout.ms = 5\n"))
