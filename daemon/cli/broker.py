"""Commands about the broker itself: serve (run it), status, and log-dirs (describe,
move a replica, forget an offline dir's data)."""
import os
import sys

import click

from odradek.daemon.cli.root import cli, connect, key_values, socket_option


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

    Kafka clients: with --data-dir the Kafka listener is on PLAINTEXT://127.0.0.1:9092
    (the log line 'bootstrap.servers=...' says where; if the port is taken the broker runs
    without it); with --config only when the file sets `listeners`. A loopback client
    must be a user who may open the control socket.

    \b
    Examples:
      odradek serve --data-dir ./data
      odradek serve --config /etc/odradek/odradek.toml
      odradek serve --data-dir ./data --override group.initial.rebalance.delay.ms=0
      odradek serve --data-dir ./data --override listeners=PLAINTEXT://127.0.0.1:19092
    """
    import logging
    from odradek.daemon.broker import config as broker_config
    from odradek.daemon.broker.server import Broker
    if bool(config_path) == bool(data_dir):
        raise click.UsageError("give exactly one of --config PATH or --data-dir DIR")
    values = key_values(overrides, "--override")
    config = (broker_config.load(config_path, values) if config_path
              else broker_config.BrokerConfig.for_data_dir(data_dir, values))
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    if data_dir:
        click.echo(f"export ODRADEK_SOCKET={config.socket_path}", err=True)
    return Broker(config, config_path=config_path).run()


@cli.command("sasl-password")
@click.argument("user")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line, not a prompt.")
def sasl_password(user, password_stdin):
    """Print the line of sasl.plain.users.file for USER: USER:HASH (a salted
    PBKDF2-SHA256 hash of the password). Append it to the file and restart the broker.

    \b
    Examples:
      odradek sasl-password alice >> /etc/odradek/kafka-users
      echo "$PASSWORD" | odradek sasl-password alice --password-stdin >> users
    """
    from odradek.daemon.gateway.sasl_users import hash_password
    if not user or any(c in user for c in ":#") or user != user.strip() or len(user.split()) != 1:
        raise click.BadParameter("a user name has no ':', '#' or whitespace", param_hint="USER")
    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))
    if not password:
        raise click.BadParameter("the password is empty", param_hint="password")
    click.echo(f"{user}:{hash_password(password)}")


@cli.command()
@socket_option
def status(socket_path):
    """Show the broker, its processes (leaders and followers), every partition (replicas,
    ISR, offsets, high watermark, last stable offset (LSO: below HW while a transaction is
    open), size, flags: under-replicated, under-min-ISR, offline,
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
    with connect(socket_path) as admin:
        st = admin.status()
        group_offsets = committed_offsets_of_groups(admin)
    for line in render(st, group_offsets):
        click.echo(line)


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
@socket_option
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
    with connect(socket_path) as admin:
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
@socket_option
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
    with connect(socket_path) as admin:
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
