"""Consumer-group membership, the client side of Kafka's classic consumer protocol.

The Consumer (client/consumer.py) owns one GroupMember when it has a group.id. The
member joins the group, keeps its session alive, hands the Consumer the partitions the
group gives it, commits and fetches offsets, and tells the application what moved
through on_assign / on_revoke / on_lost, always in the thread that calls poll().

Theory of operation

Two threads, one control connection each (a ControlClient is not thread-safe):

- The application's thread (poll/consume) drives the state machine in step(): it decides
  when to (re)join, revokes partitions before that (eager protocols: all of them, after
  an auto-commit; cooperative-sticky: only those of topics no longer subscribed), applies
  what a join produced (committed offsets -> positions, callbacks), auto-commits, and
  re-reads metadata every metadata.max.age.ms. A member that does not poll does not
  rejoin: the group waits for it up to its rebalance timeout (max.poll.interval.ms), as
  in Kafka.
- The group thread (one per Consumer, started at the first join) owns the member's
  connection to the coordinator: it runs the JoinGroup / SyncGroup exchange the poll
  thread asks for (the MEMBER_ID_REQUIRED round trip; the leader decodes the members'
  Subscriptions, reads partition counts with a MetadataRequest, runs the group's chosen
  assignor from client/assignors.py and sends every assignment; a restarted static
  leader told skip_assignment sends none, KIP-814), sends a Heartbeat every
  heartbeat.interval.ms while the member is in a generation, and, when the application
  has not polled for max.poll.interval.ms, leaves the group (LeaveGroup, as Kafka's
  heartbeat thread does; a static member just stops) so its partitions move at once.
  Because the exchange runs here, poll() keeps its timeout during a rebalance and a
  cooperative member keeps consuming the partitions it keeps while the group rebalances.
- The group thread tells the poll thread about anything (a join's result, a rebalance
  the heartbeat reported, the member being removed, the poll interval running out) by
  setting a flag under a lock and ringing the Waker, a one-page futex counter that
  poll()'s futex_waitv sleeps on together with the assigned partitions: no polling,
  ~0% CPU when idle, and a rebalance is noticed within heartbeat.interval.ms.

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

Errors the application sees from poll(): MaxPollIntervalExceeded once after the poll
interval ran out (the next poll rejoins); FencedInstanceId (another process took this
group.instance.id: fatal, every later poll raises it too); InconsistentGroupProtocol,
InvalidSessionTimeout, GroupMaxSizeReached (configuration: retried on the next poll).
Callback exceptions propagate from poll() after the rebalance step completed.
"""
import logging
import re
import socket
import threading
import time
from collections import namedtuple

from odradek.client.assignors import (COOPERATIVE, EAGER, Assignment, MalformedConsumerProtocol, Subscription,
                                      get_assignor)
from odradek.client.errors import (
    CoordinatorNotAvailable, FencedInstanceId, GroupMaxSizeReached, IllegalGeneration, InconsistentGroupProtocol,
    InvalidGroupId, InvalidRequest, InvalidSessionTimeout, MemberIdRequired, NetworkException, OdradekError,
    RebalanceInProgress, RequestTimedOut, UnknownMemberId, UnknownServerError)
from odradek.client.message import OFFSET_INVALID, TopicPartition
from odradek.client.protocol import ControlClient, RemoteProtocolError, close_fds, messages as m
from odradek.client.protocol import error_from_wire
from odradek.client.shm import PartitionState
from odradek.client.shm.partition_state import MIN_SLOTS

__all__ = ["GroupMember", "MaxPollIntervalExceeded", "OffsetAndMetadata", "GroupMetadata", "Waker"]

log = logging.getLogger(__name__)

PROTOCOL_TYPE = "consumer"
REQUEST_TIMEOUT_S = 30.0     # Kafka's request.timeout.ms
RETRY_BACKOFF_S = 0.1        # Kafka's retry.backoff.ms
MAX_BACKOFF_S = 1.0
_CONNECTION_ERRORS = (NetworkException, RequestTimedOut, RemoteProtocolError)
# errors a join cannot get past by trying again at once: the application hears of them
_CONFIG_ERRORS = (InconsistentGroupProtocol, InvalidSessionTimeout, GroupMaxSizeReached, InvalidGroupId,
                  InvalidRequest)


