"""Cluster metadata: topic validation, placement over log dirs, crash-safe persistence."""
import json
import os

import pytest

from odradek.client.errors import (InvalidConfig, InvalidPartitions, InvalidReplicaAssignment, InvalidReplicationFactor,
                                   InvalidTopic, ReassignmentInProgress,
                                   StorageError, TopicAlreadyExists, UnknownTopicOrPartition)
from odradek.daemon.broker.metadata import PRODUCER_ID_BLOCK, Metadata, validate_topic_name
from odradek.daemon.storage import LogConfig


@pytest.fixture
def dirs(tmp_path):
    out = [str(tmp_path / d) for d in "abc"]
    for d in out:
        os.makedirs(d)
    return out


@pytest.mark.parametrize("name", ["orders", "a.b_c-D9", "x" * 249])
def test_legal_topic_names_pass(name):
    validate_topic_name(name)


@pytest.mark.parametrize("name, message", [
    ("", "cannot be empty"), (".", "not allowed"), ("..", "not allowed"),
    ("x" * 250, "the limit is 249"), ("a b", "characters other than"), ("é", "characters other than"),
    ("a/b", "characters other than"),
])
def test_illegal_topic_names_are_refused(name, message):
    with pytest.raises(InvalidTopic, match=message):
        validate_topic_name(name)


def test_leaders_and_replicas_spread_over_distinct_dirs_and_the_isr_starts_full(dirs):
    md = Metadata(dirs)
    t = md.create_topic("orders", 6, 3, {}, LogConfig())
    assert all(sorted(p.replicas) == [0, 1, 2] and p.isr == p.replicas and p.leader == p.replicas[0]
               for p in t.partitions)
    assert sorted(p.leader for p in t.partitions) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(InvalidReplicationFactor, match="replication factor 4 needs as many log.dirs; there are 3"):
        md.create_topic("copies", 1, 4, {}, LogConfig())
    assert "copies" not in md.topics


def test_replicas_go_to_online_dirs_only(dirs):
    md = Metadata(dirs)
    md.offline_dirs = {1}
    t = md.create_topic("orders", 4, 2, {}, LogConfig())
    assert all(1 not in p.replicas and sorted(p.replicas) == [0, 2] for p in t.partitions)
    with pytest.raises(InvalidReplicationFactor, match="2 of 3 are online"):
        md.create_topic("copies", 1, 3, {}, LogConfig())


def test_an_isr_change_bumps_the_partition_epoch_and_is_saved(dirs):
    md = Metadata(dirs)
    md.create_topic("orders", 1, 3, {}, LogConfig())
    p = md.set_isr("orders", 0, [2, 0])
    assert (p.isr, p.partition_epoch) == ([0, 2], 1)   # in replica order
    md.save()
    (again,) = Metadata.load(dirs).topic("orders").partitions
    assert (again.isr, again.partition_epoch) == ([0, 2], 1)


def test_metadata_survives_a_reload_from_any_log_dir(dirs):
    md = Metadata(dirs)
    md.create_topic("orders", 2, 1, {"retention.ms": 1000}, LogConfig())
    md.save()
    os.unlink(os.path.join(dirs[0], "cluster-metadata.json"))  # a lost disk
    again = Metadata.load(dirs)
    assert again.topic("orders").configs == {"retention.ms": "1000"}
    assert [p.replicas for p in again.topic("orders").partitions] == \
        [p.replicas for p in md.topic("orders").partitions]


def test_a_topic_saved_before_replication_loads_with_isr_its_leader(dirs):
    doc = {"version": 2, "next_producer_id": 0, "topics": {"old": {"topic_id": "ab" * 16, "configs": {}, "partitions": [
        {"partition": 0, "replicas": [1, 2, 0], "leader": 1, "leader_epoch": 4, "isr": [1, 2, 0]}]}}}
    with open(os.path.join(dirs[0], "cluster-metadata.json"), "w") as f:
        json.dump(doc, f)
    md = Metadata.load(dirs)
    (p,) = md.topic("old").partitions
    assert (p.replicas, p.leader, p.leader_epoch, p.isr) == ([1, 2, 0], 1, 4, [1])   # the leader alone had data
    (added,) = md.create_partitions("old", 2)
    assert sorted(added.replicas) == [0, 1, 2] and added.isr == added.replicas
    md.save()   # the correction is written with the next save
    saved = json.load(open(os.path.join(dirs[2], "cluster-metadata.json")))
    assert saved["topics"]["old"]["partitions"][0]["isr"] == [1]


def test_the_newest_copy_wins(dirs):
    md = Metadata(dirs)
    md.create_topic("a", 1, 1, {}, LogConfig())
    md.save()
    stale = open(os.path.join(dirs[1], "cluster-metadata.json")).read()
    md.create_topic("b", 1, 1, {}, LogConfig())
    md.save()
    open(os.path.join(dirs[1], "cluster-metadata.json"), "w").write(stale)  # an old copy
    assert sorted(Metadata.load(dirs).topics) == ["a", "b"]
    assert json.loads(stale)["version"] < Metadata.load(dirs).version


@pytest.mark.parametrize("args, error", [
    (("orders", 1, 1, {}), TopicAlreadyExists),
    (("orders_x", 0, 1, {}), InvalidPartitions),
    (("other", 1, 4, {}), InvalidReplicationFactor),
    (("other", 1, 1, {"retention.ms": "soon"}), InvalidConfig),
    (("other", 1, 1, {"no.such.key": "1"}), InvalidConfig),
    (("bad name", 1, 1, {}), InvalidTopic),
])
def test_a_bad_create_changes_nothing(dirs, args, error):
    md = Metadata(dirs)
    md.create_topic("orders", 1, 1, {}, LogConfig())
    with pytest.raises(error):
        md.create_topic(*args, LogConfig())
    assert list(md.topics) == ["orders"]


