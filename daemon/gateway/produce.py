"""Produce (key 0, v3-v13): each partition's batch into its leader's ring (produce_rings.py).

Kafka's rules, checked here before a batch reaches a ring (the leader checks the rest:
CRC, sizes, producer epoch, sequence, transaction state, exactly as for the Python
Producer's batches), each an error of that partition alone:
- exactly one v2 batch (magic 2) per partition: INVALID_RECORD otherwise (Kafka's
  "exactly one record batch per partition" for v3+); CORRUPT_MESSAGE for bytes too short
  to be a batch;
- zstd only from v7 (UNSUPPORTED_COMPRESSION_TYPE);
- transactional batches only in a request with a transactional_id
  (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka answers);
- acks 0, 1 or -1 (INVALID_REQUIRED_ACKS);
- a batch larger than the topic's max.message.bytes or the ring: MESSAGE_TOO_LARGE;
- unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION (v13, by id: UNKNOWN_TOPIC_ID);
  a partition whose leader is gone: NOT_LEADER_OR_FOLLOWER (the client refreshes its
  metadata and retries).
Every batch is written first (start), then the completions are awaited together (its
_Finish), up to the request's timeout (REQUEST_TIMED_OUT after it); between the two a
connection may start the client's next Produce requests (pipelining, server.py). A
request answered at once that holds one batch for one partition (nearly every one) is
read by C, not kio (lone(), native.parse_produce_one), and served the same way. The
first batch of a row rings its leader's doorbell, the next ones before a _Finish leave
it owed (RingAttachment.submit's `defer`); the _Finish rings each owed one before it
looks for completions (and abandon() too, and start() if it fails after a write), so a
burst of pipelined requests to a partition wakes its leader twice, not once per batch
(once more before a batch that has to wait for ring space, which the unrung ones hold:
Ring.write rings first).
acks=0: no response at all, as Kafka; and, as Kafka does, a batch refused by these checks
closes the connection (the client's only way to learn of it).
The answer per partition: the base offset the leader assigned; log_append_time -1, or on
a topic with message.timestamp.type=LogAppendTime the time the leader wrote into the
batch (its descriptor's max timestamp in the partition's shared state; the topic's type
is asked with DescribeConfigs and kept TIMESTAMP_TYPE_TTL_S); the log start offset (from
the partition's shared state, when the gateway has it mapped; else -1); the leader's
error code (our codes are Kafka's).

Answers: an answer in which every partition succeeded, without a log append time (the
usual one), is kio's encoding of the first answer of the same shape (version, topics,
partitions), kept with its correlation id, base offsets and log start offsets at known
places (found as unique random sentinels; a shape whose sentinels are not each found
once is not kept) and filled in: kio's encoding of a Produce answer costs more than
everything else the gateway does for a one-record request.
"""
import datetime
import os
import struct
import threading
import time
import uuid
from collections import OrderedDict

from odradek.client.errors import LeaderNotAvailable, NotInWindow, OdradekError, RingFull, TornState
from odradek.client.protocol import messages as m
from odradek.client.records.layout import (
    BATCH_HEADER_SIZE, COMPRESSION_MASK, LOG_OVERHEAD, MAGIC, TRANSACTIONAL_MASK, Compression, read_header)
from odradek.client.native import parse_produce_one
from odradek.daemon.gateway.apis import CLOSE_CONNECTION, NO_RESPONSE, Api, LoneRequest, Reply
from odradek.daemon.gateway.codec import ErrorCode, build, encode_response, response_class
from odradek.daemon.gateway.error_codes import kafka_code
from odradek.daemon.gateway.fetch_views import known_log_start, views
from odradek.daemon.gateway.gateway_state import per_gateway
from odradek.daemon.gateway.produce_rings import GONE, Attachments
from odradek.daemon.gateway.topics import directory

__all__ = ["APIS"]

PRODUCE = 0
MIN_VERSION, MAX_VERSION = 3, 13
_MIN_WAIT_S = 0.5        # a timeout of 0 still lets the leader answer an append
_CONN_KEY = "closer:produce-rings"
TIMESTAMP_TYPE_TTL_S = 10.0
ANSWER_SHAPES_MAX = 256  # answer templates kept (least recently used dropped)
_types_lock = threading.Lock()
_INT64 = struct.Struct(">q")
_CORRELATION = struct.Struct(">i")    # right after the frame's size, in every response header


