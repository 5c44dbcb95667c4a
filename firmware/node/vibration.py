"""Vibration analytics of one accelerometer window: per-axis RMS, peak, crest factor, kurtosis and
band-limited velocity RMS; the ISO 10816-3 zone of a velocity.

Velocity (mm/s RMS over [lo_hz, hi_hz]) is integrated in the frequency domain: the mean-removed
window w[i]*x[i] (periodic Hann, w = 0.5 - 0.5 cos(2 pi i / n)) is transformed, each bin k of
frequency f_k = k * odr / n is divided by 2 pi f_k, and the band's bins are summed by Parseval:
    v^2 = sum(c_k |X_k|^2 / (2 pi f_k)^2) / (n * sum(w^2)),   c_k = 2 (1 at Nyquist),
with X in m/s^2 (g * 9.80665) and sum(w^2) = 3n/8. The Hann window keeps a tone's energy within a
couple of bins, so a tone inside the band is measured within about 1 % (a plain window leaks a
tone's energy across the spectrum, where the 1/f weighting distorts it); dividing by sum(w^2)
makes the energy right. The band is the bins with lo_hz <= f_k <= hi_hz (hi_hz capped at odr/2);
`f_lo`/`f_hi` are the first and last bin used: the resolution is odr/n.

Why the arithmetic looks like this: on the ESP32 a float is a heap object (every float result
allocates) and an int of 2**30 or more is a heap bigint; only small ints are free. So each axis
is done in integers, in preallocated arrays, with floats only in a dozen operations at its end:
  1. _stats: the sum, minimum and maximum (the three axes in one pass);
  2. _load: d = x * 2**e - mean, with e chosen so that |d| < 2**13 (small signals gain
     resolution; the mean is resolved to 2**-e counts); the sums of d*d and of (d*d >> k)**2 in
     2**29 chunks (RMS, kurtosis); and the windowed samples, even ones as real and odd ones as
     imaginary parts of n/2 complex points, through the FFT's first two stages (which need no
     multiplication) into bit-reversed order;
  3. _fft: the other stages, radix-2 decimation in time two stages at a time, Q14 twiddles;
     every stage halves, with rounding, which keeps each value under 2**13.5 in modulus and
     every product under 2**29;
  4. _spectrum: the split of the half-size transform into the real signal's bins, each weighted
     by 1/k (0 outside the band); _band then scales the largest to 14 bits and sums the squares.
Accuracy, against a float64 reference: velocity within about 1 % for tones across the band from a
few counts to full scale and for mixes with noise; RMS, peak and crest factor within 1e-4 and
kurtosis within 1e-3 (swings beyond 2**13 counts are taken in steps of 2**-e counts).
The limit: the spectrum resolves about 2**-13 of its largest line, and the 1/f weighting magnifies
what sits at the bottom of the band. So strong acceleration above the band (say near odr/2)
leaves a floor in the velocity of 1-2 % of the velocity that acceleration would have at its own
frequency, up to about 10 % with the 2 Hz band at 1024 samples (whose first bin shares its two
half-size bins with the one next to Nyquist).
Cost: run() allocates about 600 bytes per window (its result floats) and nothing per sample. The
tables take about 9 KB for n = 1024 (17 KB for 2048), shared by analyzers of one size, plus n
bytes of band weights per analyzer.
"""

import array
import math
from micropython import const

ZONE_NAMES = "ABCD"
# ISO 10816-3 boundaries A/B, B/C, C/D in mm/s RMS, by (machine group, foundation).
_LIMITS = {
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
}
G = 9.80665  # m/s^2 per g

_CHUNK = const(0x20000000)  # 2**29: sums are carried as chunks * 2**29 + rest, all small ints
_ONE = const(16384)  # 1.0 in Q14, the format of the twiddles and of the window
_WMAX = 30000  # the 1/k weight of the band's first bin: |X'| <= 2**15, so |y| < 2**30
_TWO_PI = 6.283185307179586


def zone_limits(group, foundation):
    """(A/B, B/C, C/D) boundaries in mm/s for machine group 1 or 2 on a rigid or flexible foundation."""
    try:
        return _LIMITS[(group, foundation)]
    except (KeyError, TypeError):
        raise ValueError("no ISO 10816-3 limits for group %r on a %r foundation" % (group, foundation))


