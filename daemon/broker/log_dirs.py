"""Which log dirs are online at start, told by their identity (Kafka's JBOD rules).

Each log dir carries meta.properties (storage/meta_properties.py); the cluster metadata
records every dir's directory.id and the cluster.id. At start:
- a brand-new cluster (no cluster-metadata.json in any configured dir): every dir is
  created if missing and formatted (given a new directory.id);
- otherwise a dir the metadata knows is online only if it exists and its meta.properties
  carries the recorded directory.id and cluster.id. A dir that is missing, has no
  meta.properties (empty: a replaced or wiped disk) or another identity is OFFLINE: not
  created, not written, not locked, its partitions without a worker. It never comes
  back silently empty: put the disk back (same identity) and restart, or give it up
  with 'odradek log-dirs forget-data DIR --accept-data-loss';
- a dir the metadata has no id for (a dir added to log.dirs, or metadata written by an
  odradek before meta.properties) is adopted if it exists: formatted if it has no
  meta.properties, its id recorded. A missing one is offline even then (create an
  added dir empty first).
"""
import os
from dataclasses import dataclass

from odradek.daemon.storage import meta_properties
from odradek.daemon.storage.modes import make_dirs

__all__ = ["LogDirState", "assess", "create_missing", "format_dirs", "offline_message"]

RECOVERY = ("put the disk back and restart, or give its data up with 'odradek log-dirs forget-data {path} "
            "--accept-data-loss' (README: recovering from bad metadata)")


@dataclass
class LogDirState:
    index: int
    path: str
    directory_id: str = None   # from meta.properties (or to be written)
    cluster_id: str = None     # from meta.properties
    online: bool = True
    reason: str = ""           # why it is offline
    to_format: bool = False    # write meta.properties (and create the dir) before use

    @property
    def state(self):
        return "online" if self.online else "offline"


def _one(index, path, metadata):
    recorded = metadata.directory_ids[index] if metadata.found else None
    st = LogDirState(index, path)
    if not os.path.isdir(path):
        if metadata.found:   # a lost disk, never recreated (a new one added to log.dirs: create it empty)
            st.online, st.reason = False, ("missing" if not os.path.lexists(path) else "not a directory")
        else:
            st.to_format = True
        return st
    try:
        props = meta_properties.read(path)
    except (ValueError, OSError) as e:
        st.online, st.reason = False, f"unreadable meta.properties: {e}"
        return st
    if props is None:
        if recorded is not None:
            st.online, st.reason = False, "no meta.properties (an empty, replaced or wiped dir)"
        else:
            st.to_format = True
        return st
    st.directory_id, st.cluster_id = props.directory_id, props.cluster_id
    if metadata.cluster_id is not None and props.cluster_id != metadata.cluster_id:
        st.online, st.reason = False, (f"meta.properties names cluster.id {props.cluster_id}, "
                                       f"not this cluster's {metadata.cluster_id}")
    elif recorded is not None and props.directory_id != recorded:
        st.online, st.reason = False, (f"meta.properties names directory.id {props.directory_id}, "
                                       f"not the recorded {recorded} (another disk, or log.dirs reordered)")
    return st


def assess(log_dirs, metadata):
    """A LogDirState per configured dir (reads only)."""
    return [_one(i, os.path.abspath(p), metadata) for i, p in enumerate(log_dirs)]


def create_missing(states):
    for st in states:
        if st.to_format:
            make_dirs(st.path)


def format_dirs(states, metadata):
    """Write meta.properties into each dir to format (created by create_missing, locked
    by the caller), record every online dir's id; True if the metadata changed."""
    changed = False
    if metadata.cluster_id is None:   # the first dir's that has one (adopted), or a new one
        metadata.cluster_id = next((st.cluster_id for st in states if st.cluster_id), None) or \
            meta_properties.new_uuid()
        changed = True
    for st in states:
        if st.online and st.cluster_id not in (None, metadata.cluster_id):
            st.online, st.reason = False, (f"meta.properties names cluster.id {st.cluster_id}, "
                                           f"not this cluster's {metadata.cluster_id}")
        if st.to_format:
            st.directory_id = meta_properties.new_uuid()
            meta_properties.write(st.path, meta_properties.MetaProperties(metadata.cluster_id, st.directory_id))
            st.to_format = False
        if st.online and metadata.directory_ids[st.index] != st.directory_id:
            metadata.directory_ids[st.index] = st.directory_id
            changed = True
    metadata.offline_dirs = {st.index for st in states if not st.online}
    return changed


def offline_message(st):
    return f"log dir {st.path} is offline: {st.reason}; its partitions are offline; " + \
        RECOVERY.format(path=st.path)
