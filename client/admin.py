"""Admin: topic administration, configs, offsets and broker status, over the control socket.

    from odradek.client import Admin, TopicPartition
    with Admin() as admin:                       # socket: ODRADEK_SOCKET or the system default
        admin.create_topic("orders", num_partitions=6, config={"retention.ms": 3600000})
        admin.list_topics()                      # {"orders": TopicDescription, ...}
        admin.list_offsets("orders", 0, "earliest")
        admin.describe_log_dirs()                # [LogDirDescription(path, ..., replicas)]
        admin.alter_replica_log_dirs([("orders", 0, "/srv/disk1/odradek", "/srv/disk3/odradek")])   # [None]
        admin.partition_health()                 # PartitionHealth(partitions, under_replicated, ...)
        admin.list_groups()                      # [GroupListing("billing", "Stable", "consumer")]
        admin.describe_group("billing")          # GroupDescription: state, assignor, members
        admin.list_group_offsets("billing")      # {("orders", 0): (42, ""), ...}
        admin.delete_group_offsets("billing", [("orders", 0)])
        admin.delete_records({TopicPartition("orders", 0): 1000})   # {TopicPartition(...): 1000}
        admin.list_transactions()                # [TransactionListing("app-1", 1000, "Ongoing")]
        admin.describe_transactions(["app-1"])   # {"app-1": TransactionDescription}

Each method returns plain values or raises the OdradekError the broker named (for
example UnknownTopicOrPartition, TopicAlreadyExists, InvalidConfig). Not thread-safe:
use one Admin per thread.
"""
import os
import re
from dataclasses import dataclass
from typing import NamedTuple

from odradek.client.errors import NonEmptyGroup, UnknownMemberId, error_for_code
from odradek.client.log_dirs import from_status
from odradek.client.partition_health import health
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol import raise_for_error

__all__ = ["Admin", "TopicDescription", "PartitionDescription", "GroupListing", "GroupDescription",
           "MemberDescription", "TransactionListing", "TransactionDescription", "resolve_socket",
           "DEFAULT_SOCKET", "EARLIEST", "LATEST"]

DEFAULT_SOCKET = "/run/odradek/odradek.sock"
EARLIEST, LATEST = -2, -1


def resolve_socket(path=None):
    """The control socket: `path` if given, else $ODRADEK_SOCKET, else the system default."""
    return path or os.environ.get("ODRADEK_SOCKET") or DEFAULT_SOCKET


@dataclass
class PartitionDescription:
    partition: int
    leader: int
    leader_epoch: int
    replicas: list
    isr: list
    log_dirs: list


@dataclass
class TopicDescription:
    name: str
    partitions: list
    internal: bool = False


class GroupListing(NamedTuple):
    """One group of list_groups(); a plain (group_id, state, protocol_type) tuple."""
    group_id: str
    state: str            # Empty, PreparingRebalance, CompletingRebalance, Stable
    protocol_type: str    # "consumer"; "" for a group that only ever stored offsets


@dataclass
class MemberDescription:
    member_id: str
    group_instance_id: str | None   # static membership id, or None
    client_id: str
    host: str                       # "pid:<pid> uid:<uid>" of the member's process (SO_PEERCRED)
    assignment: tuple               # sorted (topic, partition) tuples; () unless the group is Stable

    @property
    def pid(self):
        return _host_field(self.host, "pid")

    @property
    def uid(self):
        return _host_field(self.host, "uid")


@dataclass
class GroupDescription:
    """A consumer group as DescribeGroups shows it (Kafka's ConsumerGroupDescription).
    As in Kafka, `protocol` (the chosen assignor) and the members' assignments are known
    only while the group is Stable."""
    group_id: str
    state: str
    protocol_type: str
    protocol: str                   # the chosen assignor, e.g. "range"; "" unless Stable
    members: list                   # MemberDescription, in the coordinator's order


class TransactionListing(NamedTuple):
    """One transactional id of list_transactions() (Kafka's TransactionListing)."""
    transactional_id: str
    producer_id: int
    state: str            # Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, ...


