"""A partition leader's answers to the broker's requests over its link (leader.py's
loop reads them: LinkWatcher): OpenProducer / DetachProducer (a producer's rings),
GetSegment (a reader's segment fd and extent, with the aborted transactions for
read_committed), AppendRecords (the coordinators' records), ListOffsets,
OffsetForLeaderEpoch, DeleteRecords, UpdateIsr, Status, and the requests answered
later (IsrProposal, a replicated AppendRecords, WriteTxnMarker). A failure is the
request's error only: a bug in one answer never takes the partition down.

A mixin of LeaderWorker, on its fields (spec, log, channel, producers, txn_markers,
state, replication, ...), which leader.py sets up. Runs on the worker's one thread.
"""
import logging
import os
import time

from odradek.client.errors import InvalidRequest, OdradekError, OffsetOutOfRange, UnknownTopicOrPartition
from odradek.client.protocol import ConnectionClosed, ProtocolErrorEvent, Request, messages as m
from odradek.client.protocol.transport import close_fds
from odradek.daemon.worker.producers import ProducerAttachment

__all__ = ["LeaderRequests"]

log = logging.getLogger("odradek.daemon.worker.leader")


class LeaderRequests:
    def _handle(self, event):
        if isinstance(event, ConnectionClosed):
            return False
        if isinstance(event, ProtocolErrorEvent):
            log.warning("broker link: %s", event.error)
            return not event.fatal
        if isinstance(event, Request) and isinstance(event.message, m.IsrProposalRequest):
            close_fds(event.fds)
            self._isr_poll = event.correlation_id   # answered when an ISR change is wanted
            return True
        if isinstance(event, Request) and isinstance(event.message, m.AppendRecordsRequest) \
                and self.replication is not None:
            close_fds(event.fds)
            self._append_for_broker(event.correlation_id, event.message)
            return True
        if isinstance(event, Request) and isinstance(event.message, m.WriteTxnMarkerRequest):
            close_fds(event.fds)
            self.txn_markers.write_marker(event.correlation_id, event.message)   # answered past the HW
            return True
        if isinstance(event, Request):
            fds = list(event.fds)
            try:
                response, out_fds = self._dispatch(event.message, fds)
            except OdradekError as e:
                close_fds(fds)
                self.channel.respond_error(event.correlation_id, e)
            except Exception as e:  # a bug here must not take the partition down
                close_fds(fds)
                log.exception("serving %s", type(event.message).__name__)
                self.channel.respond_error(event.correlation_id, e)
            else:
                self.channel.respond(event.correlation_id, response, out_fds, close_fds=True)
        return True

    def _dispatch(self, request, fds):
        """(response, fds to send and then close). Takes ownership of `fds`."""
        if isinstance(request, m.OpenProducerRequest):
            return self._open_producer(request, fds), [os.dup(self.spec.shm.doorbell_fd)] if self.spec.shm else []
        close_fds(fds)
        if isinstance(request, m.DetachProducerRequest):
            att = self.producers.pop(request.attach_id, None)
            self._served = None
            if att is not None:
                att.drain(self._append, 1 << 30)   # what it committed before it went
                att.close()
            return m.DetachProducerResponse(), []
        if isinstance(request, m.GetSegmentRequest):
            return self._get_segment(request)
        if isinstance(request, m.AppendRecordsRequest):
            self._check_partition(request.topic, request.partition)
            info = self._append_local(request.records)
            return m.AppendRecordsResponse(base_offset=info.first_offset, last_offset=info.last_offset), []
        if isinstance(request, m.ListOffsetsRequest):
            return self._list_offsets(request), []
        if isinstance(request, m.OffsetForLeaderEpochRequest):
            self._check_partition(request.topic, request.partition)
            epoch, end = self.log.end_offset_for_epoch(request.leader_epoch)
            return m.OffsetForLeaderEpochResponse(leader_epoch=epoch, end_offset=end), []
        if isinstance(request, m.StatusRequest):
            return self._status(), []
        if isinstance(request, m.DeleteRecordsRequest):
            return self._delete_records(request), []
        if isinstance(request, m.UpdateIsrRequest):
            self._update_isr(request)
            return m.UpdateIsrResponse(), []
        raise UnknownTopicOrPartition(f"a partition worker does not serve {type(request).__name__}")

    def _open_producer(self, request, fds):
        if len(fds) != 3:
            close_fds(fds)
            raise InvalidRequest(f"OpenProducer passes 3 fds (produce ring, completion ring, doorbell), not {len(fds)}")
        try:
            att = ProducerAttachment(request.attach_id, request, fds)
        finally:
            close_fds(fds)
        old = self.producers.pop(request.attach_id, None)
        if old is not None:
            old.close()
        self.producers[request.attach_id] = att
        self._served = None
        return m.OpenProducerResponse(
            topic=self.spec.topic, partition=self.spec.partition, leader_epoch=self.spec.leader_epoch,
            max_batch_bytes=self._max_message_bytes,
            fds=[m.PassedFd(kind=m.FdKind.DOORBELL, size=4096, writable=True)] if self.spec.shm else [])

    def _get_segment(self, request):
        self._check_partition(request.topic, request.partition)
        # committed batches only: a consumer must not see what a change of leader could remove
        loc = self.log.locate(request.offset, max_offset=self.high_watermark)
        segment = loc.segment
        fds, passed = [], []
        if request.want_fd:
            fds.append(os.open(segment.log.path, os.O_RDONLY | os.O_CLOEXEC))
            passed.append(m.PassedFd(kind=m.FdKind.SEGMENT, size=segment.size, base_offset=segment.base_offset))
        aborted = []
        if request.aborted_upper_bound >= 0:   # read_committed (client/_committed_read.py)
            # no further than the last stable offset, which a reader cannot pass: a client
            # asking for more gets no bigger answer (nor a longer walk of the indexes)
            upper = min(request.aborted_upper_bound, self.txn_markers.last_stable_offset())
            aborted = [m.AbortedTransaction(producer_id=t.producer_id, first_offset=t.first_offset,
                                            last_offset=t.last_offset)
                       for t in self.log.collect_aborted_txns(request.offset, upper)]
        return m.GetSegmentResponse(topic=request.topic, partition=request.partition,
                                    base_offset=segment.base_offset, position=loc.position, size=loc.end,
                                    next_offset=loc.next_offset, fds=passed, aborted_transactions=aborted), fds

    def _check_partition(self, topic, partition):
        if topic != self.spec.topic or partition != self.spec.partition:
            raise UnknownTopicOrPartition(f"this worker leads {self.spec.topic}-{self.spec.partition}")

    def _list_offsets(self, request):
        out = []
        for topic in request.topics:
            parts = []
            for p in topic.partitions:
                if topic.name != self.spec.topic or p.partition_index != self.spec.partition:
                    parts.append(m.ListOffsetsPartitionResponse(
                        partition_index=p.partition_index, error_code=UnknownTopicOrPartition.code,
                        error_message=f"this worker leads {self.spec.topic}-{self.spec.partition}"))
                    continue
                parts.append(self.offsets_for(p.partition_index, p.timestamp, request.isolation_level))
            out.append(m.ListOffsetsTopicResponse(name=topic.name, partitions=parts))
        return m.ListOffsetsResponse(topics=out)

    def offsets_for(self, partition, timestamp, isolation_level=m.IsolationLevel.READ_UNCOMMITTED):
        """ListOffsets semantics: -2 earliest, -1 latest (read_committed: the last stable
        offset), -3 the first record with the largest timestamp, else the first record at
        or after `timestamp` (offset -1 if there is none)."""
        epoch = self.spec.leader_epoch
        if timestamp == m.EARLIEST_TIMESTAMP:
            return m.ListOffsetsPartitionResponse(partition_index=partition, offset=self.log.log_start_offset,
                                                  leader_epoch=epoch)
        # Kafka's: below the high watermark, or read_committed the last stable offset
        latest = self.txn_markers.last_stable_offset() \
            if isolation_level == m.IsolationLevel.READ_COMMITTED else self.high_watermark
        if timestamp == m.LATEST_TIMESTAMP:
            return m.ListOffsetsPartitionResponse(partition_index=partition, offset=latest, leader_epoch=epoch)
        if timestamp == m.MAX_TIMESTAMP:
            timestamp = self.log.max_timestamp()
        found = self.log.offset_for_timestamp(timestamp) if timestamp >= 0 else None
        if found is not None and found[0] >= latest:
            found = None    # not readable yet: consumers do not see it
        if found is None:
            return m.ListOffsetsPartitionResponse(partition_index=partition, leader_epoch=epoch)
        return m.ListOffsetsPartitionResponse(partition_index=partition, offset=found[0], timestamp=found[1],
                                              leader_epoch=epoch)

    def _delete_records(self, request):
        """Kafka's DeleteRecords on this partition: the log start offset moves up to the
        offset asked (-1: the high watermark; above it: OFFSET_OUT_OF_RANGE)."""
        (topic,) = request.topics
        (p,) = topic.partitions
        self._check_partition(topic.name, p.partition_index)
        offset = self.high_watermark if p.offset == -1 else p.offset
        if not 0 <= offset <= self.high_watermark:
            raise OffsetOutOfRange(f"cannot delete records of {topic.name}-{p.partition_index} below offset "
                                   f"{p.offset}: the high watermark is {self.high_watermark}")
        self.log.delete_records_before(offset)
        if self.state is not None:
            self.state.update(log_start_offset=self.log.log_start_offset)
        return m.DeleteRecordsResponse(topics=[m.DeleteRecordsTopicResult(name=topic.name, partitions=[
            m.DeleteRecordsPartitionResult(partition_index=p.partition_index,
                                           low_watermark=self.log.log_start_offset)])])

    def _status(self):
        lg = self.log
        return m.StatusResponse(
            broker_pid=os.getppid(), uptime_ms=int((time.time() - self.started) * 1000),
            partitions=[m.PartitionStatus(
                topic=self.spec.topic, partition=self.spec.partition, leader_id=self.spec.replica_id,
                leader_epoch=self.spec.leader_epoch, log_start_offset=lg.log_start_offset,
                log_end_offset=lg.log_end_offset, high_watermark=self.high_watermark,
                last_stable_offset=self.txn_markers.last_stable_offset(),
                size_bytes=lg.size_in_bytes, segments=len(lg.segments))])
