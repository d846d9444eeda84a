"""A Consumer's read state for one assigned partition, and where the bytes of a position are.

Owned by one Consumer, used on its thread only. A position is found in the partition
state's batch descriptors (client/shm/LAYOUT.md) and read from the segment file mapped
read-only (MappedSegment); a position older than the descriptor window asks GetSegment,
which answers with a run of whole committed batches in one segment, read on with no
further round trips. The Consumer decodes what bytes_at() returns (consumer.py _decode).
"""
import mmap
import os

from odradek.client.errors import NotInWindow
from odradek.client.protocol import messages as m
from odradek.client.records.layout import BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, LOG_OVERHEAD

__all__ = ["MappedSegment", "AssignedPartition", "Fetched", "Fault"]

_RUN_DESCRIPTORS = 256    # bounds one fetch's walk of the descriptors after the first


class MappedSegment:
    """A segment file mapped read-only. `inode` tells the file apart from the one the
    log cleaner swaps in under the same name (same base offset, other positions)."""
    __slots__ = ("mm", "view", "inode")

    def __init__(self, fd):
        st = os.fstat(fd)
        size = st.st_size
        self.inode = (st.st_dev, st.st_ino)
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) if size else None
        self.view = memoryview(self.mm) if size else memoryview(b"")

    def close(self):
        self.view.release()
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass   # a record view still refers to it; the map goes with the last one


