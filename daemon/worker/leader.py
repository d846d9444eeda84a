"""The partition leader worker: one process per partition leader, owning its log.

Forked by the broker (daemon/broker/supervisor.py) with one end of a socketpair; it
serves the broker's requests for its partition on it (ListOffsets, Status), runs the
log's timers (flush.ms, retention, recovery-point checkpoints) and exits 0 on SIGTERM
after closing the log (flushed, trimmed, checkpointed: the next open is instant).

Theory of operation
- Single-threaded: one selector loop over the broker link and a signal wake-up fd;
  the loop sleeps until the next timer when idle (no polling).
- The broker is the only peer. If the link closes (the broker died), the worker closes
  its log and exits; PR_SET_PDEATHSIG makes the kernel kill it if the broker dies first
  without closing anything (SIGKILL).
- It never touches the cluster metadata: the broker tells it what it needs (the spec).
"""
import ctypes
import logging
import os
import selectors
import signal
import socket
import time

from odradek.client.errors import OdradekError, UnknownTopicOrPartition
from odradek.client.protocol import Channel, ConnectionClosed, ProtocolErrorEvent, Request, messages as m
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.config import NO_LIMIT

__all__ = ["WorkerSpec", "run"]

log = logging.getLogger(__name__)

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
_PR_SET_PDEATHSIG = 1


class WorkerSpec:
    """What a worker needs to know, decided by the broker before the fork."""
    __slots__ = ("topic", "partition", "replica_id", "log_dir", "configs", "leader_epoch",
                 "retention_check_ms", "checkpoint_ms")

    def __init__(self, topic, partition, replica_id, log_dir, configs, leader_epoch,
                 retention_check_ms=300_000, checkpoint_ms=60_000):
        self.topic, self.partition, self.replica_id = topic, partition, replica_id
        self.log_dir, self.configs, self.leader_epoch = log_dir, dict(configs), leader_epoch
        self.retention_check_ms, self.checkpoint_ms = retention_check_ms, checkpoint_ms

    @property
    def partition_dir(self):
        return os.path.join(self.log_dir, f"{self.topic}-{self.partition}")


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not fatal: the closed link also stops us


def run(sock, spec, parent_pid):
    """The worker's main, in the forked child. Returns the exit status."""
    _die_with_parent()
    if os.getppid() != parent_pid:
        return 1  # the broker died between fork and prctl
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(stop_w)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the wake-up fd carries it
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C goes to the broker, which stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    worker = LeaderWorker(sock, spec)
    try:
        worker.open()
        worker.serve(stop_r)
    finally:
        worker.close()
    return 0


class LeaderWorker:
    """The loop of one partition leader. Owned by the worker process's only thread."""

    def __init__(self, sock, spec, clock=time.monotonic):
        self.sock = sock
        self.spec = spec
        self.clock = clock
        self.log = None
        self.channel = Channel()
        self.started = time.time()

    def open(self):
        self.log = PartitionLog(self.spec.partition_dir, LogConfig(self.spec.configs))
        log.info("%s-%d: open at offsets %d..%d", self.spec.topic, self.spec.partition,
                 self.log.log_start_offset, self.log.log_end_offset)

    def serve(self, stop_fd):
        sock = self.sock
        sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ, "link")
        sel.register(stop_fd, selectors.EVENT_READ, "stop")
        now = self.clock()
        next_retention = now + self.spec.retention_check_ms / 1000
        # idle, the loop wakes only for timers: retention, and flush.ms when it is set
        flush_every = min(self.log.config.flush_ms, 1000) / 1000 if self.log.config.flush_ms < NO_LIMIT else None
        try:
            while True:
                deadline = next_retention if flush_every is None else min(next_retention, now + flush_every)
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.channel.wants_write else 0)
                sel.modify(sock, want, "link")
                for key, mask in sel.select(max(0.0, deadline - now)):
                    if key.data == "stop":
                        return
                    if mask & selectors.EVENT_READ:
                        for event in self.channel.feed(sock):
                            if not self._handle(event):
                                return
                    if mask & selectors.EVENT_WRITE:
                        self.channel.flush(sock)
                if self.channel.wants_write:
                    self.channel.flush(sock)
                if self.channel.should_close:
                    return
                now = self.clock()
                self.log.maybe_flush()
                if now >= next_retention:
                    self.log.delete_old_segments()
                    next_retention = now + self.spec.retention_check_ms / 1000
        finally:
            sel.close()

    def _handle(self, event):
        if isinstance(event, ConnectionClosed):
            return False
        if isinstance(event, ProtocolErrorEvent):
            log.warning("broker link: %s", event.error)
            return not event.fatal
        if isinstance(event, Request):
            try:
                response = self._dispatch(event.message)
            except OdradekError as e:
                self.channel.respond_error(event.correlation_id, e)
            else:
                self.channel.respond(event.correlation_id, response)
        return True

    def _dispatch(self, request):
        if isinstance(request, m.ListOffsetsRequest):
            return self._list_offsets(request)
        if isinstance(request, m.StatusRequest):
            return self._status()
        raise UnknownTopicOrPartition(f"a partition worker does not serve {type(request).__name__}")

    def _list_offsets(self, request):
        out = []
        for topic in request.topics:
            parts = []
            for p in topic.partitions:
                if topic.name != self.spec.topic or p.partition_index != self.spec.partition:
                    parts.append(m.ListOffsetsPartitionResponse(
                        partition_index=p.partition_index, error_code=UnknownTopicOrPartition.code,
                        error_message=f"this worker leads {self.spec.topic}-{self.spec.partition}"))
                    continue
                parts.append(self.offsets_for(p.partition_index, p.timestamp))
            out.append(m.ListOffsetsTopicResponse(name=topic.name, partitions=parts))
        return m.ListOffsetsResponse(topics=out)

    def offsets_for(self, partition, timestamp):
        """ListOffsets semantics: -2 earliest, -1 latest, else the first record at or
        after `timestamp` (offset -1 if there is none)."""
        epoch = self.spec.leader_epoch
        if timestamp == EARLIEST_TIMESTAMP:
            return m.ListOffsetsPartitionResponse(partition_index=partition, offset=self.log.log_start_offset,
                                                  leader_epoch=epoch)
        if timestamp == LATEST_TIMESTAMP:
            return m.ListOffsetsPartitionResponse(partition_index=partition, offset=self.log.log_end_offset,
                                                  leader_epoch=epoch)
        found = self.log.offset_for_timestamp(timestamp)
        if found is None:
            return m.ListOffsetsPartitionResponse(partition_index=partition, leader_epoch=epoch)
        return m.ListOffsetsPartitionResponse(partition_index=partition, offset=found[0], timestamp=found[1],
                                              leader_epoch=epoch)

    def _status(self):
        lg = self.log
        return m.StatusResponse(
            broker_pid=os.getppid(), uptime_ms=int((time.time() - self.started) * 1000),
            partitions=[m.PartitionStatus(
                topic=self.spec.topic, partition=self.spec.partition, leader_id=self.spec.replica_id,
                leader_epoch=self.spec.leader_epoch, log_start_offset=lg.log_start_offset,
                log_end_offset=lg.log_end_offset, high_watermark=lg.log_end_offset,
                size_bytes=lg.size_in_bytes, segments=len(lg.segments))])

    def close(self):
        if self.log is not None:
            self.log.close()
            self.log = None
        self.channel.close()
        try:
            self.sock.close()
        except OSError:
            pass


def socketpair():
    """The broker-worker link: a stream socketpair, close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