def zone(v_mm_s, limits):
    """The zone letter of a velocity; a boundary value belongs to the lower zone (2.3 -> A)."""
    for i in range(3):
        if v_mm_s <= limits[i]:
            return ZONE_NAMES[i]
    return "D"


def band(odr_hz, rpm=None):
    """(lo_hz, hi_hz, limited): 10-1000 Hz, or 2-1000 Hz below 600 r/min; hi at most odr/2."""
    lo = 2.0 if rpm is not None and rpm < 600 else 10.0
    hi = min(1000.0, odr_hz / 2)
    return lo, hi, hi < 1000.0


def _bits(v):
    """Number of bits of a non-negative int (MicroPython ints have no bit_length)."""
    b = 0
    while v:
        v >>= 1
        b += 1
    return b


def _shift(chunks):
    """An even t such that chunks * 2**29 + rest == about ((chunks << (29 - t)) + (rest >> t)) << t
    with the first factor below 2**30 (rest < 2**29); t is even so that a square root halves it."""
    if not chunks:
        return 0
    t = _bits(chunks) + 1
    return t + (t & 1)


_tables = {}  # n -> (cos, bitrev, re, im): shared by analyzers of one size


def _shared(n):
    t = _tables.get(n)
    if t is None:
        m = n // 2
        # The one table: cs[k] = cos(2 pi k / n) in Q14, k = 0..n/2. The twiddles W^k = cos - j sin
        # take sin(2 pi k / n) from it as cs[n/4 - k] (k <= n/4) or cs[k - n/4], and the Hann
        # window w(t) = (1 - cos(2 pi t / n)) / 2 is (16385 - cs[t]) >> 1, and (16385 + cs[t]) >> 1
        # half a window on (t < n/2).
        cs = array.array("h", bytes(2 * (m + 1)))
        for k in range(m + 1):
            cs[k] = round(_ONE * math.cos(_TWO_PI * k / n))
        rev = array.array("h", bytes(m >> 1))  # bit reversals of 0..m/4-1 (all _load needs)
        bits = _bits(m) - 1
        for i in range(m >> 2):
            r = 0
            for b in range(bits):
                r |= ((i >> b) & 1) << (bits - 1 - b)
            rev[i] = r
        # The FFT's work space: lists of small ints (no allocation per store, and quicker to index
        # than an array; 4 bytes a slot on the ESP32 like an array("i")).
        t = (cs, rev, [0] * m, [0] * m, array.array("h", bytes(32)))
        _tables[n] = t
    return t


def _stats(buf, end, out):
    """out[a], out[3 + a], out[6 + a] = sum, min, max of axis a (buf[a], buf[a + 3], ... before
    end), the three axes in one pass."""
    sx = sy = sz = 0
    lx = hx = buf[0]
    ly = hy = buf[1]
    lz = hz = buf[2]
    for i in range(0, end, 3):
        x = buf[i]
        sx += x
        if x < lx:
            lx = x
        elif x > hx:
            hx = x
        x = buf[i + 1]
        sy += x
        if x < ly:
            ly = x
        elif x > hy:
            hy = x
        x = buf[i + 2]
        sz += x
        if x < lz:
            lz = x
        elif x > hz:
            hz = x
    out[0] = sx
    out[1] = sy
    out[2] = sz
    out[3] = lx
    out[4] = ly
    out[5] = lz
    out[6] = hx
    out[7] = hy
    out[8] = hz


