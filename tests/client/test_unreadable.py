"""client/_unreadable.py: the offsets of a batch a consumer cannot read, and where
reading goes on, from every source it trusts (the integration tests cover it against
the broker: tests/integration/test_unreadable_batches.py)."""
import os

import pytest

from odradek.client import TopicPartition
from odradek.client._unreadable import unreadable
from odradek.client.records import SCAN_BYTES
from odradek.client.errors import CorruptRecord, UnsupportedCompression
from odradek.client.records import (ATTRIBUTES_OFFSET, BATCH_LENGTH_OFFSET, CRC_OFFSET, Compression,
                                    iter_batches, write_base_offset)
from odradek.client.shm import PartitionState
from odradek.client import native
from support.records import make_batch

TP = TopicPartition("t", 3)
HW = 1000


@pytest.fixture
def state():
    """A real partition state with an empty descriptor window (the batches here are older)."""
    ps, fds = PartitionState.create(16, high_watermark=HW, log_end_offset=HW)
    os.close(fds.state)
    yield ps
    ps.close()


def segment(batches=5, records=4):
    """A segment's bytes: `batches` batches of `records` records from offset 100 on, and
    the position of each."""
    data = bytearray()
    for i in range(batches):
        b = bytearray(make_batch([b"value-%d-%d" % (i, j) for j in range(records)]))
        write_base_offset(b, 0, 100 + i * records)
        data += b
    return data, [pos for pos, _ in iter_batches(data)]


def name(state, data, at, floor, after=None, error_class=CorruptRecord, limit=None):
    view = memoryview(bytes(data))
    return unreadable(error_class, TP, "is damaged", view, at, len(view) if limit is None else limit,
                      floor, HW, state, after)


def test_a_crc_bad_batch_ends_where_the_next_whole_batch_starts(state):
    data, pos = segment()
    data[pos[2] + 70] ^= 0x01                 # a record byte: CRC bad, lengths intact
    err, resume = name(state, data, pos[2], floor=108)
    assert (err.topic, err.partition, err.offset, err.next_offset) == ("t", 3, 108, 112)
    assert resume == pos[3] and "t-3: the batch at offsets 108..111 is damaged" in str(err)
    assert "next readable offset is 112 (the base offset of the batch after it)" in str(err)
    assert isinstance(err, CorruptRecord)


def test_a_batch_whose_crc_holds_ends_where_its_header_says(state):
    data, pos = segment()
    attrs = ATTRIBUTES_OFFSET + pos[2]
    data[attrs + 1] |= Compression.SNAPPY
    end = pos[3]
    data[pos[2] + CRC_OFFSET:pos[2] + CRC_OFFSET + 4] = \
        native.crc32c(bytes(data[attrs:end])).to_bytes(4, "big")
    err, resume = name(state, data, pos[2], floor=108, error_class=UnsupportedCompression)
    assert isinstance(err, UnsupportedCompression)
    assert (err.offset, err.next_offset, resume) == (108, 112, pos[3]) and "by the batch's header" in str(err)


def test_a_damaged_length_is_passed_by_looking_for_the_next_whole_batch(state):
    data, pos = segment()
    data[pos[2] + BATCH_LENGTH_OFFSET + 1] ^= 0x40   # 16 KiB longer: past the data
    err, resume = name(state, data, pos[2], floor=108)
    assert (err.offset, err.next_offset, resume) == (108, 112, pos[3])
    assert "the first whole batch found after it" in str(err)
    data[pos[2] + BATCH_LENGTH_OFFSET + 3] ^= 0x08   # still framed, but wrongly: lands mid-batch
    data[pos[2] + BATCH_LENGTH_OFFSET + 1] ^= 0x40
    err, resume = name(state, data, pos[2], floor=108)
    assert (err.next_offset, resume) == (112, pos[3])


def test_with_nothing_whole_after_it_the_end_of_the_readable_part_or_nothing_is_said(state):
    data, pos = segment()
    data[pos[2] + BATCH_LENGTH_OFFSET + 1] ^= 0x40
    for p in pos[3:]:
        data[p + 30] ^= 0xFF                 # no whole batch after it either
    err, resume = name(state, data, pos[2], floor=108, after=500)
    assert (err.next_offset, resume) == (500, len(data)) and "segment ends" in str(err)
    err, resume = name(state, data, pos[2], floor=108)
    assert err.next_offset is None and resume is None and err.offset == 108
    assert "t-3: the batch at offset 108 is damaged" in str(err) and "unknown" in str(err)
    # the last batch of what is readable, CRC-bad: reading goes on after it
    data, pos = segment()
    data[pos[4] + 70] ^= 0x01
    err, resume = name(state, data, pos[4], floor=116, after=120)
    assert (err.offset, err.next_offset, resume) == (116, 120, len(data))


def test_a_damaged_base_offset_is_not_believed(state):
    data, pos = segment()
    data[pos[2]] ^= 0x40                     # baseOffset: not CRC-covered, now far past the hw
    err, _ = name(state, data, pos[2], floor=108)
    assert err.offset == 108 and err.next_offset == 112


def test_the_search_for_the_next_batch_stops_after_scan_bytes(state):
    data, pos = segment(batches=2)
    good = bytes(data[pos[1]:])
    data[pos[0] + BATCH_LENGTH_OFFSET] ^= 0x7F
    near = data[:pos[1]] + bytes([2]) * 4096 + good          # found past the filler
    err, resume = name(state, near, 0, floor=100)
    assert (err.next_offset, resume) == (104, pos[1] + 4096)
    far = data[:pos[1]] + bytes(SCAN_BYTES) + good           # out of reach
    err, resume = name(state, far, 0, floor=100, after=999)
    assert err.next_offset is None and resume is None
