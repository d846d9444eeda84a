"""Deleting some of a group's committed offsets (Kafka's OffsetDelete, key 47) from
outside the group: Admin.delete_group_offsets and `odradek groups delete-offsets`,
against the real broker (offsets committed with Admin.alter_group_offsets: the group is
Empty)."""
import pytest
from click.testing import CliRunner

from odradek.client import Admin, TopicPartition
from odradek.client.errors import GroupIdNotFound
from odradek.daemon.cli import cli


@pytest.fixture
def committed(broker):
    """Group "billing" with offsets of orders-0..2 and refunds-0; a function that reads
    them back."""
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", 3)
        admin.create_topic("refunds", 1)
        admin.alter_group_offsets("billing", {("orders", 0): 5, ("orders", 1): 6, ("orders", 2): 7,
                                              ("refunds", 0): 1})

    def offsets():
        with Admin(broker.socket_path) as admin:
            return sorted(admin.list_group_offsets("billing"))
    return offsets


def run(broker, *args):
    return CliRunner().invoke(cli, ["groups", "delete-offsets", *args, "--socket", broker.socket_path])


def test_admin_deletes_the_partitions_named(broker, committed):
    with Admin(broker.socket_path) as admin:
        admin.delete_group_offsets("billing", [TopicPartition("orders", 1), ("refunds", 0)])
        assert committed() == [("orders", 0), ("orders", 2)]
        admin.delete_group_offsets("billing", [("orders", 1)])      # none committed: nothing to do
        with pytest.raises(GroupIdNotFound):
            admin.delete_group_offsets("nobody", [("orders", 0)])


def test_the_command_takes_partitions_or_whole_topics(broker, committed):
    r = run(broker, "billing", "orders:0,2")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "deleted the committed offsets of 2 partitions for group billing\n"
    assert committed() == [("orders", 1), ("refunds", 0)]
    r = run(broker, "billing", "orders", "refunds")
    assert r.exit_code == 0 and "of 4 partitions" in r.stdout, r.stderr
    assert committed() == []


@pytest.mark.parametrize("args, code, says", [
    (("nobody", "orders:0"), 1, "nobody"),
    (("billing", "nope"), 1, "nope"),
    (("billing", "orders:x"), 2, "orders:x"),
    (("billing",), 2, "TOPIC"),
])
def test_a_mistake_is_one_line_on_stderr(broker, committed, args, code, says):
    r = run(broker, *args)
    assert r.exit_code == code and r.stdout == "", (r.stdout, r.stderr)
    (line,) = r.stderr.splitlines()
    assert line.startswith("odradek: error: ") and says in line, line
    assert len(committed()) == 4
