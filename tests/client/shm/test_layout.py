"""LAYOUT.md's byte tables, the Python layout constants and odradek.h's #defines agree."""
import re
from pathlib import Path

import pytest

from odradek.client.shm import doorbell, partition_state, ring
from odradek.client.shm._lib import ffi, lib

# From the source tree, not the installed package: package_data may not ship the .md.
LAYOUT_MD = (Path(__file__).resolve().parents[3] / "client" / "shm" / "LAYOUT.md").read_text()
TYPE_SIZES = {"u32": 4, "i32": 4, "u64": 8, "i64": 8}

# (LAYOUT.md heading, Python module, Python prefix, C prefix, {field: constant suffix})
TABLES = [
    ("### Ring header", ring, "OFF_", "ODK_RING_OFF_", {}),
    ("## Doorbell", doorbell, "OFF_", "ODK_DOORBELL_OFF_", {}),
    ("### Partition state header", partition_state, "OFF_", "ODK_PSTATE_OFF_",
     {"log_start_offset": "LOG_START", "log_end_offset": "LOG_END",
      "active_segment_base": "ACTIVE_SEGMENT"}),
    ("### Batch descriptor", partition_state, "DESC_OFF_", "ODK_DESC_OFF_", {}),
]


def table(heading):
    """(offset, size, type, field) rows of the first table under `heading`."""
    section = LAYOUT_MD.split(heading + "\n", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].isdigit():
            if cells[1].isdigit():   # the payload row has no fixed size
                rows.append((int(cells[0]), int(cells[1]), cells[2], cells[3]))
        elif rows and not line.startswith("|"):
            break
    return rows


@pytest.mark.parametrize("heading,module,py_prefix,c_prefix,renames", TABLES,
                         ids=[t[0].lstrip("# ") for t in TABLES])
def test_each_table_row_matches_the_python_and_c_constants(heading, module, py_prefix,
                                                           c_prefix, renames):
    rows = table(heading)
    assert rows, heading
    for offset, size, type_, field in rows:
        suffix = renames.get(field, field.upper())
        assert getattr(module, py_prefix + suffix) == offset, (heading, field)
        assert getattr(lib, c_prefix + suffix) == offset, (heading, field)
        assert size == TYPE_SIZES[type_] and offset % size == 0, (heading, field)
    ends = [o + s for o, s, _, _ in rows]
    assert all(a <= b for a, b in zip(ends, [o for o, _, _, _ in rows[1:]])), "overlap"


def test_ring_entry_table_matches_the_entry_header():
    rows = table("### Ring entry")
    assert rows == [(0, 4, "u32", "length"), (4, 4, "u32", "tag")]
    assert ring.ENTRY_HEADER_SIZE == lib.ODK_RING_ENTRY_HEADER == 8
    assert ring.WRAP == lib.ODK_RING_WRAP == 0xFFFFFFFF


def test_magics_versions_and_sizes_agree_with_the_header():
    assert (ring.MAGIC, ring.VERSION, ring.HEADER_SIZE, ring.MIN_CAPACITY, ring.MAX_CAPACITY) == \
        (lib.ODK_RING_MAGIC, lib.ODK_RING_VERSION, lib.ODK_RING_HEADER_SIZE,
         lib.ODK_RING_MIN_CAPACITY, lib.ODK_RING_MAX_CAPACITY)
    assert (doorbell.MAGIC, doorbell.VERSION, doorbell.SIZE) == \
        (lib.ODK_DOORBELL_MAGIC, lib.ODK_DOORBELL_VERSION, lib.ODK_DOORBELL_SIZE)
    ps = partition_state
    assert (ps.MAGIC, ps.VERSION, ps.HEADER_SIZE, ps.DESC_SIZE, ps.FLAG_FENCED, ps.MIN_SLOTS,
            ps.MAX_SLOTS) == \
        (lib.ODK_PSTATE_MAGIC, lib.ODK_PSTATE_VERSION, lib.ODK_PSTATE_HEADER_SIZE,
         lib.ODK_DESC_SIZE, lib.ODK_PSTATE_FLAG_FENCED, lib.ODK_PSTATE_MIN_SLOTS,
         lib.ODK_PSTATE_MAX_SLOTS)


def test_magics_are_the_four_ascii_bytes_layout_md_names():
    for name, value in re.findall(r'`"(ODK\w)"` = (\d+)', LAYOUT_MD):
        assert int.from_bytes(name.encode(), "little") == int(value)
    assert {m.MAGIC for m in (ring, doorbell, partition_state)} == \
        {int(v) for _, v in re.findall(r'`"(ODK\w)"` = (\d+)', LAYOUT_MD)}


def test_the_seqlocked_fields_are_contiguous_and_end_the_cache_line():
    ps = partition_state
    assert ps.OFF_LOG_START == ps.OFF_SEQ + 8
    assert ps.OFF_FLAGS + 4 == 128
    assert ffi.sizeof("odk_pstate") == 64 and ffi.sizeof("odk_batch_desc") == 48


def test_the_shm_status_codes_are_distinct():
    codes = {n: getattr(lib, n) for n in dir(lib) if n.startswith("ODK_SHM_")}
    assert len(set(codes.values())) == len(codes) == 10
