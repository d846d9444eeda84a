"""The `odradek` command: help with examples everywhere, one-line errors, the demo."""
import click
import pytest
from click.testing import CliRunner

from odradek.client.errors import UnknownTopicOrPartition
from odradek.daemon import cli as cli_module
from odradek.daemon.cli import cli
from odradek.daemon.tools import dump_log


def all_commands(group, path=()):
    """The path of every command under `group` (itself included), subgroups too."""
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from all_commands(command, path + (name,))
        else:
            yield path + (name,)


COMMANDS = list(all_commands(cli))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(("odradek",) + p))
def test_every_command_has_help_with_an_example(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    # an example line runs the command itself
    assert " ".join(("odradek",) + path) + " " in result.stdout


def test_version_prints_the_program_name_and_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("odradek ")


def _empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["dump-log", tmp_path / "empty"]


def _not_a_segment(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    return ["dump-log", tmp_path / "notes.txt"]


def _index_without_base_offset(tmp_path):
    (tmp_path / "orders.index").write_bytes(bytes(8))
    return ["dump-log", tmp_path / "orders.index"]


MISTAKES = {
    "a missing path": lambda tmp_path: ["dump-log", tmp_path / "nope.log"],
    "a directory with no segments": _empty_dir,
    "a file that is not a segment": _not_a_segment,
    "an index not named by its base offset": _index_without_base_offset,
    "no path at all": lambda tmp_path: ["dump-log"],
    "an unknown option": lambda tmp_path: ["dump-log", "--no-such-option", tmp_path],
    "an unknown command": lambda tmp_path: ["no-such-command"],
    "a missing required option": lambda tmp_path: ["demo"],
    "delete-records without --before": lambda tmp_path: ["topics", "delete-records", "orders", "--partition", "0"],
    "delete-records below offset -1": lambda tmp_path: ["topics", "delete-records", "orders", "--partition", "0",
                                                        "--before", "-2"],
    "delete-offsets without a topic": lambda tmp_path: ["groups", "delete-offsets", "billing"],
    "delete-offsets with a bad partition": lambda tmp_path: ["groups", "delete-offsets", "billing", "orders:x"],
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_user_mistake_gives_one_error_line_and_no_traceback(mistake, tmp_path):
    result = invoke(*MISTAKES[mistake](tmp_path))
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("odradek: error: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("error", [
    PermissionError(13, "Permission denied", "/var/lib/odradek/orders-0"),
    FileNotFoundError(2, "No such file or directory", "/var/lib/odradek/orders-0/x.log"),
    UnknownTopicOrPartition("topic 'orders' does not exist; create it first"),
], ids=type)
def test_errors_raised_below_the_cli_become_one_line_naming_what_to_do(error, monkeypatch,
                                                                      tmp_path):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(dump_log, "dump", fail)
    (tmp_path / "00000000000000000000.log").write_bytes(b"")
    result = invoke("dump-log", tmp_path / "00000000000000000000.log")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("odradek: error: ")
    if isinstance(error, OSError):
        assert error.filename in lines[0]
    else:
        assert "create it first" in lines[0]


def test_a_closed_pipe_stops_the_output_quietly(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(dump_log, "dump", fail)
    (tmp_path / "00000000000000000000.log").write_bytes(b"")
    result = invoke("dump-log", tmp_path / "00000000000000000000.log")
    assert result.exit_code != 0 and result.stderr == ""


def test_main_returns_the_exit_status_through_system_exit(tmp_path):
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["dump-log", str(tmp_path / "missing.log")])
    assert exited.value.code == 2


def test_demo_writes_a_log_that_dump_log_verifies_and_appends_more_on_each_run(tmp_path):
    first = invoke("demo", "--data-dir", tmp_path)
    assert first.exit_code == 0, first.output
    assert "appended a batch" in first.stdout and "retention" in first.stdout
    assert f"odradek dump-log {tmp_path / 'demo-0'}" in first.stdout
    again = invoke("demo", "--data-dir", tmp_path)
    assert again.exit_code == 0, again.output
    assert "offsets 9.." in again.stdout   # the second run starts where the first ended
    checked = invoke("dump-log", "--verify", tmp_path / "demo-0")
    assert checked.exit_code == 0, checked.output
    assert "offsets 9..17" in checked.stdout
