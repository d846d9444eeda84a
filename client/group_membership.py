"""Consumer-group membership as a sans-IO state machine: the client side of Kafka's
classic consumer protocol, with no socket, thread or clock in it.

A Membership decides; client/group_member.py (GroupMember, the I/O shell: the group
thread, its connection, the Waker) and the Consumer carry out what it decides.

Theory of operation

Two threads drive one Membership (the shell serializes every call into it with one lock):

- The application's thread (poll/consume) runs step(): it decides when to (re)join,
  revokes partitions before that (eager protocols: all of them, after an auto-commit;
  cooperative-sticky: only those of topics no longer subscribed), applies what a join
  produced (committed offsets -> positions, callbacks), auto-commits, and re-reads
  metadata every metadata.max.age.ms. A member that does not poll does not rejoin: the
  group waits for it up to its rebalance timeout (max.poll.interval.ms), as in Kafka.
  A step never waits: what is to be tried again later is due at a time next_deadline()
  gives, and poll() sleeps no longer than that or its own timeout.
- The group thread runs link_job(): the JoinGroup / SyncGroup exchange the poll thread
  asked for (the MEMBER_ID_REQUIRED round trip; the leader decodes the members'
  Subscriptions, reads partition counts with a MetadataRequest, runs the group's chosen
  assignor from client/assignors.py and sends every assignment; a restarted static
  leader told skip_assignment sends none, KIP-814), a Heartbeat every
  heartbeat.interval.ms while the member is in a generation, and, when the application
  has not polled for max.poll.interval.ms, a LeaveGroup (as Kafka's heartbeat thread
  does; a static member just stops) so its partitions move at once. Because the exchange
  runs there, poll() keeps its timeout during a rebalance and a cooperative member keeps
  consuming the partitions it keeps while the group rebalances.
- The group thread's news for the poll thread (a join's result, a rebalance the
  heartbeat reported, the member being removed, the poll interval running out) is a
  field set here plus WakePoll, which rings the poll thread's Waker. `epoch` is bumped
  at each join request and each leave: news of an older epoch is stale and dropped.

Rebalance protocols (KIP-429): the member is COOPERATIVE when every assignor in
partition.assignment.strategy is (cooperative-sticky), else EAGER, as in Kafka.
- EAGER: before rejoining, commit (enable.auto.commit), on_revoke(all), drop all;
  on_assign(everything the new generation gives).
- COOPERATIVE: rejoin owning what it owns (the Subscription lists it); the new
  assignment lacks only partitions that move: commit them, on_revoke(those), and join
  again at once so that the next generation can give them to their new owner;
  on_assign(only the newly added partitions). Partitions that stay are never revoked.
- Lost (the member was removed: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID,
  max.poll.interval.ms): on_lost(partitions) (on_revoke when no on_lost is given, as
  confluent-kafka does); nothing is committed, since another member may own them now.

Positions of new partitions: one OffsetFetch in the step applying the join gives their
committed offsets (Assign, then on_assign). Without an answer yet, they are assigned with
no position (Assign(keys, None): not fetched; on_assign all the same, a seek() there gives
one) and later steps ask again, backing off RETRY_BACKOFF_MS..MAX_BACKOFF_MS, until
Position gives them theirs, as Kafka's consumer does across polls. That is when:
- read_committed (KIP-447, require_stable): an open transaction holds a committed offset
  (UNSTABLE_OFFSET_COMMIT); starting from an older one would process again what it may
  commit. Asked until its marker lands, up to UNSTABLE_WAIT_MS; then auto.offset.reset.
- a retriable error: FETCH_TRIES tries, then auto.offset.reset (at once for other errors).
Revoking, losing or closing forgets them.

Errors a poll-thread job raises: MaxPollIntervalExceeded once after the poll interval
ran out (the next step rejoins); FencedInstanceId (another process took this
group.instance.id: fatal, every later step raises it too); InconsistentGroupProtocol,
InvalidSessionTimeout, GroupMaxSizeReached (configuration: retried on the next step).

Driving it

    m = Membership(config, now)                 # now: milliseconds, any monotonic origin
    job = m.step(now)          # None when nothing is due; also subscribe(), unsubscribe(),
                               # close(), commit(), fetch_committed(): poll-thread jobs
    job, wake_at = m.link_job(now)     # the group thread's next job, else when to ask again
    m.link_lost(now)           # the group connection failed (the job raised a connection error)

A job is a generator of actions. Prime it with send(None); run each action it yields and
send back (value, error, now): the action's result or the exception it raised, and the
time after it. The job raises what it does not handle, and returns its result.

The actions, and what the shell does for each: client/group_actions.py.
"""
import logging
import re
from dataclasses import dataclass

