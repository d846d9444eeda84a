"""Fetch (key 1, v4-v18): records straight from the segment files, with sendfile.

Per partition (fetch_views.py finds the bytes): whole batches from the one holding
fetch_offset, none at or above the high watermark (read_uncommitted) or the last stable
offset (read_committed, isolation_level 1, with the aborted transactions overlapping
what is returned: GetSegment's, cached per partition as a shared-memory Consumer caches
them, client/_committed_read.py, and asked for only when the slice holds a transactional
batch past what is cached: PartitionView.transactional_from, which reads a slice of at most
INLINE_MAX bytes with one pread and keeps the bytes for the answer); at most
partition_max_bytes and, over the response,
max_bytes, except that the first partition with data gets at least one whole batch
(KIP-74). high_watermark, last_stable_offset and log_start_offset come from the
partition's shared state. Errors per partition: UNKNOWN_TOPIC_OR_PARTITION (v13+, by
id: UNKNOWN_TOPIC_ID), OFFSET_OUT_OF_RANGE (below the log start or past the log end),
NOT_LEADER_OR_FOLLOWER (no leader now, or its log not loaded yet),
FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH (current_leader_epoch older / newer than the
leader's; FENCED names the leader and its epoch in current_leader, and at v16+ its address
in node_endpoints, KIP-951). NOT_LEADER_OR_FOLLOWER names none: it is answered only while
there is no leader to name. KIP-320 (v12+): a fetch whose last_fetched_epoch ends, in
this log, before its fetch_offset (or which this log knows only an older epoch for) is
answered with diverging_epoch (that epoch and its end offset here) and no records, so the
fetcher truncates; an epoch whose end is not known here (newer than the leader's) is
OFFSET_OUT_OF_RANGE, as in Kafka.

Long poll: while the response has fewer than min_bytes and no error, the thread sleeps
on the partitions' state words (futex_waitv: every publish of the leader wakes it) until
something changes or max_wait passes; never a sleep loop. (At most WAIT_MANY_MAX words,
futex_waitv's limit: the first 128 partitions' of a larger request; the others are looked
at whenever it wakes, at max_wait at the latest.) Sessions: fetch_sessions.py.

Encoding: fetch_answer.py writes an answer without tagged fields (the usual one) by hand.
Any other is built with kio, each partition's `records` a unique 16-byte
placeholder; in the encoded bytes each placeholder (and its length prefix: int32 before
v12, an unsigned varint of length+1 from v12, the flexible versions) is replaced by the
real length prefix and a FileSlice of the segment, and the frame's size is corrected.
No other field holds a byte length around `records` in any version (arrays carry
counts; tagged fields come after it), so the layout is Kafka's for every version.
Placeholders are a random per-process prefix and a counter (unique without a syscall).
An answer whose slices together hold at most INLINE_MAX bytes is read into memory (pread)
and leaves in one send: one TCP segment instead of four (bytes, sendfile, bytes, with
TCP_NODELAY each its own), which is what a consumer trailing a producer gets, one small
batch at a time; larger answers go with sendfile.
"""
import itertools
import os
import struct
import time

from odradek.client.errors import (
    LeaderNotAvailable, NotLeaderOrFollower, OdradekError, OffsetOutOfRange, TornState, UnknownTopicOrPartition)
from odradek.client.protocol import messages as m
from odradek.client.records.varint import encode_uvarint
from odradek.client.shm.waiting import WAIT_MANY_MAX, WaitSet
from odradek.daemon.gateway import fetch_answer
from odradek.daemon.gateway.apis import Api, FileSlice, Reply
from odradek.daemon.gateway.codec import ErrorCode, build, encode_response, response_class
from odradek.daemon.gateway.error_codes import kafka_code
from odradek.daemon.gateway.fetch_sessions import SessionPartition, sessions
from odradek.daemon.gateway.fetch_views import views
from odradek.daemon.gateway.metadata_api import NODE_ID
from odradek.daemon.gateway.topics import directory

__all__ = ["APIS", "splice_records"]

FETCH = 1
FLEXIBLE_FROM = 12
_SIZE = struct.Struct(">i")
_TRIPLES = struct.Struct("=qqq")
INLINE_MAX = 32 * 1024
_MARKER_PREFIX = os.urandom(8)
_markers = itertools.count()
_TAGGED = frozenset(("diverging_epoch", "current_leader", "snapshot_id"))   # answers kio encodes (fetch_answer.py)


