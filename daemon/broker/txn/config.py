"""The transaction coordinator's settings, defined once.

TXN_CONFIGS is the one table of the broker keys the coordinator reads (Kafka's names,
defaults and docs: TransactionStateManagerConfig). The broker's config table
(daemon/broker/config.py) takes these keys from here, and TxnConfig's fields follow
from them: a key's field is its name with dots as underscores, without the leading
"transaction." / "transactional." (transaction.max.timeout.ms -> max_timeout_ms).
"""
from dataclasses import dataclass

from odradek.daemon.storage.config import ConfigKey

__all__ = ["TxnConfig", "TXN_CONFIGS"]

_INT32_MAX = 2 ** 31 - 1

TXN_CONFIGS = (
    ConfigKey("transaction.max.timeout.ms", int, 900_000, 1, _INT32_MAX,
              doc="largest transaction.timeout.ms a producer may ask for (InitProducerId answers "
                  "INVALID_TRANSACTION_TIMEOUT above it)"),
    ConfigKey("transactional.id.expiration.ms", int, 604_800_000, 1, _INT32_MAX,
              doc="a transactional id with no open transaction and no update for this long is forgotten"),
    ConfigKey("transaction.abort.timed.out.transaction.cleanup.interval.ms", int, 10_000, 1, _INT32_MAX,
              doc="how often transactions open longer than their transaction.timeout.ms are looked for "
                  "(and aborted)"),
    ConfigKey("transaction.remove.expired.transaction.cleanup.interval.ms", int, 3_600_000, 1, _INT32_MAX,
              doc="how often expired transactional ids (transactional.id.expiration.ms) are looked for"),
)
_KEYS = {k.name: k for k in TXN_CONFIGS}


def _field(key):
    return key.name.removeprefix("transactional.").removeprefix("transaction.").replace(".", "_")


def _default(name):
    return _KEYS[name].default


@dataclass(frozen=True)
class TxnConfig:
    """Broker settings of the transaction coordinator (from TXN_CONFIGS)."""
    max_timeout_ms: int = _default("transaction.max.timeout.ms")
    id_expiration_ms: int = _default("transactional.id.expiration.ms")
    abort_timed_out_transaction_cleanup_interval_ms: int = _default(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms")
    remove_expired_transaction_cleanup_interval_ms: int = _default(
        "transaction.remove.expired.transaction.cleanup.interval.ms")

    @classmethod
    def from_mapping(cls, mapping):
        """A TxnConfig from Kafka's dotted names; other keys are ignored."""
        return cls(**{_field(k): k.parse(mapping[k.name]) for k in TXN_CONFIGS if k.name in mapping})

    def __post_init__(self):
        for key in TXN_CONFIGS:   # each value within its key's bounds
            key.parse(getattr(self, _field(key)))