def _shared(gateway):
    return per_gateway(gateway, "shared_produce_rings", Attachments.of_gateway)


def _own(conn, gateway):
    att = conn.state.get(_CONN_KEY)
    if att is None:
        att = conn.state[_CONN_KEY] = Attachments.of_gateway(gateway)
    return att


def _log_append_time_topic(gateway, topic):
    """Whether `topic` has message.timestamp.type=LogAppendTime (asked at most every
    TIMESTAMP_TYPE_TTL_S per topic)."""
    known = per_gateway(gateway, "timestamp_types", lambda g: {})
    now = time.monotonic()
    hit = known.get(topic)
    if hit is not None and hit[1] > now:
        return hit[0]
    try:
        res, _ = gateway.links.call(m.DescribeConfigsRequest(resources=[m.DescribeConfigsResource(
            resource_type=m.ConfigResourceType.TOPIC, resource_name=topic,
            configuration_keys=["message.timestamp.type"])]))
        configs = res.results[0].configs if res.results and not res.results[0].error_code else []
        append_time = any(c.value == "LogAppendTime" for c in configs)
    except OdradekError:
        append_time = False
    with _types_lock:
        known[topic] = (append_time, now + TIMESTAMP_TYPE_TTL_S)
    return append_time


def _append_time(gateway, topic, partition, base_offset):
    """The LogAppendTime the leader gave the batch at base_offset, as a datetime; None if
    the partition state no longer describes it."""
    try:
        d = views(gateway).get(topic, partition).state.find(base_offset)
    except (NotInWindow, TornState, OdradekError):
        return None
    if d is None or d.base_offset != base_offset:
        return None
    return datetime.datetime.fromtimestamp(d.max_timestamp / 1000, tz=datetime.timezone.utc)


def _check(records, version, transactional):
    """(error code or None, the batch's header) of one partition's records; `transactional`:
    the request has a transactional_id."""
    if records is None or len(records) < BATCH_HEADER_SIZE:
        return ErrorCode.corrupt_message, None
    h = read_header(records)
    if h.magic != MAGIC or h.batch_length + LOG_OVERHEAD != len(records):
        return ErrorCode.invalid_record, h
    if h.attributes & COMPRESSION_MASK == Compression.ZSTD and version < 7:
        return ErrorCode.unsupported_compression_type, h
    if h.attributes & TRANSACTIONAL_MASK and not transactional:
        return ErrorCode.transactional_id_authorization_failed, h
    return None, h


class _Part:
    """One partition of the request and its answer."""
    __slots__ = ("index", "error", "base_offset", "log_start", "append_time", "att", "owner", "tag")

    def __init__(self, index):
        self.index, self.error, self.base_offset, self.log_start, self.append_time = index, ErrorCode.none, -1, -1, None
        self.att = self.owner = self.tag = None     # the ring attachment, its registry, the batch's tag

    def answer(self):
        return dict(index=self.index, error_code=self.error, base_offset=self.base_offset,
                    log_append_time=self.append_time, log_start_offset=self.log_start, record_errors=[],
                    error_message=None)


def start(ctx, request, spin=False):
    """Produce's first half (apis.py): every partition's batch checked and written into its
    leader's ring; returns the second half, a _Finish. `spin`: its wait for the leaders may
    spin (produce(): nothing else of the client's is in flight, see _Finish)."""
    body, version = request.body, request.api_version
    by_id = version >= 13
    names = directory(ctx.gateway).name_of if by_id else None
    topics = [(t.topic_id, names(t.topic_id), [(p.index, p.records) for p in t.partition_data]) if by_id
              else (t.name, t.name, [(p.index, p.records) for p in t.partition_data]) for t in body.topic_data]
    return _start(ctx, request.correlation_id, version, body.acks, body.timeout.total_seconds(),
                  body.transactional_id is not None, topics, spin)


def lone(ctx, frame):
    """Api.lone (apis.py): a request of one batch to one partition, the usual shape, read
    by native.parse_produce_one instead of kio (on a lone request's cold path kio's
    objects cost ~15 us, the C reading ~1), and served as produce() serves it. Returns
    (the request, its handler call), or None: any other shape, or a name that is not
    UTF-8, goes the general way, which serves or refuses it."""
    got = parse_produce_one(frame, MIN_VERSION, MAX_VERSION)
    if got is None:
        return None
    version, correlation_id, transactional, acks, timeout_ms, index, t_at, t_len, r_at, r_len = got
    topic = frame[t_at:t_at + t_len]
    if version >= 13:
        key = uuid.UUID(bytes=bytes(topic)) if any(topic) else None    # the zero id: kio's None
        name = directory(ctx.gateway).name_of(key) if key is not None else None
    else:
        try:
            key = name = str(topic, "utf-8")
        except UnicodeDecodeError:
            return None
    topics = [(key, name, [(index, frame[r_at:r_at + r_len])])]

    def call():
        return _start(ctx, correlation_id, version, acks, timeout_ms / 1000, bool(transactional), topics, True)()
    return LoneRequest(PRODUCE, version, correlation_id, frame), call


