"""The public surface of odradek.client.records, pinned: others code against these names."""
import os
import subprocess
import sys

import pytest

import odradek.client.records as records

EXPECTED = {
    "BASE_OFFSET_OFFSET", "BATCH_LENGTH_OFFSET", "PARTITION_LEADER_EPOCH_OFFSET",
    "MAGIC_OFFSET", "CRC_OFFSET", "ATTRIBUTES_OFFSET", "LAST_OFFSET_DELTA_OFFSET",
    "BASE_TIMESTAMP_OFFSET", "MAX_TIMESTAMP_OFFSET", "PRODUCER_ID_OFFSET",
    "PRODUCER_EPOCH_OFFSET", "BASE_SEQUENCE_OFFSET", "RECORDS_COUNT_OFFSET",
    "RECORDS_OFFSET", "BATCH_HEADER_SIZE", "LOG_OVERHEAD", "MIN_BATCH_LENGTH", "MAGIC",
    "COMPRESSION_MASK", "TIMESTAMP_TYPE_MASK", "TRANSACTIONAL_MASK", "CONTROL_MASK",
    "DELETE_HORIZON_MASK", "Compression", "TimestampType",
    "NO_PRODUCER_ID", "NO_PRODUCER_EPOCH", "NO_SEQUENCE", "MAX_SEQUENCE", "NO_PARTITION_LEADER_EPOCH",
    "BatchHeader", "read_header", "BatchRecord", "RecordBatch", "iter_batches", "BatchBuilder", "size_of_record",
    "MAX_RECORD_OVERHEAD", "read_base_offset", "read_batch_length", "write_base_offset",
    "write_partition_leader_epoch", "write_log_append_time", "varint", "layout",
    "whole_batch_at", "next_whole_batch", "SCAN_BYTES",
    "filter_batch", "decode_batch", "DecodedBatch", "BatchRetention", "FilterResult",
    "ControlRecordType", "EndTxnMarker", "encode_control_key", "decode_control_key", "encode_end_txn_marker",
    "decode_end_txn_marker", "marker_batch",
}

RECORD_BATCH_PROPERTIES = [
    "base_offset", "batch_length", "size", "partition_leader_epoch", "magic", "crc",
    "attributes", "compression", "timestamp_type", "is_transactional", "is_control",
    "last_offset_delta", "last_offset", "base_timestamp", "max_timestamp", "producer_id",
    "producer_epoch", "base_sequence", "records_count",
]


def test_all_lists_exactly_the_public_names():
    assert set(records.__all__) == EXPECTED
    assert len(records.__all__) == len(EXPECTED)


def test_every_public_name_is_importable_from_the_package():
    for name in records.__all__:
        assert getattr(records, name) is not None, name


def test_record_batch_has_every_promised_property_and_method():
    for name in RECORD_BATCH_PROPERTIES:
        assert isinstance(getattr(records.RecordBatch, name), property), name
    for name in ["compute_crc", "crc_valid", "validate", "records"]:
        assert callable(getattr(records.RecordBatch, name)), name


def test_varint_module_exposes_its_codec():
    for name in ["encode_varint", "decode_varint", "size_of_varint", "encode_varlong",
                 "decode_varlong", "size_of_varlong"]:
        assert callable(getattr(records.varint, name)), name


@pytest.mark.parametrize("module", ["odradek.client.native", "odradek.client._native_ref",
                                    "odradek.client.records", "odradek.client.records.layout",
                                    "odradek.client.records.filter", "odradek.daemon.storage.native"])
@pytest.mark.parametrize("pure", ["0", "1"])
def test_each_module_of_the_import_cycle_can_be_imported_first(module, pure):
    # native -> _native_ref -> records.layout (so the records package) -> _batch -> native
    env = dict(os.environ, ODRADEK_PURE=pure)
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True, timeout=60)
