"""Broker configuration: a TOML file, Kafka's key names, an embedded default.

    # /etc/odradek/odradek.toml
    log.dirs = ["/var/lib/odradek/a", "/var/lib/odradek/b", "/var/lib/odradek/c"]
    num.partitions = 8
    log.retention.ms = 86400000

TOML reads `log.dirs = ...` as a table `log` holding `dirs`; keys are flattened back to
their dotted names, so a file may use dotted keys or [tables] alike. Topic defaults use
Kafka's broker names (log.segment.bytes for segment.bytes, ...; see BROKER_TO_TOPIC).
An unknown key or a bad value is refused at start with the key named; nothing is read
from the environment or at import time.
"""
import dataclasses
import os
import tomllib
from dataclasses import dataclass

from odradek.client.admin import DEFAULT_SOCKET
from odradek.client.errors import InvalidConfig
from odradek.daemon.broker.groups.config import GROUP_CONFIGS, GroupConfig
from odradek.daemon.broker.txn.config import TXN_CONFIGS, TxnConfig
from odradek.daemon.gateway.listeners import listener_config
from odradek.daemon.gateway.produce_rings import DEFAULT_MAX_PRODUCE_RINGS
from odradek.daemon.storage.config import TOPIC_CONFIGS, ConfigKey, LogConfig

__all__ = ["BrokerConfig", "BROKER_CONFIGS", "BROKER_TO_TOPIC", "DEFAULT_SOCKET", "load"]

DEFAULT_DATA_DIR = "/var/lib/odradek"
DEV_LISTENERS = "PLAINTEXT://127.0.0.1:9092"   # dev mode's Kafka listener (--data-dir); off in a config file

# Kafka's broker-level names for the topic-level defaults (server.properties style).
BROKER_TO_TOPIC = {
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.index.size.max.bytes": "segment.index.bytes",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "message.max.bytes": "max.message.bytes",
    "log.message.timestamp.type": "message.timestamp.type",
    "log.message.timestamp.before.max.ms": "message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms": "message.timestamp.after.max.ms",
    "log.cleanup.policy": "cleanup.policy",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
}
_TOPIC_KEYS = {k.name: k for k in TOPIC_CONFIGS}


@dataclass(frozen=True)
class _ListKey:
    """A key whose value is a non-empty list of strings (log.dirs)."""
    name: str
    default: tuple
    doc: str = ""

    def parse(self, raw):
        if isinstance(raw, str):
            raw = [p for p in raw.split(",") if p]
        if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(p, str) and p for p in raw):
            raise InvalidConfig(f"{self.name}={raw!r} is not valid; expected a list of paths")
        return tuple(raw)


