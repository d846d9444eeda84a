"""A clock the tests move by hand: time is a parameter, never a sleep."""


class FakeClock:
    """Milliseconds since the epoch, starting at `start`; call it to read, advance() to move."""

    def __init__(self, start=1_700_000_000_000):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now += ms
        return self.now
