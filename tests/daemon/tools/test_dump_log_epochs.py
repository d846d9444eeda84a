"""dump-log on the leader-epoch-checkpoint: printed, and --verify checks it parses, lies
within the log and agrees with the batches' partitionLeaderEpoch."""
import os
import struct

from click.testing import CliRunner

from odradek.daemon.cli import cli
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.leader_epoch import LeaderEpochFile
from support.clock import FakeClock
from support.records import value_batch


def write_log(tmp_path):
    """Epoch 3 at offsets 0..3, epoch 5 at 4..5; returns the partition dir."""
    directory = str(tmp_path / "t-0")
    log = PartitionLog(directory, LogConfig({}), FakeClock())
    log.assign_epoch(3)
    log.append(value_batch(0, 2), leader_epoch=3)
    log.append(value_batch(2, 2), leader_epoch=3)
    log.assign_epoch(5)
    log.append(value_batch(4, 2), leader_epoch=5)
    log.close()
    return directory


def run(*args):
    return CliRunner().invoke(cli, ["dump-log", "--verify", *map(str, args)])


def test_the_partition_dump_prints_the_epochs_and_verifies(tmp_path):
    directory = write_log(tmp_path)
    result = run(directory)
    assert result.exit_code == 0, result.output
    assert "leaderEpoch: 3 startOffset: 0\nleaderEpoch: 5 startOffset: 4\n2 leader epochs" in result.stdout
    epochs = [line.split("partitionLeaderEpoch: ")[1].split()[0] for line in result.stdout.splitlines()
              if line.startswith("baseOffset:")]
    assert epochs == ["3", "3", "5"]
    alone = run(os.path.join(directory, "leader-epoch-checkpoint"))
    assert alone.exit_code == 0 and "2 leader epochs" in alone.stdout


def test_verify_fails_on_an_entry_past_the_log_end(tmp_path):
    directory = write_log(tmp_path)
    LeaderEpochFile(directory).write([(3, 0), (5, 4), (6, 9)])
    result = run(directory)
    assert result.exit_code == 1
    assert "entry 2 (epoch 6): start offset expected within the log, 0..6, found 9" in result.stdout


def test_verify_fails_on_a_batch_whose_epoch_disagrees(tmp_path):
    directory = write_log(tmp_path)
    LeaderEpochFile(directory).write([(3, 0), (5, 2)])   # says the second batch is epoch 5
    result = run(directory)
    assert result.exit_code == 1
    assert "the batch at offset 2 has partitionLeaderEpoch 3, the checkpoint expects 5" in result.stdout


def test_verify_fails_on_a_damaged_file_naming_the_line(tmp_path):
    directory = write_log(tmp_path)
    with open(os.path.join(directory, "leader-epoch-checkpoint"), "wb") as f:
        f.write(b"0\n2\n5 0\n3 4\n")
    result = run(directory)
    assert result.exit_code == 1 and "line 4: expected an epoch above 5" in result.stdout


def test_the_batches_carry_the_epoch_in_their_raw_bytes(tmp_path):
    directory = write_log(tmp_path)
    with open(os.path.join(directory, "00000000000000000000.log"), "rb") as f:
        data = f.read()
    epochs, pos = [], 0
    while pos + 61 <= len(data):
        length, epoch = struct.unpack_from(">ii", data, pos + 8)
        epochs.append(epoch)
        pos += 12 + length
    assert epochs == [3, 3, 5]
