"""The body type system: round trips, null rules, and named errors for every bad input."""
import pytest
from hypothesis import given, settings, strategies as st

from odradek.client.protocol import (
    BOOL, BYTES, INT8, INT16, INT32, INT64, NULLABLE_BYTES, NULLABLE_STRING, STRING, Array,
    BadLength, InvalidUtf8, InvalidValue, LocalProtocolError, Map, RemoteProtocolError,
    Struct, TrailingBytes, Truncated, read_version)


class Inner(Struct):
    FIELDS = [
        ("name",   STRING,                 "",    0),
        ("data",   NULLABLE_BYTES,         None,  0),
        ("added",  INT32,                  7,     1),
    ]


class Everything(Struct):
    FIELDS = [
        ("i8",        INT8,                         0,      0),
        ("i16",       INT16,                        0,      0),
        ("i32",       INT32,                        0,      0),
        ("i64",       INT64,                        0,      0),
        ("flag",      BOOL,                         False,  0),
        ("text",      STRING,                       "",     0),
        ("maybe",     NULLABLE_STRING,              None,   0),
        ("blob",      BYTES,                        b"",    0),
        ("inner",     Inner,                        Inner,  0),
        ("items",     Array(Inner),                 [],     0),
        ("numbers",   Array(INT64, nullable=True),  None,   0),
        ("configs",   Map(STRING, NULLABLE_STRING), {},     0),
        ("later",     STRING,                       "new",  2),
    ]


ALL_TYPES = [INT8, INT16, INT32, INT64, BOOL, STRING, NULLABLE_STRING, BYTES,
             NULLABLE_BYTES, Array(INT32), Array(STRING, nullable=True),
             Map(STRING, INT32), Inner._type]


def roundtrip(t, value, version=0):
    out = bytearray()
    t.encode(value, out, version)
    decoded, pos = t.decode(bytes(out), 0, len(out), version)
    assert pos == len(out)
    return decoded


@pytest.mark.parametrize("t", ALL_TYPES, ids=repr)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_type_round_trips_any_value_it_accepts(strategies, t, data):
    value = data.draw(strategies.of_type(t))
    assert roundtrip(t, value) == value


@pytest.mark.parametrize("version", [0, 1, 2])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_struct_with_every_type_round_trips_at_each_version(strategies, version, data):
    value = data.draw(strategies.message(Everything, version))
    assert Everything.decode(value.encode(version), version) == value


def test_integers_are_big_endian_twos_complement():
    assert Inner(name="ab").encode(0) == b"\x00\x02ab\xff\xff\xff\xff"
    out = bytearray()
    INT32.encode(-2, out, 0)
    INT16.encode(258, out, 0)
    assert bytes(out) == b"\xff\xff\xff\xfe\x01\x02"


def test_a_field_is_on_the_wire_only_from_its_since_version():
    old, new = Inner(name="x", added=9).encode(0), Inner(name="x", added=9).encode(1)
    assert len(new) == len(old) + 4
    assert Inner.decode(old, 0).added == 7    # the default, not the 9 that was not sent
    assert Inner.decode(new, 1).added == 9


class Dropped(Struct):
    FIELDS = [
        ("kept",     INT16,  0,   0),
        ("only_v1",  INT32,  -1,  1,  1),    # like Kafka's OffsetCommitValue.expireTimestamp
        ("added",    INT8,   0,   2),
    ]


def test_a_field_with_an_until_version_is_on_the_wire_only_in_its_range():
    value = Dropped(kept=1, only_v1=5, added=3)
    assert value.encode(0) == b"\x00\x01"
    assert value.encode(1) == b"\x00\x01\x00\x00\x00\x05"
    assert value.encode(2) == b"\x00\x01\x03"
    assert Dropped.decode(b"\x00\x01\x03", 2) == Dropped(kept=1, only_v1=-1, added=3)
    assert Dropped.decode(value.encode(1), 1) == Dropped(kept=1, only_v1=5, added=0)


