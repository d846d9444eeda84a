"""Well-framed but hostile Kafka requests: a schema-driven fuzzer for the gateway.

`Fuzzer(seed, known).request(i)` is the i-th request of a seeded run: an API key and
version the gateway serves (apis.table()), and a kio request entity of that version
whose every field is drawn from edge cases of its Kafka type (ints 0, -1, -2, -3, min,
max, small, the known generation and producer id; strings "", the known topic, group
and member id, 250+ characters, "..", "a/b", unicode, config names and values, the
field's own name; arrays empty, one, a few, now and then a few hundred; uuids zero,
random, the known topic's id; records null, empty, garbage, a valid batch, an
idempotent one, one with a byte flipped, two batches, one with a header field odd and
its CRC right). Each request has a Random of its own (seed, i), so one failure is
reproduced from its seed and index, in a run of that seed from its start (the known
values change as the campaign learns them: Known.learn).

`Campaign` sends such requests through one connection (reconnecting when the gateway
closes it) and checks each: answered within `timeout`, the answer decodes with kio as
that API and version's response, with the request's correlation id, and no error code
in it is UNKNOWN_SERVER_ERROR (the gateway's answer to a handler's exception). A
Produce with acks=0 is followed by ApiVersions, whose answer (or a close: Kafka's
refusal of an acks=0 batch) must come. Timeouts are drawn below MAX_TIMEOUT_MS: a
Fetch or JoinGroup that waits as long as it was asked to is not a hang.

Run by hand against a broker of its own, with its listener (the campaign):
    PYTHONPATH=tests .venv/bin/python -m support.kafka_fuzz --seeds 1 2 3 --requests 10000
"""
import argparse
import collections
import dataclasses
import datetime
import random
import socket
import struct
import sys
import tempfile
import time
import typing
import uuid
from types import NoneType, UnionType

import kio.index
import kio.serial
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.errors import ErrorCode

from odradek.client.records import layout
from odradek.daemon.gateway import apis
from odradek.daemon.gateway.codec import build
from support.gateway import KafkaWire
from support.records import bitwise_crc32c, make_batch

__all__ = ["Known", "Fuzzer", "Campaign", "Finding", "served", "set_up", "health"]

MAX_TIMEOUT_MS = 1500
PRODUCE, DESCRIBE_TRANSACTIONS = 0, 65
_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}


@dataclasses.dataclass
class Known:
    """The real values a request may use: a topic (and its id), a group with a member (its
    id and generation), a producer id and epoch, a valid batch and one of that producer."""
    topic: str
    topic_id: uuid.UUID
    group: str
    member_id: str
    generation: int
    producer_id: int
    producer_epoch: int
    batch: bytes
    idempotent_batch: bytes
    transactional_id: str = "fuzz-txn"

    def learn(self, request, response):
        """Take the member id and generation a JoinGroup gave, the producer id and epoch
        an InitProducerId gave: the next requests may use them (a campaign's run of a
        seed is still the same run each time, the broker answering the same)."""
        if request.__api_key__ == JOIN_GROUP and response.member_id and \
                response.error_code in (ErrorCode.none, ErrorCode.member_id_required):
            self.group, self.member_id = request.group_id, response.member_id
            self.generation = response.generation_id if response.generation_id >= 0 else self.generation
        elif request.__api_key__ == INIT_PRODUCER_ID and response.error_code == ErrorCode.none:
            self.producer_id, self.producer_epoch = response.producer_id, response.producer_epoch
            self.transactional_id = request.transactional_id or self.transactional_id


def served(table=None):
    """[(api_key, version)] of everything the gateway serves."""
    return [(k, v) for k, api in sorted((table or apis.table()).items())
            for v in range(api.min_version, api.max_version + 1)]


