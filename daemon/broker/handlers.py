"""Request handlers of the broker: metadata, topic admin, configs, offsets, status.

`handle(broker, conn, request)` is the one entry: a table maps each request type to its
handler (data-plane requests to data_plane.py, group requests to the GroupShell,
transaction requests, InitProducerId with a transactional id among them, to the
TxnShell). The handlers reach the server only through `broker`, a ServerAPI
(server_api.py). Each answers at once (admin changes decided in metadata.py, then
persisted) or relays to partition workers and answers when they do. Per-item
failures go in the response body, as Kafka does (a topic that does not exist gets its
own error_code); a failure of the whole request raises an OdradekError, which the loop
turns into an error response.
"""
import logging
import os
import shutil
import time

import psutil

from odradek.client.errors import (InvalidReplicaAssignment, InvalidRequest, InvalidTopic, OdradekError,
                                   PolicyViolation, UnknownTopicOrPartition)
from odradek.client.protocol import APIS, GROUP_API_KEYS, messages as m
from odradek.client.protocol.messages import TXN_API_KEYS, ConfigOperation, ConfigResourceType, ConfigSource
from odradek.client.protocol.transport import close_fds
from odradek.daemon.broker import data_plane, reassign
from odradek.daemon.broker.groups import OFFSETS_TOPIC
from odradek.daemon.broker.server_api import ServerAPI
from odradek.daemon.broker.txn import TXN_TOPIC
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import LogDirCheckpoints, fsync_dir
from odradek.daemon.broker.config import BROKER_CONFIGS, BROKER_TO_TOPIC
from odradek.daemon.storage.config import LIST_CONFIGS, TOPIC_CONFIGS

__all__ = ["handle", "worker_retired", "remove_partition_dir", "SERVED_APIS"]

# (the broker's requests to its workers, never a client's)
SERVED_APIS = APIS.without(m.ApiKey.DETACH_PRODUCER, m.ApiKey.APPEND_RECORDS, m.ApiKey.ISR_PROPOSAL,
                           m.ApiKey.UPDATE_ISR, m.ApiKey.LEADER_AND_ISR, m.ApiKey.WRITE_TXN_MARKER)

log = logging.getLogger(__name__)

VERSION = "0.1.0"
# How long Status waits for follower processes' answers (their log sizes): a follower
# stuck is what status must show, not wait for (a stopped one is not asked at all).
FOLLOWER_STATUS_WAIT_S = 1.0


def _error_fields(exc):
    return {"error_code": exc.code, "error_message": exc.message}


def handle(broker: ServerAPI, conn, request):
    message = request.message
    data_handler = _DATA_PLANE.get(type(message))
    if data_handler is not None:   # these take the connection and pass fds both ways
        data_handler(broker, conn, message, list(request.fds),
                     lambda res, fds=(): broker.reply(conn, request.correlation_id, res, fds))
        return
    close_fds(request.fds)
    if type(message) in _TXN_REQUESTS or (type(message) is m.InitProducerIdRequest
                                          and message.transactional_id is not None):
        broker.txn.handle(conn, request)      # the transaction coordinator answers (now or later)
        return
    if type(message) is m.FindCoordinatorRequest and message.key_type == m.CoordinatorType.TRANSACTION:
        broker.reply(conn, request.correlation_id, m.FindCoordinatorResponse(node_id=0))   # this broker
        return
    if type(message) is m.TxnOffsetCommitRequest:   # the transaction must hold the offsets partition
        error = broker.txn.verify(message)
        if error is not None:
            raise error
    if type(message) in _GROUP_REQUESTS:
        broker.groups.handle(conn, request)   # the coordinator answers (now or later)
        return
    handler = _HANDLERS.get(type(message))
    if handler is None:
        raise InvalidRequest(f"{type(message).__name__} is not served by this broker yet")
    result = handler(broker, message, lambda res: broker.reply(conn, request.correlation_id, res))
    if result is not None:
        broker.reply(conn, request.correlation_id, result)


