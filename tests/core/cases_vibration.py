"""Cases for node.vibration; MicroPython subset (run on CPython and in the VM).

Expected values come from the definitions (a sine's RMS is A/sqrt(2), its velocity
a_rms / (2 pi f), ...) or from plain float sums over the same integer samples. The comparison
with a float64 FFT reference over many windows is tests/test_velocity_reference.py.
"""
import array
import math

from node import vibration

G = 9.80665
ODR = 3200
ADXL = 1 / 256  # g per count
MPU = 1 / 16384


def _close(a, b, rel):
    return abs(a - b) <= rel * abs(b)


def _window(xs, ys, zs):
    buf = array.array("h", bytes(6 * len(xs)))
    for i in range(len(xs)):
        buf[3 * i] = xs[i]
        buf[3 * i + 1] = ys[i]
        buf[3 * i + 2] = zs[i]
    return buf


def _sine(n, amp, f, offset=0, phase=0.3, odr=ODR):
    return [int(round(offset + amp * math.sin(2 * math.pi * f * i / odr + phase))) for i in range(n)]


def _gauss(n, sigma, offset=0, seed=12345):
    """Gaussian counts from our own generator (Box-Muller), the same on CPython and MicroPython."""
    out = []
    x = seed
    while len(out) < n:
        x = (x * 1103515245 + 12345) % 2147483648
        u1 = (x + 1) / 2147483649
        x = (x * 1103515245 + 12345) % 2147483648
        r = math.sqrt(-2 * math.log(u1)) * sigma
        out.append(int(round(offset + r * math.cos(2 * math.pi * x / 2147483648))))
        out.append(int(round(offset + r * math.sin(2 * math.pi * x / 2147483648))))
    return out[:n]


def _moments(xs, scale):
    """(rms, peak, kurtosis) of xs * scale with plain float sums."""
    n = len(xs)
    mean = sum(xs) / n
    m2 = sum([(x - mean) ** 2 for x in xs]) / n
    m4 = sum([(x - mean) ** 4 for x in xs]) / n
    pk = max([abs(x - mean) for x in xs])
    return math.sqrt(m2) * scale, pk * scale, m4 / (m2 * m2)


def _analytic_vel(amp_counts, scale, f):
    return amp_counts * scale / math.sqrt(2) * G * 1000 / (2 * math.pi * f)


def test_zone_boundaries_belong_to_the_lower_zone():
    for group, foundation in ((1, "rigid"), (1, "flexible"), (2, "rigid"), (2, "flexible")):
        limits = vibration.zone_limits(group, foundation)
        assert vibration.zone(0.0, limits) == "A"
        for i in range(3):
            b = limits[i]
            assert vibration.zone(b, limits) == "ABCD"[i], (group, foundation, b)
            assert vibration.zone(b + 0.0001, limits) == "ABCD"[i + 1], (group, foundation, b)
            assert vibration.zone(b - 0.0001, limits) == "ABCD"[i], (group, foundation, b)
        assert vibration.zone(1000.0, limits) == "D"


def test_zone_limits_table():
    assert vibration.zone_limits(1, "rigid") == (2.3, 4.5, 7.1)
    assert vibration.zone_limits(1, "flexible") == (3.5, 7.1, 11.0)
    assert vibration.zone_limits(2, "rigid") == (1.4, 2.8, 4.5)
    assert vibration.zone_limits(2, "flexible") == (2.3, 4.5, 7.1)
    assert vibration.zone(2.3, vibration.zone_limits(1, "rigid")) == "A"
    assert vibration.zone(2.3001, vibration.zone_limits(1, "rigid")) == "B"
    assert vibration.ZONE_NAMES == "ABCD"


def test_zone_limits_reject_unknown_machines():
    for group, foundation in ((3, "rigid"), (1, "soft"), ("1", "rigid"), (None, None), (1, ["rigid"])):
        try:
            vibration.zone_limits(group, foundation)
        except ValueError as exc:
            assert "10816" in str(exc)
        else:
            raise AssertionError((group, foundation))


