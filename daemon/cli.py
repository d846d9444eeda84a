"""The `odradek` command (click). Kept thin: each command parses its arguments and calls
one module (daemon/tools/...); each docstring is the command's help, with an example.

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
from odradek.client.errors import InvalidSegment, OdradekError

__all__ = ["cli", "main"]

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


def _writer():
    """A line writer for long outputs: straight to stdout (click.echo costs more per
    line, which shows on a dump of a million batches)."""
    stream = sys.stdout

    def out(line):
        stream.write(line)
        stream.write("\n")
    return out


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
      odradek status
    """


@cli.command("dump-log")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option("--print-records", "--print-data-log", "print_records", is_flag=True,
              help="Also print every record: offset, timestamp, key, value, headers "
                   "(--print-data-log is Kafka's name for it).")
@click.option("--verify", is_flag=True,
              help="Exit with status 1 if any problem is found (they are printed either way).")
@click.option("-q", "--quiet", is_flag=True,
              help="Print only problems and a summary per file, not each batch or entry.")
def dump_log(paths, print_records, verify, quiet):
    """Print and check segment files, as kafka-dump-log.sh does.

    PATH is a .log segment (one line per batch: offsets, count, position, size, crc
    and whether it is valid, magic, codec, timestamps, producer fields, leader epoch),
    a .index or .timeindex file (one line per entry, each checked against the .log
    beside it), or a partition directory (every segment in offset order, its indexes
    checked). Any v2 segment reads, Apache Kafka's included.

    Problems are printed as WARNING lines naming the file, the byte position, and what
    was expected and found: a bad CRC or magic, an impossible length, a torn tail,
    offsets going backwards, an index entry that disagrees with the log. Without
    --verify the command still exits 0, as Kafka's does; with it, 1. Zeros after the
    last batch (a preallocated segment left by a crash) are reported as zero padding,
    not as a problem.

    With --print-records a key, value or header value is printed as text when it is
    UTF-8 made of printable characters (tab, CR and newline shown as \\t \\r \\n, a
    backslash as \\\\), as 0x and its hex digits otherwise, "" when empty, and null when
    absent.

    \b
    Examples:
      odradek dump-log data/orders-0
      odradek dump-log --print-records data/orders-0/00000000000000000000.log
      odradek dump-log --verify -q data/orders-0 data/orders-1
    """
    from odradek.daemon.tools import dump_log as tool
    out = _writer()
    report = tool.dump(paths, out, print_records=print_records, quiet=quiet)
    if verify:
        if report.problems:
            sys.stdout.flush()
            more = f" (and {report.problems - 1} more, printed above)" \
                if report.problems > 1 else ""
            raise InvalidSegment(f"verification failed: {report.first_problem}{more}; with the "
                                 f"broker stopped, delete a bad .index or .timeindex to have it "
                                 f"rebuilt; damaged batches need the partition restored from a "
                                 f"replica")
        out(f"verified: no problems in {report.files} files")


@cli.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, writable=True),
              help="Log dir to write the demo partition into (created if missing).")
def demo(data_dir):
    """Write a demo partition log and show what happened.

    Uses odradek's storage engine, no broker. Creates (or reopens) DATA_DIR/demo-0,
    appends a few keyed batches, reads them back, looks an offset up by timestamp,
    runs retention once, and prints the dump-log command that shows the files. Run it
    again to append more.

    \b
    Example:
      odradek demo --data-dir ./data
    """
    from odradek.daemon.tools import demo as tool
    tool.run(data_dir, click.echo)


# == the broker ==========================================================================