def splice_records(framed, slices, flexible):
    """The parts of a framed response whose `records` placeholders ({placeholder:
    FileSlice}) become the slices (see the module docstring): bytes and FileSlices,
    alternating."""
    parts, pos, total = [], 4, len(framed) - 4
    for marker, piece in slices.items():
        at = framed.find(marker, pos)
        if at < 0:
            raise AssertionError("a records placeholder is missing from the encoded response")
        prefix = 1 if flexible else 4     # uvarint(17) is one byte; int32 is four
        head = encode_uvarint(piece.length + 1) if flexible else _SIZE.pack(piece.length)
        parts.append(framed[pos:at - prefix] + head)
        parts.append(piece)
        total += len(head) + piece.length - prefix - len(marker)
        pos = at + len(marker)
    parts.append(framed[pos:])
    return [_SIZE.pack(total) + parts[0], *parts[1:]]


def _inlined(parts):
    """`parts` as one bytes object if their slices hold at most INLINE_MAX bytes and read
    whole; else unchanged (a slice that reads short is then sent, and fails, as a slice)."""
    if sum(p.length for p in parts if isinstance(p, FileSlice)) > INLINE_MAX:
        return parts
    out = []
    for p in parts:
        if isinstance(p, FileSlice):
            data = p.data if p.data is not None else os.pread(p.fd, p.length, p.offset)
            if len(data) != p.length:
                return parts
            out.append(data)
        else:
            out.append(p)
    return [b"".join(out)]


class _Want:
    """One partition to answer."""
    __slots__ = ("topic_key", "name", "partition", "offset", "max_bytes", "leader_epoch", "last_epoch", "error")

    def __init__(self, topic_key, name, partition, offset, max_bytes, leader_epoch, last_epoch,
                 error=ErrorCode.none):
        self.topic_key, self.name, self.partition = topic_key, name, partition
        self.offset, self.max_bytes, self.leader_epoch, self.error = offset, max_bytes, leader_epoch, error
        self.last_epoch = last_epoch      # last_fetched_epoch (v12+; -1: none)


def _requested(ctx, body, by_id):
    """[_Want] of the request's own partitions, and [(topic name, partition)] forgotten."""
    tdir = directory(ctx.gateway) if by_id else None
    wants = []
    for t in body.topics:
        key = t.topic_id if by_id else t.topic
        name = tdir.name_of(key) if by_id else key
        for p in t.partitions:
            wants.append(_Want(key, name, p.partition, p.fetch_offset, p.partition_max_bytes,
                               p.current_leader_epoch if hasattr(p, "current_leader_epoch") else -1,
                               getattr(p, "last_fetched_epoch", -1),
                               ErrorCode.none if name is not None else ErrorCode.unknown_topic_id))
    forgotten = []
    for t in getattr(body, "forgotten_topics_data", ()) or ():
        name = tdir.name_of(t.topic_id) if by_id else t.topic
        forgotten += [(name, p) for p in t.partitions]
    return wants, forgotten


