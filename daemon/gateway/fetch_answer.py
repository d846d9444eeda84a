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
(sent with sendfile), and the frame's size counts the slices' bytes; a slice whose bytes
were read already (fetch.py reads a small answer's) may go inline instead.

The hot path is a few struct packs per partition into one bytearray (a consumer trailing
a producer gets an answer per batch): PartitionAnswer is a slots object, not a dict;
lengths and counts below 2**14 are taken from a table of their uvarints.
"""
import struct

from odradek.client.records.varint import encode_uvarint
from odradek.daemon.gateway.apis import FileSlice

__all__ = ["encode", "PartitionAnswer", "FLEXIBLE_FROM"]

FLEXIBLE_FROM = 12
_I16, _I32 = struct.Struct(">h"), struct.Struct(">i")
_PARTITION_V4 = struct.Struct(">ihqq")     # partition_index, error_code, high_watermark, last_stable_offset
_PARTITION = struct.Struct(">ihqqq")       # ... and log_start_offset (v5+)
_ABORTED = struct.Struct(">qq")
_TOP = struct.Struct(">iihi")              # correlation_id, throttle_time_ms, error_code, session_id (v7+)
_TOP_V4 = struct.Struct(">ii")             # correlation_id, throttle_time_ms
_TOP_FLEXIBLE = struct.Struct(">ixihi")    # ... with the header's tagged fields (uvarint 0) after the id
_NO_REPLICA = _I32.pack(-1)                # preferred_read_replica (v11+): the gateway names none
# encode_uvarint(n) for the lengths and counts of most answers, without a call that loops
_UVARINTS = tuple(map(encode_uvarint, range(1 << 14)))


class PartitionAnswer:
    """One partition of a Fetch answer, as fetch.py fills it. aborted_transactions:
    [(producer_id, first_offset)] or None (null: Kafka's answer to read_uncommitted and
    with an error, whose offsets are -1 too); records: bytes, None (null) or a
    FileSlice. diverging_epoch and current_leader (tagged fields: kio encodes an answer
    with either) are (epoch, end_offset) and (leader_id, leader_epoch), or None."""
    __slots__ = ("partition_index", "error_code", "high_watermark", "last_stable_offset", "log_start_offset",
                 "aborted_transactions", "records", "diverging_epoch", "current_leader")

    def __init__(self, partition_index, error_code, high_watermark=-1, last_stable_offset=-1, log_start_offset=-1,
                 aborted_transactions=None, records=b""):
        self.partition_index, self.error_code = partition_index, error_code
        self.high_watermark, self.last_stable_offset, self.log_start_offset = \
            high_watermark, last_stable_offset, log_start_offset
        self.aborted_transactions, self.records = aborted_transactions, records
        self.diverging_epoch = self.current_leader = None

    def fields(self):
        """The answer as kio's FetchResponse partition fields (a dict for codec.build)."""
        out = dict(partition_index=self.partition_index, error_code=self.error_code,
                   high_watermark=self.high_watermark, last_stable_offset=self.last_stable_offset,
                   log_start_offset=self.log_start_offset, preferred_read_replica=-1, records=self.records,
                   aborted_transactions=None if self.aborted_transactions is None else [
                       dict(producer_id=pid, first_offset=first) for pid, first in self.aborted_transactions])
        if self.diverging_epoch is not None:
            out["diverging_epoch"] = dict(epoch=self.diverging_epoch[0], end_offset=self.diverging_epoch[1])
        if self.current_leader is not None:
            out["current_leader"] = dict(leader_id=self.current_leader[0], leader_epoch=self.current_leader[1])
        return out


def _uvarint(n):
    return _UVARINTS[n] if n < 16384 else encode_uvarint(n)


def encode(correlation_id, version, session_id, error_code, topics, inline=False):
    """The framed answer's parts. `topics`: [(topic name or uuid.UUID, [PartitionAnswer])],
    none with a tagged field. With `inline`, a FileSlice whose bytes were read already
    (its `data`) is written as those bytes: an answer whose slices all were is one part."""
    flexible = version >= FLEXIBLE_FROM
    if flexible:
        out = bytearray(_TOP_FLEXIBLE.pack(correlation_id, 0, error_code, session_id))
        out += _uvarint(len(topics) + 1)
        null, empty = b"\0", b"\1"      # a null array or bytes; an empty array (count+1)
    else:
        out = bytearray(_TOP.pack(correlation_id, 0, error_code, session_id) if version >= 7
                        else _TOP_V4.pack(correlation_id, 0))
        out += _I32.pack(len(topics))
        null, empty = b"\xff\xff\xff\xff", b"\0\0\0\0"
    v5, v11, by_id = version >= 5, version >= 11, version >= 13
    parts, sliced = [], 0
    for key, answers in topics:
        if by_id:
            out += key.bytes if key is not None else bytes(16)     # kio reads the zero uuid as None
        else:
            name = key.encode()
            out += _uvarint(len(name) + 1) if flexible else _I16.pack(len(name))
            out += name
        out += _uvarint(len(answers) + 1) if flexible else _I32.pack(len(answers))
        for a in answers:
            if v5:
                out += _PARTITION.pack(a.partition_index, a.error_code, a.high_watermark, a.last_stable_offset,
                                       a.log_start_offset)
            else:
                out += _PARTITION_V4.pack(a.partition_index, a.error_code, a.high_watermark, a.last_stable_offset)
            aborted = a.aborted_transactions
            if aborted is None:
                out += null
            elif not aborted:
                out += empty
            else:
                out += _uvarint(len(aborted) + 1) if flexible else _I32.pack(len(aborted))
                for producer_id, first_offset in aborted:
                    out += _ABORTED.pack(producer_id, first_offset)
                    if flexible:
                        out += b"\0"
            if v11:
                out += _NO_REPLICA
            records = a.records
            if records is None:
                out += null
            elif records.__class__ is FileSlice:
                n = records.length
                out += _uvarint(n + 1) if flexible else _I32.pack(n)
                if inline and records.data is not None:
                    out += records.data
                else:
                    parts.append(bytes(out))
                    parts.append(records)
                    sliced += n
                    out = bytearray()
            else:
                out += _uvarint(len(records) + 1) if flexible else _I32.pack(len(records))
                out += records
            if flexible:
                out += b"\0"
        if flexible:
            out += b"\0"
    if flexible:
        out += b"\0"
    if not parts:
        return [_I32.pack(len(out)) + out]
    parts.append(bytes(out))
    size = sum(len(p) for p in parts if p.__class__ is not FileSlice) + sliced
    parts[0] = _I32.pack(size) + parts[0]
    return parts
