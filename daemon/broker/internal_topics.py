"""The broker's internal compacted topics (__consumer_offsets, __transaction_state): one
partition each, created at the first start, replicated as data is (Kafka's
offsets.topic.replication.factor and transaction.state.log.replication.factor, 3,
capped at the online log dirs), read once at start before their workers run, and
appended to through their leader's worker (AppendRecords over its link, FIFO), which
answers once the ISR has the records. The coordinators' shells (group_shell.py,
txn_shell.py) own what goes in them.
"""
import logging
import os
import time

from odradek.client.errors import CorruptRecord
from odradek.client.protocol import messages as m
from odradek.client.records import BatchBuilder, iter_batches
from odradek.client.records.control import ControlRecordType
from odradek.daemon.broker.groups.txn_offsets import TransactionalRecord, TransactionMarker
from odradek.daemon.storage import LogConfig, PartitionLog, filenames

__all__ = ["ensure", "read_records", "append", "now_ms", "partition_exists", "INTERNAL_TOPIC_CONFIGS"]

log = logging.getLogger(__name__)

INTERNAL_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 << 20)}


def now_ms():
    return time.time_ns() // 1_000_000


def partition_exists(broker, topic, partition):
    """Whether the broker's metadata has partition `partition` of `topic` (what the
    coordinators ask before they accept or write to a partition)."""
    t = broker.metadata.topics.get(topic)
    return t is not None and 0 <= partition < len(t.partitions)


def ensure(broker, name):
    """Create the internal topic `name` if it does not exist (metadata only; its worker
    starts with the others)."""
    md, cfg = broker.metadata, broker.config
    if name not in md.topics:
        factor = min(cfg.default_replication_factor, len(md.log_dirs) - len(md.offline_dirs))
        md.create_topic(name, 1, max(1, factor), dict(INTERNAL_TOPIC_CONFIGS), cfg.topic_defaults)
        md.save()
        log.info("created the internal topic %s", name)


def read_records(broker, name):
    """Every record of the internal topic `name`, oldest first, read from its leader's
    files (call before its worker starts): (key, value or None, the batch's base offset)
    for a plain batch's records; a TransactionalRecord for a transactional batch's (the
    coordinators' writes in a transaction: TxnOffsetCommit) and a TransactionMarker for a
    control batch (the end of that producer's transaction). None if its log dir is
    offline."""
    topic = broker.metadata.topics[name]
    p = topic.partitions[0]
    if p.leader in broker.metadata.offline_dirs:
        return None
    directory = os.path.join(broker.config.log_dirs[p.leader], filenames.partition_dir_name(name, 0))
    plog = PartitionLog(directory, LogConfig(topic.log_config(broker.config.topic_defaults).to_dict()))
    records = []
    try:
        for segment in plog.segments:
            for _, batch in iter_batches(segment.view(0, segment.size)):
                if batch.is_control:
                    try:
                        marker = batch.end_txn_marker()
                    except CorruptRecord as e:
                        log.warning("%s: skipping an unreadable control batch at offset %d: %s", name,
                                    batch.base_offset, e)
                        continue
                    if marker is not None:
                        records.append(TransactionMarker(batch.producer_id,
                                                         marker.control_type == ControlRecordType.COMMIT))
                    continue
                for r in batch.records():
                    if r.key is None:
                        continue
                    key, value = bytes(r.key), None if r.value is None else bytes(r.value)
                    records.append(TransactionalRecord(batch.producer_id, key, value, batch.base_offset)
                                   if batch.is_transactional else (key, value, batch.base_offset))
    finally:
        plog.close()
    return records


def append(broker, name, records, done, producer=None):
    """Append (key, value or None) records to the internal topic `name` as one v2 batch
    (the transactional batch of `producer`, (id, epoch), if given); done(result) with the
    worker's AppendRecordsResponse or an OdradekError."""
    builder = BatchBuilder() if producer is None else \
        BatchBuilder(producer_id=producer[0], producer_epoch=producer[1], transactional=True)
    ts = now_ms()
    for key, value in records:
        builder.append(ts, key, value)
    broker.worker_request((name, 0), m.AppendRecordsRequest(topic=name, partition=0, records=builder.build()), done)
