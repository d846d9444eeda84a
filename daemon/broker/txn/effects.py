"""What comes out of the transaction coordinator (effects). Like the group coordinator's
(daemon/broker/groups/effects.py, whose Reply and Persist these are), every call returns
a list of effects, which the broker loop applies in order:

    Reply(conn, handle, result)   send `result` (a response Struct or an OdradekError) to
                                  the request `handle` of connection `conn`; dropped if it
                                  has closed.
    Persist(records, token)       append `records` ((key, value or None), ...) to
                                  __transaction_state, in the order emitted; then call
                                  coordinator.persisted(token, now, error).
    WriteMarkers(markers, token)  send each WriteTxnMarkerRequest in `markers` to the leader
                                  of its partition, and for each answer call
                                  coordinator.marker_written(token, topic, partition, now,
                                  error) (error None when written). The coordinator retries
                                  what failed itself (a later WriteMarkers).
    Note(transactional_id, text)  something an operator may want in the log.
"""
from dataclasses import dataclass

from odradek.daemon.broker.groups.effects import Persist, Reply

__all__ = ["Reply", "Persist", "WriteMarkers", "Note"]


@dataclass(frozen=True)
class WriteMarkers:
    markers: tuple       # (m.WriteTxnMarkerRequest, ...), one per partition
    token: int


@dataclass(frozen=True)
class Note:
    transactional_id: str
    text: str
