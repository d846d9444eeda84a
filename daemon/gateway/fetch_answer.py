"""Fetch answers encoded by hand: the gateway's most frequent answer (a consumer trailing
a producer gets one per batch), where kio's encoder cost 25-35 us for one partition and
this costs a few.

`encode` writes Kafka's FetchResponse (v4-v18) for answers without tagged fields: no
diverging_epoch, current_leader or snapshot_id in a partition and no node_endpoints;
fetch.py sends those through kio. The bytes are kio's for the same answer, field for
field (tests/daemon/gateway/test_fetch_answer.py compares them over every version):

    frame      size:int32, correlation_id:int32, [v12+: tagged fields: uvarint 0]
    body       throttle_time_ms:int32, (v7+: error_code:int16, session_id:int32),
               responses: ARRAY of topic
    topic      v4-v12: topic:STRING; v13+: topic_id:uuid (16 bytes);
               partitions: ARRAY of partition, [v12+: tagged fields]
    partition  partition_index:int32, error_code:int16, high_watermark:int64,
               last_stable_offset:int64, log_start_offset:int64 (v5+),
               aborted_transactions: NULLABLE ARRAY of (producer_id:int64,
               first_offset:int64, [v12+: tagged fields]),
               preferred_read_replica:int32 (v11+), records: NULLABLE BYTES,
               [v12+: tagged fields]
    end        [v12+: the body's tagged fields]

ARRAY is int32 count (null: -1) before v12, uvarint count+1 (null: 0) from v12 (the
flexible versions); STRING and BYTES likewise with their length, STRING int16 before v12.
A partition's records may be a FileSlice: the parts then alternate bytes and slices
(sent with sendfile), and the frame's size counts the slices' bytes.
"""
import struct

from odradek.client.records.varint import encode_uvarint
from odradek.daemon.gateway.apis import FileSlice

__all__ = ["encode", "FLEXIBLE_FROM"]

FLEXIBLE_FROM = 12
_I16, _I32 = struct.Struct(">h"), struct.Struct(">i")
_PARTITION = struct.Struct(">ihqq")        # partition_index, error_code, high_watermark, last_stable_offset
_I64 = struct.Struct(">q")
_ABORTED = struct.Struct(">qq")
_TOP = struct.Struct(">ihi")               # throttle_time_ms, error_code, session_id


def encode(correlation_id, version, session_id, error_code, topics):
    """The framed answer's parts. `topics`: [(topic name or uuid.UUID, [answer])], each
    answer a dict with fetch.py's keys (partition_index, error_code, high_watermark,
    last_stable_offset, log_start_offset, aborted_transactions: list of dicts or None,
    preferred_read_replica, records: bytes, None or a FileSlice)."""
    flexible = version >= FLEXIBLE_FROM
    count = _count_flexible if flexible else _count
    null = b"\0" if flexible else b"\xff\xff\xff\xff"      # a null array or bytes
    out = bytearray(_I32.pack(correlation_id))
    if flexible:
        out += b"\0"
    out += _TOP.pack(0, error_code, session_id) if version >= 7 else _I32.pack(0)
    out += count(len(topics))
    parts, sliced = [], 0
    for key, answers in topics:
        if version >= 13:
            out += key.bytes if key is not None else bytes(16)     # kio reads the zero uuid as None
        else:
            name = key.encode()
            out += encode_uvarint(len(name) + 1) if flexible else _I16.pack(len(name))
            out += name
        out += count(len(answers))
        for a in answers:
            out += _PARTITION.pack(a["partition_index"], a["error_code"], a["high_watermark"],
                                   a["last_stable_offset"])
            if version >= 5:
                out += _I64.pack(a["log_start_offset"])
            aborted = a["aborted_transactions"]
            if aborted is None:
                out += null
            else:
                out += count(len(aborted))
                for t in aborted:
                    out += _ABORTED.pack(t["producer_id"], t["first_offset"])
                    if flexible:
                        out += b"\0"
            if version >= 11:
                out += _I32.pack(a["preferred_read_replica"])
            records = a["records"]
            if records is None:
                out += null
            else:
                n = len(records) if not isinstance(records, FileSlice) else records.length
                out += encode_uvarint(n + 1) if flexible else _I32.pack(n)
                if isinstance(records, FileSlice):
                    parts.append(bytes(out))
                    parts.append(records)
                    sliced += n
                    out = bytearray()
                else:
                    out += records
            if flexible:
                out += b"\0"
        if flexible:
            out += b"\0"
    if flexible:
        out += b"\0"
    parts.append(bytes(out))
    size = sum(len(p) for p in parts if not isinstance(p, FileSlice)) + sliced
    parts[0] = _I32.pack(size) + parts[0]
    return parts


def _count(n):
    return _I32.pack(n)


def _count_flexible(n):
    return encode_uvarint(n + 1)
