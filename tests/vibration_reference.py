"""The float64 reference of the node's vibration features (firmware/node/vibration.py docstring):
mean removed, periodic Hann window, one-sided spectrum divided by 2 pi f over the band's bins,
Parseval with the window's energy. Shared by the firmware's accuracy tests and the simulator's
ground truth, so both hold the node to one definition.
"""

import numpy as np

G = 9.80665


def reference(counts, scale_g, odr_hz, lo_hz, hi_hz):
    """{feature: array of 3} in float64 for an (n, 3) array of counts."""
    x = counts.astype(np.float64) * scale_g
    n = len(x)
    d = x - x.mean(axis=0)
    m2 = (d ** 2).mean(axis=0)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    spectrum = np.fft.rfft(d * G * w[:, None], axis=0)
    k = np.arange(n // 2 + 1)
    f = k * odr_hz / n
    first = max(1, int(np.ceil(lo_hz * n / odr_hz - 1e-3)))
    last = min(n // 2, int(np.floor(hi_hz * n / odr_hz + 1e-3)))
    inside = slice(first, last + 1)
    weight = np.where(k == n // 2, 1.0, 2.0)[inside, None]
    ms = (weight * np.abs(spectrum[inside]) ** 2 / (2 * np.pi * f[inside, None]) ** 2).sum(axis=0)
    rms = np.sqrt(m2)
    pk = np.abs(d).max(axis=0)
    return {"rms": rms, "pk": pk, "cf": pk / rms, "kurt": (d ** 4).mean(axis=0) / m2 ** 2,
            "vel": 1000 * np.sqrt(ms / (n * (w ** 2).sum()))}