class Fuzzer:
    def __init__(self, seed, known, keys=None):
        self.seed, self.known, self.keys = seed, known, keys or served()

    def request(self, i):
        """The i-th request of this seed: a kio request entity."""
        self.rng = random.Random(f"{self.seed}-{i}")
        self.big = 1                 # arrays of a few hundred entries left in this request
        self.plausible = self.rng.random() < 0.4    # most fields as a client would fill them
        key, version = self.rng.choice(self.keys)
        return self.entity(kio.index.load_request_schema(key, version))

    def entity(self, cls):
        hints = typing.get_type_hints(cls)
        return cls(**{f.name: self.value(hints[f.name], f.metadata.get("kafka_type"), f.name)
                      for f in dataclasses.fields(cls)})

    def value(self, hint, kafka_type, name):
        nullable = typing.get_origin(hint) is UnionType and NoneType in typing.get_args(hint)
        if nullable:
            if self.rng.random() < 0.15:
                return None
            hint = next(a for a in typing.get_args(hint) if a is not NoneType)
        if typing.get_origin(hint) is tuple:
            element = typing.get_args(hint)[0]
            return tuple(self.value(element, kafka_type, name) for _ in range(self.length()))
        if dataclasses.is_dataclass(hint):
            return self.entity(hint)
        if self.plausible and self.rng.random() < 0.8:
            for part, choices in self.likely():
                if part in name and kafka_type in ("string", "int16", "int32", "int64", "timedelta_i32"):
                    v = self.rng.choice(choices)
                    return datetime.timedelta(milliseconds=v) if kafka_type == "timedelta_i32" else v
        return self.primitive(kafka_type, name)

    def likely(self):
        """(a part of a field's name, values a client would send in it) for plausible
        requests: they get past the first checks, to the ones behind them."""
        k = self.known
        return [("topic", [k.topic]), ("group_id", [k.group]), ("member_id", [k.member_id]),
                ("transactional_id", [k.transactional_id]), ("producer_id", [k.producer_id]),
                ("producer_epoch", [k.producer_epoch]), ("generation", [k.generation]),
                ("protocol_type", ["consumer"]), ("partition", [0, 1, 2]), ("offset", [0, 1, 2]),
                ("session_timeout", [6000]), ("timeout", [1000]), ("acks", [-1, 1]), ("name", [k.topic, "range", "retention.ms"]),
                ("key", [k.group, k.topic])]

    def length(self):
        r = self.rng.random()
        if r < 0.02 and self.big:
            self.big -= 1
            return self.rng.randint(100, 400)
        return 0 if r < 0.25 else 1 if r < 0.7 else self.rng.randint(2, 4)

    def primitive(self, kafka_type, name):
        rng, known = self.rng, self.known
        if kafka_type in _BITS:
            low, high = -(1 << _BITS[kafka_type] - 1), (1 << _BITS[kafka_type] - 1) - 1
            known_ints = [v for v in (known.generation, known.producer_id, known.producer_epoch) if low <= v <= high]
            return rng.choice([0, 0, 1, -1, -1, -2, -3, low, high, rng.randint(0, 8),
                               max(low, min(high, rng.randint(-100, 1000))), *known_ints])
        if kafka_type in ("timedelta_i32", "timedelta_i64"):
            low = -(1 << 31) if kafka_type == "timedelta_i32" else -(1 << 40)
            return datetime.timedelta(milliseconds=rng.choice([0, -1, -2, low, 1, rng.randint(1, MAX_TIMEOUT_MS)]))
        if kafka_type == "bool":
            return rng.random() < 0.5
        if kafka_type == "uuid":
            return rng.choice([uuid.UUID(int=0), uuid.UUID(int=rng.getrandbits(128)), known.topic_id])
        if kafka_type == "string":
            return rng.choice([known.topic, known.topic, known.group, known.group, known.member_id, "", "x" * rng.choice([249, 250, 300]),
                               ".", "..", "a/b", "tøpic-ü", "with space", "nul\0", f"fuzz-{rng.randint(0, 9)}",
                               "retention.ms", "cleanup.policy", "segment.bytes", "max.message.bytes", "-1", "0", "compact",
                               "99999999999999999999", "range", "consumer", name])
        if kafka_type == "bytes":
            return rng.choice([b"", b"\0", rng.randbytes(rng.randint(1, 64))])
        if kafka_type == "records":
            flipped = bytearray(known.batch)
            flipped[rng.randrange(len(flipped))] ^= 0xFF
            return rng.choice([b"", rng.randbytes(rng.randint(1, 80)), known.batch, known.batch, known.idempotent_batch,
                               bytes(flipped), known.batch + known.idempotent_batch, self.hostile_batch()])
        raise ValueError(f"no values for kafka type {kafka_type} ({name})")

    def hostile_batch(self):
        """The known idempotent batch with one header field at an edge value of its type
        and its CRC made right again: a batch that reads well and says something odd."""
        offset, fmt = self.rng.choice(_BATCH_FIELDS)
        bits = struct.calcsize(fmt) * 8
        value = self.rng.choice([0, -1, -2, 1, -(1 << bits - 1), (1 << bits - 1) - 1, self.rng.randint(0, 100)])
        batch = bytearray(self.known.idempotent_batch)
        struct.pack_into(">" + fmt, batch, offset, value)
        struct.pack_into(">I", batch, layout.CRC_OFFSET, bitwise_crc32c(batch[layout.ATTRIBUTES_OFFSET:]))
        return bytes(batch)


