"""Transaction messages (KIP-98). Declared as tables (see `messages` for the rules);
import them from `messages`.

WriteTxnMarker (1010) is the broker's request to one partition's leader worker: write a
transaction's end marker (a control batch, client/records/FORMAT.md) for one producer.
It is our own per-partition form of Kafka's inter-broker WriteTxnMarkers (27): the
transaction coordinator sends one per partition of the transaction, and completes the
transaction once every partition has answered.
"""
from odradek.client.protocol._schema import BOOL, INT16, INT32, INT64, STRING, Struct
from odradek.client.protocol._messages_base import ApiKey


# ---- WriteTxnMarker (1010): broker -> partition leader, internal --------------------------
# The leader appends one control batch (producer id and epoch below, isTransactional and
# isControl set, one record: key (version 0, type 0 abort / 1 commit), value (version 0,
# coordinator_epoch)), ends the producer's open transaction on the partition (its first
# offset leaves the last-stable-offset computation; an abort is added to the segment's
# aborted-transaction index) and answers once the marker is at or below the high
# watermark, as Kafka's coordinator writes markers with acks=all. An epoch below the
# producer's current one is refused with INVALID_PRODUCER_EPOCH (a fenced coordinator's
# late marker changes nothing); a producer with no open transaction on the partition
# still gets its marker written, as Kafka does (the coordinator may retry).

class WriteTxnMarkerRequest(Struct):
    API_KEY = ApiKey.WRITE_TXN_MARKER
    FIELDS = [
        ("topic",              STRING,  "",     0),
        ("partition",          INT32,   0,      0),
        ("producer_id",        INT64,   -1,     0),
        ("producer_epoch",     INT16,   -1,     0),
        ("committed",          BOOL,    False,  0),   # True: COMMIT marker, False: ABORT
        ("coordinator_epoch",  INT32,   0,      0),
    ]


class WriteTxnMarkerResponse(Struct):
    API_KEY = ApiKey.WRITE_TXN_MARKER
    FIELDS = [
        ("offset",  INT64,  -1,  0),   # the marker's offset in the partition
    ]
