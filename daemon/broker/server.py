"""The broker: `odradek serve`. Supervisor, controller and control-plane server in one
single-threaded selector loop (the I/O shell; decisions live in metadata.py and the
request handlers in handlers.py, which reach it through server_api.ServerAPI).

Theory of operation
- Start: load the metadata (newest copy among the log dirs), check every log dir's
  identity (log_dirs.py: a missing, empty or foreign dir is offline, never recreated;
  its partitions get no worker), lock the online dirs (a second broker fails at once), derive the partition limits (limits.py; a topic above them
  stays offline), remove what interrupted creates and deletes left, queue one worker per
  partition leader, bind the control socket (mode from socket.mode), tell systemd READY=1.
- Workers are forked from the loop, for at most SPAWN_BUDGET_S per turn, so that while
  hundreds start (at start, or for a new topic) the loop still answers requests and
  SIGTERM between batches. A partition whose worker is still queued answers
  LEADER_NOT_AVAILABLE (retriable), as a Kafka partition coming online does.
- The loop waits on: the listening socket, each client connection, each worker link,
  each worker's pidfd (death noticed at once), and the signal wake-up fd. Its timeout
  is the next timer (watchdog ping, a worker restart that is due, call_later: a
  request's deadline); idle, it sleeps.
- Requests that need a partition's log (ListOffsets, Status) are relayed to the
  worker without blocking: the reply is sent when the worker answers, or with an error
  if it dies first. A slow or dead worker stalls only the requests waiting on it.
  Status asks follower processes too (their log sizes), for at most
  handlers.FOLLOWER_STATUS_WAIT_S, and not those the kernel has stopped: a wedged
  follower (the case status must show) does not stall it.
- One client's garbage, silence or disappearance costs only its own connection.
- The Kafka listener (config `listeners`; gateways.py): the broker binds it first thing
  at start and runs its gateway processes, watched through their pidfds like workers
  and restarted with backoff; Kafka clients never reach this loop.
- SIGTERM/SIGINT: stop accepting, SIGTERM the gateways and every worker (each closes its log cleanly),
  wait for all of them (SIGKILL after a deadline), remove the socket, exit 0.
  SIGHUP: reload the topic defaults from the config file.
"""
import collections
import errno
import heapq
import itertools
import logging
import os
import resource
import selectors
import shutil
import signal
import socket
import struct
import time

from odradek.client.errors import LeaderNotAvailable, OdradekError, StorageError, UnknownServerError
from odradek.client.protocol import Channel, LocalProtocolError, ProtocolErrorEvent, Request, Response
from odradek.client.protocol.transport import close_fds
from odradek.daemon.broker import data_plane, handlers, limits, log_dirs
from odradek.daemon.broker.group_shell import OFFSETS_TOPIC, GroupShell
from odradek.daemon.broker.txn_shell import TXN_TOPIC, TxnShell
from odradek.daemon.broker.dir_lock import DirLocks
from odradek.daemon.broker.gateways import Gateways
from odradek.daemon.broker.malformed import MalformedCount, MalformedLog
from odradek.daemon.broker.metadata import Metadata
from odradek.daemon.broker.sd_notify import Notifier
from odradek.daemon.broker.supervisor import Supervisor, WorkerHandle
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import LogDirCheckpoints, fsync_dir
from odradek.daemon.storage.modes import make_dirs
from odradek.daemon.broker import reassign, replication
from odradek.daemon.worker.spec import WorkerSpec

__all__ = ["Broker"]

log = logging.getLogger(__name__)

SERVED_APIS = handlers.SERVED_APIS
STOP_DEADLINE_S = 30.0
MAX_CLIENTS = 10_000
# Forking time per loop turn while workers start (at least one fork a turn). A fork of
# the broker costs ~2-15 ms on the dev VM, more as it maps more partitions' shared
# memory; between turns the loop answers whoever is waiting.
SPAWN_BUDGET_S = 0.01


