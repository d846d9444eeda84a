"""`odradek groups ...`: consumer groups, their committed offsets and lag, and offset
resets, as kafka-consumer-groups.sh shows and does them.

Lag of a partition = its log end offset (ListOffsets "latest": the next offset to be
written) minus the group's committed offset (the next record the group will read). A
partition the group owns but never committed has no lag ("-"), as in Kafka.

Resets follow kafka-consumer-groups --reset-offsets: only while the group has no live
members (Empty, or no group yet); --to-offset and --shift-by are clamped to
[log start, log end]; --to-datetime / --by-duration take the first record at or after
the time, or the log end if there is none; --to-current keeps the committed offset (the
log end for a partition with none); --all-topics means every partition the group has a
committed offset for. The CLI (daemon/cli/groups.py) parses options; this module talks to the
broker through an Admin and returns lines.
"""
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from odradek.client.errors import (GroupIdNotFound, InvalidRequest, NonEmptyGroup,
                                   UnknownTopicOrPartition)
from odradek.daemon.tools.table import format_table

__all__ = ["list_lines", "describe_lines", "members_lines", "Reset", "plan_reset", "execute_reset",
           "plan_lines", "delete", "committed_offsets_of_groups", "parse_topic", "parse_datetime",
           "parse_duration", "lag_rows", "INACTIVE_STATES", "SCENARIOS"]

INACTIVE_STATES = ("Empty", "Dead")
# reset-offsets scenarios: (name, takes a value)
SCENARIOS = ("to-earliest", "to-latest", "to-offset", "to-datetime", "by-duration", "shift-by", "to-current")
_NONE = "-"


# == parsing (the CLI turns ValueError into a usage error) =================================

def parse_topic(text):
    """'orders' -> ('orders', None): every partition; 'orders:0,2' -> ('orders', (0, 2))."""
    topic, sep, parts = text.partition(":")
    if not topic:
        raise ValueError(f"{text!r} names no topic: give TOPIC or TOPIC:P,P...")
    if not sep:
        return topic, None
    try:
        partitions = tuple(sorted({int(p) for p in parts.split(",")}))
    except ValueError:
        raise ValueError(f"{text!r}: partitions must be numbers, as in {topic}:0,1,2") from None
    if any(p < 0 for p in partitions):
        raise ValueError(f"{text!r}: a partition number is never negative")
    return topic, partitions


