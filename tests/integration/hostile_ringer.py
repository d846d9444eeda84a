"""A hostile producer process for test_data_plane_hostile.py: attaches to a partition
like a producer, then, for `seconds`, alternates 20 ms of ringing the leader's doorbell
as fast as it can with 20 ms of writing it: the counter put back to one value again
and again (so a sleeper that saw that value would not notice polite rings: ABA), the
old waiting flag zeroed, random bytes everywhere else but the magic and version.

    python hostile_ringer.py SOCKET TOPIC SECONDS

Prints "ready" once attached, "done RINGS WRITES" at the end.
"""
import os
import random
import sys
import time

from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm._lib import lib

PHASE_S = 0.02


def main(socket_path, topic, seconds):
    client = ControlClient(socket_path)
    requests, req_fd = Ring.create(1 << 16)
    completions, comp_fd = Ring.create(1 << 16)
    own, own_fd = Doorbell.create()
    _, fds = client.call(m.OpenProducerRequest(topic=topic, partition=0, acks=1),
                         [req_fd, comp_fd, own_fd])
    for fd in (req_fd, comp_fd, own_fd):
        os.close(fd)
    leader = Doorbell.attach(fds[0])
    for fd in fds:
        os.close(fd)
    ptr, view = leader._map.ptr, leader._map.view
    store = lib.odk_atomic_store_u32
    rng = random.Random(8)
    print("ready", flush=True)
    rings = writes = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        phase_end = time.monotonic() + PHASE_S
        while time.monotonic() < phase_end:
            for _ in range(1000):
                leader.ring()
            rings += 1000
        stuck = leader.value
        phase_end = time.monotonic() + PHASE_S
        while time.monotonic() < phase_end:
            for _ in range(1000):
                store(ptr, 64, stuck)
                store(ptr, 68, 0)
            writes += 1000
            at = rng.choice((rng.randrange(8, 64), rng.randrange(68, 4096)))
            view[at] = rng.randrange(256)
    print("done", rings, writes, flush=True)
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
