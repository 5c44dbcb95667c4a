"""Growing, jittered waits between reconnect attempts.

After each failure the wait doubles, from `first_ms` up to `cap_ms`, so a long outage costs few
attempts. Each wait is drawn with "equal jitter": half of the step is fixed and the other half is
random. The fixed half keeps the growth (a node never retries sooner than half the step); the
random half spreads a fleet that lost its broker at the same moment, so the nodes do not all come
back in one wave when it returns.

`rand(n)` returns an int in [0, n): on the node it is built on random.getrandbits; tests pass a
seeded generator so the waits are reproducible.
"""


class Backoff:
    def __init__(self, first_ms, cap_ms, rand):
        if not (type(first_ms) is int and type(cap_ms) is int and 0 < first_ms <= cap_ms):
            raise ValueError("backoff needs ints with 0 < first_ms <= cap_ms")
        self.first_ms = first_ms
        self.cap_ms = cap_ms
        self.rand = rand
        self._step = first_ms

    def next_ms(self):
        """The wait before the next attempt; each call counts one more failure."""
        step = self._step
        half = step // 2
        self._step = min(step * 2, self.cap_ms)
        return half + self.rand(step - half + 1)  # in [step/2, step]

    def reset(self):
        """The connection worked: the next failure waits the shortest step again."""
        self._step = self.first_ms
