"""The README's Python examples run unchanged on confluent-kafka through the Kafka listener,
with only the import changed and bootstrap.servers added: the documented way to move to a
Kafka cluster (README, "Moving to a Kafka cluster").

Each example is taken from README.md as written and run in a subprocess twice: (a) as
written, odradek's client over shared memory ($ODRADEK_SOCKET), and (b) with
`from odradek.client import` made `from confluent_kafka import` and "bootstrap.servers"
added to each Producer/Consumer config, confluent-kafka through the listener. Both runs
must print the same lines (timestamps aside) and leave the same records. The examples use
fixed names (topic `orders`, groups, a transactional id), so each run gets a broker of its
own with none of them yet (the same odradek, started afresh, with the listener on).

The harness defines what the README leaves to the reader: the inputs of the group and
exactly-once examples (produced here with fixed partitions and timestamps), `transform`,
and the end of the two examples that run until stopped: SIGINT (Ctrl-C) once the group
example printed every record, or once the exactly-once one committed every input offset.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support.broker import BrokerProcess, stop_cleanly, wait_until

pytest.importorskip("confluent_kafka")

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
RUN_TIMEOUT_S = 60.0
TRANSFORM = "def transform(value):\n    return value.upper()\n\n"
INPUTS = [(i % 3, b"user-%d" % (i % 3), b'{"total": %d}' % i) for i in range(10)]   # (partition, key, value)


def readme_examples():
    """The README's ```python blocks, in order: produce/consume, group, exactly-once."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.S | re.M)
    assert len(blocks) == 3, f"README.md has {len(blocks)} Python examples, this test knows 3"
    assert "p.produce(" in blocks[0] and "subscribe(" in blocks[1] and "send_offsets_to_transaction" in blocks[2]
    return blocks


def as_confluent(code, bootstrap):
    """The README's recipe: the import made confluent-kafka's, bootstrap.servers added."""
    changed, imports = re.subn(r"^from odradek\.client import ", "from confluent_kafka import ", code, flags=re.M)
    assert imports == 1, code
    changed, configs = re.subn(r"\b(Producer|Consumer)\(\{", rf'\1({{"bootstrap.servers": "{bootstrap}", ', changed)
    assert configs == code.count("Producer({") + code.count("Consumer({") >= 1
    return changed


class Run:
    """One example in a subprocess, its stdout collected line by line."""

    def __init__(self, code, socket_path, stderr_path):
        self.lines, self._seen = [], threading.Condition()
        self._stderr_path = stderr_path
        with open(stderr_path, "wb") as err:     # a file: librdkafka's logs never fill a pipe
            self.proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=err,
                                         text=True, env={**os.environ, "ODRADEK_SOCKET": socket_path})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_lines(self, predicate, what):
        with self._seen:
            assert self._seen.wait_for(lambda: predicate(self.lines) or self.proc.poll() is not None,
                                       RUN_TIMEOUT_S), f"no {what} within {RUN_TIMEOUT_S} s: {self.lines}"
        assert self.proc.poll() is None, f"exited {self.proc.returncode} before {what}: {self.stderr()}"

    def interrupt(self):
        """Ctrl-C, as a person stops the example."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish(interrupted=True)

    def finish(self, interrupted=False):
        try:
            self.proc.wait(RUN_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(RUN_TIMEOUT_S)
        err = self.stderr()
        if interrupted:
            assert "KeyboardInterrupt" in err and "Error" not in err.replace("KeyboardInterrupt", ""), err
        else:
            assert self.proc.returncode == 0, err
        return self.lines

    def stderr(self):
        return Path(self._stderr_path).read_text(errors="replace")


def fresh_broker(tmp_path, name):
    broker = BrokerProcess(tmp_path / name, listener=True,
                           args=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    with Admin(broker.socket_path) as admin:
        admin.create_topic("orders", 3)
        admin.create_topic("orders-enriched", 3)
    return broker


def produce_inputs(sock):
    with Producer({"socket": sock}) as p:
        for i, (partition, key, value) in enumerate(INPUTS):
            p.produce("orders", value, key=key, partition=partition, timestamp=1_700_000_000_000 + i)
        assert p.flush(30) == 0


def run_both(tmp_path, code, drive):
    """drive(Run, broker) -> what the run left, once with odradek's client, once with
    confluent-kafka's through the listener; both results."""
    results = []
    for variant in ("odradek", "confluent"):
        broker = fresh_broker(tmp_path, variant)
        try:
            text = code if variant == "odradek" else as_confluent(code, f"127.0.0.1:{broker.kafka_port()}")
            results.append(drive(Run(text, broker.socket_path, tmp_path / f"{variant}.err"), broker))
        finally:
            stop_cleanly(broker)
    return results


