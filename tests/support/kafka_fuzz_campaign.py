"""A fuzzing campaign against the gateway (kafka_fuzz.py makes the requests).

`Campaign` sends requests through one connection (reconnecting when the gateway closes
it) and checks each: answered within `timeout` (else: late, or never), the answer
decodes with kio as that API and version's response, with the request's correlation id,
and no error code in it is UNKNOWN_SERVER_ERROR (the gateway's answer to a handler's
exception). A Produce with acks=0 is followed by ApiVersions, whose answer (or a close:
Kafka's refusal of an acks=0 batch) must come. With `refusals`, a state-changing request
refused in whole (or validate_only) must change nothing an observer connection sees.
`health` checks the broker after: no "gateway bug" or Traceback in its log (its
gateways' too), no restart, no topic with an illegal name, no group with an empty id.

Run by hand against a broker of its own, with its listener:
    PYTHONPATH=tests .venv/bin/python -m support.kafka_fuzz_campaign --seeds 1 2 3 --requests 10000 [--refusals]
"""
import argparse
import collections
import dataclasses
import socket
import sys
import tempfile
import time

import kio.serial
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.errors import ErrorCode

from odradek.daemon.gateway.codec import response_class
from support.gateway import KafkaWire
from support.kafka_fuzz import JOIN_GROUP, MAX_TIMEOUT_MS, Fuzzer, Known, kio_request, served
from support.records import make_batch

__all__ = ["Campaign", "Finding", "set_up", "health", "main"]

PRODUCE, DESCRIBE_TRANSACTIONS = 0, 65
# "a hang": no answer in that time. A JoinGroup v0 has no rebalance timeout: it waits up to
# its session timeout, 6 s at least (group.min.session.timeout.ms), for the other members.
ANSWER_S = 8.0


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

    def __init__(self, port, timeout=ANSWER_S, refusals=False):
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
            after["groups"] |= before["groups"]       # only a new group counts: empty ones may go meanwhile
            if request.__api_key__ == JOIN_GROUP:     # and only that, for a JoinGroup: members come and go
                before, after = before["groups"], after["groups"]
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
        cls = response_class(request.__api_key__, request.__version__)
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
MEMBER_ID_REQUIRED = 79


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
    topics = wire.call(kio_request(3, 12, topics=None, allow_auto_topic_creation=False)).topics
    configs = wire.call(kio_request(32, 4, include_synonyms=False, include_documentation=False, resources=[
        dict(resource_type=2, resource_name=known.topic, configuration_keys=None)])).results
    starts = wire.call(kio_request(2, 7, replica_id=-1, isolation_level=0, topics=[dict(name=known.topic, partitions=[
        dict(partition_index=p, timestamp=-2) for p in range(3)])])).topics
    return dict(topics={t.name: (t.topic_id, len(t.partitions)) for t in topics},
                groups={g.group_id for g in wire.call(kio_request(16, 4, states_filter=[])).groups},
                configs={(c.name, c.value) for r in configs for c in r.configs},
                log_start={(p.partition_index, p.offset) for t in starts for p in t.partitions},
                offsets=str(wire.call(kio_request(9, 8, require_stable=False, groups=[dict(group_id=known.group,
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
    session the shortest allowed, 6 s), an idempotent producer."""
    batch = make_batch([b"fuzz"])
    with KafkaWire(broker.port) as wire:
        wire.call(kio_request(19, 7, topics=[dict(name=topic, num_partitions=partitions, replication_factor=1)],
                       timeout_ms=5000))
        wire.call(kio_request(0, 9, acks=-1, timeout=5000, topic_data=[dict(name=topic, partition_data=[
            dict(index=0, records=batch)])]))
        wire.call(kio_request(8, 8, group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
            dict(name=topic, partitions=[dict(partition_index=0, committed_offset=1)])]))
        meta = wire.call(kio_request(3, 12, topics=[dict(name=topic)], allow_auto_topic_creation=False))
        member_id, generation = "", -1
        for _ in range(2):     # KIP-394: the first join gets a member id, the second joins with it
            join = wire.call(kio_request(11, 9, group_id=group, session_timeout=6000, rebalance_timeout=MAX_TIMEOUT_MS,
                                  member_id=member_id, protocol_type="consumer",
                                  protocols=[dict(name="range", metadata=b"")]))
            member_id, generation = join.member_id, join.generation_id
        producer = wire.call(kio_request(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                                  producer_epoch=-1))
    idempotent = make_batch([b"fuzz"], producer_id=producer.producer_id, producer_epoch=producer.producer_epoch,
                            base_sequence=0)
    return Known(topic, meta.topics[0].topic_id, group, member_id, generation, producer.producer_id,
                 producer.producer_epoch, batch, idempotent)


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
    p.add_argument("--timeout", type=float, default=ANSWER_S)
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
