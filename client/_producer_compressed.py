"""The Producer's open batches when compression.type is gzip, snappy, lz4 or zstd, in
Python.

odradek._hotpath.Accumulator (daemon/c_ext/hp_producer.c) builds uncompressed batches in
place, inside a reservation of the ring; a compressed batch's size is known only once it
is compressed, so compressed batches stay on the Python BatchBuilder, built in private
memory, compressed when sealed (records/compression.py) and copied into the ring.
CompressedAccumulator has the C Accumulator's interface
(produce, set_partition_count, add_link, wait_space, seal_due, seal_all, collect,
take_sealed, take_open, close, queued; set_producer, txn_add, txn_clear and the
transactional flag for transactions), so the Producer drives either alike. Differences:
sealing can find the ring full (the batch then stays open and the sender retries it),
and one lock covers every partition (compressing costs far more than the locking).
"""
import functools
import threading
import time

from odradek.client.errors import RingFull, ShmCorrupt
from odradek.client.partitioner import StickyPartitioner, partition_for_key
from odradek._hotpath import PRODUCE_FULL, PRODUCE_NEED_COUNT, PRODUCE_NEED_LINK, PRODUCE_NEED_TXN, PRODUCE_TOO_LARGE
from odradek.client.records import BATCH_HEADER_SIZE, MAX_SEQUENCE, NO_SEQUENCE, BatchBuilder, Compression
from odradek.client.records.compression import compressed_bound, configured_level

__all__ = ["CompressedAccumulator", "compressed_accumulator"]

_TAG_MOD = 1 << 32
_RETRY_S = 0.001


def compressed_accumulator(config):
    """A CompressedAccumulator maker with the C Accumulator's arguments, for the codec and
    level a producer config (compression.type, compression.<codec>.level) names."""
    codec = Compression.from_name(config["compression.type"])
    return functools.partial(CompressedAccumulator, codec=codec, level=configured_level(codec, config))


def as_bytes(value, what):
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, str or None, not {type(value).__name__}")


def headers_of(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        items = list(headers.items())
    elif isinstance(headers, (list, tuple)):
        items = list(headers)
    else:
        raise TypeError(f"headers must be a dict or a list of (str, bytes) pairs, not {type(headers).__name__}")
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"each header must be a (str, bytes) pair, not {type(item).__name__}")
        k, v = item
        if not isinstance(k, str):
            raise TypeError(f"a header key must be str, not {type(k).__name__}")
        out.append((k, as_bytes(v, "a header value")))
    return out


class _Link:
    __slots__ = ("topic", "partition", "ring", "limit", "completions", "builder", "pending", "deadline",
                 "next_seq", "next_tag", "inflight", "in_txn")

    def __init__(self, topic, partition, ring, limit, completions):
        self.topic, self.partition, self.ring, self.limit = topic, partition, ring, limit
        self.completions = completions   # the completion Ring collect() reads (None: not given)
        self.builder = None
        self.pending = []         # (index in the batch, callback, key, value, headers, timestamp) per record
                                  # with a callback (the C Accumulator's pending list)
        self.deadline = None      # linger deadline of the open batch (monotonic s)
        self.next_seq = 0
        self.next_tag = 0
        self.inflight = {}        # tag -> (count, pending or None)
        self.in_txn = False       # in the open transaction (transactional accumulators)


