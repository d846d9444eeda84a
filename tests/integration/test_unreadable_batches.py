"""Bit flips, records that do not decompress, compression ids that are no codec and torn
tails on disk, seen by a consumer of the real broker: every record before an unreadable
batch is delivered, then an error names
the partition, the batch's offsets and the next readable offset; seek() there reads on."""
import os
import time

import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client import native
from odradek.client.errors import CorruptRecord
from odradek.client.records import (ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, CRC_OFFSET,
                                    Compression, iter_batches)

pytestmark = pytest.mark.fault   # the standing fault-injection suite: pytest -m fault

TOPIC = "rot"
RECORDS = 1000
TP = TopicPartition(TOPIC, 0)


def value(i):
    return (b"v%04d-" % i).ljust(100, b".")


def fill(broker, compression="none"):
    """RECORDS records in batches of ~9 (batch.size 1024), 7 segments of ~17 batches
    (compressed: ~10 times smaller, so in smaller segments with denser indexes)."""
    sizes = {"segment.bytes": "16384"} if compression == "none" else \
        {"segment.bytes": "2048", "index.interval.bytes": "256"}
    with Admin(broker.socket_path) as admin:
        admin.create_topic(TOPIC, num_partitions=1, config=sizes)
    with Producer({"socket": broker.socket_path, "linger.ms": 1000, "batch.size": 1024,
                   "compression.type": compression}) as p:
        for i in range(RECORDS):
            p.produce(TOPIC, value(i), partition=0)
        assert p.flush(10) == 0


def segment_files(broker):
    d = os.path.join(broker.data_dir, f"{TOPIC}-0")
    return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".log")]