def _start(ctx, correlation_id, version, acks, timeout_s, transactional, topics, spin):
    """start()'s work on its request's fields: `topics` [(key: the name, or from v13 the
    id; name, None if the id is unknown; [(partition index, records)])]."""
    deadline = time.monotonic() + max(timeout_s, _MIN_WAIT_S)
    results = []        # (topic key, name, [_Part])
    try:
        for key, name, partitions in topics:
            parts = []
            results.append((key, name, parts))
            for index, records in partitions:
                part = _Part(index)
                parts.append(part)
                if name is None:
                    part.error = ErrorCode.unknown_topic_id
                elif acks not in (0, 1, -1):
                    part.error = ErrorCode.invalid_required_acks
                else:
                    _submit(ctx, part, name, records, acks, version, transactional, deadline)
    except BaseException:
        _ring_owed(results)
        _release(results)
        raise
    return _Finish(ctx, correlation_id, version, acks, results, deadline, spin)


class _Finish:
    """Produce's second half: wait for the leaders' completions, answer. `spin`: the
    wait spins before it sleeps (produce_rings.py) only for a request answered at once
    (produce(), lone()): its client waits for this answer with nothing else in flight,
    so the spin takes a CPU from nobody; a client pipelining its requests is busy making
    the next ones, and on 2 vCPUs a spin takes its CPU or the leader's (confluent-kafka
    1,000,000 x 100 B, CPU-bound in the client: spinning in every wait gave 65.7 and 66.7
    MB/s against 68.6 and 72.3 without, medians of 8 and 6 interleaved runs; within this
    machine's spread, but no wait of a busy client has anything to gain from a spin)."""
    __slots__ = ("ctx", "correlation_id", "version", "acks", "results", "deadline", "spin")

    def __init__(self, ctx, correlation_id, version, acks, results, deadline, spin=False):
        self.ctx, self.correlation_id, self.version, self.acks = ctx, correlation_id, version, acks
        self.results, self.deadline, self.spin = results, deadline, spin

    def __call__(self):
        gateway, results = self.ctx.gateway, self.results
        _ring_owed(results)
        try:
            if self.acks == 0:
                refused = [f"{name}-{part.index}: {part.error.name}" for _, name, parts in results for part in parts
                           if part.error != ErrorCode.none]
                if refused:   # nothing answers acks=0: closing the connection is how the client learns
                    self.ctx.conn.note("acks=0 produce refused (%s): closing the connection", ", ".join(refused[:5]))
                    return CLOSE_CONNECTION
                return NO_RESPONSE
            for _, name, parts in results:
                for part in parts:
                    if part.tag is not None:
                        _complete(gateway, part, name, self.deadline, self.spin)
        finally:
            _release(results)
        if all(part.error == ErrorCode.none and part.append_time is None for _, _, parts in results for part in parts):
            framed = _answers(gateway).framed(self.correlation_id, self.version, results)
            if framed is not None:
                return Reply([framed])
        return _answer(self.version, results)

    def ready(self):
        """Whether __call__ would answer without waiting (every completion is here)."""
        _ring_owed(self.results)
        return self.acks == 0 or all(part.att.completed(part.tag) for _, _, parts in self.results for part in parts
                                     if part.tag is not None and part.att is not None)

    def abandon(self):
        """The connection closed before the answer: no wait; the completions to come are dropped."""
        _ring_owed(self.results)
        for _, _, parts in self.results:
            for part in parts:
                if part.tag is not None and part.att is not None and self.acks != 0:
                    part.att.abandon(part.tag)
        _release(self.results)


def produce(ctx, request):
    """Produce, started and finished at once (the client has nothing else in flight)."""
    return start(ctx, request, spin=True)()


def _ring_owed(results):
    """Ring the leaders whose batches this request wrote unrung (_submit), once each."""
    for _, _, parts in results:
        for part in parts:
            if part.att is not None:
                part.att.ring_owed()