def parse_datetime(text):
    """ISO-8601 (2024-05-01T12:00:00, with .sss, Z or +hh:mm if wanted; a date alone is
    its midnight) -> ms since the epoch. Without a zone the time is local, as Kafka's."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date-time such as 2024-05-01T12:00:00.000 "
                         f"or 2024-05-01T12:00:00Z") from None
    return int(when.timestamp() * 1000)


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d{1,9})?)S)?)?",
                       re.IGNORECASE)


def parse_duration(text):
    """ISO-8601 duration PnDTnHnMnS (P1D, PT1H30M, PT0.5S, P1DT12H) -> milliseconds."""
    found = _DURATION.fullmatch(text.strip())
    if not found or not any(found.groups()):
        raise ValueError(f"{text!r} is not a duration PnDTnHnMnS such as PT30M, PT2H or P1DT12H")
    days, hours, minutes, seconds = found.groups()
    return int((int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60) * 1000
               + round(float(seconds or 0) * 1000))


# == looking ==============================================================================

def _not_found(group_id):
    return GroupIdNotFound(f"group {group_id} does not exist; 'odradek groups list' shows the groups")


def _describe(admin, group_id):
    try:
        return admin.describe_group(group_id)
    except GroupIdNotFound:
        raise _not_found(group_id) from None


def _dash(value):
    return _NONE if value is None or value == "" else value


def _member_count(n):
    return f"{n} live member{'' if n == 1 else 's'}"


def list_lines(admin):
    """GROUP STATE PROTOCOL-TYPE MEMBERS, one row per group."""
    listed = admin.list_groups()
    described = admin.describe_groups([g.group_id for g in listed]) if listed else {}
    rows = []
    for g in listed:
        d = described.get(g.group_id)
        rows.append((g.group_id, g.state, _dash(g.protocol_type), len(d.members) if d else 0))
    return format_table(["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"], rows)


def _header(d):
    lines = [f"Group: {d.group_id}  State: {d.state}  ProtocolType: {_dash(d.protocol_type)}  "
             f"Assignor: {_dash(d.protocol)}  Members: {len(d.members)}"]
    if not d.members:
        lines.append(f"Consumer group '{d.group_id}' has no active members.")
    elif d.state != "Stable":
        lines.append(f"Consumer group '{d.group_id}' is rebalancing ({d.state}): assignments show once "
                     f"it is Stable.")
    return lines


@dataclass
class LagRow:
    topic: str
    partition: int
    committed: int | None     # None: nothing committed
    end: int | None           # None: unknown (the partition is gone)
    member: object = None     # MemberDescription or None

    @property
    def lag(self):
        return None if self.committed is None or self.end is None else self.end - self.committed


def lag_rows(committed, ends, owners=None):
    """LagRows sorted by topic and partition, for every partition committed or owned.
    committed: {(t, p): offset}; ends: {(t, p): log end}; owners: {(t, p): member}."""
    owners = owners or {}
    return [LagRow(t, p, committed.get((t, p)), ends.get((t, p)), owners.get((t, p)))
            for t, p in sorted(set(committed) | set(owners))]


def _log_ends(admin, partitions, isolation_level="read_uncommitted"):
    """{(t, p): log end offset} of the partitions that exist (a committed offset may
    outlive a partition for a moment while its topic is deleted); read_committed: the
    last stable offset, what a read_committed consumer can reach."""
    if not partitions:
        return {}
    topics = admin.list_topics()
    exist = {tp for tp in partitions if tp[0] in topics and tp[1] < len(topics[tp[0]].partitions)}
    return {tp: offset for tp, (offset, _) in
            admin.list_offsets_batch(dict.fromkeys(exist, "latest"), isolation_level).items()}


def describe_lines(admin, group_id, isolation_level="read_uncommitted"):
    """kafka-consumer-groups --describe: a header, then one row per partition the group
    owns or has committed, then the total lag (read_committed: to the last stable offset)."""
    d = _describe(admin, group_id)
    committed = {tp: offset for tp, (offset, _) in admin.list_group_offsets(group_id).items()}
    owners = {tp: member for member in d.members for tp in member.assignment}
    rows = lag_rows(committed, _log_ends(admin, set(committed) | set(owners), isolation_level), owners)
    lines = _header(d) + [""]
    lines += format_table(
        ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"],
        [(r.topic, r.partition, _dash(r.committed), _dash(r.end), _dash(r.lag),
          r.member.member_id if r.member else _NONE, _dash(r.member.host) if r.member else _NONE,
          _dash(r.member.client_id) if r.member else _NONE) for r in rows])
    lags = [r.lag for r in rows if r.lag is not None]
    uncommitted = sum(1 for r in rows if r.committed is None)
    lines += ["", f"Total lag: {sum(lags)}" + (f" ({uncommitted} partition{'s' if uncommitted != 1 else ''} "
                                               f"without a committed offset)" if uncommitted else "")]
    return lines


def _assignment_text(partitions):
    by_topic = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(str(p))
    return " ".join(f"{t}({','.join(ps)})" for t, ps in sorted(by_topic.items())) or _NONE


def members_lines(admin, group_id):
    """kafka-consumer-groups --describe --members --verbose: one row per member."""
    d = _describe(admin, group_id)
    lines = _header(d)
    if d.members:
        lines.append("")
        lines += format_table(
            ["CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"],
            [(x.member_id, _dash(x.group_instance_id), _dash(x.host), _dash(x.client_id), len(x.assignment),
              _assignment_text(x.assignment)) for x in d.members])
    return lines


def committed_offsets_of_groups(admin):
    """{group_id: {(topic, partition): committed offset}} of every group with one (for
    `odradek status`)."""
    out = {}
    for g in admin.list_groups():
        offsets = admin.list_group_offsets(g.group_id)
        if offsets:
            out[g.group_id] = {tp: offset for tp, (offset, _) in offsets.items()}
    return out


# == resetting ============================================================================

@dataclass
class Reset:
    """A reset plan: the new offset of each partition, and what was clamped."""
    group_id: str
    offsets: dict                               # {(topic, partition): new offset}
    notes: list = field(default_factory=list)   # one line per clamped partition


def _require_inactive(admin, group_id):
    try:
        d = admin.describe_group(group_id)
    except GroupIdNotFound:
        return   # no group yet: a reset creates it, as in Kafka
    if d.state not in INACTIVE_STATES:
        raise NonEmptyGroup(f"group {group_id} has {_member_count(len(d.members))} (state {d.state}); stop "
                            f"them first: offsets can be reset only while the group is empty")


def _partitions_to_reset(admin, group_id, topics, all_topics, committed):
    if all_topics:
        if not committed:
            raise InvalidRequest(f"group {group_id} has no committed offsets, so --all-topics means nothing; "
                                 f"name the topics with --topic")
        return sorted(committed)
    described = admin.list_topics(sorted({t for t, _ in topics}))
    wanted = set()
    for topic, partitions in topics:
        count = len(described[topic].partitions)
        for p in partitions if partitions is not None else range(count):
            if p >= count:
                raise UnknownTopicOrPartition(f"topic {topic} has partitions 0-{count - 1}; there is no "
                                              f"partition {p}")
            wanted.add((topic, p))
    return sorted(wanted)


def plan_reset(admin, group_id, scenario, value=None, topics=(), all_topics=False, now_ms=None):
    """The Reset that `scenario` (one of SCENARIOS; value: the offset, ms timestamp,
    duration ms or shift) gives for the partitions of `topics` ([(topic, partitions or
    None)]) or, with all_topics, every partition the group has committed. Refused
    (NonEmptyGroup) while the group has live members."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown reset scenario {scenario!r}")
    _require_inactive(admin, group_id)
    committed = {tp: offset for tp, (offset, _) in admin.list_group_offsets(group_id).items()}
    partitions = _partitions_to_reset(admin, group_id, topics, all_topics, committed)
    starts = {tp: o for tp, (o, _) in admin.list_offsets_batch(dict.fromkeys(partitions, "earliest")).items()}
    ends = {tp: o for tp, (o, _) in admin.list_offsets_batch(dict.fromkeys(partitions, "latest")).items()}
    plan = Reset(group_id, {})

    def clamp(tp, offset):
        lo, hi = starts[tp], ends[tp]
        t, p = tp
        if offset < lo:
            plan.notes.append(f"{t}-{p}: new offset {offset} is below the log start {lo}; using {lo}")
            return lo
        if offset > hi:
            plan.notes.append(f"{t}-{p}: new offset {offset} is above the log end {hi}; using {hi}")
            return hi
        return offset

    if scenario in ("to-datetime", "by-duration"):
        ts = value if scenario == "to-datetime" else (time.time_ns() // 1_000_000 if now_ms is None
                                                      else now_ms) - value
        found = admin.list_offsets_batch(dict.fromkeys(partitions, max(ts, 0)))
    for tp in partitions:
        if scenario == "to-earliest":
            plan.offsets[tp] = starts[tp]
        elif scenario == "to-latest":
            plan.offsets[tp] = ends[tp]
        elif scenario == "to-offset":
            plan.offsets[tp] = clamp(tp, value)
        elif scenario in ("to-datetime", "by-duration"):
            offset = found[tp][0]
            plan.offsets[tp] = ends[tp] if offset < 0 else offset
        elif scenario == "shift-by":
            if tp not in committed:
                raise InvalidRequest(f"cannot shift {tp[0]}-{tp[1]}: group {group_id} has no committed offset "
                                     f"for it; reset it with --to-earliest, --to-latest or --to-offset")
            plan.offsets[tp] = clamp(tp, committed[tp] + value)
        else:  # to-current
            plan.offsets[tp] = committed.get(tp, ends[tp])
    return plan


def plan_lines(plan):
    return format_table(["TOPIC", "PARTITION", "NEW-OFFSET"],
                        [(t, p, offset) for (t, p), offset in sorted(plan.offsets.items())])


def execute_reset(admin, plan):
    """Commit the plan's offsets (a standalone commit: the broker refuses it if members
    joined since the plan was made)."""
    admin.alter_group_offsets(plan.group_id, plan.offsets)


def delete(admin, group_id):
    try:
        admin.delete_group(group_id)
    except GroupIdNotFound:
        raise _not_found(group_id) from None
    except NonEmptyGroup as e:
        raise NonEmptyGroup(f"{e.message}; stop its consumers first") from None
