"""partition_health from a StatusResponse: the flags of each partition (under-replicated,
under min ISR, offline: no leader or the leader's dir offline) and each follower's lag
in records and in time (0 while caught up, now minus its last caught-up time while
behind, -1 when it never was)."""
from odradek.client.partition_health import FollowerLag, flags_by_partition, health
from odradek.client.protocol import messages as m

NOW = 1_000_000


def status():
    dirs = [m.LogDirStatus(path=f"/d{i}", state=s) for i, s in enumerate(["online", "online", "offline"])]
    f = lambda r, leo, lag, caught: m.FollowerStatus(replica_id=r, state="running", log_end_offset=leo,  # noqa: E731
                                                     lag_records=lag, caught_up_ms=caught, size_bytes=10)
    parts = [
        m.PartitionStatus(topic="t", partition=0, leader_id=0, replica_nodes=[0, 1], isr_nodes=[0, 1],
                          min_insync_replicas=2, followers=[f(1, 5, 0, NOW - 7000)]),
        m.PartitionStatus(topic="t", partition=1, leader_id=1, replica_nodes=[1, 0], isr_nodes=[1],
                          min_insync_replicas=2, followers=[f(0, 3, 4, NOW - 2500)]),
        m.PartitionStatus(topic="t", partition=2, leader_id=2, replica_nodes=[2], isr_nodes=[2],
                          min_insync_replicas=1),
        m.PartitionStatus(topic="t", partition=3, leader_id=-1, replica_nodes=[0, 1], isr_nodes=[],
                          min_insync_replicas=1, followers=[f(1, -1, -1, 0)]),
    ]
    return m.StatusResponse(log_dirs=[d.path for d in dirs], partitions=parts, log_dir_states=dirs)


def test_flags_and_counts_agree():
    st = status()
    assert flags_by_partition(st) == {("t", 0): [], ("t", 1): ["under-replicated", "under-min-ISR"],
                                      ("t", 2): ["offline"], ("t", 3): ["under-replicated", "under-min-ISR", "offline"]}
    h = health(st, NOW)
    assert (h.partitions, h.under_replicated, h.under_min_isr, h.offline) == \
        (4, ["t-1", "t-3"], ["t-1", "t-3"], ["t-2", "t-3"])


def test_a_replica_being_added_by_a_move_is_not_under_replication_and_the_partition_is_flagged_moving():
    st = status()
    st.partitions[0].replica_nodes, st.partitions[0].adding_replicas = [0, 1, 2], [2]
    st.partitions[0].removing_replicas = [1]
    assert flags_by_partition(st)[("t", 0)] == ["moving"]
    h = health(st, NOW)
    assert (h.under_replicated, h.moving) == (["t-1", "t-3"], ["t-0"])


def test_follower_lag_in_records_and_time():
    assert health(status(), NOW).followers == [
        FollowerLag("t", 0, 1, "running", True, 5, 0, 0, 10),          # caught up now: 0 ms, however old
        FollowerLag("t", 1, 0, "running", False, 3, 4, 2500, 10),     # behind since its last caught-up time
        FollowerLag("t", 3, 1, "running", False, -1, -1, -1, 10)]      # never caught up: not known
