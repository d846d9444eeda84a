"""The worker's LinkWatcher thread hands the broker link to the main thread and waits
for resume(); no interleaving of the two may lose a resume() (issue 8, defect 9)."""
import os
import socket
import time

import pytest

from odradek.client.shm import Doorbell
from odradek.daemon.worker.link_watcher import LinkWatcher

DEADLINE = 10.0


class EagerMain(LinkWatcher):
    """Plays the main thread at the worst instant: the moment the watcher sets
    link_ready, it reads the link and calls resume(), inside the watcher's own step,
    before the watcher goes on to ring and wait."""

    def __init__(self, sock, stop_fd, bell):
        self._ready = False
        self.peer_sock = sock
        super().__init__(sock, stop_fd, bell)

    @property
    def link_ready(self):
        return self._ready

    @link_ready.setter
    def link_ready(self, value):
        self._ready = value
        if value:
            self.peer_sock.recv(4096)   # what the main thread's _serve_link reads
            self.resume()


def rings_past(bell, seen, timeout):
    deadline = time.monotonic() + timeout
    while bell.value == seen:
        if time.monotonic() > deadline:
            return False
        bell.wait(seen, 0.05)
    return True


@pytest.fixture
def watcher():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stop_r, stop_w = os.pipe()
    bell, bell_fd = Doorbell.create()
    os.close(bell_fd)
    w = EagerMain(ours, stop_r, bell)
    w.start()
    yield w, theirs, bell
    os.write(stop_w, b"x")
    w.resume()   # in case it lost one: it must still stop, and the test says why it failed
    w.join(DEADLINE)
    alive = w.is_alive()
    for s in (ours, theirs):
        s.close()
    os.close(stop_r)
    os.close(stop_w)
    bell.close()
    assert not alive, "the watcher did not stop"


def test_a_resume_right_after_link_ready_is_not_lost(watcher):
    w, broker_end, bell = watcher
    for i in range(3):   # each request must be seen: the watcher is polling again
        seen = bell.value
        broker_end.send(b"request %d" % i)
        assert rings_past(bell, seen, 2.0), (
            f"request {i}: the watcher never rang: it lost the resume() that came "
            f"between link_ready = True and its clear()")
