"""Consumer-group membership: the I/O shell around client/group_membership.py.

The Consumer (client/consumer.py) owns one GroupMember when it has a group.id. The
decisions (when to join, what to revoke, what to commit, the JoinGroup / SyncGroup /
Heartbeat exchange) are the sans-IO Membership's; this module runs its jobs and carries
out their actions:

- On the application's thread (subscribe, poll/consume, commit, close): the actions go
  to the Consumer through a PartitionHost (below) and the application's callbacks, which
  run here, always in the thread that calls poll(). A callback's exception is raised
  from poll() once the step is done, as Kafka does.
- On the group thread (one per Consumer, started at the first join): the group
  connection to the coordinator (a GroupLink; connected on first use and again after a
  failure) and the Waker. The thread sleeps on a condition until Membership.link_job()
  has work: a join the poll thread asked for, a heartbeat due, the poll interval run out.
- The Waker is a one-page futex counter that poll()'s futex_waitv sleeps on together with
  the assigned partitions: the group thread rings it when it has news for step(), so
  there is no polling (~0% CPU when idle) and a rebalance is noticed within
  heartbeat.interval.ms.

One lock (a Condition) guards the Membership: every call into it and every step of its
jobs runs with the lock held; actions run without it (so a JoinGroup that waits for the
rest of the group never blocks poll()).

PartitionHost: what the Consumer gives its GroupMember (client/consumer.py
_GroupPartitions), all called on the poll thread:
    consumer                     the object the callbacks receive
    call(request, timeout=None)  a request on the Consumer's control connection -> response
    assign(keys, offsets)        open and position (offset None: auto.offset.reset; offsets
                                 None: no position, not fetched until position() gives one)
    position(offsets)            position those assign() left with none (a seek() since wins)
    unassign(keys)               close and forget
    positions(keys)              {key: next offset} of the partitions it holds
    assigned()                   the keys of its manual assignment
"""
import logging
import socket
import threading
import time

from odradek.client.errors import NetworkException, OdradekError
from odradek.client.group_actions import (Assign, Backoff, Call, Callback, Lose, Position, RaiseCallbackError,
                                          ReadAssigned, ReadPositions, ReportCommit, Revoke, Send, WakeLink, WakePoll)
from odradek.client.group_membership import CONNECTION_ERRORS, REQUEST_TIMEOUT_MS, Membership
from odradek.client.message import GroupMetadata, Record, TopicPartition
from odradek.client.protocol import ControlClient, close_fds
from odradek.client.shm import PartitionState
from odradek.client.shm.partition_state import MIN_SLOTS

__all__ = ["GroupMember", "GroupLink", "Waker"]

log = logging.getLogger(__name__)


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

    def __init__(self, path, timeout=REQUEST_TIMEOUT_MS / 1000):
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



