"""Kafka Streams and Kafka Connect, unchanged, against the listener (issue 13).

Streams: Kafka's own WordCountDemo (org.apache.kafka.streams.examples.wordcount, reading the
fixed topics streams-plaintext-input and writing streams-wordcount-output), at least once
and exactly once (v2): its internal topics made with CreateTopics and their configs, the
repartition topic purged with DeleteRecords, its own assignor over two stream threads of one
group, transactions for exactly once. Connect: the standalone worker with the FileStream
source and sink connectors, moving lines from a file into a topic it creates and from the
topic into another file.

The demo's topics are fixed and may hold earlier runs' lines (ODRADEK_INTEROP_BOOTSTRAP at a
long-lived broker): each run has an application id of its own and commits that group's
offsets at the input's end before it starts, so the demo counts this run's lines only.
"""
import collections
import os
import re
import shutil
import signal
import struct
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from support.broker import wait_until
from support.interop import JAVA_LIBS, ROOT

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="no JDK: install a JDK 17+")

CONNECT_PLUGINS = os.path.join(ROOT, ".cache", "interop", "connect-plugins")
WORDCOUNT = "org.apache.kafka.streams.examples.wordcount.WordCountDemo"
CONNECT_STANDALONE = "org.apache.kafka.connect.cli.ConnectStandalone"
INPUT, OUTPUT = "streams-plaintext-input", "streams-wordcount-output"
WAIT_S = 45            # for a JVM to start, join its group and do its work
STOP_S = 30            # for it to close after SIGTERM

LINES = ["odradek speaks Kafka", "Kafka Streams counts the words", "the words of odradek, the streams"]