def _load(buf, a, m, f, g, mf, k, cs, rev, re, im, out):
    """Pass 2 and the FFT's first two stages, for axis a of m complex points (2m samples).

    d = ((x << f) >> g) - mf for each sample (|d| < 2**13); out[0..3] = sum d*d and
    sum ((d*d) >> k)**2, each as chunks of 2**29 and a rest. Point z[p] = w*d at samples 2p
    (real part) and 2p + 1 (imaginary), w the Q14 window; the points a quarter of the window
    apart, z[r], z[r + m/4], z[r + m/2], z[r + 3m/4], are neighbours in bit-reversed order (from
    rev[r] on), where their 4-point DFT is stored: the FFT's first two stages. Its sums of
    products are rounded once, >> 16, to at most 2**13.
    """
    c2 = s2 = c4 = s4 = 0
    kr = (1 << k) >> 1  # rounds d*d >> k
    q1 = 3 * (m >> 1)  # a quarter window further on in buf: n/4 samples of 3 values
    q2 = q1 + q1
    q3 = q2 + q1
    i = a
    j = 0  # 2r: the window's cosines cs[2r], cs[2r + 1] and, a quarter window on, cs[jq], cs[jq + 1]
    jq = m >> 1
    for r in range(m >> 2):
        # a0 = z[r], a1 = z[r + m/2], a2 = z[r + m/4], a3 = z[r + 3m/4] (bit-reversed neighbours)
        d0 = ((buf[i] << f) >> g) - mf
        e0 = ((buf[i + 3] << f) >> g) - mf
        d1 = ((buf[i + q2] << f) >> g) - mf
        e1 = ((buf[i + q2 + 3] << f) >> g) - mf
        d2 = ((buf[i + q1] << f) >> g) - mf
        e2 = ((buf[i + q1 + 3] << f) >> g) - mf
        d3 = ((buf[i + q3] << f) >> g) - mf
        e3 = ((buf[i + q3 + 3] << f) >> g) - mf
        i += 6
        # Each square once: u sums the eight (each at most 2**26), t the squares of (d*d >> k).
        x = d0 * d0
        y = e0 * e0
        u = x + y
        x = (x + kr) >> k
        y = (y + kr) >> k
        t = x * x + y * y
        x = d1 * d1
        y = e1 * e1
        u += x + y
        x = (x + kr) >> k
        y = (y + kr) >> k
        t += x * x + y * y
        x = d2 * d2
        y = e2 * e2
        u += x + y
        x = (x + kr) >> k
        y = (y + kr) >> k
        t += x * x + y * y
        x = d3 * d3
        y = e3 * e3
        u += x + y
        x = (x + kr) >> k
        y = (y + kr) >> k
        # A rest below 2**29 plus at most 2**29 stays below 2**30.
        s2 += u
        if s2 >= _CHUNK:
            s2 -= _CHUNK
            c2 += 1
        s4 += t + x * x + y * y
        if s4 >= _CHUNK:
            s4 -= _CHUNK
            c4 += 1
        # Windowed (products below 2**27), then the 4-point DFT; 32768 rounds the final >> 16.
        # Samples half a window apart take w and 1 - w: (16385 -+ cos) >> 1.
        c = cs[j]
        x = d0 * ((16385 - c) >> 1) + 32768
        d0 = d1 * ((16385 + c) >> 1)
        c = cs[j + 1]
        y = e0 * ((16385 - c) >> 1) + 32768
        e0 = e1 * ((16385 + c) >> 1)
        b0r = x + d0
        b0i = y + e0
        b1r = x - d0
        b1i = y - e0
        c = cs[jq]
        x = d2 * ((16385 - c) >> 1)
        d0 = d3 * ((16385 + c) >> 1)
        c = cs[jq + 1]
        y = e2 * ((16385 - c) >> 1)
        e0 = e3 * ((16385 + c) >> 1)
        j += 2
        jq += 2
        b2r = x + d0
        b2i = y + e0
        b3r = x - d0
        b3i = y - e0
        p = rev[r]
        re[p] = (b0r + b2r) >> 16
        im[p] = (b0i + b2i) >> 16
        re[p + 2] = (b0r - b2r) >> 16
        im[p + 2] = (b0i - b2i) >> 16
        re[p + 1] = (b1r + b3i) >> 16  # b3 times -j
        im[p + 1] = (b1i - b3r) >> 16
        re[p + 3] = (b1r - b3i) >> 16
        im[p + 3] = (b1i + b3r) >> 16
    out[0] = c2
    out[1] = s2
    out[2] = c4
    out[3] = s4