def _release(results):
    for _, _, parts in results:
        for part in parts:
            if part.att is not None:
                part.owner.release(part.att)
                part.att = None


def _answer(version, results):
    key = "topic_id" if version >= 13 else "name"
    return build(response_class(PRODUCE, version), dict(throttle_time=0, responses=[
        {key: k, "partition_responses": [part.answer() for part in parts]} for k, _, parts in results]))


class _Answers:
    """Templates of successful answers by shape (the module docstring); thread-safe."""

    def __init__(self):
        self._by_shape = OrderedDict()     # shape -> (framed bytes, [(base pos, log start pos or None)]) or None
        self._lock = threading.Lock()

    def framed(self, correlation_id, version, results):
        """The framed answer, or None if this shape has no template."""
        shape = (version, tuple((k, tuple(p.index for p in parts)) for k, _, parts in results))
        with self._lock:
            found = self._by_shape.get(shape, False)
            if found is not False:
                self._by_shape.move_to_end(shape)
        if found is False:
            found = self._template(version, results)
            with self._lock:
                self._by_shape[shape] = found
                while len(self._by_shape) > ANSWER_SHAPES_MAX:
                    self._by_shape.popitem(last=False)
        if found is None:
            return None
        template, places = found
        out = bytearray(template)
        _CORRELATION.pack_into(out, 4, correlation_id)
        parts = [p for _, _, ps in results for p in ps]
        for part, (base_at, start_at) in zip(parts, places):
            _INT64.pack_into(out, base_at, part.base_offset)
            if start_at is not None:
                _INT64.pack_into(out, start_at, part.log_start)
        return bytes(out)

    @staticmethod
    def _template(version, results):
        """(framed answer, places) of `results`' shape with sentinels, or None."""
        stand_ins, sentinels = [], []
        for k, name, parts in results:
            copies = []
            for p in parts:
                c = _Part(p.index)
                c.base_offset, c.log_start = _sentinel(), _sentinel()
                sentinels.append((_INT64.pack(c.base_offset), _INT64.pack(c.log_start)))
                copies.append(c)
            stand_ins.append((k, name, copies))
        framed = encode_response(0, _answer(version, stand_ins))
        places = []
        for base, start in sentinels:
            if framed.count(base) != 1 or framed.count(start) > 1:
                return None
            places.append((framed.index(base), framed.index(start) if start in framed else None))
        return framed, places


def _sentinel():
    return int.from_bytes(os.urandom(8), "big") >> 1     # a positive int64


def _answers(gateway):
    return per_gateway(gateway, "produce_answers", lambda g: _Answers())


def _submit(ctx, part, topic, records, acks, version, transactional, deadline):
    """Check one partition's batch and write it into its leader's ring."""
    code, header = _check(records, version, transactional)
    if code is not None:
        part.error = code
        return
    pid = header.producer_id
    owner = _own(ctx.conn, ctx.gateway) if pid >= 0 else _shared(ctx.gateway)
    try:
        part.att = owner.acquire(topic, part.index, acks, pid, header.producer_epoch, deadline)
    except LeaderNotAvailable:
        part.error = ErrorCode.not_leader_or_follower
        return
    except OdradekError as e:
        part.error = kafka_code(e)
        return
    part.owner = owner
    if len(records) > part.att.max_batch_bytes:
        part.error = ErrorCode.message_too_large
        return
    try:
        part.tag = part.att.submit(records, max(0.0, deadline - time.monotonic()), defer=True)
    except RingFull:
        part.error = ErrorCode.request_timed_out


def _complete(gateway, part, topic, deadline, spin):
    """Wait for the leader's completion of the partition's batch."""
    done = part.att.wait(part.tag, deadline, spin)
    if done is None or done is GONE:     # GONE: the partition was deleted under the attachment
        part.error = ErrorCode.request_timed_out if done is None else ErrorCode.unknown_topic_or_partition
        part.owner.release(part.att, broken=True)   # the next request attaches anew
        part.att = None
        return
    part.error, part.base_offset = kafka_code(done.error_code), done.base_offset
    part.log_start = known_log_start(gateway, topic, part.index)
    if not done.error_code and _log_append_time_topic(gateway, topic):
        part.append_time = _append_time(gateway, topic, part.index, done.base_offset)


APIS = [Api(PRODUCE, MIN_VERSION, MAX_VERSION, produce, start, lone)]
