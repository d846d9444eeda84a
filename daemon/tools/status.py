"""`odradek status`: the broker's StatusResponse as tables a person can scan (processes,
partitions with their replicas, ISR, high watermark and flags, followers with their lag,
log dirs), and the lag of every consumer group with committed offsets (computed here,
from the partitions' log end offsets in the same StatusResponse)."""
import psutil

from odradek.client.partition_health import flags_by_partition, follower_lags, health
from odradek.daemon.tools.table import format_table, human_bytes

__all__ = ["render"]


def _uptime(ms):
    s = ms // 1000
    return f"{s // 86400}d{s % 86400 // 3600:02d}h" if s >= 86400 else \
        f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _process(pid):
    """(cpu %, rss) of a process, or ('-', '-') if it is gone or not ours to see."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            return f"{p.cpu_percent(interval=None):.1f}", human_bytes(p.memory_info().rss)
    except (psutil.Error, ValueError):
        return "-", "-"


def render(status, group_offsets=None):
    """Lines of the status; group_offsets ({group: {(topic, partition): committed}}, as
    groups.committed_offsets_of_groups returns) adds the consumer-group lag section."""
    cpu, rss = _process(status.broker_pid)
    lines = [f"broker pid {status.broker_pid}, up {_uptime(status.uptime_ms)}, version {status.version}, "
             f"rss {rss}", "log dirs: " + ", ".join(f"{i}={d}" for i, d in enumerate(status.log_dirs)), ""]
    rows = []
    for w in status.workers:
        cpu, rss = _process(w.pid) if w.pid else ("-", "-")
        rows.append((f"{w.topic}-{w.partition}", w.role, w.replica_id, w.pid or "-", _process_state(w.pid, w.state),
                     cpu, rss, w.restarts, _uptime(w.uptime_ms)))
    lines += format_table(["PARTITION", "ROLE", "REPLICA", "PID", "STATE", "CPU%", "RSS", "RESTARTS", "UP"], rows)
    lines.append("")
    if status.listeners:     # the Kafka listener's gateway processes
        rows = [(g.address, g.pid or "-", g.state, g.connections, g.accepted, g.refused, g.restarts,
                 _uptime(g.uptime_ms)) for g in status.listeners]
        lines += format_table(["KAFKA-LISTENER", "PID", "STATE", "CONNECTIONS", "ACCEPTED", "REFUSED", "RESTARTS",
                               "UP"], rows) + [""]
    flags = flags_by_partition(status)
    rows = [(f"{p.topic}-{p.partition}", p.leader_id, p.leader_epoch, _ids(p.replica_nodes), _ids(p.isr_nodes),
             p.log_start_offset, p.high_watermark, p.last_stable_offset, p.log_end_offset,
             p.log_end_offset - p.log_start_offset if p.log_end_offset >= 0 else -1, human_bytes(p.size_bytes),
             p.segments, ",".join(flags[(p.topic, p.partition)]) or "-") for p in status.partitions]
    lines += format_table(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "HW", "LSO", "LOG-END",
                           "RECORDS", "SIZE", "SEGMENTS", "FLAGS"], rows)
    lines.append("")
    followers = _followers(status)
    if followers:
        lines += followers + [""]
    lines += _log_dirs(status)
    h = health(status)
    offline_dirs = sum(d.state != "online" for d in status.log_dir_states)
    lines.append("")
    if h.offline:
        lines.append(f"offline partitions (no leader, or its log dir is offline): {', '.join(h.offline)}")
    if h.under_replicated:
        lines.append(f"under-replicated (ISR smaller than the replicas): {', '.join(h.under_replicated)}")
    if h.under_min_isr:
        lines.append(f"under min ISR (ISR below min.insync.replicas: acks=all refused): {', '.join(h.under_min_isr)}")
    moves = [f"{p.topic}-{p.partition} ({_ids(p.removing_replicas)} -> {_ids(p.adding_replicas)})"
             for p in status.partitions if p.adding_replicas or p.removing_replicas]
    if moves:
        lines.append(f"moving a replica to another log dir: {', '.join(moves)}")
    lines.append(f"{h.partitions} partitions, {len(h.under_replicated)} under-replicated, "
                 f"{len(h.under_min_isr)} under min ISR, {len(h.offline)} offline; "
                 f"{offline_dirs} of {len(status.log_dir_states)} log dirs offline")
    if group_offsets:
        lines.append("")
        lines += _group_lag(status, group_offsets)
    return lines


def _ids(ids):
    return ",".join(map(str, ids)) or "-"


def lag_time(ms):
    """A follower's lag in time for people: 0 ms, 850 ms, 12.4 s, 3m05s; '-' unknown."""
    if ms < 0:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    return f"{ms / 1000:.1f} s" if ms < 60_000 else _uptime(ms)


def _process_state(pid, state):
    """The broker's state of a process, or "stopped" when the kernel has it stopped
    (SIGSTOP: alive, copying nothing)."""
    try:
        return "stopped" if pid and psutil.Process(pid).status() == psutil.STATUS_STOPPED else state
    except (psutil.Error, ValueError):
        return state


def _followers(status):
    """The follower table (REPLICA is its log dir's index), or [] when there are none."""
    pids = {(w.topic, w.partition, w.replica_id): w.pid for w in status.workers if w.role == "follower"}
    rows = []
    for f in follower_lags(status):
        pid = pids.get((f.topic, f.partition, f.replica_id), 0)
        rows.append((f"{f.topic}-{f.partition}", f.replica_id, pid or "-", _process_state(pid, f.state),
                     f.log_end_offset if f.log_end_offset >= 0 else "-",
                     f.lag_records if f.lag_records >= 0 else "-", lag_time(f.lag_ms),
                     "yes" if f.in_isr else "no", human_bytes(f.size_bytes)))
    if not rows:
        return []
    return format_table(["PARTITION", "REPLICA", "PID", "STATE", "LOG-END", "LAG-RECORDS", "LAG-TIME", "IN-ISR",
                         "SIZE"], rows)


def _log_dirs(status):
    """LEADERS: partitions led from the dir; REPLICAS: partition replicas in it, leaders
    and followers (a follower's replica id is its dir's index)."""
    replicas = [0] * len(status.log_dir_states)
    for p in status.partitions:
        for r in p.replica_nodes:
            if 0 <= r < len(replicas):
                replicas[r] += 1
    rows = [(i, d.path, d.directory_id or "-", d.state if not d.reason else f"{d.state}: {d.reason}",
             human_bytes(d.size_bytes) if d.size_bytes >= 0 else "-", d.partitions, replicas[i])
            for i, d in enumerate(status.log_dir_states)]
    return format_table(["DIR", "PATH", "DIRECTORY-ID", "STATE", "USAGE", "LEADERS", "REPLICAS"], rows)


def _group_lag(status, group_offsets):
    ends = {(p.topic, p.partition): p.log_end_offset for p in status.partitions if p.log_end_offset >= 0}
    rows, totals = [], {}
    for group in sorted(group_offsets):
        totals[group] = 0
        for (topic, partition), committed in sorted(group_offsets[group].items()):
            end = ends.get((topic, partition))
            lag = end - committed if end is not None else None
            totals[group] += lag or 0
            rows.append((group, topic, partition, committed, "-" if end is None else end,
                         "-" if lag is None else lag))
    lines = format_table(["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"], rows)
    lines.append("")
    lines.append("total lag by group: " + ", ".join(f"{g} {n}" for g, n in totals.items()))
    return lines
