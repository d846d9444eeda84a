"""The layout constants, FORMAT.md's tables and its worked example agree."""
import re
from pathlib import Path

import odradek.client.records as records
from odradek.client import native
from odradek.client.records import BatchBuilder, RecordBatch, layout

FORMAT_MD = Path(records.__file__).with_name("FORMAT.md").read_text()

FIELD_CONSTANTS = {
    "baseOffset": "BASE_OFFSET", "batchLength": "BATCH_LENGTH",
    "partitionLeaderEpoch": "PARTITION_LEADER_EPOCH", "magic": "MAGIC", "crc": "CRC",
    "attributes": "ATTRIBUTES", "lastOffsetDelta": "LAST_OFFSET_DELTA",
    "baseTimestamp": "BASE_TIMESTAMP", "maxTimestamp": "MAX_TIMESTAMP",
    "producerId": "PRODUCER_ID", "producerEpoch": "PRODUCER_EPOCH",
    "baseSequence": "BASE_SEQUENCE", "recordsCount": "RECORDS_COUNT", "records": "RECORDS",
}
TYPE_SIZES = {"int8": 1, "int16": 2, "int32": 4, "uint32": 4, "int64": 8}


def header_table():
    """(offset, size or None, type, field) for each row of FORMAT.md's header table."""
    section = FORMAT_MD.split("## Batch header", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].isdigit():
            rows.append((int(cells[0]), int(cells[1]) if cells[1] else None, cells[2], cells[3]))
    return rows


def test_format_md_header_table_matches_the_layout_constants():
    rows = header_table()
    assert [r[3] for r in rows] == list(FIELD_CONSTANTS)
    for offset, size, type_, field in rows:
        name = FIELD_CONSTANTS[field]
        assert getattr(layout, name + "_OFFSET") == offset, field
        if size is not None:
            assert getattr(layout, name + "_LENGTH") == size == TYPE_SIZES[type_], field


def test_each_offset_is_the_previous_offset_plus_its_size():
    rows = header_table()
    for (offset, size, _, _), (next_offset, _, _, _) in zip(rows, rows[1:]):
        assert offset + size == next_offset


def test_layout_constants_have_the_values_kafka_defines():
    r = records
    assert (r.BASE_OFFSET_OFFSET, r.BATCH_LENGTH_OFFSET, r.PARTITION_LEADER_EPOCH_OFFSET,
            r.MAGIC_OFFSET, r.CRC_OFFSET, r.ATTRIBUTES_OFFSET, r.LAST_OFFSET_DELTA_OFFSET,
            r.BASE_TIMESTAMP_OFFSET, r.MAX_TIMESTAMP_OFFSET, r.PRODUCER_ID_OFFSET,
            r.PRODUCER_EPOCH_OFFSET, r.BASE_SEQUENCE_OFFSET, r.RECORDS_COUNT_OFFSET,
            r.RECORDS_OFFSET) == (0, 8, 12, 16, 17, 21, 23, 27, 35, 43, 51, 53, 57, 61)
    assert r.BATCH_HEADER_SIZE == r.RECORDS_OFFSET == layout.HEADER_STRUCT.size == 61
    assert r.LOG_OVERHEAD == 12 and r.MIN_BATCH_LENGTH == 49 and r.MAGIC == 2
    assert (r.COMPRESSION_MASK, r.TIMESTAMP_TYPE_MASK, r.TRANSACTIONAL_MASK, r.CONTROL_MASK,
            r.DELETE_HORIZON_MASK) == (0x07, 0x08, 0x10, 0x20, 0x40)
    assert (r.NO_PRODUCER_ID, r.NO_PRODUCER_EPOCH, r.NO_SEQUENCE,
            r.NO_PARTITION_LEADER_EPOCH) == (-1, -1, -1, -1)


def test_layout_agrees_with_the_native_module_and_its_header():
    assert native.BATCH_HEADER_SIZE == records.BATCH_HEADER_SIZE
    assert native.LOG_OVERHEAD == records.LOG_OVERHEAD


def test_format_md_attribute_table_matches_the_masks():
    section = FORMAT_MD.split("## Attributes", 1)[1].split("\n## ", 1)[0]
    masks = [int(m, 16) for m in re.findall(r"`(0x[0-9a-f]+)`", section)]
    assert masks == [records.COMPRESSION_MASK, records.TIMESTAMP_TYPE_MASK,
                     records.TRANSACTIONAL_MASK, records.CONTROL_MASK,
                     records.DELETE_HORIZON_MASK]


def test_compression_and_timestamp_type_codes_are_kafkas():
    C = records.Compression
    assert [(c.name, int(c)) for c in C] == [("NONE", 0), ("GZIP", 1), ("SNAPPY", 2),
                                             ("LZ4", 3), ("ZSTD", 4)]
    assert C.from_name("gzip") is C.GZIP and C.from_name("ZSTD") is C.ZSTD
    assert C.GZIP.label == "gzip"
    assert (int(records.TimestampType.CREATE_TIME), int(records.TimestampType.LOG_APPEND_TIME)) == (0, 1)


def test_compression_from_name_rejects_unknown_names_listing_the_choices():
    import pytest
    with pytest.raises(ValueError, match="none, gzip, snappy, lz4, zstd"):
        records.Compression.from_name("brotli")


def test_format_md_worked_example_is_what_the_builder_produces():
    dump = FORMAT_MD.split("## Worked example", 1)[1].split("```", 2)[1]
    expected = bytes.fromhex("".join(line[6:] for line in dump.strip().splitlines()))
    b = BatchBuilder(producer_id=7, producer_epoch=0, base_sequence=0)
    b.append(1700000000000, b"k1", b"hello", [("h", b"v")])
    assert b.build() == expected
    batch = RecordBatch(expected).validate()
    assert batch.crc == 0xFB4CEF8E == native.crc32c(expected[21:])
    assert batch.batch_length == 67 and batch.size == 79


def test_format_md_worked_example_crc_is_confirmed_by_kafka_python():
    from kafka.record.default_records import DefaultRecordBatch
    dump = FORMAT_MD.split("## Worked example", 1)[1].split("```", 2)[1]
    data = bytes.fromhex("".join(line[6:] for line in dump.strip().splitlines()))
    kb = DefaultRecordBatch(data)
    assert kb.validate_crc()
    (rec,) = list(kb)
    assert (rec.key, rec.value, rec.headers) == (b"k1", b"hello", [("h", b"v")])


def test_batch_header_names_the_fields_of_the_format_md_table_in_order():
    snake = [re.sub(r"(?<!^)([A-Z])", r"_\1", field).lower() for *_, field in header_table()]
    assert list(layout.BatchHeader._fields) == snake[:-1]     # all but the records themselves


def test_read_header_gives_each_field_of_the_batch_at_a_position():
    b = BatchBuilder(producer_id=7, producer_epoch=3, base_sequence=11)
    b.append(1700000000000, b"k1", b"hello")
    b.append(1700000000005, None, b"x")
    data = b"\x00" * 5 + b.build()
    header = layout.read_header(data, 5)
    batch = RecordBatch(data[5:])
    assert type(header) is layout.BatchHeader
    assert header._asdict() == {name: getattr(batch, name) for name in layout.BatchHeader._fields}
    assert (header.records_count, header.last_offset_delta, header.producer_id) == (2, 1, 7)
    out = bytearray(len(data) - 5)
    layout.HEADER_STRUCT.pack_into(out, 0, *header)
    assert bytes(out[:61]) == data[5:66]