class CompressedAccumulator:
    def __init__(self, batch_size, linger_ms, acks, producer_id, producer_epoch, doorbell=0,
                 doorbell_owner=None, transactional=False, *, codec, level=None):
        self._codec, self._level = Compression(codec), level
        self._batch_size = batch_size
        self._linger_s = linger_ms / 1000
        self._acks = acks
        self._pid, self._epoch = producer_id, producer_epoch
        self._transactional = bool(transactional)
        self._doorbell = doorbell_owner
        self._lock = threading.Lock()
        self._links = []
        self._by_partition = {}    # (topic, partition) -> _Link
        self._counts = {}
        self._sticky = StickyPartitioner()
        self._closed = False
        self.queued = 0
        self.settled = 0   # as the C Accumulator's: records collect() found done with nothing to report

    def set_partition_count(self, topic, count):
        self._counts[topic] = count

    def set_producer(self, producer_id, producer_epoch):
        if self._links:
            raise ValueError("set_producer() after a link was added: its sequences are the producer's")
        self._pid, self._epoch = producer_id, producer_epoch

    def txn_add(self, link_id):
        if self._pid < 0:
            raise ValueError("a transactional batch needs a producer id: set_producer() first")
        self._links[link_id].in_txn = True

    def txn_clear(self):
        with self._lock:
            for link in self._links:
                link.in_txn = False

    def add_link(self, topic, partition, _ring_addr, ring, limit, _next_seq=0, _completions_addr=0,
                 completions=None):
        link = _Link(topic, partition, ring, limit, completions)
        self._links.append(link)
        self._by_partition[(topic, partition)] = link
        return len(self._links) - 1

    def produce(self, topic, value=None, key=None, headers=None, partition=None, timestamp=None,
                on_delivery=None):
        if self._closed:
            raise RuntimeError("produce() on a closed Producer")
        if not isinstance(topic, str):
            raise TypeError(f"topic must be str, not {type(topic).__name__}")
        if on_delivery is not None and not callable(on_delivery):
            raise TypeError(f"on_delivery must be callable or None, not {type(on_delivery).__name__}")
        if partition is not None and (type(partition) is not int):
            raise TypeError(f"partition must be an int or None, not {type(partition).__name__}")
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        elif type(timestamp) is not int:
            raise TypeError(f"timestamp must be an int (ms) or None, not {type(timestamp).__name__}")
        value, key = as_bytes(value, "value"), as_bytes(key, "key")
        headers = headers_of(headers)
        need = 21 + len(value or b"") + len(key or b"") + sum(14 + len(k) + len(v or b"") for k, v in headers)
        with self._lock:
            sticky = False
            if partition is None or partition < 0:
                count = self._counts.get(topic)
                if count is None:
                    return PRODUCE_NEED_COUNT, -1, 0, 0
                if key is not None:
                    partition = partition_for_key(key, count)
                else:
                    partition, sticky = self._sticky.partition(topic, count), True
            link = self._by_partition.get((topic, partition))
            if link is None:
                return PRODUCE_NEED_LINK, partition, 0, 0
            if self._transactional and not link.in_txn:
                return PRODUCE_NEED_TXN, partition, 0, 0
            if compressed_bound(self._codec, need) + BATCH_HEADER_SIZE > link.limit:
                return PRODUCE_TOO_LARGE, partition, need + BATCH_HEADER_SIZE, link.limit
            if not self._has_room(link, need):
                full = self._seal(link)
                if full:
                    return PRODUCE_FULL, partition, full, link.limit
                if sticky:
                    partition = self._sticky.new_batch(topic, self._counts[topic], partition)
                    link = self._by_partition.get((topic, partition))
                    if link is None:
                        return PRODUCE_NEED_LINK, partition, 0, 0
                    if self._transactional and not link.in_txn:
                        return PRODUCE_NEED_TXN, partition, 0, 0
                    if not self._has_room(link, need):
                        full = self._seal(link)
                        if full:
                            return PRODUCE_FULL, partition, full, link.limit
            if link.builder is None:
                link.builder = BatchBuilder(compression=self._codec, compression_level=self._level,
                                            producer_id=self._pid, producer_epoch=self._epoch,
                                            base_sequence=link.next_seq if self._pid >= 0 else NO_SEQUENCE,
                                            transactional=self._transactional)
                link.deadline = time.monotonic() + self._linger_s
                if self._linger_s:
                    self._doorbell.ring()   # the sender learns of the new deadline
            link.builder.append(timestamp, key, value, headers)
            if on_delivery is not None:
                link.pending.append((len(link.builder) - 1, on_delivery, key, value, headers, timestamp))
            self.queued += 1
            if (link.builder.estimated_size() >= self._batch_size or not self._linger_s) \
                    and not self._seal(link) and sticky:
                self._sticky.new_batch(topic, self._counts[topic], partition)
        return None

    def _has_room(self, link, need):
        """Can the open batch (if any) take `need` more bytes? Within batch.size, and
        within the partition's limit (max.message.bytes, or what the ring takes) once
        compressed, however badly (the C path caps its batches at the limit likewise)."""
        if link.builder is None:
            return True
        size = link.builder.estimated_size() + need
        return (size <= self._batch_size
                and compressed_bound(self._codec, size - BATCH_HEADER_SIZE) + BATCH_HEADER_SIZE <= link.limit)

    def _seal(self, link):
        """Write the open batch into the ring (lock held). Returns 0, or the batch's size
        if the ring is full (the batch stays open)."""
        data = link.builder.build()
        tag = link.next_tag
        try:
            link.ring.write(data, tag, 0)
        except RingFull:
            return len(data)
        count = len(link.builder)
        link.next_tag = (tag + 1) % _TAG_MOD
        if self._pid >= 0:
            link.next_seq = (link.next_seq + count) & MAX_SEQUENCE
        link.inflight[tag] = (count, link.pending or None)
        link.builder, link.pending, link.deadline = None, [], None
        if self._acks == 0:
            self._doorbell.ring()
        return 0

    def wait_space(self, link_id, nbytes, timeout):
        return self._links[link_id].ring.wait_for_space(nbytes, max(0.0, min(timeout, 0.05)))

    def seal_due(self, max_s):
        now = time.monotonic()
        nearest = max_s
        with self._lock:
            for link in self._links:
                if link.deadline is None:
                    continue
                if link.deadline <= now:
                    if self._seal(link):
                        nearest = min(nearest, _RETRY_S)   # ring full: again shortly
                        continue
                    count = self._counts.get(link.topic)
                    if count:   # keyless records move on to another partition (KIP-480)
                        self._sticky.new_batch(link.topic, count, link.partition)
                else:
                    nearest = min(nearest, link.deadline - now)
        return nearest

    def seal_all(self):
        with self._lock:
            for link in self._links:
                if link.builder is not None:
                    self._seal(link)

    def collect(self):
        """The C Accumulator's collect(): (doorbell seen, reports (link, count, pending,
        base offset, error code), strays (link, tag), corrupt (link, message) or None);
        batches without callbacks or errors add to `settled`."""
        seen = self._doorbell.value if self._doorbell is not None else 0
        reports, strays = [], []
        for link_id, link in enumerate(self._links):
            if self._acks == 0:
                with self._lock:
                    done, link.inflight = list(link.inflight.values()), {}
                for count, pending in done:
                    if pending is None:
                        self.settled += count
                    else:
                        reports.append((link_id, count, pending, -1, 0))
                continue
            for _ in range(1 << 16):    # bounded: the ring holds fewer completions
                try:
                    c = link.completions.read_completion() if link.completions is not None else None
                except ShmCorrupt as e:
                    return seen, reports, strays, (link_id, str(e))
                if c is None:
                    break
                with self._lock:
                    done = link.inflight.pop(c.tag, None)
                if done is None:
                    strays.append((link_id, c.tag))
                elif done[1] is None and not c.error_code:
                    self.settled += done[0]
                else:
                    reports.append((link_id, done[0], done[1], c.base_offset, c.error_code))
        return seen, reports, strays, None

    def take_sealed(self, link_id):
        with self._lock:
            link = self._links[link_id]
            out = list(link.inflight.values())
            link.inflight.clear()
            return out

    def take_open(self, link_id):
        with self._lock:
            link = self._links[link_id]
            if link.builder is None:
                return []
            out = [(len(link.builder), link.pending or None)]
            link.builder, link.pending, link.deadline = None, [], None
            return out

    def close(self):
        self._closed = True