def test_an_until_version_must_be_one_int_not_before_the_since_version():
    for row in [("x", INT8, 0, 2, 1), ("x", INT8, 0, 0, 1, 2), ("x", INT8, 0, 0, "1")]:
        with pytest.raises(TypeError, match="until_version"):
            class Bad(Struct):
                FIELDS = [row]


def test_a_default_that_only_an_older_version_writes_is_checked_at_declaration():
    with pytest.raises(LocalProtocolError):
        class Bad(Struct):
            FIELDS = [("x", INT8, 0, 0), ("gone", INT8, 1000, 0, 0), ("y", INT8, 0, 1)]


def test_a_version_prefixed_record_is_an_int16_version_then_the_struct():
    data = Inner(name="ab", added=1).encode_versioned(1)
    assert data == b"\x00\x01" + b"\x00\x02ab" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x01"
    version, body = read_version(data)
    assert version == 1 and Inner.decode(body, version) == Inner(name="ab", added=1)
    with pytest.raises(LocalProtocolError, match="version 70000"):
        Inner().encode_versioned(70000)


@pytest.mark.parametrize("data, error", [(b"", Truncated), (b"\x00", Truncated), (b"\xff\xfe", InvalidValue)])
def test_a_record_without_a_valid_version_is_garbage(data, error):
    with pytest.raises(error):
        read_version(data)


def test_ignore_trailing_reads_a_prefix_and_drops_the_rest():
    data = Inner(name="z").encode(1) + b"later fields"
    assert Inner.decode(data, 1, ignore_trailing=True) == Inner(name="z")
    with pytest.raises(TrailingBytes):
        Inner.decode(data, 1)


def test_defaults_are_fresh_for_each_instance():
    a, b = Everything(), Everything()
    a.items.append(Inner())
    a.configs["k"] = "v"
    a.inner.name = "changed"
    assert b.items == [] and b.configs == {} and b.inner.name == ""


def test_a_struct_refuses_unknown_fields_at_construction_and_assignment():
    with pytest.raises(TypeError, match="nmae"):
        Inner(nmae="typo")
    with pytest.raises(AttributeError):
        Inner().nmae = "typo"


def test_struct_equality_and_repr_show_every_field():
    assert Inner(name="a") == Inner(name="a") != Inner(name="b")
    assert repr(Inner(name="a")) == "Inner(name='a', data=None, added=7)"


def test_to_dict_gives_plain_values_all_the_way_down():
    value = Everything(items=[Inner(name="x")], configs={"a": None})
    d = value.to_dict()
    assert d["items"] == [{"name": "x", "data": None, "added": 7}]
    assert d["inner"] == {"name": "", "data": None, "added": 7}
    assert d["configs"] == {"a": None}


# ---- Encoding errors are ours: LocalProtocolError naming the field ---------------------

@pytest.mark.parametrize("field, value, match", [
    ("i8", 128, "does not fit INT8"),
    ("i16", -32769, "does not fit INT16"),
    ("i32", "1", "needs an int"),
    ("i64", True, "needs an int"),
    ("flag", 1, "True or False"),
    ("text", None, "null is not allowed"),
    ("text", "\udc80", "not encodable"),
    ("text", "x" * 32768, "exceeds 32767"),
    ("blob", "str", "needs bytes"),
    ("items", [Inner(), "not a struct"], r"items\[1\]: Inner needed"),
    ("numbers", (1, 2**63), r"numbers\[1\]: 9223372036854775808 does not fit INT64"),
    ("configs", {"k": 5}, "configs.'k': NULLABLE_STRING needs a str"),
    ("configs", [("k", "v")], "needs a dict"),
])
def test_encoding_a_value_its_type_cannot_hold_is_a_local_protocol_error(field, value, match):
    with pytest.raises(LocalProtocolError, match=match) as info:
        Everything(**{field: value}).encode(2)
    assert str(info.value).startswith("UNKNOWN_SERVER_ERROR: Everything.")


def test_nested_encode_errors_name_the_whole_path():
    with pytest.raises(LocalProtocolError, match=r"Everything\.items\[0\]\.name: null"):
        Everything(items=[Inner(name=None)]).encode(0)