def _read_partition(ctx, want, isolation, limit, min_one):
    """(answer dict, FileSlice or None, view or None, change seen) of one partition."""
    out = dict(partition_index=want.partition, error_code=want.error, high_watermark=-1, last_stable_offset=-1,
               log_start_offset=-1, aborted_transactions=[], records=b"",
               preferred_read_replica=-1)
    if want.error != ErrorCode.none:
        return out, None, None, None
    try:
        view, snap = views(ctx.gateway).get_with_snapshot(want.name, want.partition)
    except (LeaderNotAvailable, NotLeaderOrFollower, TornState):
        out["error_code"] = ErrorCode.not_leader_or_follower
        return out, None, None, None
    except UnknownTopicOrPartition:
        out["error_code"] = ErrorCode.unknown_topic_or_partition
        return out, None, None, None
    except OdradekError as e:
        out["error_code"] = kafka_code(e)
        return out, None, None, None
    if not snap.loaded or snap.fenced:
        out["error_code"] = ErrorCode.not_leader_or_follower
        return out, None, view, snap.change
    lso = view.state.last_stable_offset(snap)
    out.update(high_watermark=snap.high_watermark, last_stable_offset=lso, log_start_offset=snap.log_start_offset)
    if want.leader_epoch >= 0 and want.leader_epoch != snap.leader_epoch:
        if want.leader_epoch < snap.leader_epoch:
            out["error_code"] = ErrorCode.fenced_leader_epoch
            out["current_leader"] = dict(leader_id=NODE_ID, leader_epoch=snap.leader_epoch)
        else:
            out["error_code"] = ErrorCode.unknown_leader_epoch
        return out, None, view, snap.change
    if want.offset < snap.log_start_offset:
        out["error_code"] = ErrorCode.offset_out_of_range
        return out, None, view, snap.change
    if want.last_epoch >= 0:
        try:
            diverging = _divergence(ctx, want, snap)
        except OdradekError as e:
            out["error_code"] = kafka_code(e)
            return out, None, view, snap.change
        if diverging is not None:
            out["diverging_epoch"] = dict(epoch=diverging[0], end_offset=diverging[1])
            return out, None, view, snap.change
    if want.offset > snap.log_end_offset:
        out["error_code"] = ErrorCode.offset_out_of_range
        return out, None, view, snap.change
    upper = lso if isolation == 1 else snap.high_watermark
    if want.offset >= upper or (limit <= 0 and not min_one):
        return out, None, view, snap.change
    piece = view.read(want.offset, upper, max(limit, 0), at_least_one=min_one)
    if piece is not None and isolation == 1:
        out["aborted_transactions"] = _aborted(ctx, view, piece, want.offset, lso)
    return out, piece, view, snap.change


def _divergence(ctx, want, snap):
    """KIP-320: (epoch, end offset) where the fetcher's log leaves this one, or None. Its
    last fetched epoch ends here where OffsetForLeaderEpoch says (the leader's epoch
    cache; the current epoch ends at the log end, no round trip); the logs diverge when
    that is before the fetch offset, or when this log has only an older epoch there."""
    if want.last_epoch == snap.leader_epoch:
        epoch, end = snap.leader_epoch, snap.log_end_offset
    else:
        res = ctx.gateway.links.ask(m.OffsetForLeaderEpochRequest(topic=want.name, partition=want.partition,
                                                                  leader_epoch=want.last_epoch))
        epoch, end = res.leader_epoch, res.end_offset
        if epoch < 0 or end < 0:
            raise OffsetOutOfRange(f"the end of epoch {want.last_epoch} (the last fetched) of {want.name}-"
                                   f"{want.partition} is not known here")
    return (epoch, end) if epoch < want.last_epoch or end < want.offset else None


def _aborted(ctx, view, piece, offset, lso):
    """The aborted transactions overlapping [offset, lso) that the slice `piece` needs:
    Kafka's (producer id, first offset). What the view knows is complete for batches
    below its known_upto (client/_committed_read.py); the leader is asked again only when
    the slice holds a transactional batch at or above it, as a shared-memory Consumer's
    decoder asks: data with no transactions costs no round trip per fetch."""
    with view._lock:
        packed, known_upto = view.aborted.covering(offset)
    if known_upto < lso and view.transactional_from(piece, known_upto, read_whole=INLINE_MAX):
        with view._lock:
            view.aborted.learn(ctx.gateway.links, view.tp, offset, lso)
            packed = view.aborted.packed
    return [dict(producer_id=pid, first_offset=first) for pid, first, marker in _TRIPLES.iter_unpack(packed)
            if marker >= offset and first < lso]


def _read_all(ctx, wants, isolation, max_bytes):
    """[(want, answer, slice)], bytes, [(view, change)], any error."""
    results, total, watch, error = [], 0, [], False
    for want in wants:
        left = max_bytes - total
        limit = min(want.max_bytes, left)
        answer, piece, view, change = _read_partition(ctx, want, isolation, limit, min_one=total == 0)
        if piece is not None:
            total += piece.length
        if answer["error_code"] != ErrorCode.none:
            error = True
        if view is not None and change is not None:
            watch.append((view, change))
        results.append((want, answer, piece))
    return results, total, watch, error


