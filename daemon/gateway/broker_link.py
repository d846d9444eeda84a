"""The gateway's control connections to the broker: a small pool shared by its threads.

The gateway is a client of the broker like any other: it reaches groups, offsets,
metadata and admin through the Unix control socket (client/protocol/PROTOCOL.md). A
ControlClient is one call at a time, so each call borrows an idle connection (or opens
one) and gives it back; a connection that failed is dropped, not returned. A state that
lives as long as a connection (a producer's ring attachment) takes a connection of its
own with `open()` and closes it when done.
"""
import os
import threading

from odradek.client.errors import NetworkException, RequestTimedOut
from odradek.client.protocol import ControlClient, RemoteProtocolError

__all__ = ["BrokerLinks"]


class BrokerLinks:
    """Pooled ControlClients to the broker's socket at `path`; thread-safe."""

    def __init__(self, path, timeout=30.0, max_idle=8):
        self.path, self.timeout, self.max_idle = path, timeout, max_idle
        self._idle = []
        self._lock = threading.Lock()
        self._closed = False

    def open(self, timeout=None):
        """A new ControlClient of the caller's own (it closes it)."""
        return ControlClient(self.path, self.timeout if timeout is None else timeout)

    def call(self, request, fds=(), *, timeout=None):
        """(response, fds) of `request` on a pooled connection; raises what ControlClient.call
        raises (the broker's error class for an error answer)."""
        return self._on_pooled(lambda client: client.call(request, fds, timeout=timeout))

    def call_many(self, requests, *, timeout=None):
        """ControlClient.call_many on a pooled connection: the requests pipelined, one item
        per request ((response, fds), or the OdradekError of its error answer)."""
        return self._on_pooled(lambda client: client.call_many(requests, timeout=timeout))

    def _on_pooled(self, use):
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self.open()
        try:
            answer = use(client)
        except (NetworkException, RequestTimedOut, RemoteProtocolError):
            client.close()
            raise
        except BaseException:
            self._give_back(client)
            raise
        self._give_back(client)
        return answer

    def ask(self, request, *, timeout=None):
        """The response to `request`, a call that passes no fds (any the broker sends are
        closed); raises as call() does."""
        response, fds = self.call(request, timeout=timeout)
        for fd in fds:
            os.close(fd)
        return response

    def _give_back(self, client):
        if client.closed:
            return
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(client)
                return
        client.close()

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()