class MaxPollIntervalExceeded(OdradekError):
    """The application did not call poll() within max.poll.interval.ms: the member left
    the group and its partitions went to others. A client-side error, never on the wire
    (code -147 is librdkafka's _MAX_POLL_EXCEEDED)."""
    code = -147
    name = "MAX_POLL_INTERVAL_EXCEEDED"
    retriable = True


class OffsetAndMetadata(TopicPartition):
    """A TopicPartition that carries a commit metadata string: what committed() returns,
    and what commit(offsets=[...]) accepts to give each partition its own metadata.
    Compares equal to the plain TopicPartition(topic, partition, offset)."""
    metadata = ""     # no __slots__: an instance keeps its own metadata

    def __new__(cls, topic, partition, offset=OFFSET_INVALID, metadata=""):
        self = super().__new__(cls, topic, partition, offset)
        self.metadata = metadata or ""
        return self

    def __repr__(self):
        return (f"OffsetAndMetadata(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
                f"metadata={self.metadata!r})")


GroupMetadata = namedtuple("GroupMetadata", "group_id generation_id member_id group_instance_id")
GroupMetadata.__doc__ = "Where a member stands in its group: Consumer.group_metadata()."


class Waker:
    """A futex word other threads bump to wake a poll() that sleeps in futex_waitv.

    It is a partition state of our own (a memfd nobody else maps), so wait_for_any can
    sleep on it together with the assigned partitions: ring() publishes a change, which
    wakes the sleeper. Pattern: seen = waker.seen(); look at every flag; wait(seen)."""

    def __init__(self):
        self.state, fds = PartitionState.create(MIN_SLOTS)
        fds.close()
        self._lock = threading.Lock()     # the state has one writer at a time
        self._n = 0

    def seen(self):
        return self.state.read().change

    def ring(self):
        with self._lock:
            if self.state is not None:
                self._n += 1
                self.state.update(log_end_offset=self._n)

    def close(self):
        with self._lock:
            if self.state is not None:
                self.state.close()
                self.state = None


class GroupLink:
    """The group thread's control connection. Another thread may interrupt() it: a call
    blocked in it (a JoinGroup waiting for the rest of the group) then fails at once with
    NetworkException."""

    def __init__(self, path, timeout=REQUEST_TIMEOUT_S):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise NetworkException(f"cannot connect to the broker at {path}: {e.strerror or e}; is "
                                   "'odradek serve' running?") from None
        self._sock = sock
        self._client = ControlClient.from_socket(sock, timeout)
        self._client.path = path

    def call(self, request, timeout=None):
        res, fds = self._client.call(request, timeout=timeout)
        close_fds(fds)
        return res

    def interrupt(self):
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self):
        self._client.close()


class _JoinResult:
    __slots__ = ("generation", "member_id", "leader", "protocol", "assignment", "group_topics")

    def __init__(self, generation, member_id, leader, protocol, assignment, group_topics):
        self.generation = generation
        self.member_id = member_id
        self.leader = leader
        self.protocol = protocol
        self.assignment = assignment       # Assignment
        self.group_topics = group_topics   # leader: {topic: partition count} it assigned from


def partition_counts(call, topics):
    """{topic: partition count} (0 for a topic that does not exist) by MetadataRequest."""
    if not topics:
        return {}
    res = call(m.MetadataRequest(topics=sorted(topics)))
    counts = {t: 0 for t in topics}
    for t in res.topics:
        if not t.error_code:
            counts[t.name] = len(t.partitions)
    return counts