# -- metadata ------------------------------------------------------------------------
def _partition_metadata(broker, topic, p):
    offline = broker.dir_offline_error(topic, p)
    return m.MetadataResponsePartition(
        **(_error_fields(offline) if offline is not None else {}),
        partition_index=p.partition, leader_id=-1 if offline is not None else p.leader,
        leader_epoch=p.leader_epoch, replica_nodes=list(p.replicas), isr_nodes=list(p.isr),
        offline_replicas=[r for r in p.replicas if r in broker.metadata.offline_dirs],
        log_dirs=[broker.config.log_dirs[r] for r in p.replicas])


def metadata(broker, req, reply):
    md = broker.metadata
    names = sorted(md.topics) if req.topics is None else req.topics
    topics = []
    for name in names:
        t = md.topics.get(name)
        if t is None and req.allow_auto_topic_creation and broker.config.auto_create_topics:
            try:
                t = _create(broker, name, -1, -1, {})
            except OdradekError as e:
                topics.append(m.MetadataResponseTopic(name=name, **_error_fields(e)))
                continue
        if t is None:
            try:
                md.topic(name)
            except UnknownTopicOrPartition as e:
                topics.append(m.MetadataResponseTopic(name=name, **_error_fields(e)))
            continue
        topics.append(m.MetadataResponseTopic(
            name=name, is_internal=name.startswith("__"), topic_id=t.topic_id,
            partitions=[_partition_metadata(broker, t.name, p) for p in t.partitions]))
    return m.MetadataResponse(cluster_id=broker.metadata.cluster_id, topics=topics)


# -- topics --------------------------------------------------------------------------
def _create(broker, name, num_partitions, replication_factor, configs, validate_only=False, placement=None):
    cfg = broker.config
    n = cfg.num_partitions if num_partitions in (-1, None) else num_partitions
    rf = cfg.default_replication_factor if replication_factor in (-1, None) else replication_factor
    md = broker.metadata
    topic = md.create_topic(name, n, rf, configs, cfg.topic_defaults, broker.limits, placement)
    n, rf = len(topic.partitions), topic.replication_factor
    if validate_only:
        del md.topics[name]
        return topic
    try:   # dirs first: a saved topic has all its dirs; dirs without a topic are removed at start
        broker.make_partition_dirs(topic, topic.partitions)
        md.save()
    except BaseException:
        del md.topics[name]
        raise
    for p in topic.partitions:
        broker.start_worker(topic, p)
    log.info("created topic %s: %d partitions, replication factor %d%s", name, n, rf,
             f", configs {topic.configs}" if topic.configs else "")
    return topic


def create_topics(broker, req, reply):
    results = []
    for t in req.topics:
        configs = {k: v for k, v in t.configs.items() if v is not None}
        try:
            topic = _create(broker, t.name, t.num_partitions, t.replication_factor, configs, req.validate_only,
                            _placement(t))
            results.append(m.CreatableTopicResult(
                name=t.name, num_partitions=len(topic.partitions), replication_factor=len(topic.partitions[0].replicas),
                topic_id="" if req.validate_only else topic.topic_id,
                configs=[m.CreatableTopicConfigs(name=c.name, value=c.value, config_source=c.config_source)
                         for c in _topic_config_entries(broker, topic, None, False)]))
        except OdradekError as e:
            results.append(m.CreatableTopicResult(name=t.name, **_error_fields(e)))
    return m.CreateTopicsResponse(topics=results)


def _placement(t):
    """The replica lists a CreatableTopic's assignments give (None: the broker places)."""
    if not t.assignments:
        return None
    if t.num_partitions != -1 or t.replication_factor != -1:
        raise InvalidRequest("with replica assignments, num_partitions and replication_factor are -1: "
                             "the assignments give both")
    by_index = {a.partition_index: list(a.broker_ids) for a in t.assignments}
    if sorted(by_index) != list(range(len(t.assignments))):
        raise InvalidReplicaAssignment(f"the assignments name partitions {sorted(a.partition_index for a in t.assignments)}"
                                       f"; they must name 0..{len(t.assignments) - 1} once each")
    return [by_index[i] for i in range(len(by_index))]