# the batch header's fields a hostile batch may change (offset, struct format)
_BATCH_FIELDS = [(layout.BASE_OFFSET_OFFSET, "q"), (layout.BATCH_LENGTH_OFFSET, "i"),
                 (layout.PARTITION_LEADER_EPOCH_OFFSET, "i"), (layout.MAGIC_OFFSET, "b"),
                 (layout.ATTRIBUTES_OFFSET, "h"), (layout.LAST_OFFSET_DELTA_OFFSET, "i"),
                 (layout.BASE_TIMESTAMP_OFFSET, "q"), (layout.MAX_TIMESTAMP_OFFSET, "q"),
                 (layout.PRODUCER_ID_OFFSET, "q"), (layout.PRODUCER_EPOCH_OFFSET, "h"),
                 (layout.BASE_SEQUENCE_OFFSET, "i"), (layout.RECORDS_COUNT_OFFSET, "i")]


@dataclasses.dataclass
class Finding:
    seed: int
    index: int
    what: str
    request: str

    def __str__(self):
        return f"seed {self.seed} request {self.index}: {self.what}: {self.request[:600]}"


class Campaign:
    """Requests through one connection to `port`, each checked (module docstring)."""

    def __init__(self, port, timeout=5.0, refusals=False):
        self.port, self.timeout = port, timeout
        self.observer = KafkaWire(port, timeout=timeout) if refusals else None   # looks at the state (refusals)
        self.wire, self.previous, self.findings, self.sent, self.refusals_checked = None, None, [], 0, 0
        self.served = collections.Counter()      # api key: answers without an error code (reached the end)
        self.slowest = []                        # the 5 slowest answers: (seconds, seed, index, (key, version))
        self.closes = collections.Counter()      # (api key, version) of requests the gateway closed the connection on

    def run(self, fuzzer, indexes):
        self.known = fuzzer.known
        for i in indexes:
            self.one(fuzzer.seed, i, fuzzer.request(i))
        self._drop()
        return self.findings

    def close(self):
        self._drop()
        if self.observer is not None:
            self.observer.close()

    def one(self, seed, i, request, first_try=True):
        """Send `request`, check its answer; with `refusals`, a request that changes state
        but was refused in whole (every error code set), or was only to be validated,
        must change nothing the observer sees."""
        watched = self.observer is not None and request.__api_key__ in MUTATING
        before = state(self.observer, self.known) if watched else None
        self._one(seed, i, request, first_try)
        if watched and self.refused is not None:
            self.refusals_checked += 1
            after = state(self.observer, self.known)
            if request.__api_key__ == JOIN_GROUP:     # only a new group counts: members come and go
                before, after = before["groups"], before["groups"] | after["groups"]
            if before != after:
                self.findings.append(Finding(seed, i, f"refused ({self.refused}), yet changed: "
                                                      f"{_diff(before, after)}", repr(request)))

    def _one(self, seed, i, request, first_try=True):
        self.refused = None
        if self.wire is None:
            self.wire, self.previous = KafkaWire(self.port, timeout=self.timeout), None
        self.sent += first_try
        asked, key = request, (request.__api_key__, request.__version__)
        started = time.monotonic()
        try:
            self.wire.send(request)
            if key[0] == PRODUCE and request.acks == 0:
                asked = ApiVersionsV0()          # no answer for acks=0: ask another question
                self.wire.send(asked)
            body = self.wire.receive_raw()
        except (TimeoutError, socket.timeout):
            self.findings.append(Finding(seed, i, self._late(started), repr(request)))
            return self._drop()
        except ConnectionError:                  # BrokenPipeError, ConnectionResetError
            body = None
        if body is None:
            self._drop()
            if self.previous is not None and first_try and asked is request:   # closed after the previous answer
                self.closes[self.previous[:2]] += 1
                return self._one(seed, i, request, first_try=False)
            self.closes[key] += 1
            return
        self.previous = (*key, i)
        self.slowest = sorted([*self.slowest, (time.monotonic() - started, seed, i, key)], reverse=True)[:5]
        what, response = self._check(asked, body)
        if what is None and asked is request:
            self.refused = refusal(request, response)
            self.served[key[0]] += response is not None and not any(error_codes(response))
            if response is not None:
                self.known.learn(request, response)
        if what is not None:
            self.findings.append(Finding(seed, i, what, repr(request)))
            self._drop()

    def _late(self, started, patience=30.0):
        """What became of an answer not there within the timeout: late (by how much), or never."""
        self.wire.sock.settimeout(patience)
        try:
            late = self.wire.receive_raw() is not None
        except (OSError, socket.timeout):
            late = False
        took = time.monotonic() - started
        return f"answered only after {took:.1f}s" if late else f"no answer within {took:.0f}s"

    def _check(self, request, body):
        cls = kio.index.load_response_schema(request.__api_key__, request.__version__)
        try:
            header, n = kio.serial.entity_reader(cls.__header_schema__)(body, 0)
            response, m = kio.serial.entity_reader(cls)(body, n)
        except Exception as e:
            if request.__api_key__ == DESCRIBE_TRANSACTIONS and "negative timestamp" in str(e):
                return None, None    # Kafka's -1 start time of a transaction with none ongoing: kio cannot read it
            return f"answer does not decode as {cls.__name__} v{request.__version__}: {type(e).__name__}: {e}", None
        if header.correlation_id != self.wire._cid or n + m != len(body):
            return (f"answer framing: correlation id {header.correlation_id} (sent {self.wire._cid}), "
                    f"{len(body) - n - m} bytes left over"), None
        if unknown_server_error(response):
            return f"UNKNOWN_SERVER_ERROR in {str(response)[:400]}", response
        return None, response

    def _drop(self):
        if self.wire is not None:
            self.wire.close()
            self.wire = None


