"""Child process for the compaction crash test: appends keyed records to a compacted
partition log and runs the cleaner in small steps after every append, until killed.

    python log_compactor.py LOG_DIR CONFIG_JSON SEED STEP_BYTES KILL_AT

The record at offset o is record_for(o) (a key from a small set, a value naming o, a
tombstone or a null key now and then), so the parent can check any surviving record and
knows every key's latest value from the log end offset alone. After each append it
prints "ack <last offset>" and flushes stdout (the record is then in the page cache: a
process crash must not lose it). KILL_AT > 0: the process SIGKILLs itself just before its
KILL_AT-th rename or unlink made while the cleaner runs, so kills land exactly on each
step of a segment swap; 0: only the parent kills it, at a random moment.
"""
import json
import os
import random
import signal
import sys

from odradek.client.records import BatchBuilder
from odradek.daemon.storage import LogConfig, PartitionLog
from odradek.daemon.storage.cleaner import LogCleaner

KEYS = [b"user-%d" % i for i in range(12)]


def record_for(offset):
    """(key, value) of the record at `offset`: ~1 in 9 a tombstone, 1 in 50 without key."""
    if offset % 50 == 49:
        return None, b"no-key-%d" % offset
    key = KEYS[(offset * 2654435761 >> 7) % len(KEYS)]
    if (offset * 40503 >> 5) % 9 == 0:
        return key, None
    return key, (b"val-%d|" % offset) + b"x" * (offset % 37)


def main():
    directory, config, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    step_bytes, kill_at = int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    cleaning = [False]
    if kill_at > 0:
        calls = [0]
        for name in ("rename", "unlink"):
            real = getattr(os, name)

            def die_at_kill_at(*args, _real=real, **kwargs):
                if cleaning[0]:
                    calls[0] += 1
                    if calls[0] == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                return _real(*args, **kwargs)
            setattr(os, name, die_at_kill_at)
    log = PartitionLog(directory, LogConfig(config))
    cleaner = LogCleaner(log)
    print("ready", log.log_end_offset, flush=True)
    for _ in range(100_000):  # bounded: the parent kills us long before
        offset = log.log_end_offset
        b = BatchBuilder()
        for i in range(rng.randint(1, 6)):
            key, value = record_for(offset + i)
            b.append(1_700_000_000_000 + offset + i, key, value)
        info = log.append(b.build())
        sys.stdout.write(f"ack {info.last_offset}\n")
        sys.stdout.flush()
        cleaning[0] = True
        cleaner.maybe_clean(max_bytes=step_bytes)
        cleaning[0] = False
    os._exit(0)


if __name__ == "__main__":
    main()
