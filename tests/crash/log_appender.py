"""Child process for the crash tests: appends to one partition log until killed.

    python log_appender.py LOG_DIR CONFIG_JSON SEED

Record at offset o always has value b"rec-<o>" padded by a seed-chosen amount, so the
parent can check any surviving log byte for byte. After each append it prints
"ack <last offset> <recovery point>" and flushes stdout: an ack line means the append
returned (the record is in the page cache, so it must survive a process crash). With
retention.bytes set it applies retention after every append, so kills land inside
segment deletion too.
"""
import json
import os
import random
import sys

from odradek.client.records import BatchBuilder
from odradek.daemon.storage import LogConfig, PartitionLog


def value_for(offset, rng_pad):
    return (b"rec-%d|" % offset) + b"x" * rng_pad


def main():
    directory, config, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    log = PartitionLog(directory, LogConfig(config))
    print("ready", log.log_end_offset, flush=True)
    for _ in range(100_000):  # bounded: the parent kills us long before
        offset = log.log_end_offset
        count = rng.randint(1, 8)
        b = BatchBuilder()
        for i in range(count):
            b.append(1_700_000_000_000 + offset + i, None, value_for(offset + i, (offset + i) % 97))
        info = log.append(b.build())
        if log.config.retention_bytes >= 0:
            log.delete_old_segments()
        sys.stdout.write(f"ack {info.last_offset} {log.recovery_point}\n")
        sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
