"""Where a follower's log diverges from its leader's: truncation by leader epoch.

Kafka's rule (KIP-101, KIP-279): a follower asks the leader for the end offset of its
latest epoch (OffsetsForLeaderEpoch); the leader answers with the largest epoch it knows
at or below it and where that epoch ended in its log; the follower cuts its log to the
smaller of that and its own end of the same epoch, and asks again with an older epoch
when the leader answered one the follower does not have. Both logs then agree below the
cut: every batch below it was written by the same leader in the same epoch.

Here the follower reads its leader's whole leader-epoch cache (the leader-epoch-checkpoint
file in the leader's log dir, written before the leader appends in a new epoch), so the
exchange is a loop over two local caches, without a round trip.
"""
from odradek.daemon.storage.leader_epoch import UNDEFINED_EPOCH, LeaderEpochCache

__all__ = ["divergence"]


def divergence(follower_entries, follower_end, leader_entries, leader_end):
    """The offset to cut the follower's log to, so that it is a prefix of the leader's;
    None when it already is one (as far as epochs tell). Entries are (epoch, start
    offset) pairs, oldest first; *_end the log end offsets."""
    follower, leader = LeaderEpochCache(follower_entries), LeaderEpochCache(leader_entries)
    if follower.latest_epoch is None or leader.latest_epoch is None:
        # no epochs to compare (a log from before epochs were kept): only a tail past
        # the leader's end can be known to diverge
        return leader_end if follower_end > leader_end else None
    epoch = follower.latest_epoch
    while True:
        leader_epoch, leader_epoch_end = leader.end_offset_for(epoch, leader_end)
        if leader_epoch == UNDEFINED_EPOCH:
            # the leader knows no epoch at or below ours: nothing we wrote is its
            cut = min(follower_end, leader.entries[0][1])
            break
        follower_epoch, follower_epoch_end = follower.end_offset_for(leader_epoch, follower_end)
        if follower_epoch == leader_epoch or follower_epoch == UNDEFINED_EPOCH:
            cut = min(leader_epoch_end, follower_epoch_end)
            break
        epoch = follower_epoch   # we do not have the leader's epoch: compare our older one
    return cut if cut < follower_end else None
