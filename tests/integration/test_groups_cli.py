"""`odradek groups ...` and the lag in `odradek status`, against the real broker (CliRunner
in this process, the broker in a subprocess): a live consumer group (a Consumer in this
process), its lag, every reset-offsets option with dry run and execute, the refusals
while it has members, delete, and the one-line errors."""
import os
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from odradek.client import Admin, Consumer, Producer
from odradek.client.errors import GroupIdNotFound, NonEmptyGroup
from odradek.daemon.cli import cli
from support.broker import wait_until

HOUR_MS = 3_600_000


def run(broker, *args):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["--socket", broker.socket_path])


def ok(broker, *args):
    r = run(broker, *args)
    assert r.exit_code == 0, (args, r.stdout, r.stderr)
    return r


def fails(broker, *args, code=1):
    r = run(broker, *args)
    assert r.exit_code == code, (args, r.exit_code, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
    assert r.stderr.startswith("odradek: error: "), r.stderr
    return r.stderr.strip()


def rows(text, first_column):
    """The whitespace-split lines of a table that start with `first_column`."""
    return [line.split() for line in text.splitlines() if line.split()[:1] == [first_column]]


def table(text):
    """{(topic, partition): new offset} of a reset plan printed on stdout."""
    lines = text.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "NEW-OFFSET"], text
    return {(t, int(p)): int(o) for t, p, o in (line.split() for line in lines[1:])}


def produce(broker, topic, per_partition, partitions, timestamps=None):
    with Producer({"socket": broker.socket_path, "linger.ms": 1}) as p:
        for i in range(per_partition):
            for part in partitions:
                p.produce(topic, b"v%d" % i, partition=part,
                          timestamp=None if timestamps is None else timestamps[i])
        assert p.flush(10) == 0


def committed(broker, group):
    with Admin(broker.socket_path) as admin:
        return {tp: offset for tp, (offset, _) in admin.list_group_offsets(group).items()}


def group_state(broker, group):
    with Admin(broker.socket_path) as admin:
        return {g.group_id: g.state for g in admin.list_groups()}.get(group)


def live_consumer(broker, group, topic, expect_records, commit=True):
    """A member of `group` subscribed to `topic` that has read `expect_records` records
    (auto.offset.reset earliest) and, with `commit`, committed its positions."""
    c = Consumer({"socket": broker.socket_path, "group.id": group, "client.id": "billing-app",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "heartbeat.interval.ms": 100, "session.timeout.ms": 6000})
    c.subscribe([topic])
    seen, deadline = 0, time.monotonic() + 15
    while seen < expect_records or not c.assignment():
        assert time.monotonic() < deadline, f"consumer read {seen} of {expect_records} records"
        seen += len(c.consume(100, 0.05))
    if commit:
        c.commit(asynchronous=False)
    return c


@pytest.fixture
def orders(broker):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", num_partitions=3)
    produce(broker, "orders", 10, range(3))
    return "orders"


