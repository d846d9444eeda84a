"""min.insync.replicas is a topic config (Kafka's name and semantics): set at create or
by alter, shown by describe_configs with its source, and checked by the leader per
acks=all batch, so a producer attached before an alter follows the new value."""
import json
import os
import signal

from click.testing import CliRunner

from odradek.client import Admin, Producer
from odradek.client.errors import InvalidConfig, NotEnoughReplicas
from odradek.daemon.cli import cli
from support.broker import BrokerProcess, wait_until


def deliver(producer, topic):
    """Produce one record to partition 0 and wait for its delivery report: (error, offset)."""
    reports = []
    producer.produce(topic, b"v", partition=0, on_delivery=lambda err, rec: reports.append((err, rec.offset())))
    assert producer.flush(10) == 0
    assert len(reports) == 1
    return reports[0]


def restarted_worker(admin, topic, old_pid):
    """Wait until partition 0 of `topic` has a running worker other than `old_pid`."""
    def running():
        w = [w for w in admin.status([topic]).workers if (w.topic, w.partition) == (topic, 0)]
        return w and w[0].state == "running" and w[0].pid != old_pid and w[0].pid
    return wait_until(running, what=f"a new worker for {topic}-0")


def test_acks_all_follows_the_topics_min_insync_replicas_per_batch(broker):
    with Admin(broker.socket_path) as admin:
        assert admin.create_topic("t", 1, config={"min.insync.replicas": "2"}) == (1, 1)  # above RF: accepted
        admin.create_topic("plain", 1)
        assert admin.describe_configs("t")["min.insync.replicas"] == ("2", "topic")
        assert admin.describe_configs("plain")["min.insync.replicas"] == ("1", "default")
        worker = restarted_worker(admin, "t", None)
        with Producer({"socket": broker.socket_path, "acks": "all"}) as all_, \
                Producer({"socket": broker.socket_path, "acks": 1}) as one:
            err, _ = deliver(all_, "t")
            assert isinstance(err.exception, NotEnoughReplicas)          # refused before append ...
            assert deliver(one, "t") == (None, 0)              # ... so acks=1 gets offset 0
            assert deliver(all_, "plain") == (None, 0)

            admin.alter_configs("t", {"min.insync.replicas": 1})
            assert admin.describe_configs("t")["min.insync.replicas"] == ("1", "topic")
            worker = restarted_worker(admin, "t", worker)
            assert deliver(all_, "t") == (None, 1)             # the same producer, re-attached

            admin.alter_configs("t", {"min.insync.replicas": 2})
            worker = restarted_worker(admin, "t", worker)
            err, _ = deliver(all_, "t")                        # attached before: refused now
            assert isinstance(err.exception, NotEnoughReplicas)
            assert deliver(one, "t") == (None, 2)

            admin.alter_configs("t", delete=["min.insync.replicas"])
            assert admin.describe_configs("t")["min.insync.replicas"] == ("1", "default")
            # appended, refused, then lowered: the refusal used up the batch's sequences,
            # and the restarted worker knows it from its producer-state snapshot
            restarted_worker(admin, "t", worker)
            assert deliver(all_, "t") == (None, 3)


def test_bad_min_insync_replicas_is_refused_by_name_and_topics_describe_shows_it(broker):
    with Admin(broker.socket_path) as admin:
        for bad in ("0", "two"):
            try:
                admin.create_topic("t", 1, config={"min.insync.replicas": bad})
                raise AssertionError(f"min.insync.replicas={bad} was accepted")
            except InvalidConfig as e:
                assert "min.insync.replicas" in str(e)
        assert "t" not in admin.list_topics()
    def run(*args):
        r = CliRunner().invoke(cli, list(args) + ["--socket", broker.socket_path])
        assert r.exit_code == 0, r.output
        return r.stdout
    run("topics", "create", "t", "--partitions", "1", "--config", "min.insync.replicas=3")
    head = run("topics", "describe", "t").splitlines()[0]
    assert "MinInSyncReplicas: 3 (above the ISR of 1 partition: acks=all gets NOT_ENOUGH_REPLICAS)" in head
    run("topics", "alter", "t", "--set", "min.insync.replicas=1")
    head = run("topics", "describe", "t").splitlines()[0]
    assert "MinInSyncReplicas: 1 " in head and "above" not in head


def test_the_brokers_min_insync_replicas_is_the_default_and_sighup_rereads_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "odradek.toml"
    settings = (f"log.dirs = {json.dumps([str(data)])}\n"
                f"socket.path = {json.dumps(str(data / 'odradek.sock'))}\n")
    config.write_text(settings + "min.insync.replicas = 2\n")
    b = BrokerProcess(data, config=config).start()
    try:
        with Admin(b.socket_path) as admin:
            admin.create_topic("t", 1)
            assert admin.describe_configs("t")["min.insync.replicas"] == ("2", "broker")
            config.write_text(settings)   # back to 0: 1 for a topic of one replica
            os.kill(b.pid, signal.SIGHUP)
            wait_until(lambda: "SIGHUP: reloaded topic defaults" in b.stderr(), what="the reload")
            assert admin.describe_configs("t")["min.insync.replicas"] == ("1", "default")
        assert b.stop() == 0, b.stderr()
        assert not b.leftovers()
    finally:
        b.kill()
