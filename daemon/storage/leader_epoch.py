"""The leader-epoch cache of one partition replica and its `leader-epoch-checkpoint` file,
as Apache Kafka's LeaderEpochFileCache and LeaderEpochCheckpointFile (KIP-101, KIP-279).

Each entry (epoch, start_offset) says: the leader of `epoch` wrote its first batch at
`start_offset`. Epochs and start offsets both increase strictly down the list. A replica
that rejoins a leader asks it end_offset_for(its latest epoch) (OffsetsForLeaderEpoch)
and truncates its log there: the tail it wrote under a leader that lost the data.

    cache = LeaderEpochCache()
    cache.assign(3, 0); cache.assign(5, 120)
    cache.end_offset_for(3, log_end_offset=200)   # (3, 120)
    cache.truncate_from_end(100)                  # the log was cut at 100: drops (5, 120)
    cache.truncate_from_start(40)                 # the log starts at 40: [(3, 40)]
    encode(cache.entries)                         # b"0\\n1\\n3 40\\n"

LeaderEpochCache is sans-IO; LeaderEpochFile reads and writes the text file (FORMAT.md,
"Leader-epoch checkpoint"), atomically as the other checkpoints are. PartitionLog
(log.py) owns one and keeps it in step with truncation and the log start.
"""
import logging
import os

from odradek.client.errors import StorageError
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import VERSION as CHECKPOINT_VERSION, decode_entries, encode_entries, write_atomically

__all__ = ["LeaderEpochCache", "LeaderEpochFile", "CorruptEpochFile", "encode", "decode",
           "UNDEFINED_EPOCH", "UNDEFINED_OFFSET", "VERSION"]

log = logging.getLogger(__name__)

VERSION = CHECKPOINT_VERSION   # LeaderEpochCheckpointFile.CURRENT_VERSION: the text format of every checkpoint
UNDEFINED_EPOCH = -1   # Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET
UNDEFINED_OFFSET = -1


class CorruptEpochFile(StorageError):
    """A leader-epoch-checkpoint that does not parse or whose entries are not monotonic."""


class LeaderEpochCache:
    """The (epoch, start_offset) entries, oldest first. Every mutator returns whether it
    changed anything (the caller then writes the file)."""

    def __init__(self, entries=()):
        self.entries = [(int(e), int(o)) for e, o in entries]

    def __repr__(self):
        return f"LeaderEpochCache({self.entries})"

    @property
    def latest_epoch(self):
        """The newest epoch, or None when empty."""
        return self.entries[-1][0] if self.entries else None

    def assign(self, epoch, start_offset):
        """The leader of `epoch` starts writing at `start_offset`. Ignored if that is the
        latest entry already, or the latest epoch with a lower start; otherwise every
        entry with an epoch >= `epoch` or a start offset >= `start_offset` is dropped
        (they were not monotonic with the new one) and the new entry appended."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"leader epoch {epoch} at offset {start_offset}: both must be >= 0")
        if self.entries:
            latest_epoch, latest_start = self.entries[-1]
            if epoch == latest_epoch and start_offset >= latest_start:
                return False
        kept = [(e, o) for e, o in self.entries if e < epoch and o < start_offset]
        dropped = self.entries[len(kept):]
        if len(dropped) > 1 or (dropped and dropped[0][1] != start_offset):
            log.warning("leader epoch %d at offset %d replaces entries %s", epoch, start_offset, dropped)
        self.entries = kept + [(epoch, start_offset)]
        return True

    def truncate_from_end(self, end_offset):
        """The log was cut at `end_offset`: drop the entries starting at or above it."""
        kept = [(e, o) for e, o in self.entries if o < end_offset]
        changed = len(kept) != len(self.entries)
        self.entries = kept
        return changed

    def truncate_from_start(self, start_offset):
        """The log now starts at `start_offset`: drop the entries starting at or below it
        but keep the latest of them, moved to `start_offset` (its epoch still covers the
        offsets from there to the next entry)."""
        below = [entry for entry in self.entries if entry[1] <= start_offset]
        if not below:
            return False
        first = (below[-1][0], start_offset)
        rest = self.entries[len(below):]
        changed = self.entries[:1] != [first] or len(below) > 1
        self.entries = [first] + rest
        return changed

    def end_offset_for(self, epoch, log_end_offset):
        """(epoch, end offset) answering OffsetsForLeaderEpoch for `epoch`: for the latest
        epoch, the log end; for an older one, the start offset of the first epoch above
        it, with the largest known epoch <= `epoch` (`epoch` itself if none is known);
        (UNDEFINED_EPOCH, UNDEFINED_OFFSET) if `epoch` is undefined or above every known one."""
        if epoch == UNDEFINED_EPOCH or not self.entries:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if epoch == self.entries[-1][0]:
            return epoch, log_end_offset
        higher = next((entry for entry in self.entries if entry[0] > epoch), None)
        if higher is None:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        floor = [e for e, _ in self.entries if e <= epoch]
        return (floor[-1] if floor else epoch), higher[1]

    def epoch_for_offset(self, offset):
        """The epoch whose leader wrote `offset`, or None if it is below every entry."""
        found = None
        for e, o in self.entries:
            if o > offset:
                break
            found = e
        return found


# == the file =================================================================================
def encode(entries):
    """The bytes of a leader-epoch-checkpoint holding `entries`."""
    return encode_entries(entries)


def decode(data, name="leader-epoch-checkpoint"):
    """The entries of a file's bytes; CorruptEpochFile naming `name` and the line if it
    does not parse, its count is wrong, or epochs or offsets do not increase."""
    def bad(lineno, why):
        return CorruptEpochFile(f"{name} line {lineno}: {why}")

    entries = []
    for lineno, line in decode_entries(data, bad):
        parts = line.split()
        try:
            epoch, offset = (int(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            epoch = None
        if epoch is None:
            raise bad(lineno, f"expected 'epoch startOffset' (two integers), found {line!r}")
        if epoch < 0 or offset < 0:
            raise bad(lineno, f"expected a non-negative epoch and offset, found {line!r}")
        if entries and (epoch <= entries[-1][0] or offset <= entries[-1][1]):
            raise bad(lineno, f"expected an epoch above {entries[-1][0]} starting above offset "
                              f"{entries[-1][1]}, found {line!r}")
        entries.append((epoch, offset))
    return entries


class LeaderEpochFile:
    """`leader-epoch-checkpoint` in a partition dir."""

    def __init__(self, partition_dir):
        self.path = os.path.join(partition_dir, filenames.LEADER_EPOCH_CHECKPOINT)

    def read(self):
        """The entries; None if there is no file; CorruptEpochFile if it is damaged."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return decode(data, self.path)

    def write(self, entries, durable=True):
        write_atomically(self.path, encode(entries), durable=durable)