def test_band():
    assert vibration.band(3200) == (10.0, 1000.0, False)
    assert vibration.band(3200, rpm=1500) == (10.0, 1000.0, False)
    assert vibration.band(3200, rpm=600) == (10.0, 1000.0, False)
    assert vibration.band(3200, rpm=599) == (2.0, 1000.0, False)
    assert vibration.band(2000) == (10.0, 1000.0, False)
    assert vibration.band(1000) == (10.0, 500.0, True)  # MPU6050: band-limited
    assert vibration.band(1600, rpm=120) == (2.0, 800.0, True)


def test_analyzer_rejects_bad_windows_and_bands():
    for n in (0, 32, 63, 100, 4096, 1024.0, True, None):
        try:
            vibration.Analyzer(n, ODR, 10, 1000)
        except ValueError as exc:
            assert "power of two" in str(exc)
        else:
            raise AssertionError(n)
    for odr, lo, hi in ((0, 10, 1000), (-3200, 10, 1000), (3200, 0, 1000), (3200, 100, 100),
                        (3200, 500, 10), (3200, 10, 20)):  # 10..20 Hz: 64-point bins are 50 Hz
        try:
            vibration.Analyzer(64, odr, lo, hi)
        except ValueError:
            pass
        else:
            raise AssertionError((odr, lo, hi))


def test_band_bins():
    a = vibration.Analyzer(1024, ODR, 10, 1000)
    assert (a.k0, a.k1, a.f_lo, a.f_hi) == (4, 320, 12.5, 1000.0)  # 3.125 Hz bins
    a = vibration.Analyzer(1024, 1000, 10, 500)  # up to and including Nyquist
    assert (a.k0, a.k1, a.f_hi) == (11, 512, 500.0)
    a = vibration.Analyzer(64, ODR, 10, 5000)  # hi beyond odr/2 is capped
    assert (a.k0, a.k1, a.f_lo, a.f_hi) == (1, 32, 50.0, 1600.0)


