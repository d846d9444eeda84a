"""What goes into the coordinator (Peer) and what comes out of it (effects).

The coordinator never touches a socket, a log or a clock. Every call returns a list of
effects; the broker loop applies them in order:

    Reply(conn, handle, result)   send `result` on connection `conn` as the answer to the
                                  request it knows by `handle` (e.g. its correlation id).
                                  `result` is a response Struct, or an OdradekError to send
                                  as an error response. A reply to a connection that has
                                  closed is dropped.
    Persist(records, token)       append `records` — (key bytes, value bytes or None for a
                                  tombstone), in this order — to __consumer_offsets. When
                                  `token` is not None, call coordinator.persisted(token,
                                  now, error, offset) once the append is durable
                                  (error=None, offset=the batch's base offset in the log)
                                  or has failed (error=the OdradekError): replies that depend
                                  on the write are held until then. Persists must be
                                  appended in the order they were emitted. `producer`,
                                  if not None, is (producer id, epoch): append them as
                                  that producer's transactional batch (TxnOffsetCommit).
    Note(group_id, text)          something an operator may want in the log (a rebalance
                                  and its reason, a member removed and why).
"""
from dataclasses import dataclass
from typing import Any, Hashable

__all__ = ["Peer", "Reply", "Persist", "Note"]


@dataclass(frozen=True)
class Peer:
    """Who sent a request: `conn` is any hashable key that names the control connection
    for as long as it is open and is never reused for a later one (the broker's
    connection object itself will do; an fd number will not); the rest is shown by
    DescribeGroups."""
    conn: Hashable
    client_id: str = ""
    pid: int = 0
    uid: int = 0
    host: str | None = None     # a member behind the connection says where it is (JoinGroup v1)

    @property
    def client_host(self):
        return f"pid:{self.pid} uid:{self.uid}" if self.host is None else self.host


@dataclass(frozen=True)
class Reply:
    conn: Hashable
    handle: Any
    result: Any          # a response Struct, or an OdradekError


@dataclass(frozen=True)
class Persist:
    records: tuple       # ((key: bytes, value: bytes | None), ...)
    token: int | None = None
    producer: tuple | None = None   # (producer id, epoch): a transactional batch of theirs


@dataclass(frozen=True)
class Note:
    group_id: str
    text: str
