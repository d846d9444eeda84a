"""ApiVersions through the gateway: the table it advertises, KIP-511's fallback for a
version it does not know, and a connection closed (not hung) on what it does not serve."""
import struct

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsV3
from kio.schema.errors import ErrorCode

from odradek.daemon.gateway.apis import API_VERSIONS, table
from support.broker import BrokerProcess, stop_cleanly
from support.gateway import GatewayProcess, KafkaWire


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw")
    broker = BrokerProcess(tmp / "data").start()
    gw = GatewayProcess(broker.socket_path, tmp).start()
    yield gw
    gw.stop()
    stop_cleanly(broker)


def test_api_versions_advertises_the_table(gateway):
    with KafkaWire(gateway.port) as wire:
        for request in (ApiVersionsV0(), ApiVersionsV3(client_software_name="t", client_software_version="1")):
            response = wire.call(request)
            assert response.error_code == ErrorCode.none
            served = {a.api_key: (a.min_version, a.max_version) for a in response.api_keys}
            assert served == {k: (a.min_version, a.max_version) for k, a in table().items()}
            assert API_VERSIONS in served


def test_api_versions_newer_than_known_gets_the_v0_fallback(gateway):
    """KIP-511: a client asking ApiVersions at a version the broker does not know gets a v0
    body with UNSUPPORTED_VERSION and the supported ranges, on the same connection."""
    with KafkaWire(gateway.port) as wire:
        wire.send_raw(struct.pack(">hhih", API_VERSIONS, 99, 41, 1) + b"x" + b"\0\0\0\0")
        body = wire.receive_raw()
        (cid, error, n) = struct.unpack_from(">ihi", body, 0)
        assert (cid, error) == (41, ErrorCode.unsupported_version.value)
        assert n == len(table())
        assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none    # the connection goes on


@pytest.mark.parametrize("frame", [
    struct.pack(">hhih", 9999, 0, 7, -1),           # an API key Kafka does not have
    struct.pack(">hhi", 18, 0, 7)[:5],              # shorter than a header
])
def test_what_it_cannot_serve_closes_the_connection(gateway, frame):
    """No layout to answer in (garbage in a known request: test_hostile_input.py)."""
    with KafkaWire(gateway.port) as wire:
        wire.send_raw(frame)
        assert wire.receive_raw() is None
    with KafkaWire(gateway.port) as wire:            # and the gateway goes on
        assert wire.call(ApiVersionsV0()).error_code == ErrorCode.none
