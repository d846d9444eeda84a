"""Kafka Streams and Kafka Connect, unchanged, against the listener (issue 13).

Streams: Kafka's own WordCountDemo (org.apache.kafka.streams.examples.wordcount, reading the
fixed topics streams-plaintext-input and writing streams-wordcount-output), at least once
and exactly once (v2): its internal topics made with CreateTopics and their configs, the
repartition topic purged with DeleteRecords, its own assignor over two stream threads of one
group, its state restored from the changelog topic, transactions for exactly once, also
through a SIGKILL. Connect: the standalone and the distributed worker (exactly-once source
support) with the FileStream source and sink connectors, moving lines from a file into a
topic the worker creates and from the topic into another file.

The demo's topics are fixed and may hold earlier runs' lines (ODRADEK_INTEROP_BOOTSTRAP at a
long-lived broker): each run has an application id of its own and commits that group's
offsets at the input's end before it starts, so the demo counts this run's lines only.
"""
import collections
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from support.broker import wait_until
from support.interop import JAVA_LIBS, ROOT

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="no JDK: install a JDK 17+")

CONNECT_PLUGINS = os.path.join(ROOT, ".cache", "interop", "connect-plugins")
WORDCOUNT = "org.apache.kafka.streams.examples.wordcount.WordCountDemo"
CONNECT_STANDALONE = "org.apache.kafka.connect.cli.ConnectStandalone"
CONNECT_DISTRIBUTED = "org.apache.kafka.connect.cli.ConnectDistributed"
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

    def kill(self):
        self.proc.kill()
        self.proc.wait(STOP_S)

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

    def __exit__(self, exc_type, *_):
        try:
            self.stop()
        except AssertionError:
            if exc_type is None:      # else the test's own failure says more
                raise


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
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def ends(consumer, topic):
    """{partition: (low watermark, high watermark)} of `topic`, {} while there is no such topic.
    The high one is the last stable offset for a read_committed consumer."""
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
    app_id, check = new_wordcount_app(bootstrap, guarantee)
    try:
        first, more = LINES, ["Kafka streams on odradek again"]
        produce_lines(bootstrap, first)
        run_wordcount(tmp_path, "run-1", check, expected_counts([], first),
                      wordcount_config(bootstrap, app_id, guarantee, tmp_path / "state-1"))
        produce_lines(bootstrap, more)
        run_wordcount(tmp_path, "run-2", check, expected_counts(first, more),
                      wordcount_config(bootstrap, app_id, guarantee, tmp_path / "state-2"))
        assert_compacted(bootstrap, f"{app_id}-KSTREAM-AGGREGATE-STATE-STORE-0000000003-changelog")
    finally:
        check.close()


def test_streams_exactly_once_through_a_kill(bootstrap, tmp_path):
    """Exactly once v2 killed (SIGKILL) in the middle of a transaction: its records in the
    repartition topic are written but not committed; the next run fences the old producers,
    their transactions are aborted, and the counts are right: nothing counted twice."""
    app_id, check = new_wordcount_app(bootstrap, "exactly_once_v2")
    uncommitted = consumer(bootstrap, **{"isolation.level": "read_uncommitted"})
    try:
        produce_lines(bootstrap, LINES)
        # one transaction for the whole first run: commit.interval.ms under its timeout
        config = wordcount_config(bootstrap, app_id, "exactly_once_v2", tmp_path / "state", **{
            "commit.interval.ms": 30000, "producer.transaction.timeout.ms": 60000})
        repartition = f"{app_id}-KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition"
        words = sum(len(counts) for counts in expected_counts([], LINES).values())
        with JavaApp(tmp_path, "run-1", WORDCOUNT, properties(tmp_path / "run-1.properties", config)) as app:
            def repartitioned():      # the high watermarks (read_uncommitted): all the words there
                app.alive()
                return sum(high for _, high in ends(uncommitted, repartition).values()) >= words

            wait_until(repartitioned, timeout=WAIT_S, interval=0.1, what=f"{words} records in {repartition}")
            assert all(lso == 0 for _, lso in ends(check, repartition).values())   # read_committed: none stable
            app.kill()
        run_wordcount(tmp_path, "run-2", check, expected_counts([], LINES),
                      wordcount_config(bootstrap, app_id, "exactly_once_v2", tmp_path / "state"))
    finally:
        uncommitted.close()
        check.close()


def new_wordcount_app(bootstrap, guarantee):
    """An application id of its own, its group's offsets at the input's end; and a consumer
    (read_committed) assigned to the output's end."""
    ensure_topic(bootstrap, INPUT, 2)
    ensure_topic(bootstrap, OUTPUT, 1)
    app_id = f"wordcount-{guarantee}-{uuid.uuid4().hex[:8]}"
    check = consumer(bootstrap)
    with_group = consumer(bootstrap, **{"group.id": app_id})
    with_group.commit(offsets=[TopicPartition(INPUT, p, high) for p, (_, high) in ends(check, INPUT).items()],
                      asynchronous=False)
    with_group.close()
    check.assign([TopicPartition(OUTPUT, p, high) for p, (_, high) in ends(check, OUTPUT).items()])
    return app_id, check


