"""Partition assignors: how a consumer group's leader shares partitions among members.

The coordinator never looks inside a member's Subscription or Assignment; the group's
members agree on them. Their bytes are Kafka's consumer protocol, declared field for
field in odradek.client.protocol.consumer_protocol (which draws the layout), so the same
bytes mean the same thing to a Kafka client. A Subscription is written as v1 (v0-v2 on
request) and read in any version; an Assignment is written as v1 and read in any version.

Partitions are (topic, partition) tuples throughout. Every assignor has
`assign(members, partitions_per_topic) -> {member_id: Assignment}` where members maps
member ids to Subscriptions and partitions_per_topic maps a topic to its partition count
(topics missing from it have no partitions yet and get nobody).

- "range" (RangeAssignor): per topic, the members subscribed to it in order (static
  members by group.instance.id first, then the rest by member id) take consecutive
  ranges; the first (partitions % members) take one more. Eager.
- "roundrobin" (RoundRobinAssignor): every subscribed partition, sorted by topic and
  partition, dealt in turn to the members in that same order, skipping members not
  subscribed to its topic. Eager.
- "cooperative-sticky" (CooperativeStickyAssignor): keeps each member's owned
  partitions where that stays balanced, gives the rest to the least-loaded eligible
  members, then moves partitions from members holding 2+ more than an eligible member.
  Cooperative (incremental) protocol: a partition that some other member still owns is
  left unassigned in this generation (its owner sees it missing from its assignment,
  revokes it, and rejoins); the next rebalance assigns it. Members keep consuming the
  partitions they keep. Its Subscription user_data is the member's generation (int32),
  as in Kafka's CooperativeStickyAssignor; of two members claiming one partition, the
  later generation's claim counts.

Eager protocol: a member revokes everything before it rejoins (its owned list is empty).
Cooperative protocol: a member rejoins owning what it owns, revokes only what its new
assignment lacks, and if it revoked anything joins again at once.
"""
import struct
from dataclasses import dataclass, field

from odradek.client.protocol import LocalProtocolError, RemoteProtocolError
from odradek.client.protocol import consumer_protocol as cp

__all__ = ["Subscription", "Assignment", "MalformedConsumerProtocol", "RangeAssignor",
           "RoundRobinAssignor", "CooperativeStickyAssignor", "ASSIGNORS", "get_assignor",
           "EAGER", "COOPERATIVE"]

EAGER = "EAGER"
COOPERATIVE = "COOPERATIVE"
SUBSCRIPTION_VERSION = 1
ASSIGNMENT_VERSION = 1


class MalformedConsumerProtocol(ValueError):
    """Subscription or assignment bytes that are not Kafka's consumer protocol."""


# ---- values and their bytes (declared in odradek.client.protocol.consumer_protocol) -------

def _write(wire, version):
    try:
        return wire.encode_versioned(version)
    except LocalProtocolError as e:
        raise ValueError(str(e)) from None


def _read(cls, versions, data):
    try:
        return cp.decode_versioned(cls, versions, data)[1]
    except RemoteProtocolError as e:
        raise MalformedConsumerProtocol(str(e)) from None


def _topic_partitions(partitions):
    """Sorted (topic, partition) tuples as the wire's per-topic lists."""
    by_topic = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return [cp.TopicPartition(topic=t, partitions=ps) for t, ps in by_topic.items()]


def _flat(topic_partitions):
    return [(tp.topic, p) for tp in topic_partitions for p in tp.partitions]


@dataclass(frozen=True)
class Subscription:
    """What a member asks for. `group_instance_id` is not in the bytes: the leader gets it
    from the JoinGroup answer and sets it to order static members first."""
    topics: tuple
    owned_partitions: tuple = ()
    user_data: bytes | None = None
    generation_id: int = -1                       # only in v2+ bytes
    group_instance_id: str | None = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "topics", tuple(self.topics))
        object.__setattr__(self, "owned_partitions", tuple(sorted(tuple(tp) for tp in self.owned_partitions)))

    def encode(self, version=SUBSCRIPTION_VERSION):
        if version not in cp.SUBSCRIPTION_VERSIONS:
            raise ValueError(f"Subscription version {version} is not written here (0-2)")
        return _write(cp.ConsumerProtocolSubscription(
            topics=list(self.topics), user_data=self.user_data,
            owned_partitions=_topic_partitions(self.owned_partitions), generation_id=self.generation_id), version)

    @classmethod
    def decode(cls, data, group_instance_id=None):
        wire = _read(cp.ConsumerProtocolSubscription, cp.SUBSCRIPTION_VERSIONS, data)
        return cls(wire.topics, _flat(wire.owned_partitions), wire.user_data, wire.generation_id,
                   group_instance_id)


@dataclass(frozen=True)
class Assignment:
    """What a member gets: sorted (topic, partition) tuples, and the assignor's user data."""
    partitions: tuple = ()
    user_data: bytes | None = None

    def __post_init__(self):
        object.__setattr__(self, "partitions", tuple(sorted(tuple(tp) for tp in self.partitions)))

    def encode(self, version=ASSIGNMENT_VERSION):
        return _write(cp.ConsumerProtocolAssignment(
            assigned_partitions=_topic_partitions(self.partitions), user_data=self.user_data), version)

    @classmethod
    def decode(cls, data):
        """An Assignment; empty bytes (what the coordinator hands a member the leader left
        out) are an empty assignment."""
        if not data:
            return cls()
        wire = _read(cp.ConsumerProtocolAssignment, cp.ASSIGNMENT_VERSIONS, data)
        return cls(_flat(wire.assigned_partitions), wire.user_data)


