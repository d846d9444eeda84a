"""How a Consumer turns the bytes of one fetch into buffered Records: FetchDecoder, the
Consumer's part that calls the C decoder (odradek._hotpath.decode_fetch,
daemon/c_ext/hp_consumer.c) and handles what it leaves: compressed batches (gzip, snappy,
lz4, zstd: client/records/compression.py) decoded in Python,
an unreadable batch (a Fault, client/_unreadable.py), read_committed's aborted
transactions (client/_committed_read.py), and the position past control and skipped
batches. Runs on the Consumer's thread; its state is the Consumer's (client/consumer.py).
"""
from odradek._hotpath import FETCH_ABOVE_HIGH_WATERMARK, FETCH_END, FETCH_IN_PYTHON, FETCH_NEED_ABORTED, BytesView, \
    decode_fetch
from odradek.client._partition_read import Fault, Fetched
from odradek.client._unreadable import stop_reason, unreadable, why_unreadable
from odradek.client.errors import CorruptRecord
from odradek.client.message import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Record
from odradek.client.records import RecordBatch
from odradek.client.records.layout import COMPRESSION_MASK, TIMESTAMP_TYPE_MASK

__all__ = ["FetchDecoder", "HIGH_WATERMARK_MAX"]

# decode_fetch's largest high watermark: offsets below it leave room for a batch's
# lastOffsetDelta in int64 (a broker that publishes a larger one is broken)
HIGH_WATERMARK_MAX = (1 << 63) - 1 - (1 << 32)


class FetchDecoder:
    """The decoding methods of Consumer. Uses the Consumer's _buffer, _buffered,
    _faults, _check_crcs, _zero_copy and _client."""

    def _decode(self, part, data, pos, high_watermark):
        """Buffer the records of the whole batches in `data` (a view of the segment) with
        offsets >= pos. One C call (_hotpath.decode_fetch) checks every batch header,
        decodes the records and makes the Records; it returns those of the batches it
        passed and says where and why it stopped. A batch whose records are for Python
        (compressed; or records the C decoder refuses, whose error Python words) is decoded
        here, then C goes on after it. A batch that cannot be read (CRC, when check.crcs;
        a damaged header, length or record; offsets out of place; a compression id 5-7 or
        records that do not decompress) ends the fetch: the records of the batches before it are buffered,
        then a Fault whose error names it (_unreadable). A batch past `high_watermark`
        (read_committed: the last stable offset) after others ends the fetch quietly: it
        may be committed by now, or not; the next fetch reads the state again.
        read_committed: aborted transactions' batches are skipped (client/_committed_read.py).
        Control and skipped batches move the position on once the records before them
        are taken (Fetched.end)."""
        tp = part.tp
        topic, partition = tp.topic, tp.partition
        at, next_offset = 0, pos
        hw = min(high_watermark, HIGH_WATERMARK_MAX)
        aborted = part.aborted
        extra = () if aborted is None else aborted.covering(pos)
        for _ in range(len(data) + 2):    # each round passes at least one batch, or learns once
            records, status, at, next_offset, a, b, c = decode_fetch(
                data, at, pos, next_offset, hw, topic, partition, self._check_crcs, self._zero_copy, *extra)
            if records:
                self._buffer_records(part, records, records[-1].offset() + 1)
            if status == FETCH_END:
                break
            if status == FETCH_ABOVE_HIGH_WATERMARK:
                # in order but above the high watermark this fetch read (a GetSegment
                # answer can reach a newer one): the end of this fetch, and of the run
                # (the next fetch reads from this batch again)
                part.run = None
                break
            if status == FETCH_NEED_ABORTED:
                self._learn_aborted(part, a, high_watermark, next_offset)
                extra = (aborted.packed, aborted.known_upto)
                continue
            if status == FETCH_IN_PYTHON:
                batch = RecordBatch(data[at:])
                try:
                    records = self._decode_in_python(batch, topic, partition, pos)
                except CorruptRecord as e:
                    return self._unreadable(part, CorruptRecord, why_unreadable(e, batch.attributes & COMPRESSION_MASK),
                                            at, batch.base_offset, high_watermark, len(data))
                if records:
                    self._buffer_records(part, records, records[-1].offset() + 1)
                at += batch.size
                continue
            return self._unreadable(part, CorruptRecord, stop_reason(status, next_offset, a, b, c), at,
                                    next_offset, high_watermark, len(data))
        self._passed(part, next_offset)
        return len(data)

    def _buffer_records(self, part, records, end):
        part.last_item = item = Fetched(part, records, end)
        self._buffer.append(item)
        self._buffered += len(records)

    def _passed(self, part, next_offset):
        """The fetch passed every batch below next_offset: what follows the last record
        buffered (control batches, aborted ones) is passed too, and with nothing
        buffered the position moves there at once (commits and lag count it)."""
        part.fetched = max(next_offset, part.fetched)
        last = part.last_item       # still buffered (_take forgets it once taken whole)
        if last is not None:
            last.end = max(last.end, next_offset)
        elif part.position is not None and part.position < next_offset:
            part.position = next_offset

    def _learn_aborted(self, part, offset, last_stable_offset, next_offset):
        """decode_fetch met a transactional batch at `offset` that the aborted
        transactions known do not cover: ask the leader. If that fails, what this fetch
        buffered stays (the next fetch starts after it)."""
        try:
            part.aborted.learn(self._client, part.tp, offset, last_stable_offset)
        except BaseException:
            self._passed(part, next_offset)
            part.run = None
            raise

    def _decode_in_python(self, batch, topic, partition, pos):
        """Records of a batch decode_fetch leaves to Python: through records() (compressed
        records are decompressed; an unknown codec or records that do not decompress or
        decode raise CorruptRecord). Keys and values are bytes of the decompressed batch
        (BytesViews of them with zero.copy)."""
        ts_type = TIMESTAMP_LOG_APPEND_TIME if batch.attributes & TIMESTAMP_TYPE_MASK else TIMESTAMP_CREATE_TIME
        field = BytesView if self._zero_copy else _b
        return [Record(topic, partition, r.offset, None if r.key is None else field(r.key),
                       None if r.value is None else field(r.value),
                       [(k, _b(v)) for k, v in r.headers] if r.headers else None, r.timestamp, ts_type)
                for r in batch.records() if r.offset >= pos]

    def _unreadable(self, part, error_class, reason, position, floor, high_watermark, nbytes):
        """Stop fetching `part` at the batch at data[position]: a Fault goes into the
        buffer after the records already there. Returns nbytes (what the fetch read)."""
        seg, start, limit, after = part.extent
        err, resume = unreadable(error_class, part.tp, reason, seg.view, start + position, limit, floor,
                                 high_watermark, part.state, after)
        if resume is not None:
            part.resume = (err.next_offset, (seg, resume, limit, err.next_offset, after))
        self._buffer.append(Fault(part.tp, err))
        self._faults += 1
        part.fetched = err.offset
        part.stopped = True
        part.run = None
        return nbytes


def _b(v):
    return v if v is None or type(v) is bytes else bytes(v)