# Requests that change state (JoinGroup: a group), and the error a refusal may still carry
# while it changes something (KIP-394: the member id a new member must rejoin with)
MUTATING = {8, 11, 19, 20, 21, 28, 33, 37, 42, 44, 47}
JOIN_GROUP, INIT_PRODUCER_ID, MEMBER_ID_REQUIRED = 11, 22, 79


def refusal(request, response):
    """Why `request` must have changed nothing: "validate_only", its error codes when
    every one is set, or None."""
    if getattr(request, "validate_only", False):
        return "validate_only"
    codes = error_codes(response) if response is not None else []
    if codes and all(codes) and MEMBER_ID_REQUIRED not in codes:
        return ",".join(sorted({ErrorCode(c).name for c in codes}))
    return None


def error_codes(entity):
    out = []
    for f in dataclasses.fields(entity):
        v = getattr(entity, f.name)
        if f.name == "error_code":
            out.append(int(v))
        for x in v if isinstance(v, tuple) else (v,):
            if dataclasses.is_dataclass(x):
                out += error_codes(x)
    return out


def state(wire, known):
    """What the observer sees: topics (id, partitions), groups, the known topic's configs
    and log start offsets, the known group's committed offsets."""
    topics = wire.call(_req(3, 12, topics=None, allow_auto_topic_creation=False)).topics
    configs = wire.call(_req(32, 4, include_synonyms=False, include_documentation=False, resources=[
        dict(resource_type=2, resource_name=known.topic, configuration_keys=None)])).results
    starts = wire.call(_req(2, 7, replica_id=-1, isolation_level=0, topics=[dict(name=known.topic, partitions=[
        dict(partition_index=p, timestamp=-2) for p in range(3)])])).topics
    return dict(topics={t.name: (t.topic_id, len(t.partitions)) for t in topics},
                groups={g.group_id for g in wire.call(_req(16, 4, states_filter=[])).groups},
                configs={(c.name, c.value) for r in configs for c in r.configs},
                log_start={(p.partition_index, p.offset) for t in starts for p in t.partitions},
                offsets=str(wire.call(_req(9, 8, require_stable=False, groups=[dict(group_id=known.group,
                                                                                    topics=None)])).groups))