def delete_topics(broker, req, reply):
    results = []
    by_id = {t.topic_id: name for name, t in broker.metadata.topics.items()}
    for name, topic_id in [*((n, "") for n in req.topic_names), *((by_id.get(i, i), i) for i in req.topic_ids)]:
        try:
            if topic_id and topic_id not in by_id:
                raise UnknownTopicOrPartition(f"no topic has id {topic_id}")
            if name in _INTERNAL_TOPICS:
                raise InvalidTopic(f"{name} is internal: it holds {_INTERNAL_TOPICS[name]}")
            topic = broker.metadata.delete_topic(name)
        except OdradekError as e:
            results.append(m.DeletableTopicResult(name=name, topic_id=topic_id, **_error_fields(e)))
            continue
        broker.metadata.save()
        broker.groups.topic_deleted(name)
        log.info("deleted topic %s (%d partitions)", name, len(topic.partitions))
        offline = name in broker.offline
        if offline:   # no workers, and maybe far more partitions than dirs
            broker.offline.discard(name)
            _remove_topic_files(broker, name)
        for p in ([] if offline else topic.partitions):
            handles = [h for h in [broker.supervisor.workers.get((name, p.partition)),
                                   *(broker.supervisor.workers.get((name, p.partition, r)) for r in p.followers)]
                       if h is not None]
            for handle in handles:
                if handle.alive:
                    broker.stop_worker(handle)  # the files go when the last has exited: worker_retired
                else:   # queued, or dead and waiting for its restart
                    broker.supervisor.forget(handle)
                    if not handle.is_follower:
                        broker.release_partition(handle)
            if not any(h.alive for h in handles):
                _remove_partition_files(broker, name, p.partition)
        results.append(m.DeletableTopicResult(name=name, topic_id=topic.topic_id))
    return m.DeleteTopicsResponse(responses=results)


def worker_retired(broker: ServerAPI, handle):
    """A stopped worker has exited: if its topic is gone, remove the partition's files."""
    topic = broker.metadata.topics.get(handle.spec.topic)
    if topic is None and not broker.stopping:
        key = (handle.spec.topic, handle.spec.partition)
        if not any(h.alive for k, h in broker.supervisor.workers.items() if k[:2] == key):
            _remove_partition_files(broker, handle.spec.topic, handle.spec.partition)
    elif topic is not None and not broker.stopping and not reassign.replica_left(broker, handle):
        broker.queue_worker(handle)  # stopped for a config change: start it again


def _remove_partition_files(broker, name, partition):
    """Remove the partition's dir from every online log dir."""
    for log_dir in broker.online_log_dirs():
        remove_partition_dir(log_dir, name, partition)


def remove_partition_dir(log_dir, name, partition):
    """Rename the partition's dir in `log_dir` out of the way (atomic), then delete it
    and its entries in the log dir's checkpoints (what a stop leaves half-done is
    finished at the next start)."""
    path = os.path.join(log_dir, filenames.partition_dir_name(name, partition))
    if not os.path.isdir(path):
        return
    doomed = f"{path}.{int(time.time() * 1000)}{filenames.DELETE_SUFFIX}"
    os.rename(path, doomed)
    fsync_dir(log_dir)
    shutil.rmtree(doomed, ignore_errors=True)
    LogDirCheckpoints(log_dir).remove((name, partition))


def _remove_topic_files(broker, name):
    """Remove every partition dir of topic `name`, whatever its partition count says
    (one listing per log dir)."""
    for log_dir in broker.online_log_dirs():
        for entry in os.listdir(log_dir):
            tp = filenames.parse_partition_dir(entry)
            if tp is not None and tp[0] == name:
                _remove_partition_files(broker, name, tp[1])