from odradek.client.assignors import (COOPERATIVE, EAGER, Assignment, MalformedConsumerProtocol, Subscription,
                                      get_assignor)
from odradek.client.errors import (
    CoordinatorNotAvailable, FencedInstanceId, GroupMaxSizeReached, IllegalGeneration, InconsistentGroupProtocol,
    InvalidGroupId, InvalidRequest, InvalidSessionTimeout, MaxPollIntervalExceeded, MemberIdRequired,
    NetworkException, OdradekError, RebalanceInProgress, RequestTimedOut, UnknownMemberId, UnknownServerError)
from odradek.client.group_actions import (Assign, Call, Callback, Lose, Position, RaiseCallbackError,
                                          ReadAssigned, Revoke, Send, WakeLink, WakePoll)
from odradek.client.group_offsets import MAX_BACKOFF_MS, RETRY_BACKOFF_MS, MemberOffsets
from odradek.client.protocol import RemoteProtocolError, error_from_wire, messages as m

__all__ = ["Membership", "CONNECTION_ERRORS"]

log = logging.getLogger("odradek.client.group_member")

PROTOCOL_TYPE = "consumer"
REQUEST_TIMEOUT_MS = 30_000    # Kafka's request.timeout.ms
# the connection is gone or garbled: the shell drops it and connects again
CONNECTION_ERRORS = (NetworkException, RequestTimedOut, RemoteProtocolError)
# errors a join cannot get past by trying again at once: the application hears of them
_CONFIG_ERRORS = (InconsistentGroupProtocol, InvalidSessionTimeout, GroupMaxSizeReached, InvalidGroupId,
                  InvalidRequest)


@dataclass(frozen=True)
class _JoinResult:
    generation: int
    member_id: str
    leader: str
    protocol: str
    assignment: Assignment
    group_topics: dict | None     # leader: {topic: partition count} it assigned from


def metadata_request(topics):
    return m.MetadataRequest(topics=sorted(topics))


def partition_counts(res, topics):
    """{topic: partition count} (0 for a topic that does not exist) from a MetadataResponse."""
    counts = {t: 0 for t in topics}
    for t in res.topics:
        if not t.error_code:
            counts[t.name] = len(t.partitions)
    return counts


