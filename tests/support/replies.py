"""A request sent to a sans-IO coordinator in a test harness, and its reply once there is
one: the harness keeps `replies`, {(conn, handle): response or OdradekError}, filled by
record()."""
from odradek.client.errors import OdradekError


class Call:
    """One request sent: its reply, once there is one."""

    def __init__(self, h, conn, handle):
        self.h, self.conn, self.handle = h, conn, handle

    @property
    def done(self):
        return (self.conn, self.handle) in self.h.replies

    @property
    def result(self):
        assert self.done, "no reply (yet)"
        return self.h.replies[(self.conn, self.handle)]

    def ok(self):
        result = self.result
        assert not isinstance(result, OdradekError), f"expected a response, got {result!r}"
        return result

    def error(self):
        result = self.result
        assert isinstance(result, OdradekError), f"expected an error, got {result!r}"
        return type(result)


def record(replies, reply):
    """Keep the result of a Reply effect: the only answer to its request, and a response
    that goes on the wire as it is."""
    key = (reply.conn, reply.handle)
    assert key not in replies, f"request {key} answered twice: {replies[key]!r}, {reply.result!r}"
    if not isinstance(reply.result, OdradekError):
        assert type(reply.result).decode(reply.result.encode(0), 0) == reply.result
    replies[key] = reply.result