def create_partitions(broker, req, reply):
    results = []
    for t in req.topics:
        try:
            if t.name in broker.offline:
                raise PolicyViolation(f"topic {t.name!r} is offline (above the partition limits); delete it "
                                      f"or raise the limit and restart the broker")
            added = broker.metadata.create_partitions(
                t.name, t.count, broker.limits,
                None if t.assignments is None else [list(a.broker_ids) for a in t.assignments])
            if not req.validate_only:
                topic = broker.metadata.topic(t.name)
                try:   # dirs first, as for a new topic
                    broker.make_partition_dirs(topic, added)
                    broker.metadata.save()
                except BaseException:
                    del topic.partitions[len(topic.partitions) - len(added):]
                    raise
                for p in added:
                    broker.start_worker(topic, p)
                log.warning("topic %s now has %d partitions: keyed records map to other partitions from "
                            "now on (murmur2(key) %% partitions)", t.name, t.count)
            else:
                topic = broker.metadata.topic(t.name)
                del topic.partitions[len(topic.partitions) - len(added):]  # undo: validation only
            results.append(m.CreatePartitionsTopicResult(name=t.name))
        except OdradekError as e:
            results.append(m.CreatePartitionsTopicResult(name=t.name, **_error_fields(e)))
    return m.CreatePartitionsResponse(results=results)


# -- configs -------------------------------------------------------------------------
def _config_text(value):
    """A config value as Kafka writes it: true/false, lists comma-separated."""
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)


def _topic_config_entries(broker, topic, keys, include_documentation):
    """DescribeConfigsResourceResult of `keys` (None: every topic config) of `topic`."""
    effective = topic.log_config(broker.config.defaults_for(topic.replication_factor)).to_dict()
    entries = []
    for key in keys or [k.name for k in TOPIC_CONFIGS]:
        if key not in effective:
            raise InvalidRequest(f"unknown topic config {key!r}")
        source = (ConfigSource.TOPIC_CONFIG if key in topic.configs else
                  ConfigSource.STATIC_BROKER_CONFIG if broker.config.sets_topic_default(key)
                  else ConfigSource.DEFAULT_CONFIG)
        doc = next(k.doc for k in TOPIC_CONFIGS if k.name == key) if include_documentation else None
        entries.append(m.DescribeConfigsResourceResult(name=key, value=_config_text(effective[key]),
                                                       config_source=source, documentation=doc))
    return entries


def _broker_config_entries(broker, keys, include_documentation):
    """The broker's own settings (static: read-only; the resource name is ""), as
    `odradek status` shows them, with whether the config file set each."""
    values = broker.config.describe()
    entries = []
    for key in keys or sorted(values):
        if key not in values:
            raise InvalidRequest(f"unknown broker config {key!r}")
        value = values[key]
        default = BROKER_DEFAULTS.get(key)
        entries.append(m.DescribeConfigsResourceResult(
            name=key, value=_config_text(value), read_only=True,
            config_source=ConfigSource.DEFAULT_CONFIG if default == value else ConfigSource.STATIC_BROKER_CONFIG,
            documentation=BROKER_DOCS.get(key) if include_documentation else None))
    return entries


def describe_configs(broker, req, reply):
    results = []
    for res in req.resources:
        try:
            if res.resource_type == ConfigResourceType.BROKER and res.resource_name == "":
                entries = _broker_config_entries(broker, res.configuration_keys, req.include_documentation)
            elif res.resource_type == ConfigResourceType.TOPIC:
                entries = _topic_config_entries(broker, broker.metadata.topic(res.resource_name),
                                                res.configuration_keys, req.include_documentation)
            else:
                raise InvalidRequest("only topic configs and this broker's (broker resource \"\") can be described")
            results.append(m.DescribeConfigsResult(resource_type=res.resource_type,
                                                   resource_name=res.resource_name, configs=entries))
        except OdradekError as e:
            results.append(m.DescribeConfigsResult(resource_type=res.resource_type,
                                                   resource_name=res.resource_name, **_error_fields(e)))
    return m.DescribeConfigsResponse(results=results)


