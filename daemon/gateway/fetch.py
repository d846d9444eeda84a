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
partition's shared state; aborted_transactions is null for read_uncommitted, as in
Kafka. Errors per partition (their offsets -1 and aborted_transactions null, as Kafka's
answers): UNKNOWN_TOPIC_OR_PARTITION (v13+, by
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
something changes or max_wait passes (counted from the first read that found too little,
as Kafka's delayed fetch); never a sleep loop. (At most WAIT_MANY_MAX words, futex_waitv's
limit: the first 128 partitions' of a larger request; the others are looked at whenever
it wakes, at max_wait at the latest.) The connection keeps one Sleeper for its long
polls: the WaitSet of the same partitions is made once, not per wait. Sessions:
fetch_sessions.py.

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
from odradek.client.shm.waiting import WAIT_MANY_MAX, Sleeper, Spinner
from odradek.daemon.gateway import fetch_answer
from odradek.daemon.gateway.fetch_answer import PartitionAnswer
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
_NO_ERROR = ErrorCode.none     # (an enum member's lookup costs ~0.1 us: the hot path takes it once)
_MARKER_PREFIX = os.urandom(8)
_markers = itertools.count()


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
    """`parts` as one bytes object if every slice's bytes were read already (fetch's
    _read_small: an answer of at most INLINE_MAX bytes); else unchanged."""
    if any(p.__class__ is FileSlice and p.data is None for p in parts):
        return parts
    return [b"".join(p.data if p.__class__ is FileSlice else p for p in parts)]


class _Want:
    """One partition to answer."""
    __slots__ = ("topic_key", "name", "partition", "offset", "max_bytes", "leader_epoch", "last_epoch", "error")

    def __init__(self, topic_key, name, partition, offset, max_bytes, leader_epoch, last_epoch,
                 error=ErrorCode.none):
        self.topic_key, self.name, self.partition = topic_key, name, partition
        self.offset, self.max_bytes, self.leader_epoch, self.error = offset, max_bytes, leader_epoch, error
        self.last_epoch = last_epoch      # last_fetched_epoch (v12+; -1: none)


class _ConnectionFetch:
    """What the fetches of one connection reuse (in its state, closed with it): the
    gateway's Views, FetchSessions and TopicDirectory, looked up once, and the Sleeper its
    long polls wait with (one WaitSet while they wait on the same partitions; a Spinner
    without a budget: the gateway sleeps at once, it does not spin)."""
    __slots__ = ("views", "sessions", "topics", "sleeper", "spinner")

    def __init__(self, gateway):
        self.views, self.sessions, self.topics = views(gateway), sessions(gateway), directory(gateway)
        self.sleeper, self.spinner = Sleeper(), Spinner(max_ns=0)

    def close(self):
        self.sleeper.close()


_CONNECTION_KEY = "closer:fetch"


def _connection_fetch(ctx):
    state = ctx.conn.state
    found = state.get(_CONNECTION_KEY)
    if found is None:
        found = state[_CONNECTION_KEY] = _ConnectionFetch(ctx.gateway)
    return found


def _requested(tdir, body, by_id):
    """[_Want] of the request's own partitions, and [(topic name, partition)] forgotten
    (topics named by id looked up in `tdir`, the TopicDirectory)."""
    wants = []
    for t in body.topics:
        key = t.topic_id if by_id else t.topic
        name = tdir.name_of(key) if by_id else key
        error = _NO_ERROR if name is not None else ErrorCode.unknown_topic_id
        for p in t.partitions:
            wants.append(_Want(key, name, p.partition, p.fetch_offset, p.partition_max_bytes,
                               p.current_leader_epoch if hasattr(p, "current_leader_epoch") else -1,
                               getattr(p, "last_fetched_epoch", -1), error))
    forgotten = []
    for t in getattr(body, "forgotten_topics_data", ()) or ():
        name = tdir.name_of(t.topic_id) if by_id else t.topic
        forgotten += [(name, p) for p in t.partitions]
    return wants, forgotten


def _read_partition(ctx, views_, want, isolation, limit, min_one, watch):
    """The answer of one partition, its records a FileSlice when it has some; (view,
    change) goes to `watch` for a partition whose state the answer was read from."""
    if want.error != _NO_ERROR:
        return PartitionAnswer(want.partition, want.error)
    try:
        view, snap = views_.get_with_snapshot(want.name, want.partition)
    except (LeaderNotAvailable, NotLeaderOrFollower, TornState):
        return PartitionAnswer(want.partition, ErrorCode.not_leader_or_follower)
    except UnknownTopicOrPartition:
        return PartitionAnswer(want.partition, ErrorCode.unknown_topic_or_partition)
    except OdradekError as e:
        return PartitionAnswer(want.partition, kafka_code(e))
    watch.append((view, snap.change))
    if not snap.loaded or snap.fenced:
        return PartitionAnswer(want.partition, ErrorCode.not_leader_or_follower)
    if want.leader_epoch >= 0 and want.leader_epoch != snap.leader_epoch:
        if want.leader_epoch < snap.leader_epoch:
            out = PartitionAnswer(want.partition, ErrorCode.fenced_leader_epoch)
            out.current_leader = (NODE_ID, snap.leader_epoch)
            return out
        return PartitionAnswer(want.partition, ErrorCode.unknown_leader_epoch)
    if want.offset < snap.log_start_offset:
        return PartitionAnswer(want.partition, ErrorCode.offset_out_of_range)
    lso = view.state.last_stable_offset(snap)
    out = PartitionAnswer(want.partition, _NO_ERROR, snap.high_watermark, lso, snap.log_start_offset,
                          () if isolation == 1 else None)
    if want.last_epoch >= 0:
        try:
            out.diverging_epoch = _divergence(ctx, want, snap)
        except OdradekError as e:
            return PartitionAnswer(want.partition, kafka_code(e))
        if out.diverging_epoch is not None:
            return out
    if want.offset > snap.log_end_offset:
        return PartitionAnswer(want.partition, ErrorCode.offset_out_of_range)
    upper = lso if isolation == 1 else snap.high_watermark
    if want.offset >= upper or (limit <= 0 and not min_one):
        return out
    piece = view.read(want.offset, upper, max(limit, 0), at_least_one=min_one)
    if piece is not None:
        out.records = piece
        if isolation == 1:
            out.aborted_transactions = _aborted(ctx, view, piece, want.offset, lso)
    return out


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
    Kafka's [(producer id, first offset)]. What the view knows is complete for batches
    below its known_upto (client/_committed_read.py); the leader is asked again only when
    the slice holds a transactional batch at or above it, as a shared-memory Consumer's
    decoder asks: data with no transactions costs no round trip per fetch."""
    with view._lock:
        packed, known_upto = view.aborted.covering(offset)
    if known_upto < lso and view.transactional_from(piece, known_upto, read_whole=INLINE_MAX):
        with view._lock:
            view.aborted.learn(ctx.gateway.links, view.tp, offset, lso)
            packed = view.aborted.packed
    if not packed:
        return ()
    return [(pid, first) for pid, first, marker in _TRIPLES.iter_unpack(packed) if marker >= offset and first < lso]


def _read_all(ctx, views_, wants, isolation, max_bytes):
    """[PartitionAnswer] (one per want, in order), bytes, [(view, change)], any error."""
    answers, total, watch, error = [], 0, [], False
    for want in wants:
        answer = _read_partition(ctx, views_, want, isolation, min(want.max_bytes, max_bytes - total), total == 0,
                                 watch)
        if answer.records.__class__ is FileSlice:
            total += answer.records.length
        if answer.error_code != _NO_ERROR:
            error = True
        answers.append(answer)
    return answers, total, watch, error


def fetch(ctx, request):
    body, version = request.body, request.api_version
    conn = _connection_fetch(ctx)
    by_id = version >= 13
    isolation, max_bytes = body.isolation_level, body.max_bytes
    wants, forgotten = _requested(conn.topics, body, by_id)
    session, incremental, error = conn.sessions.resolve(getattr(body, "session_id", 0),
                                                        getattr(body, "session_epoch", -1))
    if error != _NO_ERROR:
        return build(response_class(FETCH, version), throttle_time=0, error_code=error, session_id=0, responses=[])
    if session is not None:
        wants = _update_session(session, wants, forgotten, incremental)
    # the views this gateway lacks, opened together: a first fetch of many partitions
    conn.views.prepare((w.name, w.partition, w.offset) for w in wants if w.error == _NO_ERROR)
    deadline = None      # max_wait counts from the first read that found too little, as in Kafka
    for _ in range(1 << 20):     # bounded by the deadline
        answers, total, watch, failed = _read_all(ctx, conn.views, wants, isolation, max_bytes)
        if total >= body.min_bytes or failed or not watch:
            break
        if deadline is None:
            deadline = time.monotonic() + body.max_wait.total_seconds()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        watch = watch[:WAIT_MANY_MAX]
        conn.sleeper.wait([v.state for v, _ in watch], [c & 0xFFFFFFFF for _, c in watch], left, conn.spinner)
    if total <= INLINE_MAX:
        _read_small(answers)
    return _respond(ctx, request, session, incremental, wants, answers, by_id)


def _read_small(answers):
    """An answer whose slices hold at most INLINE_MAX bytes leaves from memory: each slice
    not read yet is read (pread) into its `data`; one that reads short stays a slice, sent
    (and failing) as one."""
    for a in answers:
        piece = a.records
        if piece.__class__ is FileSlice and piece.data is None:
            data = os.pread(piece.fd, piece.length, piece.offset)
            if len(data) == piece.length:
                piece.data = data


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


def _respond(ctx, request, session, incremental, wants, answers, by_id):
    if session is not None:
        if incremental:
            session.advance()     # a new session's first incremental fetch is epoch 1
        wants, answers = _session_news(session, incremental, wants, answers)
    topics, by_key, tagged, last_key, current = [], {}, False, _NO_KEY, None
    for want, answer in zip(wants, answers):
        if want.topic_key != last_key:       # (the usual request names each topic once, its partitions together)
            last_key = want.topic_key
            current = by_key.get(last_key)
            if current is None:
                current = by_key[last_key] = []
                topics.append((last_key, current))
        current.append(answer)
        if answer.diverging_epoch is not None or answer.current_leader is not None:
            tagged = True
    session_id = session.id if session is not None else 0
    if not tagged:
        return Reply(fetch_answer.encode(request.correlation_id, request.api_version, session_id, _NO_ERROR,
                                         topics, inline=True))
    return _by_kio(ctx, request, session_id, topics, by_id)


_NO_KEY = object()


def _session_news(session, incremental, wants, answers):
    """The (wants, answers) a session's answer lists: in an incremental fetch only the
    partitions with something new (fetch_sessions.py); every one's marks recorded."""
    kept_wants, kept = [], []
    with session.lock:
        for want, answer in zip(wants, answers):
            key = (want.name, want.partition)
            if want.name is not None and key in session.partitions:
                news = answer.records.__class__ is FileSlice or answer.diverging_epoch is not None
                marks = (answer.high_watermark, answer.last_stable_offset, answer.log_start_offset)
                if not session.changed(key, answer.error_code, news, marks) and incremental:
                    continue
            kept_wants.append(want)
            kept.append(answer)
    return kept_wants, kept


def _by_kio(ctx, request, session_id, topics, by_id):
    """An answer with tagged fields, encoded by kio: each slice a placeholder in the
    encoded bytes, spliced after."""
    slices, responses, leader_named = {}, [], False
    key = "topic_id" if by_id else "topic"
    for k, answers in topics:
        partitions = []
        for answer in answers:
            fields = answer.fields()
            if isinstance(fields["records"], FileSlice):
                marker = _MARKER_PREFIX + next(_markers).to_bytes(8, "big")
                slices[marker], fields["records"] = fields["records"], marker
            leader_named = leader_named or answer.current_leader is not None
            partitions.append(fields)
        responses.append({key: k, "partitions": partitions})
    host, port = ctx.gateway.advertised      # v16+: where the leaders named in current_leader are
    response = build(response_class(FETCH, request.api_version), throttle_time=0, error_code=ErrorCode.none,
                     session_id=session_id, responses=responses,
                     node_endpoints=[dict(node_id=NODE_ID, host=host, port=port, rack=None)] if leader_named else [])
    framed = encode_response(request.correlation_id, response)
    if not slices:
        return Reply([framed])
    return Reply(_inlined(splice_records(framed, slices, request.api_version >= FLEXIBLE_FROM)))


APIS = [Api(FETCH, 4, 18, fetch)]
