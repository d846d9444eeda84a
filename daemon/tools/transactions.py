"""`odradek transactions ...`: the transaction coordinator's view, as
kafka-transactions.sh shows it (list, describe), for a person to scan.

A row per transactional id: its state, producer id and epoch, timeout, how long its
transaction has been open (AGE, while Ongoing, PrepareCommit or PrepareAbort) and its
partitions. One open longer than its timeout is HANGING: the coordinator aborts an
Ongoing transaction within transaction.abort.timed.out.transaction.cleanup.interval.ms
of its timeout, and a decided one ends once its markers are written, so one that stays is
stuck (a partition whose leader is down or stopped cannot take its marker). The CLI
(daemon/cli/transactions.py) parses options; this module talks to the broker through an
Admin and returns lines.
"""
import time

from odradek.client.errors import TransactionalIdNotFound
from odradek.daemon.tools.table import format_table

__all__ = ["list_lines", "describe_lines", "age_text"]

_NONE = "-"
_HEADERS = ["TRANSACTIONAL-ID", "STATE", "PRODUCER-ID", "EPOCH", "TIMEOUT-MS", "AGE", "PARTITIONS"]


def age_text(ms):
    """A duration a person reads at a glance: 850ms, 12.3s, 4m05s, 2h07m."""
    if ms is None:
        return _NONE
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    s = ms // 1000
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def _partitions_text(partitions):
    if not partitions:
        return _NONE
    return ",".join(f"{t}-{p}" for t, p in sorted(partitions))


def _rows(descriptions, now_ms):
    rows, hanging = [], 0
    for d in descriptions:
        state = d.state
        if d.hanging(now_ms):
            state += " (HANGING)"
            hanging += 1
        rows.append((d.transactional_id, state, d.producer_id, d.producer_epoch, d.timeout_ms,
                     age_text(d.age_ms(now_ms)), _partitions_text(d.partitions) if d.is_open else _NONE))
    return rows, hanging


def _footer(n, hanging):
    if not hanging:
        return []
    return ["", f"{hanging} of {n} open longer than their timeout (HANGING): the coordinator has not aborted "
                f"them; check `odradek status` for a partition without a leader"]


def list_lines(admin, states=(), producer_ids=(), min_duration_ms=None, now_ms=None):
    """One row per transactional id (filters as Admin.list_transactions), then a note
    on hanging transactions if any."""
    listed = admin.list_transactions(states, producer_ids, min_duration_ms)
    if not listed:
        return ["No transactional ids" + (" match" if states or producer_ids or min_duration_ms else "") + "."]
    described = admin.describe_transactions([t.transactional_id for t in listed])
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rows, hanging = _rows([described[t.transactional_id] for t in listed if t.transactional_id in described],
                          now_ms)
    return format_table(_HEADERS, rows) + _footer(len(rows), hanging)


def describe_lines(admin, transactional_ids, now_ms=None):
    """The same table for the ids named; an unknown id raises TransactionalIdNotFound
    naming it."""
    try:
        described = admin.describe_transactions(transactional_ids)
    except TransactionalIdNotFound as e:
        raise TransactionalIdNotFound(f"{e.message}; `odradek transactions list` shows the known ones") from None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rows, hanging = _rows([described[t] for t in transactional_ids], now_ms)
    return format_table(_HEADERS, rows) + _footer(len(rows), hanging)
