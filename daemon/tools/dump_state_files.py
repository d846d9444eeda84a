"""dump-log's readers of the small files beside the segments: producer-state snapshots,
the leader-epoch-checkpoint and the aborted-transaction indexes (.txnindex). Split from
dump_log.py, which prints and checks the .log files and their offset and time indexes;
its module doc says what each prints and what counts as a problem.
"""
from odradek.daemon.storage import leader_epoch, producer_snapshot, txn_index

__all__ = ["dump_epochs", "dump_snapshot", "dump_txn_index", "plural", "SEQUENCE_WRAP"]

SEQUENCE_WRAP = 1 << 31


def plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


def _decoded(path, report, decode, damaged):
    """Start dumping the small file at `path`: decode(data, path), or None after
    reporting its `damaged` error as a problem."""
    report.files += 1
    report.out(f"Dumping {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return decode(data, path)
    except damaged as e:
        report.problem(path, 0, e.message)
        return None


def dump_epochs(path, report, quiet):
    """Print a leader-epoch-checkpoint, one line per entry; returns its entries, or None
    if it does not parse (a problem)."""
    out = report.out
    entries = _decoded(path, report, leader_epoch.decode, leader_epoch.CorruptEpochFile)
    if entries is None:
        return None
    if not quiet:
        for epoch, start in entries:
            out(f"leaderEpoch: {epoch} startOffset: {start}")
    out(plural(len(entries), "leader epoch", "leader epochs"))
    return entries


def dump_snapshot(path, report, quiet):
    """Print a producer-state snapshot, one line per producer; a damaged one is a problem."""
    out = report.out
    entries = _decoded(path, report, producer_snapshot.decode, producer_snapshot.CorruptSnapshot)
    if entries is None:
        return
    if not quiet:
        for e in entries:
            first_seq = (e.last_seq - e.offset_delta) % SEQUENCE_WRAP if e.last_seq >= 0 else -1
            note = (" (no batch in this epoch: known by its transaction markers)" if e.last_seq < 0 else
                    " (a refused batch: its sequences are used up, it is not in the log)" if e.last_offset < 0
                    else "")
            out(f"producerId: {e.producer_id} producerEpoch: {e.epoch} coordinatorEpoch: "
                f"{e.coordinator_epoch} currentTxnFirstOffset: {e.current_txn_first_offset} "
                f"firstSequence: {first_seq} lastSequence: {e.last_seq} lastOffset: {e.last_offset} "
                f"offsetDelta: {e.offset_delta} timestamp: {e.timestamp}{note}")
    out(f"{plural(len(entries), 'producer', 'producers')}")


def dump_txn_index(path, base, report, quiet, log_end=None):
    """Print a .txnindex, one line per aborted transaction (Kafka's DumpLogSegments
    style). Problems: a partial entry at the end, an unknown version, marker offsets
    that do not increase, or (given the segment's end, `log_end`) a marker outside the
    segment [base, log_end)."""
    out = report.out
    report.files += 1
    out(f"Dumping {path}")
    with open(path, "rb") as f:
        data = f.read()
    junk = len(data) % txn_index.ENTRY_SIZE
    if junk:
        report.problem(path, len(data) - junk, f"size expected a multiple of {txn_index.ENTRY_SIZE} bytes, "
                                               f"found {len(data)}: the last {junk} bytes are not a whole entry")
    try:
        entries = txn_index.decode_entries(data, path)
    except txn_index.CorruptIndex as e:
        report.problem(path, 0, e.message)
        return
    last = None
    for i, t in enumerate(entries):
        if not quiet:
            out(f"version: {txn_index.VERSION} producerId: {t.producer_id} firstOffset: {t.first_offset} "
                f"lastOffset: {t.last_offset} lastStableOffset: {t.last_stable_offset}")
        position = i * txn_index.ENTRY_SIZE
        if last is not None and t.last_offset <= last:
            report.problem(path, position, f"lastOffset expected above the previous entry's {last}, "
                                           f"found {t.last_offset}")
        if t.last_offset < base or (log_end is not None and t.last_offset >= log_end):
            report.problem(path, position, f"lastOffset (the ABORT marker) expected in the segment, "
                                           f"{base}..{'' if log_end is None else log_end - 1}, found {t.last_offset}")
        if not t.first_offset <= t.last_offset < t.last_stable_offset:
            report.problem(path, position, f"expected firstOffset <= lastOffset < lastStableOffset, found "
                                           f"{t.first_offset}, {t.last_offset}, {t.last_stable_offset}")
        last = t.last_offset
    out(plural(len(entries), "aborted transaction", "aborted transactions"))
