"""Where the gateway's Fetch finds a partition's bytes: its shared state and segment fds.

A PartitionView is one partition as a shared-memory Consumer sees it
(client/shm/LAYOUT.md): the state the leader publishes (log start, high watermark, log
end, last stable offset, the descriptors of the last batches; OpenFetch, mapped once per
leader) and read-only fds of its segment files (GetSegment with want_fd), one per
segment, cached. `read()` gives the bytes for an offset as a FileSlice of one segment
(whole batches, from the one holding the offset, below a bound, within a byte limit but
at least one batch), which the connection sends with sendfile: no byte of a record
passes through the gateway's memory.

- A position among the descriptors (the last DEFAULT_SLOTS-1 batches) costs no round
  trip once its segment's fd is cached; an older one asks GetSegment once, which answers
  with the readable extent of its segment, and is read on from there (a `run`: batch
  prefixes read with pread in windows and walked in C: _from_run) until that extent is used up.
- A view whose state is fenced (leadership moved, the worker restarted) is replaced: the
  next leader's files are other files.
- Segment fds: at most MAX_SEGMENTS per view (least recently used dropped), and every
  SWEEP_S those whose file was deleted (retention: no links left) are dropped, so that
  their disk space goes back. A SegmentFile's fd closes when the last reference goes: a
  FileSlice being sent keeps its own.
- Views: at most MAX_VIEWS per gateway (least recently used dropped), and a view not
  used for VIEW_IDLE_S is dropped (with its segment fds), looked for every SWEEP_S.
- A fetch opens the views it lacks together first (Views.prepare: OpenFetch and
  GetSegment pipelined on one control connection), so that a consumer's first fetch of
  many partitions does not pay two round trips per partition in turn.
"""
import os
import struct
import threading
import time
from collections import OrderedDict

from odradek.client import native
from odradek.client._committed_read import AbortedTxns
from odradek.client._liveness import Liveness
from odradek.client.errors import NotInWindow, OdradekError, TornState
from odradek.client.message import TopicPartition
from odradek.client.protocol import messages as m
from odradek.client.records.layout import ATTRIBUTES_LENGTH, ATTRIBUTES_OFFSET, LOG_OVERHEAD, TRANSACTIONAL_MASK
from odradek.client.shm import PartitionState
from odradek.daemon.gateway.apis import FileSlice
from odradek.daemon.gateway.gateway_state import per_gateway

__all__ = ["PartitionView", "Views", "views", "known_log_start"]

MAX_SEGMENTS = 8
MAX_VIEWS = 4096
MAX_RUNS = 8
PREPARE_BATCH = 64           # requests Views.prepare pipelines at once (each OpenFetch brings an fd)
SWEEP_S = 1.0
VIEW_IDLE_S = 60.0
_MAX_DESCRIPTORS = 4096      # bounds one read's walk of descriptors
_MAX_BATCHES = 1 << 16       # bounds one read's walk of a run
SCAN_MAX_BATCHES = 64        # bounds transactional_from's walk of a slice read header by header
PREFIX_WINDOW = 4096         # _from_run's pread while batches are large
SMALL_WINDOW = 64 * 1024     # ... and once one under SMALL_BATCH bytes was seen
SMALL_BATCH = 4096
_PREFIX = struct.Struct(">qi")   # baseOffset, batchLength
_ATTRIBUTES = struct.Struct(">h")
_TXN_HEAD = ATTRIBUTES_OFFSET + ATTRIBUTES_LENGTH     # a batch's bytes up to its attributes


