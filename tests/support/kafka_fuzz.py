"""Well-framed but hostile Kafka requests: a schema-driven fuzzer for the gateway.

`Fuzzer(seed, known).request(i)` is the i-th request of a seeded run: an API key and
version the gateway serves (apis.table()), and a kio request entity of that version
whose every field is drawn from edge cases of its Kafka type (ints 0, -1, -2, -3, min,
max, small, the known generation and producer id; strings "", the known topic, group
and member id, 250+ characters, "..", "a/b", unicode, config names and values, the
field's own name; arrays empty, one, a few, now and then a few hundred; uuids zero,
random, the known topic's id; records null, empty, garbage, a valid batch, an
idempotent one, one with a byte flipped, two batches, one with a header field odd and
its CRC right). Four requests in ten are plausible: most fields filled as a client
would (Fuzzer.likely), to get past the first checks to those behind them. Each request
has a Random of its own (seed, i), so one failure is reproduced from its seed and index,
in a run of that seed from its start (the known values change as a campaign learns
them: Known.learn). Timeouts are drawn below MAX_TIMEOUT_MS: a Fetch or JoinGroup that
waits as long as it was asked to is not a hang.

The campaign that sends them and checks the answers: kafka_fuzz_campaign.py.
"""
import dataclasses
import datetime
import random
import struct
import typing
import uuid
from types import NoneType, UnionType

from kio.schema.errors import ErrorCode

from odradek.client.records import layout
from odradek.daemon.gateway import apis
from odradek.daemon.gateway.codec import build, request_class
from support.records import bitwise_crc32c

__all__ = ["Known", "Fuzzer", "served", "kio_request", "MAX_TIMEOUT_MS", "JOIN_GROUP", "INIT_PRODUCER_ID"]

MAX_TIMEOUT_MS = 1500
JOIN_GROUP, INIT_PRODUCER_ID = 11, 22
_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_LIKELY_TYPES = {"string", "int16", "int32", "int64", "timedelta_i32", "timedelta_i64"}   # Fuzzer.likely's


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
        return self.entity(request_class(key, version))

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
                v = self.rng.choice(choices)
                if part in name and kafka_type in _LIKELY_TYPES and isinstance(v, str) == (kafka_type == "string"):
                    return datetime.timedelta(milliseconds=v) if kafka_type.startswith("timedelta") else v
        return self.primitive(kafka_type, name)

    def likely(self):
        """(a part of a field's name, values a client would send in it) for plausible
        requests: they get past the first checks, to the ones behind them."""
        k = self.known
        return [("topic", [k.topic]), ("group_id", [k.group]), ("member_id", [k.member_id]),
                ("transactional_id", [k.transactional_id]), ("producer_id", [k.producer_id]),
                ("producer_epoch", [k.producer_epoch]), ("generation", [k.generation]),
                ("protocol_type", ["consumer"]), ("partition", [0, 1, 2]), ("offset", [0, 1, 2]),
                ("session_timeout", [6000]), ("timeout", [1000]), ("acks", [-1, 1]),
                ("name", [k.topic, "range", "retention.ms"]), ("key", [k.group, k.topic])]

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


def kio_request(key, version, **values):
    """A kio request entity of `key` at `version` from plain values (codec.build)."""
    return build(request_class(key, version), values)
