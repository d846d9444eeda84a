"""`odradek log-dirs move --wait`: a replica move's progress, from the broker's Status,
until it is done (the new replica in the ISR, the old one gone)."""
import time

__all__ = ["follow", "progress_line"]

POLL_S = 0.5


def _ids(ids):
    return ",".join(map(str, ids)) or "-"


def progress_line(p):
    """One line on the move of PartitionStatus `p`, or None when none is under way."""
    if not (p.adding_replicas or p.removing_replicas):
        return None
    new, old = p.adding_replicas[0], p.removing_replicas[0]
    if new not in p.isr_nodes:
        f = next((f for f in p.followers if f.replica_id == new), None)
        if f is None or f.log_end_offset < 0:
            copied = f"starting ({f.state if f else 'queued'})"
        elif p.log_end_offset < 0:   # the leader did not answer (it restarts to count the new replica)
            copied = f"copied up to offset {f.log_end_offset}"
        else:
            copied = f"copied up to offset {f.log_end_offset} of {p.log_end_offset} (lag {f.lag_records} records)"
        return f"replica {new}: {copied}"
    if p.leader_id == old:
        return f"replica {new}: in sync; leader {old} hands leadership over"
    return f"replica {new}: in sync; dropping replica {old}"


def follow(admin, topic, partition, poll_s=POLL_S):
    """Lines of progress (each when it changes) until the move of topic-partition is done."""
    last = None
    while True:
        (p,) = [p for p in admin.status([topic]).partitions if p.partition == partition]
        line = progress_line(p)
        if line is None:
            yield f"done: {topic}-{partition} replicas {_ids(p.replica_nodes)}, ISR {_ids(p.isr_nodes)}, " \
                  f"leader {p.leader_id}"
            return
        if line != last:
            yield line
            last = line
        time.sleep(poll_s)
