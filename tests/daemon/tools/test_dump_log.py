"""odradek dump-log: what it prints for good logs, and what --verify catches."""
import os
import struct
import warnings

import pytest
from click.testing import CliRunner

from odradek.daemon.cli import cli
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage import filenames
from odradek.daemon.tools import dump_log
from support.clock import FakeClock
from support.records import make_batch

T0 = 1_700_000_000_000
# index.interval.bytes below one batch: every batch after the first gets index entries
CONFIG = {"segment.bytes": 4096, "index.interval.bytes": 64}


def write_log(tmp_path, batches=3, close=True, config=CONFIG):
    """A partition log of `batches` batches of 3 keyed records; returns (dir, sizes).
    close=False leaves it as a crash would: preallocated, untrimmed files."""
    directory = str(tmp_path / "t-0")
    log = PartitionLog(directory, LogConfig(config), FakeClock())
    sizes = []
    for i in range(batches):
        data = make_batch([b"v%d" % (3 * i + j) for j in range(3)], T0 + 10 * i,
                          keys=[b"k%d" % j for j in range(3)], headers=[("h", b"x")])
        sizes.append(len(data))
        log.append(data)
    if close:
        log.close()
    else:
        for s in log.segments:
            s.close()  # drop the maps: no trim, no checkpoint
    return directory, sizes


def run(*args):
    return CliRunner().invoke(cli, ["dump-log", *map(str, args)])


def batch_lines(output):
    """Each 'baseOffset: ...' line as a dict of its fields."""
    rows = []
    for line in output.splitlines():
        if line.startswith("baseOffset:"):
            words = line.split()
            rows.append({k.rstrip(":"): v for k, v in zip(words[::2], words[1::2])})
    return rows


def fields(row, names):
    return tuple(row[n] for n in names.split())


def segment(directory, suffix, base=0):
    return os.path.join(directory, filenames.segment_name(base) + suffix)


def patch(path, position, data):
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(data)


