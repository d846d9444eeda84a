"""Control records (client/records/control.py): transaction markers in Kafka's format,
checked against bytes derived by hand from Kafka's schemas (ControlRecordType key,
EndTransactionMarker value) and FORMAT.md's worked example."""
from pathlib import Path

import pytest
from support.records import bitwise_crc32c as crc32c

from odradek.client.errors import CorruptRecord
from odradek.client.records import (
    BatchBuilder, ControlRecordType, EndTxnMarker, RecordBatch, decode_control_key, decode_end_txn_marker,
    encode_control_key, encode_end_txn_marker, marker_batch)

FORMAT_MD = (Path(__file__).resolve().parents[3] / "client" / "records" / "FORMAT.md").read_text()


def golden_marker(control_type, producer_id, producer_epoch, coordinator_epoch, timestamp):
    """The marker batch assembled field by field from FORMAT.md's header table and
    Kafka's schemas, not through BatchBuilder."""
    record = (b"\x00"                                        # record attributes
              + b"\x00" + b"\x00"                            # timestampDelta, offsetDelta
              + b"\x08" + (0).to_bytes(2, "big") + control_type.to_bytes(2, "big")   # key: 4 bytes
              + b"\x0c" + (0).to_bytes(2, "big") + coordinator_epoch.to_bytes(4, "big", signed=True)
              + b"\x00")                                     # no headers
    record = bytes([len(record) << 1]) + record              # zigzag length (< 64)
    after_crc = ((0x30).to_bytes(2, "big")                   # attributes: control + transactional
                 + (0).to_bytes(4, "big")                    # lastOffsetDelta
                 + timestamp.to_bytes(8, "big") * 2          # base and max timestamp
                 + producer_id.to_bytes(8, "big") + producer_epoch.to_bytes(2, "big")
                 + (-1).to_bytes(4, "big", signed=True)      # baseSequence
                 + (1).to_bytes(4, "big")                    # recordsCount
                 + record)
    size = 21 + len(after_crc)
    return ((0).to_bytes(8, "big") + (size - 12).to_bytes(4, "big") + (-1).to_bytes(4, "big", signed=True)
            + b"\x02" + crc32c(after_crc).to_bytes(4, "big") + after_crc)


def hexdump_in_format_md():
    section = FORMAT_MD.split("## Control batches", 1)[1]
    block = section.split("```", 2)[1]
    return bytes.fromhex("".join(line.split(None, 1)[1] for line in block.strip().splitlines()))


def test_the_commit_marker_is_the_golden_bytes_and_format_md_worked_example():
    data = marker_batch(ControlRecordType.COMMIT, 7, 0, 3, 1700000000000)
    assert data == golden_marker(1, 7, 0, 3, 1700000000000)
    assert len(data) == 78
    assert data == hexdump_in_format_md()


@pytest.mark.parametrize("kind", [ControlRecordType.ABORT, ControlRecordType.COMMIT])
def test_markers_read_back_through_record_batch(kind):
    data = marker_batch(kind, 123456789012, 5, -2, 1700000000123, base_offset=42, partition_leader_epoch=9)
    golden = bytearray(golden_marker(int(kind), 123456789012, 5, -2, 1700000000123))
    golden[0:8] = (42).to_bytes(8, "big")          # not CRC-covered
    golden[12:16] = (9).to_bytes(4, "big")
    assert data == bytes(golden)
    batch = RecordBatch(data).validate()
    assert batch.is_control and batch.is_transactional
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (123456789012, 5, -1)
    assert batch.end_txn_marker() == EndTxnMarker(kind, -2)
    assert batch.end_txn_marker().committed is (kind is ControlRecordType.COMMIT)


def test_the_abort_marker_differs_from_the_commit_in_the_type_byte_and_the_crc():
    commit = marker_batch(ControlRecordType.COMMIT, 7, 0, 3, 1700000000000)
    abort = marker_batch(ControlRecordType.ABORT, 7, 0, 3, 1700000000000)
    assert [i for i in range(len(commit)) if commit[i] != abort[i]][-1] == 69
    assert abort[69] == 0 and commit[69] == 1


def test_key_and_value_codecs():
    assert encode_control_key(ControlRecordType.ABORT) == b"\x00\x00\x00\x00"
    assert encode_control_key(ControlRecordType.COMMIT) == b"\x00\x00\x00\x01"
    assert encode_end_txn_marker(258) == b"\x00\x00\x00\x00\x01\x02"
    assert decode_control_key(b"\x00\x00\x00\x01") is ControlRecordType.COMMIT
    # a newer key version is read by its first fields; an unknown type is UNKNOWN (Kafka's rules)
    assert decode_control_key(b"\x00\x01\x00\x00\xff") is ControlRecordType.ABORT
    assert decode_control_key(b"\x00\x00\x00\x07") is ControlRecordType.UNKNOWN
    with pytest.raises(ValueError):
        encode_control_key(ControlRecordType.UNKNOWN)


@pytest.mark.parametrize("key,value,words", [
    (b"\x00\x00\x00", b"\x00\x00\x00\x00\x00\x01", "4 bytes"),
    (None, b"\x00\x00\x00\x00\x00\x01", "null"),
    (b"\xff\xff\x00\x01", b"\x00\x00\x00\x00\x00\x01", "version -1"),
    (b"\x00\x00\x00\x05", b"\x00\x00\x00\x00\x00\x01", "not a transaction marker"),
    (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00", "6 bytes"),
    (b"\x00\x00\x00\x01", None, "null"),
    (b"\x00\x00\x00\x01", b"\x80\x00\x00\x00\x00\x01", "version -32768"),
])
def test_a_damaged_marker_is_a_named_corrupt_record(key, value, words):
    with pytest.raises(CorruptRecord, match=words):
        decode_end_txn_marker(key, value)


def test_a_control_batch_whose_record_is_not_a_marker_raises_and_a_data_batch_has_none():
    b = BatchBuilder(producer_id=1, producer_epoch=0, transactional=True, control=True)
    b.append(1700000000000, b"\x00\x00\x00\x09", b"x")
    with pytest.raises(CorruptRecord, match="not a transaction marker"):
        RecordBatch(b.build()).end_txn_marker()
    data = BatchBuilder(producer_id=1, producer_epoch=0, base_sequence=0, transactional=True)
    data.append(1700000000000, b"k", b"v")
    batch = RecordBatch(data.build())
    assert batch.is_transactional and not batch.is_control and batch.end_txn_marker() is None
