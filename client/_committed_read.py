"""isolation.level=read_committed (KIP-98): what a Consumer knows of one partition's
aborted transactions.

A read_committed fetch reads below the last stable offset (the partition state's
`PartitionState.last_stable_offset`, client/shm/LAYOUT.md) and hands the decoder
(odradek._hotpath.decode_fetch, daemon/c_ext/hp_consumer.c) the aborted transactions as
packed (producer id, first offset, marker offset) int64 triples: a transactional batch of
that producer with its baseOffset in [first, marker] is skipped (Kafka's abort ranges,
opened at the first offset, closed by the ABORT marker; control batches are skipped in
both isolation levels).

Where they come from: the partition's leader, from its segments' .txnindex
(`PartitionLog.collect_aborted_txns`), in the answer to GetSegment with
aborted_upper_bound set and no fd (client/protocol/PROTOCOL.md). The decoder asks for
them only when it meets a transactional batch at or above `known_upto` (status
FETCH_NEED_ABORTED): then one round trip gets every aborted transaction overlapping
[that batch, last stable offset), complete for good (a transaction that starts below the
LSO is decided and its marker indexed). Data with no transactional batch, and every
fetch below `known_upto`, costs nothing more than read_uncommitted; a stream of
transactions costs one GetSegment per fetch that reaches a new transaction.
"""
import os
import struct

from odradek.client.protocol import messages as m

__all__ = ["AbortedTxns"]

_TRIPLE = struct.Struct("=qqq")


class AbortedTxns:
    """The aborted transactions of a partition known to its reader, valid for batches
    whose baseOffset is in [known_from, known_upto). A fetch from below known_from (a
    seek back, a pause) forgets them first (`covering`)."""
    __slots__ = ("packed", "known_from", "known_upto")

    def __init__(self):
        self.forget()

    def forget(self):
        self.packed, self.known_from, self.known_upto = b"", 0, 0   # the first transactional batch asks

    def covering(self, position):
        """The (packed, known_upto) decode_fetch takes for a fetch from `position`."""
        if position < self.known_from:
            self.forget()
        return self.packed, self.known_upto

    def learn(self, client, tp, offset, last_stable_offset):
        """Ask the leader for the aborted transactions overlapping [offset, last_stable_offset)."""
        res, fds = client.call(m.GetSegmentRequest(topic=tp.topic, partition=tp.partition, offset=offset,
                                                   want_fd=False, aborted_upper_bound=last_stable_offset))
        for fd in fds:      # none asked for; a broker that sends some does not leak them
            os.close(fd)
        self.packed = b"".join(_TRIPLE.pack(t.producer_id, t.first_offset, t.last_offset)
                               for t in res.aborted_transactions)
        self.known_from, self.known_upto = offset, last_stable_offset
