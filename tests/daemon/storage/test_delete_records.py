"""PartitionLog.delete_records_before: Kafka's DeleteRecords on one log (the log start
offset moves up, checkpointed; whole segments below it go)."""
import pytest

from odradek.client.errors import OffsetOutOfRange
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.checkpoint import LogDirCheckpoints
from support.records import value_batch


@pytest.fixture
def open_log(tmp_path):
    opened = []

    def _open(**config):
        log = PartitionLog(str(tmp_path / "orders-0"), LogConfig(config))
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()


def test_records_below_the_offset_become_unreadable_and_whole_segments_go(open_log, tmp_path):
    log = open_log(**{"segment.bytes": 300})
    for i in range(0, 20, 2):
        log.append(value_batch(i, 2, size=40))
    bases = [s.base_offset for s in log.segments]
    assert len(bases) > 3 and bases[3] - bases[2] > 1
    cut = bases[2] + 1                       # inside the third segment
    log.delete_records_before(cut)
    assert log.log_start_offset == cut
    assert [s.base_offset for s in log.segments] == bases[2:]
    assert LogDirCheckpoints(str(tmp_path)).read(("orders", 0))[1] == cut
    with pytest.raises(OffsetOutOfRange):
        log.read(cut - 1, 100)
    assert log.read(cut, 100).first_offset <= cut


def test_a_lower_offset_changes_nothing_and_one_past_the_end_is_refused(open_log):
    log = open_log()
    for i in range(4):
        log.append(value_batch(i, 1))
    log.delete_records_before(3)
    log.delete_records_before(1)
    assert log.log_start_offset == 3
    with pytest.raises(OffsetOutOfRange):
        log.delete_records_before(5)
    log.delete_records_before(4)             # the log end: every record gone, appends go on
    assert log.log_start_offset == log.log_end_offset == 4
    assert log.append(value_batch(4, 1)).first_offset == 4


def test_the_new_log_start_survives_reopen(open_log):
    log = open_log(**{"segment.bytes": 300})
    for i in range(6):
        log.append(value_batch(i, 1, size=100))
    log.delete_records_before(4)
    log.close()
    again = open_log(**{"segment.bytes": 300})
    assert (again.log_start_offset, again.log_end_offset) == (4, 6)