def _twiddles(cs, i, qn, m, tw):
    """tw[2s], tw[2s + 1] = cos, sin of 2 pi s i / n in Q14, s = 1..7 (s i < n)."""
    for s in range(1, 8):
        k = s * i
        if k <= m:
            tw[2 * s] = cs[k]
            tw[2 * s + 1] = cs[qn - k] if k <= qn else cs[k - qn]
        else:  # past n/2 cos and sin change sign
            k -= m
            tw[2 * s] = -cs[k]
            tw[2 * s + 1] = -cs[qn - k] if k <= qn else -cs[k - qn]


def _radix8(re, im, m, n, cs, qn, tw):
    """Stages 3 to 5 at once: 8 blocks of 4 (at p + 4b) into one of 32; the 8-point DFT of
    c_s = W^(js) a_rev(s) (W = W_32, rev the 3-bit reversal), halved three times."""
    u = n >> 5
    for j in range(4):
        _twiddles(cs, j * u, qn, m, tw)
        c1 = tw[2]
        s1 = tw[3]
        c2 = tw[4]
        s2 = tw[5]
        c3 = tw[6]
        s3 = tw[7]
        c4 = tw[8]
        s4 = tw[9]
        c5 = tw[10]
        s5 = tw[11]
        c6 = tw[12]
        s6 = tw[13]
        c7 = tw[14]
        s7 = tw[15]
        p = j
        while p < m:
            x = re[p + 16]
            y = im[p + 16]
            x1 = (c1 * x + s1 * y + 8192) >> 14
            y1 = (c1 * y - s1 * x + 8192) >> 14
            x = re[p + 8]
            y = im[p + 8]
            x2 = (c2 * x + s2 * y + 8192) >> 14
            y2 = (c2 * y - s2 * x + 8192) >> 14
            x = re[p + 24]
            y = im[p + 24]
            x3 = (c3 * x + s3 * y + 8192) >> 14
            y3 = (c3 * y - s3 * x + 8192) >> 14
            x = re[p + 4]
            y = im[p + 4]
            x4 = (c4 * x + s4 * y + 8192) >> 14
            y4 = (c4 * y - s4 * x + 8192) >> 14
            x = re[p + 20]
            y = im[p + 20]
            x5 = (c5 * x + s5 * y + 8192) >> 14
            y5 = (c5 * y - s5 * x + 8192) >> 14
            x = re[p + 12]
            y = im[p + 12]
            x6 = (c6 * x + s6 * y + 8192) >> 14
            y6 = (c6 * y - s6 * x + 8192) >> 14
            x = re[p + 28]
            y = im[p + 28]
            x7 = (c7 * x + s7 * y + 8192) >> 14
            y7 = (c7 * y - s7 * x + 8192) >> 14
            x0 = re[p] + 4  # rounds the >> 3 of all eight outputs
            y0 = im[p] + 4
            # The even half's 4-point DFT (c0, c2, c4, c6): e0..e3 ...
            ar = x0 + x4
            ai = y0 + y4
            br = x0 - x4
            bi = y0 - y4
            x = x2 + x6
            y = y2 + y6
            e0r = ar + x
            e0i = ai + y
            e2r = ar - x
            e2i = ai - y
            x = x2 - x6
            y = y2 - y6
            e1r = br + y  # b - j d
            e1i = bi - x
            e3r = br - y  # b + j d
            e3i = bi + x
            # ... the odd half's (c1, c3, c5, c7), turned by W8^k: o0..o3
            ar = x1 + x5
            ai = y1 + y5
            br = x1 - x5
            bi = y1 - y5
            x = x3 + x7
            y = y3 + y7
            o0r = ar + x
            o0i = ai + y
            o2r = ai - y  # (a - c) times -j
            o2i = x - ar
            x = x3 - x7
            y = y3 - y7
            ar = br + y  # b - j d, then times (1 - j) / sqrt 2 (11585 = 2**14 / sqrt 2)
            ai = bi - x
            o1r = ((ar + ai) * 11585 + 8192) >> 14
            o1i = ((ai - ar) * 11585 + 8192) >> 14
            ar = br - y  # b + j d, then times -(1 + j) / sqrt 2
            ai = bi + x
            o3r = ((ai - ar) * 11585 + 8192) >> 14
            o3i = (8192 - (ar + ai) * 11585) >> 14
            re[p] = (e0r + o0r) >> 3
            im[p] = (e0i + o0i) >> 3
            re[p + 16] = (e0r - o0r) >> 3
            im[p + 16] = (e0i - o0i) >> 3
            re[p + 4] = (e1r + o1r) >> 3
            im[p + 4] = (e1i + o1i) >> 3
            re[p + 20] = (e1r - o1r) >> 3
            im[p + 20] = (e1i - o1i) >> 3
            re[p + 8] = (e2r + o2r) >> 3
            im[p + 8] = (e2i + o2i) >> 3
            re[p + 24] = (e2r - o2r) >> 3
            im[p + 24] = (e2i - o2i) >> 3
            re[p + 12] = (e3r + o3r) >> 3
            im[p + 12] = (e3i + o3i) >> 3
            re[p + 28] = (e3r - o3r) >> 3
            im[p + 28] = (e3i - o3i) >> 3
            p += 32


