"""Cluster metadata: topics, their partitions, replica placement, leader epochs, configs.

Owned by the broker process (the controller); workers get what they need from it.
Persisted as JSON in every log dir (`cluster-metadata.json`, written atomically), each
copy stamped with a version that grows with every change; at start the highest version
found wins, so losing a disk does not lose the metadata.

    {"version": 7, "next_producer_id": 12, "cluster_id": "pZS3B7tBQ2CNm0C1NI-KjA",
     "directory_ids": ["bxyOnSlGR_OYgGbjyUeNXQ", ...], "topics": {"orders": {"topic_id": "9f2c...", "configs": {"retention.ms": "3600000"},
      "partitions": [{"partition": 0, "replicas": [0, 1, 2], "leader": 0, "leader_epoch": 0,
                      "isr": [0, 1, 2]}]}}}

A partition whose replica is being moved to another log dir (daemon/broker/reassign.py)
also has "adding_replicas": [new] and "removing_replicas": [old], and replicas = the old
list + [new] until the move is done (Kafka's PartitionRegistration); a copy without
them has no move under way.

replicas, leader and isr name log dirs by their index in log.dirs (one host: a replica
is a directory on a disk, not a broker). directory_ids[i] is the directory.id in the
meta.properties of log dir i (null: not known yet, a copy written by an older odradek);
a dir whose identity differs is offline (broker/log_dirs.py), and no copy is written
to an offline dir. This module does no I/O except load/save.

Each replica is a process: the leader's worker and one follower per other replica
(daemon/worker/follower.py), each writing its own log dir. isr is the in-sync replicas
(Kafka's ISR), changed as Kafka's AlterPartition does: partition_epoch counts its
changes, and a change is saved here before the leader counts on it
(daemon/broker/replication.py). A copy saved before replication existed has no
partition_epoch: its data lives in the leader's dir only, so its isr is read as
[leader] (the followers then catch up and rejoin).

Producer ids are reserved in blocks of PRODUCER_ID_BLOCK, as Kafka's controller does:
the saved next_producer_id is the end of the block being handed out, so the file is
written once per PRODUCER_ID_BLOCK new producers, not once each, and after a restart
the ids start past every id the old block could have handed out.
"""
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field

from odradek.client.errors import (InvalidConfig, InvalidPartitions, InvalidReplicaAssignment,
                                   InvalidReplicationFactor, InvalidTopic, PolicyViolation, ReassignmentInProgress,
                                   StorageError, TopicAlreadyExists, UnknownTopicOrPartition)
from odradek.daemon.storage import filenames, meta_properties
from odradek.daemon.storage.checkpoint import write_atomically
from odradek.daemon.storage.config import LogConfig

__all__ = ["PartitionMeta", "TopicMeta", "Metadata", "validate_topic_name", "MAX_TOPIC_NAME"]

MAX_TOPIC_NAME = 249
PRODUCER_ID_BLOCK = 1000   # ids reserved per metadata write (Kafka's ProducerIdsBlock size)
_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")


