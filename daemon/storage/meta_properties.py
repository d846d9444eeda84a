"""A log dir's identity: `meta.properties`, in Apache Kafka's format (KIP-858).

    #
    #Written by odradek
    cluster.id=pZS3B7tBQ2CNm0C1NI-KjA
    directory.id=bxyOnSlGR_OYgGbjyUeNXQ
    node.id=0
    version=1

A Java properties file, keys sorted. version 1 is the KRaft-era format; node.id is
always 0 (one broker). directory.id and cluster.id are Kafka Uuids as Uuid.toString
prints them: 16 random bytes in URL-safe base64 without padding (22 characters).
Written atomically the first time the dir is used; the cluster metadata records every
dir's directory.id, so at start a dir that is missing, lost this file, or carries
another identity is told apart from the one the metadata knew (broker/log_dirs.py).
"""
import base64
import os
import uuid

from odradek.daemon.storage.checkpoint import write_atomically

__all__ = ["META_PROPERTIES", "MetaProperties", "read", "write", "new_uuid"]

META_PROPERTIES = "meta.properties"
VERSION = 1


def new_uuid():
    """A random Kafka Uuid string. Like Uuid.randomUuid, never one starting with '-'
    (it would read as a command-line option)."""
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not s.startswith("-"):
            return s


class MetaProperties:
    __slots__ = ("cluster_id", "directory_id", "node_id", "version")

    def __init__(self, cluster_id, directory_id, node_id=0, version=VERSION):
        self.cluster_id, self.directory_id, self.node_id, self.version = cluster_id, directory_id, node_id, version

    def to_bytes(self):
        props = {"cluster.id": self.cluster_id, "directory.id": self.directory_id,
                 "node.id": str(self.node_id), "version": str(self.version)}
        return ("#\n#Written by odradek\n" + "".join(f"{k}={v}\n" for k, v in sorted(props.items()))).encode()


def read(log_dir):
    """The MetaProperties of `log_dir`; None if it has no meta.properties. Raises
    ValueError (naming what is wrong) for a file that is not one."""
    path = os.path.join(log_dir, META_PROPERTIES)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: line {line!r} is not key=value")
        props[key.strip()] = value.strip()
    missing = [k for k in ("directory.id", "cluster.id") if not props.get(k)]
    if missing:
        raise ValueError(f"{path} has no {' and no '.join(missing)}")
    return MetaProperties(props["cluster.id"], props["directory.id"], int(props.get("node.id", 0) or 0),
                          int(props.get("version", VERSION) or VERSION))


def write(log_dir, props):
    write_atomically(os.path.join(log_dir, META_PROPERTIES), props.to_bytes())