def alter_configs(broker, req, reply):
    results = []
    for res in req.resources:
        try:
            if res.resource_type != ConfigResourceType.TOPIC:
                raise InvalidRequest("only topic configs can be altered")
            sets, deletes = {}, []
            for c in res.configs:
                if c.config_operation == ConfigOperation.SET:
                    sets[c.name] = c.value
                elif c.config_operation == ConfigOperation.DELETE:
                    deletes.append(c.name)
                elif c.config_operation in (ConfigOperation.APPEND, ConfigOperation.SUBTRACT) \
                        and c.name in LIST_CONFIGS:
                    sets[c.name] = _list_op(broker, res.resource_name, c, sets.get(c.name))
                else:
                    raise InvalidRequest(f"operation {c.config_operation} on {c.name!r}: APPEND and SUBTRACT "
                                         f"apply to list configs ({', '.join(LIST_CONFIGS)}); others take "
                                         f"SET or DELETE")
            md = broker.metadata
            before = dict(md.topic(res.resource_name).configs)
            topic = md.alter_configs(res.resource_name, sets, deletes, broker.config.topic_defaults)
            if req.validate_only:
                topic.configs = before
            elif topic.configs != before:
                md.save()
                log.info("topic %s configs: %s", res.resource_name, topic.configs)
                for p in topic.partitions:  # workers and followers restart with the new config
                    for key in [(topic.name, p.partition), *((topic.name, p.partition, r) for r in p.followers)]:
                        handle = broker.supervisor.workers.get(key)
                        if handle is not None and handle.alive:
                            broker.stop_worker(handle)
            results.append(m.AlterConfigsResourceResponse(resource_type=res.resource_type,
                                                          resource_name=res.resource_name))
        except OdradekError as e:
            results.append(m.AlterConfigsResourceResponse(resource_type=res.resource_type,
                                                          resource_name=res.resource_name, **_error_fields(e)))
    return m.IncrementalAlterConfigsResponse(responses=results)


def _list_op(broker, name, op, pending):
    """The value of list config `op.name` after APPEND (values not yet there, at the
    end) or SUBTRACT (every value given) on `pending` (an earlier operation of the same
    request), else on the topic's effective value."""
    if pending is None:
        topic = broker.metadata.topic(name)
        pending = str(topic.log_config(broker.config.defaults_for(topic.replication_factor)).to_dict()[op.name])
    have = [v for v in pending.split(",") if v]
    given = [v.strip() for v in (op.value or "").split(",") if v.strip()]
    if op.config_operation == ConfigOperation.APPEND:
        return ",".join(have + [v for v in dict.fromkeys(given) if v not in have])
    return ",".join(v for v in have if v not in given)


# -- producer ids ----------------------------------------------------------------------------
MAX_PRODUCER_EPOCH = 32767


def init_producer_id(broker, req, reply):
    """An idempotent producer's id and epoch (Kafka's InitProducerId): a new id, or the
    same id with the next epoch when the producer re-initialises (fencing the old one).
    With a transactional id, the transaction coordinator answers instead (handle())."""
    md = broker.metadata
    if req.producer_id < 0:
        pid, epoch = md.allocate_producer_id(), 0
    else:
        if req.producer_id >= md.next_producer_id or req.producer_epoch < 0:
            raise InvalidRequest(f"producer id {req.producer_id} (epoch {req.producer_epoch}) was not "
                                 f"issued by this broker; ask for a new one with producer_id -1")
        pid, epoch = req.producer_id, req.producer_epoch + 1
        if epoch > MAX_PRODUCER_EPOCH:  # exhausted: a fresh id, as Kafka does
            pid, epoch = md.allocate_producer_id(), 0
    # no save here: allocate_producer_id saves once per block of ids, and an epoch bump
    # changes nothing saved
    return m.InitProducerIdResponse(producer_id=pid, producer_epoch=epoch)


# -- relayed to workers ------------------------------------------------------------------
class _Gather:
    """Collects the answers of several workers, then replies once."""

    def __init__(self, expected, finish):
        self.left = expected
        self.results = []
        self.finish = finish
        if expected == 0:
            finish([])

    def add(self, key):
        def callback(result):
            self.results.append((key, result))
            self.left -= 1
            if self.left == 0:
                self.finish(self.results)
        return callback


