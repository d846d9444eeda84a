"""The root of the `odradek` command (click): the `cli` group, the CLI's one error
boundary, and what the command groups share (socket_option, connect, key_values).

Errors are converted at one boundary, OdradekGroup.main: an OdradekError, a usage
mistake (click), or a file that cannot be found or read becomes exactly one line on
stderr, "odradek: error: ... (what to do next)", and a non-zero exit; never a
traceback. Anything else is a bug in odradek and keeps its traceback.

Exit status: 0 success; 1 an error, or a check that failed (dump-log --verify);
2 a usage mistake (click's convention); 130 interrupted.
"""
import importlib.metadata
import os
import sys

import click

from odradek.client.admin import DEFAULT_SOCKET
from odradek.client.errors import OdradekError

__all__ = ["cli", "main", "PROG", "socket_option", "connect", "key_values"]

PROG = "odradek"


def _error_line(message):
    """The one line every failure prints."""
    return f"{PROG}: error: {' '.join(str(message).split())}"


class OdradekGroup(click.Group):
    """click.Group whose main() is the CLI's one error boundary (see the module doc).
    CliRunner calls main() too, so tests see exactly what users see."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or PROG, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.ClickException as e:   # usage mistakes, bad option values, missing paths
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(_error_line(e.format_message() + hint), err=True)
            code = e.exit_code
        except OdradekError as e:
            click.echo(_error_line(e.message), err=True)
            code = 1
        except BrokenPipeError:
            # the reader went away (`odradek dump-log ... | head`): stop quietly, as cat
            # does; point stdout at /dev/null so the interpreter's final flush is silent
            _silence_stdout()
            code = 1
        except OSError as e:
            click.echo(_error_line(_os_error_message(e)), err=True)
            code = 1
        except (click.Abort, KeyboardInterrupt):
            click.echo(_error_line("interrupted"), err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)


def _os_error_message(e):
    what = f"{e.filename}: {e.strerror}" if e.filename else (e.strerror or str(e))
    if isinstance(e, PermissionError):
        return (f"{what}; run as a user who may read it (the data dir belongs to the user "
                f"the broker runs as), or use sudo")
    if isinstance(e, FileNotFoundError):
        return f"{what}; check the path"
    return what


def _silence_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (a test runner): nothing will flush to a pipe


def _version():
    try:
        return importlib.metadata.version("odradek")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (running from a source tree that is not installed)"


def _show_version(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG} {_version()}")
        ctx.exit()


@click.group(cls=OdradekGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Print the version and exit.")
def cli():
    """odradek: Apache Kafka's commit log for one Linux host.

    Topics, partitions, keyed ordering, offsets, retention, in Kafka's on-disk format.

    \b
    Examples:
      odradek demo --data-dir ./data            write a small partition log, read it back
      odradek dump-log ./data/demo-0            print its batches, as kafka-dump-log.sh does
      odradek dump-log --verify ./data/demo-0   check CRCs, framing and indexes
      odradek serve --data-dir ./data           run the broker (then: export ODRADEK_SOCKET=...)
      odradek topics create orders --partitions 6
      echo hello | odradek produce orders       send a record
      odradek consume orders --from-beginning   print the records
      odradek groups describe billing           a consumer group: members, offsets, lag
      odradek transactions list                 transactional ids: state, partitions, age
      odradek status
    """


def socket_option(f):
    return click.option("--socket", "socket_path", metavar="PATH", envvar="ODRADEK_SOCKET",
                        help=f"The broker's control socket (default: $ODRADEK_SOCKET, else "
                             f"{DEFAULT_SOCKET}).")(f)


def connect(socket_path):
    from odradek.client.admin import Admin
    return Admin(socket_path)


def key_values(pairs, what):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def main(argv=None):
    """The console script (setup.py: odradek = odradek.daemon.cli:main)."""
    cli.main(args=argv, prog_name=PROG)
