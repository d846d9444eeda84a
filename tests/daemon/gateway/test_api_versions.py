"""ApiVersions through the gateway: the table it advertises, v5's check of the cluster and
node a client expects, KIP-511's fallback for a version it does not know, and a connection
closed (not hung) on what it does not serve."""
import struct

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsV3
from kio.schema.describe_cluster.v0.request import DescribeClusterRequest as DescribeClusterV0
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32

from odradek.daemon.gateway.apis import API_VERSIONS, table
from odradek.daemon.gateway.metadata_api import NODE_ID
from odradek.daemon.gateway.newer_layouts import ApiVersionsRequestV5
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


def _v5(cluster_id, node_id):
    return ApiVersionsRequestV5(client_software_name="t", client_software_version="1", cluster_id=cluster_id,
                                node_id=i32(node_id))


def test_api_versions_v5_checks_the_cluster_and_node_the_client_expects(gateway):
    """Kafka 4.4's Java client opens each connection with v5, naming the cluster and node it
    expects once it knows them. As Kafka 4.4 answers (tried against it): neither, or both
    this broker's, gets the table; both with either not this broker's, REBOOTSTRAP_REQUIRED;
    one without the other, INVALID_REQUEST; an error lists no APIs, and the connection goes
    on."""
    with KafkaWire(gateway.port) as wire:
        cluster = wire.call(DescribeClusterV0(include_cluster_authorized_operations=False)).cluster_id
        assert cluster
        for request, error in [(_v5(None, -1), ErrorCode.none), (_v5(cluster, NODE_ID), ErrorCode.none),
                               (_v5("another-cluster", NODE_ID), ErrorCode.rebootstrap_required),
                               (_v5(cluster, NODE_ID + 1), ErrorCode.rebootstrap_required),
                               (_v5(None, NODE_ID), ErrorCode.invalid_request),
                               (_v5(cluster, -1), ErrorCode.invalid_request),
                               (_v5("", -1), ErrorCode.invalid_request)]:
            response = wire.call(request)
            assert response.error_code == error, (request, response)
            if error == ErrorCode.none:
                assert {a.api_key: a.max_version for a in response.api_keys}[API_VERSIONS] == 5
            else:
                assert response.api_keys == ()
