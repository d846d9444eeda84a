"""A hostile producer rewriting its ring entry between the leader's checks and the log's
copy (daemon/worker/producers.py drain / drain_runs, leader.py _append / _append_run):
the leader reads and checks the batch header in the producer's ring, which the producer
can still write; the copy the log takes must be held to that header (odradek.h,
ODK_CHANGED). The race is made deterministic: the producer's own mapping of the ring is
rewritten, with a CRC-consistent batch from BatchBuilder, when the leader calls into
its log, after drain's read_header and before the copy. The entry is answered
CORRUPT_MESSAGE, the log holds nothing of the forged batch, the producer state knows
nothing of it, and the attachment goes on serving the producer's next good batch.

A real leader worker in this process (as test_txn_markers.py's control-batch test),
real rings."""
import contextlib
import mmap
import os
import struct

import pytest

from odradek.client.errors import CorruptRecord, InvalidRecord
from odradek.client.native import crc32c
from odradek.client.protocol import messages as m
from odradek.client.records import BatchBuilder, Compression, ControlRecordType, RecordBatch, marker_batch, read_header
from odradek.client.records.compression import compress
from odradek.client.records.layout import ATTRIBUTES_OFFSET, RECORDS_OFFSET
from odradek.client.shm import Doorbell, Ring
from odradek.daemon.storage import segment
from odradek.daemon.worker.leader import LeaderWorker, socketpair
from odradek.daemon.worker.producers import ProducerAttachment
from odradek.daemon.worker.spec import WorkerSpec
from support.records import batches_in

TOPIC = "t"
PRODUCER, OTHER, EPOCH = 7, 9, 0


def batch(seq, producer_id=PRODUCER, size=20, records=1, transactional=False):
    b = BatchBuilder(producer_id=producer_id, producer_epoch=EPOCH, base_sequence=seq, transactional=transactional)
    for i in range(records):
        b.append(1_700_000_000_000 + i, None, b"%d-%d-" % (producer_id, seq) + b"." * size)
    return bytes(b.build())


def batch_of_size(seq, size):
    """A plain batch of PRODUCER's of exactly `size` bytes (to stand where a forged one will)."""
    for pad in range(size):
        data = batch(seq, size=pad)
        if len(data) == size:
            return data
    raise AssertionError(f"no batch of {size} bytes")


@contextlib.contextmanager
def leader_worker(directory, configs):
    """An open LeaderWorker of TOPIC-0 in `directory`, closed at the end."""
    sock, other = socketpair()
    worker = LeaderWorker(sock, WorkerSpec(TOPIC, 0, 0, str(directory), configs, 1))
    try:
        worker.open()
        yield worker
    finally:
        worker.close()
        other.close()


@pytest.fixture
def leader(tmp_path):
    with leader_worker(tmp_path, {}) as worker:
        yield worker


class Producer:
    """A producer's end of its rings, with its own writable mapping of the produce ring's
    memory, where it may write whenever it likes."""

    def __init__(self, producer_id=PRODUCER):
        self.requests, req_fd = Ring.create(1 << 18)
        self.completions, comp_fd = Ring.create(1 << 16)
        self.bell, bell_fd = Doorbell.create()
        self.memory = mmap.mmap(req_fd, 0)
        request = m.OpenProducerRequest(topic=TOPIC, partition=0, acks=1, producer_id=producer_id,
                                        producer_epoch=EPOCH)
        self.att = ProducerAttachment(1, request, [req_fd, comp_fd, bell_fd])
        for fd in (req_fd, comp_fd, bell_fd):
            os.close(fd)

    def rewrite(self, old, new):
        """Overwrite the committed entry holding `old` with `new` (as long)."""
        at = self.memory.find(old)
        assert at >= 0 and len(new) == len(old)
        self.memory[at:at + len(new)] = new

    def answers(self, n):
        got = [self.completions.read_completion() for _ in range(n)]
        return [(c.base_offset, c.error_code) for c in got]

    def close(self):
        self.att.close()
        self.memory.close()
        for thing in (self.requests, self.completions, self.bell):
            thing.close()


@pytest.fixture
def producer():
    p = Producer()
    yield p
    p.close()