BROKER_CONFIGS = (
    _ListKey("log.dirs", (DEFAULT_DATA_DIR,),
             doc="data directories, ideally one per disk; replicas of a partition go to different ones"),
    ConfigKey("socket.path", str, DEFAULT_SOCKET, doc="the control socket clients connect to"),
    ConfigKey("socket.mode", str, "0660", doc="permission bits of the control socket (octal)"),
    ConfigKey("num.partitions", int, 8, 1, 100_000, doc="partitions of a topic created without a count"),
    ConfigKey("default.replication.factor", int, 0, 0, 100,
              doc="replicas of a new topic, each in its own log dir; 0 picks min(3, number of log.dirs)"),
    ConfigKey("min.insync.replicas", int, 0, 0, 100,
              doc="default of the topic config min.insync.replicas; 0 picks 2 for a topic of 3+ replicas, "
                  "else 1"),
    ConfigKey("replica.lag.time.max.ms", int, 30_000, 1, 2 ** 62,
              doc="a follower that has not caught up with its leader for this long leaves the ISR"),
    ConfigKey("auto.leader.rebalance.enable", bool, True,
              doc="give leadership back to each partition's preferred replica (the first listed) once it "
                  "is in sync again"),
    ConfigKey("leader.imbalance.check.interval.seconds", int, 300, 1, 2 ** 31,
              doc="how often the preferred replicas are checked"),
    ConfigKey("auto.create.topics.enable", bool, False,
              doc="create a topic on first produce or metadata request for it"),
    ConfigKey("log.retention.check.interval.ms", int, 300_000, 1, 2 ** 62,
              doc="how often retention runs"),
    ConfigKey("log.flush.offset.checkpoint.interval.ms", int, 60_000, 1, 2 ** 62,
              doc="accepted as in Kafka, no effect yet: a partition checkpoints its recovery point whenever it moves"),
    ConfigKey("log.cleaner.backoff.ms", int, 15_000, 1, 2 ** 62,
              doc="how often a partition with cleanup.policy=compact checks whether to compact"),
    *GROUP_CONFIGS,   # the group coordinator's keys: daemon/broker/groups/config.py
    *TXN_CONFIGS,     # the transaction coordinator's keys: daemon/broker/txn/config.py
    ConfigKey("max.partitions", int, 0, 0, 2 ** 31 - 1,
              doc="most partitions the broker takes in all (one worker process each); 0 derives it at "
                  "start: min(MemTotal/2 / 4 MiB, RLIMIT_NOFILE/2 / 7, tasks/2 / 3), see daemon/broker/limits.py"),
    ConfigKey("max.partitions.per.topic", int, 0, 0, 2 ** 31 - 1,
              doc="most partitions of one topic; 0 takes max.partitions"),
    ConfigKey("fetch.descriptor.slots", int, 1024, 2, 1 << 20,
              doc="batch descriptors per partition in shared memory (consumers near the end read through them)"),
    # The Kafka protocol listener (daemon/gateway/listeners.py; README "The Kafka listener")
    ConfigKey("listeners", str, "",
              doc="the Kafka protocol listener, NAME://host:port (PLAINTEXT://127.0.0.1:9092); empty: none "
                  f"(dev mode, --data-dir: {DEV_LISTENERS})"),
    ConfigKey("advertised.listeners", str, "",
              doc="the host:port Metadata and FindCoordinator tell clients, as NAME://host:port; empty: the "
                  "bound address; port 0: the bound port"),
    ConfigKey("socket.request.max.bytes", int, 100 * 1024 * 1024, 1024, 2 ** 31 - 1,
              doc="the largest Kafka request a client may send; a larger one closes its connection"),
    ConfigKey("max.connections", int, 1000, 1, 1_000_000,
              doc="Kafka connections open at once; one more is closed as it arrives"),
    ConfigKey("connections.max.idle.ms", int, 600_000, 100, 2 ** 62,
              doc="a Kafka connection that sends nothing, or takes none of its answer, for this long is closed"),
    ConfigKey("listener.processes", int, 2, 1, 64,
              doc="gateway processes serving the listener (they share its socket, and max.connections; a new "
                  "connection goes to the one with the fewest, so a producer and a consumer run in parallel)"),
    ConfigKey("listener.max.produce.rings", int, DEFAULT_MAX_PRODUCE_RINGS, 1, 1 << 20,
              doc="produce ring attachments (an idempotent client's partition, or a partition and acks of "
                  "the others) each gateway process holds at once; each costs 8 fds and up to 4.25 MiB of "
                  "shared memory; beyond it a partition's batches get NOT_ENOUGH_REPLICAS (retried)"),
    ConfigKey("listener.peer.uid.check", bool, True,
              doc="a loopback TCP client must be a user who may open the control socket (its uid, from "
                  "the kernel's sock_diag)"),
    ConfigKey("listener.allow.remote", bool, False,
              doc="let a PLAINTEXT listener bind a non-loopback address: clients from other hosts are not "
                  "checked"),
    ConfigKey("sasl.enabled.mechanisms", str, "PLAIN", doc="SASL mechanisms of a SASL_PLAINTEXT listener: PLAIN"),
    ConfigKey("sasl.plain.users.file", str, "",
              doc="a SASL_PLAINTEXT listener's users, USER:HASH lines ('odradek sasl-password USER')"),
)
_BROKER_KEYS = {k.name: k for k in BROKER_CONFIGS}


def _flatten(table, prefix=""):
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