class AssignedPartition:
    """One partition a Consumer reads: its shared state (read-only), the positions, the
    segments mapped, and where the last read was."""
    __slots__ = ("tp", "state", "position", "fetched", "paused", "segments", "run", "retry_at",
                 "change", "extent", "stopped", "resume", "start_at", "leader_epoch", "aborted", "last_item")

    def __init__(self, tp, state):
        self.tp = tp
        self.state = state
        self.position = None    # next offset to hand to the application
        self.fetched = None     # next offset to fetch (ahead of position by what is buffered)
        self.paused = False
        self.segments = {}      # base offset -> MappedSegment
        # (segment, start, end, continues at, offset after end): whole committed batches
        # GetSegment pointed at, read on from `start` while fetched stays at "continues at"
        self.run = None
        self.retry_at = 0.0
        self.change = 0
        # (segment, start, readable end, offset after it or None) of the last read: where
        # an unreadable batch in it is looked at (client/_unreadable.py)
        self.extent = None
        self.stopped = False    # an unreadable batch's Fault is in the buffer: no fetching
        # (offset, run) after an unreadable batch: a seek() to offset reads on from there
        # in the segment (the broker walks from its index and cannot pass a broken length)
        self.resume = None
        # OFFSET_BEGINNING / OFFSET_END asked for before the leader published the log's
        # offsets: resolved at the first fetch that sees them (then position is None)
        self.start_at = None
        # the leader epoch the segments were mapped under: another leader's files are
        # other files (the old leader, a follower now, cuts and rewrites its tail)
        self.leader_epoch = None
        # read_committed: the aborted transactions known (client/_committed_read.py)
        self.aborted = None
        # the last Fetched buffered, until taken whole: control and aborted batches after
        # its records move its `end` on (with none buffered, the position itself)
        self.last_item = None

    def forget_segments(self):
        for seg in self.segments.values():
            seg.close()
        self.segments.clear()
        self.run = self.resume = self.extent = None

    def close(self):
        for seg in self.segments.values():
            seg.close()
        self.segments.clear()
        self.state.close()

    def bytes_at(self, client, pos, hw, max_bytes):
        """A memoryview of whole batches from the one holding `pos`, below hw."""
        run = self.run
        if run is not None and run[1] < run[2] and run[3] == pos:
            return self._from_run(run, max_bytes)
        self.run = None
        try:
            d = self.state.find(pos)
        except NotInWindow:
            return self._locate(client, pos, max_bytes)
        if d is None or d.base_offset >= hw:
            return None
        # the following descriptors too, while they are contiguous and fit the limit
        start, end = d.position, self.state.run_end(d, hw, max_bytes, _RUN_DESCRIPTORS)
        seg = self._segment(client, d, end, pos)
        if seg is None:
            return None   # the descriptors went stale under us (a compaction swap): look again
        self.extent = (seg, start, end, None)
        return seg.view[start:end]

    def _from_run(self, run, max_bytes):
        seg, start, end, _, after = run
        stop = start
        limit = start + max_bytes
        view = seg.view
        # whole batches up to the limit (at least one)
        for _ in range(1 << 20):
            if stop >= end:
                break
            length = int.from_bytes(view[stop + BATCH_LENGTH_OFFSET:stop + LOG_OVERHEAD], "big") + LOG_OVERHEAD
            if length < BATCH_HEADER_SIZE or stop + length > end:
                stop = end    # a damaged length: the rest of the run, for _decode to name
                break
            if stop > start and stop + length > limit:
                break
            stop += length
        self.run = None if stop >= end else (seg, stop, end, None, after)
        self.extent = (seg, start, end, after)
        return view[start:stop]

    def _ask_segment(self, client, pos):
        """GetSegment for `pos`: (the answer, the fds it passed: the caller closes them)."""
        return client.call(m.GetSegmentRequest(topic=self.tp.topic, partition=self.tp.partition, offset=pos))

    def _remap(self, old, base, fd):
        """Map `fd` as the segment at `base` in place of `old` (closed)."""
        if old is not None:
            old.close()
        seg = self.segments[base] = MappedSegment(fd)
        return seg

    def _locate(self, client, pos, max_bytes):
        res, fds = self._ask_segment(client, pos)
        try:
            seg = self.segments.get(res.base_offset)
            if fds and (seg is None or len(seg.view) < res.size or seg.inode != _inode(fds[0])):
                seg = self._remap(seg, res.base_offset, fds[0])
        finally:
            for fd in fds:
                os.close(fd)
        if res.position >= res.size:
            return None
        self.run = (seg, res.position, res.size, pos, res.next_offset)
        return self._from_run(self.run, max_bytes)

    def _segment(self, client, d, need_end, pos):
        """The map of the segment descriptor `d` (of the batch holding `pos`) points
        into, at least need_end bytes long; None if `d` went stale meanwhile."""
        base = d.segment_base
        seg = self.segments.get(base)
        if seg is None or len(seg.view) < need_end:
            res, fds = self._ask_segment(client, pos)
            try:
                seg = self._remap(seg, res.base_offset, fds[0])
            finally:
                for fd in fds:
                    os.close(fd)
            if res.base_offset != base or len(seg.view) < need_end or not _still_found(self.state, pos, d):
                # `d` was read just before the log cleaner swapped this segment for a new
                # file whose batches sit at other positions (reading `d`'s bytes there
                # would give another batch, or half of one). The worker empties the
                # window after a swap and before it answers any request, so `d` still
                # found after this answer describes the file just opened. The emptying
                # changed the state's counter: the caller's next round looks again at once.
                return None
        return seg


class Fetched:
    """In the Consumer's buffer: the Records of one fetch of one partition (a list made
    by one decode_fetch call), of which the first `taken` were returned already; `end`:
    the position once all are (past the control or aborted batches that follow them)."""
    __slots__ = ("part", "topic", "partition", "records", "taken", "end")

    def __init__(self, part, records, end):
        self.part, self.records, self.taken, self.end = part, records, 0, end
        self.topic, self.partition = part.tp.topic, part.tp.partition


class Fault:
    """In the buffer after the last good record before an unreadable batch: taking it
    raises `error` (client/_unreadable.py) and leaves the position at the batch."""
    __slots__ = ("topic", "partition", "error")

    def __init__(self, tp, error):
        self.topic, self.partition, self.error = tp.topic, tp.partition, error


def _still_found(state, pos, d):
    try:
        return state.find(pos) == d
    except NotInWindow:
        return False


def _inode(fd):
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)