@dataclass
class TransactionDescription:
    """A transactional id as DescribeTransactions shows it (Kafka's TransactionDescription)."""
    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    start_time_ms: int | None     # when the open transaction began; None: none open
    partitions: list              # [(topic, partition)] in the transaction (still to mark, while Prepare*)

    @property
    def is_open(self):
        """Begun and not yet complete: Ongoing, or decided with its markers being written."""
        return self.state in ("Ongoing", "PrepareCommit", "PrepareAbort")

    def age_ms(self, now_ms):
        """How long the open transaction has been open at now_ms (None: none open)."""
        return None if self.start_time_ms is None or not self.is_open else max(0, now_ms - self.start_time_ms)

    def hanging(self, now_ms):
        """Open longer than its timeout: the coordinator should have aborted it by now."""
        age = self.age_ms(now_ms)
        return age is not None and age > self.timeout_ms


def _host_field(host, name):
    found = re.search(rf"\b{name}:(\d+)", host or "")
    return int(found.group(1)) if found else None


def _decode_assignment(protocol_type, data):
    """The (topic, partition) tuples of a ConsumerProtocolAssignment; () for another
    protocol type or bytes that are not one (a member's bug, not worth failing a describe)."""
    if protocol_type != "consumer" or not data:
        return ()
    from odradek.client.assignors import Assignment, MalformedConsumerProtocol
    try:
        return Assignment.decode(data).partitions
    except MalformedConsumerProtocol:
        return ()


