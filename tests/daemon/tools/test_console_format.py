"""`odradek consume`'s record line (daemon/tools/console.py Format), from a Record's
confluent-kafka methods: kafka-console-consumer's words for each timestamp type."""
from odradek.client.message import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Record
from odradek.daemon.tools.console import Format

EVERYTHING = Format(print_key=True, print_offset=True, print_timestamp=True, print_partition=True,
                    print_headers=True)


def test_each_timestamp_type_is_named_as_kafkas_console_consumer_names_it():
    for ts_type, word in ((TIMESTAMP_CREATE_TIME, b"CreateTime"), (TIMESTAMP_LOG_APPEND_TIME, b"LogAppendTime")):
        record = Record("t", 2, 7, b"k", b"v", [("h", b"x"), ("n", None)], 1_700_000_000_000, ts_type)
        assert EVERYTHING.render(record) == word + b":1700000000000\tPartition:2\tOffset:7\th:x,n:null\tk\tv\n"


def test_a_record_without_headers_key_or_timestamp_prints_kafkas_placeholders():
    record = Record("t", 0, 0, None, None, None, -1)
    assert EVERYTHING.render(record) == b"NO_TIMESTAMP\tPartition:0\tOffset:0\tNO_HEADERS\tnull\tnull\n"