def test_list_describe_status_show_a_live_group_its_members_and_lag(broker, orders):
    c = live_consumer(broker, "billing", orders, 30)
    try:
        produce(broker, orders, 5, [0])
        produce(broker, orders, 2, [1])     # lag now: 5, 2, 0

        r = ok(broker, "groups", "list")
        assert r.stdout.splitlines()[0].split() == ["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"]
        assert rows(r.stdout, "billing") == [["billing", "Stable", "consumer", "1"]]

        member = c.memberid()
        host = f"pid:{os.getpid()} uid:{os.getuid()}"
        r = ok(broker, "groups", "describe", "billing")
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["Group:", "billing", "State:", "Stable", "ProtocolType:", "consumer",
                                    "Assignor:", "range", "Members:", "1"]
        header = next(line for line in lines if line.startswith("TOPIC"))
        assert header.split() == ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                                  "CONSUMER-ID", "HOST", "CLIENT-ID"]
        got = [line.split()[:8] for line in lines if line.startswith("orders ")]
        assert got == [["orders", "0", "10", "15", "5", member, *host.split()],
                       ["orders", "1", "10", "12", "2", member, *host.split()],
                       ["orders", "2", "10", "10", "0", member, *host.split()]]
        assert lines[-1] == "Total lag: 7"

        r = ok(broker, "groups", "describe", "billing", "--members")
        assert [line.split() for line in r.stdout.splitlines()][2][-2:] == ["#PARTITIONS", "ASSIGNMENT"]
        (row,) = rows(r.stdout, member)
        assert row[:4] == [member, "-", *host.split()] and row[-2:] == ["3", "orders(0,1,2)"]

        r = ok(broker, "status")
        assert ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"] in [line.split() for line in
                                                                            r.stdout.splitlines()]
        assert rows(r.stdout, "billing") == [["billing", "orders", "0", "10", "15", "5"],
                                             ["billing", "orders", "1", "10", "12", "2"],
                                             ["billing", "orders", "2", "10", "10", "0"]]
        assert "total lag by group: billing 7" in r.stdout

        with Admin(broker.socket_path) as admin:   # the same, through the Admin API
            d = admin.describe_group("billing")
            assert (d.state, d.protocol_type, d.protocol) == ("Stable", "consumer", "range")
            (m,) = d.members
            assert (m.member_id, m.pid, m.uid, m.assignment) == (
                member, os.getpid(), os.getuid(), (("orders", 0), ("orders", 1), ("orders", 2)))
            assert admin.list_group_offsets("billing") == {("orders", p): (10, "") for p in range(3)}
            with pytest.raises(NonEmptyGroup, match="stop its consumers first"):
                admin.alter_group_offsets("billing", {("orders", 0): 0})

        # refused while the member lives: resets (dry runs too, as Kafka) and delete
        for mode in ("--dry-run", "--execute"):
            assert fails(broker, "groups", "reset-offsets", "--group", "billing", "--all-topics", "--to-earliest",
                         mode).startswith("odradek: error: group billing has 1 live member (state Stable); "
                                          "stop them first")
        assert "only an empty group can be deleted; stop its consumers first" in fails(
            broker, "groups", "delete", "billing")
        assert committed(broker, "billing") == {("orders", p): 10 for p in range(3)}
    finally:
        c.close()

    wait_until(lambda: group_state(broker, "billing") == "Empty", what="the group to empty")
    r = ok(broker, "groups", "describe", "billing")
    assert "Consumer group 'billing' has no active members." in r.stdout
    assert [line.split() for line in r.stdout.splitlines() if line.startswith("orders ")] == [
        ["orders", "0", "10", "15", "5", "-", "-", "-"], ["orders", "1", "10", "12", "2", "-", "-", "-"],
        ["orders", "2", "10", "10", "0", "-", "-", "-"]]
    r = ok(broker, "groups", "describe", "billing", "--members")
    assert "TOPIC" not in r.stdout and "CONSUMER-ID" not in r.stdout and "no active members" in r.stdout
    # now the reset goes through
    r = ok(broker, "groups", "reset-offsets", "--group", "billing", "--all-topics", "--to-latest", "--execute")
    assert table(r.stdout) == {("orders", 0): 15, ("orders", 1): 12, ("orders", 2): 10}
    assert ok(broker, "groups", "describe", "billing").stdout.splitlines()[-1] == "Total lag: 0"


def test_a_partition_owned_but_never_committed_shows_no_offset_and_no_lag(broker, orders):
    c = live_consumer(broker, "fresh", orders, 30, commit=False)
    try:
        r = ok(broker, "groups", "describe", "fresh")
        member = c.memberid()
        assert [line.split()[:6] for line in r.stdout.splitlines() if line.startswith("orders ")] == [
            ["orders", str(p), "-", "10", "-", member] for p in range(3)]
        assert r.stdout.splitlines()[-1] == "Total lag: 0 (3 partitions without a committed offset)"
        assert "GROUP" not in ok(broker, "status").stdout    # no committed offsets, no lag section
    finally:
        c.close()


