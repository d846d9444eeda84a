"""Raw Kafka requests built from plain values, for the tests of the gateway's admin,
config and transaction APIs (their fixtures: tests/daemon/gateway/admin/conftest.py)."""
import kio.index

from odradek.daemon.gateway.apis import table
from odradek.daemon.gateway.codec import build

__all__ = ["request", "versions"]


def request(key, version, **values):
    """kio's request entity of api `key` at `version` from plain values (nested dicts)."""
    return build(kio.index.load_request_schema(key, version), values)


def versions(key):
    """[lowest, highest] version the gateway serves of api `key`."""
    api = table()[key]
    return [api.min_version, api.max_version]
