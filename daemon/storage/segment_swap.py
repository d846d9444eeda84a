"""Swapping cleaned segments in, on disk (Kafka's replaceSegments; FORMAT.md,
"Compaction"): the renames and unlinks that put <base>.*.cleaned in place of a run of
old segments, and, on open, finishing or dropping what a crash left half done.
PartitionLog.replace_segments calls commit_cleaned and swaps its in-memory segment list;
PartitionLog's open calls finish_interrupted_swaps before it lists the segments.

    commit_cleaned(partition_dir, base, [base2, base3])   # OSError: half swapped; reopen
    finish_interrupted_swaps(partition_dir)               # on open, before anything else

Renames and unlinks only: the new files are new inodes, and a reader that mapped or
holds a descriptor of an old file keeps reading the old bytes. Owned by the partition's
worker; not thread-safe.
"""
import logging
import mmap
import os

from odradek.client import native
from odradek.daemon.storage import filenames
from odradek.daemon.storage.checkpoint import fsync_dir

__all__ = ["commit_cleaned", "finish_interrupted_swaps"]

log = logging.getLogger(__name__)


def commit_cleaned(directory, base, doomed_bases):
    """Put <base>.log.cleaned, <base>.index.cleaned and <base>.timeindex.cleaned (written,
    fsynced and closed) in place of the segment at `base` and those at `doomed_bases`
    (FORMAT.md, "Compaction", steps 2-4):
      1. rename the three .cleaned files to .swap, the .log last: once <base>.log.swap
         exists the output is committed (fsync of the directory);
      2. unlink the other old segments (a .log before its indexes);
      3. rename the .swap files over the final names, indexes first, the .log last.
    An OSError leaves the files half swapped: finish_interrupted_swaps completes or
    undoes it on the next open."""
    paths = filenames.segment_files(directory, base)
    for path in (paths[1], paths[2], paths[0]):
        os.rename(path + filenames.CLEANED_SUFFIX, path + filenames.SWAP_SUFFIX)
    fsync_dir(directory)
    _complete_swap(directory, base, doomed_bases)


def _complete_swap(directory, base, doomed_bases):
    """Steps 2 and 3 of commit_cleaned (3 and 4 in FORMAT.md): unlink the segments at
    `doomed_bases`, then rename <base>.*.swap over <base>.*. If an index .swap is missing
    (a crash between step 3's renames) the index files at the final names may be the old
    segment's: they are deleted and rebuilt from the log on open."""
    for b in doomed_bases:
        for path in filenames.segment_files(directory, b):  # the .log first: indexes alone are litter
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    log_path, index_path, time_path = filenames.segment_files(directory, base)
    swap = filenames.SWAP_SUFFIX
    if os.path.exists(index_path + swap) and os.path.exists(time_path + swap):
        os.rename(index_path + swap, index_path)
        os.rename(time_path + swap, time_path)
    else:
        for path in (index_path + swap, time_path + swap, index_path, time_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    os.rename(log_path + swap, log_path)
    fsync_dir(directory)


def finish_interrupted_swaps(directory):
    """On open, before anything else: what a crash inside commit_cleaned left.
    *.cleaned files were never committed: deleted (the old segments are whole).
    A <base>.log.swap is committed output: the old segments whose base offsets lie in
    (base, the swap's next offset) are deleted and the swap renamed into place
    (_complete_swap). Index .swap files without their .log.swap were never committed:
    deleted. Costs one scan of each committed .log.swap (only after such a crash)."""
    d = directory
    names = os.listdir(d)
    litter = [n for n in names if n.endswith(filenames.CLEANED_SUFFIX)]
    swaps = sorted(n for n in names if n.endswith(filenames.LOG_SUFFIX + filenames.SWAP_SUFFIX))
    for name in litter:
        os.unlink(os.path.join(d, name))
    for name in swaps:
        parsed = filenames.parse_segment_file(name[:-len(filenames.SWAP_SUFFIX)])
        if parsed is None:
            continue
        base = parsed[0]
        next_offset, whole = _swap_next_offset(os.path.join(d, name), base)
        if not whole:  # fsynced before its commit, so only a damaged disk does this:
            for path in filenames.segment_files(d, base)[1:]:  # no indexes: recovered on open
                for p in (path + filenames.SWAP_SUFFIX, path):
                    if os.path.exists(p):
                        os.unlink(p)
        doomed = sorted(p[0] for p in map(filenames.parse_segment_file, os.listdir(d))
                        if p and p[1] == filenames.LOG_SUFFIX and base < p[0] < next_offset)
        log.warning("%s: completing an interrupted compaction swap of segment %d (replacing "
                    "segments %s)", d, base, [base] + doomed)
        _complete_swap(d, base, doomed)
    leftovers = [n for n in os.listdir(d) if n.endswith(filenames.SWAP_SUFFIX)]
    for name in leftovers:
        os.unlink(os.path.join(d, name))
    if litter or leftovers:
        fsync_dir(d)


def _swap_next_offset(path, base):
    """(the offset after the last valid batch of a .log.swap file, base if none;
    whether every byte of it is valid batches)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if not size:
            return base, True
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            with memoryview(m) as view:
                result = native.scan_batches(view, 0, True, base)
    finally:
        os.close(fd)
    return (result.last_offset + 1 if result.batches else base), result.status == native.Status.OK
