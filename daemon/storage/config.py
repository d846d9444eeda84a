"""Topic-level log configuration: Kafka's dotted names, Kafka's defaults, checked values.

    cfg = LogConfig.from_dict({"segment.bytes": 16 << 20, "retention.ms": "3600000"})
    cfg.segment_bytes          # 16777216
    cfg.to_dict()              # every key with its value, dotted names

An unknown key or a bad value raises InvalidConfig naming the key and what it accepts;
nothing is half-applied. `TOPIC_CONFIGS` is the one table of keys (the README's config
reference is generated from it). Keys are checked one by one, then together (Kafka's
LogConfig.validateValues: min.compaction.lag.ms <= max.compaction.lag.ms).
"""
from dataclasses import dataclass

from odradek.client.errors import InvalidConfig

__all__ = ["LogConfig", "TOPIC_CONFIGS", "LIST_CONFIGS", "ConfigKey", "NO_LIMIT"]

NO_LIMIT = 2 ** 63 - 1  # Kafka's Long.MAX_VALUE: "never" for flush.messages and flush.ms
MAX_SEGMENT_BYTES = 2 ** 31 - 1  # index positions are 32-bit, as in Kafka


@dataclass(frozen=True)
class ConfigKey:
    name: str
    kind: type          # int, float, bool or str
    default: object
    low: object = None  # inclusive bounds for numbers
    high: object = None
    choices: tuple = ()
    doc: str = ""

    @property
    def attr(self):
        return self.name.replace(".", "_")

    def parse(self, raw):
        """The value of `raw` (a string from a file or CLI, or a number) for this key."""
        what = self.describe()
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("true", "false"):
                return str(raw).lower() == "true"
            raise InvalidConfig(f"{self.name}={raw!r} is not valid; expected {what}")
        if self.kind is str:
            value = str(raw)
            if self.choices:
                # cleanup.policy is a list, as in Kafka: "compact,delete" (either order) is both
                parts = [p.strip() for p in value.split(",")] if self.name == "cleanup.policy" else [value]
                if not all(p in self.choices for p in parts) or len(set(parts)) != len(parts):
                    raise InvalidConfig(f"{self.name}={raw!r} is not valid; expected {what}")
                value = ",".join(parts)
            return value
        if isinstance(raw, bool):
            raise InvalidConfig(f"{self.name}={raw!r} is not valid; expected {what}")
        try:
            value = self.kind(raw)
            if self.kind is int and isinstance(raw, float) and raw != value:
                raise ValueError
        except (TypeError, ValueError):
            raise InvalidConfig(f"{self.name}={raw!r} is not valid; expected {what}") from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN passes any bound check
            raise InvalidConfig(f"{self.name}={raw!r} is not valid; expected {what}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise InvalidConfig(f"{self.name}={raw!r} is out of range; expected {what}")
        return value

    def describe(self):
        if self.kind is bool:
            return "true or false"
        if self.choices:
            if self.name == "cleanup.policy":
                return "a comma-separated list of " + ", ".join(self.choices)
            return "one of " + ", ".join(self.choices)
        lo = "" if self.low is None else f">= {self.low}"
        hi = "" if self.high is None else f"<= {self.high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return f"{'an integer' if self.kind is int else 'a number'}{' ' + bounds if bounds else ''}"


_DAY_MS = 24 * 3600 * 1000

TOPIC_CONFIGS = (
    ConfigKey("segment.bytes", int, 1 << 30, 64, MAX_SEGMENT_BYTES,
              doc="roll a new segment when the active one would pass this size"),
    ConfigKey("segment.ms", int, 7 * _DAY_MS, 1, NO_LIMIT,
              doc="roll a new segment this long after the active one's first append"),
    ConfigKey("segment.index.bytes", int, 10 << 20, 8, MAX_SEGMENT_BYTES,
              doc="space reserved for each segment's offset index (time index: 1.5x)"),
    ConfigKey("index.interval.bytes", int, 4096, 0, MAX_SEGMENT_BYTES,
              doc="bytes of log between two index entries"),
    ConfigKey("retention.ms", int, 7 * _DAY_MS, -1, NO_LIMIT,
              doc="delete segments whose newest record is older than this (-1: keep)"),
    ConfigKey("retention.bytes", int, -1, -1, NO_LIMIT,
              doc="delete oldest segments while the partition is larger (-1: no limit)"),
    ConfigKey("flush.messages", int, NO_LIMIT, 1, NO_LIMIT,
              doc="fsync after this many records (default: never, as Kafka, which relies on replication "
                  "across log dirs)"),
    ConfigKey("flush.ms", int, NO_LIMIT, 0, NO_LIMIT,
              doc="fsync when this long has passed since the last fsync (default: never)"),
    ConfigKey("max.message.bytes", int, 1048588, 0, MAX_SEGMENT_BYTES,
              doc="largest record batch accepted, header included"),
    ConfigKey("message.timestamp.type", str, "CreateTime", choices=("CreateTime", "LogAppendTime"),
              doc="keep the producer's timestamps, or stamp batches with the broker's clock"),
    # Kafka 4's names and defaults (storage/timestamp_limits.py): a CreateTime record further
    # from the leader's clock is refused with INVALID_TIMESTAMP.
    ConfigKey("message.timestamp.before.max.ms", int, NO_LIMIT, 0, NO_LIMIT,
              doc="refuse a record whose CreateTime is more than this before the broker's clock "
                  "(INVALID_TIMESTAMP; default: no limit)"),
    ConfigKey("message.timestamp.after.max.ms", int, 3_600_000, 0, NO_LIMIT,
              doc="refuse a record whose CreateTime is more than this after the broker's clock "
                  "(INVALID_TIMESTAMP)"),
    # Kafka's bounds: at least 1, and a value above the replication factor is accepted (acks=all
    # produces to the topic then fail); the broker's min.insync.replicas is its default.
    ConfigKey("min.insync.replicas", int, 1, 1, 2 ** 31 - 1,
              doc="with acks=all, in-sync replicas a partition needs to take a batch, else "
                  "NOT_ENOUGH_REPLICAS"),
    ConfigKey("acks.all.fsync", bool, False,
              doc="acknowledge an acks=all produce only once every in-sync replica has fsynced it "
                  "(group commit: one fsync per replica covers every batch since its last), so it "
                  "survives a power loss; false: once they have it in memory, as Kafka does"),
    ConfigKey("unclean.leader.election.enable", bool, False,
              doc="when the leader dies with no other in-sync replica running, let an out-of-sync one "
                  "lead (the records it lacks are lost, and logged); false: the partition waits for "
                  "its leader"),
    ConfigKey("cleanup.policy", str, "delete", choices=("compact", "delete"),
              doc="delete: drop old segments (retention.*); compact: keep the latest record per "
                  "key (storage/cleaner.py); compact,delete: both"),
    # The log cleaner's keys (Kafka's names, defaults and bounds; storage/cleaner.py):
    ConfigKey("min.cleanable.dirty.ratio", float, 0.5, 0.0, 1.0,
              doc="compact a log when its uncleaned bytes are more than this share of it"),
    ConfigKey("delete.retention.ms", int, _DAY_MS, 0, NO_LIMIT,
              doc="how long a compacted topic keeps a tombstone after the cleaner first sees it"),
    ConfigKey("min.compaction.lag.ms", int, 0, 0, NO_LIMIT,
              doc="a record stays uncompacted at least this long (segments with newer records wait)"),
    ConfigKey("max.compaction.lag.ms", int, NO_LIMIT, 1, NO_LIMIT,
              doc="a record stays uncompacted at most this long (cleans below the dirty ratio; rolls)"),
)
_BY_NAME = {k.name: k for k in TOPIC_CONFIGS}
# Keys whose value is a comma-separated list (Kafka's type LIST): IncrementalAlterConfigs'
# APPEND and SUBTRACT apply to them only.
LIST_CONFIGS = ("cleanup.policy",)


class LogConfig:
    """Immutable topic configuration. Attribute names are the keys with '_' for '.'."""

    __slots__ = ("_values",)

    def __init__(self, values=None):
        merged = {k.name: k.default for k in TOPIC_CONFIGS}
        for name, raw in (values or {}).items():
            key = _BY_NAME.get(name)
            if key is None:
                raise InvalidConfig(f"unknown topic config {name!r}; known keys: "
                                    + ", ".join(sorted(_BY_NAME)))
            merged[name] = key.parse(raw)
        lag_min, lag_max = merged["min.compaction.lag.ms"], merged["max.compaction.lag.ms"]
        if lag_min > lag_max:  # Kafka's LogConfig.validateValues, same words
            raise InvalidConfig(f"conflict topic config setting min.compaction.lag.ms ({lag_min}) > "
                                f"max.compaction.lag.ms ({lag_max})")
        object.__setattr__(self, "_values", merged)

    @classmethod
    def from_dict(cls, values):
        return cls(values)

    def with_overrides(self, values):
        """A new LogConfig: this one with `values` applied on top."""
        return LogConfig({**self._values, **(values or {})})

    def to_dict(self):
        return dict(self._values)

    def __getattr__(self, attr):
        try:
            return self._values[attr.replace("_", ".")]
        except KeyError:
            raise AttributeError(attr) from None

    def __setattr__(self, attr, value):
        raise AttributeError("LogConfig is immutable; use with_overrides()")

    def __eq__(self, other):
        return isinstance(other, LogConfig) and self._values == other._values

    def __repr__(self):
        changed = {k: v for k, v in self._values.items() if v != _BY_NAME[k].default}
        return f"LogConfig({changed})"

    @property
    def delete(self):
        return "delete" in self.cleanup_policy.split(",")

    @property
    def compact(self):
        return "compact" in self.cleanup_policy.split(",")

    @property
    def max_segment_ms(self):
        """How long the active segment may live (Kafka's LogConfig.maxSegmentMs): segment.ms,
        or max.compaction.lag.ms when the log is compacted and that is shorter, so a record
        never waits in the (uncleanable) active segment longer than the lag allows."""
        if self.compact and self.max_compaction_lag_ms > 0:
            return min(self.max_compaction_lag_ms, self.segment_ms)
        return self.segment_ms

    @property
    def log_append_time(self):
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def timestamp_limits(self):
        """(before, after) ms: message.timestamp.before/after.max.ms, which a leader checks
        a CreateTime record against; None when nothing is checked (LogAppendTime, or
        neither limits anything)."""
        before, after = self.message_timestamp_before_max_ms, self.message_timestamp_after_max_ms
        if self.log_append_time or (before == NO_LIMIT and after == NO_LIMIT):
            return None
        return before, after
