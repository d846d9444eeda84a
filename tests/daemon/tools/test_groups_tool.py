"""daemon/tools/groups.py without a broker: the option parsers, lag rows, reset plans
(against a fake Admin), and the lag section of `odradek status`."""
from datetime import datetime, timezone

import pytest

from odradek.client.admin import GroupDescription, GroupListing, MemberDescription, PartitionDescription, \
    TopicDescription
from odradek.client.errors import GroupIdNotFound, InvalidRequest, NonEmptyGroup, UnknownTopicOrPartition
from odradek.client.protocol import messages as m
from odradek.daemon.tools import groups
from odradek.daemon.tools.status import render


# ---- parsers ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("orders", ("orders", None)),
    ("orders:2", ("orders", (2,))),
    ("orders:2,0,2", ("orders", (0, 2))),
    ("a.b-c_d:1", ("a.b-c_d", (1,))),
])
def test_parse_topic(text, expected):
    assert groups.parse_topic(text) == expected


@pytest.mark.parametrize("text", [":1", "orders:", "orders:x", "orders:1,,2", "orders:-1"])
def test_parse_topic_refuses(text):
    with pytest.raises(ValueError):
        groups.parse_topic(text)


@pytest.mark.parametrize("text, expected", [
    ("PT30M", 30 * 60_000), ("PT2H", 7_200_000), ("P1D", 86_400_000), ("P1DT12H", 129_600_000),
    ("PT1H30M15S", 5_415_000), ("PT0.5S", 500), ("pt1m", 60_000), ("P2DT0.001S", 172_800_001),
])
def test_parse_duration(text, expected):
    assert groups.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1h", "PT1H30", "P1H", "PT-1H", "PT1.5M", "P1W"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="is not a duration PnDTnHnMnS"):
        groups.parse_duration(text)