@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML config file (systemd: /etc/odradek/odradek.toml).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dev mode: one log dir here, the socket at DATA_DIR/odradek.sock, defaults otherwise.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="What the broker logs to stderr.")
@click.option("--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="A broker config key over the file or the defaults; repeatable (as Kafka's --override).")
def serve(config_path, data_dir, log_level, overrides):
    """Run the broker in the foreground until SIGTERM or Ctrl-C.

    It locks its log dirs, recovers every partition (one worker process per partition
    leader), then serves the control socket. Under systemd it reports READY, STATUS and
    watchdog pings itself (Type=notify). Logs go to stderr.

    \b
    Examples:
      odradek serve --data-dir ./data
      odradek serve --config /etc/odradek/odradek.toml
      odradek serve --data-dir ./data --override group.initial.rebalance.delay.ms=0
    """
    import logging
    from odradek.daemon.broker import config as broker_config
    from odradek.daemon.broker.server import Broker
    if bool(config_path) == bool(data_dir):
        raise click.UsageError("give exactly one of --config PATH or --data-dir DIR")
    values = _key_values(overrides, "--override")
    config = (broker_config.load(config_path, values) if config_path
              else broker_config.BrokerConfig.for_data_dir(data_dir, values))
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    if data_dir:
        click.echo(f"export ODRADEK_SOCKET={config.socket_path}", err=True)
    return Broker(config, config_path=config_path).run()


def _socket_option(f):
    return click.option("--socket", "socket_path", metavar="PATH", envvar="ODRADEK_SOCKET",
                        help=f"The broker's control socket (default: $ODRADEK_SOCKET, else "
                             f"{DEFAULT_SOCKET}).")(f)


def _admin(socket_path):
    from odradek.client.admin import Admin
    return Admin(socket_path)


@cli.group("log-dirs")
def log_dirs_group():
    """Describe the broker's log dirs, move a replica to another one online, or give an
    offline one's data up (forget-data: run while the broker is stopped).

    \b
    Examples:
      odradek log-dirs describe --topic orders
      odradek log-dirs move orders 0 --from /srv/disk1/odradek --to /srv/disk3/odradek --wait
      odradek log-dirs forget-data /srv/disk2/odradek --config /etc/odradek/odradek.toml --accept-data-loss
    """


@log_dirs_group.command("describe")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC", help="Only these topics' replicas; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="kafka-log-dirs.sh --describe's JSON shape.")
@_socket_option
def log_dirs_describe(topics, as_json, socket_path):
    """Show each log dir (path, directory.id, online or the storage error, its
    filesystem's total and usable bytes) and every partition replica in it, leaders and
    followers, with its size (the log's data bytes; -1: its process did not answer),
    offset lag (the high watermark minus its log end; -1: not known) and whether it is a
    future replica (Kafka's DescribeLogDirs). Asks the running broker.

    \b
    Examples:
      odradek log-dirs describe
      odradek log-dirs describe --topic orders --json
    """
    import json
    from odradek.client.log_dirs import kafka_json
    from odradek.daemon.tools.table import format_table, human_bytes
    with _admin(socket_path) as admin:
        dirs = admin.describe_log_dirs(topics or None)
    if as_json:
        click.echo(json.dumps(kafka_json(0, dirs)))
        return
    size = lambda n: human_bytes(n) if n >= 0 else "-"   # noqa: E731
    rows = [(i, d.path, d.directory_id or "-", "online" if d.error is None else f"{d.error}: {d.error_message}",
             size(d.total_bytes), size(d.usable_bytes), len(d.replicas), size(sum(max(r.size, 0) for r in d.replicas)))
            for i, d in enumerate(dirs)]
    for line in format_table(["DIR", "PATH", "DIRECTORY-ID", "STATE", "TOTAL", "USABLE", "REPLICAS", "SIZE"], rows):
        click.echo(line)
    rows = [(i, f"{r.topic}-{r.partition}", r.size, r.offset_lag, str(r.is_future).lower(), r.role)
            for i, d in enumerate(dirs) for r in d.replicas]
    click.echo("")
    for line in format_table(["DIR", "PARTITION", "SIZE-BYTES", "OFFSET-LAG", "FUTURE", "ROLE"], rows):
        click.echo(line)


@log_dirs_group.command("move")
@click.argument("topic")
@click.argument("partition", type=click.IntRange(min=0))
@click.option("--from", "from_dir", required=True, metavar="DIR", help="The log dir holding the replica to move.")
@click.option("--to", "to_dir", required=True, metavar="DIR",
              help="An online log dir holding no replica of the partition.")
@click.option("--wait", is_flag=True, help="Show the new replica's progress until the move is done.")
@_socket_option
def log_dirs_move(topic, partition, from_dir, to_dir, wait, socket_path):
    """Move the replica of TOPIC's PARTITION in log dir --from to log dir --to, online
    (what kafka-reassign-partitions does with log dirs): a replica is added in --to and
    copies the log; once it is in sync (in the ISR) the one in --from is dropped and its
    files removed; if it led, leadership is handed over first. Producers and consumers
    carry on. `status` flags the partition 'moving' until it is done.

    \b
    Example:
      odradek log-dirs move orders 0 --from /srv/disk1/odradek --to /srv/disk3/odradek --wait
    """
    from odradek.daemon.tools.move import follow
    with _admin(socket_path) as admin:
        (error,) = admin.alter_replica_log_dirs([(topic, partition, os.path.abspath(from_dir),
                                                  os.path.abspath(to_dir))])
        if error is not None:
            raise error
        click.echo(f"moving {topic}-{partition} from {from_dir} to {to_dir}")
        if wait:
            for line in follow(admin, topic, partition):
                click.echo(line)


@log_dirs_group.command("forget-data")
@click.argument("log_dir", type=click.Path(file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The broker's TOML config file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dev mode: the broker's --data-dir.")
@click.option("--accept-data-loss", is_flag=True,
              help="Required: the partitions led from LOG_DIR lose their data and start empty.")
def log_dirs_forget_data(log_dir, config_path, data_dir, accept_data_loss):
    """Give up an offline log dir's data (a disk that is gone or was replaced) and
    format it anew, so the broker takes it online at its next start.

    The partitions led from LOG_DIR have no other copy yet: they start empty at offset
    0. LOG_DIR must be missing or empty; a dir still holding files may be the old disk:
    put it back and restart instead. The broker must be stopped.

    \b
    Example:
      systemctl stop odradek
      odradek log-dirs forget-data /srv/disk2/odradek --config /etc/odradek/odradek.toml --accept-data-loss
      systemctl start odradek
    """
    from odradek.daemon.broker import config as broker_config
    from odradek.daemon.tools.log_dirs import forget_data
    if bool(config_path) == bool(data_dir):
        raise click.UsageError("give exactly one of --config PATH or --data-dir DIR")
    config = (broker_config.load(config_path) if config_path else broker_config.BrokerConfig.for_data_dir(data_dir))
    for line in forget_data(config, log_dir, accept_data_loss):
        click.echo(line)


def _key_values(pairs, what):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


@cli.group()
def topics():
    """Create, list, describe, alter and delete topics.

    \b
    Examples:
      odradek topics create orders --partitions 6 --config retention.ms=3600000
      odradek topics list
      odradek topics describe orders
    """


@topics.command("create")
@click.argument("name")
@click.option("--partitions", type=int, default=-1, help="Partition count (default: num.partitions).")
@click.option("--replication-factor", type=int, default=-1,
              help="Replicas per partition (default: default.replication.factor).")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="A topic config; repeatable.")
@click.option("--if-not-exists", is_flag=True, help="Succeed quietly if the topic exists.")
@_socket_option
def topics_create(name, partitions, replication_factor, configs, if_not_exists, socket_path):
    """Create topic NAME.

    \b
    Example:
      odradek topics create orders --partitions 6 --config retention.ms=3600000
    """
    from odradek.client.errors import TopicAlreadyExists
    with _admin(socket_path) as admin:
        try:
            n, rf = admin.create_topic(name, partitions, replication_factor, _key_values(configs, "--config"))
        except TopicAlreadyExists:
            if not if_not_exists:
                raise
            click.echo(f"topic {name} already exists")
            return
    click.echo(f"created topic {name}: {n} partitions, replication factor {rf}")


@topics.command("list")
@_socket_option
def topics_list(socket_path):
    """List topics with their partition counts.

    \b
    Examples:
      odradek topics list
      odradek topics list --socket ./data/odradek.sock
    """
    from odradek.daemon.tools.table import format_table
    with _admin(socket_path) as admin:
        described = admin.list_topics()
    rows = [(t.name, len(t.partitions), len(t.partitions[0].replicas) if t.partitions else 0)
            for t in described.values()]
    for line in format_table(["TOPIC", "PARTITIONS", "REPLICATION"], rows):
        click.echo(line)


@topics.command("describe")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@_socket_option
def topics_describe(names, socket_path):
    """Show each partition (leader, replicas, in-sync replicas, offsets, high watermark,
    size, flags: under-replicated, under-min-ISR, offline, moving (a replica is being
    moved to another log dir: 'odradek log-dirs move'); each follower's lag in
    records as REPLICA:LAG, '-' when not known), the topic's min.insync.replicas (flagged
    when above a partition's ISR) and the configs set on the topic.

    \b
    Example:
      odradek topics describe orders
    """
    from odradek.client.partition_health import flags_by_partition
    from odradek.daemon.tools.table import format_table, human_bytes
    with _admin(socket_path) as admin:
        described = admin.list_topics(names)
        status = admin.status(names)
        configs = {n: admin.describe_configs(n) for n in names}
    by_key = {(p.topic, p.partition): p for p in status.partitions}
    flags = flags_by_partition(status)
    for name in names:
        t = described[name]
        overrides = ", ".join(f"{k}={v}" for k, (v, src) in sorted(configs[name].items()) if src == "topic")
        min_isr = int(configs[name]["min.insync.replicas"][0])
        under = sum(len(p.isr) < min_isr for p in t.partitions)
        warn = (f" (above the ISR of {under} partition{'s' if under > 1 else ''}: acks=all gets "
                f"NOT_ENOUGH_REPLICAS)" if under else "")
        first = by_key.get((name, 0))
        rf = len(t.partitions[0].replicas) - (len(first.adding_replicas) if first else 0)   # a move adds one
        click.echo(f"Topic: {name}  PartitionCount: {len(t.partitions)}  ReplicationFactor: "
                   f"{rf}  MinInSyncReplicas: {min_isr}{warn}  "
                   f"Configs: {overrides or '(defaults)'}")
        rows = []
        for p in t.partitions:
            s = by_key.get((name, p.partition))
            lag = ",".join(f"{f.replica_id}:{f.lag_records if f.lag_records >= 0 else '-'}"
                           for f in sorted(s.followers, key=lambda f: f.replica_id)) if s else ""
            rows.append((p.partition, p.leader, p.leader_epoch, ",".join(map(str, p.replicas)),
                         ",".join(map(str, p.isr)) or "-", s.log_start_offset if s else -1,
                         s.high_watermark if s else -1, s.log_end_offset if s else -1,
                         human_bytes(s.size_bytes) if s else "-", lag or "-",
                         ",".join(flags.get((name, p.partition), [])) or "-"))
        for line in format_table(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "START", "HW", "END", "SIZE",
                                  "FOLLOWER-LAG", "FLAGS"], rows):
            click.echo("  " + line)


@topics.command("alter")
@click.argument("name")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a topic config; repeatable.")
@click.option("--delete", "deletes", multiple=True, metavar="KEY",
              help="Return a config to the broker default; repeatable.")
@click.option("--partitions", type=int, help="Grow the topic to this many partitions.")
@_socket_option
def topics_alter(name, sets, deletes, partitions, socket_path):
    """Change topic NAME's configs or grow its partition count.

    Growing the partition count changes where keyed records go (murmur2(key) %
    partitions), so records of one key are no longer all in one partition.

    \b
    Examples:
      odradek topics alter orders --set retention.ms=86400000 --delete segment.bytes
      odradek topics alter orders --partitions 12
    """
    if not (sets or deletes or partitions):
        raise click.UsageError("nothing to change: give --set, --delete or --partitions")
    with _admin(socket_path) as admin:
        if sets or deletes:
            admin.alter_configs(name, _key_values(sets, "--set"), deletes)
            click.echo(f"updated configs of {name}")
        if partitions:
            admin.create_partitions(name, partitions)
            click.echo(f"{name} now has {partitions} partitions; note: keyed records now map to "
                       f"different partitions than before", err=False)


@topics.command("delete")
@click.argument("name")
@_socket_option
def topics_delete(name, socket_path):
    """Delete topic NAME and all its data.

    \b
    Example:
      odradek topics delete orders
    """
    with _admin(socket_path) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}")


# == the data plane from the shell =========================================================

def _header_pairs(pairs):
    """--header KEY=VALUE ... as a list (a key may repeat, as Kafka headers may)."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--header")
        out.append((key, value))
    return out


def _offset(value):
    if value in (None, "earliest", "latest"):
        return value
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise click.BadParameter(f"{value!r} is not an offset: give a number >= 0, earliest or latest",
                                 param_hint="--offset")
    return n


@cli.command()
@click.argument("topic")
@click.option("--key-separator", metavar="SEP",
              help="Each line is KEY<SEP>VALUE, split at the first SEP; a line without SEP is an error.")
@click.option("--header", "headers", multiple=True, metavar="KEY=VALUE",
              help="A header added to every record; repeatable.")
@click.option("--acks", type=click.Choice(["0", "1", "all", "-1"]), default="all", show_default=True,
              help="Wait for no acknowledgement, the leader's, or every in-sync replica's.")
@click.option("--partition", type=click.IntRange(min=0), metavar="N",
              help="Send every record to this partition (default: murmur2 of the key, or sticky "
                   "batches for keyless records, as Kafka's producer does).")
@_socket_option
def produce(topic, key_separator, headers, acks, partition, socket_path):
    """Send each line of stdin to TOPIC as one record, as kafka-console-producer.sh does.

    The line's bytes without the line ending are the value (an empty line is a record
    with an empty value). Prints nothing on success; exits when stdin ends (Ctrl-D)
    after every record is delivered. A line without the key separator, or a record the
    broker refuses, stops it with one line on stderr naming the line, and exit status 1;
    the lines before it are delivered.

    \b
    Examples:
      echo hello | odradek produce orders
      odradek produce orders --key-separator : < keyed.txt        # lines like user-7:{"total": 12}
      odradek produce orders --header trace=abc --acks 1 --partition 0
    """
    from odradek.daemon.tools import console
    try:
        console.produce(socket_path, topic, sys.stdin.buffer, key_separator=key_separator,
                        headers=_header_pairs(headers), acks=acks if acks == "all" else int(acks),
                        partition=partition)
    except KeyboardInterrupt:
        return 130      # Ctrl-C: what was read is delivered; quiet, as kafka-console-producer


@cli.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True,
              help="Start at the oldest record (default: only records produced from now on).")
@click.option("--partition", type=click.IntRange(min=0), metavar="N",
              help="Read only this partition (default: every partition of the topic).")
@click.option("--offset", metavar="N|earliest|latest",
              help="Start at this offset of --partition.")
@click.option("--max-messages", type=click.IntRange(min=1), metavar="N", help="Exit after N records.")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Exit (status 0) after this long without a record.")
@click.option("--print-timestamp", is_flag=True, help="Prefix CreateTime:<ms> (or LogAppendTime:<ms>).")
@click.option("--print-partition", is_flag=True, help="Prefix Partition:<p>.")
@click.option("--print-offset", is_flag=True, help="Prefix Offset:<o>.")
@click.option("--print-headers", is_flag=True, help="Prefix the headers as k1:v1,k2:v2 (NO_HEADERS if none).")
@click.option("--print-key", is_flag=True, help="Prefix the key (null if none).")
@click.option("--key-separator", default="\t", show_default="tab", metavar="SEP",
              help="What follows each prefix.")
@_socket_option
def consume(topic, from_beginning, partition, offset, max_messages, timeout, print_timestamp,
            print_partition, print_offset, print_headers, print_key, key_separator, socket_path):
    """Print the records of TOPIC, one value per line, as kafka-console-consumer.sh does.

    Values are written as stored (raw bytes) followed by a newline; a null value prints
    as null. Runs until Ctrl-C (exit status 130, quietly), --max-messages, or --timeout.
    With prefixes, a line is (each part followed by --key-separator, a tab by default):

    \b
      [CreateTime:<ms>] [Partition:<p>] [Offset:<o>] [<headers>] [<key>] <value>
      e.g. CreateTime:1700000000000<TAB>Partition:0<TAB>Offset:5<TAB>user-7<TAB>{"total": 12}

    No consumer group: positions are not committed.

    \b
    Examples:
      odradek consume orders --from-beginning
      odradek consume orders --from-beginning --max-messages 10 --print-key --print-offset
      odradek consume orders --partition 2 --offset 1000 --print-timestamp --print-partition
      odradek consume orders --timeout 5      # exit once no record came for 5 s
    """
    from odradek.daemon.tools import console
    offset = _offset(offset)
    if offset is not None and partition is None:
        raise click.UsageError("--offset needs --partition: an offset belongs to one partition")
    if offset is not None and from_beginning:
        raise click.UsageError("give --from-beginning or --offset, not both")
    fmt = console.Format(print_key=print_key, print_offset=print_offset, print_timestamp=print_timestamp,
                         print_partition=print_partition, print_headers=print_headers,
                         separator=key_separator)
    try:
        console.consume(socket_path, topic, sys.stdout.buffer, fmt, partition=partition,
                        offset=offset, from_beginning=from_beginning, max_messages=max_messages,
                        timeout=timeout)
    except KeyboardInterrupt:
        return 130      # Ctrl-C is how a console consumer is stopped: no error line


@cli.command()
@_socket_option
def status(socket_path):
    """Show the broker, its processes (leaders and followers), every partition (replicas,
    ISR, offsets, high watermark, size, flags: under-replicated, under-min-ISR, offline,
    moving),
    every follower replica with its lag, the log dirs, and the lag of every consumer group
    with committed offsets, as tables.

    A follower's LAG-RECORDS is the leader's log end minus its own; LAG-TIME is how long
    ago the leader last found it caught up (0 while it is); past replica.lag.time.max.ms
    it leaves the ISR. A group's LAG is the partition's log end offset minus the group's
    committed offset: the records the group has yet to read.

    \b
    Examples:
      odradek status
      odradek status --socket ./data/odradek.sock
    """
    from odradek.daemon.tools.groups import committed_offsets_of_groups
    from odradek.daemon.tools.status import render
    with _admin(socket_path) as admin:
        st = admin.status()
        group_offsets = committed_offsets_of_groups(admin)
    for line in render(st, group_offsets):
        click.echo(line)


# == consumer groups =======================================================================

@cli.group()
def groups():
    """List and describe consumer groups (members, committed offsets, lag), reset their
    offsets, delete them: what kafka-consumer-groups.sh does.

    \b
    Examples:
      odradek groups list
      odradek groups describe billing
      odradek groups reset-offsets --group billing --topic orders --to-earliest --execute
      odradek groups delete billing
    """


@groups.command("list")
@_socket_option
def groups_list(socket_path):
    """List consumer groups: state, protocol type and member count.

    \b
    Examples:
      odradek groups list
      odradek groups list --socket ./data/odradek.sock
    """
    from odradek.daemon.tools import groups as tool
    with _admin(socket_path) as admin:
        lines = tool.list_lines(admin)
    for line in lines:
        click.echo(line)


@groups.command("describe")
@click.argument("group")
@click.option("--members", is_flag=True,
              help="Show the members instead (id, instance id, pid and uid, client id, assignment).")
@_socket_option
def groups_describe(group, members, socket_path):
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
    """
    from odradek.daemon.tools import groups as tool
    with _admin(socket_path) as admin:
        lines = tool.members_lines(admin, group) if members else tool.describe_lines(admin, group)
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
@_socket_option
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
    with _admin(socket_path) as admin:
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
@_socket_option
def groups_delete(group, socket_path):
    """Delete consumer group GROUP and its committed offsets. Only an empty group (no
    live members) can be deleted.

    \b
    Example:
      odradek groups delete billing
    """
    from odradek.daemon.tools import groups as tool
    with _admin(socket_path) as admin:
        tool.delete(admin, group)
    click.echo(f"deleted group {group}")


def main(argv=None):
    """The console script (setup.py: odradek = odradek.daemon.cli:main)."""
    cli.main(args=argv, prog_name=PROG)


if __name__ == "__main__":
    main()
