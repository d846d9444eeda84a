"""`odradek transactions`: list and describe transactional ids, as kafka-transactions.sh
does (daemon/tools/transactions.py)."""
import click

from odradek.daemon.cli.root import cli, connect, socket_option


@cli.group()
def transactions():
    """List and describe transactions (KIP-98): state, producer id and epoch, partitions,
    age; hanging ones (open longer than their timeout) are flagged.

    \b
    Examples:
      odradek transactions list
      odradek transactions list --state Ongoing --min-age PT1M
      odradek transactions describe payments-processor-1
    """


def _duration_ms(_ctx, param, value):
    if value is None:
        return None
    from odradek.daemon.tools.groups import parse_duration
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param=param) from None


@transactions.command("list")
@click.option("--state", "states", multiple=True, metavar="STATE",
              help="Only this state (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, "
                   "CompleteAbort); repeatable.")
@click.option("--producer-id", "producer_ids", multiple=True, type=int, metavar="ID",
              help="Only this producer id; repeatable.")
@click.option("--min-age", callback=_duration_ms, metavar="DURATION",
              help="Only transactions open at least this long (ISO-8601: PT30S, PT5M, PT2H).")
@socket_option
def transactions_list(states, producer_ids, min_age, socket_path):
    """List transactional ids: TRANSACTIONAL-ID STATE PRODUCER-ID EPOCH TIMEOUT-MS AGE
    PARTITIONS, one row each; AGE is how long the open transaction has been open ("-":
    none open). A transaction open longer than its timeout shows "(HANGING)".

    \b
    Examples:
      odradek transactions list
      odradek transactions list --state Ongoing
      odradek transactions list --min-age PT5M        open for 5 minutes or more
    """
    from odradek.daemon.tools import transactions as tool
    with connect(socket_path) as admin:
        try:
            lines = tool.list_lines(admin, states, producer_ids, min_age)
        except ValueError as e:      # an unknown state name
            raise click.BadParameter(str(e), param_hint="--state") from None
    for line in lines:
        click.echo(line)


@transactions.command("describe")
@click.argument("transactional_ids", nargs=-1, required=True, metavar="ID...")
@socket_option
def transactions_describe(transactional_ids, socket_path):
    """Show each transactional ID: state, producer id and epoch, timeout, age of its open
    transaction and its partitions (while PrepareCommit/PrepareAbort: those still
    waiting for their marker).

    \b
    Examples:
      odradek transactions describe payments-processor-1
      odradek transactions describe app-1 app-2
    """
    from odradek.daemon.tools import transactions as tool
    with connect(socket_path) as admin:
        lines = tool.describe_lines(admin, list(transactional_ids))
    for line in lines:
        click.echo(line)