def _relay_by_partition(broker, topics, one, part_error, done, check=None):
    """Send `one(name, p)` to the leader worker of each partition p of `topics` (a
    request's topic entries: .name, .partitions of .partition_index), then call
    done({name: [partition result]}) once all have answered; an unknown partition, one
    `check(name)` raises for, or a worker's error becomes part_error(p, error)."""
    wanted, errors = [], []
    for t in topics:
        for p in t.partitions:
            try:
                broker.metadata.partition(t.name, p.partition_index)
                if check is not None:
                    check(t.name)
                wanted.append((t.name, p))
            except OdradekError as e:
                errors.append((t.name, part_error(p, e)))

    def finish(results):
        by_topic = {}
        for name, part in errors:
            by_topic.setdefault(name, []).append(part)
        for (name, p), result in results:
            part = part_error(p, result) if isinstance(result, OdradekError) else result.topics[0].partitions[0]
            by_topic.setdefault(name, []).append(part)
        done(by_topic)

    gather = _Gather(len(wanted), finish)
    for name, p in wanted:
        broker.worker_request((name, p.partition_index), one(name, p), gather.add((name, p)))


def list_offsets(broker, req, reply):
    _relay_by_partition(
        broker, req.topics,
        lambda name, p: m.ListOffsetsRequest(isolation_level=req.isolation_level,
                                             topics=[m.ListOffsetsTopic(name=name, partitions=[p])]),
        lambda p, e: m.ListOffsetsPartitionResponse(partition_index=p.partition_index, **_error_fields(e)),
        lambda by_topic: reply(m.ListOffsetsResponse(topics=[m.ListOffsetsTopicResponse(name=n, partitions=ps)
                                                             for n, ps in by_topic.items()])))


def delete_records(broker, req, reply):
    """Kafka's DeleteRecords: each partition's leader moves its log start offset up
    (not on an internal topic, as in Kafka)."""
    def check(name):
        if name in _INTERNAL_TOPICS:
            raise InvalidTopic(f"{name} is internal: it holds {_INTERNAL_TOPICS[name]}; its records are not deleted")

    _relay_by_partition(
        broker, req.topics,
        lambda name, p: m.DeleteRecordsRequest(topics=[m.DeleteRecordsTopic(name=name, partitions=[p])]),
        lambda p, e: m.DeleteRecordsPartitionResult(partition_index=p.partition_index, **_error_fields(e)),
        lambda by_topic: reply(m.DeleteRecordsResponse(topics=[m.DeleteRecordsTopicResult(name=n, partitions=ps)
                                                               for n, ps in by_topic.items()])), check)


def offset_for_leader_epoch(broker, req, reply):
    broker.metadata.partition(req.topic, req.partition)   # unknown: UNKNOWN_TOPIC_OR_PARTITION
    broker.worker_request((req.topic, req.partition), req, reply)


