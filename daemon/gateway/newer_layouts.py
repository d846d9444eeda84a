"""Message layouts newer than the pinned kio's, written as kio writes its own.

kio (setup.py pins it) is generated from Kafka's JSON message specs up to some Kafka
release; a layout a current client negotiates that it does not have yet is defined here,
field for field from Kafka's spec, in kio's form (frozen dataclasses whose field metadata
name the Kafka type, the flexible flag and the header schema), so that kio's own readers
and writers serve it. codec.py asks this table before kio's index.

- ApiVersions v5 (Kafka 4.4's Java client opens every connection with it; a broker
  without it costs that client one more round trip per connection, KIP-511's fallback): the
  request adds `cluster_id` (nullable string) and `node_id` (int32), the cluster and node
  the client believes it is talking to, so that a broker reached at an address that now
  belongs to another cluster or node says so (REBOOTSTRAP_REQUIRED) instead of serving
  stale metadata. The response is v4's, byte for byte.
"""
from dataclasses import dataclass, field
from typing import ClassVar

from kio.schema.api_versions.v4 import response as api_versions_v4_response
from kio.schema.request_header.v2.header import RequestHeader
from kio.static.constants import EntityType
from kio.static.primitive import i16, i32

__all__ = ["REQUESTS", "RESPONSES"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsRequestV5:
    __type__: ClassVar = EntityType.request
    __version__: ClassVar[i16] = i16(5)
    __flexible__: ClassVar[bool] = True
    __api_key__: ClassVar[i16] = i16(18)
    __header_schema__: ClassVar[type[RequestHeader]] = RequestHeader
    client_software_name: str = field(metadata={"kafka_type": "string"})
    client_software_version: str = field(metadata={"kafka_type": "string"})
    cluster_id: str | None = field(metadata={"kafka_type": "string"}, default=None)
    """The cluster the client expects, or null (then node_id is -1)."""
    node_id: i32 = field(metadata={"kafka_type": "int32"}, default=i32(-1))
    """The node the client expects, or -1."""


# (api key, version) -> class
REQUESTS = {(18, 5): ApiVersionsRequestV5}
RESPONSES = {(18, 5): api_versions_v4_response.ApiVersionsResponse}