class Membership(MemberOffsets):
    """One member of a consumer group, as decisions. Not thread-safe: the shell calls it,
    and sends into its jobs, with its lock held. `now` is in milliseconds."""

    def __init__(self, config, now):
        self.group_id = config["group.id"]
        if not self.group_id:
            raise InvalidGroupId("group.id must not be empty")
        self.instance_id = config["group.instance.id"] or None
        self.client_id = config.get("client.id") or "odradek-consumer"
        self.session_timeout_ms = config["session.timeout.ms"]
        self.heartbeat_ms = config["heartbeat.interval.ms"]
        self.max_poll_ms = config["max.poll.interval.ms"]
        self.auto_commit = config["enable.auto.commit"]
        self.auto_commit_ms = config["auto.commit.interval.ms"]
        self.metadata_age_ms = config["metadata.max.age.ms"]
        # KIP-447: a read_committed member asks for stable offsets only
        self.require_stable = config.get("isolation.level") == "read_committed"
        self.assignors = [get_assignor(name) for name in config["partition.assignment.strategy"]]
        self.protocol_kind = (COOPERATIVE if all(a.rebalance_protocol == COOPERATIVE for a in self.assignors)
                              else EAGER)
        self._join_timeout_ms = max(REQUEST_TIMEOUT_MS, self.max_poll_ms + 35_000)
        self._now = now

        # what the group thread's jobs and the poll thread's share
        self._member_id = ""
        self._generation = -1
        self._protocol = None
        self._hb_active = False     # in a generation: heartbeat, watch the poll interval
        self._join_req = None       # (protocols, reason): for the group thread
        self._join_res = None       # (epoch, _JoinResult or OdradekError): for the poll thread
        self._rejoin = None         # why the group thread wants a rejoin
        self._lost = None           # why the member lost its partitions
        self._expired = None        # ms between polls, when max.poll.interval.ms ran out
        self._fatal = None
        self._epoch = 0             # bumped at each join request and leave: older news is stale
        self._attn = 0              # bumped whenever there is news for the poll thread
        self._in_poll = False
        self._last_poll = now
        self._next_hb = 0
        self._link_quiet_until = 0  # after the group connection failed

        # the poll thread's own
        self._pattern = None        # compiled regex subscription, or None
        self._topics = None         # subscribed topic names; None: not subscribed
        self._owned = set()         # (topic, partition) the group gave us and we hold
        self._joining = False
        self._leader = False
        self._group_topics = None   # leader: partition counts the assignment was made from
        self._attn_seen = 0
        self._next_metadata = None
        self._join_not_before = 0
        self._init_offsets()

    # == what the shell and the Consumer read =============================================
    @property
    def subscribed(self):
        return self._topics is not None

    @property
    def joining(self):
        return self._joining

    @property
    def leader(self):
        return self._leader

    @property
    def rejoin_wanted(self):
        return self._rejoin is not None

    def assignment(self):
        return sorted(self._owned)

    def identity(self):
        """(generation, member id) now."""
        return self._generation, self._member_id

    # == subscription (poll thread) =========================================================
    def subscribe(self, topics, now):
        """Job: subscribe to topic names or one regex starting with '^'."""
        self._now = now
        if isinstance(topics, str):
            topics = [topics]
        topics = list(topics)
        if not topics:
            raise ValueError("subscribe() needs at least one topic or pattern")
        patterns = [t for t in topics if t.startswith("^")]
        if patterns:
            if len(topics) != 1:
                raise ValueError("subscribe() takes either topic names or one regex starting with '^', not both")
            self._pattern = re.compile(patterns[0])
            names = yield from self._matching_topics()
        else:
            self._pattern = None
            names = sorted(set(topics))
        changed = names != self._topics
        self._topics = names
        self._next_metadata = self._now + self.metadata_age_ms
        if changed:
            self._request_rejoin_local("the subscription changed")

    def _matching_topics(self):
        res = yield from self._do(Call(m.MetadataRequest(topics=None)))
        return sorted(t.name for t in res.topics
                      if not t.error_code and not t.is_internal and self._pattern.search(t.name))

    def unsubscribe(self, now):
        """Job: revoke (after an auto commit), leave the group."""
        self._now = now
        if self._topics is None:
            return
        yield from self._revoke_all(commit=self.auto_commit)
        self._topics = None
        self._pattern = None
        self._joining = False
        self._leader = False
        self._group_topics = None
        yield from self._leave("the consumer unsubscribed")

    # == the poll thread's work =============================================================
    def poll_started(self, now):
        self._last_poll = now
        self._in_poll = True

    def poll_ended(self, now):
        self._last_poll = now
        self._in_poll = False

    def next_deadline(self):
        """When step() has timed work (auto commit, metadata, a join backoff), or None:
        poll() sleeps no longer than this. Everything else comes with WakePoll."""
        due = self._next_due()
        return None if due == float("inf") else due

    def step(self, now):
        """Job: what is due; None when nothing is. Run by poll()/consume() before each
        fetch round; raises the errors listed in the module docstring."""
        self._now = now
        if self._attn == self._attn_seen and self._fatal is None and self._next_due() > now:
            return None
        return self._step()

    def _step(self):
        now = self._now
        self._attn_seen = self._attn
        fatal, expired, lost, result = self._fatal, self._expired, self._lost, self._join_res
        self._expired = self._lost = self._join_res = None
        rejoin = self._rejoin
        if fatal is not None:
            yield from self._lose_all(str(fatal))
            yield from self._do(RaiseCallbackError())
            raise fatal
        if self._topics is None:     # assign()ed by hand: commits, and positions still to come
            if self.auto_commit and now >= self._next_commit:
                keys = yield from self._do(ReadAssigned())
                yield from self._auto_commit(keys)
            yield from self._position_unpositioned()
            return
        if expired is not None:
            self._joining = False
            yield from self._lose_all("max.poll.interval.ms exceeded")
            yield from self._do(RaiseCallbackError())
            raise MaxPollIntervalExceeded(
                f"max.poll.interval.ms exceeded: processing between polls took {expired / 1000:.1f} s (the limit "
                f"is {self.max_poll_ms / 1000:g} s); the group rebalanced and this member's partitions went to "
                f"others; reduce the work per poll or raise max.poll.interval.ms. The next poll rejoins the group.")
        if lost is not None:
            yield from self._lose_all(lost)
        if result is not None:
            epoch, outcome = result
            if epoch == self._epoch and self._joining:
                self._joining = False
                yield from self._apply_join(outcome)
        if not self._joining:
            now = self._now
            if self.auto_commit and self._owned and now >= self._next_commit:
                yield from self._auto_commit(self._owned)
            if now >= self._next_metadata:
                self._next_metadata = now + self.metadata_age_ms
                yield from self._check_metadata()
            rejoin = self._rejoin or rejoin
            if (rejoin is not None or self._generation < 0) and now >= self._join_not_before:
                yield from self._start_join(rejoin or "joining the group")     # eager: revokes them all
        yield from self._position_unpositioned()
        yield from self._do(RaiseCallbackError())

    def _position_unpositioned(self):
        if self._unpositioned and self._now >= self._fetch_at:
            offsets = yield from self._fetch_positions(set(self._unpositioned))
            if offsets is not None:
                yield from self._do(Position(offsets))

    def _next_due(self):
        if self._topics is None:
            return min(self._next_commit, self._fetch_at) if self.auto_commit else self._fetch_at
        if self._joining:
            return self._fetch_at     # partitions kept through a cooperative rebalance may await theirs
        if self._rejoin is not None or self._generation < 0:
            return min(self._join_not_before, self._fetch_at)
        due = min(self._next_metadata, self._fetch_at)
        if self.auto_commit and self._owned:
            due = min(due, self._next_commit)
        return due

    def _request_rejoin_local(self, reason):
        if self._rejoin is None:
            self._rejoin = reason
        self._attn += 1

    def _check_metadata(self):
        try:
            if self._pattern is not None:
                names = yield from self._matching_topics()
                if names != self._topics:
                    log.info("group %s: topics matching %s are now %s", self.group_id, self._pattern.pattern, names)
                    self._topics = names
                    self._request_rejoin_local("the topics matching the subscription changed")
            if self._leader and self._group_topics is not None:
                topics = set(self._group_topics) | set(self._topics)
                res = yield from self._do(Call(metadata_request(topics)))
                counts = partition_counts(res, topics)
                if counts != {t: self._group_topics.get(t, 0) for t in counts}:
                    log.info("group %s: partition counts changed (%s -> %s): rebalancing", self.group_id,
                             self._group_topics, counts)
                    self._request_rejoin_local("the partition count of a subscribed topic changed")
        except OdradekError as e:
            log.warning("group %s: metadata refresh failed: %s", self.group_id, e)

    def _start_join(self, reason):
        if self.protocol_kind == EAGER:
            yield from self._revoke_all(commit=self.auto_commit)
        else:
            gone = {tp for tp in self._owned if tp[0] not in self._topics}
            if gone:
                yield from self._revoke(gone, commit=self.auto_commit)
        owned = sorted(self._owned)
        protocols = [m.JoinGroupRequestProtocol(name=a.name, metadata=a.subscription(
            self._topics, owned, self._generation).encode()) for a in self.assignors]
        self._epoch += 1
        self._join_req = (protocols, reason)
        self._hb_active = False
        self._rejoin = None
        self._joining = True
        log.debug("group %s: joining (%s)", self.group_id, reason)
        yield from self._do(WakeLink())

    def _apply_join(self, outcome):
        now = self._now
        if isinstance(outcome, BaseException):
            e = outcome
            if isinstance(e, FencedInstanceId):
                self._fatal = e
                yield from self._lose_all(str(e))
                raise e
            if isinstance(e, (UnknownMemberId, IllegalGeneration)):
                yield from self._lose_all(str(e))      # removed from the group: rejoin now, as new
            elif isinstance(e, RebalanceInProgress):
                pass
            elif isinstance(e, _CONFIG_ERRORS):
                self._join_not_before = now + MAX_BACKOFF_MS
                self._request_rejoin_local(f"the last join failed: {e.name}")
                raise e
            else:
                log.info("group %s: join failed (%s); retrying", self.group_id, e)
                self._join_not_before = now + RETRY_BACKOFF_MS
            self._request_rejoin_local(f"the last join failed: {e.name}")
            return
        r = outcome
        self._join_not_before = 0
        self._leader = r.leader == r.member_id
        if self._leader and r.group_topics is not None:
            self._group_topics = r.group_topics
        new = {tp for tp in r.assignment.partitions if tp[0] in self._topics}
        unwanted = set(r.assignment.partitions) - new
        if unwanted:   # given topics we no longer subscribe to (we changed meanwhile): rejoin
            self._request_rejoin_local("the assignment holds topics no longer subscribed")
        revoked = self._owned - new
        added = new - self._owned
        if revoked:
            yield from self._revoke(revoked, commit=self.auto_commit)
        if added:
            offsets = yield from self._fetch_positions(added)
            yield from self._do(Assign(sorted(added), offsets))
            self._owned |= added
        self._next_commit = now + self.auto_commit_ms
        log.info("group %s: generation %d, member %s%s: assigned %s", self.group_id, r.generation, r.member_id,
                 " (leader)" if self._leader else "", show(self._owned))
        yield from self._do(Callback("on_assign", sorted(added) if self.protocol_kind == COOPERATIVE
                                     else sorted(new)))
        if revoked and self.protocol_kind == COOPERATIVE:
            # the partitions we gave up go to their new owners in the next generation
            self._request_rejoin_local("partitions were revoked (cooperative rebalance)")

    # == revoking and losing (poll thread) ===================================================
    def _revoke_all(self, commit):
        if self._owned:
            yield from self._revoke(set(self._owned), commit)

    def _revoke(self, keys, commit):
        if commit:
            yield from self._auto_commit(keys, before_revoke=True)
        self._owned -= keys
        self._forget_unpositioned(keys)
        for k in keys:
            self._committed.pop(k, None)
        yield from self._do(Revoke(sorted(keys)))

    def _lose_all(self, why):
        if not self._owned:
            return
        keys = set(self._owned)
        log.info("group %s: partitions lost (%s): %s", self.group_id, why, show(keys))
        self._owned.clear()
        self._forget_unpositioned(keys)
        for k in keys:
            self._committed.pop(k, None)
        yield from self._do(Lose(sorted(keys)))

    # == leaving (poll thread) ===============================================================
    def _leave(self, reason):
        """LeaveGroup for a dynamic member (a static one keeps its place until its session
        times out, as in Kafka); either way this member's generation ends."""
        member_id = self._member_id
        self._epoch += 1            # any join or heartbeat in flight is stale now
        self._join_req = None
        self._hb_active = False
        self._rejoin = None
        self._generation = -1
        if self.instance_id is None:
            self._member_id = ""
        if member_id and self.instance_id is None:
            try:
                yield from self._do(Call(m.LeaveGroupRequest(group_id=self.group_id, members=[
                    m.MemberIdentity(member_id=member_id, reason=reason)])))
            except OdradekError as e:
                log.info("group %s: LeaveGroup failed: %s", self.group_id, e)

    def close(self, now):
        """Job: commit (auto commit), revoke, leave (dynamic members)."""
        self._now = now
        if self._topics is not None:
            yield from self._revoke_all(commit=self.auto_commit)
            yield from self._leave("the consumer is closing")
        elif self.auto_commit:
            keys = yield from self._do(ReadAssigned())
            yield from self._auto_commit(keys)

    # == the group thread ====================================================================
    def link_job(self, now):
        """(job, None) when the group thread has work now, else (None, when to ask again:
        None for "when woken")."""
        self._now = now
        if self._join_req is not None:
            protocols, reason = self._join_req
            self._join_req = None
            return self._join_job(protocols, reason, self._epoch), None
        if now < self._link_quiet_until:
            return None, self._link_quiet_until
        if not self._hb_active:
            return None, None
        idle = now - self._last_poll
        if not self._in_poll and idle > self.max_poll_ms:
            return self._expire_job(idle, self._epoch), None
        if now >= self._next_hb:
            return self._heartbeat_job(self._epoch), None
        wake_at = self._next_hb
        if not self._in_poll:
            wake_at = min(wake_at, self._last_poll + self.max_poll_ms + 1)
        return None, wake_at

    def link_lost(self, now):
        """The group connection failed: the shell dropped it; try again after a backoff
        (a join request does not wait)."""
        self._now = now
        self._next_hb = self._link_quiet_until = now + RETRY_BACKOFF_MS

    def _join_job(self, protocols, reason, epoch):
        try:
            outcome = yield from self._join(protocols, reason)
        except CONNECTION_ERRORS as e:
            yield from self._post_join(epoch, e)
            raise
        except OdradekError as e:
            yield from self._post_join(epoch, e)
            return
        except Exception as e:   # a bug or a malformed assignment: the poll thread hears of it
            log.exception("group %s: join failed", self.group_id)
            yield from self._post_join(epoch, UnknownServerError(f"{type(e).__name__}: {e}"))
            return
        posted = yield from self._post_join(epoch, outcome)
        if not posted and isinstance(outcome, _JoinResult) and self.instance_id is None:
            # joined for a poll thread that has moved on (unsubscribe, close): leave
            yield from self._send_leave(outcome.member_id, "the consumer unsubscribed while joining")
        self._next_hb = self._now + self.heartbeat_ms

    def _join(self, protocols, reason):
        """JoinGroup (with the MEMBER_ID_REQUIRED round trip), the leader's assignment,
        SyncGroup. Returns a _JoinResult or an OdradekError (never raises those but for
        the connection's)."""
        for _ in range(100):
            try:
                res = yield from self._do(Send(m.JoinGroupRequest(
                    group_id=self.group_id, session_timeout_ms=self.session_timeout_ms,
                    rebalance_timeout_ms=self.max_poll_ms, member_id=self._member_id,
                    group_instance_id=self.instance_id, protocol_type=PROTOCOL_TYPE, protocols=protocols,
                    reason=reason, client_id=self.client_id), self._join_timeout_ms))
            except UnknownMemberId as e:
                self._reset(member=True)
                return e
            if res.error_code == MemberIdRequired.code:
                self._member_id = res.member_id
                continue
            if res.error_code:
                return error_from_wire(res.error_code, res.error_message)
            member_id = self._member_id = res.member_id
            group_topics = None
            assignments = []
            if res.leader == member_id:
                try:
                    subs = {x.member_id: Subscription.decode(x.metadata, x.group_instance_id) for x in res.members}
                except MalformedConsumerProtocol as e:
                    return InconsistentGroupProtocol(f"a member's subscription is not Kafka's consumer protocol: {e}")
                topics = {t for s in subs.values() for t in s.topics}
                group_topics = {}
                if topics:
                    meta = yield from self._do(Send(metadata_request(topics), REQUEST_TIMEOUT_MS))
                    group_topics = partition_counts(meta, topics)
                if not res.skip_assignment:
                    assignor = next((a for a in self.assignors if a.name == res.protocol_name), None)
                    if assignor is None:
                        return InconsistentGroupProtocol(f"the group chose assignor {res.protocol_name!r}, "
                                                         "which this member did not offer")
                    plan = assignor.assign(subs, {t: n for t, n in group_topics.items() if n})
                    assignments = [m.SyncGroupRequestAssignment(member_id=mid, assignment=a.encode())
                                   for mid, a in plan.items()]
                    log.debug("group %s: leader of generation %d assigned %s", self.group_id, res.generation_id,
                              {mid: show(a.partitions) for mid, a in plan.items()})
            try:
                sync = yield from self._do(Send(m.SyncGroupRequest(
                    group_id=self.group_id, generation_id=res.generation_id, member_id=member_id,
                    group_instance_id=self.instance_id, protocol_type=PROTOCOL_TYPE,
                    protocol_name=res.protocol_name, assignments=assignments), self._join_timeout_ms))
            except RebalanceInProgress:
                continue       # the group started over before the assignment was out: join again
            except (UnknownMemberId, IllegalGeneration) as e:
                self._reset(member=isinstance(e, UnknownMemberId))
                return e
            try:
                assignment = Assignment.decode(sync.assignment)
            except MalformedConsumerProtocol as e:
                return InconsistentGroupProtocol(f"the assignment from the leader is not Kafka's consumer "
                                                 f"protocol: {e}")
            return _JoinResult(res.generation_id, member_id, res.leader, res.protocol_name, assignment, group_topics)
        return RebalanceInProgress("the group kept restarting its rebalance")

    def _reset(self, member):
        self._generation = -1
        if member:
            self._member_id = ""

    def _post_join(self, epoch, outcome):
        """Hand a join's outcome to the poll thread; False if it no longer wants it."""
        if epoch != self._epoch:
            return False     # the poll thread moved on (unsubscribe, close)
        if isinstance(outcome, _JoinResult):
            self._generation = outcome.generation
            self._member_id = outcome.member_id
            self._protocol = outcome.protocol
            self._hb_active = True
        self._join_res = (epoch, outcome)
        yield from self._post(epoch)
        return True

    def _post(self, epoch, **news):
        """Set the poll thread's `news` fields (rejoin, lost, expired, fatal) and wake it,
        unless the epoch moved on."""
        if epoch != self._epoch:
            return
        for name, value in news.items():
            setattr(self, "_" + name, value)
        self._attn += 1
        yield from self._do(WakePoll())

    def _heartbeat_job(self, epoch):
        delay = self.heartbeat_ms
        try:
            yield from self._do(Send(m.HeartbeatRequest(
                group_id=self.group_id, generation_id=self._generation, member_id=self._member_id,
                group_instance_id=self.instance_id), REQUEST_TIMEOUT_MS))
        except RebalanceInProgress:
            if self._rejoin is None and epoch == self._epoch:
                log.info("group %s: the group is rebalancing", self.group_id)
                yield from self._post(epoch, rejoin="the group is rebalancing")
        except (IllegalGeneration, UnknownMemberId) as e:
            if epoch == self._epoch:
                self._hb_active = False
                self._reset(member=isinstance(e, UnknownMemberId))
                log.info("group %s: heartbeat: %s", self.group_id, e)
                yield from self._post(epoch, lost=f"the coordinator no longer counts this member in ({e.name})")
        except FencedInstanceId as e:
            self._hb_active = False
            yield from self._post(epoch, fatal=e)
        except CoordinatorNotAvailable:
            delay = RETRY_BACKOFF_MS
        except CONNECTION_ERRORS:
            raise
        except OdradekError as e:
            log.warning("group %s: heartbeat failed: %s", self.group_id, e)
            delay = RETRY_BACKOFF_MS
        self._next_hb = self._now + delay

    def _expire_job(self, idle, epoch):
        if epoch != self._epoch or not self._hb_active:
            return    # the poll thread moved on between link_job() and this job's start
        member_id = self._member_id
        self._hb_active = False
        self._generation = -1
        self._member_id = ""
        log.warning("group %s: no poll() for %.1f s (max.poll.interval.ms %d): leaving the group", self.group_id,
                    idle / 1000, self.max_poll_ms)
        try:
            if self.instance_id is None and member_id:
                yield from self._send_leave(member_id, f"consumer poll timeout has expired: {idle / 1000:.1f} s "
                                                       f"between polls, max.poll.interval.ms is {self.max_poll_ms}")
        except Exception:
            yield from self._post(epoch, expired=idle)
            raise
        yield from self._post(epoch, expired=idle)

    def _send_leave(self, member_id, reason):
        try:
            yield from self._do(Send(m.LeaveGroupRequest(group_id=self.group_id, members=[
                m.MemberIdentity(member_id=member_id, reason=reason)]), REQUEST_TIMEOUT_MS))
        except CONNECTION_ERRORS:
            raise
        except OdradekError as e:
            log.info("group %s: LeaveGroup failed: %s", self.group_id, e)


def show(keys):
    """'t[0, 1], u[2]': partitions for a log line."""
    by_topic = {}
    for t, p in sorted(keys):
        by_topic.setdefault(t, []).append(p)
    return ", ".join(f"{t}{ps}" for t, ps in by_topic.items()) or "nothing"
