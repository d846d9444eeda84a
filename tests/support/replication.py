"""A leader and a follower PartitionLog in two log dirs, and the follower's copy loop
(LeaderFiles + append_as_follower), for the replication storage tests."""
from odradek.daemon.replication.leader_files import LeaderFiles
from odradek.daemon.storage import LogConfig, PartitionLog
from support.records import value_batch

__all__ = ["Pair", "copy_all", "assert_identical"]


class Pair:
    """leader: appends with assigned offsets (epoch 3); follower: copies it. Both
    driven by `clock`; reopen_follower() closes and reopens the follower."""

    def __init__(self, tmp_path, clock, leader_config, follower_config=None):
        self.clock = clock
        self.leader_dir = str(tmp_path / "leader" / "orders-0")
        self.follower_dir = str(tmp_path / "follower" / "orders-0")
        self.follower_config = dict(leader_config if follower_config is None else follower_config)
        self.leader = PartitionLog(self.leader_dir, LogConfig(leader_config), clock)
        self.leader.assign_epoch(3)
        self.follower = PartitionLog(self.follower_dir, LogConfig(self.follower_config), clock)
        self.files = LeaderFiles(self.leader_dir)
        self._next = 0

    def produce(self, batches=1, records=1, size=16):
        """Append `batches` batches to the leader, one append each."""
        for _ in range(batches):
            self.leader.append(value_batch(self._next, records, size), leader_epoch=3)
            self._next += records

    def reopen_follower(self):
        self.follower.close()
        self.follower = PartitionLog(self.follower_dir, LogConfig(self.follower_config), self.clock)

    def close(self):
        self.files.close()
        for log in (self.leader, self.follower):
            if not log._closed:
                log.close()


def copy_all(pair, max_bytes=1 << 20, hints=True, limit=10_000):
    """Copy from the follower's log end up to the leader's log end; returns the chunks."""
    chunks, hint = [], None
    end = pair.leader.log_end_offset
    for _ in range(limit):
        if pair.follower.log_end_offset >= end:
            return chunks
        chunk = pair.files.read(pair.follower.log_end_offset, end, max_bytes, hint if hints else None)
        assert chunk.data, f"nothing read at {pair.follower.log_end_offset} below {end}"
        pair.follower.append_as_follower(chunk.data, chunk.segment_base)
        chunks.append(chunk)
        hint = chunk.next_hint
    raise AssertionError(f"no end to copying after {limit} chunks")


def assert_identical(pair, from_offset=None):
    """The same .log files (from the segment holding `from_offset` on), byte for byte up
    to each segment's data, whole files for sealed segments."""
    leader, follower = pair.leader, pair.follower
    lsegs = [s for s in leader.segments if from_offset is None or s.next_offset > from_offset]
    fsegs = [s for s in follower.segments if from_offset is None or s.next_offset > from_offset]
    assert [s.base_offset for s in fsegs] == [s.base_offset for s in lsegs]
    for ls, fs in zip(lsegs, fsegs):
        assert fs.size == ls.size, (ls, fs)
        assert bytes(fs.view(0, fs.size)) == bytes(ls.view(0, ls.size)), (ls, fs)
        if not ls.writable and not fs.writable:
            with open(ls.log.path, "rb") as a, open(fs.log.path, "rb") as b:
                assert a.read() == b.read(), ls.log.path
