"""Producer-state snapshot files: `<20-digit offset>.snapshot` in a partition dir, in
Apache Kafka's format (ProducerStateManager, snapshot version 1). Layout: FORMAT.md,
"Producer-state snapshot".

A snapshot named N holds the idempotence state of every producer as it was after the
batches below offset N, one entry per producer (its last batch). The partition leader
writes one at segment roll, at clean close and after refusing a batch
(daemon/worker/leader.py), keeps the newest KEEP, and at open loads the newest one at or
below the log end and replays only the batches from N on.

    data = encode([SnapshotEntry(producer_id=7, epoch=0, last_seq=4, last_offset=104,
                                 offset_delta=4, timestamp=1700000000000)])
    decode(data)                       # [SnapshotEntry(...)]; CorruptSnapshot if damaged
    write(partition_dir, 105, entries) # atomically; then keeps the newest KEEP files
    load_latest(partition_dir, lowest, highest)  # (offset, entries) or None
"""
import logging
import os
import struct
from typing import NamedTuple

from odradek.client import native
from odradek.client.errors import StorageError
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import fsync_dir, write_atomically

__all__ = ["SnapshotEntry", "CorruptSnapshot", "encode", "decode", "write", "offsets", "delete_above",
           "load_latest", "VERSION", "KEEP", "NO_OFFSET"]

log = logging.getLogger(__name__)

VERSION = 1                 # Kafka's PRODUCER_SNAPSHOT_VERSION
KEEP = 2                    # snapshots kept per partition: the newest and one to fall back to
NO_OFFSET = -1              # coordinator_epoch / current_txn_first_offset without transactions
_HEADER = struct.Struct(">hIi")      # version, crc (CRC-32C of the rest), entry count
_ENTRY = struct.Struct(">qhiqiqiq")  # producer_id epoch last_sequence last_offset offset_delta
#                                      timestamp coordinator_epoch current_txn_first_offset
_CRC_FROM = 6                        # the CRC covers the bytes from the entry count on


class CorruptSnapshot(StorageError):
    """A snapshot file that cannot be trusted (short, wrong version, CRC mismatch)."""


class SnapshotEntry(NamedTuple):
    """One producer's state: its epoch and last batch (last_seq, last_offset and
    offset_delta = last_seq - first_seq = last_offset - first_offset). last_offset is -1
    for a batch the leader refused (it used up its sequences but is not in the log)."""

    producer_id: int
    epoch: int
    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int
    coordinator_epoch: int = NO_OFFSET
    current_txn_first_offset: int = NO_OFFSET


def encode(entries):
    """The bytes of a snapshot file holding `entries` (SnapshotEntry or equal tuples)."""
    body = bytearray(struct.pack(">i", len(entries)))
    for e in entries:
        body += _ENTRY.pack(*e)
    crc = native.crc32c(bytes(body))
    return struct.pack(">hI", VERSION, crc) + bytes(body)


def decode(data, name="snapshot"):
    """The entries of a snapshot file's bytes; CorruptSnapshot (naming `name`) if the
    version is not 1, the CRC does not match or the length is not that of its entries."""
    if len(data) < _HEADER.size:
        raise CorruptSnapshot(f"{name}: {len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    version, crc, count = _HEADER.unpack_from(data)
    if version != VERSION:
        raise CorruptSnapshot(f"{name}: snapshot version {version}, odradek reads version {VERSION}")
    computed = native.crc32c(bytes(data[_CRC_FROM:]))
    if computed != crc:
        raise CorruptSnapshot(f"{name}: CRC-32C {computed:#010x} does not match the stored {crc:#010x}")
    if count < 0 or len(data) != _HEADER.size + count * _ENTRY.size:
        raise CorruptSnapshot(f"{name}: {len(data)} bytes do not hold {count} entries of {_ENTRY.size} bytes")
    return [SnapshotEntry(*_ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)) for i in range(count)]


def offsets(partition_dir):
    """The offsets of the snapshot files in `partition_dir`, ascending."""
    return sorted(o for o in map(filenames.parse_snapshot_file, os.listdir(partition_dir)) if o is not None)


def write(partition_dir, offset, entries, keep=KEEP, durable=True):
    """Write the snapshot for `offset` atomically (temp, fsync, rename, fsync dir; no
    fsyncs unless `durable`), then delete all but the newest `keep` (the log end only
    grows while a leader writes, and open deleted any above it, so the new one is the
    newest; the dir fsynced again unless not `durable`). Returns its path. StorageError
    if it cannot be written. A snapshot a power loss tore fails its CRC at load, which
    then takes the next older one (load_latest)."""
    path = filenames.snapshot_file(partition_dir, offset)
    write_atomically(path, encode(entries), durable)
    _delete(partition_dir, offsets(partition_dir)[:-keep], durable)
    return path


def delete_above(partition_dir, offset):
    """Delete snapshots for offsets above `offset` (the log end after a recovery cut:
    they describe batches the log no longer holds). Returns the offsets deleted."""
    doomed = [o for o in offsets(partition_dir) if o > offset]
    _delete(partition_dir, doomed)
    return doomed


def _delete(partition_dir, doomed, durable=True):
    try:
        for o in doomed:
            try:
                os.unlink(filenames.snapshot_file(partition_dir, o))
            except FileNotFoundError:
                pass
        if doomed and durable:
            fsync_dir(partition_dir)
    except OSError as e:
        raise StorageError(f"cannot delete producer-state snapshots in {partition_dir}: {e.strerror or e}") from e


def load_latest(partition_dir, lowest, highest):
    """(offset, entries) of the newest readable snapshot with lowest <= offset <= highest,
    or None. A corrupt one is logged, deleted (as Kafka does) and the next older tried."""
    for offset in reversed(offsets(partition_dir)):
        if not lowest <= offset <= highest:
            continue
        path = filenames.snapshot_file(partition_dir, offset)
        try:
            with open(path, "rb") as f:
                return offset, decode(f.read(), path)
        except CorruptSnapshot as e:
            log.warning("skipping a corrupt producer-state snapshot: %s", e)
            _delete(partition_dir, [offset])
        except OSError as e:
            log.warning("skipping an unreadable producer-state snapshot %s: %s", path, e.strerror or e)
    return None