def produce_lines(bootstrap, lines):
    producer = Producer({"bootstrap.servers": bootstrap})
    for line in lines:
        producer.produce(INPUT, line.encode())
    assert producer.flush(30) == 0


def wordcount_config(bootstrap, app_id, guarantee, state_dir, **settings):
    return {"application.id": app_id, "bootstrap.servers": bootstrap, "state.dir": state_dir,
            "processing.guarantee": guarantee, "num.stream.threads": 2, "commit.interval.ms": 100,
            "repartition.purge.interval.ms": 100,
            # Streams does not leave its group on close: a broker that keeps the members until
            # their session times out (Kafka) lets the next run in after session.timeout.ms
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, **settings}


def run_wordcount(tmp_path, run, check, want, config):
    """Run WordCountDemo until `check` (assigned to the output topic) has read `want` from it
    and the repartition topic is purged, then stop it."""
    got = collections.defaultdict(list)
    with JavaApp(tmp_path, run, WORDCOUNT, properties(tmp_path / f"{run}.properties", config)) as app:
        def counted():
            app.alive()
            for msg in check.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                got[msg.key().decode()].append(struct.unpack(">q", msg.value())[0])
            return got == want or any(len(got[w]) > len(want.get(w, ())) for w in got)

        try:
            wait_until(counted, timeout=WAIT_S, interval=0, what="the word counts")
        except AssertionError as e:
            raise AssertionError(f"{e}: got {dict(got)}, want {want}") from None
        assert got == want
        repartition = f"{config['application.id']}-KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition"

        def purged():     # Streams deletes the repartition records it has committed (DeleteRecords)
            app.alive()
            marks = ends(check, repartition).values()
            return sum(high for _, high in marks) > 0 and all(low == high for low, high in marks)

        wait_until(purged, timeout=WAIT_S, interval=0.1, what=f"{repartition} purged")


def assert_compacted(bootstrap, *topics):
    """Each of `topics` has cleanup.policy=compact (DescribeConfigs)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    for resource, future in admin.describe_configs(resources, request_timeout=30).items():
        assert future.result(timeout=30)["cleanup.policy"].value == "compact", resource


def connect_worker(bootstrap, **settings):
    if not os.path.isdir(CONNECT_PLUGINS):
        raise AssertionError(f"{CONNECT_PLUGINS} is missing: run `make interop-tools`")
    return {"bootstrap.servers": bootstrap,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "offset.flush.interval.ms": 100, "plugin.path": CONNECT_PLUGINS,
            # the plugins' ServiceLoader manifests, not a scan of every class (5 s here)
            "plugin.discovery": "service_load", **settings}


def file_source(name, path, topic):
    return {"name": name, "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "file": str(path), "topic": topic,
            # the worker creates the topic (CreateTopics): one partition keeps the lines in order
            "topic.creation.default.partitions": "1", "topic.creation.default.replication.factor": "-1"}


def file_sink(name, path, topic):
    """FileStreamSink `name`: its consumer group is connect-<name>."""
    return {"name": name, "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "file": str(path), "topics": topic}


def append_lines(path, lines):
    with open(path, "a") as f:
        f.write("".join(f"{line}\n" for line in lines))


def wait_sunk(app, path, lines):
    """Wait until the sink file holds `lines`."""
    def sunk():
        app.alive()
        return path.exists() and len(path.read_text().splitlines()) >= len(lines)

    wait_until(sunk, timeout=WAIT_S, interval=0.1, what=f"{len(lines)} lines in {path.name}")
    assert path.read_text().splitlines() == lines


def assert_topic_and_sink_offsets(app, bootstrap, topic, sink_name, lines):
    """`topic` holds `lines` (read committed) and the sink's group has committed past them;
    the records."""
    check = consumer(bootstrap, **{"group.id": f"connect-{sink_name}"})
    try:
        records = read_records(check, topic, len(lines))
        assert [r.value().decode() for r in records] == lines

        def sink_committed():     # the next offset after the last record it wrote
            app.alive()
            return check.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == records[-1].offset() + 1

        wait_until(sink_committed, timeout=WAIT_S, interval=0.1, what="the sink's committed offsets")
        return records
    finally:
        check.close()


def read_records(check, topic, n):
    """`topic`'s first n records (one partition), and any more there are at once."""
    check.assign([TopicPartition(topic, 0, 0)])
    out = []

    def read():
        for msg in check.consume(100, 0.5):
            assert msg.error() is None, msg.error()
            out.append(msg)
        return len(out) >= n

    wait_until(read, timeout=WAIT_S, interval=0, what=f"{n} records of {topic}")
    out.extend(check.consume(100, 0.5))
    return out