class SegmentFile:
    """A read-only fd of one segment file; closed when the last reference goes."""
    __slots__ = ("fd", "inode", "__weakref__")

    def __init__(self, fd):
        self.fd = fd
        st = os.fstat(fd)
        self.inode = (st.st_dev, st.st_ino)

    def deleted(self):
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def __del__(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


class PartitionView:
    """One partition's state and segment fds (see the module docstring). Thread-safe."""

    def __init__(self, links, topic, partition, fds=None):
        """`fds`: OpenFetch's answer when the caller asked already (Views.prepare); they
        become the view's (closed here)."""
        self.topic, self.partition = topic, partition
        self._links = links
        if fds is None:
            _, fds = links.call(m.OpenFetchRequest(topic=topic, partition=partition))
        try:
            self.state = PartitionState.attach(fds[0])
        finally:
            for fd in fds:
                os.close(fd)
        self._segments = OrderedDict()     # segment base offset -> SegmentFile
        self._runs = OrderedDict()         # next offset -> (SegmentFile, position, readable end)
        self._lock = threading.Lock()
        self._swept = self.used = time.monotonic()
        self.aborted = AbortedTxns()
        self.tp = TopicPartition(topic, partition)

    def snapshot(self):
        return self.state.read()

    def read(self, offset, upper, max_bytes, at_least_one=True):
        """A FileSlice of whole batches from the one holding `offset`, none with a base
        offset at or above `upper`, at most `max_bytes` long unless the first batch alone
        is longer and `at_least_one` (KIP-74); None if there is no such batch (yet)."""
        self._sweep()      # (and marks the view used)
        run = self._take_run(offset) if self._runs else None     # (none kept: the usual read, no lock)
        if run is not None:
            return self._from_run(run, upper, max_bytes, at_least_one)
        try:
            d = self.state.find(offset)
        except NotInWindow:
            return self._locate(offset, upper, max_bytes, at_least_one)
        except TornState:
            return None
        if d is None or d.base_offset >= upper or (d.size > max_bytes and not at_least_one):
            return None
        start = d.position
        if d.last_offset + 1 >= upper:    # the batch is the last below `upper` (a consumer trailing a producer)
            end = start + d.size
        else:
            end = self.state.run_end(d, upper, max_bytes, _MAX_DESCRIPTORS)
        seg = self._segment(d, offset)
        if seg is None:
            return None
        return FileSlice(seg.fd, start, end - start, seg)

    def transactional_from(self, piece, offset, max_batches=SCAN_MAX_BATCHES, read_whole=0):
        """Whether the slice `piece` (of read()) may hold a transactional batch (data or a
        marker) with a base offset at or above `offset`: its batch headers up to the
        attributes; True also when it cannot tell (a short read, a negative batch length,
        more than max_batches batches read header by header), so that the caller asks the
        leader, as it would anyway. A slice of at most `read_whole` bytes is read with one
        pread, kept as piece.data (the answer sends those bytes) and looked at in memory,
        every header of it (a consumer that fell behind a producer of small batches gets
        more than max_batches in one answer: no round trip for them); a larger one is read
        header by header."""
        if piece.data is None and piece.length <= read_whole:
            data = os.pread(piece.fd, piece.length, piece.offset)
            if len(data) == piece.length:
                piece.data = data
        data = piece.data
        pos, end = (0, piece.length) if data is not None else (piece.offset, piece.offset + piece.length)
        # in memory, each batch takes at least its LOG_OVERHEAD bytes: that bounds the walk
        for _ in range(max_batches if data is None else end // LOG_OVERHEAD + 1):
            if pos >= end:
                return False
            if data is not None:
                if end - pos < _TXN_HEAD:
                    return True
                head, at = data, pos
            else:
                head, at = os.pread(piece.fd, _TXN_HEAD, pos), 0
                if len(head) < _TXN_HEAD:
                    return True
            base, length = _PREFIX.unpack_from(head, at)
            if length < 0:
                return True
            if base >= offset and _ATTRIBUTES.unpack_from(head, at + ATTRIBUTES_OFFSET)[0] & TRANSACTIONAL_MASK:
                return True
            pos += length + LOG_OVERHEAD
        return pos < end

    # ---- segments -----------------------------------------------------------------

    def _segment(self, d, offset):
        """The fd of the segment descriptor `d` (of the batch holding `offset`) points
        into; None if `d` went stale meanwhile (a compaction swapped the file)."""
        with self._lock:
            seg = self._segments.get(d.segment_base)
            if seg is not None:
                self._segments.move_to_end(d.segment_base)
                return seg
        res, fds = self._links.call(m.GetSegmentRequest(topic=self.topic, partition=self.partition, offset=offset))
        return self._install(d, offset, res, fds)

    def needs_segment(self, offset):
        """The descriptor of the batch holding `offset` when read() would ask GetSegment
        for its segment (not cached yet), else None."""
        try:
            d = self.state.find(offset)
        except (NotInWindow, TornState):
            return None
        if d is None or d.segment_base in self._segments:
            return None
        return d

    def _install(self, d, offset, res, fds):
        """GetSegment's answer `res` (with `fds`, taken) for descriptor `d` at `offset`:
        kept and returned, or None when `d` went stale meanwhile."""
        if not fds:
            return None
        seg = SegmentFile(fds[0])
        for fd in fds[1:]:
            os.close(fd)
        try:
            still = self.state.find(offset) == d
        except (NotInWindow, TornState):
            still = False
        if res.base_offset != d.segment_base or not still:
            return None     # the caller's next round looks again (the state changed)
        self._keep(res.base_offset, seg)
        return seg

    def _keep(self, base, seg):
        with self._lock:
            self._segments[base] = seg
            self._segments.move_to_end(base)
            while len(self._segments) > MAX_SEGMENTS:
                self._segments.popitem(last=False)

    def _sweep(self):
        self.used = now = time.monotonic()
        if now - self._swept < SWEEP_S:
            return
        self._swept = now
        with self._lock:
            for base in [b for b, s in self._segments.items() if s.deleted()]:
                del self._segments[base]
            for key in [k for k, r in self._runs.items() if r[0].deleted()]:
                del self._runs[key]

    # ---- runs: older data, located with GetSegment ------------------------------------

    def _take_run(self, offset):
        with self._lock:
            return self._runs.pop(offset, None)

    def _locate(self, offset, upper, max_bytes, at_least_one):
        res, fds = self._links.call(m.GetSegmentRequest(topic=self.topic, partition=self.partition, offset=offset))
        if not fds:
            return None
        with self._lock:
            seg = self._segments.get(res.base_offset)
        fresh = SegmentFile(fds[0])
        for fd in fds[1:]:
            os.close(fd)
        if seg is None or seg.inode != fresh.inode:
            seg = fresh
            self._keep(res.base_offset, seg)
        if res.position >= res.size:
            return None
        return self._from_run((seg, res.position, res.size), upper, max_bytes, at_least_one)

    def _from_run(self, run, upper, max_bytes, at_least_one):
        """Whole batches of a run from its position, found by their prefixes (baseOffset,
        batchLength) alone: the file read with pread in windows, PREFIX_WINDOW bytes
        while the batches are large (a read a batch: 16 a MiB of 64 KiB batches),
        SMALL_WINDOW once one under SMALL_BATCH was seen (a consumer replaying a log of
        one-record batches, ~6,000 in a MiB, takes a read per SMALL_WINDOW bytes, not one
        per batch), each window walked in C (native.walk_prefixes). The rest of the run
        is kept under the offset of its first batch."""
        seg, start, end = run
        pos, window, buf, buf_pos = start, PREFIX_WINDOW, b"", start
        for _ in range(_MAX_BATCHES):       # a window a round; each round takes a batch or stops
            if pos >= end:
                break
            buf, buf_pos = os.pread(seg.fd, max(min(window, end - pos), _PREFIX.size), pos), pos
            if len(buf) < _PREFIX.size:
                break
            walked = native.walk_prefixes(buf, buf_pos, pos, start, end, upper, max_bytes, at_least_one,
                                          _MAX_BATCHES)
            if _PREFIX.unpack_from(buf)[1] + LOG_OVERHEAD < SMALL_BATCH:
                window = SMALL_WINDOW
            stopped = walked == pos or walked >= end or walked - buf_pos + _PREFIX.size <= len(buf)
            pos = walked
            if stopped:     # at a prefix the walk could read (not one past the window): done
                break
        if pos < end:
            nxt = buf[pos - buf_pos:pos - buf_pos + 8] if pos - buf_pos + 8 <= len(buf) else os.pread(seg.fd, 8, pos)
            if len(nxt) == 8:
                with self._lock:
                    self._runs[int.from_bytes(nxt, "big", signed=True)] = (seg, pos, end)
                    while len(self._runs) > MAX_RUNS:
                        self._runs.popitem(last=False)
        if pos == start:
            return None
        return FileSlice(seg.fd, start, pos - start, seg)


class Views:
    """The gateway's PartitionViews, by (topic, partition). A broker that restarted made
    new states (the old ones, written by nobody now, would stay at their last offsets):
    a control connection of the Views' own tells, when its end closes (looked at twice
    a second at most, as the Consumer does: client/_liveness.py), and every view is then
    opened anew."""

    def __init__(self, links):
        self._links = links
        self._views = OrderedDict()
        self._lock = threading.Lock()
        self._watch = None
        self._liveness = Liveness()
        self._swept = time.monotonic()

    def _drop_idle(self):
        now = time.monotonic()
        if now - self._swept < SWEEP_S:
            return
        self._swept = now
        with self._lock:
            for key in [k for k, v in self._views.items() if now - v.used > VIEW_IDLE_S]:
                del self._views[key]

    def _check_broker(self):
        with self._lock:
            if self._watch is not None:
                if not self._liveness.broker_gone(self._watch, time.monotonic()):
                    return
                self._watch.close()
                self._views.clear()
                self._watch = None
            try:
                self._watch = self._links.open()
            except (OSError, OdradekError):
                pass      # the broker is not back yet: OpenFetch will say so

    def get(self, topic, partition):
        """The view of a partition, opened (OpenFetch) if needed or if its state is
        fenced; raises what OpenFetch raises (UnknownTopicOrPartition, ...)."""
        return self.get_with_snapshot(topic, partition)[0]

    def get_with_snapshot(self, topic, partition):
        """(get()'s view, a snapshot of its state read then): a fetch's one read of the
        state. Raises as get(), and TornState from a fresh view's snapshot."""
        now = time.monotonic()
        if self._watch is None or self._liveness.due(now):
            self._check_broker()
        if now - self._swept >= SWEEP_S:
            self._drop_idle()
        key = (topic, partition)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
        if view is not None:
            try:
                snap = view.state.read()
                if not snap.fenced:
                    return view, snap
            except TornState:
                pass
        view = PartitionView(self._links, topic, partition)
        self._add(key, view)
        return view, view.snapshot()

    def prepare(self, wants):
        """Open the views the reads of `wants` ((topic, partition, offset), iterated once) lack, with
        requests pipelined on one control connection, PREPARE_BATCH at a time: OpenFetch for
        each, then GetSegment for the segment of the batch at each one's offset (which the
        partitions' workers answer in parallel). A consumer's first fetch of many partitions
        then costs a few round trips instead of two per partition (~1.5 ms each here). What
        fails is left alone: the read asks again and answers the error. With every view
        open it costs a dict lookup per partition."""
        views = self._views
        missing = [w for w in wants if (w[0], w[1]) not in views]
        for i in range(0, len(missing), PREPARE_BATCH):
            batch = missing[i:i + PREPARE_BATCH]
            try:
                answers = self._links.call_many([m.OpenFetchRequest(topic=t, partition=p) for t, p, _ in batch])
            except OdradekError:
                return
            needed = []
            for (t, p, offset), answer in zip(batch, answers):
                if isinstance(answer, OdradekError):
                    continue
                try:
                    view = PartitionView(self._links, t, p, fds=answer[1])
                except (OdradekError, IndexError, ValueError):
                    continue
                self._add((t, p), view)
                d = view.needs_segment(offset)
                if d is not None:
                    needed.append((view, d, offset))
            if not needed:
                continue
            try:
                answers = self._links.call_many([m.GetSegmentRequest(topic=v.topic, partition=v.partition, offset=o)
                                                 for v, _, o in needed])
            except OdradekError:
                return
            for (view, d, offset), answer in zip(needed, answers):
                if not isinstance(answer, OdradekError):
                    view._install(d, offset, *answer)

    def _add(self, key, view):
        with self._lock:
            self._views[key] = view
            self._views.move_to_end(key)
            while len(self._views) > MAX_VIEWS:
                self._views.popitem(last=False)

    def peek(self, topic, partition):
        """The view if it is open, else None (no round trip)."""
        return self._views.get((topic, partition))


def views(gateway):
    """The gateway's Views (made on first use)."""
    return per_gateway(gateway, "fetch_views", lambda g: Views(g.links))


def known_log_start(gateway, topic, partition):
    """The partition's log start offset if the gateway has its state mapped, else -1."""
    view = views(gateway).peek(topic, partition)
    if view is None:
        return -1
    try:
        return view.snapshot().log_start_offset
    except TornState:
        return -1