def race(monkeypatch, log, method, producer, old, new):
    """Make the producer rewrite `old` into `new` in its ring when the leader first calls
    log.<method> (after its checks, before the copy). Returns the errors that call raised."""
    real, raised = getattr(log, method), []

    def racing(*args, **kwargs):
        if not raised:
            producer.rewrite(old, new)
        try:
            return real(*args, **kwargs)
        except CorruptRecord as e:
            raised.append(e)
            raise
        finally:
            raised.append(None)
    monkeypatch.setattr(log, method, racing)
    return raised


def batches_of(worker, producer_id):
    return [b for b in batches_in(worker.log) if b.producer_id == producer_id]


def test_a_batch_rewritten_to_another_producers_id_is_refused(leader, producer, monkeypatch):
    good = batch(0)
    forged = batch(0, producer_id=OTHER)
    assert len(forged) == len(good)
    producer.requests.write(good)
    raised = race(monkeypatch, leader.log, "append", producer, good, forged)
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(-1, CorruptRecord.code)]
    assert leader.log.log_end_offset == 0 and not batches_of(leader, OTHER)
    assert "changed while it was appended" in str(raised[0])
    assert OTHER not in leader.producer_state
    producer.requests.write(batch(1))                     # its next good batch is served
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(0, 0)]
    assert [b.base_sequence for b in batches_of(leader, PRODUCER)] == [1]
    assert OTHER not in leader.producer_state and producer.att.broken is None


def test_a_batch_rewritten_to_an_abort_marker_for_another_producer_is_refused(leader, producer, monkeypatch):
    opened = batch(0, producer_id=OTHER, transactional=True)    # OTHER's transaction, open
    assert leader._append(memoryview(opened), read_header(opened)) == 0
    assert leader.producer_state.txns.is_open(OTHER)
    forged = marker_batch(ControlRecordType.ABORT, OTHER, EPOCH, 5, 1_700_000_000_000)
    good = batch_of_size(0, len(forged))
    producer.requests.write(good)
    raised = race(monkeypatch, leader.log, "append", producer, good, bytes(forged))
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(-1, CorruptRecord.code)]
    assert not any(b.is_control for b in batches_in(leader.log))
    assert isinstance(raised[0], CorruptRecord)
    assert leader.log.log_end_offset == 1 and leader.producer_state.txns.is_open(OTHER)
    producer.requests.write(batch(1))
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(1, 0)]
    assert leader.producer_state.txns.is_open(OTHER)


def test_a_run_with_an_entry_rewritten_to_another_producers_id_is_refused_and_that_entry_alone(
        leader, producer, monkeypatch):
    run = [batch(seq, size=12_000) for seq in range(3)]
    assert sum(map(len, run)) >= segment.PWRITE_MIN             # a run append_parts takes as it is
    forged = batch(1, producer_id=OTHER, size=12_000)
    assert len(forged) == len(run[1])
    for data in run:
        producer.requests.write(data)
    raised = race(monkeypatch, leader.log, "append_parts", producer, run[1], forged)
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (3, False)
    # the run refused whole, then one by one, each held to the header drain_runs read
    assert producer.answers(3) == [(0, 0), (-1, CorruptRecord.code), (1, 0)]
    assert not batches_of(leader, OTHER) and OTHER not in leader.producer_state
    assert isinstance(raised[0], CorruptRecord)
    assert [b.base_sequence for b in batches_of(leader, PRODUCER)] == [0, 2]


def test_a_transactional_bit_cleared_while_the_leader_looks_again_does_not_skip_the_transaction(
        leader, producer, monkeypatch):
    """The leader's transaction bookkeeping reads whether the batch is transactional from
    the header it checked (and holds the copy to), not from the ring a second time: a
    producer showing a plain batch there meanwhile, then the transactional one again for
    the copy, still opens its transaction in the producer state."""
    opened = batch(0, transactional=True)
    plain = batch(0)
    assert len(plain) == len(opened)
    producer.requests.write(opened)
    real_append_local = leader._append_local

    def append_local(*args, **kwargs):   # after _append's checks, before the transaction bookkeeping
        producer.rewrite(opened, plain)
        return real_append_local(*args, **kwargs)
    monkeypatch.setattr(leader, "_append_local", append_local)
    race(monkeypatch, leader.log, "append", producer, plain, opened)   # back for the copy
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(0, 0)]
    assert [b.is_transactional for b in batches_of(leader, PRODUCER)] == [True]
    assert leader.producer_state.txns.is_open(PRODUCER)


