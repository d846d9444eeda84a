"""SegmentWriter (storage/segment_writer.py), the cleaner's output: the index files it
writes are the ones a LogSegment writes for the same batches, since both follow the
sparse-index rule of storage/index_policy.py; and abort leaves nothing behind.
"""
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from odradek.client import native
from odradek.client.records import BatchBuilder, write_base_offset
from odradek.daemon.storage import LogConfig, filenames
from odradek.daemon.storage.segment import LogSegment
from odradek.daemon.storage.segment_writer import SegmentWriter

BASE = 100


def batches(shapes):
    """One batch per (records, value size, timestamp step), offsets dense from BASE,
    timestamps going up and down."""
    out, offset = [], BASE
    for i, (records, size, step) in enumerate(shapes):
        b = BatchBuilder()
        for r in range(records):
            b.append(1_000 + step * (i + r), b"k%d" % r, bytes(size))
        data = bytearray(b.build())
        write_base_offset(data, 0, offset)
        offset += records
        out.append(bytes(data))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 300), st.integers(-50, 50)),
                       min_size=1, max_size=25),
       interval=st.sampled_from([0, 1, 100, 700, 4096]))
def test_the_writer_indexes_as_a_segment_append_does(tmp_path_factory, shapes, interval):
    data = batches(shapes)
    cfg = LogConfig.from_dict({"segment.bytes": 1 << 20, "index.interval.bytes": interval})
    seg_dir, out_dir = str(tmp_path_factory.mktemp("seg")), str(tmp_path_factory.mktemp("out"))
    segment = LogSegment(seg_dir, BASE, cfg, writable=True, create=True, index_entries=0)
    writer = SegmentWriter(out_dir, BASE, interval)
    for batch in data:
        [info] = native.scan_batches(batch, cap=1).infos
        segment.append(batch, [info])
        writer.append(batch, info.last_offset, info.max_timestamp)
    segment.seal()
    segment.close()
    writer.finish()
    for name in (filenames.log_file, filenames.index_file, filenames.timeindex_file):
        with open(name(seg_dir, BASE), "rb") as a, open(name(out_dir, BASE) + filenames.CLEANED_SUFFIX, "rb") as b:
            assert a.read() == b.read(), name.__name__


def test_abort_deletes_the_output(tmp_path):
    writer = SegmentWriter(str(tmp_path), BASE, 0)
    for batch in batches([(2, 10, 1)] * 3):
        writer.append(batch, BASE, 1_000)
    writer.abort()
    assert os.listdir(tmp_path) == []
