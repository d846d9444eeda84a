"""The leader's view of its followers: the high watermark and the ISR it proposes.

Kafka's rules (Partition.maybeExpandIsr / maybeShrinkIsr / maybeIncrementLeaderHW),
sans-IO: the leader worker feeds it the time, its own log end offset and each
follower's published one (daemon/replication/progress.py), and asks it for the high
watermark and for an ISR to propose; the broker decides (daemon/broker/replication.py).

- Caught up: a follower is caught up at time t if its log end offset has reached the
  leader's log end offset as it was at t (Kafka's lastCaughtUpTimeMs, with the leader's
  log end sampled here instead of at each fetch). `history` keeps (time, leader log end)
  samples for that.
- Shrink: an in-sync follower not caught up for replica.lag.time.max.ms leaves the ISR.
- Expand: an out-of-sync follower whose log end has reached the high watermark and the
  log end this leader started at (so it holds everything acknowledged, and nothing from
  before this leader that the leader does not have), and that is caught up, joins.
- Committed and maximal ISR (KIP-497 / Kafka's PendingExpandIsr, PendingShrinkIsr): the
  committed ISR is the one the broker saved (update()). While a proposal waits for the
  broker, the high watermark counts the union of both: a follower being added already
  holds the leader back, one being dropped still does. So every replica the saved ISR
  names, before or after the change, has every record below the high watermark.
- High watermark: the smallest log end offset over the maximal ISR, the leader's
  included; it never goes back. A follower that has not published yet (-1) holds it.
- min.insync.replicas is checked by the leader against the committed ISR.

Owned by the leader worker's main thread.
"""
from collections import deque

__all__ = ["InSyncReplicas", "UNKNOWN"]

UNKNOWN = -1
SAMPLE_EVERY_MS = 5      # leader log end samples kept at most this often
REFUSED_RETRY_MS = 200   # a proposal the broker refused is not made again sooner


class InSyncReplicas:
    def __init__(self, replica_id, replicas, isr, partition_epoch, lag_time_max_ms, start_offset,
                 high_watermark, now_ms):
        """start_offset: the leader's log end when it opened (its epoch's start);
        high_watermark: where it starts (never above the leader's log end)."""
        self.replica_id = replica_id
        self.followers = [r for r in replicas if r != replica_id]
        self.isr = list(isr)
        self.partition_epoch = partition_epoch
        self.lag_time_max_ms = lag_time_max_ms
        self.start_offset = start_offset
        self.high_watermark = high_watermark
        self.proposed = None                    # an ISR sent to the broker, not yet saved
        self.refused = None                     # (isr, time ms) of the last proposal the broker did not take
        self.caught_up_ms = {r: (now_ms if r in self.isr else 0) for r in self.followers}
        self.log_end = {r: UNKNOWN for r in self.followers}
        self.history = deque([(now_ms, start_offset)])

    @property
    def maximal(self):
        """The replicas the high watermark waits for: committed ISR plus any proposed."""
        if self.proposed is None:
            return self.isr
        return self.isr + [r for r in self.proposed if r not in self.isr]

    def observe(self, now_ms, leader_log_end, follower_log_ends):
        """Take the followers' published log ends; returns the high watermark (moved
        forward if it can)."""
        history = self.history
        if leader_log_end != history[-1][1] and now_ms - history[-1][0] >= SAMPLE_EVERY_MS:
            history.append((now_ms, leader_log_end))
        horizon = now_ms - 2 * self.lag_time_max_ms
        while len(history) > 1 and history[1][0] < horizon:
            history.popleft()
        for r in self.followers:
            leo = follower_log_ends[r]
            self.log_end[r] = leo
            if leo >= leader_log_end:
                self.caught_up_ms[r] = now_ms
            elif leo >= 0:
                for t, end in reversed(history):
                    if end <= leo:
                        if t > self.caught_up_ms[r]:
                            self.caught_up_ms[r] = t
                        break
        hw = leader_log_end
        for r in self.maximal:
            if r != self.replica_id:
                leo = self.log_end.get(r, UNKNOWN)
                if leo < hw:
                    hw = leo
        if hw > self.high_watermark:
            self.high_watermark = hw
        return self.high_watermark

    def wanted(self, now_ms):
        """The ISR Kafka's rules want now: (isr, reason), or None when it is the
        committed one."""
        want, why = [], []
        for r in [self.replica_id] + self.followers:
            if r == self.replica_id:
                want.append(r)
                continue
            lagging = now_ms - self.caught_up_ms[r] > self.lag_time_max_ms
            if r in self.isr:
                if lagging:
                    why.append(f"replica {r} left: not caught up for {now_ms - self.caught_up_ms[r]} ms "
                               f"(replica.lag.time.max.ms={self.lag_time_max_ms}) at offset {self.log_end[r]}")
                else:
                    want.append(r)
            elif not lagging and self.log_end[r] >= max(self.high_watermark, self.start_offset):
                want.append(r)
                why.append(f"replica {r} joins: caught up at offset {self.log_end[r]}")
        if sorted(want) == sorted(self.isr):
            return None
        if self.refused is not None and sorted(self.refused[0]) == sorted(want) and \
                now_ms - self.refused[1] < REFUSED_RETRY_MS:
            return None   # the broker just said no to this one (a follower not running yet): not again at once
        return want, "; ".join(why)

    def propose(self, isr):
        self.proposed = list(isr)

    def update(self, isr, partition_epoch, now_ms=None):
        """The broker saved (or stands by) this ISR: it is the committed one now."""
        if self.proposed is not None and sorted(self.proposed) != sorted(isr):
            self.refused = (self.proposed, self.history[-1][0] if now_ms is None else now_ms)
        self.isr = list(isr)
        self.partition_epoch = partition_epoch
        self.proposed = None
        for r in self.followers:
            if r in self.isr and self.caught_up_ms[r] == 0:
                self.caught_up_ms[r] = self.history[-1][0]
