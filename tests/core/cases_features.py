"""Cases for node.features on known vectors; MicroPython subset (run on CPython and in the VM)."""
import array
import math

from node import features


def _close(a, b, rel=1e-9, tol=1e-12):
    return abs(a - b) <= max(tol, rel * max(abs(a), abs(b)))


def _window(xs, ys, zs):
    buf = array.array("h", [0] * (3 * len(xs)))
    for i in range(len(xs)):
        buf[3 * i] = xs[i]
        buf[3 * i + 1] = ys[i]
        buf[3 * i + 2] = zs[i]
    return buf


def _run(buf, n, scale=1.0):
    rms, pk, cf = [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]
    out = features.window_features(buf, n, scale, rms, pk, cf)
    assert out is None
    return rms, pk, cf


def _sine(n, amp, period, offset=0, phase=0.0):
    return [int(round(offset + amp * math.sin(2 * math.pi * i / period + phase))) for i in range(n)]


def test_sine_rms_peak_crest():
    n = 512  # 8 whole cycles of 64 samples
    amp = 1000
    buf = _window(_sine(n, amp, 64), _sine(n, 400, 32, offset=256, phase=0.3), [256] * n)
    scale = 1 / 256
    rms, pk, cf = _run(buf, n, scale)
    for a, ampl in ((0, amp), (1, 400)):
        assert abs(rms[a] - ampl / math.sqrt(2) * scale) <= 0.01 * ampl / math.sqrt(2) * scale, rms
        assert abs(pk[a] - ampl * scale) <= 0.01 * ampl * scale, pk
        assert abs(cf[a] - math.sqrt(2)) <= 0.01 * math.sqrt(2), cf
    assert rms[2] == 0 and pk[2] == 0 and cf[2] == 0


def test_constant_signal_gives_zeros():
    n = 100
    buf = _window([17] * n, [-300] * n, [32767] * n)
    rms, pk, cf = _run(buf, n, 0.0039)
    assert rms == [0.0, 0.0, 0.0] and pk == [0.0, 0.0, 0.0] and cf == [0.0, 0.0, 0.0]


def test_offset_is_removed():
    xs = _sine(256, 50, 16)
    plain = _run(_window(xs, xs, xs), 256, 0.01)
    shifted = _run(_window([x + 1000 for x in xs], [x - 5000 for x in xs], [x + 20000 for x in xs]), 256, 0.01)
    for a in range(3):
        assert rms_ok(plain[0][a], shifted[0][a])
        assert _close(plain[1][a], shifted[1][a], 1e-6)
        assert _close(plain[2][a], shifted[2][a], 1e-6)


def rms_ok(a, b):
    return _close(a, b, 1e-9)


def test_small_vector_by_hand():
    # x: 0 2 4 6 -> mean 3, deviations -3 -1 1 3, variance 5, peak 3
    # y: 10 10 10 14 -> mean 11, deviations -1 -1 -1 3, variance 3, peak 3
    buf = _window([0, 2, 4, 6], [10, 10, 10, 14], [-1, 1, -1, 1])
    rms, pk, cf = _run(buf, 4, 0.5)
    assert _close(rms[0], math.sqrt(5) * 0.5) and _close(pk[0], 1.5) and _close(cf[0], 3 / math.sqrt(5))
    assert _close(rms[1], math.sqrt(3) * 0.5) and _close(pk[1], 1.5) and _close(cf[1], 3 / math.sqrt(3))
    assert _close(rms[2], 0.5) and _close(pk[2], 0.5) and _close(cf[2], 1.0)


def test_peak_on_the_low_side():
    # One deep dip: the peak is the distance below the mean.
    buf = _window([0, 0, 0, -40], [0] * 4, [0] * 4)
    rms, pk, cf = _run(buf, 4)
    assert _close(pk[0], 30.0)  # mean -10, min -40
    assert _close(rms[0], math.sqrt(300.0))  # deviations 10 10 10 -30


def test_spike_has_high_crest_factor():
    n = 100
    xs = [0] * n
    xs[37] = 100
    rms, pk, cf = _run(_window(xs, xs, xs), n)
    # mean 1, deviations: 99 of -1 and one of 99 -> variance (99 + 99*99)/100 = 99
    assert _close(rms[0], math.sqrt(99)) and _close(pk[0], 99.0) and _close(cf[0], 99 / math.sqrt(99))
    assert cf[0] > 9.9


def test_square_wave_crest_factor_one():
    xs = [300 if (i // 8) % 2 else -300 for i in range(512)]
    rms, pk, cf = _run(_window(xs, xs, xs), 512, 2.0)
    assert _close(rms[0], 600.0) and _close(pk[0], 600.0) and _close(cf[0], 1.0)


def test_only_first_n_samples_count():
    xs = [1, -1, 1, -1, 500, 500]
    buf = _window(xs, xs, xs)
    rms, pk, cf = _run(buf, 4)
    assert _close(rms[0], 1.0) and _close(pk[0], 1.0)


def test_full_scale_values_stay_exact():
    n = 2048
    xs = [32767 if i % 2 else -32768 for i in range(n)]
    rms, pk, cf = _run(_window(xs, xs, [0] * n), n)
    assert _close(rms[0], 32767.5) and _close(pk[0], 32767.5) and _close(cf[0], 1.0)
    assert rms[2] == 0


def test_large_sums_stay_exact():
    # Sums of squares far beyond MicroPython's small ints (2**30), carried in 2**29 chunks while
    # every square stays small (|d| < 23170): compare with plain integer sums.
    n = 2048
    xs = [((i * 7919) % 23001) - 11500 for i in range(n)]
    ys = [(11000 if i % 3 else -11000) + i % 5 for i in range(n)]
    buf = _window(xs, ys, [i % 100 for i in range(n)])
    for axis, vals in ((0, xs), (1, ys)):
        ds = [v - vals[0] for v in vals]
        want = (sum(ds), sum([d * d for d in ds]), min(ds), max(ds))
        assert features.axis_sums(buf, n, axis) == want, axis
        assert want[1] > 1 << 38


def test_no_samples():
    rms, pk, cf = _run(array.array("h"), 0)
    assert rms == [0.0, 0.0, 0.0] and pk == [0.0, 0.0, 0.0] and cf == [0.0, 0.0, 0.0]


def test_results_go_into_the_callers_lists():
    rms, pk, cf = [9.0, 9.0, 9.0], [9.0, 9.0, 9.0], [9.0, 9.0, 9.0]
    ids = (id(rms), id(pk), id(cf))
    buf = _window([0, 2], [0, 4], [0, 6])
    features.window_features(buf, 2, 1.0, rms, pk, cf)
    assert (id(rms), id(pk), id(cf)) == ids
    assert rms == [1.0, 2.0, 3.0] and pk == [1.0, 2.0, 3.0] and cf == [1.0, 1.0, 1.0]


def test_axis_sums():
    buf = _window([5, 7, 3], [0, 0, 0], [-2, 2, -2])
    assert features.axis_sums(buf, 3, 0) == (0, 8, -2, 2)  # minus the first sample: 0 2 -2
    assert features.axis_sums(buf, 3, 1) == (0, 0, 0, 0)
    assert features.axis_sums(buf, 3, 2) == (4, 16, 0, 4)
