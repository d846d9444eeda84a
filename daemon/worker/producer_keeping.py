"""A replica's producer (idempotence) state, loaded at open and snapshotted: shared by
the leader worker, which checks every batch against it, and the follower, which keeps
it up with what it copies so that it can lead at once (daemon/worker/producer_state.py
holds the state itself; storage/producer_snapshot.py the snapshot files).

A mixin: the class using it has `log` (a PartitionLog), `spec` (a WorkerSpec),
`producer_state` (a ProducerState) and `_state_loaded` (whether producer_state reflects
the log, so that it may be snapshotted).
"""
import logging
import time

from odradek.client.errors import StorageError
from odradek.daemon.storage import producer_snapshot
from odradek.daemon.worker.producer_state import ProducerState, batches_from_buffer

__all__ = ["ProducerStateKeeping", "REBUILD_BYTES", "REMEMBER_BATCHES"]

log = logging.getLogger(__name__)

REBUILD_BYTES = 64 << 20     # log tail scanned at open when no producer-state snapshot is usable
REMEMBER_BATCHES = 4096      # per producer, after a rebuild: re-delivered entries are found


class ProducerStateKeeping:
    def rebuild_producer_state(self):
        """Idempotence state: the newest producer-state snapshot at or below the log end
        plus the batches from its offset on; without one, the last REBUILD_BYTES of the
        log. Either way every entry a killed predecessor appended but never released is
        recognised as a duplicate (producer_state.py says why)."""
        lg, pdir = self.log, self.spec.partition_dir
        leo = lg.log_end_offset
        cut = producer_snapshot.delete_above(pdir, leo)
        if cut:
            log.warning("%s-%d: deleted producer-state snapshots above the log end %d: %s",
                        self.spec.topic, self.spec.partition, leo, cut)
        found = producer_snapshot.load_latest(pdir, lg.log_start_offset, leo)
        if found is None:
            tail, budget = [], REBUILD_BYTES
            for segment in reversed(lg.segments):
                tail.append(segment)
                budget -= segment.size
                if budget <= 0:
                    break
            tail.reverse()
            start, position, how = tail[0].base_offset, 0, "no snapshot, rebuilt from the log tail"
        else:
            start, entries = found
            self.producer_state.load(entries)
            tail = [s for s in lg.segments if s.next_offset > start or s is lg.active]
            position = lg.locate(start).position if start < leo else tail[0].size
            tail, how = (tail if start < leo else []), f"snapshot {start} loaded ({len(entries)} producers)"
        replayed = [0]

        def batches():
            for i, segment in enumerate(tail):
                pos = position if i == 0 else 0
                replayed[0] += segment.size - pos
                yield from batches_from_buffer(segment.view(0, segment.size), pos, transactions=True)
        aborted = []
        n = self.producer_state.replay(batches(), aborted)
        self._state_loaded = True
        restored = self.index_aborted_txns(aborted, only_missing=True)
        log.info("%s-%d: producer state: %s, replayed %d batches (%d bytes) from offset %d; %d open "
                 "transaction(s), %d aborted one(s) indexed again", self.spec.topic, self.spec.partition, how, n,
                 replayed[0], start, len(self.producer_state.txns.ongoing()), restored)

    def truncate_log_to(self, offset):
        """Cut the log at `offset` (its .txnindex entries past it go too) and rebuild the
        producer state from what is left: batches and open transactions above the cut
        must not outlive it (a promoted replica would hold the LSO at a transaction it no
        longer has)."""
        self.log.truncate_to(offset)
        self.producer_state = ProducerState(remember=REMEMBER_BATCHES)
        self.rebuild_producer_state()

    def index_aborted_txns(self, aborted, only_missing=False):
        """Add AbortedTxn entries to the .txnindex of their marker's segment (only those
        it lacks: the replay at open meets markers whose entry a crash may or may not have
        let us write). Returns how many were written."""
        written = 0
        for txn in aborted:
            segment = self.log.segments[self.log.segment_index(txn.last_offset)]
            if only_missing and segment.txn_index.has(txn.last_offset):
                continue
            try:
                self.log.append_aborted_txn(txn)
            except ValueError as e:   # a later entry is there and this one is not: a disk lost it
                log.warning("%s-%d: aborted transaction %s not indexed: %s", self.spec.topic,
                            self.spec.partition, txn, e)
                continue
            written += 1
        return written

    def follow_copied(self, data, high_watermark):
        """A replica copied `data` (whole batches, offsets assigned) into its log: its
        producer state and .txnindex follow, as the leader's did when it wrote them, so
        that it can lead at once. `high_watermark`: the leader's, published."""
        aborted = []
        self.producer_state.replay(batches_from_buffer(memoryview(data), 0, transactions=True), aborted)
        self.index_aborted_txns(aborted)
        self.producer_state.txns.on_high_watermark(high_watermark)

    def snapshot_producer_state(self, why, offset=None, durable=True):
        """Write the producer-state snapshot for `offset` (default the log end): at segment
        roll, clean close, a refused batch; returns its path (None if not written). A
        failure is logged: an older snapshot or the log tail stands in. durable=False
        writes it without fsyncs: after a refused batch it is there for a successor after
        this process dies, and a producer whose every batch is refused (acks=all below
        min.insync.replicas) must not cost the partition two fsyncs a batch; at a roll,
        sync_snapshot_with_roll has the roll's background job fsync it."""
        if not self._state_loaded:
            return None
        now = int(time.time() * 1000)
        entries = [producer_snapshot.SnapshotEntry(*e) for e in self.producer_state.snapshot_entries(now)]
        try:
            return producer_snapshot.write(self.spec.partition_dir,
                                           self.log.log_end_offset if offset is None else offset, entries,
                                           durable=durable)
        except StorageError as e:
            log.warning("%s-%d: no producer-state snapshot at %s: %s", self.spec.topic, self.spec.partition,
                        why, e)
            return None

    def sync_snapshot_with_roll(self, path):
        """Have the log's background job of the roll just made fsync the snapshot at
        `path` (written with durable=False) and the partition dir, after the rolled
        segment's files (PartitionLog.sync_with_roll), as Kafka's roll does: the append
        that rolled waits for no fsync. A failure is logged, as a snapshot's write is."""
        if path is None:
            return
        try:
            self.log.sync_with_roll([path, self.spec.partition_dir], f"producer-state snapshot {path}")
        except StorageError as e:
            log.warning("%s-%d: the producer-state snapshot %s is not synced: %s", self.spec.topic,
                        self.spec.partition, path, e)