def damage(broker, how):
    """Stop the broker, damage one batch in the middle of the second segment (an older
    one, so a clean restart does not scan it: the damage stays), start the broker.
    Returns the batch's (first, last) offsets."""
    assert broker.stop() == 0
    path = segment_files(broker)[1]
    data = bytearray(open(path, "rb").read())
    with open(path[:-len(".log")] + ".index", "rb") as f:
        index = f.read()
    last_indexed = int.from_bytes(index[-4:], "big")   # the position of the last index entry
    # a batch before the last index entry: the start-up check of a cleanly closed
    # segment scans only from there on
    candidates = [(pos, b) for pos, b in iter_batches(data) if 0 < pos < last_indexed]
    pos, batch = candidates[len(candidates) // 2]
    first, last = batch.base_offset, batch.last_offset
    end = pos + batch.size
    if how == "bit flip":                  # inside a record's value: CRC-bad, structure intact
        data[pos + BATCH_HEADER_SIZE + 40] ^= 0x04
    elif how in ("codec", "no codec"):     # marked snappy, or 6 (no codec); CRC made right again
        attrs = int.from_bytes(data[pos + ATTRIBUTES_OFFSET:pos + ATTRIBUTES_OFFSET + 2], "big")
        data[pos + ATTRIBUTES_OFFSET:pos + ATTRIBUTES_OFFSET + 2] = \
            (attrs | (Compression.SNAPPY if how == "codec" else 6)).to_bytes(2, "big")
    elif how == "zstd cut":                # a zstd batch's frame zeroed from its middle
        middle = (pos + BATCH_HEADER_SIZE + end) // 2
        data[middle:end] = bytes(end - middle)
    elif how == "length":                  # batchLength grows by 16 MiB: the framing is lost
        data[pos + BATCH_LENGTH_OFFSET] ^= 0x01
    if how in ("codec", "no codec", "zstd cut"):
        data[pos + CRC_OFFSET:pos + CRC_OFFSET + 4] = \
            native.crc32c(bytes(data[pos + ATTRIBUTES_OFFSET:end])).to_bytes(4, "big")
    open(path, "wb").write(bytes(data))
    broker.start()
    return first, last


def consumer(broker, check_crcs):
    return Consumer({"socket": broker.socket_path, "check.crcs": check_crcs})


def read_until(c, error_class, timeout=10.0):
    """Records until `error_class` is raised (which must happen within `timeout`)."""
    got, deadline = [], time.monotonic() + timeout
    with pytest.raises(error_class) as info:
        for _ in range(10 * RECORDS):
            assert time.monotonic() < deadline, f"no error after {len(got)} records"
            got += c.consume(100, 0.5)
    return got, info.value


def read_n(c, n, timeout=10.0):
    got, deadline = [], time.monotonic() + timeout
    for _ in range(10 * RECORDS):
        if len(got) >= n:
            break
        assert time.monotonic() < deadline, f"got {len(got)} of {n} records"
        got += c.consume(n - len(got), 0.5)
    return got


def check_stops_at_the_batch_then_skips_it(broker, first, last, error_class, check_crcs):
    with consumer(broker, check_crcs) as c:
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        got, err = read_until(c, error_class)
        assert [r.offset() for r in got] == list(range(first))
        assert [r.value() for r in got] == [value(i) for i in range(first)]
        assert (err.topic, err.partition, err.offset, err.next_offset) == (TOPIC, 0, first, last + 1)
        assert f"{TOPIC}-0" in str(err) and f"offsets {first}..{last}" in str(err)
        assert f"next readable offset is {last + 1}" in str(err)
        assert c.position([TP])[0].offset == first
        with pytest.raises(error_class):    # again, until the application moves on
            c.poll(5)
        c.seek(TopicPartition(TOPIC, 0, last + 1))
        rest = read_n(c, RECORDS - last - 1)
        assert [r.offset() for r in rest] == list(range(last + 1, RECORDS))
        assert [r.value() for r in rest] == [value(i) for i in range(last + 1, RECORDS)]
        assert c.poll(0.1) is None
    with consumer(broker, check_crcs) as c:     # from any offset before it, too
        c.assign([TopicPartition(TOPIC, 0, first - 5)])
        got, err = read_until(c, error_class)
        assert [r.offset() for r in got] == list(range(first - 5, first)) and err.offset == first
    return err


@pytest.mark.parametrize("how, error_class", [("bit flip", CorruptRecord), ("codec", CorruptRecord),
                                              ("no codec", CorruptRecord), ("zstd cut", CorruptRecord),
                                              ("length", CorruptRecord)])
def test_an_unreadable_batch_in_an_old_segment_hides_no_record_before_or_after_it(broker, how, error_class):
    fill(broker, "zstd" if how == "zstd cut" else "none")
    first, last = damage(broker, how)
    assert first > 136 and last < RECORDS - 1      # inside an older segment, records after it
    err = check_stops_at_the_batch_then_skips_it(broker, first, last, error_class, check_crcs=True)
    assert {"codec": "snappy records do not decompress", "no codec": "names compression id 6, which is no codec",
            "zstd cut": "zstd records do not decompress"}.get(how, "") in str(err)
    if how == "bit flip":
        # check.crcs=false: the batch's structure is intact, so its records come too, as
        # Kafka delivers them (one value carries the flipped bit)
        with consumer(broker, False) as c:
            c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
            got = read_n(c, RECORDS)
        assert [r.offset() for r in got] == list(range(RECORDS))
        changed = [r.offset() for r in got if r.value() != value(r.offset())]
        assert len(changed) == 1 and first <= changed[0] <= last
    else:
        # records that do not decompress, no codec or a framing damage stop the reader
        # whatever check.crcs says
        check_stops_at_the_batch_then_skips_it(broker, first, last, error_class, check_crcs=False)


def test_a_new_consumer_starting_at_or_after_a_batch_with_a_damaged_length_is_told_or_reads_on(broker):
    # The broker walks a segment from its sparse index to find where a consumer starts;
    # a damaged batchLength used to stop that walk with INVALID_SEGMENT (and advice to
    # delete the index), for a consumer starting at the batch or anywhere after it up to
    # the next index entry.
    fill(broker)
    first, last = damage(broker, "length")
    for start in (first, (first + last) // 2):   # at the batch, inside it: named, as from the start
        with consumer(broker, True) as c:
            c.assign([TopicPartition(TOPIC, 0, start)])
            got, err = read_until(c, CorruptRecord)
            # (from inside it, the position is the first offset the consumer can name)
            assert got == [] and (err.offset, err.next_offset) == (start, last + 1), str(err)
    for start in (last + 1, last + 3):           # after it: nothing to say, records come
        with consumer(broker, True) as c:
            c.assign([TopicPartition(TOPIC, 0, start)])
            got = read_n(c, RECORDS - start)
            assert [r.offset() for r in got] == list(range(start, RECORDS))
            assert c.poll(0.1) is None


def test_a_torn_tail_is_cut_at_start_and_consumers_and_producers_carry_on(broker):
    fill(broker)
    assert broker.stop() == 0
    path = segment_files(broker)[-1]
    data = open(path, "rb").read()
    batches = list(iter_batches(data))
    pos, last_batch = batches[-1]
    with open(path, "ab") as f:                 # a second copy of the last batch, cut halfway
        f.write(bytes(last_batch.buffer[:last_batch.size // 2]))
    broker.start()
    with consumer(broker, True) as c:
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        got = read_n(c, RECORDS)
        assert [r.offset() for r in got] == list(range(RECORDS))
        with Producer({"socket": broker.socket_path}) as p:
            for i in range(RECORDS, RECORDS + 10):
                p.produce(TOPIC, value(i), partition=0)
            assert p.flush(10) == 0
        more = read_n(c, 10)
        assert [(r.offset(), r.value()) for r in more] == [(i, value(i)) for i in range(RECORDS, RECORDS + 10)]
        assert c.poll(0.1) is None


@pytest.mark.parametrize("how", ["bit flip", "length"])
def test_a_batch_damaged_under_a_running_broker_is_named_by_its_descriptor(broker, how):
    # batches appended since the broker started are described in shared memory: a
    # consumer reads them by those descriptors, which also say where a damaged one ends
    fill(broker)
    path = segment_files(broker)[1]
    data = open(path, "rb").read()
    pos, batch = list(iter_batches(data))[8]
    first, last = batch.base_offset, batch.last_offset
    at = pos + (BATCH_HEADER_SIZE + 40 if how == "bit flip" else BATCH_LENGTH_OFFSET)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes([data[at] ^ (0x04 if how == "bit flip" else 0x01)]), at)
    finally:
        os.close(fd)
    with consumer(broker, True) as c:
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        got, err = read_until(c, CorruptRecord)
        assert [r.offset() for r in got] == list(range(first))
        assert (err.offset, err.next_offset) == (first, last + 1) and "descriptors" in str(err)
        c.seek(TopicPartition(TOPIC, 0, last + 1))
        assert [r.offset() for r in read_n(c, RECORDS - last - 1)] == list(range(last + 1, RECORDS))