class BrokerConfig:
    """Validated broker settings plus the topic defaults (a LogConfig)."""

    def __init__(self, values=None, source="<defaults>"):
        self.source = source
        self.dev_mode = False       # for_data_dir: a listener that cannot bind is a warning, not an error
        settings = {k.name: k.default for k in BROKER_CONFIGS}
        topic_overrides = {}
        for name, raw in (values or {}).items():
            if name in _BROKER_KEYS:
                try:
                    settings[name] = _BROKER_KEYS[name].parse(raw)
                except InvalidConfig as e:
                    raise InvalidConfig(f"{source}: {e.message}") from None
            elif name in BROKER_TO_TOPIC:
                topic_key = _TOPIC_KEYS[BROKER_TO_TOPIC[name]]
                try:  # parsed under the broker's name, so an error names the key in the file
                    topic_overrides[topic_key.name] = dataclasses.replace(topic_key, name=name).parse(raw)
                except InvalidConfig as e:
                    raise InvalidConfig(f"{source}: {e.message}") from None
            else:
                hint = ""
                if name in _TOPIC_KEYS:
                    hint = f" (as a broker default it is {_broker_name(name)!r})"
                raise InvalidConfig(f"{source}: unknown config key {name!r}{hint}; see 'odradek serve --help'")
        try:
            self.topic_defaults = LogConfig(topic_overrides)
        except InvalidConfig as e:
            raise InvalidConfig(f"{source}: {e.message}") from None
        mode = settings["socket.mode"]
        try:
            self.socket_mode = int(mode, 8)
            assert 0 <= self.socket_mode <= 0o777
        except (ValueError, AssertionError):
            raise InvalidConfig(f"{source}: socket.mode={mode!r} is not valid; expected octal bits like 0660") from None
        self.log_dirs = tuple(os.path.abspath(d) for d in settings["log.dirs"])
        if len(set(self.log_dirs)) != len(self.log_dirs):
            raise InvalidConfig(f"{source}: log.dirs lists a directory twice: {list(settings['log.dirs'])}")
        self.socket_path = os.path.abspath(settings["socket.path"])
        self.num_partitions = settings["num.partitions"]
        factor = settings["default.replication.factor"] or min(3, len(self.log_dirs))
        if factor > len(self.log_dirs):
            raise InvalidConfig(f"{source}: default.replication.factor={factor} needs at least {factor} "
                                f"log.dirs (replicas of a partition go to different dirs); there are "
                                f"{len(self.log_dirs)}")
        self.default_replication_factor = factor
        self._min_insync_setting = settings["min.insync.replicas"]
        self.min_insync_replicas = self.min_insync_for(factor)
        self.auto_create_topics = settings["auto.create.topics.enable"]
        self.retention_check_interval_ms = settings["log.retention.check.interval.ms"]
        self.checkpoint_interval_ms = settings["log.flush.offset.checkpoint.interval.ms"]
        self.replica_lag_time_max_ms = settings["replica.lag.time.max.ms"]
        self.auto_leader_rebalance = settings["auto.leader.rebalance.enable"]
        self.leader_imbalance_check_s = settings["leader.imbalance.check.interval.seconds"]
        self.descriptor_slots = settings["fetch.descriptor.slots"]
        self.max_partitions = settings["max.partitions"]
        self.max_partitions_per_topic = settings["max.partitions.per.topic"]
        self.cleaner_backoff_ms = settings["log.cleaner.backoff.ms"]
        self.listener = listener_config(settings, source)   # None: no Kafka listener
        try:
            self.group = GroupConfig.from_mapping(settings)
            self.txn = TxnConfig.from_mapping(settings)
        except InvalidConfig as e:
            raise InvalidConfig(f"{source}: {e.message}") from None
        self._settings = settings

    def min_insync_for(self, replication_factor):
        """min.insync.replicas for a topic of `replication_factor` replicas (0: 2 when it has 3+)."""
        return self._min_insync_setting or (2 if replication_factor >= 3 else 1)

    def defaults_for(self, replication_factor):
        """The topic defaults (a LogConfig) of a topic of `replication_factor` replicas: the
        log.* defaults, and min.insync.replicas from min_insync_for."""
        return self.topic_defaults.with_overrides(
            {"min.insync.replicas": self.min_insync_for(replication_factor)})

    def take_topic_defaults(self, new):
        """SIGHUP: the topic defaults of `new`, the config file reread, from now on
        (min.insync.replicas among them)."""
        self.topic_defaults = new.topic_defaults
        self._min_insync_setting = new._min_insync_setting
        self.min_insync_replicas = new.min_insync_replicas

    def sets_topic_default(self, key):
        """Whether the broker's config sets the default of topic config `key` (describe_configs'
        STATIC_BROKER_CONFIG), rather than leaving Kafka's (DEFAULT_CONFIG)."""
        if key == "min.insync.replicas":
            return self._min_insync_setting != 0
        return getattr(self.topic_defaults, key.replace(".", "_")) != _TOPIC_KEYS[key].default

    @classmethod
    def for_data_dir(cls, data_dir, values=None):
        """Dev mode: one log dir and the socket inside `data_dir` (what `make run` uses),
        the Kafka listener on DEV_LISTENERS."""
        data_dir = os.path.abspath(data_dir)
        merged = {"log.dirs": [data_dir], "socket.path": os.path.join(data_dir, "odradek.sock"),
                  "listeners": DEV_LISTENERS}
        merged.update(values or {})
        config = cls(merged, source=f"--data-dir {data_dir}")
        config.dev_mode = True
        return config

    def describe(self):
        """Every setting, dotted names, for `odradek status` and the log at start."""
        out = dict(self._settings)
        out.update({"log.dirs": list(self.log_dirs), "socket.path": self.socket_path,
                    "default.replication.factor": self.default_replication_factor,
                    "min.insync.replicas": self.min_insync_replicas})
        for broker_name, topic_name in BROKER_TO_TOPIC.items():
            out[broker_name] = getattr(self.topic_defaults, topic_name.replace(".", "_"))
        return out


def _broker_name(topic_name):
    return next((b for b, t in BROKER_TO_TOPIC.items() if t == topic_name), topic_name)


def load(path, overrides=None):
    """BrokerConfig from the TOML file at `path`, then `overrides` ({key: value}, as
    `odradek serve --override`); InvalidConfig names what is wrong."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidConfig(f"config file {path} does not exist; pass --config PATH or --data-dir DIR") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidConfig(f"config file {path} is not valid TOML: {e}") from None
    return BrokerConfig({**_flatten(table), **(overrides or {})}, source=path)
