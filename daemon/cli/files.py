"""Commands on local files, no broker needed: dump-log (kafka-dump-log.sh) and demo."""
import sys

import click

from odradek.client.errors import InvalidSegment
from odradek.daemon.cli.root import cli


def _writer():
    """A line writer for long outputs: straight to stdout (click.echo costs more per
    line, which shows on a dump of a million batches)."""
    stream = sys.stdout

    def out(line):
        stream.write(line)
        stream.write("\n")
    return out


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
