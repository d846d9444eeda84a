"""A hostile client, run by test_fd_write_attempts.py as its own process:
`python hostile_client.py SOCKET TOPIC [--as-uid UID] KIND...`.

It asks the broker for every fd a client can get (OpenFetch: the partition state;
GetSegment: a segment; OpenProducer: the leader's doorbell, for rings and a
doorbell of its own), then, as uid UID if given (a client that is not the broker's
user; needs root to switch), tries every way it knows to write each fd of the KINDs
named, and prints one JSON object: the kinds of the fds the broker passed, and for each
fd attacked {attack: "wrote" | "private" | "denied ERRNO"}. A write that lands puts
forged bytes where they hurt most (the partition state's log start, a segment's first
batch); on the pages that are writable by design (the leader's doorbell, its own
rings) it writes into bytes no one reads, and MADV_REMOVE zeroes the whole page,
magic included: LAYOUT.md, "Trust", says why that costs others nothing.
"""
import ctypes
import errno
import fcntl
import json
import mmap
import os
import struct
import sys

from odradek.client.errors import OdradekError
from odradek.client.protocol import ControlClient, messages as m
from odradek.client.shm import Doorbell, Ring
from odradek.client.shm.partition_state import OFF_LOG_START

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
MAP_FAILED = ctypes.c_void_p(-1).value
MADV_REMOVE = 9
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
UNUSED = 2048   # bytes of the shm pages that are writable by design, that nobody reads


class Denied(Exception):
    pass


def check(rc):
    if rc == -1 or rc == MAP_FAILED:
        raise Denied(errno.errorcode[ctypes.get_errno()])
    return rc


def mapped(fd, size, prot, flags=mmap.MAP_SHARED):
    return check(libc.mmap(None, size, prot, flags, fd, 0))


def attacks(fd, size, off, forged):
    """name -> function(fd) doing one attack; each raises Denied or OSError if refused,
    returns "private" if it only changed a private copy."""
    def write(f):
        os.lseek(f, off, os.SEEK_SET)
        os.write(f, forged)

    def pwrite(f):
        os.pwrite(f, forged, off)

    def mmap_shared_write(f):
        addr = mapped(f, size, mmap.PROT_READ | mmap.PROT_WRITE)
        ctypes.memmove(addr + off, forged, len(forged))
        libc.munmap(addr, size)

    def mprotect_to_write(f):
        addr = mapped(f, size, mmap.PROT_READ)
        try:
            check(libc.mprotect(addr, size, mmap.PROT_READ | mmap.PROT_WRITE))
            ctypes.memmove(addr + off, forged, len(forged))
        finally:
            libc.munmap(addr, size)

    def madvise_remove(f):
        addr = mapped(f, size, mmap.PROT_READ)
        try:
            check(libc.madvise(addr, size, MADV_REMOVE))
        finally:
            libc.munmap(addr, size)

    def mmap_private_write(f):
        addr = mapped(f, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE)
        ctypes.memmove(addr + off, forged, len(forged))
        libc.munmap(addr, size)
        return "private"

    def ftruncate(f):
        os.ftruncate(f, 0)

    def punch_hole(f):
        check(libc.fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len(forged)))

    def setfl_then_pwrite(f):
        fcntl.fcntl(f, fcntl.F_SETFL, os.O_RDWR | os.O_APPEND)   # Linux ignores the access mode
        os.pwrite(f, forged, off)

    return {"write": write, "pwrite": pwrite, "mmap-shared-write": mmap_shared_write,
            "mprotect-to-write": mprotect_to_write, "madvise-remove": madvise_remove,
            "mmap-private-write": mmap_private_write, "ftruncate": ftruncate,
            "punch-hole": punch_hole, "setfl-then-pwrite": setfl_then_pwrite}


def outcome(attack, fd):
    try:
        return attack(fd) or "wrote"
    except Denied as e:
        return f"denied {e}"
    except OSError as e:
        return f"denied {errno.errorcode[e.errno]}"


def attack_fd(fd, size, off, forged):
    """Every attack on fd, then every attack again on a read-write reopen of it."""
    def each(f, prefix):
        for name, attack in attacks(f, size, off, forged).items():
            results[prefix + name] = outcome(attack, f)
    results = {}
    each(fd, "")
    try:
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    except OSError as e:
        results["reopen-rdwr"] = f"denied {errno.errorcode[e.errno]}"
        return results
    results["reopen-rdwr"] = "opened"
    each(rw, "reopened ")
    os.close(rw)
    return results


def main():
    args = sys.argv[1:]
    socket_path, topic = args[:2]
    as_uid = None
    if args[2] == "--as-uid":
        as_uid = int(args[3])
        args = args[2:]
    kinds = set(args[2:])
    client = ControlClient(socket_path)
    got = {}           # name -> (fd, kind)
    passed = []

    def ask(request, send=()):
        response, fds = client.call(request, list(send))
        passed.extend(p.kind for p in response.fds)
        return response, fds

    _, (state_fd,) = ask(m.OpenFetchRequest(topic=topic, partition=0))
    got["partition-state"] = state_fd
    _, (segment_fd,) = ask(m.GetSegmentRequest(topic=topic, partition=0, offset=0))
    got["segment"] = segment_fd
    own = {"own-produce-ring": Ring.create(1 << 16), "own-completion-ring": Ring.create(1 << 16),
           "own-doorbell": Doorbell.create()}
    got.update((name, fd) for name, (_, fd) in own.items())
    _, (leader_fd,) = ask(m.OpenProducerRequest(topic=topic, partition=0, acks=1),
                          [fd for _, fd in own.values()])
    got["doorbell"] = leader_fd
    # hand the partition state back, reopened read-write, as if it were our rings
    state_rw = os.open(f"/proc/self/fd/{state_fd}", os.O_RDWR)
    try:
        client.call(m.OpenProducerRequest(topic=topic, partition=0, acks=1), [state_rw, state_rw, own["own-doorbell"][1]])
        hand_back = "accepted"
    except OdradekError as e:
        hand_back = e.name
    os.close(state_rw)

    if as_uid is not None:
        os.setgroups([])
        os.setgid(as_uid)
        os.setuid(as_uid)

    results = {}
    for name in sorted(got):
        if name not in kinds:
            continue
        fd = got[name]
        size = os.fstat(fd).st_size
        if name == "partition-state":
            off, forged = OFF_LOG_START, struct.pack("<q", 15)
        elif name == "segment":
            off, forged = 0, b"\xff" * 64
        else:
            off, forged = UNUSED, b"hostile!"
        results[name] = attack_fd(fd, size, off, forged)
    print(json.dumps({"passed": passed, "hand_back": hand_back, "uid": os.getuid(),
                      "results": results}))
    client.close()


if __name__ == "__main__":
    main()