def assert_verify_fails(result, path, position, *words):
    """Exit 1, exactly one stderr line naming the file, the position and what differs."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("odradek: error: verification failed: ")
    assert f"{path}: position {position}:" in lines[0]
    for word in ("expected", "found", *words):
        assert word in lines[0]
    assert "Traceback" not in result.output
    assert f"WARNING: {path}: position {position}:" in result.stdout


# ---- printing ------------------------------------------------------------------------
def test_dump_of_a_partition_log_prints_offsets_positions_sizes_and_counts(tmp_path):
    directory, sizes = write_log(tmp_path)
    result = run(segment(directory, ".log"))
    assert result.exit_code == 0, result.output
    rows = batch_lines(result.stdout)
    assert [(r["baseOffset"], r["lastOffset"], r["count"]) for r in rows] == \
        [("0", "2", "3"), ("3", "5", "3"), ("6", "8", "3")]
    assert [int(r["position"]) for r in rows] == [0, sizes[0], sizes[0] + sizes[1]]
    assert [int(r["size"]) for r in rows] == sizes
    assert all(r["isValid"] == "true" and r["magic"] == "2" and r["compresscodec"] == "none"
               and r["timestampType"] == "CreateTime" and r["producerId"] == "-1" for r in rows)
    assert [r["maxTimestamp"] for r in rows] == [str(T0 + 2), str(T0 + 12), str(T0 + 22)]
    assert "3 batches, 9 records, offsets 0..8" in result.stdout


def test_dump_of_a_partition_directory_covers_every_segment_in_offset_order(tmp_path):
    directory, _ = write_log(tmp_path, batches=30, config={**CONFIG, "segment.bytes": 1024})
    bases = sorted(p[0] for p in map(filenames.parse_segment_file, os.listdir(directory))
                   if p and p[1] == ".log")
    assert len(bases) > 1
    result = run(directory)
    assert result.exit_code == 0, result.output
    dumped = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Dumping")]
    assert dumped == [segment(directory, ".log", b) for b in bases]
    assert [int(r["baseOffset"]) for r in batch_lines(result.stdout)] == list(range(0, 90, 3))


def test_print_records_shows_offsets_timestamps_keys_values_and_headers(tmp_path):
    path = tmp_path / filenames.log_file("", 0)
    path.write_bytes(make_batch([b"hello", b"\x00\xff", None, b"two\nlines"], T0,
                                keys=[b"k1", None, b"", b"k4"], headers=[("h", b"v"), ("n", None)]))
    result = run("--print-records", path)
    assert result.exit_code == 0, result.output
    records = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert records == [
        f"| offset: 0 CreateTime: {T0} keySize: 2 valueSize: 5 sequence: -1 key: k1 value: hello "
        f"headers: [h=v, n=null]",
        f"| offset: 1 CreateTime: {T0 + 1} keySize: -1 valueSize: 2 sequence: -1 key: null "
        f"value: 0x00ff headers: [h=v, n=null]",
        f'| offset: 2 CreateTime: {T0 + 2} keySize: 0 valueSize: -1 sequence: -1 key: "" '
        f"value: null headers: [h=v, n=null]",
        f"| offset: 3 CreateTime: {T0 + 3} keySize: 2 valueSize: 9 sequence: -1 key: k4 "
        f"value: two\\nlines headers: [h=v, n=null]",
    ]
    assert run("--print-data-log", path).stdout == result.stdout   # Kafka's name for it


def test_index_files_print_their_entries(tmp_path):
    directory, sizes = write_log(tmp_path)
    result = run(segment(directory, ".index"), segment(directory, ".timeindex"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # an entry for each batch after the first: its last offset at its position
    assert f"offset: 5 position: {sizes[0]}" in lines
    assert f"offset: 8 position: {sizes[0] + sizes[1]}" in lines
    assert f"timestamp: {T0 + 22} offset: 8" in lines


def test_a_segment_written_by_kafka_python_dumps_correctly(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.record.default_records import DefaultRecordBatchBuilder
    plain = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, batch_size=1 << 20)
    plain.append(0, T0, b"key", b"value", [("trace", b"t1")])
    plain.append(1, T0 + 5, None, b"\x01\x02", [])
    gzipped = DefaultRecordBatchBuilder(2, 1, False, 4242, 3, 17, batch_size=1 << 20)
    for i in range(3):
        gzipped.append(i, T0 + 100 + i, b"g%d" % i, b"gzip value %d" % i, [])
    second = bytearray(gzipped.build())
    struct.pack_into(">q", second, 0, 2)   # the broker assigns baseOffset 2 (not CRC-covered)
    path = tmp_path / filenames.log_file("", 0)
    path.write_bytes(bytes(plain.build()) + bytes(second))

    result = run("--print-records", "--verify", path)
    assert result.exit_code == 0, result.output
    first, gz = batch_lines(result.stdout)
    assert fields(first, "baseOffset lastOffset count position") == ("0", "1", "2", "0")
    assert fields(first, "isValid compresscodec partitionLeaderEpoch") == ("true", "none", "0")
    assert fields(gz, "baseOffset lastOffset count compresscodec") == ("2", "4", "3", "gzip")
    assert fields(gz, "producerId producerEpoch baseSequence lastSequence") == \
        ("4242", "3", "17", "19")
    assert gz["isValid"] == "true" and int(gz["position"]) == int(first["size"])
    records = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert records[0].endswith("key: key value: value headers: [trace=t1]")
    assert "key: null value: 0x0102" in records[1]
    assert f"| offset: 4 CreateTime: {T0 + 102} keySize: 2 valueSize: 12 sequence: 19 key: g2 " \
           f"value: gzip value 2" in records[4]


@pytest.mark.parametrize("codec,name", [(2, "snappy"), (3, "lz4"), (4, "zstd")])
def test_kafka_python_batches_in_every_codec_dump_their_records(tmp_path, codec, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.record.default_records import DefaultRecordBatchBuilder
    b = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, batch_size=1 << 20)
    for i in range(20):
        b.append(i, T0 + i, b"k%d" % i, b"%s value %d " % (name.encode(), i) * 10, [])
    path = tmp_path / filenames.log_file("", 0)
    path.write_bytes(bytes(b.build()))
    result = run("--print-records", "--verify", path)
    assert result.exit_code == 0, result.output
    (batch,) = batch_lines(result.stdout)
    assert fields(batch, "baseOffset lastOffset count compresscodec isValid") == ("0", "19", "20", name, "true")
    records = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(records) == 20 and records[19].endswith("value: " + f"{name} value 19 " * 10 + " headers: []")


def test_batches_larger_than_the_read_window_are_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(dump_log, "_WINDOW", 100)   # smaller than one batch
    directory, sizes = write_log(tmp_path, batches=5)
    result = run("--verify", directory)
    assert result.exit_code == 0, result.output
    assert [int(r["position"]) for r in batch_lines(result.stdout)] == \
        [sum(sizes[:i]) for i in range(5)]


# ---- verify: good logs ---------------------------------------------------------------
def test_verify_passes_a_log_written_by_partition_log(tmp_path):
    directory, _ = write_log(tmp_path, batches=30, config={**CONFIG, "segment.bytes": 1024})
    result = run("--verify", directory)
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.stdout and result.stderr == ""
    assert "verified: no problems" in result.stdout


def test_zero_padding_after_the_last_batch_is_reported_and_is_not_an_error(tmp_path):
    directory, sizes = write_log(tmp_path)
    path = segment(directory, ".log")
    with open(path, "ab") as f:
        f.write(bytes(3 << 20))       # written zeros, read and checked
    os.truncate(path, 64 << 20)       # and a sparse tail, skipped with SEEK_DATA
    result = run("--verify", path)
    assert result.exit_code == 0, result.output
    padding = (64 << 20) - sum(sizes)
    assert f"{padding} bytes of zero padding after the last batch" in result.stdout


def test_a_segment_left_by_a_crash_verifies_with_zero_padding_in_log_and_indexes(tmp_path):
    directory, sizes = write_log(tmp_path, close=False)   # preallocated log and indexes
    result = run("--verify", directory)
    assert result.exit_code == 0, result.output
    assert "bytes of zero padding after the last batch" in result.stdout
    assert "2 entries checked against the log, " in result.stdout
    assert "bytes of zero padding after them" in result.stdout


# ---- verify: damage ------------------------------------------------------------------
def test_verify_fails_on_a_flipped_byte_naming_the_batch_and_both_crcs(tmp_path):
    directory, sizes = write_log(tmp_path)
    path = segment(directory, ".log")
    with open(path, "r+b") as f:
        f.seek(sizes[0] + 70)              # in the second batch's records
        byte = f.read(1)
        f.seek(sizes[0] + 70)
        f.write(bytes([byte[0] ^ 0x01]))
    result = run("--verify", path)
    assert_verify_fails(result, path, sizes[0], "crc")
    rows = batch_lines(result.stdout)
    assert [r["isValid"] for r in rows] == ["true", "false", "true"]   # and the dump goes on


def test_verify_fails_on_a_truncated_tail_naming_the_size_expected_and_found(tmp_path):
    directory, sizes = write_log(tmp_path)
    path = segment(directory, ".log")
    os.truncate(path, sum(sizes) - 10)
    result = run("--verify", path)
    start = sizes[0] + sizes[1]
    assert_verify_fails(result, path, start, "torn tail")
    assert f"batch size expected {sizes[2]} bytes" in result.stderr
    assert f"found {sizes[2] - 10} before the end of the file" in result.stderr


def test_verify_fails_on_offsets_going_backwards(tmp_path):
    path = tmp_path / filenames.log_file("", 0)
    batch = make_batch([b"a", b"b", b"c"], T0)
    path.write_bytes(batch + batch)        # both at baseOffset 0
    result = run("--verify", path)
    assert_verify_fails(result, path, len(batch), "baseOffset")
    assert "baseOffset expected >= 3" in result.stderr and "found 0" in result.stderr


def test_verify_fails_on_a_bad_magic_and_reads_on_after_the_batch(tmp_path):
    directory, sizes = write_log(tmp_path)
    path = segment(directory, ".log")
    patch(path, 16, b"\x07")
    result = run("--verify", path)
    assert_verify_fails(result, path, 0, "magic expected 2, found 7")
    assert [r["isValid"] for r in batch_lines(result.stdout)] == ["false", "true", "true"]


def test_verify_fails_on_an_index_entry_pointing_inside_a_batch(tmp_path):
    directory, sizes = write_log(tmp_path)
    index = segment(directory, ".index")
    relative, position = struct.unpack(">II", open(index, "rb").read(8))
    assert position == sizes[0]
    patch(index, 4, struct.pack(">I", position + 1))
    result = run("--verify", index)
    assert_verify_fails(result, index, 0, "batch start")
    assert f"expected a batch start, found {position + 1}" in result.stderr


def test_verify_fails_on_an_index_entry_naming_the_wrong_offset(tmp_path):
    directory, sizes = write_log(tmp_path)
    index = segment(directory, ".index")
    patch(index, 0, struct.pack(">I", 4))   # the batch at that position ends at offset 5
    result = run("--verify", directory)
    assert_verify_fails(result, index, 0, "offset expected 5", "found 4")


def test_verify_fails_on_a_time_index_entry_past_the_end_of_the_log(tmp_path):
    directory, _ = write_log(tmp_path)
    timeindex = segment(directory, ".timeindex")
    end = os.path.getsize(timeindex)
    with open(timeindex, "ab") as f:
        f.write(struct.pack(">qI", T0 + 1000, 50))   # a later timestamp, offset 50 > 8
    result = run("--verify", directory)
    assert_verify_fails(result, timeindex, end, "offset expected below 9", "found 50")


def test_without_verify_problems_are_warnings_and_the_exit_status_is_zero(tmp_path):
    directory, sizes = write_log(tmp_path)
    path = segment(directory, ".log")
    os.truncate(path, sum(sizes) - 1)
    result = run(path)
    assert result.exit_code == 0 and result.stderr == ""
    assert f"WARNING: {path}: position {sizes[0] + sizes[1]}: torn tail" in result.stdout


def test_snapshot_files_are_printed_and_a_corrupt_one_is_a_problem(tmp_path):
    from odradek.daemon.storage import producer_snapshot
    from odradek.daemon.storage.producer_snapshot import SnapshotEntry
    directory, _ = write_log(tmp_path, batches=3)
    producer_snapshot.write(directory, 6, [SnapshotEntry(7, 0, 5, 5, 2, T0)])
    producer_snapshot.write(directory, 9, [SnapshotEntry(7, 0, 8, 8, 2, T0), SnapshotEntry(8, 1, 3, -1, 0, T0)])
    result = run(directory, "--verify")
    assert result.exit_code == 0, result.output
    dumped = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Dumping")]
    assert dumped[-2:] == [filenames.snapshot_file(directory, 6), filenames.snapshot_file(directory, 9)]
    assert "producerId: 7 producerEpoch: 0 coordinatorEpoch: -1 currentTxnFirstOffset: -1 firstSequence: 6 " \
           "lastSequence: 8 lastOffset: 8 offsetDelta: 2 timestamp: %d" % T0 in result.stdout
    assert "lastOffset: -1 offsetDelta: 0 timestamp: %d (a refused batch" % T0 in result.stdout
    path = filenames.snapshot_file(directory, 9)
    with open(path, "r+b") as f:
        f.seek(20)
        f.write(b"\x55")
    result = run(path, "--verify")
    assert result.exit_code != 0
    assert "CRC-32C" in result.output and path in result.output