def test_topics_colliding_on_dot_and_underscore_are_refused(dirs):
    md = Metadata(dirs)
    md.create_topic("a.b", 1, 1, {}, LogConfig())
    with pytest.raises(InvalidTopic, match="collides with 'a.b'"):
        md.create_topic("a_b", 1, 1, {}, LogConfig())


def test_partitions_only_grow(dirs):
    md = Metadata(dirs)
    md.create_topic("orders", 2, 1, {}, LogConfig())
    added = md.create_partitions("orders", 5)
    assert [p.partition for p in added] == [2, 3, 4]
    assert all(p.replicas == p.isr == [p.leader] for p in added)
    with pytest.raises(InvalidPartitions, match="must be larger"):
        md.create_partitions("orders", 5)


def test_unknown_topic_and_partition_say_how_to_fix_it(dirs):
    md = Metadata(dirs)
    with pytest.raises(UnknownTopicOrPartition, match="odradek topics create nope"):
        md.topic("nope")
    md.create_topic("orders", 2, 1, {}, LogConfig())
    with pytest.raises(UnknownTopicOrPartition, match="partitions 0..1, not 2"):
        md.partition("orders", 2)


def test_alter_configs_sets_and_deletes_and_validates_first(dirs):
    md = Metadata(dirs)
    md.create_topic("orders", 1, 1, {"retention.ms": "1000"}, LogConfig())
    md.alter_configs("orders", {"segment.bytes": 4096}, delete_keys=["retention.ms"])
    assert md.topic("orders").configs == {"segment.bytes": "4096"}
    with pytest.raises(InvalidConfig):
        md.alter_configs("orders", {"segment.bytes": "huge"})
    assert md.topic("orders").configs == {"segment.bytes": "4096"}


def test_producer_ids_after_a_reload_start_past_the_reserved_block(dirs):
    md = Metadata(dirs)
    assert [md.allocate_producer_id() for _ in range(3)] == [0, 1, 2]
    assert Metadata.load(dirs).allocate_producer_id() == PRODUCER_ID_BLOCK


def test_producer_ids_are_saved_once_per_block_not_once_per_producer(dirs):
    md = Metadata(dirs)
    ids = [md.allocate_producer_id() for _ in range(PRODUCER_ID_BLOCK)]
    assert ids == list(range(PRODUCER_ID_BLOCK)) and md.version == 1
    assert md.allocate_producer_id() == PRODUCER_ID_BLOCK and md.version == 2
    assert Metadata.load(dirs).allocate_producer_id() == 2 * PRODUCER_ID_BLOCK


def test_a_failed_reservation_hands_out_no_id_and_the_next_try_can_succeed(dirs):
    md = Metadata(dirs)
    md.allocate_producer_id()
    md.next_producer_id = md.producer_id_limit           # the block is used up
    os.rename(dirs[0], dirs[0] + ".gone")                 # the next save cannot be written
    with pytest.raises(StorageError, match="cannot write"):
        md.allocate_producer_id()
    assert md.next_producer_id == md.producer_id_limit == PRODUCER_ID_BLOCK
    assert not os.path.exists(dirs[0])                    # a missing dir is not recreated
    os.rename(dirs[0] + ".gone", dirs[0])
    assert md.allocate_producer_id() == PRODUCER_ID_BLOCK
    assert Metadata.load(dirs).allocate_producer_id() == 2 * PRODUCER_ID_BLOCK


def test_a_move_adds_the_new_replica_then_puts_it_in_the_old_ones_place(dirs):
    md = Metadata([*dirs, dirs[0] + "-d"])
    os.makedirs(dirs[0] + "-d")
    md.create_topic("orders", 1, 3, {}, LogConfig())
    (p,) = md.topic("orders").partitions
    first, epoch = list(p.replicas), p.partition_epoch
    free = ({0, 1, 2, 3} - set(first)).pop()
    md.start_move("orders", 0, first[0], free)
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == (first + [free], [free], [first[0]])
    assert p.partition_epoch == epoch + 1 and md.topic("orders").replication_factor == 3
    assert p.target_replicas == [free] + first[1:]   # the preferred leader's place is kept
    md.save()
    (saved,) = Metadata.load(md.log_dirs).topic("orders").partitions
    assert (saved.adding_replicas, saved.removing_replicas, saved.moving) == ([free], [first[0]], True)
    with pytest.raises(ReassignmentInProgress):
        md.start_move("orders", 0, first[1], first[0])
    md.set_isr("orders", 0, p.replicas)
    assert p.move_in_sync
    md.finish_move("orders", 0)
    assert (p.replicas, p.isr, p.moving, p.partition_epoch) == ([free] + first[1:], [free] + first[1:], False,
                                                                 epoch + 3)


def test_a_move_from_a_dir_without_a_replica_or_to_one_with_a_replica_changes_nothing(dirs):
    md = Metadata([*dirs, dirs[0] + "-d"])
    md.create_topic("orders", 1, 2, {}, LogConfig())
    (p,) = md.topic("orders").partitions
    before = (list(p.replicas), p.partition_epoch)
    free = ({0, 1, 2, 3} - set(p.replicas)).pop()
    with pytest.raises(InvalidReplicaAssignment, match="has no replica in log dir"):
        md.start_move("orders", 0, free, free)
    with pytest.raises(InvalidReplicaAssignment, match="already has a replica"):
        md.start_move("orders", 0, p.replicas[0], p.replicas[1])
    assert (p.replicas, p.partition_epoch, p.moving) == (*before, False)
