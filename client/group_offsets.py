"""The offsets side of a consumer-group member (client/group_membership.py's Membership,
which inherits it): committing, fetching committed offsets, and the positions of new
partitions (that module's docstring, "Positions of new partitions"). Sans-IO like it:
jobs are generators of actions (client/group_actions.py) and `now` is in milliseconds.
"""
import logging

from odradek.client.errors import (IllegalGeneration, OdradekError, RebalanceInProgress, RequestTimedOut,
                                   UnknownMemberId, UnstableOffsetCommit)
from odradek.client.group_actions import Backoff, Call, Position, ReadPositions, ReportCommit
from odradek.client.message import OffsetAndMetadata, TopicPartition
from odradek.client.protocol import error_from_wire, messages as m

__all__ = ["MemberOffsets", "RETRY_BACKOFF_MS", "MAX_BACKOFF_MS", "UNSTABLE_WAIT_MS", "FETCH_TRIES"]

log = logging.getLogger("odradek.client.group_member")

RETRY_BACKOFF_MS = 100         # Kafka's retry.backoff.ms
MAX_BACKOFF_MS = 1000
# how long a read_committed member waits for a transaction holding its committed offsets to end
# (KIP-447): the coordinator ends every transaction within transaction.max.timeout.ms (900 s by
# default, as Kafka's), aborting it if its producer is gone
UNSTABLE_WAIT_MS = 900_000
FETCH_TRIES = 3        # OffsetFetch tries for new partitions' positions on retriable errors but unstable


