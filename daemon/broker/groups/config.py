"""The group coordinator's settings, defined once.

GROUP_CONFIGS is the one table of the broker keys the coordinator reads (Kafka's names,
defaults, bounds and docs). The broker's config table (daemon/broker/config.py) takes
these keys from here, and GroupConfig's fields follow from them: a key's field is its
name without "group.", dots as underscores (group.max.size -> max_size).
"""
from dataclasses import dataclass

from odradek.client.errors import InvalidConfig
from odradek.daemon.storage.config import ConfigKey

__all__ = ["GroupConfig", "GROUP_CONFIGS"]

_INT32_MAX = 2 ** 31 - 1

GROUP_CONFIGS = (
    ConfigKey("group.initial.rebalance.delay.ms", int, 3000, 0, _INT32_MAX,
              doc="how long the first rebalance of an empty group waits for more members"),
    ConfigKey("group.min.session.timeout.ms", int, 6000, 1, _INT32_MAX,
              doc="smallest session.timeout.ms a consumer may ask for"),
    ConfigKey("group.max.session.timeout.ms", int, 1_800_000, 1, _INT32_MAX,
              doc="largest session.timeout.ms a consumer may ask for"),
    ConfigKey("group.max.size", int, _INT32_MAX, 1, _INT32_MAX, doc="most members in one group"),
    ConfigKey("offset.metadata.max.bytes", int, 4096, 0, _INT32_MAX,
              doc="longest metadata string of a committed offset"),
)
_KEYS = {k.name: k for k in GROUP_CONFIGS}


def _field(key):
    return key.name.removeprefix("group.").replace(".", "_")


def _default(name):
    return _KEYS[name].default


@dataclass(frozen=True)
class GroupConfig:
    """Broker settings of the coordinator (Kafka's names in KAFKA_NAMES, from GROUP_CONFIGS)."""
    initial_rebalance_delay_ms: int = _default("group.initial.rebalance.delay.ms")
    min_session_timeout_ms: int = _default("group.min.session.timeout.ms")
    max_session_timeout_ms: int = _default("group.max.session.timeout.ms")
    max_size: int = _default("group.max.size")
    offset_metadata_max_bytes: int = _default("offset.metadata.max.bytes")
    new_member_join_timeout_ms: int = 300_000   # a new member's JoinGroup waits at most this (not a key)

    KAFKA_NAMES = {k.name: _field(k) for k in GROUP_CONFIGS}

    @classmethod
    def from_mapping(cls, mapping):
        """A GroupConfig from Kafka's dotted names; other keys are ignored."""
        return cls(**{_field(k): k.parse(mapping[k.name]) for k in GROUP_CONFIGS if k.name in mapping})

    def __post_init__(self):
        for key in GROUP_CONFIGS:   # each value within its key's bounds
            key.parse(getattr(self, _field(key)))
        if self.new_member_join_timeout_ms < 0:
            raise InvalidConfig("new_member_join_timeout_ms must not be negative")
        if self.min_session_timeout_ms > self.max_session_timeout_ms:
            raise InvalidConfig("group.min.session.timeout.ms is above group.max.session.timeout.ms")