def without_timestamps(lines):
    """The printed (timestamp type, ms) pairs differ between runs made at different times."""
    return sorted(re.sub(r"\((1|2), \d{13}\)", "(type, ms)", line) for line in lines)


def log_of(sock, topic, isolation="read_uncommitted"):
    """{partition: [(key, value), ...]} of every record of `topic`, in offset order."""
    with Admin(sock) as admin:
        ends = {p: admin.list_offsets(topic, p, isolation_level=isolation)[0] for p in range(3)}
    with Consumer({"socket": sock, "isolation.level": isolation}) as c:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        out = {p: [] for p in range(3)}
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # position(): OFFSET_INVALID until a record of the partition is returned
        while any(max(tp.offset, 0) < ends[tp.partition] for tp in c.position(c.assignment())):
            assert time.monotonic() < deadline, f"{topic}: not read up to {ends}"
            for r in c.consume(100, 0.2):
                out[r.partition()].append((r.key(), r.value()))
    return out


def test_the_produce_and_consume_example_prints_the_same_on_both_clients(tmp_path):
    code = readme_examples()[0]

    def drive(run, broker):
        return without_timestamps(run.finish()), log_of(broker.socket_path, "orders")

    (ours, our_log), (theirs, their_log) = run_both(tmp_path, code, drive)
    assert ours == theirs
    assert len([line for line in ours if re.fullmatch(r"orders-\d@\d+", line)]) == 10     # delivery reports
    assert len([line for line in ours if line.startswith(("0 ", "1 ", "2 "))]) == 10        # records read
    assert our_log == their_log and sum(map(len, our_log.values())) == 10


def test_the_consumer_group_example_reads_every_record_on_both_clients(tmp_path):
    code = readme_examples()[1]

    def drive(run, broker):
        produce_inputs(broker.socket_path)
        run.wait_lines(lambda lines: sum(bool(re.match(r"\d \d+ b'", x)) for x in lines) >= len(INPUTS),
                       "ten records printed")
        printed = run.interrupt()
        with Admin(broker.socket_path) as admin:     # close() in `finally` committed them all
            wait_until(lambda: admin.describe_group("billing").state == "Empty", 30,
                       what="the group to be left")
            committed = admin.list_group_offsets("billing")
        return sorted(printed), committed

    (ours, our_commits), (theirs, their_commits) = run_both(tmp_path, code, drive)
    assert ours == theirs and "assigned [0, 1, 2]" in ours and len(ours) == len(INPUTS) + 1
    assert {tp: o for tp, (o, _) in our_commits.items()} == {tp: o for tp, (o, _) in their_commits.items()} \
        == {("orders", 0): 4, ("orders", 1): 3, ("orders", 2): 3}


def test_the_exactly_once_example_writes_each_result_once_on_both_clients(tmp_path):
    code = TRANSFORM + readme_examples()[2]
    every_input = {("orders", 0): 4, ("orders", 1): 3, ("orders", 2): 3}

    def drive(run, broker):
        produce_inputs(broker.socket_path)
        with Admin(broker.socket_path) as admin:
            wait_until(lambda: {tp: o for tp, (o, _) in admin.list_group_offsets("enricher").items()} == every_input,
                       RUN_TIMEOUT_S, interval=0.1, what="every input offset committed")
        assert run.interrupt() == []                # the example prints nothing
        return log_of(broker.socket_path, "orders-enriched", "read_committed")

    ours, theirs = run_both(tmp_path, code, drive)
    assert ours == theirs == {p: [(k, v.upper()) for q, k, v in INPUTS if q == p] for p in range(3)}
