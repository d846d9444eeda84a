"""The __transaction_state record layouts (FORMAT.md), byte for byte as Kafka's
TransactionLogKey/Value v0 write them (the bytes below are derived by hand from Kafka's
JSON schemas, not from our encoder)."""
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek.daemon.broker.txn import transaction_log as tlog

FORMAT_MD = os.path.join(os.path.dirname(tlog.__file__), "FORMAT.md")

KEY = bytes.fromhex("0000" "0004" "74782d31")                       # version 0, "tx-1"
ONGOING = bytes.fromhex(
    "0000"                                   # version 0
    "00000000000003e8"                       # producer_id 1000
    "0005"                                   # producer_epoch 5
    "0000ea60"                               # transaction_timeout_ms 60000
    "01"                                     # transaction_status Ongoing
    "00000001" "0006" "6f7264657273"         # 1 PartitionsSchema: topic "orders"
    "00000002" "00000000" "00000003"         #   partition_ids [0, 3]
    "0000018bcfe56800"                       # last update 1700000000000
    "0000018bcfe56418")                      # start 1699999999000
EMPTY = bytes.fromhex(
    "0000" "00000000000003e8" "0006" "0000ea60" "00" "ffffffff" "0000018bcfe56800" "ffffffffffffffff")


def test_key_v0():
    assert tlog.encode_key("tx-1") == KEY
    assert tlog.decode_key(KEY) == "tx-1"


def test_an_ongoing_value_v0():
    record = tlog.TxnRecord(1000, 5, 60_000, 1, frozenset({("orders", 3), ("orders", 0)}),
                            1_700_000_000_000, 1_699_999_999_000)
    assert tlog.encode_value(record, empty=False) == ONGOING
    assert tlog.decode_value(ONGOING) == record


def test_an_empty_value_has_null_partitions():
    record = tlog.TxnRecord(1000, 6, 60_000, 0, frozenset(), 1_700_000_000_000, -1)
    assert tlog.encode_value(record, empty=True) == EMPTY
    assert tlog.decode_value(EMPTY) == record


def test_format_md_shows_these_bytes():
    text = open(FORMAT_MD).read()
    shown = re.findall(r"(key|value):\s+((?:[0-9a-f]{2}[ |\n]+)+)", text)
    blobs = [bytes.fromhex(re.sub(r"[^0-9a-f]", "", b)) for _, b in shown]
    assert blobs == [KEY, ONGOING, EMPTY]


@pytest.mark.parametrize("data, what", [
    (b"", "version"), (b"\x00", "version"), (b"\x00\x01" + KEY[2:], "version 1"),
    (KEY + b"x", "after the last field"), (bytes.fromhex("0000" "0005" "7478"), "bytes"),
])
def test_bad_keys_are_format_errors(data, what):
    with pytest.raises(tlog.FormatError):
        tlog.decode_key(data)


def test_bad_values_are_format_errors():
    for data in (ONGOING[:-1], ONGOING + b"\x00", b"\x00\x01" + ONGOING[2:], EMPTY[:20], b"\xff\xff"):
        with pytest.raises(tlog.FormatError):
            tlog.decode_value(data)


@given(pid=st.integers(0, 2 ** 63 - 1), epoch=st.integers(0, 32767), status=st.integers(0, 7),
       parts=st.frozensets(st.tuples(st.text(min_size=1, max_size=5), st.integers(0, 2 ** 31 - 1)), max_size=6),
       start=st.integers(-1, 2 ** 62), update=st.integers(0, 2 ** 62))
def test_values_round_trip(pid, epoch, status, parts, start, update):
    record = tlog.TxnRecord(pid, epoch, 1000, status, parts, update, start)
    assert tlog.decode_value(tlog.encode_value(record, empty=False)) == record


@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_but_format_error(data):
    for decode in (tlog.decode_key, tlog.decode_value):
        try:
            decode(data)
        except tlog.FormatError:
            pass