class ClientConn:
    """One accepted control connection and who is on the other end (SO_PEERCRED)."""
    __slots__ = ("sock", "channel", "pid", "uid", "gid", "closed", "malformed")

    def __init__(self, sock):
        self.sock = sock
        self.channel = Channel(apis=SERVED_APIS)
        self.pid, self.uid, self.gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        self.closed = False
        self.malformed = MalformedCount()


class Broker:
    """The broker process's loop; its public methods and attributes are the ServerAPI
    (server_api.py) the request handlers use."""

    def __init__(self, config, config_path=None, notifier=None):
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.started = time.time()
        self.metadata = None
        self.locks = None
        self.dirs = []            # a log_dirs.LogDirState per configured log dir
        self.listener = None
        self.clients = {}         # fd -> ClientConn
        self.sel = selectors.DefaultSelector()
        self.supervisor = Supervisor()
        self.gateways = Gateways(config, config.dev_mode)   # the Kafka listener's processes
        self.limits = None
        self.offline = set()      # topics above the partition limits at start: no workers
        self._spawn_queue = collections.deque()   # WorkerHandles to fork, in order
        self.attachments = data_plane.Attachments()
        self.stopping = False
        self.malformed_log = MalformedLog()
        self.groups = None
        self.txn = None
        self._signal_r = self._signal_w = None
        self._next_watchdog = None
        self._next_rebalance = None   # auto.leader.rebalance.enable: the next preferred-leader check
        self._timers = []         # heap of (monotonic due time, seq, callable): call_later
        self._timer_seq = itertools.count()
        self.moves_watched = False    # reassign.watch: a check of the replica moves is due

    # == start and stop ============================================================
    def start(self):
        _raise_fd_limit()
        self.gateways.bind()    # first: a taken port stops a configured broker before it changes anything
        self.limits = limits.derive(self.config.max_partitions, self.config.max_partitions_per_topic)
        log.info("partition limits: %s (%s)", self.limits, self.limits.derived_from)
        self.notifier.status("checking log dirs")
        self.metadata = Metadata.load(self.config.log_dirs)
        self.dirs = log_dirs.assess(self.config.log_dirs, self.metadata)
        if not any(st.online for st in self.dirs):
            raise StorageError("every log dir is offline (" + "; ".join(f"{st.path}: {st.reason}" for st in self.dirs)
                               + "); put the disks back, or see 'odradek log-dirs forget-data --help'")
        log_dirs.create_missing(self.dirs)
        self.notifier.status("locking log dirs")
        self.locks = DirLocks(self.online_log_dirs())
        if log_dirs.format_dirs(self.dirs, self.metadata) | replication.drop_offline_replicas(self.metadata):
            self.metadata.save()
        for st in self.dirs:
            if not st.online:
                log.error("%s", log_dirs.offline_message(st))
        self.notifier.status("loading consumer groups and transactions")
        self.groups = GroupShell(self)
        self.groups.ensure_offsets_topic()
        self.txn = TxnShell(self)
        self.txn.ensure_topic()
        self._remove_strays()
        self.groups.load()
        self.txn.load()
        self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._signal_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)  # delivered through the wake-up fd
        self.sel.register(self._signal_r, selectors.EVENT_READ, ("signal", None))
        self._take_topics_online()
        reassign.watch(self)   # moves saved under way go on
        self._listen()
        for handle in self.gateways.handles:    # after _listen: they check peers against the socket's mode
            self._start_gateway(handle)
        if self.notifier.watchdog_interval_s:
            self._next_watchdog = time.monotonic()
        if self.config.auto_leader_rebalance:
            self._next_rebalance = time.monotonic() + self.config.leader_imbalance_check_s
        log.info("odradek broker %d ready on %s: %d topics, %d partitions (workers starting), log dirs %s",
                 os.getpid(), self.config.socket_path, len(self.metadata.topics), self._partition_count(),
                 ", ".join(self.config.log_dirs))
        self.notifier.ready(self._status_line())

    def _take_topics_online(self):
        """Queue the workers of every topic within the limits (the internal topics first,
        then by name); a topic above them stays offline, with one ERROR line."""
        total = 0
        names = sorted(self.metadata.topics, key=lambda n: (n not in (OFFSETS_TOPIC, TXN_TOPIC), n))
        for name in names:
            topic = self.metadata.topics[name]
            count = len(topic.partitions)
            over = (f"max.partitions.per.topic={self.limits.per_topic}" if count > self.limits.per_topic else
                    f"max.partitions={self.limits.total} ({total} partitions already online)"
                    if total + count > self.limits.total else None)
            if over:
                self.offline.add(name)
                log.error("topic %s is offline: its %d partitions are above %s; delete it with 'odradek "
                          "topics delete %s' or raise the limit (README: recovering from bad metadata)",
                          name, count, over, name)
                continue
            total += count
            for p in topic.partitions:
                if p.leader not in self.metadata.offline_dirs:
                    self.start_worker(topic, p)

    def _remove_strays(self):
        """Partition dirs of no topic in the metadata: empty ones are what a create
        interrupted before its metadata was saved leaves (removed); a dir being deleted
        (-delete) is finished; one holding data is left alone, with a warning. A
        partition's dir in a log dir that holds none of its replicas (what a replica move
        that ended as the broker stopped leaves: reassign.py) is renamed aside with
        STRAY_SUFFIX, as Kafka does with stray logs, not deleted: if the metadata were an
        older copy than the data, deleting would lose records."""
        for st in self.dirs:
            if not st.online:
                continue
            index, log_dir = st.index, st.path
            for name in os.listdir(log_dir):
                path = os.path.join(log_dir, name)
                if name.endswith(filenames.DELETE_SUFFIX) and os.path.isdir(path):
                    log.info("removing %s: a deleted partition's dir", path)
                    shutil.rmtree(path, ignore_errors=True)
                    continue
                tp = filenames.parse_partition_dir(name)
                topic = self.metadata.topics.get(tp[0]) if tp else None
                if topic is not None and tp[1] < len(topic.partitions) and os.path.isdir(path) \
                        and index not in topic.partitions[tp[1]].replicas:
                    stray = f"{path}.{int(time.time() * 1000)}{filenames.STRAY_SUFFIX}"
                    log.warning("%s: no replica of %s-%d is in this log dir (a move that ended as the broker "
                                "stopped?): renamed to %s; delete it once you know it is not needed",
                                path, *tp, stray)
                    os.rename(path, stray)
                    LogDirCheckpoints(log_dir).remove(tp)
                    continue
                if tp is None or not os.path.isdir(path) or (topic is not None and tp[1] < len(topic.partitions)):
                    continue
                if not os.listdir(path):
                    log.info("removing %s: an empty partition dir of no topic (a create interrupted before "
                             "its metadata was saved)", path)
                    os.rmdir(path)
                else:
                    log.warning("%s holds data of no topic in %s; left in place: delete it, or restore the "
                                "metadata", path, filenames.CLUSTER_METADATA)
            fsync_dir(log_dir)

    def make_partition_dirs(self, topic, partitions):
        """Create the leader dirs of new partitions (and sync their log dirs): done before
        the metadata naming them is saved, so a saved partition always has its dir."""
        touched = set()
        for p in partitions:
            offline = self.dir_offline_error(topic.name, p)
            if offline is not None:
                raise offline
            for r in p.replicas:
                if r in self.metadata.offline_dirs:
                    continue
                log_dir = self.config.log_dirs[r]
                make_dirs(os.path.join(log_dir, filenames.partition_dir_name(topic.name, p.partition)))
                touched.add(log_dir)
        for log_dir in touched:
            fsync_dir(log_dir)

    def _listen(self):
        path = self.config.socket_path
        make_dirs(os.path.dirname(path))
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # a stale socket of a broker that died: ours now (dirs are locked)
            else:
                raise StorageError(f"socket {path} is answered by another process; stop it or set socket.path")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o777 & ~self.config.socket_mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, self.config.socket_mode)
        sock.listen(512)
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, ("listen", None))

    def run(self):
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        self.start()
        try:
            while not self._stopped():
                self._tick(self._timeout())
        finally:
            self._cleanup()
        return 0

    def _stopped(self):
        return (self.stopping and not any(h.alive for h in self.supervisor.workers.values())
                and not self.gateways.any_alive())

    def begin_stop(self):
        if self.stopping:
            return
        self.stopping = True
        self._stop_deadline = time.monotonic() + STOP_DEADLINE_S
        self.notifier.stopping()
        log.info("stopping: closing the socket and stopping %d workers", len(self.supervisor.workers))
        self.gateways.stop()    # Kafka clients go first
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.config.socket_path)
            except FileNotFoundError:
                pass
        for conn in list(self.clients.values()):
            self._close_client(conn)
        if self._spawn_queue:
            log.info("stopping: %d workers not started", len(self._spawn_queue))
            self._spawn_queue.clear()
        dead = [h for h in self.supervisor.workers.values() if not h.alive and h.started_at is not None]
        for handle in self.supervisor.workers.values():
            self.supervisor.stop(handle)
        for handle in dead:
            self._tidy(handle)

    def _tidy(self, handle):
        """At a clean stop, a partition whose worker had died (crash, crash loop) gets one
        more worker that only opens its log and closes it: the tail the crash left is
        recovered and the active segment trimmed, as a worker stopped cleanly leaves it."""
        topic = self.metadata.topics.get(handle.spec.topic)
        if topic is None or handle.spec.partition >= len(topic.partitions) or handle.shm is None:
            return
        log.info("stopping: closing the log of %s, whose worker was not running", "-".join(map(str, handle.key)))
        handle.spec = self._spec_of(handle, topic)
        handle.spec.shm = handle.shm
        handle.spec.tidy_only = True
        self.supervisor.start(handle)
        handle.retire, handle.state = True, "stopping"
        self._register_worker(handle)

    def _cleanup(self):
        self.gateways.kill_all()
        for handle in list(self.supervisor.workers.values()):
            if handle.alive:
                os.kill(handle.pid, signal.SIGKILL)
                os.waitpid(handle.pid, 0)
        if self.listener is not None:
            self.listener.close()
            try:
                os.unlink(self.config.socket_path)
            except FileNotFoundError:
                pass
        signal.set_wakeup_fd(-1)
        for fd in (self._signal_r, self._signal_w):
            if fd is not None:
                os.close(fd)
        self.sel.close()
        if self.locks is not None:
            self.locks.release()
        log.info("stopped")

    # == the loop ==================================================================
    def _timeout(self):
        if self._spawn_queue and not self.stopping:
            return 0.0   # more workers to fork: look at the sockets, then fork the next batch
        now = time.monotonic()
        due = [h.restart_at for h in self.supervisor.workers.values() if h.restart_at is not None]
        group_due = self.groups.next_deadline_s() if self.groups is not None else None
        if group_due is not None and not self.stopping:
            due.append(group_due)
        if self._next_watchdog is not None:
            due.append(self._next_watchdog)
        if self._next_rebalance is not None and not self.stopping:
            due.append(self._next_rebalance)
        if self.malformed_log.summary_due is not None:
            due.append(self.malformed_log.summary_due)
        if self.stopping:
            due.append(self._stop_deadline)
        if self._timers:
            due.append(self._timers[0][0])
        gateway_due = self.gateways.next_restart()
        if gateway_due is not None and not self.stopping:
            due.append(gateway_due)
        return max(0.0, min(due) - now) if due else None

    def _tick(self, timeout):
        self._spawn_some()
        for key, mask in self.sel.select(timeout):
            kind, obj = key.data
            if (kind in ("worker", "pidfd", "gateway") and obj.pid is None) or (kind == "client" and obj.closed):
                continue  # reaped or closed earlier in this same round
            if kind == "listen":
                self._accept()
            elif kind == "client":
                self._client_io(obj, mask)
            elif kind == "worker":
                self._worker_io(obj, mask)
            elif kind == "pidfd":
                self._worker_died(obj)
            elif kind == "gateway":
                self._gateway_died(obj)
            elif kind == "signal":
                self._signals()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()
        for handle in list(self.supervisor.workers.values()):
            if handle.restart_at is not None and now >= handle.restart_at and not self.stopping:
                self.queue_worker(handle)
        if not self.stopping:
            for handle in self.gateways.due(now):
                self._start_gateway(handle)
        if self.groups is not None and not self.stopping:
            self.groups.tick()
        if self._next_rebalance is not None and now >= self._next_rebalance and not self.stopping:
            replication.prefer_leaders(self)
            self._next_rebalance = now + self.config.leader_imbalance_check_s
        self.malformed_log.tick()
        if self._next_watchdog is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + self.notifier.watchdog_interval_s
        if self.stopping and now >= self._stop_deadline:
            if self.gateways.any_alive():
                log.warning("the Kafka listener's processes did not stop in %ds: SIGKILL", STOP_DEADLINE_S)
                self.gateways.stop(signal.SIGKILL)
            for handle in self.supervisor.workers.values():
                if handle.alive:
                    log.warning("worker %d for %s-%d did not stop in %ds: SIGKILL", handle.pid,
                                handle.spec.topic, handle.spec.partition, STOP_DEADLINE_S)
                    self.supervisor.stop(handle, signal.SIGKILL)

    def _signals(self):
        try:
            data = os.read(self._signal_r, 64)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.begin_stop()
            elif signum == signal.SIGHUP:
                self.reload()

    def reload(self):
        """SIGHUP: reread the config file; topic defaults apply to workers started from now."""
        if self.config_path is None:
            log.info("SIGHUP: no config file to reload (dev mode)")
            return
        from odradek.daemon.broker.config import load
        try:
            new = load(self.config_path)
        except OdradekError as e:
            log.error("SIGHUP: keeping the running config: %s", e)
            return
        if new.log_dirs != self.config.log_dirs or new.socket_path != self.config.socket_path:
            log.warning("SIGHUP: log.dirs and socket.path change only with a restart")
        if new.listener != self.config.listener:
            log.warning("SIGHUP: the Kafka listener's settings change only with a restart")
        self.config.take_topic_defaults(new)
        log.info("SIGHUP: reloaded topic defaults from %s", self.config_path)

    # == clients ===================================================================
    def _accept(self):
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log.error("accept: %s; raise LimitNOFILE", e)
                    return
                raise
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            conn = ClientConn(sock)
            self.clients[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, ("client", conn))

    def _client_io(self, conn, mask):
        try:
            if mask & selectors.EVENT_READ:
                for event in conn.channel.feed(conn.sock):
                    self._client_event(conn, event)
            if conn.closed:
                return
            if conn.channel.wants_write:
                conn.channel.flush(conn.sock)
        except OSError:
            self._close_client(conn)
            return
        self._update_client(conn)

    def _update_client(self, conn):
        if conn.closed:
            return
        if conn.channel.should_close:
            self._close_client(conn)
            return
        want = (selectors.EVENT_READ if conn.channel.wants_read else 0) | \
            (selectors.EVENT_WRITE if conn.channel.wants_write else 0)
        if want:
            self.sel.modify(conn.sock, want, ("client", conn))
        else:
            self._close_client(conn)

    def _client_event(self, conn, event):
        if isinstance(event, Request):
            try:
                handlers.handle(self, conn, event)
            except OdradekError as e:
                conn.channel.respond_error(event.correlation_id, e)
            except Exception as e:  # a bug in a handler must not take the broker down
                log.exception("handling %s from pid %d", type(event.message).__name__, conn.pid)
                conn.channel.respond_error(event.correlation_id, UnknownServerError(f"internal error: {e}"))
        elif isinstance(event, ProtocolErrorEvent):
            self.malformed_log.frame(conn, conn.malformed, event.error)

    def reply(self, conn, correlation_id, result, fds=()):
        """Send a response (or an OdradekError) to a client, if it is still there. The
        fds go with it and are closed once sent."""
        if conn.closed:
            close_fds(fds)
            return
        if isinstance(result, OdradekError):
            close_fds(fds)
            conn.channel.respond_error(correlation_id, result)
        else:
            try:
                conn.channel.respond(correlation_id, result, fds, close_fds=True)
            except LocalProtocolError as e:
                close_fds(fds)
                conn.channel.respond_error(correlation_id, UnknownServerError(f"internal error: {e}"))
        try:
            conn.channel.flush(conn.sock)
        except OSError:
            self._close_client(conn)
            return
        self._update_client(conn)

    def _close_client(self, conn):
        if conn.closed:
            return
        conn.closed = True
        self.malformed_log.closed(conn, conn.malformed)
        self.clients.pop(conn.sock.fileno(), None)
        data_plane.detach_conn(self, conn)
        if self.groups is not None and not self.stopping:
            self.groups.connection_closed(conn)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.channel.close()
        conn.sock.close()

    # == the Kafka listener's processes ===========================================
    def _start_gateway(self, handle):
        if self.gateways.start(handle):
            self.sel.register(handle.pidfd, selectors.EVENT_READ, ("gateway", handle))

    def _gateway_died(self, handle):
        self.sel.unregister(handle.pidfd)
        log.log(logging.INFO if handle.retire else logging.WARNING, "%s", self.gateways.reap(handle))

    # == workers ===================================================================
    def leader_spec(self, topic, p):
        """The WorkerSpec of partition `p`'s leader, from the metadata and config as of now."""
        cfg = self.config
        return WorkerSpec(topic.name, p.partition, p.leader, cfg.log_dirs[p.leader],
                          topic.log_config(cfg.defaults_for(topic.replication_factor)).to_dict(),
                          p.leader_epoch, cfg.retention_check_interval_ms,
                          cfg.checkpoint_interval_ms, cleaner_backoff_ms=cfg.cleaner_backoff_ms,
                          replicas=p.replicas, isr=p.isr, partition_epoch=p.partition_epoch,
                          replica_lag_time_max_ms=cfg.replica_lag_time_max_ms)

    def _spec_of(self, handle, topic):
        """The current spec of `handle`'s worker: leader or follower."""
        p = topic.partitions[handle.spec.partition]
        if handle.is_follower:
            return replication.follower_spec(self, topic, p, handle.spec.replica_id)
        return self.leader_spec(topic, p)

    def start_worker(self, topic, p):
        """Queue the first worker of partition `p` (forked by _spawn_some), and its
        followers; its shared memory exists from now on, so consumers can map it while
        it starts."""
        handle = WorkerHandle(self.leader_spec(topic, p))
        handle.shm = data_plane.PartitionShm(self.config.descriptor_slots, len(self.config.log_dirs))
        self.queue_worker(handle)
        replication.start_followers(self, topic, p, handle.shm)
        return handle

    def queue_worker(self, handle):
        """Queue `handle`'s worker to be forked with its partition's current spec."""
        handle.state, handle.restart_at, handle.retire = "starting", None, False
        self.supervisor.workers[handle.key] = handle
        self._spawn_queue.append(handle)

    def _spawn_some(self):
        """Fork queued workers for SPAWN_BUDGET_S, each with its partition's current
        spec (configs may have changed while it waited)."""
        until = time.monotonic() + SPAWN_BUDGET_S
        while self._spawn_queue and time.monotonic() < until:
            handle = self._spawn_queue.popleft()
            if handle.retire or self.supervisor.workers.get(handle.key) is not handle:
                continue   # stopped or forgotten (its topic deleted) while queued
            topic = self.metadata.topics.get(handle.spec.topic)
            if topic is None or handle.spec.partition >= len(topic.partitions):
                self.supervisor.forget(handle)
                self.release_partition(handle)
                continue
            if handle.is_follower and handle.spec.replica_id == topic.partitions[handle.spec.partition].leader:
                self.supervisor.forget(handle)   # it leads now
                continue
            handle.spec = self._spec_of(handle, topic)
            handle.spec.shm = handle.shm
            self.supervisor.start(handle)
            self._register_worker(handle)
            if not handle.is_follower:
                data_plane.reattach_all(self, handle.key)
                replication.poll_isr(self, handle.key)

    def partition_shm(self, topic, partition):
        """The PartitionShm of a partition (its worker may be dead; the memory stays)."""
        handle = self.supervisor.workers.get((topic, partition))
        if handle is None or handle.shm is None:
            offline = self.dir_offline_error(topic, partition)
            if offline is not None:
                raise offline
            raise LeaderNotAvailable(f"partition {topic}-{partition} has no leader now; retry")
        return handle.shm

    def _register_worker(self, handle):
        self.sel.register(handle.sock, selectors.EVENT_READ, ("worker", handle))
        handle.linked = True
        self.sel.register(handle.pidfd, selectors.EVENT_READ, ("pidfd", handle))

    def _worker_io(self, handle, mask):
        try:
            if mask & selectors.EVENT_READ:
                for event in handle.channel.feed(handle.sock):
                    if isinstance(event, Response):
                        callback, with_fds = handle.pending.pop(event.correlation_id, (None, False))
                        result = event.error if event.error is not None else event.message
                        if with_fds and callback is not None:
                            callback(result, list(event.fds))
                            continue
                        close_fds(event.fds)
                        if callback is not None:
                            callback(result)
            if handle.channel.wants_write:
                handle.channel.flush(handle.sock)
        except OSError:
            return  # the pidfd will tell us it died
        if handle.sock is None or not handle.linked:
            return
        if not handle.channel.wants_read:
            # the worker closed its end (it is exiting): stop watching the socket, or the
            # loop would spin on its EOF until the pidfd reports the exit
            self.sel.unregister(handle.sock)
            handle.linked = False
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if handle.channel.wants_write else 0)
        self.sel.modify(handle.sock, want, ("worker", handle))

    def call_later(self, delay_s, fn):
        """Call fn() from the loop once delay_s has passed."""
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._timer_seq), fn))

    def worker_request(self, key, message, callback, fds=(), with_fds=False):
        """Relay `message` (and `fds`, closed once sent) to the worker leading partition
        `key` (topic, partition), or to the follower process of `key` (topic, partition,
        replica); `callback(result)`, or `callback(result, fds)` when with_fds."""
        handle = self.supervisor.workers.get(key)
        unavailable = self.dir_offline_error(*key[:2]) or LeaderNotAvailable(
            f"topic {key[0]} is offline: its partitions are above the broker's limits (see the broker log)"
            if key[0] in self.offline else f"partition {key[0]}-{key[1]} has no running leader now; retry")
        # a worker that just died can still look alive here: its link closed, but its
        # pidfd is handled later in this round
        if handle is None or not handle.alive or handle.state != "running" or not handle.channel.wants_read:
            close_fds(fds)
            callback(unavailable, []) if with_fds else callback(unavailable)
            return
        try:
            handle.request(message, callback, fds, with_fds)
        except LocalProtocolError:
            close_fds(fds)
            callback(unavailable, []) if with_fds else callback(unavailable)
            return
        self._worker_io(handle, selectors.EVENT_WRITE)

    def _worker_died(self, handle):
        if handle.linked:
            self.sel.unregister(handle.sock)
            handle.linked = False
        self.sel.unregister(handle.pidfd)
        pid, pending = handle.pid, handle.pending
        handle.pending = {}
        how = self.supervisor.reap(handle)
        level = logging.INFO if handle.retire else logging.WARNING
        what = (f"follower {pid} for {handle.spec.topic}-{handle.spec.partition} replica {handle.spec.replica_id}"
                if handle.is_follower else f"worker {pid} for {handle.spec.topic}-{handle.spec.partition}")
        elected = not handle.is_follower and not handle.retire and replication.leader_died(self, handle)
        log.log(level, "%s ended: %s%s", what, how,
                "" if handle.retire else "; a new leader was elected" if elected
                else f"; restarting in {handle.backoff:.1f}s")
        for callback, with_fds in pending.values():
            error = LeaderNotAvailable(f"the leader of {handle.spec.topic}-{handle.spec.partition} restarted; retry")
            callback(error, []) if with_fds else callback(error)
        if handle.is_follower and not handle.retire and not self.stopping:
            replication.follower_died(self, handle)
        if handle.retire:
            self.supervisor.forget(handle)
            handlers.worker_retired(self, handle)   # may queue it again (a config change)
            if self.supervisor.workers.get(handle.key) is not handle and not handle.is_follower:
                self.release_partition(handle)

    def release_partition(self, handle):
        """The partition's worker is gone for good: fence its state (readers wake and
        ask), drop its producers' attachments, free its shared memory."""
        self.attachments.remove_partition(handle.key)
        if handle.shm is not None:
            handle.shm.fence()
            handle.shm.close()
            handle.shm = None

    def stop_worker(self, handle):
        self.supervisor.stop(handle)

    # == for the handlers and status ===============================================
    def online_log_dirs(self):
        return [st.path for st in self.dirs if st.online]

    def dir_offline_error(self, topic, partition):
        """KAFKA_STORAGE_ERROR for a partition (number or PartitionMeta) whose leader's
        log dir is offline; None otherwise."""
        if isinstance(partition, int):
            t = self.metadata.topics.get(topic)
            if t is None or not 0 <= partition < len(t.partitions):
                return None
            partition = t.partitions[partition]
        if partition.leader not in self.metadata.offline_dirs:
            return None
        st = self.dirs[partition.leader]
        return StorageError(f"partition {topic}-{partition.partition} is offline: its log dir {st.path} is "
                            f"offline ({st.reason}); " + log_dirs.RECOVERY.format(path=st.path))

    def offline_partitions(self):
        return [(t.name, p.partition) for t in self.metadata.topics.values() for p in t.partitions
                if p.leader in self.metadata.offline_dirs]

    def _partition_count(self):
        return sum(len(t.partitions) for t in self.metadata.topics.values())

    def _status_line(self):
        running = sum(1 for h in self.supervisor.workers.values() if h.alive)
        line = f"{len(self.metadata.topics)} topics, {self._partition_count()} partitions, {running} workers running"
        under = self.under_min_isr_partitions()
        if under:
            line += f", {under} under min ISR (acks=all refused)"
        if self.metadata.offline_dirs:
            line += (f", {len(self.metadata.offline_dirs)} log dirs offline, "
                     f"{len(self.offline_partitions())} partitions offline")
        return line

    def min_insync_replicas(self, topic):
        """The topic's effective min.insync.replicas (its config, else the broker's default)."""
        return topic.log_config(self.config.defaults_for(topic.replication_factor)).min_insync_replicas

    def under_min_isr_partitions(self):
        """How many partitions have an ISR smaller than their topic's min.insync.replicas."""
        return sum(len(p.isr) < self.min_insync_replicas(t) for t in self.metadata.topics.values()
                   for p in t.partitions)


def _raise_fd_limit():
    """Raise the soft limit on open files to the hard one, as the Go runtime does: each
    partition costs the broker about four descriptors (worker link, pidfd, doorbell,
    partition state) and each producer attachment three, so a shell's
    default soft limit of 1024 would stop a broker at ~250 partitions. The systemd unit
    sets LimitNOFILE itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass   # not fatal: accept() logs EMFILE with what to do
