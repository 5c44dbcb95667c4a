"""Per-axis vibration features of one accelerometer window: RMS, peak, crest factor.

The window is an array('h') of raw counts, x,y,z interleaved. Each axis is
walked once, accumulating integer sums of (sample - first sample): ints are
exact, and small ints (below 2**30) need no heap on MicroPython, so the sum of
squares is carried in 2**29 chunks; subtracting the first sample keeps the
squares small when the axis carries gravity. Floats, which are single
precision and heap-boxed on the ESP32, appear only a few times per axis.
"""
import math
from micropython import const

AXES = const(3)
_CHUNK = const(0x20000000)  # 2**29: MicroPython small ints end at 2**30 on the ESP32


def axis_sums(buf, n, axis):
    """(sum, sum of squares, min, max) of buf[axis::3][:n] minus its first sample."""
    ref = buf[axis]
    s = 0
    q = 0  # the sum of squares is chunks * _CHUNK + q
    chunks = 0
    lo = 0
    hi = 0
    for i in range(axis, n * AXES, AXES):
        d = buf[i] - ref
        s += d
        q += d * d
        while q >= _CHUNK:
            # Keeps q a small int (below 2**30 while |d| < 23170): no heap per sample.
            q -= _CHUNK
            chunks += 1
        if d < lo:
            lo = d
        elif d > hi:
            hi = d
    return s, chunks * _CHUNK + q, lo, hi


def window_features(buf, n, scale_g, rms, pk, cf):
    """Fill rms[a], pk[a] and cf[a] (a = 0, 1, 2 for x, y, z) for n samples.

    rms: root mean square of sample - mean, in g; pk: largest |sample - mean|,
    in g; cf: pk / rms, 0 when rms is 0. scale_g is g per count.
    """
    for a in range(AXES):
        if n <= 0:
            rms[a] = pk[a] = cf[a] = 0.0
            continue
        s, q, lo, hi = axis_sums(buf, n, a)
        # n*n*variance = n*q - s*s, exact in integers: no cancellation.
        r = math.sqrt(n * q - s * s) / n * scale_g
        mean = s / n
        p = hi - mean
        if mean - lo > p:
            p = mean - lo
        p *= scale_g
        rms[a] = r
        pk[a] = p
        cf[a] = p / r if r > 0 else 0.0
