"""odradek dump-log and transactions: control batches (flags, COMMIT/ABORT and the
coordinator epoch) and .txnindex files, printed and checked."""
import os

from click.testing import CliRunner

from odradek.client.records import ControlRecordType, marker_batch
from odradek.daemon.cli import cli
from odradek.daemon.storage import LogConfig, PartitionLog, filenames
from odradek.daemon.storage.txn_index import AbortedTxn, encode_entry
from support.clock import FakeClock
from support.records import make_batch

T0 = 1_700_000_000_000


def run(*args):
    return CliRunner().invoke(cli, ["dump-log", *map(str, args)])


def write_txn_log(tmp_path):
    """pid 7 txn 0-1, ABORT at 2 (indexed), pid 8 txn 3, COMMIT at 4 (coordinator epoch 9)."""
    directory = str(tmp_path / "t-0")
    log = PartitionLog(directory, LogConfig({}), FakeClock())
    log.append(make_batch([b"a", b"b"], producer_id=7, producer_epoch=2, base_sequence=0, transactional=True))
    log.append(marker_batch(ControlRecordType.ABORT, 7, 2, 9, T0))
    log.append_aborted_txn(AbortedTxn(7, 0, 2, 3))
    log.append(make_batch([b"c"], producer_id=8, producer_epoch=0, base_sequence=0, transactional=True))
    log.append(marker_batch(ControlRecordType.COMMIT, 8, 0, 9, T0))
    log.close()
    return directory


def test_control_batches_and_the_txn_index_are_printed_in_kafkas_words(tmp_path):
    directory = write_txn_log(tmp_path)
    result = run("--verify", "--print-records", directory)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    batches = [line for line in lines if line.startswith("baseOffset:")]
    assert "isTransactional: true isControl: false" in batches[0]
    assert "isTransactional: true isControl: true" in batches[1] and "producerId: 7 producerEpoch: 2" in batches[1]
    assert any(line.startswith("| offset: 2 ") and "endTxnMarker: ABORT coordinatorEpoch: 9" in line for line in lines)
    assert any(line.startswith("| offset: 4 ") and "endTxnMarker: COMMIT coordinatorEpoch: 9" in line for line in lines)
    assert "version: 0 producerId: 7 firstOffset: 0 lastOffset: 2 lastStableOffset: 3" in lines
    assert "1 aborted transaction" in lines
    single = run(filenames.txnindex_file(directory, 0))
    assert single.exit_code == 0 and "version: 0 producerId: 7 firstOffset: 0 lastOffset: 2" in single.stdout


def test_a_torn_or_misplaced_txn_index_entry_is_a_problem(tmp_path):
    directory = write_txn_log(tmp_path)
    path = filenames.txnindex_file(directory, 0)
    with open(path, "ab") as f:
        f.write(encode_entry(AbortedTxn(8, 3, 40, 41)) + b"\x00\x00\x00")   # past the log, then torn
    result = run("--verify", directory)
    assert result.exit_code != 0
    assert "the last 3 bytes are not a whole entry" in result.output
    assert "lastOffset (the ABORT marker) expected in the segment, 0..4, found 40" in result.output
    os.truncate(path, 34)
    assert run("--verify", directory).exit_code == 0