def status(broker, req, reply):
    md = broker.metadata
    names = sorted(md.topics) if req.topics is None else req.topics
    for name in names:
        md.topic(name)  # unknown topic: the whole request fails, naming it
    keys = [(name, p.partition) for name in names for p in md.topics[name].partitions]
    follower_keys = [(*key, r) for key in keys for r in md.topics[key[0]].partitions[key[1]].followers
                     if not _stopped(broker.supervisor.workers.get((*key, r)))]
    min_isr = {name: broker.min_insync_replicas(md.topics[name]) for name in names}

    def finish(by_key):
        workers, partitions = [], []
        for key in keys:
            p = md.topics[key[0]].partitions[key[1]]
            handle = broker.supervisor.workers.get(key)
            if handle is not None:
                workers.append(m.WorkerStatus(
                    pid=handle.pid or 0, topic=key[0], partition=key[1], replica_id=p.leader, role="leader",
                    state=handle.state, restarts=handle.restarts,
                    uptime_ms=int((time.monotonic() - handle.started_at) * 1000) if handle.alive else 0))
            for r in p.followers:
                fh = broker.supervisor.workers.get((*key, r))
                if fh is not None:
                    workers.append(m.WorkerStatus(
                        pid=fh.pid or 0, topic=key[0], partition=key[1], replica_id=r, role="follower",
                        state=fh.state, restarts=fh.restarts,
                        uptime_ms=int((time.monotonic() - fh.started_at) * 1000) if fh.alive else 0))
            result = by_key.get(key)
            ok = isinstance(result, m.StatusResponse) and result.partitions
            leader_end = result.partitions[0].log_end_offset if ok else -1
            base = dict(topic=key[0], partition=key[1], leader_id=p.leader, leader_epoch=p.leader_epoch,
                        replica_nodes=list(p.replicas), isr_nodes=list(p.isr), min_insync_replicas=min_isr[key[0]],
                        adding_replicas=list(p.adding_replicas), removing_replicas=list(p.removing_replicas),
                        followers=_followers(broker, key, p, handle, leader_end, by_key))
            if ok:
                s = result.partitions[0]
                partitions.append(m.PartitionStatus(**base, log_start_offset=s.log_start_offset,
                                                    log_end_offset=s.log_end_offset,
                                                    high_watermark=s.high_watermark,
                                                    last_stable_offset=s.last_stable_offset, size_bytes=s.size_bytes,
                                                    segments=s.segments))
            else:
                partitions.append(m.PartitionStatus(**base, log_start_offset=-1, log_end_offset=-1,
                                                    high_watermark=-1, size_bytes=-1, segments=0))
        reply(m.StatusResponse(broker_pid=os.getpid(), uptime_ms=int((time.time() - broker.started) * 1000),
                               version=VERSION, log_dirs=list(broker.config.log_dirs),
                               workers=workers, partitions=partitions, log_dir_states=_log_dir_states(broker),
                               listeners=[m.ListenerStatus(address=a, pid=pid, state=st, connections=n, accepted=acc,
                                                           refused=ref, restarts=r, uptime_ms=up)
                                          for a, pid, st, n, acc, ref, r, up in broker.gateways.status()]))

    gather = _StatusGather(broker, keys, follower_keys, finish)
    for key in keys + follower_keys:
        broker.worker_request(key, m.StatusRequest(), gather.add(key))
    if not gather.done:
        broker.call_later(FOLLOWER_STATUS_WAIT_S, gather.expire)