def _fft(re, im, m, n, cs, tw):
    """Stages 3.. of the in-place FFT of m points (bit-reversed order; _load did stages 1 and 2);
    each stage halves. An odd number of them starts with three at once (_radix8), the rest go
    two at a time."""
    qn = m >> 1  # n/4: sin(2 pi i / n) = cs[qn - i] for i <= qn, cs[i - qn] above
    h = 4
    while 4 * h <= m:
        h <<= 2
    if h < m:  # an odd number of stages
        _radix8(re, im, m, n, cs, qn, tw)
        h = 32
    else:
        h = 4
    while 4 * h <= m:
        # Stages of size 2h and 4h as one radix-4 stage: a0..a3 at p0 = p, p1 = p + h, p2, p3,
        # a1, a2, a3 turned by W^2j, W^j, W^3j (W = W_4h), then a 4-point DFT, halved twice.
        step = 4 * h
        u = n // step
        for j in range(h):
            i = 2 * j * u  # table index: angle * n / 2 pi, below n/2
            c1 = cs[i]
            s1 = cs[qn - i] if i <= qn else cs[i - qn]
            i = j * u  # below n/4
            c2 = cs[i]
            s2 = cs[qn - i]
            i = 3 * j * u  # below 3n/4: past n/2, cos and sin change sign
            if i <= m:
                c3 = cs[i]
                s3 = cs[qn - i] if i <= qn else cs[i - qn]
            else:
                c3 = -cs[i - m]
                s3 = -cs[qn + m - i]
            p0 = j
            while p0 < m:  # not range(j, m, step): a variable step makes range allocate
                p1 = p0 + h
                p2 = p1 + h
                p3 = p2 + h
                x = re[p1]
                y = im[p1]
                tr = (c1 * x + s1 * y + 8192) >> 14
                ti = (c1 * y - s1 * x + 8192) >> 14
                x = re[p0] + 2  # rounds the >> 2 of all four outputs
                y = im[p0] + 2
                b0r = x + tr
                b0i = y + ti
                b1r = x - tr
                b1i = y - ti
                x = re[p2]
                y = im[p2]
                b2r = (c2 * x + s2 * y + 8192) >> 14
                b2i = (c2 * y - s2 * x + 8192) >> 14
                x = re[p3]
                y = im[p3]
                tr = (c3 * x + s3 * y + 8192) >> 14
                ti = (c3 * y - s3 * x + 8192) >> 14
                b3r = b2r - tr
                b3i = b2i - ti
                b2r += tr
                b2i += ti
                re[p0] = (b0r + b2r) >> 2
                im[p0] = (b0i + b2i) >> 2
                re[p2] = (b0r - b2r) >> 2
                im[p2] = (b0i - b2i) >> 2
                re[p1] = (b1r + b3i) >> 2  # b1 - j b3
                im[p1] = (b1i - b3r) >> 2
                re[p3] = (b1r - b3i) >> 2  # b1 + j b3
                im[p3] = (b1i + b3r) >> 2
                p0 += step
        h = step


