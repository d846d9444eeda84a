"""The other process in the cross-process shm tests: run as
`python shm_child.py COMMAND ARGS...` with the shared-memory fds passed (pass_fds).

It reports on stdout, one line per event, flushed ("ready", "waiting", "done ..."), so
the test waits on lines rather than sleeping. Every blocking call has a timeout, so an
orphaned child exits on its own.

Also imported by the tests (by path) for `entry_for`, the deterministic content of the
entry with sequence number `seq`, which both sides compute.
"""
import os
import sys
import time

ORPHAN_TIMEOUT = 60.0   # seconds: a child whose test died stops by itself


def entry_size(seq, max_payload):
    """Sizes spread over 0..max_payload, deterministic in seq (Knuth's multiplier)."""
    return (seq * 2654435761) % (max_payload + 1)


def entry_for(seq, max_payload):
    """(tag, payload) of entry number seq: tag = seq mod 2^32, payload = seq's 8 bytes
    repeated, cut to entry_size."""
    n = entry_size(seq, max_payload)
    return seq & 0xFFFFFFFF, (seq.to_bytes(8, "little") * (n // 8 + 1))[:n]


def say(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def ring_writer(fd, start):
    """Write entries start, start+1, ... forever, in pieces (reserve, fill in four
    slices, commit) or whole (write), so a SIGKILL lands mid-reserve, mid-fill,
    mid-commit or while blocked for space."""
    from odradek.client.shm import Ring
    ring = Ring.attach(int(fd))
    say("ready")
    seq = int(start)
    while True:
        tag, payload = entry_for(seq, ring.max_payload)
        if seq % 3 == 0:
            ring.write(payload, tag, timeout=ORPHAN_TIMEOUT)
        else:
            view = ring.reserve(len(payload), tag, timeout=ORPHAN_TIMEOUT)
            step = max(1, len(payload) // 4)
            for i in range(0, len(payload), step):
                view[i:i + step] = payload[i:i + step]
            ring.commit()
        seq += 1


def ring_write_when_reader_sleeps(fd, payload):
    """Wait until the reader announces it sleeps, then write one entry stamped with
    the monotonic time (ns) of the write."""
    from odradek.client.shm import Ring
    ring = Ring.attach(int(fd))
    say("ready")
    deadline = time.monotonic() + ORPHAN_TIMEOUT
    while not ring.reader_waiting:
        if time.monotonic() > deadline:
            return
    ring.write(str(time.monotonic_ns()).encode() + b" " + payload.encode(), tag=7)
    say("written")


def idle_wait(kind, timeout, *fds):
    """Block once on `kind` (ring / doorbell / pstate) with nothing coming, for
    `timeout` seconds, then report, then wait for stdin to close."""
    from odradek.client.shm import Doorbell, PartitionState, Ring
    timeout = float(timeout)
    if kind == "ring":
        obj = Ring.attach(int(fds[0]))
        wait = lambda: obj.wait(timeout)                                    # noqa: E731
    elif kind == "doorbell":
        obj = Doorbell.attach(int(fds[0]))
        seen = obj.value
        wait = lambda: obj.wait(seen, timeout)                              # noqa: E731
    else:
        obj = PartitionState.attach(int(fds[0]))
        seen = obj.read().change
        wait = lambda: obj.wait_for_change(seen, timeout)                   # noqa: E731
    say("waiting")
    t0 = time.monotonic()
    got = wait()
    say("done", got, time.monotonic() - t0)
    sys.stdin.read()


def doorbell_wait(fd):
    """Sleep on a doorbell until it rings; report the counter seen."""
    from odradek.client.shm import Doorbell
    bell = Doorbell.attach(int(fd))
    seen = bell.value
    say("waiting", seen)
    got = bell.wait(seen, ORPHAN_TIMEOUT)
    say("done", got, bell.value)


def doorbell_ringer(fd, count):
    from odradek.client.shm import Doorbell
    bell = Doorbell.attach(int(fd))
    say("ready")
    sys.stdin.readline()   # "go": all ringers start together
    for _ in range(int(count)):
        bell.ring()
    say("done")


def doorbell_ring_forever(fd):
    """Ring as fast as it can until killed (or ORPHAN_TIMEOUT)."""
    from odradek.client.shm import Doorbell
    bell = Doorbell.attach(int(fd))
    ring = bell.ring
    say("ready")
    deadline = time.monotonic() + ORPHAN_TIMEOUT
    while time.monotonic() < deadline:
        for _ in range(4096):
            ring()


def fetch_add(fd, count):
    """Add 1 to the u64 at offset 64 and to the u32 at 72, count times each."""
    import mmap
    from odradek._native import ffi, lib
    mm = mmap.mmap(int(fd), 0)
    p = ffi.from_buffer("uint8_t[]", mm, require_writable=True)
    say("ready")
    sys.stdin.readline()
    add64, add32 = lib.odk_atomic_fetch_add_u64, lib.odk_atomic_fetch_add_u32
    for _ in range(int(count)):
        add64(p, 64, 1)
        add32(p, 72, 1)
    say("done")


def pstate_wait_change(state_fd):
    """Sleep until the state changes; report the snapshot then."""
    from odradek.client.shm import PartitionState
    ps = PartitionState.attach(int(state_fd))
    seen = ps.read().change
    say("waiting", seen)
    got = ps.wait_for_change(seen, ORPHAN_TIMEOUT)
    snap = ps.read()
    say("done", got, snap.high_watermark, int(snap.fenced))


COMMANDS = {
    "ring-writer": ring_writer,
    "ring-write-when-reader-sleeps": ring_write_when_reader_sleeps,
    "idle-wait": idle_wait,
    "doorbell-wait": doorbell_wait,
    "doorbell-ringer": doorbell_ringer,
    "doorbell-ring-forever": doorbell_ring_forever,
    "fetch-add": fetch_add,
    "pstate-wait-change": pstate_wait_change,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
    os._exit(0)