# ---- assignors --------------------------------------------------------------------------

def _member_order(members):
    """Kafka's MemberInfo order: static members by group.instance.id, then the others by
    member id."""
    return sorted(members, key=lambda mid: (0, members[mid].group_instance_id, mid)
                  if members[mid].group_instance_id is not None else (1, "", mid))


class _Assignor:
    name = ""
    rebalance_protocol = EAGER

    def subscription(self, topics, owned_partitions=(), generation_id=-1):
        """The Subscription this member sends (eager members own nothing when joining)."""
        return Subscription(topics)

    def assign(self, members, partitions_per_topic):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class RangeAssignor(_Assignor):
    name = "range"

    def assign(self, members, partitions_per_topic):
        out = {mid: [] for mid in members}
        order = _member_order(members)
        topics = sorted({t for s in members.values() for t in s.topics})
        for topic in topics:
            n = partitions_per_topic.get(topic)
            if not n:
                continue
            consumers = [mid for mid in order if topic in members[mid].topics]
            per, extra = divmod(n, len(consumers))
            for i, mid in enumerate(consumers):
                start = per * i + min(i, extra)
                length = per + (1 if i < extra else 0)
                out[mid].extend((topic, p) for p in range(start, start + length))
        return {mid: Assignment(parts) for mid, parts in out.items()}


class RoundRobinAssignor(_Assignor):
    name = "roundrobin"

    def assign(self, members, partitions_per_topic):
        out = {mid: [] for mid in members}
        order = _member_order(members)
        if not order:
            return {}
        topics = sorted({t for s in members.values() for t in s.topics})
        subscribed = {mid: set(members[mid].topics) for mid in order}
        i = 0
        for topic in topics:
            for p in range(partitions_per_topic.get(topic, 0)):
                while topic not in subscribed[order[i % len(order)]]:
                    i += 1
                out[order[i % len(order)]].append((topic, p))
                i += 1
        return {mid: Assignment(parts) for mid, parts in out.items()}


class CooperativeStickyAssignor(_Assignor):
    name = "cooperative-sticky"
    rebalance_protocol = COOPERATIVE

    def subscription(self, topics, owned_partitions=(), generation_id=-1):
        return Subscription(topics, owned_partitions, struct.pack(">i", generation_id))

    @staticmethod
    def _generation(sub):
        if sub.generation_id >= 0:
            return sub.generation_id
        if sub.user_data is not None and len(sub.user_data) == 4:
            return struct.unpack(">i", sub.user_data)[0]
        return -1

    def assign(self, members, partitions_per_topic):
        mids = sorted(members)
        subscribed = {mid: {t for t in members[mid].topics if partitions_per_topic.get(t)} for mid in mids}
        partitions = sorted({(t, p) for mid in mids for t in subscribed[mid]
                             for p in range(partitions_per_topic[t])})
        eligible = {tp: [mid for mid in mids if tp[0] in subscribed[mid]] for tp in partitions}

        # who claims what; a claim is valid if the partition exists, the member still
        # subscribes to its topic, and no later generation claims it too
        claims = {}
        for mid in mids:
            generation = self._generation(members[mid])
            for tp in members[mid].owned_partitions:
                claims.setdefault(tp, []).append((generation, mid))
        target = {mid: [] for mid in mids}
        kept = set()
        for tp, claimants in claims.items():
            if tp not in eligible:
                continue
            valid = [(g, mid) for g, mid in claimants if tp[0] in subscribed[mid]]
            if not valid:
                continue
            best = max(g for g, _ in valid)
            winners = [mid for g, mid in valid if g == best]
            if len(winners) == 1:
                target[winners[0]].append(tp)
                kept.add(tp)

        # the rest to the least loaded eligible member, scarcest partitions first
        for tp in sorted((tp for tp in partitions if tp not in kept), key=lambda tp: (len(eligible[tp]), tp)):
            mid = min(eligible[tp], key=lambda x: (len(target[x]), x))
            target[mid].append(tp)

        # balance: move from a member to an eligible one holding 2+ fewer, newly given
        # partitions before kept ones; each move lowers the sum of squared loads
        moved = True
        while moved:
            moved = False
            for mid in sorted(mids, key=lambda x: (-len(target[x]), x)):
                for tp in sorted(target[mid], key=lambda tp: (tp in kept, tp)):
                    others = [e for e in eligible[tp] if e != mid]
                    if not others:
                        continue
                    best = min(others, key=lambda e: (len(target[e]), e))
                    if len(target[best]) + 1 < len(target[mid]):
                        target[mid].remove(tp)
                        target[best].append(tp)
                        moved = True

        # cooperative: nobody gets a partition another member still owns
        owners = {}
        for tp, claimants in claims.items():
            owners.setdefault(tp, set()).update(mid for _, mid in claimants)
        return {mid: Assignment([tp for tp in target[mid] if owners.get(tp, set()) <= {mid}]) for mid in mids}


ASSIGNORS = {cls.name: cls for cls in (RangeAssignor, RoundRobinAssignor, CooperativeStickyAssignor)}


def get_assignor(name):
    """An assignor by its protocol name ('range', 'roundrobin', 'cooperative-sticky')."""
    try:
        return ASSIGNORS[name]()
    except KeyError:
        raise ValueError(f"unknown partition assignor {name!r}; known: {', '.join(ASSIGNORS)}") from None