def validate_topic_name(name):
    """Raise InvalidTopic unless `name` is a topic name Kafka would accept."""
    if not isinstance(name, str) or not name:
        raise InvalidTopic("a topic name cannot be empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopic(f"topic name is {len(name)} characters; the limit is {MAX_TOPIC_NAME}")
    if not _LEGAL.match(name):
        raise InvalidTopic(f"topic name {name!r} has characters other than ASCII letters, digits, "
                           f"'.', '_' and '-'")


@dataclass
class PartitionMeta:
    partition: int
    replicas: list          # log dir indexes; replicas[0] is the preferred leader
    leader: int
    leader_epoch: int = 0
    isr: list = field(default_factory=list)
    partition_epoch: int = 0   # +1 at every isr, leader or replicas change (Kafka's partitionEpoch)
    adding_replicas: list = field(default_factory=list)     # a move under way (Kafka's addingReplicas)
    removing_replicas: list = field(default_factory=list)   # ... and what it replaces (removingReplicas)

    @property
    def followers(self):
        return [r for r in self.replicas if r != self.leader]

    @property
    def moving(self):
        return bool(self.adding_replicas or self.removing_replicas)

    @property
    def move_in_sync(self):
        """A move is under way and its new replica is in the ISR: the old one may go."""
        return self.moving and all(r in self.isr for r in self.adding_replicas)

    @property
    def target_replicas(self):
        """The replicas once the move under way is done: each removing replica's place
        taken by the adding one, so the preferred leader keeps its position."""
        out = [r for r in self.replicas if r not in self.adding_replicas]
        for gone, new in zip(self.removing_replicas, self.adding_replicas):
            out[out.index(gone)] = new
        return out


@dataclass
class TopicMeta:
    name: str
    topic_id: str
    partitions: list        # PartitionMeta, index == partition number
    configs: dict = field(default_factory=dict)   # overrides only, Kafka's dotted names

    @property
    def replication_factor(self):
        p = self.partitions[0]
        return len(p.replicas) - len(p.adding_replicas)

    def log_config(self, defaults):
        return defaults.with_overrides(self.configs)


class Metadata:
    """The broker's view of every topic. Not thread-safe: the broker loop owns it."""

    def __init__(self, log_dirs, version=0, topics=None, next_producer_id=0, cluster_id=None,
                 directory_ids=None, found=False):
        self.log_dirs = list(log_dirs)
        self.found = found            # a copy was found on disk (False: a brand-new cluster)
        self.cluster_id = cluster_id
        self.directory_ids = (list(directory_ids or []) + [None] * len(self.log_dirs))[:len(self.log_dirs)]
        self.offline_dirs = set()     # indexes of log dirs not written to (broker/log_dirs.py)
        self.version = version
        self.topics = topics or {}
        self.next_producer_id = next_producer_id  # ids below it were handed out
        self.producer_id_limit = next_producer_id  # ids below it are reserved (saved)

    # -- persistence ----------------------------------------------------------------
    @classmethod
    def load(cls, log_dirs):
        """The newest copy found in the log dirs; an empty Metadata if there is none.

        A copy that records directory ids vouches for itself only in the dir whose
        meta.properties carries the cluster id and directory id it records for that
        position of log.dirs. When some copies vouch for themselves, the cluster with
        the most such dirs wins and its newest copy is taken: a disk from another
        cluster must not win by a higher version (two clusters with as many dirs each:
        StorageError). When none does (log.dirs reordered), the newest copy is taken and
        the dirs that do not match it are offline (daemon/broker/log_dirs.py)."""
        copies = []
        for i, d in enumerate(log_dirs):
            path = os.path.join(d, filenames.CLUSTER_METADATA)
            try:
                with open(path, "rb") as f:
                    doc = json.load(f)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (ValueError, OSError) as e:
                raise StorageError(f"{path} cannot be read ({e}); move it away to fall back on the copy in "
                                   f"another log dir") from None
            copies.append((doc, _copy_is_of(doc, i, d)))
        votes = {}
        for doc, vouched in copies:
            if vouched:
                votes[doc.get("cluster_id")] = votes.get(doc.get("cluster_id"), 0) + 1
        if votes:
            most = max(votes.values())
            winners = [c for c, n in votes.items() if n == most]
            if len(winners) > 1:
                raise StorageError(f"the log dirs hold the metadata of {len(winners)} clusters "
                                   f"({', '.join(map(str, winners))}), {most} dir(s) each: move the disks of "
                                   f"the other cluster out of log.dirs")
            copies = [(doc, v) for doc, v in copies if v and doc.get("cluster_id") == winners[0]]
        best = None
        for doc, _ in copies:
            if best is None or doc.get("version", 0) > best.get("version", 0):
                best = doc
        if best is None:
            return cls(log_dirs)
        topics = {}
        for name, t in best.get("topics", {}).items():
            parts = []
            for p in t["partitions"]:
                meta = PartitionMeta(**p)
                if "partition_epoch" not in p:   # saved before replication: the leader's dir alone has data
                    meta.isr = [meta.leader]
                parts.append(meta)
            topics[name] = TopicMeta(name, t["topic_id"], parts, dict(t.get("configs", {})))
        return cls(log_dirs, best.get("version", 0), topics, best.get("next_producer_id", 0),
                   best.get("cluster_id"), best.get("directory_ids"), found=True)

    def save(self):
        """Bump the version and write it to every online log dir (atomically each)."""
        self.version += 1
        doc = {"version": self.version, "next_producer_id": self.producer_id_limit,
               "cluster_id": self.cluster_id, "directory_ids": self.directory_ids,
               "topics": {name: {"topic_id": t.topic_id, "configs": t.configs,
                                 "partitions": [asdict(p) for p in t.partitions]}
                          for name, t in sorted(self.topics.items())}}
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        for i, d in enumerate(self.log_dirs):
            if i in self.offline_dirs:
                continue
            write_atomically(os.path.join(d, filenames.CLUSTER_METADATA), data)

    # -- queries --------------------------------------------------------------------
    def topic(self, name):
        t = self.topics.get(name)
        if t is None:
            raise UnknownTopicOrPartition(f"topic {name!r} does not exist; create it with "
                                          f"'odradek topics create {name}'")
        return t

    def partition(self, name, partition):
        t = self.topic(name)
        if not isinstance(partition, int) or not 0 <= partition < len(t.partitions):
            raise UnknownTopicOrPartition(f"topic {name!r} has partitions 0..{len(t.partitions) - 1}, "
                                          f"not {partition}")
        return t.partitions[partition]

    @property
    def partition_count(self):
        return sum(len(t.partitions) for t in self.topics.values())

    # -- changes (the caller saves) ---------------------------------------------------
    def _check_limits(self, name, count, added, limits):
        """Refuse a topic of `count` partitions, `added` of them new, above `limits`
        (a broker.limits.PartitionLimits; None: no limits)."""
        if limits is None:
            return
        if count > limits.per_topic:
            raise InvalidPartitions(f"topic {name!r} would have {count} partitions; the limit is "
                                    f"{limits.per_topic} (max.partitions.per.topic)")
        in_use = self.partition_count
        if in_use + added > limits.total:
            raise PolicyViolation(f"the broker would have {in_use + added} partitions ({in_use} in use + "
                                  f"{added}); the limit is {limits.total} (max.partitions)")

    def _place(self, first_partition, count, replication_factor, salt):
        """Replica lists spreading leaders and replicas evenly over the online log dirs."""
        dirs = [i for i in range(len(self.log_dirs)) if i not in self.offline_dirs]
        if replication_factor > len(dirs):
            raise InvalidReplicationFactor(
                f"replication factor {replication_factor} needs as many online log.dirs; {len(dirs)} of "
                f"{len(self.log_dirs)} are online (odradek status names the offline ones)")
        n = len(dirs)
        start = salt % n
        return [[dirs[(start + p + r) % n] for r in range(replication_factor)]
                for p in range(first_partition, first_partition + count)]

    def _check_placement(self, placement, count, replication_factor):
        """Replica lists a caller chose (Kafka's replica assignments: replicas named by log
        dir index, the first the preferred leader): `count` of them, each of
        `replication_factor` different online log dirs."""
        if len(placement) != count:
            raise InvalidReplicaAssignment(f"{len(placement)} replica assignments for {count} new partitions")
        for i, replicas in enumerate(placement):
            if len(replicas) != replication_factor or len(set(replicas)) != len(replicas):
                raise InvalidReplicaAssignment(
                    f"assignment {i} {list(replicas)}: each partition needs {replication_factor} different "
                    f"log dirs (the replication factor)")
            missing = [r for r in replicas if not 0 <= r < len(self.log_dirs) or r in self.offline_dirs]
            if missing:
                raise InvalidReplicaAssignment(f"assignment {i}: there is no online log dir {missing[0]} (log dirs "
                                               f"are 0..{len(self.log_dirs) - 1}, by their place in log.dirs)")
        return [list(r) for r in placement]

    def create_topic(self, name, num_partitions, replication_factor, configs, defaults, limits=None, placement=None):
        """Add a topic (validated, within `limits`; nothing changes on error). Returns its
        TopicMeta. `placement`: each partition's replica list, chosen by the caller (it
        gives num_partitions and replication_factor)."""
        if placement is not None:
            num_partitions, replication_factor = len(placement), len(placement[0]) if placement else 0
        validate_topic_name(name)
        if name in self.topics:
            raise TopicAlreadyExists(f"topic {name!r} already exists")
        collides = [t for t in self.topics if t.replace(".", "_") == name.replace(".", "_")]
        if collides:
            raise InvalidTopic(f"topic {name!r} collides with {collides[0]!r}: '.' and '_' are the "
                               f"same in metric names, as Kafka warns")
        if not isinstance(num_partitions, int) or num_partitions < 1:
            raise InvalidPartitions(f"a topic needs at least one partition, not {num_partitions}")
        self._check_limits(name, num_partitions, num_partitions, limits)
        if not isinstance(replication_factor, int) or not 1 <= replication_factor <= len(self.log_dirs):
            raise InvalidReplicationFactor(
                f"replication factor {replication_factor} needs as many log.dirs; there are "
                f"{len(self.log_dirs)} (replicas of a partition live in different dirs)")
        configs = {k: str(v) for k, v in (configs or {}).items()}
        defaults.with_overrides(configs)  # raises InvalidConfig naming a bad key or value
        placement = self._place(0, num_partitions, replication_factor, len(self.topics)) if placement is None \
            else self._check_placement(placement, num_partitions, replication_factor)
        parts = [PartitionMeta(p, replicas, replicas[0], 0, list(replicas))
                 for p, replicas in enumerate(placement)]
        topic = TopicMeta(name, uuid.uuid4().hex, parts, configs)
        self.topics[name] = topic
        return topic

    def delete_topic(self, name):
        return self.topics.pop(self.topic(name).name)

    def create_partitions(self, name, total, limits=None, placement=None):
        """Grow a topic to `total` partitions (within `limits`); returns the new PartitionMetas.
        `placement`: the new partitions' replica lists, chosen by the caller."""
        t = self.topic(name)
        if not isinstance(total, int) or total <= len(t.partitions):
            raise InvalidPartitions(f"topic {name!r} has {len(t.partitions)} partitions; the new count must "
                                    f"be larger (partitions cannot be removed)")
        self._check_limits(name, total, total - len(t.partitions), limits)
        rf, new = t.replication_factor, total - len(t.partitions)
        placement = self._place(len(t.partitions), new, rf, list(self.topics).index(name)) if placement is None \
            else self._check_placement(placement, new, rf)
        added = [PartitionMeta(p, replicas, replicas[0], 0, list(replicas))
                 for p, replicas in zip(range(len(t.partitions), total), placement)]
        t.partitions.extend(added)
        return added

    def alter_configs(self, name, set_configs=None, delete_keys=(), defaults=None):
        """Incremental: set some keys, remove others (back to the broker default)."""
        t = self.topic(name)
        new = dict(t.configs)
        for k in delete_keys:
            new.pop(k, None)
        new.update({k: str(v) for k, v in (set_configs or {}).items()})
        (defaults or LogConfig()).with_overrides(new)  # validate before changing anything
        if any(k not in LogConfig().to_dict() for k in delete_keys):
            bad = next(k for k in delete_keys if k not in LogConfig().to_dict())
            raise InvalidConfig(f"unknown topic config {bad!r}")
        t.configs = new
        return t

    def allocate_producer_id(self):
        """A producer id never handed out before. When the reserved block is used up the
        next one is reserved and saved first, so a crash cannot hand the same id out
        twice; if that save fails (StorageError: a full disk, retriable) no id is
        handed out and nothing changes."""
        pid = self.next_producer_id
        if pid >= self.producer_id_limit:
            self.producer_id_limit = pid + PRODUCER_ID_BLOCK
            try:
                self.save()
            except StorageError:
                self.producer_id_limit = pid
                raise
        self.next_producer_id = pid + 1
        return pid

    def bump_leader_epoch(self, name, partition, leader=None):
        p = self.partition(name, partition)
        if leader is not None:
            p.leader = leader
        p.leader_epoch += 1
        p.partition_epoch += 1
        return p

    def start_move(self, name, partition, from_replica, to_replica):
        """Begin moving replica `from_replica` of a partition to log dir `to_replica` (the
        caller checked both dirs are online and saves): replicas + [to], adding [to],
        removing [from], partition_epoch + 1."""
        p = self.partition(name, partition)
        if p.moving:
            raise ReassignmentInProgress(
                f"{name}-{partition} is already moving replica {p.removing_replicas} to {p.adding_replicas}; "
                f"wait until it is done ('odradek log-dirs move --help')")
        if from_replica not in p.replicas:
            raise InvalidReplicaAssignment(f"{name}-{partition} has no replica in log dir {from_replica} "
                                           f"(its replicas: {p.replicas})")
        if to_replica in p.replicas:
            raise InvalidReplicaAssignment(f"{name}-{partition} already has a replica in log dir {to_replica} "
                                           f"(its replicas: {p.replicas}); pick a dir without one")
        p.replicas = p.replicas + [to_replica]
        p.adding_replicas, p.removing_replicas = [to_replica], [from_replica]
        p.partition_epoch += 1
        return p

    def finish_move(self, name, partition):
        """The adding replica is in sync and the removing one has stopped: replicas = the
        target list, the removing one out of the ISR, partition_epoch + 1 (the caller saves)."""
        p = self.partition(name, partition)
        gone = set(p.removing_replicas)
        p.replicas = p.target_replicas
        p.isr = sorted((r for r in p.isr if r not in gone), key=p.replicas.index)
        p.adding_replicas, p.removing_replicas = [], []
        p.partition_epoch += 1
        return p

    def set_isr(self, name, partition, isr):
        """A new ISR for the partition (the caller checked it and saves): partition_epoch + 1."""
        p = self.partition(name, partition)
        p.isr = sorted(set(isr), key=p.replicas.index)
        p.partition_epoch += 1
        return p


def _copy_is_of(doc, index, log_dir):
    """Whether the metadata copy `doc`, found in log_dir (position `index` of log.dirs),
    belongs there: a copy from before directory ids (none recorded) always does."""
    ids = doc.get("directory_ids") or []
    recorded = ids[index] if index < len(ids) else None
    if recorded is None:
        return True
    try:
        props = meta_properties.read(log_dir)
    except (ValueError, OSError):
        return False
    return props is not None and props.cluster_id == doc.get("cluster_id") and props.directory_id == recorded