def test_connect_standalone_file_source_and_sink(bootstrap, tmp_path, topic_name):
    source_file, sink_file = tmp_path / "source.txt", tmp_path / "sink.txt"
    lines = [f"line {i} through Kafka Connect" for i in range(3)]
    append_lines(source_file, lines)
    worker = properties(tmp_path / "worker.properties", connect_worker(
        bootstrap, **{"offset.storage.file.filename": tmp_path / "offsets", "listeners": "http://127.0.0.1:0"}))
    sink_name = f"sink-{topic_name}"
    source = properties(tmp_path / "source.properties", file_source(f"source-{topic_name}", source_file, topic_name))
    sink = properties(tmp_path / "sink.properties", file_sink(sink_name, sink_file, topic_name))
    with JavaApp(tmp_path, "connect-standalone", CONNECT_STANDALONE, worker, source, sink) as app:
        wait_sunk(app, sink_file, lines)
        more = ["a line appended while the worker runs", "and one more"]
        append_lines(source_file, more)
        wait_sunk(app, sink_file, lines + more)
        assert_topic_and_sink_offsets(app, bootstrap, topic_name, sink_name, lines + more)


def test_connect_distributed_exactly_once_restart_and_offset_reset(bootstrap, tmp_path, topic_name):
    """A distributed worker (its configs, offsets and statuses in compacted topics it creates,
    Connect's own group protocol) with exactly-once source support (the source task's
    records in transactions; the worker fences its producers), connectors added through its
    REST API; restarted, it carries on from its topics; the sink's offsets read and reset
    through the REST API (KIP-875: its group's offsets, deleted), it writes every line again."""
    source_file, sink_file = tmp_path / "source.txt", tmp_path / "sink.txt"
    lines = [f"line {i} through Connect's distributed worker" for i in range(3)]
    append_lines(source_file, lines)
    rest = f"http://127.0.0.1:{free_port()}"
    internal = [f"{topic_name}-{kind}" for kind in ("config", "offset", "status")]
    worker = properties(tmp_path / "worker.properties", connect_worker(bootstrap, **{
        "group.id": f"connect-{topic_name}", "listeners": rest, "exactly.once.source.support": "enabled",
        "config.storage.topic": internal[0], "offset.storage.topic": internal[1], "status.storage.topic": internal[2],
        "config.storage.replication.factor": -1, "offset.storage.replication.factor": -1,
        "status.storage.replication.factor": -1, "offset.storage.partitions": 1, "status.storage.partitions": 1}))
    sink_name = f"sink-{topic_name}"
    with JavaApp(tmp_path, "connect-distributed-1", CONNECT_DISTRIBUTED, worker) as app:
        for config in (file_source(f"source-{topic_name}", source_file, topic_name),
                       file_sink(sink_name, sink_file, topic_name)):
            rest_call(app, "POST", f"{rest}/connectors", {"name": config["name"], "config": config})
        wait_sunk(app, sink_file, lines)
    assert_compacted(bootstrap, *internal)
    more = ["a line appended while the worker was down"]
    append_lines(source_file, more)
    with JavaApp(tmp_path, "connect-distributed-2", CONNECT_DISTRIBUTED, worker) as app:
        wait_sunk(app, sink_file, lines + more)
        records = assert_topic_and_sink_offsets(app, bootstrap, topic_name, sink_name, lines + more)
        # KIP-875: the stopped sink's offsets (its group's), reset: it writes every line again
        sink_url = f"{rest}/connectors/{sink_name}"
        rest_call(app, "PUT", f"{sink_url}/stop")
        wait_until(lambda: rest_call(app, "GET", f"{sink_url}/status")["connector"]["state"] == "STOPPED",
                   timeout=WAIT_S, interval=0.2, what=f"{sink_name} stopped")
        assert rest_call(app, "GET", f"{sink_url}/offsets") == {"offsets": [{
            "partition": {"kafka_topic": topic_name, "kafka_partition": 0},
            "offset": {"kafka_offset": records[-1].offset() + 1}}]}
        rest_call(app, "DELETE", f"{sink_url}/offsets")
        assert rest_call(app, "GET", f"{sink_url}/offsets") == {"offsets": []}
        rest_call(app, "PUT", f"{sink_url}/resume")
        wait_sunk(app, sink_file, (lines + more) * 2)
    check = consumer(bootstrap)
    try:      # a transaction's commit marker after the last record
        assert ends(check, topic_name)[0][1] > records[-1].offset() + 1
    finally:
        check.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest_call(app, method, url, body=None):
    """`method` `url` on a Connect worker's REST API (JSON), once it takes the request; the
    answer's JSON, or None if it has none."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    answer = []

    def answered():
        app.alive()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer.append(response.read())
                return True
        except (ConnectionError, urllib.error.URLError) as e:
            # 404: its resources are not there yet; 409: its group is rebalancing; 503: it is starting
            if isinstance(e, urllib.error.HTTPError) and e.code not in (404, 409, 503):
                raise AssertionError(f"{method} {url}: {e.code} {e.read()[:500]}") from e
            return False

    wait_until(answered, timeout=WAIT_S, interval=0.2, what=f"{method} {url}")
    return json.loads(answer[0]) if answer[0] else None