def _diff(before, after):
    if not isinstance(before, dict):
        return f"new groups {after - before}"
    return {k: (before[k], after[k]) if not isinstance(before[k], (set, dict)) else
            (f"lost {_minus(before[k], after[k])}", f"got {_minus(after[k], before[k])}")
            for k in before if before[k] != after[k]}


def _minus(a, b):
    return {k: a[k] for k in a if b.get(k) != a[k]} if isinstance(a, dict) else a - b


def unknown_server_error(entity):
    """Whether any error_code in the (nested) entity is UNKNOWN_SERVER_ERROR."""
    for f in dataclasses.fields(entity):
        v = getattr(entity, f.name)
        if f.name == "error_code" and v == ErrorCode.unknown_server_error:
            return True
        for x in v if isinstance(v, tuple) else (v,):
            if dataclasses.is_dataclass(x) and unknown_server_error(x):
                return True
    return False


def set_up(broker, topic="fuzz-topic", group="fuzz-group", partitions=3):
    """Known values on `broker` (a listener_broker), made over the wire: the topic (created
    if missing) with a record in it, the group with a committed offset and a member (its
    session a few seconds long), an idempotent producer."""
    batch = make_batch([b"fuzz"])
    with KafkaWire(broker.port) as wire:
        wire.call(_req(19, 7, topics=[dict(name=topic, num_partitions=partitions, replication_factor=1)],
                       timeout_ms=5000))
        wire.call(_req(0, 9, acks=-1, timeout=5000, topic_data=[dict(name=topic, partition_data=[
            dict(index=0, records=batch)])]))
        wire.call(_req(8, 8, group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
            dict(name=topic, partitions=[dict(partition_index=0, committed_offset=1)])]))
        meta = wire.call(_req(3, 12, topics=[dict(name=topic)], allow_auto_topic_creation=False))
        member_id, generation = "", -1
        for _ in range(2):     # KIP-394: the first join gets a member id, the second joins with it
            join = wire.call(_req(11, 9, group_id=group, session_timeout=5000, rebalance_timeout=MAX_TIMEOUT_MS,
                                  member_id=member_id, protocol_type="consumer",
                                  protocols=[dict(name="range", metadata=b"")]))
            member_id, generation = join.member_id, join.generation_id
        producer = wire.call(_req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                                  producer_epoch=-1))
    idempotent = make_batch([b"fuzz"], producer_id=producer.producer_id, producer_epoch=producer.producer_epoch,
                            base_sequence=0)
    return Known(topic, meta.topics[0].topic_id, group, member_id, generation, producer.producer_id,
                 producer.producer_epoch, batch, idempotent)


