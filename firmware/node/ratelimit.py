"""A token bucket: at most `burst` events at once, then one every `every_ms` on average.

The node limits commands with it (app.Node.handle_commands): each command takes a token; one that
finds none is not run. Time is plain milliseconds from the caller (the node's uptime, which does not
wrap), so this core has no clock of its own and runs the same on CPython and MicroPython. Integers
only: credit is kept in milliseconds, a token is every_ms of it.
"""


class TokenBucket:
    def __init__(self, burst, every_ms, now_ms):
        self.burst = burst
        self.every_ms = every_ms
        self._credit = burst * every_ms  # full at start: a fresh node answers a burst at once
        self._at = now_ms

    def take(self, now_ms):
        """True (and one token less) when a token is left at now_ms, else False."""
        elapsed = now_ms - self._at
        if elapsed > 0:  # a clock that steps back refills nothing
            self._credit = min(self.burst * self.every_ms, self._credit + elapsed)
            self._at = now_ms
        if self._credit < self.every_ms:
            return False
        self._credit -= self.every_ms
        return True

    def tokens(self, now_ms):
        """Whole tokens left at now_ms (nothing taken)."""
        elapsed = max(0, now_ms - self._at)
        return min(self.burst * self.every_ms, self._credit + elapsed) // self.every_ms