@pytest.fixture
def timed(broker):
    """Topic 'timed' (2 partitions, 10 records each, record i stamped now - (10 - i) h) and
    group 'g' with no members and committed offsets 5 (partition 0) and 3 (partition 1)."""
    now = time.time_ns() // 1_000_000
    stamps = [now - (10 - i) * HOUR_MS for i in range(10)]
    with Admin(broker.socket_path) as admin:
        admin.create_topic("timed", num_partitions=2)
        produce(broker, "timed", 10, [0, 1], timestamps=stamps)
        admin.alter_group_offsets("g", {("timed", 0): 5, ("timed", 1): (3, "by hand")})
        assert admin.list_group_offsets("g") == {("timed", 0): (5, ""), ("timed", 1): (3, "by hand")}
        assert admin.list_groups() == [("g", "Empty", "")]
    return stamps


def _iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


RESETS = [   # (options, new offsets of partitions 0 and 1 from committed 5 and 3, a note on clamping)
    (["--to-earliest"], (0, 0), False),
    (["--to-latest"], (10, 10), False),
    (["--to-offset", 4], (4, 4), False),
    (["--to-offset", 99], (10, 10), True),                # clamped to the log end
    (["--shift-by", -2], (3, 1), False),
    (["--shift-by", -4], (1, 0), True),                   # partition 1 clamped to the log start
    (["--shift-by", 6], (10, 9), True),                   # partition 0 clamped to the log end
    (["--to-current"], (5, 3), False),
    (["--to-datetime", "STAMP3-30MIN"], (3, 3), False),   # first record at or after the time
    (["--to-datetime", "STAMP7"], (7, 7), False),         # a record exactly at the time
    (["--to-datetime", "FUTURE"], (10, 10), False),       # no record at or after: the log end
    (["--by-duration", "PT5H30M"], (5, 5), False),        # now - 5.5 h: record 5 is at now - 5 h
    (["--by-duration", "P1D"], (0, 0), False),
    (["--by-duration", "PT0.5S"], (10, 10), False),
]


