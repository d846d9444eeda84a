"""DescribeTransactions and ListTransactions (Kafka's APIs 65 and 66): read-only views of
the coordinator's transactional ids, for the CLI and Admin."""
from odradek.client.errors import InvalidRequest, TransactionalIdNotFound
from odradek.client.protocol import messages as m
from odradek.daemon.broker.txn.state import TxnState

__all__ = ["describe_transactions", "list_transactions"]


def describe_transactions(txns, req):
    """One DescribedTransaction per id asked (TRANSACTIONAL_ID_NOT_FOUND if unknown or
    expiring). The partitions listed are those of the open transaction still without a
    marker."""
    states = []
    for tid in req.transactional_ids:
        meta = txns.get(tid)
        if not tid or meta is None or meta.state is TxnState.DEAD:
            e = InvalidRequest("transactional id is empty") if not tid else \
                TransactionalIdNotFound(f"transactional id {tid} is not known")
            states.append(m.DescribedTransaction(error_code=e.code, error_message=e.message, transactional_id=tid))
            continue
        by_topic = {}
        for topic, partition in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(partition)
        states.append(m.DescribedTransaction(
            transactional_id=tid, transaction_state=meta.state.display, transaction_timeout_ms=meta.timeout_ms,
            transaction_start_time_ms=meta.start_ms, producer_id=meta.producer_id,
            producer_epoch=meta.producer_epoch,
            topics=[m.DescribeTransactionsTopicData(name=t, partition_indexes=ps) for t, ps in by_topic.items()]))
    return m.DescribeTransactionsResponse(transaction_states=states)


def list_transactions(txns, req, now):
    """The ids matching every filter given: a state name (unknown names are returned in
    unknown_state_filters; if every name given is unknown nothing matches), a producer
    id, and open for longer than duration_filter ms (>= 0)."""
    wanted = {TxnState.from_name(name) for name in req.state_filters} - {None}
    unknown = [name for name in req.state_filters if TxnState.from_name(name) is None]
    pids = set(req.producer_id_filters)
    listed = []
    if not (req.state_filters and not wanted):
        for tid in sorted(txns):
            meta = txns[tid]
            if meta.state is TxnState.DEAD or (wanted and meta.state not in wanted) \
                    or (pids and meta.producer_id not in pids):
                continue
            if req.duration_filter >= 0 and (meta.start_ms < 0 or now - meta.start_ms <= req.duration_filter):
                continue
            listed.append(m.ListedTransaction(transactional_id=tid, producer_id=meta.producer_id,
                                              transaction_state=meta.state.display))
    return m.ListTransactionsResponse(unknown_state_filters=unknown, transaction_states=listed)
