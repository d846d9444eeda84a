"""Log dir identity (meta.properties) against the real broker with three log dirs: a
dir moved away, replaced by an empty one, or carrying another identity is offline at
start (not recreated, not written), only its partitions are offline with
KAFKA_STORAGE_ERROR naming it, the others keep their data; put back, all is online."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from odradek.client import Admin, Consumer, Producer, TopicPartition
from odradek.client.consumer import OFFSET_BEGINNING
from odradek.client.errors import InvalidReplicationFactor, StorageError
from odradek.daemon.storage import meta_properties
from support.broker import BrokerProcess, consume_n, multi_dir_broker

RECORDS = 12
PARTITIONS = 3


@pytest.fixture
def cluster(tmp_path):
    """A broker serving log dirs a, b, c (config file); killed and checked after the test."""
    b = multi_dir_broker(tmp_path, "abc")
    yield b
    b.kill()
    assert not b.leftovers(), f"processes left behind: {b.leftovers()}"


def fill(b):
    """Topic t, one partition led from each dir, RECORDS records each: {partition: leader dir}."""
    with Admin(b.socket_path) as admin:
        admin.create_topic("t", PARTITIONS, replication_factor=1)
        leaders = {p.partition: p.leader for p in admin.describe_topic("t").partitions}
    assert sorted(leaders.values()) == [0, 1, 2]
    p = Producer({"socket": b.socket_path})
    try:
        for part in range(PARTITIONS):
            for i in range(RECORDS):
                p.produce("t", value=f"{part}-{i}".encode(), partition=part)
        assert p.flush(10) == 0
    finally:
        p.close()
    return leaders


def read_all(b, partition):
    c = Consumer({"socket": b.socket_path})
    try:
        c.assign([TopicPartition("t", partition, OFFSET_BEGINNING)])
        return [r.value() for r in consume_n(c, RECORDS)]
    finally:
        c.close()


def expected(partition):
    return [f"{partition}-{i}".encode() for i in range(RECORDS)]


def move_away(path):
    os.rename(path, path + ".away")


def replace_with_empty(path):
    move_away(path)
    os.mkdir(path)


def replace_with_foreign(path):
    move_away(path)
    os.mkdir(path)
    meta_properties.write(path, meta_properties.MetaProperties(meta_properties.new_uuid(), meta_properties.new_uuid()))


def replace_with_another_clusters_dir(path):
    """A log dir of another cluster, its metadata copy newer than ours (version 1000, no
    topics): it must not win over our copies by its version."""
    replace_with_foreign(path)
    props = meta_properties.read(path)
    with open(os.path.join(path, "cluster-metadata.json"), "w") as f:
        json.dump({"version": 1000, "next_producer_id": 0, "cluster_id": props.cluster_id,
                   "directory_ids": [None, props.directory_id, None], "topics": {}}, f)


@pytest.mark.parametrize("damage, reason", [(move_away, "missing"),
                                            (replace_with_empty, "no meta.properties"),
                                            (replace_with_foreign, "cluster.id"),
                                            (replace_with_another_clusters_dir, "cluster.id")])
def test_a_lost_log_dir_is_offline_not_recreated_and_comes_back_when_put_back(cluster, damage, reason):
    b = cluster
    b.start()
    leaders = fill(b)
    ids = {}
    for i, d in enumerate(b.dirs):
        props = meta_properties.read(d)
        assert props is not None and len(props.directory_id) == 22
        ids[i] = props.directory_id
    assert b.stop() == 0

    lost = 1
    lost_part = next(p for p, d in leaders.items() if d == lost)
    damage(b.dirs[lost])
    before = sorted(os.listdir(b.dirs[lost])) if os.path.isdir(b.dirs[lost]) else None
    b.start()
    with Admin(b.socket_path) as admin:
        states = admin.status().log_dir_states
        assert [s.state for s in states] == ["online", "offline", "online"], states
        assert reason in states[lost].reason and states[lost].path == b.dirs[lost]
        with pytest.raises(StorageError, match=f"log dir {b.dirs[lost]} is offline"):
            admin.list_offsets("t", lost_part)
        admin.create_topic("u", PARTITIONS, replication_factor=2)   # placed on the online dirs only
        assert all(sorted(p.replicas) == [0, 2] for p in admin.describe_topic("u").partitions)
        with pytest.raises(InvalidReplicationFactor, match="2 of 3 are online"):
            admin.create_topic("v", 1, replication_factor=3)
        for part, d in leaders.items():
            if d != lost:
                assert admin.list_offsets("t", part)[0] == RECORDS
                assert read_all(b, part) == expected(part)
    out = subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "status", "--socket", b.socket_path],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"offline partitions (no leader, or its log dir is offline): t-{lost_part}" in out.stdout
    assert "1 of 3 log dirs offline" in out.stdout
    assert f"log dir {b.dirs[lost]} is offline" in b.stderr(tail=None)
    assert b.stop() == 0
    after = sorted(os.listdir(b.dirs[lost])) if os.path.isdir(b.dirs[lost]) else None
    assert after == before, "the offline dir was written to"

    if os.path.isdir(b.dirs[lost]):
        shutil.rmtree(b.dirs[lost])
    os.rename(b.dirs[lost] + ".away", b.dirs[lost])
    b.start()
    with Admin(b.socket_path) as admin:
        assert [s.state for s in admin.status().log_dir_states] == ["online"] * 3
        assert [s.directory_id for s in admin.status().log_dir_states] == [ids[0], ids[1], ids[2]]
    for part in range(PARTITIONS):
        assert read_all(b, part) == expected(part)
    assert b.stop() == 0


def test_with_every_log_dir_offline_the_broker_refuses_to_start_in_one_line(cluster):
    b = cluster
    b.start()
    fill(b)
    assert b.stop() == 0
    text = b.config.read_text()
    a, bb, c = b.dirs
    b.config.write_text(text.replace(f'"{a}", "{bb}"', f'"{bb}", "{a}"'))   # log.dirs reordered
    move_away(c)
    b.start(wait=False)
    assert b.proc.wait(30) != 0
    b.stop()
    lines = [ln for ln in b.stderr().splitlines() if "every log dir is offline" in ln]
    assert len(lines) == 1 and "log.dirs reordered" in lines[0] and f"{c}: missing" in lines[0], b.stderr()
    assert not os.path.exists(c)
    b.config.write_text(text)
    os.rename(c + ".away", c)
    b.start()
    for part in range(PARTITIONS):
        assert read_all(b, part) == expected(part)
    assert b.stop() == 0


def test_a_fresh_data_dir_is_formatted_and_starts(tmp_path):
    b = BrokerProcess(tmp_path / "new" / "data").start()
    try:
        props = meta_properties.read(b.data_dir)
        assert props is not None and len(props.directory_id) == 22 and len(props.cluster_id) == 22
        with Admin(b.socket_path) as admin:
            (state,) = admin.status().log_dir_states
            assert (state.state, state.directory_id) == ("online", props.directory_id)
        assert b.stop() == 0
    finally:
        b.kill()


def forget(b, path, *flags):
    return subprocess.run([sys.executable, "-m", "odradek.daemon.cli", "log-dirs", "forget-data", path,
                           "--config", str(b.config), *flags], capture_output=True, text=True, timeout=30)


def test_forget_data_formats_a_replaced_dir_only_when_asked_and_with_the_broker_stopped(cluster):
    b = cluster
    b.start()
    leaders = fill(b)
    lost = 2
    lost_part = next(p for p, d in leaders.items() if d == lost)
    refused = forget(b, b.dirs[lost], "--accept-data-loss")
    assert refused.returncode == 1 and "is online" in refused.stderr   # not lost yet
    assert b.stop() == 0
    replace_with_foreign(b.dirs[lost])
    b.start()
    for args, words in [((), f"discards the data of 1 partitions with no other in-sync copy (t-{lost_part})"),
                        (("--accept-data-loss",), "holds 1 entries")]:   # a foreign dir: empty it first
        r = forget(b, b.dirs[lost], *args)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and words in r.stderr, r.stderr
    os.unlink(os.path.join(b.dirs[lost], meta_properties.META_PROPERTIES))
    r = forget(b, b.dirs[lost], "--accept-data-loss")
    assert r.returncode == 1 and "in use by another odradek broker" in r.stderr, r.stderr   # running
    assert os.listdir(b.dirs[lost]) == []
    assert b.stop() == 0
    r = forget(b, b.dirs[lost], "--accept-data-loss")
    assert r.returncode == 0 and f"start empty at offset 0 at the next broker start: t-{lost_part}" in r.stdout, r
    b.start()
    with Admin(b.socket_path) as admin:
        assert [s.state for s in admin.status().log_dir_states] == ["online"] * 3
        assert admin.list_offsets("t", lost_part)[0] == 0
        for part in range(PARTITIONS):
            if part != lost_part:
                assert read_all(b, part) == expected(part)
    p = Producer({"socket": b.socket_path})
    try:
        p.produce("t", value=b"again", partition=lost_part)
        assert p.flush(10) == 0
    finally:
        p.close()
    with Admin(b.socket_path) as admin:
        assert admin.list_offsets("t", lost_part)[0] == 1
    assert b.stop() == 0