def _stopped(handle):
    """Whether the kernel has the process of `handle` stopped (SIGSTOP, a debugger): it
    cannot answer, so Status does not ask it."""
    if handle is None or not handle.pid:
        return False
    try:
        return psutil.Process(handle.pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


class _StatusGather:
    """The answers of a Status request's leaders, all waited for, and of its followers,
    waited for until expire(): finish({key: result}) once, from the loop's timers, not
    from within whatever answered last (a worker's death answers its pending requests
    before the broker has taken the replica out of the ISR: the status would show it
    dead yet in sync)."""

    def __init__(self, broker, leader_keys, follower_keys, finish):
        self.broker = broker
        self.waiting = set(leader_keys) | set(follower_keys)
        self.results = {}
        self.finish = finish
        self.expired = False
        self.done = False
        self._maybe_finish()

    def add(self, key):
        def callback(result):
            if not self.done:
                self.results[key] = result
                self.waiting.discard(key)
                self._maybe_finish()
        return callback

    def expire(self):
        self.expired = True
        self._maybe_finish()

    def _maybe_finish(self):
        if self.done or (self.waiting and not (self.expired and all(len(k) == 3 for k in self.waiting))):
            return
        self.done = True
        self.broker.call_later(0, lambda: self.finish(self.results))


def _followers(broker, key, p, leader_handle, leader_end, answers):
    """FollowerStatus of each follower replica: its process, its progress as its leader
    sees it (the replica progress page), and the size of its log as it answered (-1 if
    it did not in time)."""
    progress = leader_handle.shm.progress if leader_handle is not None and leader_handle.shm is not None else None
    out = []
    for r in p.followers:
        fh = broker.supervisor.workers.get((*key, r))
        state = ("offline" if r in broker.metadata.offline_dirs else
                 "dead" if fh is None or fh.state == "dead" else fh.state)
        leo = progress.log_end_offset(r) if progress is not None and fh is not None and fh.alive else -1
        answer = answers.get((*key, r))
        size = (answer.partitions[0].size_bytes if isinstance(answer, m.StatusResponse) and answer.partitions
                else -1)
        out.append(m.FollowerStatus(
            replica_id=r, state=state, log_end_offset=leo,
            lag_records=max(0, leader_end - leo) if leo >= 0 and leader_end >= 0 else -1,
            caught_up_ms=progress.caught_up_ms(r) if progress is not None else 0, size_bytes=size,
            synced_offset=progress.synced_offset(r) if progress is not None and leo >= 0 else -1))
    return out


def _log_dir_states(broker):
    leaders = [0] * len(broker.dirs)
    for t in broker.metadata.topics.values():
        for p in t.partitions:
            leaders[p.leader] += 1
    return [m.LogDirStatus(path=st.path, directory_id=st.directory_id, state=st.state, reason=st.reason,
                           size_bytes=_tree_size(st.path) if st.online else -1, partitions=leaders[st.index],
                           **_fs_bytes(st.path if st.online else None))
            for st in broker.dirs]


def _fs_bytes(path):
    """total_bytes and usable_bytes of the filesystem holding path (-1 when offline or unreadable)."""
    try:
        vfs = os.statvfs(path) if path else None
    except OSError:
        vfs = None
    if vfs is None:
        return dict(total_bytes=-1, usable_bytes=-1)
    return dict(total_bytes=vfs.f_blocks * vfs.f_frsize, usable_bytes=vfs.f_bavail * vfs.f_frsize)


def _tree_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass   # removed meanwhile
    return total


_HANDLERS = {
    m.ApiVersionsRequest: lambda broker, req, reply: m.api_versions_response(SERVED_APIS),
    m.MetadataRequest: metadata,
    m.CreateTopicsRequest: create_topics,
    m.DeleteTopicsRequest: delete_topics,
    m.CreatePartitionsRequest: create_partitions,
    m.DescribeConfigsRequest: describe_configs,
    m.IncrementalAlterConfigsRequest: alter_configs,
    m.ListOffsetsRequest: list_offsets,
    m.DeleteRecordsRequest: delete_records,
    m.OffsetForLeaderEpochRequest: offset_for_leader_epoch,
    m.InitProducerIdRequest: init_producer_id,
    m.StatusRequest: status,
    m.MoveReplicasRequest: lambda broker, req, reply: reassign.move_replicas(broker, req),
}

_DATA_PLANE = {
    m.OpenProducerRequest: data_plane.open_producer,
    m.OpenFetchRequest: data_plane.open_fetch,
    m.GetSegmentRequest: data_plane.get_segment,
}

_TOPIC_KEYS = {k.name: k for k in TOPIC_CONFIGS}
# What DescribeConfigs says of a broker setting: its default (a value equal to it is
# DEFAULT_CONFIG, another STATIC_BROKER_CONFIG) and its documentation.
BROKER_DEFAULTS = {**{k.name: list(k.default) if isinstance(k.default, tuple) else k.default for k in BROKER_CONFIGS},
                   **{b: _TOPIC_KEYS[t].default for b, t in BROKER_TO_TOPIC.items()}}
BROKER_DOCS = {**{k.name: k.doc for k in BROKER_CONFIGS},
               **{b: _TOPIC_KEYS[t].doc + f" (the default of topic config {t})" for b, t in BROKER_TO_TOPIC.items()}}

_INTERNAL_TOPICS = {OFFSETS_TOPIC: "the consumer groups' committed offsets", TXN_TOPIC: "the transactions' state"}
_GROUP_REQUESTS = frozenset(api.request for api in APIS if api.key in GROUP_API_KEYS)
_TXN_REQUESTS = frozenset(api.request for api in APIS if api.key in TXN_API_KEYS)
