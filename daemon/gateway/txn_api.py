"""Kafka's transaction APIs (KIP-98) through the gateway: AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions and ListTransactions,
answered by our broker's transaction and group coordinators over the control socket, so
a transaction opened over TCP is the one Admin.describe_transactions and `odradek`
show. (InitProducerId, which opens the producer's session, is the data family's.)

Versions: every one kio has. AddPartitionsToTxn v4+ is Kafka's batched form (a broker
asks for several transactional ids at once, and with verify_only checks that the
partitions are already in the transaction): each transaction is asked on its own, a
verification answered from DescribeTransactions. This broker never bumps the producer
epoch at the end of a transaction (Kafka's transaction.version 2, which it does not
advertise), so EndTxn v5 answers with the producer id and epoch the client sent.
ListTransactions v2's transactional_id_pattern filters here, with Python's re (Kafka
uses Java's; the common syntax is the same), matching the whole id.
"""
import datetime
import re

from kio.schema.errors import ErrorCode

from odradek.client.errors import OdradekError
from odradek.client.protocol import messages as m
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.error_codes import kafka_code
from odradek.daemon.gateway.codec import respond

__all__ = ["APIS"]

ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT = 24, 25, 26, 28
DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 65, 66


def _code(ctx, our_request):
    """The error code of a request whose only answer is one (0: done)."""
    try:
        ctx.gateway.links.ask(our_request)
        return 0
    except OdradekError as e:
        return kafka_code(e.code)


# ---- AddPartitionsToTxn ----------------------------------------------------------------

def add_partitions_to_txn(ctx, request):
    body = request.body
    if request.api_version <= 3:
        return respond(request, results_by_topic_v3_and_below=_add_partitions(
            ctx, body.v3_and_below_transactional_id, body.v3_and_below_producer_id,
            body.v3_and_below_producer_epoch, body.v3_and_below_topics))
    results = []
    for txn in body.transactions:
        add = _verify_partitions if txn.verify_only else _add_partitions
        results.append(dict(transactional_id=txn.transactional_id, topic_results=add(
            ctx, txn.transactional_id, txn.producer_id, txn.producer_epoch, txn.topics)))
    return respond(request, error_code=0, results_by_transaction=results)


def _by_partition(topics, code_of):
    return [dict(name=t.name, results_by_partition=[
        dict(partition_index=p, partition_error_code=code_of(t.name, p)) for p in t.partitions]) for t in topics]


def _add_partitions(ctx, transactional_id, producer_id, producer_epoch, topics):
    try:
        answer = ctx.gateway.links.ask(m.AddPartitionsToTxnRequest(
            transactional_id=transactional_id, producer_id=producer_id, producer_epoch=producer_epoch,
            topics=[m.AddPartitionsToTxnTopic(name=t.name, partitions=list(t.partitions)) for t in topics]))
    except OdradekError as e:
        code = kafka_code(e)
        return _by_partition(topics, lambda name, p: code)
    codes = {(t.name, r.partition_index): r.error_code for t in answer.results for r in t.results}
    return _by_partition(topics, lambda name, p: kafka_code(codes.get((name, p), ErrorCode.unknown_server_error.value)))


def _verify_partitions(ctx, transactional_id, producer_id, producer_epoch, topics):
    """Kafka's verify_only: none for a partition in the producer's ongoing transaction."""
    try:
        (t,) = ctx.gateway.links.ask(
            m.DescribeTransactionsRequest(transactional_ids=[transactional_id])).transaction_states
    except OdradekError as e:
        code = kafka_code(e)
        return _by_partition(topics, lambda name, p: code)
    if t.error_code or t.producer_id != producer_id:
        error = ErrorCode.invalid_producer_id_mapping.value
    elif t.producer_epoch != producer_epoch:
        error = ErrorCode.producer_fenced.value
    else:
        error = None
    held = {(d.name, p) for d in t.topics for p in d.partition_indexes} if t.transaction_state == "Ongoing" else set()
    return _by_partition(topics, lambda name, p: error if error is not None else
                         0 if (name, p) in held else ErrorCode.invalid_txn_state.value)


# ---- AddOffsetsToTxn, EndTxn -----------------------------------------------------------

def add_offsets_to_txn(ctx, request):
    b = request.body
    return respond(request, error_code=_code(ctx, m.AddOffsetsToTxnRequest(
        transactional_id=b.transactional_id, producer_id=b.producer_id, producer_epoch=b.producer_epoch,
        group_id=b.group_id)))


