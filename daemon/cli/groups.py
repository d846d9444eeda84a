"""`odradek groups`: list, describe, reset-offsets, delete-offsets and delete consumer
groups, as kafka-consumer-groups.sh does (daemon/tools/groups.py)."""
import click

from odradek.daemon.cli.root import PROG, cli, connect, socket_option


@cli.group()
def groups():
    """List and describe consumer groups (members, committed offsets, lag), reset or
    delete their offsets, delete them: what kafka-consumer-groups.sh does.

    \b
    Examples:
      odradek groups list
      odradek groups describe billing
      odradek groups reset-offsets --group billing --topic orders --to-earliest --execute
      odradek groups delete-offsets billing orders:0
      odradek groups delete billing
    """


@groups.command("list")
@socket_option
def groups_list(socket_path):
    """List consumer groups: state, protocol type and member count.

    \b
    Examples:
      odradek groups list
      odradek groups list --socket ./data/odradek.sock
    """
    from odradek.daemon.tools import groups as tool
    with connect(socket_path) as admin:
        lines = tool.list_lines(admin)
    for line in lines:
        click.echo(line)


@groups.command("describe")
@click.argument("group")
@click.option("--members", is_flag=True,
              help="Show the members instead (id, instance id, pid and uid, client id, assignment).")
@click.option("--isolation-level", type=click.Choice(["read_uncommitted", "read_committed"]),
              default="read_uncommitted", show_default=True,
              help="The consumers' isolation.level: read_committed measures lag to the last stable offset.")
@socket_option
def groups_describe(group, members, isolation_level, socket_path):
    """Show GROUP as kafka-consumer-groups --describe does: its state, protocol type and
    assignor, then per partition the committed offset (CURRENT-OFFSET), the log end, the
    LAG between them and the member that owns it (CONSUMER-ID, HOST as pid:<pid>
    uid:<uid>, CLIENT-ID), and the total lag.

    A partition with a committed offset and no owner shows "-" as its consumer; one
    owned but never committed shows "-" as its offset and lag. Assignments are known
    only while the group is Stable.

    \b
    Examples:
      odradek groups describe billing
      odradek groups describe billing --members
      odradek groups describe billing --isolation-level read_committed
    """
    from odradek.daemon.tools import groups as tool
    with connect(socket_path) as admin:
        lines = tool.members_lines(admin, group) if members else tool.describe_lines(admin, group, isolation_level)
    for line in lines:
        click.echo(line)


def _parsed(name):
    """A click callback running daemon/tools/groups.py's parser `name` on the value (on
    each value of a repeatable option); its ValueError is a usage error (exit 2)."""
    def callback(_ctx, param, value):
        if value is None:
            return None
        from odradek.daemon.tools import groups as tool
        parse = getattr(tool, name)
        try:
            return [parse(v) for v in value] if isinstance(value, tuple) else parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param=param) from None
    return callback


@groups.command("reset-offsets")
@click.option("--group", "group", required=True, help="The consumer group.")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC[:P,P...]",
              callback=_parsed("parse_topic"),
              help="A topic (every partition) or some of its partitions; repeatable.")
@click.option("--all-topics", is_flag=True, help="Every partition the group has a committed offset for.")
@click.option("--to-earliest", is_flag=True, help="Reset to the log start offset.")
@click.option("--to-latest", is_flag=True, help="Reset to the log end offset (skip everything there now).")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N",
              help="Reset to offset N (clamped to the log start and end).")
@click.option("--to-datetime", metavar="ISO-8601",
              callback=_parsed("parse_datetime"),
              help="Reset to the first record at or after this time (2024-05-01T12:00:00.000, local "
                   "time unless it ends in Z or +hh:mm); the log end if there is none.")
@click.option("--by-duration", metavar="PnDTnHnMnS",
              callback=_parsed("parse_duration"),
              help="Reset to the first record at or after now minus this duration (PT30M, P1DT12H).")
@click.option("--shift-by", type=int, metavar="N",
              help="Move the committed offset by N (negative: back), clamped to the log start and end.")
@click.option("--to-current", is_flag=True,
              help="Keep the committed offset (the log end for a partition with none).")