def test_a_struct_table_with_a_bad_default_is_refused_at_declaration():
    with pytest.raises(LocalProtocolError):
        class Bad(Struct):
            FIELDS = [("x", INT8, 1000, 0)]


def test_a_struct_table_with_a_repeated_or_reserved_name_is_refused():
    with pytest.raises(TypeError, match="twice"):
        class Twice(Struct):
            FIELDS = [("x", INT8, 0, 0), ("x", INT8, 0, 0)]
    with pytest.raises(TypeError, match="bad field name"):
        class Shadow(Struct):
            FIELDS = [("encode", INT8, 0, 0)]


# ---- Decoding garbage: named RemoteProtocolErrors --------------------------------------

@pytest.mark.parametrize("t, data, error, match", [
    (INT32, b"\x00\x01", Truncated, "INT32 needs 4 bytes, 2 left"),
    (BOOL, b"\x02", InvalidValue, "BOOL byte is 2"),
    (BOOL, b"", Truncated, "BOOL needs 1 byte"),
    (STRING, b"\x00", Truncated, "string length needs 2 bytes"),
    (STRING, b"\x00\x05abc", Truncated, "string of 5 bytes, 3 left"),
    (STRING, b"\xff\xff", InvalidValue, "null string"),
    (NULLABLE_STRING, b"\xff\xfe", BadLength, "string length -2"),
    (STRING, b"\x00\x02\xc3\x28", InvalidUtf8, "not UTF-8"),
    (STRING, b"\x00\x03\xed\xa0\x80", InvalidUtf8, "not UTF-8"),   # an encoded surrogate
    (BYTES, b"\xff\xff\xff\xff", InvalidValue, "null bytes"),
    (NULLABLE_BYTES, b"\x80\x00\x00\x00", BadLength, "bytes length -2147483648"),
    (BYTES, b"\x00\x00\x00\x09abc", Truncated, "bytes of length 9, 3 left"),
    (Array(INT8), b"\xff\xff\xff\xff", InvalidValue, "null array"),
    (Array(INT8, nullable=True), b"\xff\xff\xff\xf0", BadLength, "array count -16"),
    (Array(INT64), b"\x00\x00\x00\x02" + bytes(15), BadLength, "count 2 cannot fit in the 15"),
    (Array(INT8), b"\x7f\xff\xff\xff", BadLength, "count 2147483647 cannot fit in the 0"),
    (Map(STRING, STRING), b"\x00\x00\x00\x02\x00\x01a\x00\x00\x00\x01a\x00\x00",
     InvalidValue, "map key 'a' appears twice"),
    (Map(STRING, STRING), b"\x00\x00\x00\x01\x00", BadLength, "map count 1"),
])
def test_decoding_garbage_raises_the_named_protocol_error(t, data, error, match):
    with pytest.raises(error, match=match) as info:
        t.decode(data, 0, len(data), 0)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.code == 42


def test_an_array_of_elements_that_take_no_bytes_is_refused_at_declaration():
    # Counts are bounded by the bytes left only because every element takes a byte.
    class Empty(Struct):
        FIELDS = []

    class OnlyLater(Struct):
        FIELDS = [("x", INT8, 0, 1)]
    for item in (Empty, OnlyLater):
        with pytest.raises(TypeError, match="at least one byte"):
            Array(item)


def test_trailing_bytes_after_a_struct_are_garbage():
    with pytest.raises(TrailingBytes, match="Inner: 1 bytes after the last field"):
        Inner.decode(Inner().encode(0) + b"\x00", 0)


def test_decode_errors_name_the_field_path_in_their_message():
    good = Everything(items=[Inner(), Inner(name="abc")]).encode(0)
    bad = good.replace(b"\x00\x03abc", b"\x00\x03\xffbc")
    with pytest.raises(InvalidUtf8, match=r"Everything\.items\[1\]\.name: string is not UTF-8"):
        Everything.decode(bad, 0)


def test_decode_accepts_any_bytes_like_buffer():
    data = Inner(name="z").encode(1)
    assert Inner.decode(memoryview(data), 1) == Inner.decode(bytearray(data), 1) == Inner(name="z")
