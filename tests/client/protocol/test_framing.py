"""Frame layout (checked against PROTOCOL.md) and the frame splitter."""
import re
from pathlib import Path

import pytest

import odradek.client.protocol as protocol
from odradek.client.protocol import APIS, BadFrame, FrameTooLarge, messages as m
from odradek.client.protocol import _framing as f
from odradek.client.protocol._framing import FrameSplitter, encode_frame

PROTOCOL_MD = Path(protocol.__file__).with_name("PROTOCOL.md").read_text()


def md_table(heading_row):
    """Rows (lists of cell strings) of the markdown table whose header starts so."""
    lines = PROTOCOL_MD.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_row))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_header_offsets_match_the_table_in_protocol_md():
    rows = md_table("| offset | size | type | field")
    table = {r[3]: (int(r[0]), int(r[1]) if r[1] else None) for r in rows}
    assert table == {
        "length": (f.LENGTH_OFFSET, f.LENGTH_SIZE),
        "api_key": (f.API_KEY_OFFSET, f.API_KEY_SIZE),
        "api_version": (f.API_VERSION_OFFSET, f.API_VERSION_SIZE),
        "correlation_id": (f.CORRELATION_ID_OFFSET, f.CORRELATION_ID_SIZE),
        "flags": (f.FLAGS_OFFSET, f.FLAGS_SIZE),
        "body": (f.BODY_OFFSET, None),
    }
    assert f.HEADER_SIZE == 13 and f.MIN_LENGTH == 9


def test_flag_values_match_the_table_in_protocol_md():
    rows = md_table("| flag     | value")
    assert {r[0]: int(r[1], 16) for r in rows} == {
        "RESPONSE": f.FLAG_RESPONSE, "ERROR": f.FLAG_ERROR, "FDS": f.FLAG_FDS}


def test_the_api_table_in_protocol_md_matches_the_code():
    rows = md_table("| api_key | name")
    documented = {(int(r[0]), r[1], r[2]) for r in rows}
    actual = {(a.key, a.name, str(a.min_version) if a.min_version == a.max_version
               else f"{a.min_version}-{a.max_version}") for a in APIS}
    assert documented == actual


def test_the_worked_examples_in_protocol_md_are_what_the_code_sends():
    client = protocol.Connection(protocol.CLIENT)
    request = client.send_request(m.MetadataRequest(topics=["orders"]))
    assert "00000016 0003 0001 00000001 00 | 00000001 0006 6f7264657273 00" in PROTOCOL_MD
    assert request.hex() == "000000160003000100000001000000000100066f726465727300"

    server = protocol.Connection(protocol.SERVER)
    server.receive_data(encode_frame(3, 7, 2, 0, m.MetadataRequest(topics=["orders"]).encode(0)))
    reply = server.data_to_send()
    shown = re.search(r"    (00000044 0003 0007 .*)\n", PROTOCOL_MD).group(1)
    assert shown.replace(" ", "").replace("|", "") == reply.hex()
    assert len(reply) == 72


def test_default_max_frame_size_is_one_mebibyte():
    assert f.DEFAULT_MAX_FRAME_SIZE == 1 << 20 == FrameSplitter().max_frame_size


# ---- The splitter ----------------------------------------------------------------------

def frame(cid=1, body=b"abc", flags=0, key=3, version=0):
    return encode_frame(key, version, cid, flags, body)


def test_a_frame_fed_byte_by_byte_comes_out_once_whole():
    data = frame(body=b"hello") + frame(cid=2, body=b"")
    splitter = FrameSplitter()
    out = []
    for i in range(len(data)):
        splitter.feed(data[i:i + 1])
        while (fr := splitter.next_frame()) is not None:
            out.append(fr)
    assert [(x.start, x.header.correlation_id, x.body) for x in out] == \
        [(0, 1, b"hello"), (18, 2, b"")]
    assert splitter.buffered == 0 and splitter.head_position == len(data)


def test_an_oversized_length_prefix_is_refused_before_any_body_is_buffered():
    splitter = FrameSplitter(max_frame_size=100)
    splitter.feed(b"\xff\xff\xff\xff\x00\x03\x00\x00\x00\x00\x00\x09\x00")
    with pytest.raises(FrameTooLarge, match="4294967295 bytes exceeds max_frame_size 100") as info:
        splitter.next_frame()
    assert info.value.header.correlation_id == 9
    assert info.value.code == 10      # answered as MESSAGE_TOO_LARGE
    assert splitter.buffered == 13    # nothing was allocated for the claimed 4 GiB


def test_a_frame_of_exactly_max_frame_size_is_accepted():
    splitter = FrameSplitter(max_frame_size=9 + 100)
    splitter.feed(frame(body=bytes(100)))
    assert len(splitter.next_frame().body) == 100


def test_the_splitter_waits_for_the_whole_header_before_judging_the_length():
    splitter = FrameSplitter(max_frame_size=100)
    splitter.feed(b"\xff\xff\xff\xff")
    assert splitter.next_frame() is None


@pytest.mark.parametrize("data, match", [
    (b"\x00\x00\x00\x08" + bytes(9), "length 8 is shorter"),
    (frame(flags=0x80), "unknown flag bits 0x80"),
    (frame(flags=f.FLAG_ERROR), "ERROR flag on a frame that is not a response"),
])
def test_an_unusable_header_is_a_bad_frame(data, match):
    splitter = FrameSplitter()
    splitter.feed(data)
    with pytest.raises(BadFrame, match=match):
        splitter.next_frame()