def test_an_acks_all_entry_rewritten_to_another_producers_id_is_refused(leader, producer, monkeypatch):
    good, forged = batch(0), batch(0, producer_id=OTHER)
    producer.requests.write(good)
    race(monkeypatch, leader.log, "append", producer, good, forged)
    assert producer.att.drain(leader._append_acks_all, 64, hold=True) == (1, False)
    assert producer.answers(1) == [(-1, CorruptRecord.code)] and not producer.att.held
    assert leader.log.log_end_offset == 0 and OTHER not in leader.producer_state


def _same_crc(data, window, want):
    """`data` with the 4 bytes at data[window:window + 4] changed so that the batch's
    CRC-32C (of the bytes from its attributes on) is `want`: CRC-32C is affine over
    GF(2) for a fixed length, so the 32 bits of the window are solved for, one by one."""
    from odradek.client import native

    def crc(b):
        return native.crc32c(bytes(b[ATTRIBUTES_OFFSET:]))
    base = crc(data)
    columns = []                        # (effect on the CRC, the bit of the window that has it)
    for bit in range(32):
        flipped = bytearray(data)
        flipped[window + bit // 8] ^= 1 << (bit % 8)
        columns.append((crc(flipped) ^ base, 1 << bit))
    target, rows = base ^ want, []
    for effect, mask in columns:        # Gaussian elimination, keyed by the highest bit
        for r_effect, r_mask in rows:
            if effect ^ r_effect < effect:
                effect, mask = effect ^ r_effect, mask ^ r_mask
        if effect:
            rows.append((effect, mask))
            rows.sort(reverse=True)
    chosen = 0
    for r_effect, r_mask in rows:
        if target ^ r_effect < target:
            target, chosen = target ^ r_effect, chosen ^ r_mask
    assert target == 0, "the window cannot reach that CRC"
    out = bytearray(data)
    for bit in range(32):
        if chosen >> bit & 1:
            out[window + bit // 8] ^= 1 << (bit % 8)
    assert crc(out) == want
    return bytes(out)


@pytest.fixture
def compacted_leader(tmp_path):
    with leader_worker(tmp_path, {"cleanup.policy": "compact"}) as worker:
        yield worker


def test_a_compacted_topics_key_check_and_append_read_the_same_bytes(compacted_leader, producer, monkeypatch):
    """A compacted topic refuses records without a key (Kafka's rule). A producer whose
    keyed batch passes that check, then turns into a batch with a null key of the same
    header (length, counts, timestamps, and a body forged to the same CRC-32C) before the
    copy, must not land the null key: the check and the append read one private copy."""
    leader = compacted_leader
    b = BatchBuilder(producer_id=PRODUCER, producer_epoch=EPOCH, base_sequence=0)
    b.append(1_700_000_000_000, b"k", b"v" * 40)
    keyed = bytes(b.build())
    b = BatchBuilder(producer_id=PRODUCER, producer_epoch=EPOCH, base_sequence=0)
    b.append(1_700_000_000_000, None, b"v" * 41)        # a null key is one byte shorter
    unkeyed = bytearray(b.build())
    assert len(unkeyed) == len(keyed)
    head = read_header(keyed)
    body = _same_crc(unkeyed, len(unkeyed) - 8, head.crc)     # 4 bytes inside the value
    forged = keyed[:RECORDS_OFFSET] + body[RECORDS_OFFSET:]   # the stored CRC holds for it too
    assert RecordBatch(forged).crc_valid() and forged[:RECORDS_OFFSET] == keyed[:RECORDS_OFFSET] and forged != keyed
    assert [r.key for r in RecordBatch(forged).records()] == [None]
    producer.requests.write(keyed)
    race(monkeypatch, leader.log, "append", producer, keyed, forged)
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(0, 0)]
    assert [r.key for b in batches_in(leader.log) for r in b.records()] == [b"k"]


# ---- batches whose CRC holds over bytes that are no records ----------------------------
# Kafka's LogValidator iterates every record of a batch it appends (decompressing a
# compressed one): a batch whose records do not decode is refused INVALID_RECORD, not
# stored for every reader after to fail on. Uncompressed: the append's C check, on the
# copy; compressed: the leader decompresses a private copy and decodes it.

def _with_records(records_region, codec=Compression.NONE, records=1):
    """A batch of PRODUCER's (sequence 0) whose records region is `records_region`, its
    CRC computed over it (so only the records are wrong)."""
    b = BatchBuilder(producer_id=PRODUCER, producer_epoch=EPOCH, base_sequence=0)
    b.append(1_700_000_000_000, b"k", b"v")
    data = bytearray(b.build())
    data[RECORDS_OFFSET:] = records_region
    struct.pack_into(">i", data, 8, len(data) - 12)                                    # batchLength
    struct.pack_into(">h", data, ATTRIBUTES_OFFSET, codec)
    struct.pack_into(">i", data, RECORDS_OFFSET - 4, records)                          # recordsCount
    struct.pack_into(">i", data, 23, records - 1)                                      # lastOffsetDelta
    struct.pack_into(">I", data, 17, crc32c(bytes(data[ATTRIBUTES_OFFSET:])))
    assert RecordBatch(bytes(data)).crc_valid()
    return bytes(data)


def _refused_then_next_taken(leader, producer, bad, words):
    """`bad` is answered INVALID_RECORD with `words` in the log's error, nothing stored;
    the producer's next batch (its sequences follow the refused one's, which used them up)
    lands at offset 0."""
    producer.requests.write(bad)
    after = read_header(bad).records_count
    producer.requests.write(batch(after))
    errors = []
    real = leader._append

    def append(view, header, *a):
        try:
            return real(view, header, *a)
        except InvalidRecord as e:
            errors.append(str(e))
            raise
    assert producer.att.drain_runs(append, leader._append_run, 64) == (2, False)
    assert producer.answers(2) == [(-1, InvalidRecord.code), (0, 0)]
    assert words in errors[0], errors
    assert [b.base_sequence for b in batches_in(leader.log)] == [after]


GOOD_RECORD = b"\x0c\x00\x00\x00\x01\x01\x00"      # length 6, attrs, ts, offset, key -1, value -1, 0 headers


@pytest.mark.parametrize("region,words", [
    (b"\xff" * 6 + bytes(4), "varint"),
    (b"\x40" + bytes(10), "record"),
    (GOOD_RECORD + b"junk", "record"),
], ids=["varint", "length", "trailing"])
def test_an_uncompressed_batch_whose_records_do_not_decode_is_refused(leader, producer, region, words):
    _refused_then_next_taken(leader, producer, _with_records(region), words)


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_a_compressed_batch_that_does_not_decompress_is_refused(leader, producer, codec):
    _refused_then_next_taken(leader, producer, _with_records(b"\x00\x01not compressed at all" * 4, codec),
                             "do not decompress")


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_a_compressed_batch_of_records_that_do_not_decode_is_refused(leader, producer, codec):
    region = compress(codec, GOOD_RECORD + b"\xff" * 6 + bytes(4))
    _refused_then_next_taken(leader, producer, _with_records(region, codec, records=2), "do not decode")


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_compressed_batches_of_good_records_are_appended_as_sent(leader, producer, codec):
    sent = []
    for seq in range(3):
        b = BatchBuilder(producer_id=PRODUCER, producer_epoch=EPOCH, base_sequence=seq * 2, compression=codec)
        b.append(1_700_000_000_000, None, b"a" * 100, [("h", None)])
        b.append(1_700_000_000_001, b"k", None)
        sent.append(bytes(b.build()))
        producer.requests.write(sent[-1])
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (3, False)
    assert producer.answers(3) == [(0, 0), (2, 0), (4, 0)]
    stored = batches_in(leader.log)
    assert [b.compression for b in stored] == [codec] * 3
    assert [[(r.key, r.value) for r in b.records()] for b in stored] == [[(None, b"a" * 100), (b"k", None)]] * 3


def test_a_compressed_batch_checked_then_rewritten_lands_as_checked(leader, producer, monkeypatch):
    """The leader decompresses and checks a private copy and appends that copy: a producer
    rewriting its ring entry (same header, CRC, size) after the check changes nothing."""
    checked = _with_records(compress(Compression.LZ4, GOOD_RECORD), Compression.LZ4)
    producer.requests.write(checked)
    race(monkeypatch, leader.log, "append", producer, checked, checked[:RECORDS_OFFSET] + bytes(
        len(checked) - RECORDS_OFFSET))
    assert producer.att.drain_runs(leader._append, leader._append_run, 64) == (1, False)
    assert producer.answers(1) == [(0, 0)]
    assert [[(r.key, r.value) for r in b.records()] for b in batches_in(leader.log)] == [[(None, None)]]