def _spectrum(re, im, m, cs, wt):
    """Replace the half-size transform Z (bins 0..m-1) by y_k = X'_k * wt[k] at bins 1..m-1,
    and y_m (Nyquist) at bin 0, where X'_k = 2 * bin k of the real signal."""
    x = (re[0] - im[0]) * 2  # X'_m: Z_0 holds the sums of even and odd samples
    re[0] = x * wt[m]
    im[0] = 0
    qn = m >> 1  # n/4: sin(2 pi k / n) = cs[qn - k] for k <= qn
    for k in range(1, qn + 1):
        # A = Z[k] and B = conj(Z[m - k]) give X'_k = (A + B) - j W^k (A - B), and X'_{m-k}
        # from the same four numbers (W^(m-k) = -conj(W^k)).
        t = m - k
        ar = re[k]
        ai = im[k]
        br = re[t]
        bi = im[t]
        sr = ar + br
        si = ai - bi
        dr = ar - br
        di = ai + bi
        x = cs[k]
        y = cs[qn - k]
        p = (x * di - y * dr) >> 14
        q = (x * dr + y * di) >> 14
        x = wt[k]
        y = wt[t]
        re[k] = (sr + p) * x
        im[k] = (si - q) * x
        re[t] = (sr - p) * y
        im[t] = (-si - q) * y


def _band(re, im, k0, k1, sh, out):
    """out[0..1] = sum of |y_k >> sh|**2 over k0..k1 and bin 0, chunked."""
    r = (1 << sh) >> 1
    x = (re[0] + r) >> sh
    c = 0
    s = x * x
    for k in range(k0, k1 + 1):
        x = (re[k] + r) >> sh
        y = (im[k] + r) >> sh
        s += x * x + y * y
        if s >= _CHUNK:
            s -= _CHUNK
            c += 1
    out[0] = c
    out[1] = s