def test_sine_rms_peak_crest_kurtosis():
    n = 1024
    for scale, amp in ((ADXL, 200), (MPU, 8000), (MPU, 40)):
        an = vibration.Analyzer(n, ODR, 10, 1000)
        # 100 Hz = 32 whole cycles; y: 50 Hz on an offset; z: gravity only
        an.run(_window(_sine(n, amp, 100), _sine(n, amp // 2, 50, offset=300), [round(1 / scale)] * n), scale)
        for a, ampl in ((0, amp), (1, amp // 2)):
            assert _close(an.rms[a], ampl * scale / math.sqrt(2), 0.01), (scale, an.rms)
            assert _close(an.pk[a], ampl * scale, 0.01), (scale, an.pk)
            assert _close(an.cf[a], math.sqrt(2), 0.02), (scale, an.cf)
            assert _close(an.kurt[a], 1.5, 0.02), (scale, an.kurt)
        assert an.rms[2] == 0 and an.pk[2] == 0 and an.cf[2] == 0 and an.kurt[2] == 0 and an.vel[2] == 0


def test_features_match_plain_float_sums():
    n = 1024
    xs = _gauss(n, 40)
    ys = _sine(n, 3, 160, offset=-7)  # a few counts
    zs = [v + 256 for v in _gauss(n, 900, seed=99)]
    zs[100] = 20000  # one hard knock
    an = vibration.Analyzer(n, ODR, 10, 1000)
    an.run(_window(xs, ys, zs), ADXL)
    for a, vs in ((0, xs), (1, ys), (2, zs)):
        rms, pk, kurt = _moments(vs, ADXL)
        rel = 1e-4 if a == 2 else 1e-6  # z swings beyond 2**14 counts: taken in 2-count steps
        assert _close(an.rms[a], rms, rel), (a, an.rms[a], rms)
        assert _close(an.pk[a], pk, 1e-4), (a, an.pk[a], pk)
        assert _close(an.cf[a], pk / rms, 2e-4), (a, an.cf[a], pk / rms)
        assert _close(an.kurt[a], kurt, 1e-3), (a, an.kurt[a], kurt)
    assert an.kurt[2] > 10  # the knock


def test_kurtosis_of_gaussian_noise_is_three():
    n = 1024
    for sigma, scale in ((40, ADXL), (3000, MPU)):
        an = vibration.Analyzer(n, ODR, 10, 1000)
        an.run(_window(_gauss(n, sigma), _gauss(n, sigma, seed=7), _gauss(n, sigma, 256, seed=8)), scale)
        for a in range(3):
            assert abs(an.kurt[a] - 3) <= 0.3, an.kurt
            assert _close(an.rms[a], sigma * scale, 0.1), an.rms


def test_square_wave_and_spike():
    n = 256
    sq = [300 if (i // 8) % 2 else -300 for i in range(n)]
    spike = [0] * n
    spike[37] = 100
    an = vibration.Analyzer(n, ODR, 10, 1000)
    an.run(_window(sq, spike, [0] * n), 1.0)
    assert _close(an.rms[0], 300, 1e-6) and _close(an.pk[0], 300, 1e-6)
    assert _close(an.cf[0], 1.0, 1e-6) and _close(an.kurt[0], 1.0, 1e-3)
    rms, pk, kurt = _moments(spike, 1.0)  # mean 100/256: deviations 99.6 and -0.39
    assert _close(an.rms[1], rms, 1e-6) and _close(an.pk[1], pk, 1e-6)
    assert _close(an.kurt[1], kurt, 1e-3) and an.kurt[1] > 250


def test_constant_axes_give_zeros():
    n = 128
    an = vibration.Analyzer(n, ODR, 10, 1000)
    an.run(_window([17] * n, [-300] * n, [32767] * n), ADXL)
    for name in ("rms", "pk", "cf", "kurt", "vel"):
        assert getattr(an, name) == [0.0, 0.0, 0.0], name


def test_offset_changes_nothing():
    n = 512
    xs = _sine(n, 50, 100)
    an = vibration.Analyzer(n, ODR, 10, 1000)
    an.run(_window(xs, xs, xs), ADXL)
    plain = [list(an.rms), list(an.pk), list(an.cf), list(an.kurt), list(an.vel)]
    an.run(_window([x + 1000 for x in xs], [x - 5000 for x in xs], [x + 16384 for x in xs]), ADXL)
    assert [an.rms, an.pk, an.cf, an.kurt, an.vel] == plain


def test_velocity_of_tones_matches_analytic():
    n = 1024
    an = vibration.Analyzer(n, ODR, 10, 1000)
    for f in (25, 50, 100, 315, 800):
        an.run(_window(_sine(n, 51, f), _sine(n, 2000, f, phase=1.0), _sine(n, 5, f, offset=256)), ADXL)
        for a, amp in ((0, 51), (1, 2000), (2, 5)):  # 0.2 g, 7.8 g and 5 counts
            want = _analytic_vel(amp, ADXL, f)
            assert _close(an.vel[a], want, 0.05), (f, a, an.vel[a], want)


def test_velocity_scales_with_amplitude_and_frequency():
    n = 1024
    an = vibration.Analyzer(n, 1000, 10, 500)  # MPU6050 at 1 kHz: band-limited
    xs = _sine(n, 1000, 40, odr=1000)
    ys = _sine(n, 2000, 40, odr=1000)
    zs = _sine(n, 2000, 160, odr=1000)
    an.run(_window(xs, ys, zs), MPU)
    assert _close(an.vel[1], 2 * an.vel[0], 0.01), an.vel
    assert _close(an.vel[1], 4 * an.vel[2], 0.02), an.vel
    assert _close(an.vel[1], _analytic_vel(2000, MPU, 40), 0.05), an.vel


def test_band_edges_select_what_counts():
    n = 2048
    low = vibration.Analyzer(n, ODR, 2, 1000)  # a machine below 600 r/min
    std = vibration.Analyzer(n, ODR, 10, 1000)
    buf = _window(_sine(n, 2000, 8), _sine(n, 2000, 1400), _sine(n, 2000, 200))
    low.run(buf, ADXL)
    std.run(buf, ADXL)
    assert _close(low.vel[0], _analytic_vel(2000, ADXL, 8), 0.05), low.vel
    assert std.vel[0] < 0.05 * low.vel[0], (std.vel, low.vel)  # 8 Hz is below the band
    assert std.vel[1] < 0.01 * _analytic_vel(2000, ADXL, 1400), std.vel  # 1400 Hz is above it
    assert _close(std.vel[2], low.vel[2], 1e-3), (std.vel, low.vel)  # 200 Hz is in both
    assert std.rms == low.rms and std.kurt == low.kurt  # the band only concerns velocity


def test_full_scale_and_clipped_windows():
    n = 256
    xs = [32767 if i % 2 else -32768 for i in range(n)]  # Nyquist at full scale
    ys = [max(-32768, min(32767, v)) for v in _sine(n, 40000, 100)]  # clipped sine
    an = vibration.Analyzer(n, ODR, 10, 1600)
    an.run(_window(xs, ys, [0] * n), 1.0)
    # Swings of 2**16 counts are taken in 8-count steps (2**-12 of the swing).
    assert _close(an.rms[0], 32767.5, 3e-4) and _close(an.pk[0], 32767.5, 3e-4)
    assert _close(an.cf[0], 1.0, 3e-4) and _close(an.kurt[0], 1.0, 1e-3)
    rms, pk, kurt = _moments(ys, 1.0)
    assert _close(an.rms[1], rms, 3e-4) and _close(an.pk[1], pk, 1e-3) and _close(an.kurt[1], kurt, 2e-3)
    # A square wave at exactly Nyquist: all its energy in the Nyquist bin, counted once.
    assert _close(an.vel[0], 32767.5 * G * 1000 / (2 * math.pi * 1600), 0.01), an.vel


def test_only_the_first_n_samples_count_and_short_buffers_fail():
    n = 64
    xs = _sine(n, 100, 400)
    an = vibration.Analyzer(n, ODR, 10, 1000)
    an.run(_window(xs, xs, xs), ADXL)
    want = (list(an.rms), list(an.vel))
    an.run(_window(xs + [30000] * 10, xs + [-30000] * 10, xs + [5] * 10), ADXL)
    assert (an.rms, an.vel) == want
    try:
        an.run(array.array("h", bytes(6 * n - 2)), ADXL)
    except ValueError as exc:
        assert "need %d" % (3 * n) in str(exc)
    else:
        raise AssertionError("short buffer accepted")


def test_results_go_into_the_same_lists():
    n = 64
    an = vibration.Analyzer(n, ODR, 10, 1000)
    lists = (an.rms, an.pk, an.cf, an.kurt, an.vel)
    ids = [id(x) for x in lists]
    an.run(_window(_sine(n, 100, 400), _sine(n, 10, 800), [1] * n), ADXL)
    assert [id(x) for x in (an.rms, an.pk, an.cf, an.kurt, an.vel)] == ids
    assert an.vel[0] > 0 and an.vel[1] > 0 and an.vel[2] == 0


def test_analyzers_of_one_size_do_not_disturb_each_other():
    n = 256
    a = vibration.Analyzer(n, ODR, 10, 1000)
    b = vibration.Analyzer(n, ODR, 2, 200)
    buf = _window(_sine(n, 500, 100), _sine(n, 500, 600), _sine(n, 500, 25))
    a.run(buf, ADXL)
    first = list(a.vel)
    b.run(buf, ADXL)
    a.run(buf, ADXL)
    assert a.vel == first
    assert b.vel[1] < 0.01 * a.vel[1] and _close(b.vel[0], a.vel[0], 0.01)