def _req(key, version, **values):
    return build(kio.index.load_request_schema(key, version), values)


_LEGAL_TOPIC = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def health(broker):
    """What is wrong with `broker` after a campaign: lines of its log (gateways' too) that
    say "gateway bug" or Traceback, restarts of gateways or workers, topics with names
    Kafka forbids, groups with an empty id, or it not answering."""
    from odradek.client.admin import Admin
    problems = _bad_lines(broker.stderr(None).splitlines())
    with Admin(broker.socket_path) as admin:
        status = admin.status()
        problems += [f"gateway {g.pid} restarts={g.restarts} state={g.state}" for g in status.listeners
                     if g.restarts or g.state != "running"]
        problems += [f"worker {w.topic}-{w.partition} restarts={w.restarts}" for w in status.workers if w.restarts]
        problems += [f"topic with an illegal name: {t!r}" for t in {p.topic for p in status.partitions}
                     if not t or len(t) > 249 or t in (".", "..") or set(t) - _LEGAL_TOPIC]
        problems += [f"group with an empty id: {g}" for g in admin.list_groups() if not g.group_id]
    with KafkaWire(broker.port) as wire:
        if wire.call(ApiVersionsV0()).error_code != ErrorCode.none:
            problems.append("the listener does not answer ApiVersions")
    return problems


def _bad_lines(lines):
    """The "gateway bug" lines and every Traceback (whole, to its exception's line)."""
    out, in_traceback = [], False
    for line in lines:
        if "Traceback" in line or "gateway bug" in line:
            in_traceback = "Traceback" in line
            out.append(line)
        elif in_traceback:
            out[-1] += "\n" + line
            in_traceback = line.startswith(" ")
    return out


def main(argv=None):
    from support.broker import stop_cleanly
    from support.gateway import listener_broker
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--requests", type=int, default=2000, help="per seed")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--closes", action="store_true", help="print the gateways' lines on the connections they closed")
    p.add_argument("--refusals", action="store_true", help="check that refused requests change nothing (slower)")
    p.add_argument("--only", type=int, nargs="*", help="api keys to fuzz (default: all)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kafka-fuzz-") as tmp:
        broker = listener_broker(f"{tmp}/data", **{"group.initial.rebalance.delay.ms": 0})
        try:
            known = set_up(broker)
            keys = [kv for kv in served() if not args.only or kv[0] in args.only]
            total, started = 0, time.monotonic()
            for seed in args.seeds:
                campaign = Campaign(broker.port, args.timeout, refusals=args.refusals)
                for start in range(0, args.requests, 500):
                    known = set_up(broker)        # the topic may have been deleted: back, with its new id
                    campaign.run(Fuzzer(seed, known, keys), range(start, min(start + 500, args.requests)))
                campaign.close()
                total += campaign.sent
                print(f"seed {seed}: {campaign.sent} requests, {sum(campaign.closes.values())} closes, "
                      f"{campaign.refusals_checked} refusals checked, {len(campaign.findings)} findings", flush=True)
                print("   closed on (api key, version):", dict(campaign.closes))
                print("   answers without an error, by api key:", dict(sorted(campaign.served.items())))
                print("   slowest answers (s, seed, index, (key, version)):",
                      [(round(t, 2), *rest) for t, *rest in campaign.slowest])
                for f in campaign.findings:
                    print("  ", f, flush=True)
            if args.closes:
                print("\n".join(line for line in broker.stderr(None).splitlines() if "closing" in line))
            problems = health(broker)
            print(f"{total} requests in {time.monotonic() - started:.0f}s; broker health: {problems or 'ok'}")
            for line in problems:
                print("  ", line)
        finally:
            stop_cleanly(broker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
