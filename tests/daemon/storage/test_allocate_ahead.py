"""A segment keeps disk blocks allocated ahead of its appends (LogSegment._allocate_ahead):
at least PREFAULT_AHEAD bytes past the data after every append, so the prefault thread
has blocks to fault in and an append does not ask the filesystem again until it runs
into the prefault window. Regression: once the data passed the mark, an append whose
blocks were already there left the run-ahead as it was (MappedFile.allocate does
nothing for a `need` already allocated), so every append up to the end of the blocks
went through _allocate_ahead again (half of all one-record appends on the dev VM)."""
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.segment import ALLOCATE_AHEAD, PREFAULT_AHEAD
from support.records import value_batch

BATCH_BYTES = 64 << 10


def test_every_append_leaves_the_prefault_window_allocated(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({}))
    try:
        log.assign_epoch(0)
        data = bytes(value_batch(0, 1, size=BATCH_BYTES))
        segment = log.active
        short = []
        for i in range((ALLOCATE_AHEAD + 2 * PREFAULT_AHEAD) // len(data)):
            log.append(data, leader_epoch=0)
            ahead = segment.log.allocated - segment.log.size
            if ahead < PREFAULT_AHEAD:
                short.append((i, segment.log.size, ahead))
        assert log.active is segment
        assert not short, f"appends that left less than {PREFAULT_AHEAD} bytes allocated ahead: {short[:3]}"
    finally:
        log.close()
