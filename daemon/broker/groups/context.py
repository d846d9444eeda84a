"""What the parts of the group coordinator share (membership.py, offsets.py, admin.py).

A Context holds every group, the settings, which connection has members in which
groups, the Persists waiting to be acknowledged, and the effects (effects.py) of the
call being run: each part appends to them through reply / answer / note / persist.
No I/O and no clock here either.
"""
import itertools
from collections import defaultdict

from odradek.client.errors import (
    CoordinatorNotAvailable, InvalidCommitOffsetSize, MessageTooLarge, OdradekError, UnknownServerError)
from odradek.daemon.broker.groups.effects import Note, Persist, Reply
from odradek.daemon.broker.groups.group import GroupState

__all__ = ["Context", "store_error"]


class Context:
    def __init__(self, config, new_member_id, partition_exists):
        self.config = config
        self.groups = {}                       # group id -> Group
        self.new_member_id = new_member_id     # prefix -> a new member id
        self.partition_exists = partition_exists
        self.conn_groups = defaultdict(set)    # conn -> ids of groups it has members in
        self._continuations = {}               # Persist token -> continuation(now, error)
        self._tokens = itertools.count(1)
        self._out = None

    def run(self, fn, *args):
        """Call fn(*args) and return the effects it emitted."""
        self._out = []
        try:
            fn(*args)
            return self._out
        finally:
            self._out = None

    def reset(self):
        """Forget every group and every Persist in flight (before a load)."""
        self.groups.clear()
        self._continuations.clear()
        self.conn_groups.clear()

    # ---- effects ----------------------------------------------------------------------
    def reply(self, conn, handle, result):
        self._out.append(Reply(conn, handle, result))

    def answer(self, waiter, result):
        if waiter is not None:
            self._out.append(Reply(waiter.conn, waiter.handle, result))

    def note(self, group_id, text):
        self._out.append(Note(group_id, text))

    def persist(self, records, continuation=None, producer=None, positioned=False):
        """Emit a Persist (a transactional one of `producer`, (id, epoch), if given);
        `continuation(now, error)` is called when it is acknowledged, with the batch's
        offset in __consumer_offsets after them if `positioned`."""
        token = None
        if continuation is not None:
            token = next(self._tokens)
            self._continuations[token] = (continuation, positioned)
        self._out.append(Persist(tuple(records), token, producer))
        return token

    def persisted(self, token, now, error, offset=-1):
        continuation, positioned = self._continuations.pop(token, (None, False))
        if continuation is None:
            raise KeyError(f"no Persist is waiting with token {token}")
        if positioned:
            continuation(now, error, offset)
        else:
            continuation(now, error)

    # ---- groups -----------------------------------------------------------------------
    def bind(self, group, conn):
        self.conn_groups[conn].add(group.group_id)

    def maybe_forget(self, group):
        """A group that never got past generation 0 and holds nothing disappears (as
        Kafka's periodic cleanup would remove it): no record was ever written for it."""
        if (group.is_(GroupState.EMPTY) and group.generation_id == 0 and not group.members
                and not group.pending_members and not group.offsets and not group.commits_in_flight
                and not group.pending_txn_offsets
                and self.groups.get(group.group_id) is group):
            del self.groups[group.group_id]


def store_error(error, group_id, commit=False):
    """Kafka's mapping of a failed __consumer_offsets append to what the client sees."""
    what = f"writing group {group_id} to __consumer_offsets failed: {error}"
    if isinstance(error, MessageTooLarge):
        return InvalidCommitOffsetSize(what) if commit else UnknownServerError(what)
    if isinstance(error, OdradekError) and error.retriable:
        return CoordinatorNotAvailable(what + "; retry")
    return UnknownServerError(what)
