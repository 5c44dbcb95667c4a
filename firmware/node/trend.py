"""Temperature trend: least-squares rate of change over a sliding time window.

A Trend keeps the last `size` readings that are at most window_s seconds older than the newest,
in preallocated arrays (times as int ms relative to an origin, values as int 1/4096 degC), so adding
a reading allocates nothing. rate() fits a straight line through them and returns its slope in
degC per minute: a fit over the whole window is far less noisy than the difference of two
readings. eta_s() extrapolates that slope to a limit, for early warnings.

Heap care (the ESP32 boxes every float: 16 bytes per arithmetic result): the fit sums integers --
times relative to the middle reading in 1/8 s, values relative to it in 1/4096 degC, which keeps
the sums small ints over a window of normal readings -- and uses floats only for the final
slope, so a rate costs a few floats, not several per reading; it is computed once per reading
(eta_s reuses it). Integer sums are exact, so a 40-day uptime or a 90 degC offset costs no
precision. The origin moves forward whenever the relative times would outgrow a small int.
"""
from array import array
from micropython import const

_REBASE_MS = const(0x3FFFFFFF)  # keep relative times small ints (MicroPython: 31-bit signed)
_Q = const(4096)  # values kept as int 1/4096 degC (a DS18B20 resolves 1/16)
_DT_MS = const(125)  # time unit of the fit: +-2400 across a 10-minute window centred on its middle


class Trend:
    def __init__(self, window_s, size=32):
        if size < 3 or not window_s > 0:
            raise ValueError("trend needs size >= 3 and window_s > 0, not %r and %r" % (size, window_s))
        self.window_ms = int(window_s * 1000)
        self.size = size
        self.t = array("i", [0] * size)  # ms since self.origin
        self.v = array("i", [0] * size)  # degC * _Q, rounded
        self.origin = None
        self.head = 0  # where the next reading goes
        self.n = 0
        self._rate = None  # rate() of the readings as they are, once _fresh
        self._fresh = False

    def _at(self, k):
        """Ring index of the k-th oldest reading."""
        return (self.head - self.n + k) % self.size

    def add(self, t_ms, value):
        """Add a reading; None, NaN, infinity and readings older than the newest are ignored."""
        if value is None or value - value != 0:
            return
        if self.origin is None:
            self.origin = t_ms
        rel = t_ms - self.origin
        if self.n and rel < self.t[self._at(self.n - 1)]:
            return
        if rel > _REBASE_MS:
            for k in range(self.n):
                i = self._at(k)
                self.t[i] = max(self.t[i] - rel, -self.window_ms - 1)  # older than that is dropped
            self.origin = t_ms
            rel = 0
        self.t[self.head] = rel
        self.v[self.head] = round(value * _Q)
        self.head = (self.head + 1) % self.size
        if self.n < self.size:
            self.n += 1
        oldest = rel - self.window_ms
        while self.t[self._at(0)] < oldest:
            self.n -= 1
        self._fresh = False

    def span_ms(self):
        """Time between the oldest and the newest reading kept."""
        return self.t[self._at(self.n - 1)] - self.t[self._at(0)] if self.n else 0

    def rate(self):
        """degC per minute, or None with fewer than 3 readings or a span under window_s / 4."""
        if not self._fresh:
            self._rate = self._fit()
            self._fresh = True
        return self._rate

    def _fit(self):
        n = self.n
        if n < 3 or self.span_ms() * 4 < self.window_ms:
            return None
        mid = self._at(n // 2)
        t0 = self.t[mid]
        v0 = self.v[mid]
        st = sv = stt = stv = 0
        for k in range(n):
            i = self._at(k)
            dt = (self.t[i] - t0) // _DT_MS
            dv = self.v[i] - v0
            st += dt
            sv += dv
            stt += dt * dt
            stv += dt * dv
        mt = st / n
        sxx = stt - mt * st
        if not sxx > 0:
            return None
        return (stv - mt * sv) / sxx * (60000 // _DT_MS / _Q)

    def eta_s(self, value, limit):
        """Seconds until value reaches limit at the current rate: 0 once value >= limit,
        None when the rate is unknown or not rising (or value is None)."""
        if value is None or value != value:
            return None
        if value >= limit:
            return 0
        r = self.rate()
        if r is None or not r > 0:
            return None
        return (limit - value) / r * 60