def fetch(ctx, request):
    body, version = request.body, request.api_version
    by_id = version >= 13
    isolation = getattr(body, "isolation_level", 0)
    max_bytes = getattr(body, "max_bytes", 0x7FFFFFFF)
    wants, forgotten = _requested(ctx, body, by_id)
    session, incremental, error = sessions(ctx.gateway).resolve(getattr(body, "session_id", 0),
                                                                 getattr(body, "session_epoch", -1))
    cls = response_class(FETCH, version)
    if error != ErrorCode.none:
        return build(cls, throttle_time=0, error_code=error, session_id=0, responses=[])
    if session is not None:
        wants = _update_session(session, wants, forgotten, incremental)
    deadline = time.monotonic() + body.max_wait.total_seconds()
    for _ in range(1 << 20):     # bounded by the deadline
        results, total, watch, failed = _read_all(ctx, wants, isolation, max_bytes)
        left = deadline - time.monotonic()
        if total >= body.min_bytes or failed or left <= 0 or not watch:
            break
        watch = watch[:WAIT_MANY_MAX]
        WaitSet([v.state for v, _ in watch], [c & 0xFFFFFFFF for _, c in watch]).wait(left)
    return _respond(ctx, request, cls, session, incremental, results, by_id)


def _update_session(session, wants, forgotten, incremental):
    """The session's partitions after this request, as _Wants (all of them)."""
    with session.lock:
        parts = session.partitions
        if incremental:
            for key in forgotten:
                parts.pop(key, None)
        unknown = []
        for w in wants:
            if w.name is None:
                unknown.append(w)
                continue
            key = (w.name, w.partition)
            p = parts.get(key)
            if p is None:
                parts[key] = SessionPartition(w.topic_key, w.offset, w.max_bytes, w.leader_epoch, w.last_epoch)
            else:
                p.fetch_offset, p.max_bytes, p.leader_epoch, p.last_epoch = \
                    w.offset, w.max_bytes, w.leader_epoch, w.last_epoch
        return unknown + [_Want(p.topic_key, name, part, p.fetch_offset, p.max_bytes, p.leader_epoch, p.last_epoch)
                          for (name, part), p in parts.items()]


def _respond(ctx, request, cls, session, incremental, results, by_id):
    topics, order, leader_named, tagged = {}, [], False, False
    if session is not None and incremental:
        session.advance()     # a new session's first incremental fetch is epoch 1
    for want, answer, piece in results:
        if session is not None and want.name is not None:
            marks = (answer["high_watermark"], answer["last_stable_offset"], answer["log_start_offset"])
            with session.lock:
                if (want.name, want.partition) in session.partitions:
                    news = piece is not None or "diverging_epoch" in answer
                    changed = session.changed((want.name, want.partition), answer["error_code"], news, marks)
                    if incremental and not changed:
                        continue
        if piece is not None:
            answer["records"] = piece
        if want.topic_key not in topics:
            topics[want.topic_key] = []
            order.append(want.topic_key)
        topics[want.topic_key].append(answer)
        leader_named = leader_named or "current_leader" in answer
        tagged = tagged or not _TAGGED.isdisjoint(answer)
    session_id = session.id if session is not None else 0
    if not tagged:
        return Reply(_inlined(fetch_answer.encode(request.correlation_id, request.api_version, session_id,
                                                  ErrorCode.none, [(k, topics[k]) for k in order])))
    slices = {}          # kio's answer: each slice a placeholder in the encoded bytes, spliced after
    for k in order:
        for answer in topics[k]:
            if isinstance(answer["records"], FileSlice):
                marker = _MARKER_PREFIX + next(_markers).to_bytes(8, "big")
                slices[marker], answer["records"] = answer["records"], marker
    key = "topic_id" if by_id else "topic"
    host, port = ctx.gateway.advertised      # v16+: where the leaders named in current_leader are
    response = build(cls, throttle_time=0, error_code=ErrorCode.none, session_id=session_id,
                     responses=[{key: k, "partitions": topics[k]} for k in order],
                     node_endpoints=[dict(node_id=NODE_ID, host=host, port=port, rack=None)] if leader_named else [])
    framed = encode_response(request.correlation_id, response)
    if not slices:
        return Reply([framed])
    return Reply(_inlined(splice_records(framed, slices, request.api_version >= FLEXIBLE_FROM)))


APIS = [Api(FETCH, 4, 18, fetch)]