class GroupMember:
    """One member of a consumer group, for a Consumer (`host`).

    The host provides, for the poll thread: _group_call(request) -> response (its own
    control connection), _group_assign(keys, offsets) (open and position partitions;
    offsets maps (topic, partition) to a committed offset or None for auto.offset.reset),
    _group_unassign(keys), _group_positions(keys) -> {key: next offset} and
    _group_assigned() -> keys (its manual assignment). `connect()` makes the group
    thread's connection (a GroupLink); `clock` is time.monotonic (tests may pass another).
    """

    def __init__(self, host, config, connect, clock=time.monotonic):
        self.host = host
        self.group_id = config["group.id"]
        if not self.group_id:
            raise InvalidGroupId("group.id must not be empty")
        self.instance_id = config["group.instance.id"] or None
        self.client_id = config.get("client.id") or "odradek-consumer"
        self.session_timeout_ms = config["session.timeout.ms"]
        self.heartbeat_s = config["heartbeat.interval.ms"] / 1000
        self.max_poll_ms = config["max.poll.interval.ms"]
        self.max_poll_s = self.max_poll_ms / 1000
        self.auto_commit = config["enable.auto.commit"]
        self.auto_commit_s = config["auto.commit.interval.ms"] / 1000
        self.metadata_age_s = config["metadata.max.age.ms"] / 1000
        self.on_commit = config.get("on_commit")
        self.assignors = [get_assignor(name) for name in config["partition.assignment.strategy"]]
        self.protocol_kind = (COOPERATIVE if all(a.rebalance_protocol == COOPERATIVE for a in self.assignors)
                              else EAGER)
        self._connect = connect
        self._clock = clock
        self._join_timeout_s = max(REQUEST_TIMEOUT_S, self.max_poll_s + 35.0)
        self.waker = Waker()

        # shared with the group thread: under _cv
        self._cv = threading.Condition()
        self._member_id = ""
        self._generation = -1
        self._protocol = None
        self._hb_active = False     # in a generation: heartbeat, watch the poll interval
        self._join_req = None       # (protocols, reason): for the group thread
        self._join_res = None       # (epoch, _JoinResult or OdradekError): for the poll thread
        self._rejoin = None         # why the group thread wants a rejoin
        self._lost = None           # why the member lost its partitions
        self._expired = None        # seconds between polls, when max.poll.interval.ms ran out
        self._fatal = None
        self._closing = False
        self._epoch = 0             # bumped at each join request: older news is stale
        self._attn = 0              # bumped whenever the group thread posts something
        self._in_poll = False
        self._last_poll = clock()
        self._thread = None
        self._link = None

        # the poll thread's own
        self._pattern = None        # compiled regex subscription, or None
        self._topics = None         # subscribed topic names; None: not subscribed
        self._on_assign = self._on_revoke = self._on_lost = None
        self._owned = set()         # (topic, partition) the group gave us and we hold
        self._joining = False
        self._leader = False
        self._group_topics = None   # leader: partition counts the assignment was made from
        self._attn_seen = 0
        self._next_commit = clock() + self.auto_commit_s
        self._next_metadata = None
        self._join_not_before = 0.0
        self._committed = {}        # key -> offset we last committed (auto commit skips those)
        self._callback_error = None
        self.in_callback = False    # an on_assign/on_revoke/on_lost is running

    # == subscription (poll thread) ====================================================
    @property
    def subscribed(self):
        return self._topics is not None

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
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
            names = self._matching_topics()
        else:
            self._pattern = None
            names = sorted(set(topics))
        self._on_assign, self._on_revoke, self._on_lost = on_assign, on_revoke, on_lost
        changed = names != self._topics
        self._topics = names
        now = self._clock()
        self._next_metadata = now + self.metadata_age_s
        if changed:
            self._request_rejoin_local("the subscription changed")

    def _matching_topics(self):
        res = self.host._group_call(m.MetadataRequest(topics=None))
        return sorted(t.name for t in res.topics
                      if not t.error_code and not t.is_internal and self._pattern.search(t.name))

    def unsubscribe(self):
        if self._topics is None:
            return
        self._revoke_all(commit=self.auto_commit)
        self._topics = None
        self._pattern = None
        self._joining = False
        self._leader = False
        self._group_topics = None
        self._leave("the consumer unsubscribed")

    def assignment(self):
        return sorted(self._owned)

    # == the poll thread's work ========================================================
    def enter_poll(self):
        self._last_poll = self._clock()
        self._in_poll = True

    def exit_poll(self):
        self._last_poll = self._clock()
        self._in_poll = False

    def next_deadline(self):
        """When step() has timed work (auto commit, metadata, a join backoff), or None:
        poll() sleeps no longer than this. Everything else rings the waker."""
        due = self._next_due()
        return None if due == float("inf") else due

    def step(self):
        """Do what is due; called by poll()/consume() before each fetch round. Runs the
        callbacks; raises the errors listed in the module docstring."""
        now = self._clock()
        if self._attn == self._attn_seen and self._fatal is None and self._next_due() > now:
            return
        self._attn_seen = self._attn
        with self._cv:
            fatal, expired, lost, result = self._fatal, self._expired, self._lost, self._join_res
            self._expired = self._lost = self._join_res = None
            rejoin = self._rejoin
        if fatal is not None:
            self._lose_all(str(fatal))
            self._raise_callback_error()
            raise fatal
        if self._topics is None:
            if self.auto_commit and now >= self._next_commit:
                self._auto_commit(self.host._group_assigned())
            return
        if expired is not None:
            self._joining = False
            self._lose_all("max.poll.interval.ms exceeded")
            self._raise_callback_error()
            raise MaxPollIntervalExceeded(
                f"max.poll.interval.ms exceeded: processing between polls took {expired:.1f} s (the limit is "
                f"{self.max_poll_s:g} s); the group rebalanced and this member's partitions went to others; "
                f"reduce the work per poll or raise max.poll.interval.ms. The next poll rejoins the group.")
        if lost is not None:
            self._lose_all(lost)
        if result is not None:
            epoch, outcome = result
            if epoch == self._epoch and self._joining:
                self._joining = False
                self._apply_join(outcome)
        if not self._joining:
            now = self._clock()
            if self.auto_commit and self._owned and now >= self._next_commit:
                self._auto_commit(self._owned)
            if now >= self._next_metadata:
                self._next_metadata = now + self.metadata_age_s
                self._check_metadata()
            with self._cv:
                rejoin = self._rejoin or rejoin
                generation = self._generation
            if (rejoin is not None or generation < 0) and now >= self._join_not_before:
                self._start_join(rejoin or "joining the group")
        self._raise_callback_error()

    def _next_due(self):
        if self._topics is None:
            return self._next_commit if self.auto_commit else float("inf")
        if self._joining:
            return float("inf")
        with self._cv:
            if self._rejoin is not None or self._generation < 0:
                return self._join_not_before
        due = self._next_metadata
        if self.auto_commit and self._owned:
            due = min(due, self._next_commit)
        return due

    def _request_rejoin_local(self, reason):
        with self._cv:
            if self._rejoin is None:
                self._rejoin = reason
            self._attn += 1

    def _check_metadata(self):
        try:
            if self._pattern is not None:
                names = self._matching_topics()
                if names != self._topics:
                    log.info("group %s: topics matching %s are now %s", self.group_id, self._pattern.pattern, names)
                    self._topics = names
                    self._request_rejoin_local("the topics matching the subscription changed")
            if self._leader and self._group_topics is not None:
                counts = partition_counts(self.host._group_call, set(self._group_topics) | set(self._topics))
                if counts != {t: self._group_topics.get(t, 0) for t in counts}:
                    log.info("group %s: partition counts changed (%s -> %s): rebalancing", self.group_id,
                             self._group_topics, counts)
                    self._request_rejoin_local("the partition count of a subscribed topic changed")
        except OdradekError as e:
            log.warning("group %s: metadata refresh failed: %s", self.group_id, e)

    def _start_join(self, reason):
        if self.protocol_kind == EAGER:
            self._revoke_all(commit=self.auto_commit)
        else:
            gone = {tp for tp in self._owned if tp[0] not in self._topics}
            if gone:
                self._revoke(gone, commit=self.auto_commit)
        with self._cv:
            generation = self._generation
        owned = sorted(self._owned)
        protocols = [m.JoinGroupRequestProtocol(name=a.name, metadata=a.subscription(
            self._topics, owned, generation).encode()) for a in self.assignors]
        with self._cv:
            self._epoch += 1
            self._join_req = (protocols, reason)
            self._hb_active = False
            self._rejoin = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"odradek-group-{self.group_id}",
                                                daemon=True)
                self._thread.start()
            self._cv.notify_all()
        self._joining = True
        log.debug("group %s: joining (%s)", self.group_id, reason)

    def _apply_join(self, outcome):
        now = self._clock()
        if isinstance(outcome, BaseException):
            e = outcome
            if isinstance(e, FencedInstanceId):
                with self._cv:
                    self._fatal = e
                self._lose_all(str(e))
                raise e
            if isinstance(e, (UnknownMemberId, IllegalGeneration)):
                self._lose_all(str(e))      # removed from the group: rejoin now, as new
            elif isinstance(e, RebalanceInProgress):
                pass
            elif isinstance(e, _CONFIG_ERRORS):
                self._join_not_before = now + MAX_BACKOFF_S
                self._request_rejoin_local(f"the last join failed: {e.name}")
                raise e
            else:
                log.info("group %s: join failed (%s); retrying", self.group_id, e)
                self._join_not_before = now + RETRY_BACKOFF_S
            self._request_rejoin_local(f"the last join failed: {e.name}")
            return
        r = outcome
        self._join_not_before = 0.0
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
            self._revoke(revoked, commit=self.auto_commit)
        if added:
            committed = self._fetch_committed_safely(added)
            offsets = {k: (v.offset if v is not None else None) for k, v in committed.items()}
            for k in added:
                self._committed.pop(k, None)
                if offsets.get(k) is not None:
                    self._committed[k] = offsets[k]
            self.host._group_assign(sorted(added), offsets)
            self._owned |= added
        self._next_commit = now + self.auto_commit_s
        log.info("group %s: generation %d, member %s%s: assigned %s", self.group_id, r.generation, r.member_id,
                 " (leader)" if self._leader else "", _show(self._owned))
        self._callback(self._on_assign, sorted(added) if self.protocol_kind == COOPERATIVE else sorted(new))
        if revoked and self.protocol_kind == COOPERATIVE:
            # the partitions we gave up go to their new owners in the next generation
            self._request_rejoin_local("partitions were revoked (cooperative rebalance)")

    def _fetch_committed_safely(self, keys):
        for attempt in range(3):
            try:
                return self.fetch_committed(keys)
            except OdradekError as e:
                if attempt == 2 or not e.retriable:
                    log.warning("group %s: fetching committed offsets failed (%s): auto.offset.reset decides",
                                self.group_id, e)
                    return {}
                time.sleep(RETRY_BACKOFF_S)
        return {}

    # == revoking and losing (poll thread) ================================================
    def _revoke_all(self, commit):
        if self._owned:
            self._revoke(set(self._owned), commit)

    def _revoke(self, keys, commit):
        if commit:
            self._auto_commit(keys, before_revoke=True)
        self.host._group_unassign(sorted(keys))
        self._owned -= keys
        for k in keys:
            self._committed.pop(k, None)
        self._callback(self._on_revoke, sorted(keys))

    def _lose_all(self, why):
        if not self._owned:
            return
        keys = set(self._owned)
        log.info("group %s: partitions lost (%s): %s", self.group_id, why, _show(keys))
        self.host._group_unassign(sorted(keys))
        self._owned.clear()
        for k in keys:
            self._committed.pop(k, None)
        self._callback(self._on_lost or self._on_revoke, sorted(keys))

    def _callback(self, fn, keys):
        if fn is None:
            return
        self.in_callback = True
        try:
            fn(self.host, [TopicPartition(t, p) for t, p in keys])
        except Exception as e:      # raised from poll() once the step is done, as Kafka does
            if self._callback_error is None:
                self._callback_error = e
        finally:
            self.in_callback = False

    def _raise_callback_error(self):
        e, self._callback_error = self._callback_error, None
        if e is not None:
            raise e

    # == offsets (poll thread) ============================================================
    def _commit_identity(self):
        if self._topics is None:
            return -1, "", None     # manual assignment: a standalone commit (the group must be empty)
        with self._cv:
            return self._generation, self._member_id, self.instance_id

    def _auto_commit(self, keys, before_revoke=False):
        self._next_commit = self._clock() + self.auto_commit_s
        positions = self.host._group_positions(sorted(keys))
        todo = {k: off for k, off in positions.items() if off is not None and self._committed.get(k) != off}
        if not todo:
            return
        try:
            self.commit_offsets(todo, None)
        except OdradekError as e:
            level = logging.INFO if isinstance(e, (RebalanceInProgress, IllegalGeneration, UnknownMemberId)) \
                else logging.WARNING
            log.log(level, "group %s: auto commit%s failed: %s", self.group_id,
                    " before revocation" if before_revoke else "", e)
            if self.on_commit is not None:
                self.on_commit(e, [TopicPartition(t, p, o) for (t, p), o in sorted(todo.items())])

    def commit_offsets(self, offsets, metadata):
        """Commit {(topic, partition): offset} (metadata: one string for all, or a dict
        per key). Returns [TopicPartition]. Raises the first error (the whole request's,
        or a partition's)."""
        generation, member_id, instance_id = self._commit_identity()
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
            res = self.host._group_call(req)
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

    def fetch_committed(self, keys, timeout=None):
        """{(topic, partition): OffsetAndMetadata or None} by OffsetFetch."""
        by_topic = {}
        for topic, partition in sorted(keys):
            by_topic.setdefault(topic, []).append(partition)
        res = self.host._group_call(m.OffsetFetchRequest(group_id=self.group_id, topics=[
            m.OffsetFetchRequestTopic(name=t, partition_indexes=ps) for t, ps in by_topic.items()]),
            timeout=timeout)
        out = {}
        for t in res.topics:
            for p in t.partitions:
                if p.error_code:
                    raise error_from_wire(p.error_code, p.error_message)
                key = (t.name, p.partition_index)
                out[key] = (OffsetAndMetadata(t.name, p.partition_index, p.committed_offset, p.metadata or "")
                            if p.committed_offset >= 0 else None)
        return out

    # == leaving (poll thread) ===========================================================
    def _leave(self, reason):
        """LeaveGroup for a dynamic member (a static one keeps its place until its session
        times out, as in Kafka); either way this member's generation ends."""
        with self._cv:
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
                self.host._group_call(m.LeaveGroupRequest(group_id=self.group_id, members=[
                    m.MemberIdentity(member_id=member_id, reason=reason)]))
            except OdradekError as e:
                log.info("group %s: LeaveGroup failed: %s", self.group_id, e)

    def close(self):
        """Commit (auto commit), revoke, leave (dynamic members), stop the group thread."""
        try:
            if self._topics is not None:
                self._revoke_all(commit=self.auto_commit)
                self._leave("the consumer is closing")
            elif self.auto_commit:
                self._auto_commit(self.host._group_assigned())
        finally:
            with self._cv:
                self._closing = True
                link = self._link
                self._cv.notify_all()
            if link is not None:
                link.interrupt()
            if self._thread is not None:
                self._thread.join(10)
            self.waker.close()
        self._raise_callback_error()

    def metadata(self):
        with self._cv:
            return GroupMetadata(self.group_id, self._generation, self._member_id, self.instance_id)

    # == the group thread ================================================================
    def _run(self):
        link = None
        next_hb = 0.0
        try:
            while True:
                with self._cv:
                    job = None
                    while job is None:
                        if self._closing:
                            return
                        now = self._clock()
                        timeout = None
                        if self._join_req is not None:
                            job = ("join", self._join_req, self._epoch)
                            self._join_req = None
                        elif self._hb_active:
                            idle = now - self._last_poll
                            if not self._in_poll and idle > self.max_poll_s:
                                job = ("expire", idle, self._epoch)
                            elif now >= next_hb:
                                job = ("heartbeat", None, self._epoch)
                            else:
                                timeout = next_hb - now
                                if not self._in_poll:
                                    timeout = min(timeout, self.max_poll_s - idle + 0.001)
                        if job is None:
                            self._cv.wait(timeout)
                kind, arg, epoch = job
                try:
                    if link is None:
                        link = self._connect()
                        with self._cv:
                            self._link = link
                            if self._closing:
                                link.interrupt()
                    if kind == "join":
                        outcome = self._join(link, *arg)
                        if not self._post_join(epoch, outcome) and isinstance(outcome, _JoinResult) \
                                and self.instance_id is None:
                            # joined for a poll thread that has moved on (unsubscribe, close): leave
                            self._send_leave(link, outcome.member_id, "the consumer unsubscribed while joining")
                        next_hb = self._clock() + self.heartbeat_s
                    elif kind == "heartbeat":
                        next_hb = self._clock() + self._heartbeat(link, epoch)
                    else:
                        self._expire(link, arg, epoch)
                except _CONNECTION_ERRORS as e:
                    if link is not None:
                        link.close()
                    link = None
                    with self._cv:
                        self._link = None
                    if kind == "join":
                        self._post_join(epoch, e)
                    log.info("group %s: connection to the coordinator failed (%s); reconnecting", self.group_id, e)
                    next_hb = self._clock() + RETRY_BACKOFF_S
                    with self._cv:
                        if not self._closing:
                            self._cv.wait(RETRY_BACKOFF_S)
                except OdradekError as e:
                    if kind == "join":
                        self._post_join(epoch, e)
                    else:
                        log.warning("group %s: %s failed: %s", self.group_id, kind, e)
                        next_hb = self._clock() + RETRY_BACKOFF_S
                except Exception as e:   # a bug or a malformed assignment: the poll thread hears of it
                    log.exception("group %s: %s failed", self.group_id, kind)
                    if kind == "join":
                        self._post_join(epoch, UnknownServerError(f"{type(e).__name__}: {e}"))
        finally:
            if link is not None:
                link.close()
            with self._cv:
                self._link = None

    def _join(self, link, protocols, reason):
        """JoinGroup (with the MEMBER_ID_REQUIRED round trip), the leader's assignment,
        SyncGroup. Returns a _JoinResult or an OdradekError (never raises those)."""
        for _ in range(100):
            with self._cv:
                member_id = self._member_id
            try:
                res = link.call(m.JoinGroupRequest(
                    group_id=self.group_id, session_timeout_ms=self.session_timeout_ms,
                    rebalance_timeout_ms=self.max_poll_ms, member_id=member_id,
                    group_instance_id=self.instance_id, protocol_type=PROTOCOL_TYPE, protocols=protocols,
                    reason=reason, client_id=self.client_id), timeout=self._join_timeout_s)
            except UnknownMemberId as e:
                self._reset(member=True)
                return e
            if res.error_code == MemberIdRequired.code:
                with self._cv:
                    self._member_id = res.member_id
                continue
            if res.error_code:
                return error_from_wire(res.error_code, res.error_message)
            member_id = res.member_id
            with self._cv:
                self._member_id = member_id
            group_topics = None
            assignments = []
            if res.leader == member_id:
                try:
                    subs = {x.member_id: Subscription.decode(x.metadata, x.group_instance_id) for x in res.members}
                except MalformedConsumerProtocol as e:
                    return InconsistentGroupProtocol(f"a member's subscription is not Kafka's consumer protocol: {e}")
                group_topics = partition_counts(link.call, {t for s in subs.values() for t in s.topics})
                if not res.skip_assignment:
                    assignor = next((a for a in self.assignors if a.name == res.protocol_name), None)
                    if assignor is None:
                        return InconsistentGroupProtocol(f"the group chose assignor {res.protocol_name!r}, "
                                                         "which this member did not offer")
                    plan = assignor.assign(subs, {t: n for t, n in group_topics.items() if n})
                    assignments = [m.SyncGroupRequestAssignment(member_id=mid, assignment=a.encode())
                                   for mid, a in plan.items()]
                    log.debug("group %s: leader of generation %d assigned %s", self.group_id, res.generation_id,
                              {mid: _show(a.partitions) for mid, a in plan.items()})
            try:
                sync = link.call(m.SyncGroupRequest(
                    group_id=self.group_id, generation_id=res.generation_id, member_id=member_id,
                    group_instance_id=self.instance_id, protocol_type=PROTOCOL_TYPE,
                    protocol_name=res.protocol_name, assignments=assignments), timeout=self._join_timeout_s)
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
        with self._cv:
            self._generation = -1
            if member:
                self._member_id = ""

    def _post_join(self, epoch, outcome):
        """Hand a join's outcome to the poll thread; False if it no longer wants it."""
        with self._cv:
            if epoch != self._epoch:
                return False     # the poll thread moved on (unsubscribe, close)
            if isinstance(outcome, _JoinResult):
                self._generation = outcome.generation
                self._member_id = outcome.member_id
                self._protocol = outcome.protocol
                self._hb_active = True
            self._join_res = (epoch, outcome)
            self._attn += 1
        self.waker.ring()
        return True

    def _post(self, epoch, **flags):
        with self._cv:
            if epoch != self._epoch:
                return False
            for name, value in flags.items():
                setattr(self, "_" + name, value)
            self._attn += 1
        self.waker.ring()
        return True

    def _heartbeat(self, link, epoch):
        """One Heartbeat; returns seconds until the next."""
        with self._cv:
            req = m.HeartbeatRequest(group_id=self.group_id, generation_id=self._generation,
                                     member_id=self._member_id, group_instance_id=self.instance_id)
        try:
            link.call(req, timeout=REQUEST_TIMEOUT_S)
        except RebalanceInProgress:
            with self._cv:
                first = self._rejoin is None and epoch == self._epoch
            if first:
                log.info("group %s: the group is rebalancing", self.group_id)
                self._post(epoch, rejoin="the group is rebalancing")
        except (IllegalGeneration, UnknownMemberId) as e:
            with self._cv:
                if epoch != self._epoch:
                    return self.heartbeat_s
                self._hb_active = False
                self._generation = -1
                if isinstance(e, UnknownMemberId):
                    self._member_id = ""
            log.info("group %s: heartbeat: %s", self.group_id, e)
            self._post(epoch, lost=f"the coordinator no longer counts this member in ({e.name})")
        except FencedInstanceId as e:
            with self._cv:
                self._hb_active = False
            self._post(epoch, fatal=e)
        except CoordinatorNotAvailable:
            return RETRY_BACKOFF_S
        return self.heartbeat_s

    def _expire(self, link, idle, epoch):
        with self._cv:
            if epoch != self._epoch or not self._hb_active:
                return
            member_id = self._member_id
            self._hb_active = False
            self._generation = -1
            self._member_id = ""
        log.warning("group %s: no poll() for %.1f s (max.poll.interval.ms %d): leaving the group", self.group_id,
                    idle, self.max_poll_ms)
        try:
            if self.instance_id is None and member_id:
                self._send_leave(link, member_id, f"consumer poll timeout has expired: {idle:.1f} s between "
                                                  f"polls, max.poll.interval.ms is {self.max_poll_ms}")
        finally:
            self._post(epoch, expired=idle)

    def _send_leave(self, link, member_id, reason):
        try:
            link.call(m.LeaveGroupRequest(group_id=self.group_id, members=[
                m.MemberIdentity(member_id=member_id, reason=reason)]), timeout=REQUEST_TIMEOUT_S)
        except _CONNECTION_ERRORS:
            raise
        except OdradekError as e:
            log.info("group %s: LeaveGroup failed: %s", self.group_id, e)


def _show(keys):
    by_topic = {}
    for t, p in sorted(keys):
        by_topic.setdefault(t, []).append(p)
    return ", ".join(f"{t}{ps}" for t, ps in by_topic.items()) or "nothing"
