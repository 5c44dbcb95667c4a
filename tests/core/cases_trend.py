"""Cases for node.trend; MicroPython subset (run on CPython and in the VM)."""
import math

from node.trend import Trend
from caselib import lcg_noise

DAY_MS = 86400000



def _ramp(tr, t0_ms, v0, per_min, n, dt_s=10):
    """n readings dt_s apart rising per_min degC a minute; the last (t_ms, value)."""
    for k in range(n):
        t = t0_ms + k * dt_s * 1000
        v = v0 + per_min * k * dt_s / 60
        tr.add(t, v)
    return t, v


def _close(a, b, tol):
    return a is not None and abs(a - b) <= tol


def test_linear_ramps_give_their_slope():
    for per_min in (0.5, -1.2, 0.01, 12.0):
        tr = Trend(600)
        _ramp(tr, 0, 20, per_min, 40)
        assert _close(tr.rate(), per_min, 1e-4 + abs(per_min) * 1e-5), (per_min, tr.rate())
    hot = Trend(600)
    _ramp(hot, 5000, 95.3, 0.25, 32, dt_s=15)  # a large offset costs no precision
    assert _close(hot.rate(), 0.25, 1e-4), hot.rate()


def test_unknown_until_three_readings_over_a_quarter_window():
    tr = Trend(600)
    assert tr.rate() is None
    tr.add(0, 20)
    tr.add(100000, 21)
    assert tr.rate() is None  # two readings
    tr.add(140000, 22)
    assert tr.rate() is None  # 140 s < 150 s
    tr.add(150000, 22.5)
    assert tr.rate() is not None
    assert tr.eta_s(30, 80) is not None
    assert Trend(600).eta_s(30, 80) is None


def test_a_flat_noisy_signal_has_no_trend():
    tr = Trend(600)
    noise = lcg_noise(200, 0.3, seed=3)
    rates = []
    for k in range(200):
        tr.add(k * 10000, 60 + noise[k])
        r = tr.rate()
        if r is not None:
            rates.append(r)
    assert len(rates) > 150
    worst = max([abs(r) for r in rates])
    assert worst < 0.1, worst  # vs 0.3 degC of noise over 5 minutes
    assert tr.eta_s(60.5, 80) is None or tr.eta_s(60.5, 80) > 3600


def test_an_exponential_approach_slows_down():
    # a bearing warming to 80 degC with a 10 minute time constant, a reading every 10 s
    tr = Trend(300)
    tau_s = 600
    last = None
    checked = 0
    for k in range(360):
        t_s = k * 10
        tr.add(t_s * 1000, 80 - 60 * math.exp(-t_s / tau_s))
        r = tr.rate()
        if r is None or k % 30:
            continue
        assert last is None or r < last, (k, r, last)
        # the fitted slope is the derivative at the middle of the 5 minutes kept
        mid = t_s - tr.span_ms() / 2000
        expected = 60 / tau_s * 60 * math.exp(-mid / tau_s)
        assert abs(r - expected) < 0.02 * expected, (k, r, expected)
        last = r
        checked += 1
    assert checked >= 10 and last < 0.05, (checked, last)


def test_eta_for_a_ramp():
    tr = Trend(600)
    t, v = _ramp(tr, 0, 50, 0.5, 40)
    assert v == 50 + 0.5 * 390 / 60
    assert _close(tr.eta_s(70, 80), 1200, 0.5), tr.eta_s(70, 80)  # 10 K at 0.5 K/min: 20 min
    assert tr.eta_s(80, 80) == 0 and tr.eta_s(85, 80) == 0
    assert tr.eta_s(None, 80) is None and tr.eta_s(float("nan"), 80) is None
    falling = Trend(600)
    _ramp(falling, 0, 50, -0.5, 40)
    assert falling.eta_s(40, 80) is None  # not rising: never
    flat = Trend(600)
    _ramp(flat, 0, 50, 0, 40)
    assert flat.rate() == 0 and flat.eta_s(50, 80) is None


def test_old_readings_fall_out_of_the_window():
    tr = Trend(300, size=64)
    _ramp(tr, 0, 20, 3.0, 30)  # steep for 5 minutes
    assert _close(tr.rate(), 3.0, 1e-3)
    t, v = _ramp(tr, 300000, 35, 0, 30)  # then flat: the last steep one is still kept
    assert t == 590000 and tr.n == 31 and tr.rate() > 0.01, (tr.n, tr.rate())  # one at 290 s
    t, v = _ramp(tr, 600000, 35, 0, 1)  # 300 s after the last steep one: all flat
    assert tr.n == 31 and tr.rate() == 0, (tr.n, tr.rate())
    tr.add(t + 300001, 35)  # more than a window later: alone
    assert tr.n == 1 and tr.rate() is None


def test_size_caps_the_readings_kept():
    tr = Trend(240, size=8)
    _ramp(tr, 0, 20, 1.0, 100)
    assert tr.n == 8 and tr.span_ms() == 70000  # the window would hold 25
    assert _close(tr.rate(), 1.0, 1e-4)
    long = Trend(3600, size=8)
    _ramp(long, 0, 20, 1.0, 100)
    assert long.rate() is None  # 70 s is less than a quarter of the window
    try:
        Trend(600, size=2)
    except ValueError as e:
        assert "size" in str(e)
    else:
        raise AssertionError("accepted size 2")


def test_failed_and_out_of_order_readings_are_ignored():
    tr = Trend(600)
    tr.add(0, 20)
    tr.add(10000, None)
    tr.add(20000, float("nan"))
    tr.add(30000, float("inf"))
    assert tr.n == 1
    tr.add(100000, 21)
    tr.add(50000, 99)  # older than the newest
    tr.add(200000, 22)
    assert tr.n == 3 and _close(tr.rate(), 0.6, 1e-6), tr.rate()


def test_large_uptimes():
    tr = Trend(600)
    t0 = 40 * DAY_MS  # beyond a 32-bit int of milliseconds
    _ramp(tr, t0, 30, 0.2, 60)
    assert _close(tr.rate(), 0.2, 1e-4), tr.rate()
    # across the point where relative times are rebased
    across = Trend(600)
    across.add(0, 25)
    start = (1 << 30) - 200000
    for k in range(60):
        across.add(start + k * 10000, 30 + k / 6)  # 1 degC/min
        if k >= 16:
            assert _close(across.rate(), 1.0, 1e-4), (k, across.rate())
    assert across.origin > start
    # and a gap of weeks between readings
    across.add(80 * DAY_MS, 20)
    across.add(80 * DAY_MS + 100000, 21)
    across.add(80 * DAY_MS + 200000, 22)
    assert across.n == 3 and _close(across.rate(), 0.6, 1e-5), across.rate()
