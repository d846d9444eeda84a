"""Truncation by leader epoch (KIP-101/KIP-279), over two local epoch caches."""
from odradek.daemon.replication.truncation import divergence


def test_a_follower_that_is_a_prefix_keeps_everything():
    assert divergence([(0, 0), (1, 50)], 80, [(0, 0), (1, 50)], 100) is None
    assert divergence([(0, 0)], 40, [(0, 0), (1, 50)], 100) is None


def test_an_old_leader_cuts_the_tail_its_successor_never_had():
    # the old leader (epoch 1) wrote 50..99; the new leader (epoch 2) had 50..89
    assert divergence([(0, 0), (1, 50)], 100, [(0, 0), (1, 50), (2, 90)], 120) == 90


def test_a_follower_ahead_of_a_leader_that_had_less_of_the_same_epoch():
    # both followed epoch 1; the new leader had only up to 95 of it
    assert divergence([(1, 0)], 100, [(1, 0), (2, 95)], 95) == 95


def test_an_epoch_the_leader_never_saw_is_cut_whole():
    # the old leader wrote epoch 3 from 70 and none of it reached the new leader (epoch 4)
    assert divergence([(1, 0), (3, 70)], 90, [(1, 0), (4, 70)], 100) == 70


def test_several_rounds_down_to_a_common_epoch():
    # follower: epochs 1, 3, 5; leader: 1, 2, 6: the common one is 1, ended at 40 by the leader
    assert divergence([(1, 0), (3, 45), (5, 60)], 80, [(1, 0), (2, 40), (6, 70)], 90) == 40


def test_a_leader_that_knows_no_epoch_at_or_below_ours():
    assert divergence([(0, 0)], 30, [(3, 20)], 50) == 20


def test_without_epochs_only_a_tail_past_the_leader_is_known_to_diverge():
    assert divergence([], 30, [(0, 0)], 20) == 20
    assert divergence([(0, 0)], 10, [], 20) is None
