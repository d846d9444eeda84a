"""Which appends ask the prefault thread to populate the map ahead (LogSegment.append_native):
those copied into the map, not those written with pwrite (PWRITE_MIN and up), whose page
cache folios pwrite makes itself (large ones on ext4: the 4 KiB pages a populate makes
ahead cost pwrite a walk page by page, 1490 against 2018 MB/s at 64 KiB batches in
perf/log_append.py)."""
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.segment import PREFAULT_AHEAD, PWRITE_MIN
from support.records import value_batch


def test_pwritten_appends_ask_for_no_prefault_and_copied_ones_do(tmp_path):
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig({}))
    try:
        log.assign_epoch(0)
        segment = log.active
        offset = 0
        big = bytes(value_batch(0, 40, size=1000))
        assert len(big) >= PWRITE_MIN
        while segment.log.size < 2 * PREFAULT_AHEAD:     # past where a prefault would be due
            log.append(bytes(value_batch(offset, 40, size=1000)), leader_epoch=0)
            offset += 40
        assert segment._prefaulted == segment._prefault_mark == 0    # never asked
        small = bytes(value_batch(offset, 3, size=300))
        assert len(small) < PWRITE_MIN
        log.append(small, leader_epoch=0)
        # the copy path asks for a window ahead (the thread's queue may be full: then only
        # the mark says it asked)
        assert segment._prefault_mark > segment.log.size
        assert log.log_end_offset == offset + 3
    finally:
        log.close()
