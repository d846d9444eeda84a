"""Admin: topic administration, configs, offsets and broker status, over the control socket.

    from odradek.client import Admin
    with Admin() as admin:                       # socket: ODRADEK_SOCKET or the system default
        admin.create_topic("orders", num_partitions=6, config={"retention.ms": 3600000})
        admin.list_topics()                      # {"orders": TopicDescription, ...}
        admin.list_offsets("orders", 0, "earliest")

Each method returns plain values or raises the OdradekError the broker named (for
example UnknownTopicOrPartition, TopicAlreadyExists, InvalidConfig). Not thread-safe:
use one Admin per thread.
"""
import os
from dataclasses import dataclass

from odradek.client.protocol import ControlClient, messages as m
from odradek.client.protocol._errors import raise_for_error

__all__ = ["Admin", "TopicDescription", "PartitionDescription", "resolve_socket", "DEFAULT_SOCKET",
           "EARLIEST", "LATEST"]

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
    def list_offsets(self, topic, partition, spec="latest"):
        """(offset, timestamp) for 'earliest', 'latest', or a timestamp in ms (the first
        record at or after it; offset -1 when there is none)."""
        ts = {"earliest": EARLIEST, "latest": LATEST}.get(spec, spec)
        res = self._call(m.ListOffsetsRequest(topics=[m.ListOffsetsTopic(
            name=topic, partitions=[m.ListOffsetsPartition(partition_index=partition, timestamp=int(ts))])]))
        p = res.topics[0].partitions[0]
        raise_for_error(p.error_code, p.error_message)
        return p.offset, p.timestamp

    def status(self, topics=None):
        """The broker's StatusResponse: broker pid and uptime, workers, partitions."""
        return self._call(m.StatusRequest(topics=None if topics is None else list(topics)))
