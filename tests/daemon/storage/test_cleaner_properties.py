"""Compaction against random keyed workloads (hypothesis).

A workload is a list of operations on one compacted log driven by a FakeClock: appends
of batches of keyed records (keys from a small set, values, tombstones, a few null keys,
uncompressed or in any codec), clock moves, rolls, single bounded cleaner steps (a pass left half done
while appends go on), whole passes, truncations and reopenings. After every operation
that cleans (or reopens), the log is checked against a model of every record appended. Cleaning stays below a
high watermark (moved to the log end by "replicated" appends), and truncations never go
below it, as for a follower:

- storage: dump-log finds no problem (CRCs, framing, offsets, both indexes), offsets
  strictly increase, every surviving record is byte-identical to what was appended at
  its offset (key, value, headers, timestamp);
- compaction: every key's latest record is present at its original offset unless it is
  a tombstone; a record is missing only if a later record of its key exists, or it is a
  tombstone and at least delete.retention.ms passed since it was appended; records with
  a null key are never removed; nothing in the active segment changed.
"""
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.client.records import BatchBuilder, Compression
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.cleaner import LogCleaner
from support.clock import FakeClock
from support.compaction import Model, check_log

KEYS = [b"k0", b"k1", b"k2", b"k3", b"k4", b"a-key-long-enough-to-be-hashed-%d" % 5]

key_index = st.integers(0, len(KEYS) - 1)
keyed_record = st.tuples(st.one_of(key_index, key_index, key_index, key_index, st.none()),
                         st.one_of(st.binary(min_size=0, max_size=24), st.binary(min_size=0, max_size=24),
                                   st.none()))
# (kind, records, codec, replicated?: the high watermark moves to the log end)
append_op = st.tuples(st.just("append"), st.lists(keyed_record, min_size=1, max_size=6),
                      st.sampled_from([Compression.NONE, Compression.NONE, Compression.GZIP, Compression.SNAPPY,
                                       Compression.LZ4, Compression.ZSTD]), st.booleans())
others = [
    st.tuples(st.just("advance"), st.sampled_from([1, 100, 999, 1000, 5000])),
    st.tuples(st.just("roll")),
    st.tuples(st.just("step"), st.sampled_from([64, 300, 1000])),
    st.tuples(st.just("clean"), st.booleans()),
    st.tuples(st.just("truncate"), st.integers(1, 8)),
    st.tuples(st.just("high watermark")),
    st.tuples(st.just("reopen")),
]
# about half the operations append; the rest are spread over the others
operation = st.integers(0, 2 * len(others) - 1).flatmap(
    lambda n: append_op if n >= len(others) else others[n])
configs = st.fixed_dictionaries({
    "cleanup.policy": st.just("compact"),
    "segment.bytes": st.sampled_from([256, 512, 2048]),
    "index.interval.bytes": st.sampled_from([0, 64, 4096]),
    "delete.retention.ms": st.sampled_from([0, 1000, 86_400_000]),
    "min.cleanable.dirty.ratio": st.sampled_from([0.0, 0.5]),
})


class Harness:
    def __init__(self, directory, config, map_entries):
        self.directory, self.config, self.map_entries = directory, config, map_entries
        self.clock = FakeClock()
        self.model = Model()
        self.high_watermark = 0   # cleaning stays below it; truncation never goes below it
        self.open()

    def open(self):
        self.log = PartitionLog(self.directory, LogConfig(self.config), self.clock)
        self.cleaner = LogCleaner(self.log, max_map_entries=self.map_entries)

    def present(self):
        return {r.offset: r for r in check_log(self.log, self.model)}

    def run(self, op):
        """Apply one operation; True if the log should be checked after it."""
        kind = op[0]
        log = self.log
        if kind == "append":
            b = BatchBuilder(compression=op[2])
            now = self.clock()
            for k, value in op[1]:
                b.append(now, None if k is None else KEYS[k], value)
            info = log.append(b.build())
            for i, (k, value) in enumerate(op[1]):
                self.model.records[info.first_offset + i] = (None if k is None else KEYS[k], value, now, ())
                self.model.appended_at[info.first_offset + i] = now
            if op[3]:
                self.high_watermark = log.log_end_offset
            return False
        if kind == "advance":
            self.clock.advance(op[1])
            return False
        if kind == "roll":
            log.roll()
            return False
        if kind == "high watermark":
            self.high_watermark = log.log_end_offset
            return False
        if kind == "truncate":   # a follower's divergent tail: above the high watermark only
            target = max(log.log_start_offset, self.high_watermark, log.log_end_offset - op[1])
            log.truncate_to(target)
            for offset in [o for o in self.model.records if o >= log.log_end_offset]:
                del self.model.records[offset]
            return True
        if kind == "reopen":
            self.cleaner.abort()
            log.close()
            self.open()
            return True
        active_base, active = log.active.base_offset, bytes(log.active.view(0, log.active.size))
        if kind == "step":
            self.cleaner.maybe_clean(max_bytes=op[1], max_offset=self.high_watermark)
        else:
            self.cleaner.clean(force=op[1], max_bytes=1 << 20, max_offset=self.high_watermark)
        assert log.active.base_offset == active_base
        assert bytes(log.active.view(0, log.active.size)) == active, "the active segment changed"
        return True

    def check(self):
        log, model = self.log, self.model
        present = self.present()
        now = self.clock()
        retention = log.config.delete_retention_ms
        superseded, seen = {}, set()
        for offset in sorted(model.records, reverse=True):
            key = model.records[offset][0]
            superseded[offset] = key in seen
            seen.add(key)
        for offset in range(log.log_start_offset, log.log_end_offset):
            if offset in present or offset not in model.records:
                continue
            key, value, _, _ = model.records[offset]
            assert key is not None, f"record {offset} with a null key was removed"
            expired = value is None and now >= model.appended_at[offset] + retention
            assert superseded[offset] or expired, \
                f"record {offset} ({key!r}) was removed, yet it is the latest of its key" + \
                ("" if value is not None else " and a tombstone younger than delete.retention.ms")
        for key, offset in model.latest(log.log_end_offset).items():
            if model.records[offset][1] is not None:
                assert offset in present, f"the latest value of {key!r} (offset {offset}) is gone"

    def close(self):
        self.cleaner.abort()
        self.log.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(config=configs, ops=st.lists(operation, min_size=5, max_size=60),
       map_entries=st.sampled_from([1, 3, 1000]))
def test_random_keyed_workloads_keep_every_keys_latest_value(tmp_path_factory, config, ops, map_entries):
    directory = tmp_path_factory.mktemp("compaction") / "topic-0"
    h = Harness(str(directory), config, map_entries)
    try:
        for op in ops:
            if h.run(op):
                h.check()
        h.cleaner.abort()
        h.cleaner.clean(force=True, max_offset=h.high_watermark)   # and a last whole pass
        h.check()
    finally:
        h.close()
        shutil.rmtree(directory.parent, ignore_errors=True)