def end_txn(ctx, request):
    b = request.body
    code = _code(ctx, m.EndTxnRequest(transactional_id=b.transactional_id, producer_id=b.producer_id,
                                      producer_epoch=b.producer_epoch, committed=b.committed))
    return respond(request, error_code=code, producer_id=b.producer_id, producer_epoch=b.producer_epoch)


# ---- TxnOffsetCommit -------------------------------------------------------------------

def txn_offset_commit(ctx, request):
    """v0-v2 carry no group generation or member (KIP-447): -1 and "" skip that check."""
    b = request.body
    ours = m.TxnOffsetCommitRequest(
        transactional_id=b.transactional_id, group_id=b.group_id, producer_id=b.producer_id,
        producer_epoch=b.producer_epoch, generation_id=getattr(b, "generation_id", -1),
        member_id=getattr(b, "member_id", ""), group_instance_id=getattr(b, "group_instance_id", None),
        topics=[m.TxnOffsetCommitRequestTopic(name=t.name, partitions=[m.TxnOffsetCommitRequestPartition(
            partition_index=p.partition_index, committed_offset=p.committed_offset,
            committed_leader_epoch=getattr(p, "committed_leader_epoch", -1),
            committed_metadata=p.committed_metadata) for p in t.partitions]) for t in b.topics])
    try:
        answer = ctx.gateway.links.ask(ours)
        codes = {(t.name, p.partition_index): p.error_code for t in answer.topics for p in t.partitions}
    except OdradekError as e:
        codes = {(t.name, p.partition_index): e.code for t in b.topics for p in t.partitions}
    return respond(request, topics=[dict(name=t.name, partitions=[
        dict(partition_index=p.partition_index,
             error_code=kafka_code(codes.get((t.name, p.partition_index), ErrorCode.unknown_server_error.value)))
        for p in t.partitions]) for t in b.topics])


# ---- DescribeTransactions, ListTransactions --------------------------------------------

def _ms_time(ms):
    """A Kafka int64 timestamp (-1: none) as the aware datetime kio writes back as `ms`."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def describe_transactions(ctx, request):
    ids = list(request.body.transactional_ids)
    try:
        states = ctx.gateway.links.ask(m.DescribeTransactionsRequest(transactional_ids=ids)).transaction_states
    except OdradekError as e:
        states = [m.DescribedTransaction(transactional_id=i, error_code=e.code) for i in ids]
    return respond(request, transaction_states=[_described(t) for t in states])


def _described(t):
    """One DescribeTransactions entry; an error's has Kafka's zeros (a start time of 0, not
    the broker's -1: kio, for one, cannot read a negative timestamp)."""
    if t.error_code:
        return dict(error_code=kafka_code(t.error_code), transactional_id=t.transactional_id,
                    transaction_start_time=_ms_time(0), topics=[])
    return dict(error_code=ErrorCode.none, transactional_id=t.transactional_id,
                transaction_state=t.transaction_state, transaction_timeout=t.transaction_timeout_ms,
                transaction_start_time=_ms_time(t.transaction_start_time_ms), producer_id=t.producer_id,
                producer_epoch=t.producer_epoch,
                topics=[dict(topic=d.name, partitions=list(d.partition_indexes)) for d in t.topics])


def list_transactions(ctx, request):
    b = request.body
    pattern = getattr(b, "transactional_id_pattern", None)
    try:
        matcher = re.compile(pattern).fullmatch if pattern else None
    except re.error:
        return respond(request, error_code=ErrorCode.invalid_regular_expression.value, unknown_state_filters=[],
                        transaction_states=[])
    try:
        answer = ctx.gateway.links.ask(m.ListTransactionsRequest(
            state_filters=list(b.state_filters), producer_id_filters=list(b.producer_id_filters),
            duration_filter=getattr(b, "duration_filter", -1)))
    except OdradekError as e:
        return respond(request, error_code=kafka_code(e.code), unknown_state_filters=[], transaction_states=[])
    return respond(request, error_code=0, unknown_state_filters=list(answer.unknown_state_filters),
                    transaction_states=[dict(transactional_id=t.transactional_id, producer_id=t.producer_id,
                                             transaction_state=t.transaction_state)
                                        for t in answer.transaction_states
                                        if matcher is None or matcher(t.transactional_id)])


APIS = [
    Api(ADD_PARTITIONS_TO_TXN, 0, 5, add_partitions_to_txn),
    Api(ADD_OFFSETS_TO_TXN, 0, 4, add_offsets_to_txn),
    Api(END_TXN, 0, 5, end_txn),
    Api(TXN_OFFSET_COMMIT, 0, 5, txn_offset_commit),
    Api(DESCRIBE_TRANSACTIONS, 0, 0, describe_transactions),
    Api(LIST_TRANSACTIONS, 0, 2, list_transactions),
]
