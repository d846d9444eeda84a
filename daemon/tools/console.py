"""`odradek produce` and `odradek consume`: the console producer and consumer, as
Apache Kafka's kafka-console-producer.sh and kafka-console-consumer.sh.

    produce(socket, "orders", sys.stdin.buffer, key_separator=":")    one record per line
    consume(socket, "orders", sys.stdout.buffer, Format(print_key=True), from_beginning=True)

Bytes in, bytes out: a line's bytes (without its line ending) are the record value; a
record's value is written as it is stored, followed by a newline, so binary data and any
encoding pass through unchanged (kafka-console-consumer's default deserializer does the
same). A null key or value is printed as `null`.

Errors are OdradekErrors with a message that says what to do; the CLI prints them as
one line. Every wait is bounded or interruptible (Ctrl-C).
"""
import time
from dataclasses import dataclass

from odradek.client.admin import Admin, resolve_socket
from odradek.client.errors import InvalidRecord, OdradekError, RequestTimedOut, UnknownTopicOrPartition
from odradek.client.message import TIMESTAMP_LOG_APPEND_TIME

__all__ = ["produce", "consume", "Format", "partitions_of", "FLUSH_TIMEOUT_S"]

FLUSH_TIMEOUT_S = 60.0      # at the end of input: how long delivery may take before we give up
INTERRUPT_FLUSH_S = 5.0     # after Ctrl-C: deliver what was read, but do not hang the shell
WAIT_SLICE_S = 0.5          # a consumer wait is cut into slices so Ctrl-C is seen at once
CONSUME_BATCH = 500         # records taken from the consumer per call


# -- topics ------------------------------------------------------------------------------

def partitions_of(socket_path, topic, partition=None):
    """The partition numbers to use: [partition] after checking it exists, or all of the
    topic's. An unknown topic raises UnknownTopicOrPartition (with the broker's message:
    how to create it)."""
    with Admin(socket_path) as admin:
        described = admin.describe_topic(topic)
    numbers = sorted(p.partition for p in described.partitions)
    if partition is None:
        return numbers
    if partition not in numbers:
        raise UnknownTopicOrPartition(
            f"topic '{topic}' has no partition {partition} (it has {_ranges(numbers)}); "
            f"grow it with 'odradek topics alter {topic} --partitions {partition + 1}'")
    return [partition]


def _ranges(numbers):
    if not numbers:
        return "no partitions"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"partition{'s' if len(numbers) > 1 else ''} " + \
            (f"{numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else str(numbers[0]))
    return "partitions " + ",".join(map(str, numbers))


# -- produce -----------------------------------------------------------------------------

class _Deliveries:
    """Counts delivery reports; remembers the first failure and the line it came from."""

    def __init__(self):
        self.delivered = 0
        self.failed = 0
        self.first_error = None
        self.first_line = None

    def callback(self, line_number):
        def on_delivery(err, _record):
            if err is None:
                self.delivered += 1
                return
            self.failed += 1
            if self.first_error is None:
                self.first_error, self.first_line = err.exception, line_number   # err: a KafkaError
        return on_delivery

    def raise_if_failed(self, produced):
        if not self.failed:
            return
        err = self.first_error
        name = getattr(err, "name", type(err).__name__)
        message = getattr(err, "message", str(err))
        more = f" ({self.failed} of {produced} records failed)" if self.failed > 1 or produced > 1 else ""
        raise type(err)(f"the record from line {self.first_line} was not delivered{more}: {name}: {message}") \
            if isinstance(err, OdradekError) else \
            InvalidRecord(f"the record from line {self.first_line} was not delivered{more}: {message}")


def _split_key(line, separator, line_number):
    key, sep, value = line.partition(separator)
    if not sep:
        shown = line[:60].decode("utf-8", errors="replace")
        raise InvalidRecord(f"line {line_number} has no key separator {separator.decode(errors='replace')!r}: "
                            f"{shown!r}{'...' if len(line) > 60 else ''}; write KEY{separator.decode(errors='replace')}"
                            f"VALUE, or leave out --key-separator")
    return key, value


def _strip_newline(line):
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def produce(socket_path, topic, lines, *, key_separator=None, headers=(), acks="all", partition=None,
            producer_config=None):
    """Send each line of `lines` (an iterable of bytes, e.g. a binary stdin) to `topic` as
    one record, and wait until every one is delivered. Returns the number of records.

    key_separator (str or bytes): each line is KEY<sep>VALUE, split at the first
    separator; a line without it raises InvalidRecord naming the line number (the lines
    before it are still delivered). headers: (key, value) pairs added to every record.
    acks: 0, 1 or "all". partition: send every record there (default: the partitioner
    decides: murmur2 of the key, or sticky batches without one).

    Raises the first delivery error, naming the line, after waiting for the rest;
    KeyboardInterrupt after delivering what was read (at most INTERRUPT_FLUSH_S).
    """
    from odradek.client import Producer
    partitions_of(socket_path, topic, partition)          # an unknown topic: fail before reading stdin
    if isinstance(key_separator, str):
        key_separator = key_separator.encode()
    if key_separator == b"":
        raise InvalidRecord("the key separator is empty; give at least one character, e.g. --key-separator :")
    headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in headers] or None
    config = {"socket": resolve_socket(socket_path), "acks": acks, "client.id": "odradek-console-producer"}
    config.update(producer_config or {})
    deliveries = _Deliveries()
    produced = 0
    producer = Producer(config)
    try:
        try:
            for number, raw in enumerate(lines, 1):
                value = _strip_newline(raw)
                key = None
                if key_separator is not None:
                    key, value = _split_key(value, key_separator, number)
                try:
                    producer.produce(topic, value, key=key, headers=headers, partition=partition,
                                     on_delivery=deliveries.callback(number))
                except OdradekError as e:
                    raise type(e)(f"line {number}: {e.message}") from e
                produced += 1
                producer.poll(0)
                if deliveries.failed:
                    break                      # stop reading: the rest would likely fail too
        except KeyboardInterrupt:
            producer.flush(INTERRUPT_FLUSH_S)
            raise
        except BaseException:
            producer.flush(INTERRUPT_FLUSH_S)  # deliver the lines before the bad one
            deliveries.raise_if_failed(produced)
            raise
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        deliveries.raise_if_failed(produced)
        if remaining:
            raise RequestTimedOut(f"{remaining} of {produced} records were not delivered within "
                                  f"{FLUSH_TIMEOUT_S:.0f} s; check the broker with 'odradek status'")
    finally:
        producer.close(timeout=INTERRUPT_FLUSH_S)   # normally nothing is left to wait for
    return produced


