"""ListOffsets (key 2, v1-v11), OffsetForLeaderEpoch (key 23, v2-v4) and InitProducerId
(key 22, v0-v5): forwarded to the broker's own APIs of the same names.

- ListOffsets: -2 earliest (the log start), -1 latest (the high watermark; with
  isolation_level 1, read_committed, the last stable offset), -3 (KIP-734) the first
  record with the largest timestamp, a timestamp >= 0 (the first record at or after it,
  offset -1 if none), as the partition's leader answers them; -4 (KIP-405's earliest
  local offset) is the earliest here, where nothing is tiered; anything below (-5,
  KIP-1005's latest tiered offset) gets UNSUPPORTED_VERSION for that partition.
- OffsetForLeaderEpoch: the leader's answer from its leader-epoch-checkpoint (the
  largest epoch <= the one asked and where it ended; for the leader's current epoch, the
  log end), one control request per partition; replica_id other than -1 (a follower of
  another broker) is not served: every follower here is the broker's own.
- InitProducerId: a producer id and epoch, idempotent or (with transactional_id) from the
  transaction coordinator, which also fences the previous instance.
Errors are the broker's, whose codes are Kafka's.
"""
from odradek.client.errors import OdradekError
from odradek.client.protocol import messages as m
from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.codec import ErrorCode, build, response_class
from odradek.daemon.gateway.error_codes import kafka_code

__all__ = ["APIS"]

LIST_OFFSETS, INIT_PRODUCER_ID, OFFSET_FOR_LEADER_EPOCH = 2, 22, 23
EARLIEST_LOCAL = -4


def list_offsets(ctx, request):
    body = request.body
    isolation = getattr(body, "isolation_level", 0)
    asked, refused = [], []
    for t in body.topics:
        for p in t.partitions:
            ts = m.EARLIEST_TIMESTAMP if p.timestamp == EARLIEST_LOCAL else p.timestamp
            if ts < m.MAX_TIMESTAMP:
                refused.append((t.name, p.partition_index, ErrorCode.unsupported_version))
                continue
            asked.append(m.ListOffsetsTopic(name=t.name, partitions=[m.ListOffsetsPartition(
                partition_index=p.partition_index, current_leader_epoch=getattr(p, "current_leader_epoch", -1),
                timestamp=ts)]))
    by_topic = {}
    if asked:
        res = ctx.gateway.links.ask(m.ListOffsetsRequest(isolation_level=isolation, topics=asked))
        for t in res.topics:
            for p in t.partitions:
                by_topic.setdefault(t.name, []).append(dict(
                    partition_index=p.partition_index, error_code=kafka_code(p.error_code), timestamp=p.timestamp,
                    offset=p.offset, leader_epoch=p.leader_epoch))
    for name, partition, code in refused:
        by_topic.setdefault(name, []).append(dict(partition_index=partition, error_code=code, timestamp=-1,
                                                  offset=-1, leader_epoch=-1))
    return build(response_class(LIST_OFFSETS, request.api_version), throttle_time=0, topics=[
        dict(name=name, partitions=parts) for name, parts in by_topic.items()])


def offset_for_leader_epoch(ctx, request):
    topics = []
    for t in request.body.topics:
        parts = []
        for p in t.partitions:
            try:
                res = ctx.gateway.links.ask(m.OffsetForLeaderEpochRequest(
                    topic=t.topic, partition=p.partition, leader_epoch=p.leader_epoch))
                parts.append(dict(error_code=ErrorCode.none, partition=p.partition, leader_epoch=res.leader_epoch,
                                  end_offset=res.end_offset))
            except OdradekError as e:
                parts.append(dict(error_code=kafka_code(e), partition=p.partition, leader_epoch=-1, end_offset=-1))
        topics.append(dict(topic=t.topic, partitions=parts))
    return build(response_class(OFFSET_FOR_LEADER_EPOCH, request.api_version), throttle_time=0, topics=topics)


def init_producer_id(ctx, request):
    body = request.body
    cls = response_class(INIT_PRODUCER_ID, request.api_version)
    try:
        res = ctx.gateway.links.ask(m.InitProducerIdRequest(
            transactional_id=body.transactional_id,
            transaction_timeout_ms=int(body.transaction_timeout.total_seconds() * 1000),
            producer_id=getattr(body, "producer_id", -1), producer_epoch=getattr(body, "producer_epoch", -1)))
    except OdradekError as e:
        return build(cls, throttle_time=0, error_code=kafka_code(e), producer_id=-1, producer_epoch=-1,
                     ongoing_txn_producer_id=-1, ongoing_txn_producer_epoch=-1)
    return build(cls, throttle_time=0, error_code=ErrorCode.none, producer_id=res.producer_id,
                 producer_epoch=res.producer_epoch, ongoing_txn_producer_id=-1, ongoing_txn_producer_epoch=-1)


APIS = [Api(LIST_OFFSETS, 1, 11, list_offsets), Api(OFFSET_FOR_LEADER_EPOCH, 2, 4, offset_for_leader_epoch),
        Api(INIT_PRODUCER_ID, 0, 5, init_producer_id)]