@click.option("--dry-run", is_flag=True, help="Only print the new offsets (the default).")
@click.option("--execute", is_flag=True, help="Commit the new offsets.")
@socket_option
def groups_reset_offsets(group, topics, all_topics, to_earliest, to_latest, to_offset, to_datetime,
                         by_duration, shift_by, to_current, dry_run, execute, socket_path):
    """Reset the committed offsets of a consumer group, as kafka-consumer-groups
    --reset-offsets does.

    Give the partitions (--topic, repeatable, or --all-topics) and one way to reset.
    Without --execute it is a dry run: it prints the plan (TOPIC PARTITION NEW-OFFSET)
    and commits nothing. Refused while the group has live members: stop its consumers
    first; they resume from the new offsets.

    \b
    Examples:
      odradek groups reset-offsets --group billing --topic orders --to-earliest
      odradek groups reset-offsets --group billing --topic orders:0,1 --shift-by -100 --execute
      odradek groups reset-offsets --group billing --all-topics --to-datetime 2024-05-01T12:00:00Z --execute
      odradek groups reset-offsets --group billing --topic orders --by-duration PT30M --execute
    """
    from odradek.daemon.tools import groups as tool
    chosen = {"to-earliest": True if to_earliest else None, "to-latest": True if to_latest else None,
              "to-offset": to_offset, "to-datetime": to_datetime, "by-duration": by_duration,
              "shift-by": shift_by, "to-current": True if to_current else None}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of " + ", ".join(f"--{s}" for s in tool.SCENARIOS)
                               + (f" (got {', '.join('--' + k for k in chosen)})" if chosen else ""))
    if bool(topics) == all_topics:
        raise click.UsageError("give --topic (repeatable) or --all-topics, not both"
                               if all_topics else "give --topic TOPIC[:P,P...] or --all-topics")
    if dry_run and execute:
        raise click.UsageError("give --dry-run or --execute, not both")
    (scenario, value), = chosen.items()
    with connect(socket_path) as admin:
        plan = tool.plan_reset(admin, group, scenario, None if value is True else value, topics=topics,
                               all_topics=all_topics)
        if execute:
            tool.execute_reset(admin, plan)
    for note in plan.notes:
        click.echo(f"{PROG}: note: {note}", err=True)
    for line in tool.plan_lines(plan):
        click.echo(line)
    n = len(plan.offsets)
    if execute:
        click.echo(f"committed the new offsets of {n} partition{'' if n == 1 else 's'} for group {group}", err=True)
    else:
        click.echo("dry run: nothing committed; add --execute to commit these offsets", err=True)


@groups.command("delete")
@click.argument("group")
@socket_option
def groups_delete(group, socket_path):
    """Delete consumer group GROUP and its committed offsets. Only an empty group (no
    live members) can be deleted.

    \b
    Example:
      odradek groups delete billing
    """
    from odradek.daemon.tools import groups as tool
    with connect(socket_path) as admin:
        tool.delete(admin, group)
    click.echo(f"deleted group {group}")


@groups.command("delete-offsets")
@click.argument("group")
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC[:P,P...]...",
                callback=_parsed("parse_topic"))
@socket_option
def groups_delete_offsets(group, topics, socket_path):
    """Delete GROUP's committed offsets of some partitions, as kafka-consumer-groups
    --delete-offsets does: a TOPIC alone is every partition of it. While the group has
    members, only the offsets of topics none of them subscribes to can be deleted.

    \b
    Examples:
      odradek groups delete-offsets billing orders
      odradek groups delete-offsets billing orders:0,1 payments:3
    """
    with connect(socket_path) as admin:
        names = sorted({t for t, ps in topics if ps is None})
        whole = admin.list_topics(names) if names else {}
        chosen = sorted({(t, p) for t, ps in topics
                         for p in (ps if ps is not None else [d.partition for d in whole[t].partitions])})
        admin.delete_group_offsets(group, chosen)
    n = len(chosen)
    click.echo(f"deleted the committed offsets of {n} partition{'' if n == 1 else 's'} for group {group}")
