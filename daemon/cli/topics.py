"""`odradek topics`: create, list, describe, alter and delete topics, and delete their oldest records."""
import click

from odradek.daemon.cli.root import cli, connect, key_values, socket_option


@cli.group()
def topics():
    """Create, list, describe, alter and delete topics; delete their oldest records.

    \b
    Examples:
      odradek topics create orders --partitions 6 --config retention.ms=3600000
      odradek topics list
      odradek topics describe orders
      odradek topics delete-records orders --partition 0 --before 1000
    """


@topics.command("create")
@click.argument("name")
@click.option("--partitions", type=int, default=-1, help="Partition count (default: num.partitions).")
@click.option("--replication-factor", type=int, default=-1,
              help="Replicas per partition (default: default.replication.factor).")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="A topic config; repeatable.")
@click.option("--if-not-exists", is_flag=True, help="Succeed quietly if the topic exists.")
@socket_option
def topics_create(name, partitions, replication_factor, configs, if_not_exists, socket_path):
    """Create topic NAME.

    \b
    Example:
      odradek topics create orders --partitions 6 --config retention.ms=3600000
    """
    from odradek.client.errors import TopicAlreadyExists
    with connect(socket_path) as admin:
        try:
            n, rf = admin.create_topic(name, partitions, replication_factor, key_values(configs, "--config"))
        except TopicAlreadyExists:
            if not if_not_exists:
                raise
            click.echo(f"topic {name} already exists")
            return
    click.echo(f"created topic {name}: {n} partitions, replication factor {rf}")


@topics.command("list")
@socket_option
def topics_list(socket_path):
    """List topics with their partition counts.

    \b
    Examples:
      odradek topics list
      odradek topics list --socket ./data/odradek.sock
    """
    from odradek.daemon.tools.table import format_table
    with connect(socket_path) as admin:
        described = admin.list_topics()
    rows = [(t.name, len(t.partitions), len(t.partitions[0].replicas) if t.partitions else 0)
            for t in described.values()]
    for line in format_table(["TOPIC", "PARTITIONS", "REPLICATION"], rows):
        click.echo(line)


@topics.command("describe")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@socket_option
def topics_describe(names, socket_path):
    """Show each partition (leader, replicas, in-sync replicas, offsets, high watermark,
    last stable offset (LSO: where read_committed consumers stop; below HW while a
    transaction is open), size, flags: under-replicated, under-min-ISR, offline, moving (a replica is being
    moved to another log dir: 'odradek log-dirs move'); each follower's lag in
    records as REPLICA:LAG, '-' when not known), the topic's min.insync.replicas (flagged
    when above a partition's ISR) and the configs set on the topic.

    \b
    Example:
      odradek topics describe orders
    """
    from odradek.client.partition_health import flags_by_partition
    from odradek.daemon.tools.table import format_table, human_bytes
    with connect(socket_path) as admin:
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
                         s.high_watermark if s else -1, s.last_stable_offset if s else -1,
                         s.log_end_offset if s else -1,
                         human_bytes(s.size_bytes) if s else "-", lag or "-",
                         ",".join(flags.get((name, p.partition), [])) or "-"))
        for line in format_table(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "START", "HW", "LSO", "END",
                                  "SIZE", "FOLLOWER-LAG", "FLAGS"], rows):
            click.echo("  " + line)


@topics.command("alter")
@click.argument("name")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a topic config; repeatable.")
@click.option("--delete", "deletes", multiple=True, metavar="KEY",
              help="Return a config to the broker default; repeatable.")
@click.option("--partitions", type=int, help="Grow the topic to this many partitions.")
@socket_option
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
    with connect(socket_path) as admin:
        if sets or deletes:
            admin.alter_configs(name, key_values(sets, "--set"), deletes)
            click.echo(f"updated configs of {name}")
        if partitions:
            admin.create_partitions(name, partitions)
            click.echo(f"{name} now has {partitions} partitions; note: keyed records now map to "
                       f"different partitions than before", err=False)


@topics.command("delete")
@click.argument("name")
@socket_option
def topics_delete(name, socket_path):
    """Delete topic NAME and all its data.

    \b
    Example:
      odradek topics delete orders
    """
    with connect(socket_path) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}")


@topics.command("delete-records")
@click.argument("name")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True, required=True, metavar="P",
              help="The partition; repeatable.")
@click.option("--before", type=click.IntRange(min=-1), required=True, metavar="OFFSET",
              help="Delete every record below OFFSET (-1: below the high watermark, all there is).")
@socket_option
def topics_delete_records(name, partitions, before, socket_path):
    """Delete the records of topic NAME below an offset, as kafka-delete-records does:
    they become unreadable at once (the partition's log start offset moves up to
    OFFSET; consumers' earliest offset with it) and the segment files wholly below it
    are deleted. An offset below the log start changes nothing; one above the high
    watermark is an error.

    \b
    Examples:
      odradek topics delete-records orders --partition 0 --before 1000
      odradek topics delete-records orders --partition 0 --partition 1 --before -1
    """
    with connect(socket_path) as admin:
        starts = admin.delete_records({(name, p): before for p in partitions})
    for (topic, partition), start in sorted(starts.items()):
        click.echo(f"{topic}-{partition}: records below offset {start} deleted (the log start offset)")