# -- consume -----------------------------------------------------------------------------

@dataclass
class Format:
    """What to print before each value, in kafka-console-consumer's order and words:

        [CreateTime:<ms>|LogAppendTime:<ms>] [Partition:<p>] [Offset:<o>] [<headers>] [<key>] <value>

    each part followed by `separator` (default tab); headers as k1:v1,k2:v2 (NO_HEADERS
    when there are none); a null key, value or header value as null.
    """
    print_key: bool = False
    print_offset: bool = False
    print_timestamp: bool = False
    print_partition: bool = False
    print_headers: bool = False
    separator: bytes = b"\t"

    def __post_init__(self):
        if isinstance(self.separator, str):
            self.separator = self.separator.encode()

    def render(self, record):
        sep = self.separator
        parts = []
        if self.print_timestamp:
            ts_type, ts = record.timestamp()
            if ts is None or ts < 0:
                parts.append(b"NO_TIMESTAMP")
            else:
                kind = b"LogAppendTime" if ts_type == TIMESTAMP_LOG_APPEND_TIME else b"CreateTime"
                parts.append(b"%s:%d" % (kind, ts))
        if self.print_partition:
            parts.append(b"Partition:%d" % record.partition())
        if self.print_offset:
            parts.append(b"Offset:%d" % record.offset())
        if self.print_headers:
            hs = record.headers()
            parts.append(b",".join(_b(k) + b":" + _b(v) for k, v in hs) if hs else b"NO_HEADERS")
        if self.print_key:
            parts.append(_b(record.key()))
        parts.append(_b(record.value()))
        return sep.join(parts) + b"\n"


def _b(x):
    if x is None:
        return b"null"
    if isinstance(x, str):
        return x.encode()
    return bytes(x)


def consume(socket_path, topic, out, fmt=None, *, partition=None, offset=None, from_beginning=False,
            max_messages=None, timeout=None, isolation_level="read_uncommitted"):
    """Write the records of `topic` to `out` (a binary stream), formatted by `fmt`, and
    return how many were written.

    Reads every partition of the topic, or only `partition`. Starts at the end (only new
    records), at the beginning with from_beginning, or at `offset` ("earliest", "latest"
    or a number; needs `partition`). Stops after max_messages records, or once `timeout`
    seconds pass without a record; otherwise runs until interrupted (KeyboardInterrupt
    propagates, after what was received is written). Output is flushed after each
    group of records that arrived together, so a pipe sees each record promptly.
    isolation_level: the Consumer's isolation.level (read_committed: committed records only).
    """
    from odradek.client import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
    fmt = fmt or Format()
    numbers = partitions_of(socket_path, topic, partition)
    if offset is not None and partition is None:
        raise InvalidRecord("--offset needs --partition: an offset belongs to one partition")
    if offset in (None, "latest"):
        start = OFFSET_BEGINNING if from_beginning and offset is None else OFFSET_END
    elif offset == "earliest":
        start = OFFSET_BEGINNING
    else:
        start = int(offset)
    config = {"socket": resolve_socket(socket_path), "client.id": "odradek-console-consumer",
              "auto.offset.reset": "earliest" if from_beginning else "latest", "isolation.level": isolation_level}
    written = 0
    with Consumer(config) as consumer:
        consumer.assign([TopicPartition(topic, p, start) for p in numbers])
        deadline = None if timeout is None else time.monotonic() + timeout
        while max_messages is None or written < max_messages:
            wait = WAIT_SLICE_S
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(wait, left)
            want = CONSUME_BATCH if max_messages is None else min(CONSUME_BATCH, max_messages - written)
            records = consumer.consume(num_messages=want, timeout=wait)
            if not records:
                continue
            out.write(b"".join(fmt.render(r) for r in records))
            out.flush()
            written += len(records)
            if timeout is not None:
                deadline = time.monotonic() + timeout
    return written