class GroupMember:
    """One member of a consumer group, for a Consumer: runs a Membership's jobs.

    `host` is the Consumer's PartitionHost (module docstring); `connect()` makes the
    group thread's connection (a GroupLink); `clock` is time.monotonic (seconds).
    Used from the Consumer's thread; the group thread is its own."""

    def __init__(self, host, config, connect, clock=time.monotonic):
        self.host = host
        self._clock = clock
        self._m = Membership(config, self._now())
        self.group_id = self._m.group_id
        self.on_commit = config.get("on_commit")
        self._connect = connect
        self.waker = Waker()
        self._on_assign = self._on_revoke = self._on_lost = None
        self._callback_error = None
        self.in_callback = False    # an on_assign/on_revoke/on_lost is running
        # shared with the group thread: under _cv
        self._cv = threading.Condition()
        self._closing = False
        self._thread = None
        self._link = None

    def _now(self):
        return self._clock() * 1000

    # == the application's calls ===========================================================
    @property
    def subscribed(self):
        return self._m.subscribed

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        self._run(self._m.subscribe(topics, self._now()), self._poll_action)
        self._on_assign, self._on_revoke, self._on_lost = on_assign, on_revoke, on_lost

    def unsubscribe(self):
        self._run(self._m.unsubscribe(self._now()), self._poll_action)

    def assignment(self):
        with self._cv:
            return self._m.assignment()

    def metadata(self):
        with self._cv:
            generation, member_id = self._m.identity()
        return GroupMetadata(self.group_id, generation, member_id, self._m.instance_id)

    def enter_poll(self):
        with self._cv:
            self._m.poll_started(self._now())

    def exit_poll(self):
        with self._cv:
            self._m.poll_ended(self._now())

    def next_deadline(self):
        """When step() has timed work (on the clock's scale, seconds), or None."""
        with self._cv:
            due = self._m.next_deadline()
        return None if due is None else due / 1000

    def step(self):
        """Do what is due; called by poll()/consume() before each fetch round."""
        with self._cv:
            job = self._m.step(self._now())
        self._run(job, self._poll_action)

    def position_assigned(self, keys):
        """Partitions assign()ed by hand with no offset start at their committed offsets,
        known now or by a later poll (Membership.position_assigned)."""
        self._run(self._m.position_assigned(keys, self._now()), self._poll_action)

    def forget_positions(self, keys):
        with self._cv:
            self._m.forget_positions(keys)

    def fetch_committed(self, keys, timeout=None):
        """{(topic, partition): OffsetAndMetadata or None} by OffsetFetch."""
        return self._run(self._m.fetch_committed(keys, None if timeout is None else timeout * 1000),
                         self._poll_action)

    def commit(self, offsets=None, asynchronous=False, message=None, metadata=None):
        """Consumer.commit(): offsets (TopicPartition or OffsetAndMetadata items), or a
        Record's offset + 1, or else every assigned partition's position."""
        if message is None and isinstance(offsets, Record):
            message, offsets = offsets, None
        metas = {}
        if message is not None:
            todo = {(message.topic(), message.partition()): message.offset() + 1}
        elif offsets is not None:
            todo = {}
            for tp in offsets:
                if tp.offset is None or tp.offset < 0:
                    raise ValueError(f"commit: {tp.topic}-{tp.partition} has no offset to commit ({tp.offset})")
                todo[(tp.topic, tp.partition)] = tp.offset
                if getattr(tp, "metadata", ""):
                    metas[(tp.topic, tp.partition)] = tp.metadata
        else:
            keys = self.assignment() if self.subscribed else self.host.assigned()
            todo = {k: v for k, v in self.host.positions(keys).items() if v is not None}
        if metadata:
            metas = {k: metas.get(k, metadata) for k in todo}
        if not todo:
            return None if asynchronous else []
        try:
            done = self._run(self._m.commit(todo, metas), self._poll_action)
        except OdradekError as e:
            if not asynchronous:
                raise
            if self.on_commit is not None:
                self.on_commit(e, [TopicPartition(t, p, o) for (t, p), o in sorted(todo.items())])
            return None
        if self.on_commit is not None:
            self.on_commit(None, done)
        return None if asynchronous else done

    def close(self):
        """Commit (auto commit), revoke, leave (dynamic members), stop the group thread."""
        try:
            self._run(self._m.close(self._now()), self._poll_action)
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

    # == running jobs ======================================================================
    def _run(self, job, execute):
        """Run a Membership job to its end, each step under the lock, each action outside
        it; returns the job's result, raises what it raises."""
        if job is None:
            return None
        answer = None
        for _ in range(1 << 30):     # a job yields a few actions
            with self._cv:
                try:
                    action = job.send(answer)
                except StopIteration as done:
                    return done.value
            value = error = None
            try:
                value = execute(action)
            except Exception as e:       # the job decides: handled, or raised on from it
                error = e
            answer = (value, error, self._now())
        raise AssertionError("a group job did not end")

    def _poll_action(self, action):
        kind = type(action)
        if kind is Call:
            return self.host.call(action.request, None if action.timeout_ms is None else action.timeout_ms / 1000)
        if kind is ReadPositions:
            return self.host.positions(action.keys)
        if kind is ReadAssigned:
            return self.host.assigned()
        if kind is Assign:
            self.host.assign(action.keys, action.offsets)
        elif kind is Position:
            self.host.position(action.offsets)
        elif kind is Revoke:
            self.host.unassign(action.keys)
            self._callback(self._on_revoke, action.keys)
        elif kind is Lose:
            self.host.unassign(action.keys)
            self._callback(self._on_lost or self._on_revoke, action.keys)
        elif kind is Callback:
            callbacks = {"on_assign": self._on_assign, "on_revoke": self._on_revoke, "on_lost": self._on_lost}
            self._callback(callbacks[action.name], action.keys)
        elif kind is ReportCommit:
            if self.on_commit is not None:
                self.on_commit(action.error, action.partitions)
        elif kind is Backoff:
            time.sleep(action.ms / 1000)
        elif kind is WakeLink:
            with self._cv:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run_link, name=f"odradek-group-{self.group_id}",
                                                    daemon=True)
                    self._thread.start()
                self._cv.notify_all()
        elif kind is RaiseCallbackError:
            self._raise_callback_error()
        else:
            raise AssertionError(f"not a poll-thread action: {action!r}")
        return None

    def _callback(self, fn, keys):
        if fn is None:
            return
        self.in_callback = True
        try:
            fn(self.host.consumer, [TopicPartition(t, p) for t, p in keys])
        except Exception as e:      # raised from poll() once the step is done, as Kafka does
            if self._callback_error is None:
                self._callback_error = e
        finally:
            self.in_callback = False

    def _raise_callback_error(self):
        e, self._callback_error = self._callback_error, None
        if e is not None:
            raise e

    # == the group thread ==================================================================
    def _run_link(self):
        try:
            while True:     # until close()
                with self._cv:
                    job = None
                    while job is None:
                        if self._closing:
                            return
                        now = self._now()
                        job, wake_at = self._m.link_job(now)
                        if job is None:
                            self._cv.wait(None if wake_at is None else max(0.0, (wake_at - now) / 1000))
                try:
                    self._run(job, self._link_action)
                except CONNECTION_ERRORS as e:
                    self._drop_link()
                    with self._cv:
                        self._m.link_lost(self._now())
                    log.info("group %s: connection to the coordinator failed (%s); reconnecting", self.group_id, e)
                except Exception:     # a bug: logged, and the thread goes on
                    log.exception("group %s: a group thread job failed", self.group_id)
        finally:
            self._drop_link()

    def _link_action(self, action):
        if type(action) is WakePoll:
            self.waker.ring()
            return None
        assert type(action) is Send, action
        link = self._link
        if link is None:
            link = self._connect()
            with self._cv:
                self._link = link
                if self._closing:
                    link.interrupt()
        return link.call(action.request, timeout=action.timeout_ms / 1000)

    def _drop_link(self):
        with self._cv:
            link, self._link = self._link, None
        if link is not None:
            link.close()
