"""The same features as firmware/node/vibration.py, written the obvious float way (bench baseline).

What a competent programmer writes first: samples to lists of floats in g, float loops for the
mean, RMS, peak, kurtosis, and a textbook iterative radix-2 FFT on Python complex numbers
(bit-reversal permutation, then butterflies with a cmath twiddle per stage), the Hann window and
the velocity band exactly as vibration.py defines them. No preallocation, no integer tricks.
It runs on MicroPython (bench/vibration.py measures it in the VM) and on CPython.
"""

import cmath
import math

G = 9.80665


def fft(a):
    """In-place iterative radix-2 FFT of a list of complex numbers whose length is a power of 2."""
    n = len(a)
    j = 0
    for i in range(1, n):  # bit-reversal permutation
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            a[i], a[j] = a[j], a[i]
    size = 2
    while size <= n:
        half = size // 2
        wm = cmath.exp(-2j * math.pi / size)
        for start in range(0, n, size):
            w = 1
            for k in range(start, start + half):
                t = w * a[k + half]
                u = a[k]
                a[k] = u + t
                a[k + half] = u - t
                w *= wm
        size *= 2
    return a


def analyze(buf, n, scale_g, odr_hz, lo_hz, hi_hz):
    """{"rms", "pk", "cf", "kurt", "vel"}: lists of 3 floats for n samples of buf (x,y,z interleaved)."""
    out = {"rms": [], "pk": [], "cf": [], "kurt": [], "vel": []}
    window = [0.5 - 0.5 * math.cos(2 * math.pi * i / n) for i in range(n)]
    energy = 0.0
    for w in window:
        energy += w * w
    first = max(1, math.ceil(lo_hz * n / odr_hz - 1e-3))  # the bins vibration.Analyzer uses
    last = min(n // 2, math.floor(hi_hz * n / odr_hz + 1e-3))
    for axis in range(3):
        x = [buf[3 * i + axis] * scale_g for i in range(n)]
        mean = sum(x) / n
        m2 = 0.0
        m4 = 0.0
        peak = 0.0
        for v in x:
            d = v - mean
            m2 += d * d
            m4 += d * d * d * d
            if abs(d) > peak:
                peak = abs(d)
        m2 /= n
        m4 /= n
        rms = math.sqrt(m2)
        out["rms"].append(rms)
        out["pk"].append(peak)
        out["cf"].append(peak / rms if rms > 0 else 0.0)
        out["kurt"].append(m4 / (m2 * m2) if m2 > 0 else 0.0)
        spectrum = fft([(x[i] - mean) * G * window[i] for i in range(n)])
        ms = 0.0
        for k in range(first, last + 1):
            f = k * odr_hz / n
            weight = 1 if k == n // 2 else 2  # one-sided spectrum: Nyquist appears once
            ms += weight * abs(spectrum[k]) ** 2 / (2 * math.pi * f) ** 2
        out["vel"].append(1000 * math.sqrt(ms / (n * energy)))
    return out