class JavaApp:
    """A Java program from .cache/interop/java in the background, its output in a file;
    stopped with SIGTERM (its shutdown hooks run), killed if it does not stop in time."""

    def __init__(self, tmp_path, name, main_class, *args):
        if not os.path.isdir(JAVA_LIBS):
            raise AssertionError(f"{JAVA_LIBS} is missing: run `make interop-tools`")
        self.log_path = tmp_path / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", f"-Djava.io.tmpdir={tmp_path}",
                 "-cp", os.path.join(JAVA_LIBS, "*"), main_class, *map(str, args)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.log_path.name}: exited {self.proc.returncode}: {self.output()}")
        return True

    def output(self):
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_S)
                raise AssertionError(f"{self.log_path.name} did not stop on SIGTERM: {self.output()}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def properties(path, settings):
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return path


def ensure_topic(bootstrap, name, partitions):
    """`name` with `partitions` partitions unless it exists already (then as it is)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                                 operation_timeout=30, request_timeout=30)[name]
    try:
        future.result(timeout=30)
    except Exception as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def ends(consumer, topic):
    """{partition: (low watermark, high watermark)} of `topic`."""
    parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in parts}


def consumer(bootstrap, **config):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "isolation.level": "read_committed", **config})


def expected_counts(before, lines):
    """What WordCountDemo emits for each word of `lines` after it has counted `before` (its
    statestore cache is off: every update), the counts in order, as its line splitting makes words."""
    def words(text):
        return collections.Counter(w for line in text for w in re.split(r"\W+", line.lower()) if w)
    counted, new = words(before), words(lines)
    return {w: list(range(counted[w] + 1, counted[w] + n + 1)) for w, n in new.items()}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_streams_wordcount_demo_counts_and_restores(bootstrap, tmp_path, guarantee):
    """Two runs of the demo: the second, with its local state gone, restores the counts from
    the changelog topic and goes on from them."""
    ensure_topic(bootstrap, INPUT, 2)
    ensure_topic(bootstrap, OUTPUT, 1)
    app_id = f"wordcount-{guarantee}-{uuid.uuid4().hex[:8]}"
    check = consumer(bootstrap)
    try:
        with_group = consumer(bootstrap, **{"group.id": app_id})
        with_group.commit(offsets=[TopicPartition(INPUT, p, high) for p, (_, high) in ends(check, INPUT).items()],
                          asynchronous=False)
        with_group.close()
        check.assign([TopicPartition(OUTPUT, p, high) for p, (_, high) in ends(check, OUTPUT).items()])
        first, more = LINES, ["Kafka streams on odradek again"]
        produce_lines(bootstrap, first)
        run_wordcount(bootstrap, tmp_path, app_id, guarantee, "state-1", check, expected_counts([], first))
        produce_lines(bootstrap, more)
        run_wordcount(bootstrap, tmp_path, app_id, guarantee, "state-2", check, expected_counts(first, more))
        assert_changelog_compacted(bootstrap, f"{app_id}-KSTREAM-AGGREGATE-STATE-STORE-0000000003-changelog")
    finally:
        check.close()


def produce_lines(bootstrap, lines):
    producer = Producer({"bootstrap.servers": bootstrap})
    for line in lines:
        producer.produce(INPUT, line.encode())
    assert producer.flush(30) == 0


def run_wordcount(bootstrap, tmp_path, app_id, guarantee, state, check, want):
    """Run WordCountDemo until `check` (assigned to the output topic) has read `want` from it
    and the repartition topic is purged, then stop it."""
    config = properties(tmp_path / f"{state}.properties", {
        "application.id": app_id, "bootstrap.servers": bootstrap, "state.dir": tmp_path / state,
        "processing.guarantee": guarantee, "num.stream.threads": 2, "commit.interval.ms": 100,
        "repartition.purge.interval.ms": 100,
        # Streams does not leave its group on close: a broker that keeps the members until
        # their session times out (Kafka) lets the next run in after session.timeout.ms
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    got = collections.defaultdict(list)
    with JavaApp(tmp_path, f"wordcount-{state}", WORDCOUNT, config) as app:
        def counted():
            app.alive()
            for msg in check.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                got[msg.key().decode()].append(struct.unpack(">q", msg.value())[0])
            return got == want or any(len(got[w]) > len(want.get(w, ())) for w in got)

        wait_until(counted, timeout=WAIT_S, interval=0, what=f"the word counts (got {dict(got)})")
        assert got == want
        repartition = f"{app_id}-KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition"

        def purged():     # Streams deletes the repartition records it has committed (DeleteRecords)
            app.alive()
            marks = ends(check, repartition).values()
            return sum(high for _, high in marks) > 0 and all(low == high for low, high in marks)

        wait_until(purged, timeout=WAIT_S, interval=0.1, what=f"{repartition} purged")


def assert_changelog_compacted(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource], request_timeout=30)[resource].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"


def test_connect_standalone_file_source_and_sink(bootstrap, tmp_path, topic_name):
    source_file, sink_file = tmp_path / "source.txt", tmp_path / "sink.txt"
    lines = [f"line {i} through Kafka Connect" for i in range(3)]
    source_file.write_text("".join(f"{line}\n" for line in lines))
    worker = properties(tmp_path / "worker.properties", {
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "offset.storage.file.filename": tmp_path / "offsets", "offset.flush.interval.ms": 100,
        "listeners": "http://127.0.0.1:0", "plugin.path": CONNECT_PLUGINS})
    source = properties(tmp_path / "source.properties", {
        "name": f"source-{topic_name}", "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "file": source_file, "topic": topic_name,
        # the worker creates the topic (CreateTopics): one partition keeps the lines in order
        "topic.creation.default.partitions": 1, "topic.creation.default.replication.factor": -1})
    sink_name = f"sink-{topic_name}"      # its consumer group: connect-<name>
    sink = properties(tmp_path / "sink.properties", {
        "name": sink_name, "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "file": sink_file, "topics": topic_name})
    with JavaApp(tmp_path, "connect-standalone", CONNECT_STANDALONE, worker, source, sink) as app:
        def sunk(n):
            app.alive()
            return sink_file.exists() and len(sink_file.read_text().splitlines()) >= n

        wait_until(lambda: sunk(3), timeout=WAIT_S, interval=0.1, what="the first lines in the sink file")
        more = ["a line appended while the worker runs", "and one more"]
        with open(source_file, "a") as f:
            f.write("".join(f"{line}\n" for line in more))
        wait_until(lambda: sunk(5), timeout=WAIT_S, interval=0.1, what="the appended lines in the sink file")
        assert sink_file.read_text().splitlines() == lines + more
        check = consumer(bootstrap, **{"group.id": f"connect-{sink_name}"})
        try:
            assert [m.value().decode() for m in read_all(check, topic_name)] == lines + more

            def sink_committed():   # the sink task's group commits what it has written
                app.alive()
                return check.committed([TopicPartition(topic_name, 0)], timeout=30)[0].offset == len(lines + more)

            wait_until(sink_committed, timeout=WAIT_S, interval=0.1, what="the sink's committed offsets")
        finally:
            check.close()


def read_all(check, topic):
    """Every record of `topic` (one partition) up to its end."""
    (low, high), = ends(check, topic).values()
    check.assign([TopicPartition(topic, 0, low)])
    out = []

    def at_end():
        for msg in check.consume(100, 0.5):
            assert msg.error() is None, msg.error()
            out.append(msg)
        return out and out[-1].offset() == high - 1

    wait_until(at_end, timeout=WAIT_S, interval=0, what=f"{topic} read to its end")
    return out
