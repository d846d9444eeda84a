"""Transaction requests to a real broker, for integration tests: each call retried while
the answer is a retriable error (the coordinator's __transaction_state worker still
starting, CONCURRENT_TRANSACTIONS while a previous end is written), as a producer would."""
from support.broker import wait_until

from odradek.client.errors import OdradekError
from odradek.client.protocol import messages as m


def call(client, request, timeout=15.0, until=None):
    """The response to `request`, retried on retriable errors (and while `until(response)`
    is false, if given); a non-retriable error is raised."""
    def attempt():
        try:
            response, _ = client.call(request)
        except OdradekError as e:
            if e.retriable:
                return None
            raise
        return response if until is None or until(response) else None
    return wait_until(attempt, timeout, interval=0.02, what=f"an answer to {type(request).__name__}")


def init(client, tid, timeout_ms=60_000, **kw):
    return call(client, m.InitProducerIdRequest(transactional_id=tid, transaction_timeout_ms=timeout_ms, **kw))


def add(client, tid, pid, epoch, partitions):
    topics = {}
    for t, p in partitions:
        topics.setdefault(t, []).append(p)
    response = call(client, m.AddPartitionsToTxnRequest(
        transactional_id=tid, producer_id=pid, producer_epoch=epoch,
        topics=[m.AddPartitionsToTxnTopic(name=t, partitions=ps) for t, ps in topics.items()]))
    return {(t.name, r.partition_index): r.error_code for t in response.results for r in t.results}


def add_offsets(client, tid, producer, group):
    """AddOffsetsToTxn for `producer` (an InitProducerId answer)."""
    call(client, m.AddOffsetsToTxnRequest(transactional_id=tid, producer_id=producer.producer_id,
                                          producer_epoch=producer.producer_epoch, group_id=group))


def describe(client, tid):
    return call(client, m.DescribeTransactionsRequest(transactional_ids=[tid])).transaction_states[0]


def listed(client, **filters):
    return {t.transactional_id: t.transaction_state
            for t in call(client, m.ListTransactionsRequest(**filters)).transaction_states}


def create_topic(client, name, partitions):
    client.call(m.CreateTopicsRequest(topics=[m.CreatableTopic(name=name, num_partitions=partitions,
                                                               replication_factor=1)]))


def begin(client, tid, partitions, timeout_ms=60_000):
    """A new instance of `tid` with a transaction open on `partitions`: its InitProducerId answer."""
    r = init(client, tid, timeout_ms)
    assert set(add(client, tid, r.producer_id, r.producer_epoch, partitions).values()) == {0}
    return r


def txn_commit_offsets(client, tid, pid, epoch, group, offsets):
    """TxnOffsetCommit of {(topic, partition): offset}: {(topic, partition): error code}."""
    topics = {}
    for (t, p), offset in sorted(offsets.items()):
        topics.setdefault(t, []).append(m.TxnOffsetCommitRequestPartition(partition_index=p, committed_offset=offset))
    response = call(client, m.TxnOffsetCommitRequest(
        transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch,
        topics=[m.TxnOffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in topics.items()]))
    return {(t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions}


def fetch_offsets(client, group, topic, partitions, require_stable=False):
    """{(topic, partition): (committed offset, error code)} from OffsetFetch."""
    response, _ = client.call(m.OffsetFetchRequest(group_id=group, require_stable=require_stable, topics=[
        m.OffsetFetchRequestTopic(name=topic, partition_indexes=partitions)]))
    return {(t.name, p.partition_index): (p.committed_offset, p.error_code) for t in response.topics
            for p in t.partitions}


def leader_pid(client, topic, partition):
    """The pid of the partition's running leader worker, None while there is none."""
    status, _ = client.call(m.StatusRequest(topics=[topic]))
    return next((w.pid for w in status.workers
                 if (w.topic, w.partition, w.role) == (topic, partition, "leader") and w.pid and w.state == "running"),
                None)