def test_parse_datetime_takes_zones_and_local_time():
    utc = int(datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert groups.parse_datetime("2024-05-01T12:00:00Z") == utc
    assert groups.parse_datetime("2024-05-01T12:00:00.250Z") == utc + 250
    assert groups.parse_datetime("2024-05-01T14:00:00+02:00") == utc
    assert groups.parse_datetime("2024-05-01T12:00:00") == int(datetime(2024, 5, 1, 12).timestamp() * 1000)
    for bad in ("yesterday", "2024-13-01", "2024-05-01T25:00", ""):
        with pytest.raises(ValueError, match="is not an ISO-8601 date-time"):
            groups.parse_datetime(bad)


# ---- a fake Admin ------------------------------------------------------------------------

class FakeAdmin:
    """Topic 't': 3 partitions, log start 2 and log end 20 each; record i at time 1000*i."""

    def __init__(self, state="Empty", members=(), offsets=None, exists=True):
        self.state, self.members, self.exists = state, list(members), exists
        self.offsets = dict(offsets or {})
        self.altered = None

    def describe_group(self, group_id):
        if not self.exists:
            raise GroupIdNotFound(f"group {group_id} does not exist")
        return GroupDescription(group_id, self.state, "consumer", "range" if self.members else "",
                                self.members)

    def describe_groups(self, ids):
        return {i: self.describe_group(i) for i in ids}

    def list_groups(self):
        return [GroupListing("g", self.state, "consumer")] if self.exists else []

    def list_group_offsets(self, group_id):
        return {tp: (o, "") for tp, o in self.offsets.items()}

    def list_topics(self, names=None):
        known = {"t": TopicDescription("t", [PartitionDescription(p, 0, 0, [0], [0], ["/d"]) for p in range(3)])}
        for n in names or ():
            if n not in known:
                raise UnknownTopicOrPartition(f"topic {n} does not exist")
        return known

    def list_offsets_batch(self, specs, isolation_level="read_uncommitted"):
        assert isolation_level == "read_uncommitted"   # read_committed: test_transactions_admin.py, real broker
        out = {}
        for tp, spec in specs.items():
            if spec == "earliest":
                out[tp] = (2, -1)
            elif spec == "latest":
                out[tp] = (20, -1)
            else:   # the first record at or after the time, of offsets 2..19 stamped 1000*offset
                first = max(2, -(-spec // 1000))
                out[tp] = (first, first * 1000) if first < 20 else (-1, -1)
        return out

    def alter_group_offsets(self, group_id, offsets):
        self.altered = (group_id, dict(offsets))


T = [("t", None)]


@pytest.mark.parametrize("scenario, value, expected, notes", [
    ("to-earliest", None, {0: 2, 1: 2, 2: 2}, 0),
    ("to-latest", None, {0: 20, 1: 20, 2: 20}, 0),
    ("to-offset", 10, {0: 10, 1: 10, 2: 10}, 0),
    ("to-offset", 0, {0: 2, 1: 2, 2: 2}, 3),
    ("to-offset", 50, {0: 20, 1: 20, 2: 20}, 3),
    ("to-datetime", 5500, {0: 6, 1: 6, 2: 6}, 0),
    ("to-datetime", 10**9, {0: 20, 1: 20, 2: 20}, 0),     # nothing at or after: the log end
    ("by-duration", 95_000, {0: 5, 1: 5, 2: 5}, 0),       # now (100 s) - 95 s = 5 s
])
def test_plans(scenario, value, expected, notes):
    plan = groups.plan_reset(FakeAdmin(), "g", scenario, value, topics=T, now_ms=100_000)
    assert plan.offsets == {("t", p): o for p, o in expected.items()}
    assert len(plan.notes) == notes


def test_shift_and_current_start_from_the_committed_offsets():
    admin = FakeAdmin(offsets={("t", 0): 5, ("t", 1): 19})
    plan = groups.plan_reset(admin, "g", "shift-by", -4, topics=[("t", (0, 1))])
    assert plan.offsets == {("t", 0): 2, ("t", 1): 15}
    assert plan.notes == ["t-0: new offset 1 is below the log start 2; using 2"]
    plan = groups.plan_reset(admin, "g", "to-current", topics=T)
    assert plan.offsets == {("t", 0): 5, ("t", 1): 19, ("t", 2): 20}
    with pytest.raises(InvalidRequest, match="cannot shift t-2: group g has no committed offset"):
        groups.plan_reset(admin, "g", "shift-by", 1, topics=T)
    plan = groups.plan_reset(admin, "g", "to-earliest", all_topics=True)
    assert set(plan.offsets) == {("t", 0), ("t", 1)}
    groups.execute_reset(admin, plan)
    assert admin.altered == ("g", {("t", 0): 2, ("t", 1): 2})


def test_a_reset_is_refused_while_the_group_has_members_and_allowed_for_a_new_group():
    member = MemberDescription("m-1", None, "app", "pid:7 uid:1000", (("t", 0),))
    refused = r"NON_EMPTY_GROUP: group g has 1 live member \(state Stable\); stop them first"
    with pytest.raises(NonEmptyGroup, match=refused):
        groups.plan_reset(FakeAdmin("Stable", [member]), "g", "to-earliest", topics=T)
    with pytest.raises(NonEmptyGroup, match=r"has 2 live members \(state PreparingRebalance\)"):
        groups.plan_reset(FakeAdmin("PreparingRebalance", [member, member]), "g", "to-earliest", topics=T)
    assert groups.plan_reset(FakeAdmin(exists=False), "new", "to-latest", topics=[("t", (1,))]).offsets == {
        ("t", 1): 20}
    with pytest.raises(InvalidRequest, match="has no committed offsets"):
        groups.plan_reset(FakeAdmin(exists=False), "new", "to-latest", all_topics=True)
    with pytest.raises(UnknownTopicOrPartition, match="topic t has partitions 0-2; there is no partition 3"):
        groups.plan_reset(FakeAdmin(), "g", "to-latest", topics=[("t", (3,))])


def test_describe_rows_show_dashes_for_unowned_and_uncommitted_partitions():
    member = MemberDescription("m-1", None, "app", "pid:7 uid:1000", (("t", 0), ("t", 1)))
    admin = FakeAdmin("Stable", [member], offsets={("t", 1): 15, ("t", 2): 18})
    lines = groups.describe_lines(admin, "g")
    assert lines[0] == "Group: g  State: Stable  ProtocolType: consumer  Assignor: range  Members: 1"
    body = [line.split() for line in lines if line.startswith("t ")]
    assert body == [["t", "0", "-", "20", "-", "m-1", "pid:7", "uid:1000", "app"],
                    ["t", "1", "15", "20", "5", "m-1", "pid:7", "uid:1000", "app"],
                    ["t", "2", "18", "20", "2", "-", "-", "-"]]
    assert lines[-1] == "Total lag: 7 (1 partition without a committed offset)"
    lines = groups.members_lines(admin, "g")
    assert lines[-1].split() == ["m-1", "-", "pid:7", "uid:1000", "app", "2", "t(0,1)"]
    with pytest.raises(GroupIdNotFound, match="'odradek groups list' shows the groups"):
        groups.describe_lines(FakeAdmin(exists=False), "g")


def test_member_description_parses_pid_and_uid():
    x = MemberDescription("m", None, "c", "pid:4242 uid:1000", ())
    assert (x.pid, x.uid) == (4242, 1000)
    assert MemberDescription("m", None, "c", "", ()).pid is None


def test_status_renders_a_lag_section_per_group():
    st = m.StatusResponse(broker_pid=0, uptime_ms=0, version="x", log_dirs=["/d"], workers=[], partitions=[
        m.PartitionStatus(topic="t", partition=p, leader_id=0, replica_nodes=[0], isr_nodes=[0],
                          log_start_offset=0, log_end_offset=10 * (p + 1)) for p in range(2)])
    assert not any(line.startswith("GROUP") for line in render(st) + render(st, {}))
    lines = render(st, {"b": {("t", 0): 4}, "a": {("t", 0): 10, ("t", 1): 5, ("gone", 0): 3}})
    at = lines.index(next(line for line in lines if line.startswith("GROUP")))
    assert [line.split() for line in lines[at:at + 5]] == [
        ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"],
        ["a", "gone", "0", "3", "-", "-"], ["a", "t", "0", "10", "10", "0"], ["a", "t", "1", "5", "20", "15"],
        ["b", "t", "0", "4", "10", "6"]]
    assert lines[-1] == "total lag by group: a 15, b 6"
