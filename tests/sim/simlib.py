"""Helpers shared by the simulator tests."""


class HandClock:
    """Board time that moves only when the board waits, by exactly the time asked."""

    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t

    def wait(self, seconds, event=None, watch=None):
        self.t += max(0.0, seconds)
        return []
