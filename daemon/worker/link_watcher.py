"""The worker's link watcher: a thread that blocks in poll() on the broker link and the
signal pipe and rings the worker's own bell when either is readable, so the main thread
sleeps in one futex_waitv for rings, broker requests and signals alike
(daemon/worker/wakeups.py). It never reads or writes the link's bytes and touches no log
state: the main thread serves the link, then resume()s it.
"""
import select
import threading

__all__ = ["LinkWatcher"]


class LinkWatcher(threading.Thread):
    """Rings the doorbell when the broker link or the signal pipe is readable, then waits
    until the main thread has read (resume()). Never reads the link itself."""

    def __init__(self, sock, stop_fd, doorbell):
        super().__init__(name="link-watcher", daemon=True)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._poll.register(stop_fd, select.POLLIN)
        self._stop_fd = stop_fd
        self._doorbell = doorbell
        self._resume = threading.Event()
        self.link_ready = False
        self.stop = False

    def run(self):
        while not self.stop:
            events = self._poll.poll()
            # clear before link_ready turns True: the main thread may see the flag, serve
            # the link and resume() at once, and a clear() after that would undo its
            # set() and leave us waiting for a resume() that already came (issue 8.9)
            self._resume.clear()
            for fd, _ in events:
                if fd == self._stop_fd:
                    self.stop = True
                else:
                    self.link_ready = True
            self._doorbell.ring()
            if self.stop:
                return
            self._resume.wait()

    def resume(self):
        self.link_ready = False
        self._resume.set()