class Admin:
    def __init__(self, socket_path=None, timeout=30.0):
        self.socket_path = resolve_socket(socket_path)
        self._client = ControlClient(self.socket_path, timeout)

    def close(self):
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, request):
        response, fds = self._client.call(request)
        for fd in fds:
            os.close(fd)
        return response

    # -- topics ----------------------------------------------------------------------
    def create_topic(self, name, num_partitions=-1, replication_factor=-1, config=None, validate_only=False):
        """Create a topic (-1: the broker's default count / factor). Returns its
        (partitions, replication factor)."""
        res = self._call(m.CreateTopicsRequest(
            topics=[m.CreatableTopic(name=name, num_partitions=num_partitions,
                                     replication_factor=replication_factor,
                                     configs={k: str(v) for k, v in (config or {}).items()})],
            validate_only=validate_only))
        (t,) = res.topics
        raise_for_error(t.error_code, t.error_message)
        return t.num_partitions, t.replication_factor

    def delete_topic(self, name):
        res = self._call(m.DeleteTopicsRequest(topic_names=[name]))
        (r,) = res.responses
        raise_for_error(r.error_code, r.error_message)

    def list_topics(self, names=None, include_internal=False):
        """{name: TopicDescription}; names=None: every topic (internal ones such as
        __consumer_offsets only with include_internal, as Kafka's Admin). Unknown names raise."""
        res = self._call(m.MetadataRequest(topics=None if names is None else list(names)))
        out = {}
        for t in res.topics:
            if names is None and t.is_internal and not include_internal:
                continue
            raise_for_error(t.error_code, t.error_message)
            out[t.name] = TopicDescription(t.name, [
                PartitionDescription(p.partition_index, p.leader_id, p.leader_epoch, list(p.replica_nodes),
                                     list(p.isr_nodes), list(p.log_dirs)) for p in t.partitions], t.is_internal)
        return out

    def describe_topic(self, name):
        return self.list_topics([name])[name]

    def create_partitions(self, name, total, validate_only=False):
        """Grow topic `name` to `total` partitions. Keyed records map to other partitions
        afterwards (murmur2(key) % partitions), as in Kafka."""
        res = self._call(m.CreatePartitionsRequest(topics=[m.CreatePartitionsTopic(name=name, count=total)],
                                                   validate_only=validate_only))
        (r,) = res.results
        raise_for_error(r.error_code, r.error_message)

    # -- configs ---------------------------------------------------------------------
    def describe_configs(self, name):
        """{key: (value, source)} of every topic config of `name`; source is one of
        'topic', 'broker', 'default'."""
        res = self._call(m.DescribeConfigsRequest(resources=[m.DescribeConfigsResource(resource_name=name)]))
        (r,) = res.results
        raise_for_error(r.error_code, r.error_message)
        names = {m.ConfigSource.TOPIC_CONFIG: "topic", m.ConfigSource.STATIC_BROKER_CONFIG: "broker",
                 m.ConfigSource.DEFAULT_CONFIG: "default"}
        return {c.name: (c.value, names.get(c.config_source, "default")) for c in r.configs}

    def alter_configs(self, name, set_configs=None, delete=(), validate_only=False):
        """Set some topic configs and return others to the broker default."""
        ops = [m.AlterableConfig(name=k, config_operation=m.ConfigOperation.SET, value=str(v))
               for k, v in (set_configs or {}).items()]
        ops += [m.AlterableConfig(name=k, config_operation=m.ConfigOperation.DELETE) for k in delete]
        res = self._call(m.IncrementalAlterConfigsRequest(
            resources=[m.AlterConfigsResource(resource_name=name, configs=ops)], validate_only=validate_only))
        (r,) = res.responses
        raise_for_error(r.error_code, r.error_message)

    # -- offsets and status ------------------------------------------------------------
    def list_offsets(self, topic, partition, spec="latest", isolation_level="read_uncommitted"):
        """(offset, timestamp) for 'earliest', 'latest', or a timestamp in ms (the first
        record at or after it; offset -1 when there is none). isolation_level
        "read_committed": 'latest' is the last stable offset (KIP-98), not the high watermark."""
        ts = {"earliest": EARLIEST, "latest": LATEST}.get(spec, spec)
        res = self._call(m.ListOffsetsRequest(isolation_level=_isolation(isolation_level), topics=[m.ListOffsetsTopic(
            name=topic, partitions=[m.ListOffsetsPartition(partition_index=partition, timestamp=int(ts))])]))
        p = res.topics[0].partitions[0]
        raise_for_error(p.error_code, p.error_message)
        return p.offset, p.timestamp

    def list_offsets_batch(self, specs, isolation_level="read_uncommitted"):
        """{(topic, partition): (offset, timestamp)} for {(topic, partition): spec}, each spec
        as in list_offsets ('earliest', 'latest' or a timestamp in ms), in one request.
        The first partition that fails raises its error."""
        by_topic = {}
        for (topic, partition), spec in specs.items():
            ts = {"earliest": EARLIEST, "latest": LATEST}.get(spec, spec)
            by_topic.setdefault(topic, []).append(
                m.ListOffsetsPartition(partition_index=partition, timestamp=int(ts)))
        if not by_topic:
            return {}
        res = self._call(m.ListOffsetsRequest(isolation_level=_isolation(isolation_level),
                                              topics=[m.ListOffsetsTopic(name=t, partitions=ps)
                                                      for t, ps in by_topic.items()]))
        out = {}
        for t in res.topics:
            for p in t.partitions:
                raise_for_error(p.error_code, p.error_message)
                out[(t.name, p.partition_index)] = (p.offset, p.timestamp)
        return out

    def delete_records(self, offsets):
        """Kafka's deleteRecords: {TopicPartition or (topic, partition): offset} makes every
        record below `offset` unreadable at once (the partition's log start offset moves
        up to it; offset -1: the high watermark). Returns {that key: the log start offset
        afterwards} (a lower offset than the log start changes nothing). Every partition
        is asked; then the first that failed raises its error: OffsetOutOfRange above
        the high watermark, UnknownTopicOrPartition."""
        asked, by_topic = {}, {}
        for key, offset in offsets.items():
            topic, partition = key[0], key[1]
            if (topic, partition) in asked:
                raise ValueError(f"{topic}-{partition} is named twice")
            asked[(topic, partition)] = key
            by_topic.setdefault(topic, []).append(m.DeleteRecordsPartition(partition_index=partition,
                                                                           offset=int(offset)))
        if not by_topic:
            return {}
        res = self._call(m.DeleteRecordsRequest(topics=[m.DeleteRecordsTopic(name=t, partitions=ps)
                                                        for t, ps in by_topic.items()]))
        out, failed = {}, None
        for t in res.topics:
            for p in t.partitions:
                if p.error_code and failed is None:
                    failed = p
                elif not p.error_code:
                    out[asked[(t.name, p.partition_index)]] = p.low_watermark
        if failed is not None:
            raise_for_error(failed.error_code, failed.error_message)
        return out

    def status(self, topics=None):
        """The broker's StatusResponse: broker pid and uptime, workers, partitions."""
        return self._call(m.StatusRequest(topics=None if topics is None else list(topics)))

    def partition_health(self, topics=None):
        """PartitionHealth(partitions, under_replicated, under_min_isr, offline): the count
        of partitions and the "topic-partition" names of those in each state."""
        return health(self.status(topics))

    def describe_log_dirs(self, topics=None):
        """Kafka's DescribeLogDirs: [LogDirDescription] in log.dirs order (path,
        directory_id, error and error_message, total_bytes, usable_bytes, replicas of
        `topics` or of every topic: [ReplicaInfo(topic, partition, size, offset_lag,
        is_future)]). An offline dir has error KAFKA_STORAGE_ERROR and no replicas."""
        return from_status(self.status(topics))

    # -- log dirs ------------------------------------------------------------------------
    def alter_replica_log_dirs(self, moves):
        """Move replicas to other log dirs, online (Kafka's alterReplicaLogDirs):
        `moves` is [(topic, partition, from_dir, to_dir)], dirs as paths in the broker's
        log.dirs. Returns one entry per move, in order: None when the move has started,
        else the OdradekError that refused it (nothing changed): UnknownTopicOrPartition,
        LogDirNotFound (not in log.dirs, or offline), InvalidReplicaAssignment (no replica
        in from_dir, or one in to_dir already), ReassignmentInProgress. A move under way
        shows in status() as the partition's adding_replicas and removing_replicas; it is
        done when both are empty."""
        res = self._call(m.MoveReplicasRequest(moves=[
            m.ReplicaMove(topic=t, partition=p, from_dir=str(src), to_dir=str(dst)) for t, p, src, dst in moves]))
        return [None if r.error_code == 0 else error_for_code(r.error_code)(r.error_message)
                for r in res.results]

    # -- consumer groups ----------------------------------------------------------------
    def list_groups(self, states=()):
        """[GroupListing(group_id, state, protocol_type)] of every group the coordinator
        knows (those that only stored offsets too), by group id; `states` filters
        (case-insensitive, e.g. ["Stable", "Empty"])."""
        res = self._call(m.ListGroupsRequest(states_filter=list(states)))
        return [GroupListing(g.group_id, g.group_state, g.protocol_type) for g in res.groups]

    def describe_groups(self, group_ids):
        """{group_id: GroupDescription}, in one request. An unknown group raises
        GroupIdNotFound."""
        res = self._call(m.DescribeGroupsRequest(groups=list(group_ids)))
        out = {}
        for g in res.groups:
            raise_for_error(g.error_code, g.error_message)
            out[g.group_id] = GroupDescription(
                g.group_id, g.group_state, g.protocol_type, g.protocol_data,
                [MemberDescription(x.member_id, x.group_instance_id, x.client_id, x.client_host,
                                   _decode_assignment(g.protocol_type, x.member_assignment))
                 for x in g.members])
        return out

    def describe_group(self, group_id):
        """The GroupDescription of one group; GroupIdNotFound if there is none."""
        return self.describe_groups([group_id])[group_id]

    def list_group_offsets(self, group_id):
        """{(topic, partition): (offset, metadata)} of every offset the group committed
        (offset: the next record to consume). An unknown group has none: {}."""
        res = self._call(m.OffsetFetchRequest(group_id=group_id, topics=None))
        out = {}
        for t in res.topics:
            for p in t.partitions:
                raise_for_error(p.error_code, p.error_message)
                if p.committed_offset >= 0:
                    out[(t.name, p.partition_index)] = (p.committed_offset, p.metadata or "")
        return out

    def alter_group_offsets(self, group_id, offsets):
        """Commit {(topic, partition): offset or (offset, metadata)} for the group from
        outside it (a standalone OffsetCommit, generation -1), as Kafka's
        alterConsumerGroupOffsets. The broker accepts it only while the group is Empty
        (or does not exist yet: it is created): a group with members raises
        NonEmptyGroup. A partition that does not exist raises UnknownTopicOrPartition."""
        by_topic = {}
        for (topic, partition), value in sorted(offsets.items()):
            offset, metadata = value if isinstance(value, tuple) else (value, "")
            if offset < 0:
                raise ValueError(f"offset {offset} of {topic}-{partition} is negative")
            by_topic.setdefault(topic, []).append(m.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=int(offset), committed_metadata=metadata))
        if not by_topic:
            return
        request = m.OffsetCommitRequest(group_id=group_id, generation_id=-1, member_id="", topics=[
            m.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()])
        try:
            res = self._call(request)
        except UnknownMemberId as e:   # what the coordinator answers a standalone commit to a live group
            raise NonEmptyGroup(f"group {group_id} has live members; its offsets can be altered only while "
                                f"it is empty: stop its consumers first") from e
        for t in res.topics:
            for p in t.partitions:
                raise_for_error(p.error_code, p.error_message)

    def delete_group_offsets(self, group_id, partitions):
        """Kafka's deleteConsumerGroupOffsets: forget the group's committed offsets of
        `partitions` (TopicPartitions or (topic, partition) pairs). All of them while the
        group is Empty; while it has members, only those of topics no member subscribes
        to: GroupSubscribedToTopic for the others. Every partition is asked; then the
        first that failed raises its error (GroupIdNotFound for an unknown group)."""
        by_topic = {}
        for tp in partitions:
            by_topic.setdefault(tp[0], set()).add(tp[1])
        if not by_topic:
            return
        res = self._call(m.OffsetDeleteRequest(group_id=group_id, topics=[
            m.OffsetDeleteRequestTopic(name=t, partitions=sorted(ps)) for t, ps in by_topic.items()]))
        for t in res.topics:
            for p in t.partitions:
                raise_for_error(p.error_code, p.error_message)

    def delete_group(self, group_id):
        """Delete an Empty group and its committed offsets. NonEmptyGroup while it has
        members; GroupIdNotFound if there is no such group."""
        res = self._call(m.DeleteGroupsRequest(groups_names=[group_id]))
        (r,) = res.results
        raise_for_error(r.error_code, r.error_message)

    # -- transactions (KIP-98) ----------------------------------------------------------
    def list_transactions(self, states=(), producer_ids=(), min_duration_ms=None):
        """[TransactionListing(transactional_id, producer_id, state)] the transaction
        coordinator knows, by transactional id; filters (all must match): `states` (e.g.
        ["Ongoing"]), `producer_ids`, `min_duration_ms` (open at least that long).
        An unknown state name raises ValueError."""
        res = self._call(m.ListTransactionsRequest(
            state_filters=list(states), producer_id_filters=[int(p) for p in producer_ids],
            duration_filter=-1 if min_duration_ms is None else int(min_duration_ms)))
        if res.unknown_state_filters:
            raise ValueError(f"unknown transaction state {', '.join(res.unknown_state_filters)} (the states are "
                             f"Kafka's: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, ...)")
        return sorted(TransactionListing(t.transactional_id, t.producer_id, t.transaction_state)
                      for t in res.transaction_states)

    def describe_transactions(self, transactional_ids):
        """{transactional_id: TransactionDescription}, in one request. An unknown id
        raises TransactionalIdNotFound."""
        res = self._call(m.DescribeTransactionsRequest(transactional_ids=list(transactional_ids)))
        out = {}
        for t in res.transaction_states:
            raise_for_error(t.error_code, t.error_message)
            out[t.transactional_id] = TransactionDescription(
                t.transactional_id, t.transaction_state, t.producer_id, t.producer_epoch, t.transaction_timeout_ms,
                None if t.transaction_start_time_ms < 0 else t.transaction_start_time_ms,
                [(d.name, p) for d in t.topics for p in d.partition_indexes])
        return out


def _isolation(level):
    try:
        return {"read_uncommitted": m.IsolationLevel.READ_UNCOMMITTED,
                "read_committed": m.IsolationLevel.READ_COMMITTED}[level]
    except KeyError:
        raise ValueError(f"isolation_level is 'read_uncommitted' or 'read_committed', not {level!r}") from None