class MemberOffsets:
    """Committed offsets and positions of one member; Membership sets the attributes
    annotated here (its config and generation) and calls _init_offsets()."""
    group_id: str
    instance_id: str | None
    require_stable: bool
    auto_commit_ms: int
    _now: float
    _topics: list | None
    _generation: int
    _member_id: str

    def _init_offsets(self):
        self._next_commit = self._now + self.auto_commit_ms
        self._committed = {}        # key -> offset we last committed (auto commit skips those)
        # owned partitions with no position yet (module docstring: Positions of new partitions)
        self._unpositioned = set()
        self._fetch_at = float("inf")   # when to ask for their committed offsets again
        self._fetch_backoff = RETRY_BACKOFF_MS
        self._fetch_failures = 0        # other retriable errors since they were first asked for
        self._unstable_since = None     # the first UNSTABLE_OFFSET_COMMIT answer for them

    def _do(self, action):
        """Yield one action; return its result (raise its error). Every answer carries `now`."""
        value, error, self._now = yield action
        if error is not None:
            raise error
        return value

    # == positions of new partitions (poll thread; module docstring) ===========================
    def position_assigned(self, keys, now):
        """Job, for partitions assign()ed by hand with no offset: their committed offsets by
        one OffsetFetch (a Position action), or, while they cannot be known yet (an open
        transaction holds them, a retriable error), asked again by later steps, as for the
        partitions the group assigns. Never waits."""
        self._now = now
        offsets = yield from self._fetch_positions(set(keys))
        if offsets is not None:
            yield from self._do(Position(offsets))

    def forget_positions(self, keys):
        """Partitions no longer assigned by hand: stop asking for their positions."""
        self._forget_unpositioned(set(keys))

    def _fetch_positions(self, keys):
        """{key: committed offset, or None: auto.offset.reset decides} for `keys` by one
        OffsetFetch, or None when it cannot be known yet: then `keys` join the unpositioned
        partitions, asked for again at _fetch_at."""
        try:
            committed = yield from self._offset_fetch(keys, None)
        except OdradekError as e:
            if self._ask_again_later(keys, e):
                return None
            committed = {}
        self._forget_unpositioned(keys)
        offsets = {k: None if committed.get(k) is None else committed[k].offset for k in keys}
        for k in keys:
            self._committed.pop(k, None)
        self._committed.update((k, offset) for k, offset in offsets.items() if offset is not None)
        return offsets

    def _ask_again_later(self, keys, e):
        """After a failed OffsetFetch for `keys`: True when it is to be asked again later."""
        now = self._now
        if isinstance(e, UnstableOffsetCommit):
            self._unstable_since = now if self._unstable_since is None else self._unstable_since
            again = now - self._unstable_since < UNSTABLE_WAIT_MS
        else:
            self._fetch_failures += 1
            again = e.retriable and self._fetch_failures < FETCH_TRIES
        if not again:
            log.warning("group %s: fetching committed offsets failed (%s): auto.offset.reset decides",
                        self.group_id, e)
            return False
        self._unpositioned |= keys
        self._fetch_at = now + self._fetch_backoff
        log.info("group %s: %s; asking again in %d ms", self.group_id, e, self._fetch_backoff)
        self._fetch_backoff = min(2 * self._fetch_backoff, MAX_BACKOFF_MS)
        return True

    def _forget_unpositioned(self, keys):
        self._unpositioned -= keys
        if not self._unpositioned:
            self._fetch_at = float("inf")
            self._fetch_backoff = RETRY_BACKOFF_MS
            self._fetch_failures = 0
            self._unstable_since = None

    # == offsets (poll thread) ================================================================
    def _auto_commit(self, keys, before_revoke=False):
        self._next_commit = self._now + self.auto_commit_ms
        positions = yield from self._do(ReadPositions(sorted(keys)))
        todo = {k: off for k, off in positions.items() if off is not None and self._committed.get(k) != off}
        if not todo:
            return
        try:
            yield from self.commit(todo, None)
        except OdradekError as e:
            level = logging.INFO if isinstance(e, (RebalanceInProgress, IllegalGeneration, UnknownMemberId)) \
                else logging.WARNING
            log.log(level, "group %s: auto commit%s failed: %s", self.group_id,
                    " before revocation" if before_revoke else "", e)
            yield from self._do(ReportCommit(e, [TopicPartition(t, p, o) for (t, p), o in sorted(todo.items())]))

    def commit(self, offsets, metadata):
        """Job: commit {(topic, partition): offset} (metadata: one string for all, or a
        dict per key). Returns [TopicPartition]. Raises the first error (the whole
        request's, or a partition's)."""
        if self._topics is None:
            generation, member_id, instance_id = -1, "", None   # manual assignment: a standalone commit
        else:
            generation, member_id, instance_id = self._generation, self._member_id, self.instance_id
        by_topic = {}
        for (topic, partition), offset in sorted(offsets.items()):
            meta = metadata.get((topic, partition), "") if isinstance(metadata, dict) else (metadata or "")
            by_topic.setdefault(topic, []).append(m.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_metadata=meta))
        req = m.OffsetCommitRequest(group_id=self.group_id, generation_id=generation, member_id=member_id,
                                    group_instance_id=instance_id,
                                    topics=[m.OffsetCommitRequestTopic(name=t, partitions=ps)
                                            for t, ps in by_topic.items()])
        try:
            res = yield from self._do(Call(req))
        except (RebalanceInProgress, IllegalGeneration, UnknownMemberId) as e:
            raise type(e)(f"commit refused: {e.message} (a commit counts only from a member of the current "
                          "generation that owns the partitions)") from None
        first_error = None
        done = []
        for t in res.topics:
            for p in t.partitions:
                if p.error_code:
                    first_error = first_error or error_from_wire(p.error_code, p.error_message)
                else:
                    self._committed[(t.name, p.partition_index)] = offsets[(t.name, p.partition_index)]
                    done.append(TopicPartition(t.name, p.partition_index, offsets[(t.name, p.partition_index)]))
        if first_error is not None:
            raise first_error
        return done

    def fetch_committed(self, keys, timeout_ms=None):
        """Job: {(topic, partition): OffsetAndMetadata or None} by OffsetFetch. A read_committed
        member asks for stable offsets only (KIP-447's require_stable): while a transaction
        still holds an offset of one of `keys` the answer is UNSTABLE_OFFSET_COMMIT, and it
        asks again, backing off up to MAX_BACKOFF_MS, for up to timeout_ms (None:
        UNSTABLE_WAIT_MS), then raises UnstableOffsetCommit. Starting from an older offset
        would process again what that transaction may commit."""
        give_up_at = self._now + (UNSTABLE_WAIT_MS if timeout_ms is None else timeout_ms)
        backoff, unstable = RETRY_BACKOFF_MS, None
        while True:
            try:
                return (yield from self._offset_fetch(keys, None if timeout_ms is None else
                                                      max(1, give_up_at - self._now)))
            except RequestTimedOut:
                if unstable is None:
                    raise
                raise unstable from None    # the last ask, at the deadline, had no time to be answered
            except UnstableOffsetCommit as e:
                unstable = e
                if self._now >= give_up_at:
                    raise
                log.info("group %s: %s; asking again in %d ms", self.group_id, e, backoff)
                yield from self._do(Backoff(min(backoff, give_up_at - self._now)))
                backoff = min(2 * backoff, MAX_BACKOFF_MS)

    def _offset_fetch(self, keys, timeout_ms):
        by_topic = {}
        for topic, partition in sorted(keys):
            by_topic.setdefault(topic, []).append(partition)
        res = yield from self._do(Call(m.OffsetFetchRequest(group_id=self.group_id, topics=[
            m.OffsetFetchRequestTopic(name=t, partition_indexes=ps) for t, ps in by_topic.items()],
            require_stable=self.require_stable), timeout_ms))
        out = {}
        for t in res.topics:
            for p in t.partitions:
                if p.error_code:
                    raise error_from_wire(p.error_code, p.error_message)
                key = (t.name, p.partition_index)
                out[key] = (OffsetAndMetadata(t.name, p.partition_index, p.committed_offset, p.metadata or "")
                            if p.committed_offset >= 0 else None)
        return out
