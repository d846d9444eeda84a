"""The aborted-transaction index of one segment: `<20-digit base offset>.txnindex`, in
Apache Kafka's format (TransactionIndex / AbortedTxn), so Kafka's tools read it.

Layout, life (written after the marker, fsynced and deleted with its segment, carried
through a compaction swap), recovery and the lookup for a fetch: FORMAT.md beside this
file, "Aborted-transaction index" (34-byte entries, no header).

    index = TransactionIndex(filenames.txnindex_file(partition_dir, base))
    index.append(AbortedTxn(7, 100, 105, 106))
    index.collect(fetch_offset, upper_bound)   # ([AbortedTxn], search complete)
"""
import os
import struct
from typing import NamedTuple

from odradek.client.errors import StorageError

__all__ = ["AbortedTxn", "TransactionIndex", "CorruptIndex", "ENTRY_SIZE", "VERSION", "encode_entry",
           "decode_entries"]

VERSION = 0
_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size     # 34


class CorruptIndex(StorageError):
    """A .txnindex entry that cannot be read (an unknown version)."""


class AbortedTxn(NamedTuple):
    """One aborted transaction: the producer, its first data offset, the ABORT marker's
    offset and the last stable offset once it was completed."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


def encode_entry(txn):
    return _ENTRY.pack(VERSION, *txn)


def decode_entries(data, name="txnindex"):
    """The AbortedTxn entries of a .txnindex file's bytes (a partial entry at the end is
    ignored); CorruptIndex for an entry of another version."""
    out = []
    for position in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
        version, *fields = _ENTRY.unpack_from(data, position)
        if version != VERSION:
            raise CorruptIndex(f"{name}: entry at byte {position} has version {version}; odradek reads "
                               f"version {VERSION}")
        out.append(AbortedTxn(*fields))
    return out


class TransactionIndex:
    """The .txnindex of one segment. Owned by the segment's writer (the worker's loop)."""

    __slots__ = ("path", "_last_offset")

    def __init__(self, path):
        self.path = path
        self._last_offset = None    # of the last entry, once read or written

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""
        except OSError as e:
            raise StorageError(f"cannot read {self.path}: {e.strerror or e}") from e

    def entries(self):
        """Every entry, in file order."""
        return decode_entries(self._read(), self.path)

    def recover(self, next_offset):
        """At open: cut a partial entry at the end and entries whose marker lies at or past
        `next_offset` (the segment's end after log recovery). Returns the bytes cut."""
        data = self._read()
        keep = len(data) - len(data) % ENTRY_SIZE
        entries = decode_entries(data[:keep], self.path)
        while entries and entries[-1].last_offset >= next_offset:
            entries.pop()
            keep -= ENTRY_SIZE
        if keep < len(data):
            self._truncate(keep)
        self._last_offset = entries[-1].last_offset if entries else None
        return len(data) - keep

    def append(self, txn):
        """Add an entry (its last_offset above every entry's so far)."""
        last = self._last_offset
        if last is None:
            entries = self.entries()
            last = entries[-1].last_offset if entries else None
        if last is not None and txn.last_offset <= last:
            raise ValueError(f"{self.path}: aborted transaction at {txn.last_offset} is not past the last "
                             f"entry's {last}")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                data = encode_entry(txn)
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write to {self.path}")
            finally:
                os.close(fd)
        except OSError as e:
            raise StorageError(f"cannot append to {self.path}: {getattr(e, 'strerror', None) or e}") from e
        self._last_offset = txn.last_offset

    def has(self, last_offset):
        """Whether an entry for the marker at `last_offset` is there."""
        return any(t.last_offset == last_offset for t in self.entries())

    def truncate_to(self, offset):
        """Remove the entries whose marker is at or past `offset`."""
        entries = self.entries()
        keep = [t for t in entries if t.last_offset < offset]
        if len(keep) < len(entries):
            self._truncate(len(keep) * ENTRY_SIZE)
        self._last_offset = keep[-1].last_offset if keep else None

    def collect(self, fetch_offset, upper_bound):
        """(the aborted transactions overlapping [fetch_offset, upper_bound), whether the
        search is complete): Kafka's collectAbortedTxns for this segment."""
        found = []
        for t in self.entries():
            if t.last_offset >= fetch_offset and t.first_offset < upper_bound:
                found.append(t)
            if t.last_stable_offset >= upper_bound:
                return found, True
        return found, False

    def flush(self):
        """fsync the file if it exists."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as e:
            raise StorageError(f"cannot open {self.path}: {e.strerror or e}") from e
        try:
            os.fsync(fd)
        except OSError as e:
            raise StorageError(f"cannot fsync {self.path}: {e.strerror or e}") from e
        finally:
            os.close(fd)

    def delete(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._last_offset = None

    def _truncate(self, size):
        try:
            if size == 0:
                os.unlink(self.path)
            else:
                os.truncate(self.path, size)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"cannot truncate {self.path}: {e.strerror or e}") from e


def collect_aborted_txns(segments, fetch_offset, upper_bound):
    """The aborted transactions of a log (its segments, in offset order) overlapping
    [fetch_offset, upper_bound), oldest marker first: Kafka's
    LocalLog.collectAbortedTransactions, from the segment holding fetch_offset on, until
    one segment's search is complete."""
    found = []
    for segment in segments:
        if segment.next_offset <= fetch_offset and segment is not segments[-1]:
            continue
        txns, complete = segment.txn_index.collect(fetch_offset, upper_bound)
        found.extend(txns)
        if complete:
            break
    return found


def merge_for_swap(directory, base, old_segments, write_atomically):
    """Before a compaction swap puts one segment at `base` in place of `old_segments`:
    write every entry of their indexes to `<base>.txnindex` (atomically). A crash before
    the swap commits leaves the first old segment with entries past its end, which its
    next open cuts (TransactionIndex.recover); after, the doomed segments' files are
    litter the next open deletes."""
    entries = [t for s in old_segments for t in s.txn_index.entries()]
    path = old_segments[0].txn_index.path
    if entries:
        write_atomically(path, b"".join(encode_entry(t) for t in entries), True)
    else:
        old_segments[0].txn_index.delete()
    return path
