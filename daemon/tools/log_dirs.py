"""`odradek log-dirs forget-data DIR`: give up the data of an offline log dir (a disk
that is gone or was replaced) and format it anew, with the broker stopped.

Each replica in that dir leaves the ISR. A partition led from it moves its leadership to
an in-sync replica on another online dir (leader epoch + 1), as the broker itself does
at start; its replica in the new dir is then an empty follower, which copies the log
from the leader and rejoins the ISR once caught up: the disk is re-replicated. Only a
partition with no other in-sync copy loses its data: it starts empty at offset 0 at the
next start (consumers with committed offsets above it reset by auto.offset.reset), and
that needs --accept-data-loss. The dir must be missing or empty (a dir holding files may
be the old disk: put it back, or empty it first). The edit: lock every online dir (a
running broker holds them: refused), create the dir, write a new meta.properties (new
directory.id, this cluster's id), create the empty partition dirs, record the new id
and the ISR changes in the cluster metadata (saved to every online dir and this one).
"""
import os

from odradek.client.errors import InvalidRequest, StorageError
from odradek.daemon.broker import log_dirs
from odradek.daemon.broker.dir_lock import DirLocks
from odradek.daemon.broker.metadata import Metadata
from odradek.daemon.storage import filenames, meta_properties
from odradek.daemon.storage.checkpoint import fsync_dir
from odradek.daemon.storage.modes import make_dirs

__all__ = ["forget_data"]


def forget_data(config, path, accept_data_loss):
    """Lines to print; raises an OdradekError (nothing changed) when refused."""
    path = os.path.abspath(path)
    if path not in config.log_dirs:
        raise InvalidRequest(f"{path} is not one of log.dirs ({', '.join(config.log_dirs)})")
    md = Metadata.load(config.log_dirs)
    if not md.found:
        raise InvalidRequest(f"no {filenames.CLUSTER_METADATA} in any log dir: a new cluster formats its dirs "
                             f"itself at start; nothing to forget")
    states = log_dirs.assess(config.log_dirs, md)
    st = next(s for s in states if s.path == path)
    if st.online or st.to_format:
        raise InvalidRequest(f"log dir {path} is online (directory.id {st.directory_id or 'to be assigned'}); "
                             f"nothing to forget")
    online = {s.index for s in states if s.online}
    hosted = [(t, p) for t in md.topics.values() for p in t.partitions if st.index in p.replicas]
    lost = sorted(f"{t.name}-{p.partition}" for t, p in hosted
                  if p.leader == st.index and not [r for r in p.isr if r != st.index and r in online])
    copied = len(hosted) - len(lost)
    if lost and not accept_data_loss:
        raise InvalidRequest(f"log dir {path} is offline ({st.reason}); forgetting it discards the data of "
                             f"{len(lost)} partitions with no other in-sync copy ({', '.join(lost)}): they start "
                             f"empty at offset 0. If the disk can come back, put it back and restart instead; "
                             f"otherwise add --accept-data-loss")
    if os.path.isdir(path) and os.listdir(path):
        raise InvalidRequest(f"log dir {path} holds {len(os.listdir(path))} entries ({st.reason}); if it is the "
                             f"old disk, put its meta.properties back (directory.id="
                             f"{md.directory_ids[st.index]}) and restart; to discard them, empty it first")
    locks = DirLocks([s.path for s in states if s.online])   # a running broker holds them: refused
    try:
        make_dirs(path)
        locks.add(path)
        st.directory_id = meta_properties.new_uuid()
        meta_properties.write(path, meta_properties.MetaProperties(md.cluster_id, st.directory_id))
        for t, p in hosted:
            make_dirs(os.path.join(path, filenames.partition_dir_name(t.name, p.partition)))
            others = [r for r in p.isr if r != st.index and r in online]
            if p.leader == st.index and others:
                md.bump_leader_epoch(t.name, p.partition, leader=others[0])
            if others:
                md.set_isr(t.name, p.partition, others)
        fsync_dir(path)
        md.directory_ids[st.index] = st.directory_id
        md.offline_dirs = {s.index for s in states if not s.online and s is not st}
        md.save()
    except OSError as e:
        raise StorageError(f"formatting {path}: {e}") from e
    finally:
        locks.release()
    return [f"log dir {path} formatted: directory.id {st.directory_id}, cluster.id {md.cluster_id}",
            f"{copied} replicas there are copied again from their leaders after the next broker start",
            f"{len(lost)} partitions with no other in-sync copy start empty at offset 0 at the next broker start"
            + (f": {', '.join(lost)}" if lost else "")]
