"""The data plane from the shell: `odradek produce` and `odradek consume`, as
kafka-console-producer.sh and kafka-console-consumer.sh (daemon/tools/console.py)."""
import sys

import click

from odradek.daemon.cli.root import cli, socket_option


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
@socket_option
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
@click.option("--isolation-level", type=click.Choice(["read_uncommitted", "read_committed"]),
              default="read_uncommitted", show_default=True,
              help="read_committed: only records of committed transactions (and none past an open one).")
@socket_option
def consume(topic, from_beginning, partition, offset, max_messages, timeout, print_timestamp,
            print_partition, print_offset, print_headers, print_key, key_separator, isolation_level, socket_path):
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
      odradek consume payments --from-beginning --isolation-level read_committed
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
                        timeout=timeout, isolation_level=isolation_level)
    except KeyboardInterrupt:
        return 130      # Ctrl-C is how a console consumer is stopped: no error line
