"""The CLI's client commands against the real broker (CliRunner in this process, the
broker in a subprocess): what a person types and sees."""
from click.testing import CliRunner

from odradek.daemon.cli import cli
from support.broker import INTERNAL_PARTITIONS


def run(broker, *args):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["--socket", broker.socket_path])


def test_topics_create_list_describe_alter_delete_from_the_shell(broker):
    r = run(broker, "topics", "create", "orders", "--partitions", 3, "--config", "retention.ms=60000")
    assert r.exit_code == 0 and "created topic orders: 3 partitions" in r.stdout
    r = run(broker, "topics", "list")
    assert r.stdout.splitlines()[0].split() == ["TOPIC", "PARTITIONS", "REPLICATION"]
    assert r.stdout.splitlines()[1].split() == ["orders", "3", "1"]
    r = run(broker, "topics", "describe", "orders")
    assert "Configs: retention.ms=60000" in r.stdout and len(r.stdout.splitlines()) == 5
    r = run(broker, "topics", "alter", "orders", "--set", "retention.ms=120000", "--partitions", 4)
    assert r.exit_code == 0 and "keyed records now map to different partitions" in r.stdout
    r = run(broker, "status")
    assert r.exit_code == 0 and f"{4 + INTERNAL_PARTITIONS} partitions, 0 under-replicated" in r.stdout
    assert r.stdout.count("orders-") >= 8  # a worker row and a partition row each
    r = run(broker, "topics", "delete", "orders")
    assert r.exit_code == 0 and run(broker, "topics", "list").stdout.strip() == "TOPIC  PARTITIONS  REPLICATION"


def test_user_mistakes_are_one_line_on_stderr_with_a_non_zero_exit(broker, tmp_path):
    cases = [
        (("topics", "create", "bad name"), "characters other than"),
        (("topics", "create", "t", "--config", "retention.ms"), "is not KEY=VALUE"),
        (("topics", "create", "t", "--config", "retention.ms=soon"), "retention.ms='soon' is not valid"),
        (("topics", "describe", "missing"), "does not exist; create it with 'odradek topics create missing'"),
        (("topics", "alter", "missing"), "nothing to change"),
    ]
    for args, message in cases:
        r = run(broker, *args)
        assert r.exit_code != 0, args
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = CliRunner().invoke(cli, ["topics", "list", "--socket", str(tmp_path / "nobody.sock")])
    assert r.exit_code == 1 and "is 'odradek serve' running?" in r.stderr