class Analyzer:
    """Per-axis features of windows of n samples at odr_hz; velocity over [lo_hz, hi_hz].

    After run(): rms, pk, cf, kurt, vel are lists of 3 floats (axes x, y, z): acceleration RMS
    (g, mean removed), peak |x - mean| (g), crest factor pk/rms, kurtosis m4/m2**2 (3 for
    Gaussian noise; 0 like the others for a constant axis), velocity RMS (mm/s).
    """

    def __init__(self, n, odr_hz, lo_hz, hi_hz):
        if type(n) is not int or n < 64 or n > 2048 or n & (n - 1):
            raise ValueError("window must be a power of two from 64 to 2048, not %r" % (n,))
        if not odr_hz > 0 or not 0 < lo_hz < hi_hz:
            raise ValueError("need odr_hz > 0 and 0 < lo_hz < hi_hz, not %r, %r, %r" % (odr_hz, lo_hz, hi_hz))
        m = n // 2
        # Bins within a thousandth of a bin of an edge count as inside (single-precision floats).
        k0 = max(1, math.ceil(lo_hz * n / odr_hz - 1e-3))
        k1 = min(m, math.floor(hi_hz * n / odr_hz + 1e-3))
        if k0 > k1:
            raise ValueError("no %d-point bin of %g Hz falls in %g..%g Hz" % (n, odr_hz, lo_hz, hi_hz))
        self.n = n
        self.k0 = k0
        self.k1 = k1
        self.f_lo = k0 * odr_hz / n
        self.f_hi = k1 * odr_hz / n
        self._t = _shared(n)
        self._log2n = _bits(n) - 1
        # 1/k weights, wt[k0] = _WMAX; the Nyquist bin counts once, the others twice.
        wt = array.array("h", bytes(2 * (m + 1)))
        for k in range(k0, k1 + 1):
            wt[k] = round(_WMAX * k0 / k / (math.sqrt(2) if k == m else 1))
        self._wt = wt
        # _spectrum's y_k = X'_k * wt[k] with X'_k = 2**(e+1) D_k / m, D the DFT of the windowed
        # counts (d = counts * 2**e; Q14 window >> 16 in _load; a halving per later stage; 2 from
        # the split). With v**2 = (16/3) sum(|D_k| / k)**2 (scale_g G / (2 pi odr))**2 over the
        # band (Nyquist halved), vel = sqrt(sum y**2) * _kv * scale_g * 2**-e:
        self._kv = m * 2 * G * 1000 / (_WMAX * k0 * math.sqrt(3) * _TWO_PI * odr_hz)
        self._rn = 1 / math.sqrt(n)
        self._acc = array.array("i", bytes(4 * 4))
        self._st = array.array("i", bytes(4 * 9))  # per axis: sum, min, max (_stats)
        self.rms = [0.0, 0.0, 0.0]
        self.pk = [0.0, 0.0, 0.0]
        self.cf = [0.0, 0.0, 0.0]
        self.kurt = [0.0, 0.0, 0.0]
        self.vel = [0.0, 0.0, 0.0]

    def run(self, buf, scale_g):
        """Analyse the first n samples of buf (array('h'), x,y,z interleaved; g per count scale_g)."""
        n = self.n
        if len(buf) < 3 * n:
            raise ValueError("window holds %d values, need %d" % (len(buf), 3 * n))
        krn = scale_g * self._rn
        kv = scale_g * self._kv
        _stats(buf, 3 * n, self._st)
        for a in range(3):
            self._axis(buf, a, krn, kv, scale_g)

    def _axis(self, buf, a, krn, kv, scale_g):
        n = self.n
        m = n // 2
        L = self._log2n
        cs, rev, re, im, tw = self._t
        acc = self._acc
        st = self._st
        s = st[a]
        lo = st[3 + a]
        hi = st[6 + a]
        if lo == hi:
            self.rms[a] = self.pk[a] = self.cf[a] = self.kurt[a] = self.vel[a] = 0.0
            return
        mi = (s + (n >> 1)) >> L  # the mean rounded to a count
        dmax = max(hi - mi, mi - lo) + 1  # |x - mean| < dmax
        e = 13 - _bits(dmax)  # so that dmax * 2**e < 2**13
        if e >= 0:
            f = e
            g = 0
            # mean * 2**e rounded, without forming a big s << e
            mf = (mi << e) + ((((s - (mi << L)) << e) + (n >> 1)) >> L)
        else:  # a swing beyond 2**13 counts: d = (x >> g) - mean / 2**g
            f = 0
            g = -e
            if (dmax >> g) + 2 > 8192:  # room for the floor of x >> g and the mean's rounding
                g += 1
            e = -g
            mf = (s + (n << g >> 1)) >> (L + g)
        pkf = max(((hi << f) >> g) - mf, mf - ((lo << f) >> g))  # the peak in units of 2**-e
        k = 2 * _bits(pkf) - 13  # so that (d*d >> k) <= 2**13
        if k < 0:
            k = 0
        _load(buf, a, m, f, g, mf, k, cs, rev, re, im, acc)
        t2 = _shift(acc[0])
        v2 = (acc[0] << (29 - t2)) + (acc[1] >> t2)  # sum of d*d = v2 * 2**t2
        t4 = _shift(acc[2])
        v4 = (acc[2] << (29 - t4)) + (acc[3] >> t4)  # sum of (d*d >> k)**2 = v4 * 2**t4
        _fft(re, im, m, n, cs, tw)
        _spectrum(re, im, m, cs, self._wt)
        # Scale the band's largest |y| to below 2**14 per component: squares stay small.
        top = max(max(re), -min(re), max(im), -min(im))
        sh = _bits(top) - 14
        if sh < 0:
            sh = 0
        k1 = self.k1
        _band(re, im, self.k0, k1 if k1 < m else m - 1, sh, acc)
        te = _shift(acc[0])
        ve = (acc[0] << (29 - te)) + (acc[1] >> te)  # sum of |y|**2 = ve * 2**(te + 2 sh)
        te += 2 * sh
        rms = math.ldexp(math.sqrt(v2) * krn, (t2 >> 1) - e)
        pk = math.ldexp(pkf * scale_g, -e)
        self.rms[a] = rms
        self.pk[a] = pk
        self.cf[a] = pk / rms
        self.kurt[a] = math.ldexp(v4 / v2 / v2, t4 - 2 * t2 + 2 * k + L)
        self.vel[a] = math.ldexp(math.sqrt(ve) * kv, (te >> 1) - e)