def test_every_reset_option_dry_run_then_execute(broker, timed):
    values = {"STAMP3-30MIN": _iso(timed[3] - HOUR_MS // 2), "STAMP7": _iso(timed[7]),
              "FUTURE": _iso(timed[9] + HOUR_MS * 2)}
    before = {("timed", 0): 5, ("timed", 1): 3}
    for option, (p0, p1), clamped in RESETS:
        option = [values.get(o, o) for o in option]
        expected = {("timed", 0): p0, ("timed", 1): p1}
        with Admin(broker.socket_path) as admin:
            admin.alter_group_offsets("g", before)
        for spec in (["--all-topics"], ["--topic", "timed"], ["--topic", "timed:0,1"]):
            r = ok(broker, "groups", "reset-offsets", "--group", "g", *spec, *option)     # dry run: the default
            assert table(r.stdout) == expected, option
            assert "dry run: nothing committed" in r.stderr
            r = ok(broker, "groups", "reset-offsets", "--group", "g", *spec, *option, "--dry-run")
            assert table(r.stdout) == expected, option
            assert committed(broker, "g") == before, option
        r = ok(broker, "groups", "reset-offsets", "--group", "g", "--all-topics", *option, "--execute")
        assert table(r.stdout) == expected, option
        assert "committed the new offsets of 2 partitions for group g" in r.stderr
        assert ("odradek: note:" in r.stderr) == clamped, (option, r.stderr)
        assert committed(broker, "g") == expected, option


def test_reset_chooses_partitions_by_topic_spec_and_all_topics_means_the_committed_ones(broker, timed):
    with Admin(broker.socket_path) as admin:
        admin.create_topic("other", num_partitions=3)
    produce(broker, "other", 4, range(3))
    r = ok(broker, "groups", "reset-offsets", "--group", "g", "--topic", "timed:1", "--topic", "other:2,0",
           "--to-latest", "--execute")
    assert table(r.stdout) == {("timed", 1): 10, ("other", 0): 4, ("other", 2): 4}
    assert committed(broker, "g") == {("timed", 0): 5, ("timed", 1): 10, ("other", 0): 4, ("other", 2): 4}
    # --all-topics: exactly the partitions with a committed offset (other-1 has none)
    r = ok(broker, "groups", "reset-offsets", "--group", "g", "--all-topics", "--to-earliest")
    assert set(table(r.stdout)) == {("timed", 0), ("timed", 1), ("other", 0), ("other", 2)}
    # --to-current: a partition without a committed offset goes to the log end, as in Kafka
    r = ok(broker, "groups", "reset-offsets", "--group", "g", "--topic", "other", "--to-current")
    assert table(r.stdout) == {("other", 0): 4, ("other", 1): 4, ("other", 2): 4}
    # a group that does not exist yet: a reset creates it, as in Kafka
    r = ok(broker, "groups", "reset-offsets", "--group", "new", "--topic", "timed:0", "--to-offset", 2, "--execute")
    assert committed(broker, "new") == {("timed", 0): 2}
    assert rows(ok(broker, "groups", "list").stdout, "new") == [["new", "Empty", "-", "0"]]


def test_delete_an_empty_group_and_its_offsets(broker, timed):
    r = ok(broker, "groups", "delete", "g")
    assert r.stdout.strip() == "deleted group g"
    assert ok(broker, "groups", "list").stdout.strip() == "GROUP  STATE  PROTOCOL-TYPE  MEMBERS"
    assert committed(broker, "g") == {}
    with Admin(broker.socket_path) as admin, pytest.raises(GroupIdNotFound):
        admin.delete_group("g")


def test_user_mistakes_are_one_line_on_stderr_with_a_non_zero_exit(broker, timed):
    reset = ("groups", "reset-offsets", "--group", "g")
    cases = [
        (("groups", "describe", "nope"), 1, "group nope does not exist; 'odradek groups list' shows the groups"),
        (("groups", "describe", "nope", "--members"), 1, "group nope does not exist"),
        (("groups", "delete", "nope"), 1, "group nope does not exist"),
        (("groups", "reset-offsets", "--group", "nope", "--all-topics", "--to-earliest"), 1,
         "group nope has no committed offsets, so --all-topics means nothing; name the topics with --topic"),
        (reset + ("--topic", "timed:7", "--to-earliest"), 1, "topic timed has partitions 0-1; there is no partition 7"),
        (reset + ("--topic", "missing", "--to-earliest"), 1, "does not exist"),
        (("groups", "reset-offsets", "--group", "h", "--topic", "timed", "--shift-by", 1), 1,
         "cannot shift timed-0: group h has no committed offset for it"),
        (reset + ("--all-topics", "--to-datetime", "yesterday"), 2, "'yesterday' is not an ISO-8601 date-time"),
        (reset + ("--all-topics", "--to-datetime", "2024-13-01T00:00:00"), 2, "is not an ISO-8601 date-time"),
        (reset + ("--all-topics", "--by-duration", "1h"), 2, "'1h' is not a duration PnDTnHnMnS"),
        (reset + ("--all-topics", "--by-duration", "PT"), 2, "is not a duration"),
        (reset + ("--all-topics",), 2, "give exactly one of --to-earliest, --to-latest"),
        (reset + ("--all-topics", "--to-earliest", "--to-latest"), 2, "(got --to-earliest, --to-latest)"),
        (reset + ("--to-earliest",), 2, "give --topic TOPIC[:P,P...] or --all-topics"),
        (reset + ("--all-topics", "--topic", "timed", "--to-earliest"), 2, "not both"),
        (reset + ("--all-topics", "--to-earliest", "--dry-run", "--execute"), 2, "give --dry-run or --execute"),
        (reset + ("--topic", "timed:x", "--to-earliest"), 2, "partitions must be numbers, as in timed:0,1,2"),
        (reset + ("--all-topics", "--to-offset", -1), 2, "--to-offset"),
        (("groups", "reset-offsets", "--all-topics", "--to-earliest"), 2, "Missing option '--group'"),
    ]
    for args, code, message in cases:
        line = fails(broker, *args, code=code)
        assert message in line, (args, line)
    assert committed(broker, "g") == {("timed", 0): 5, ("timed", 1): 3}
