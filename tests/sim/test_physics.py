"""The simulated machine: deterministic, physically plausible vibration and temperatures."""

import math
import time

import numpy as np
import pytest

from floorwatch.sim.physics import Machine

G = 9.80665


def features(v):
    v = np.asarray(v)
    d = v - v.mean()
    rms = math.sqrt(float(np.mean(d * d)))
    return rms, float(np.max(np.abs(d))) / rms, float(np.mean(d ** 4)) / rms ** 4


def velocity_rms_mm_s(accel_g, rate):
    """Broadband 10-1000 Hz RMS velocity by frequency-domain integration (as ISO practice)."""
    a = (np.asarray(accel_g) - np.mean(accel_g)) * G
    spec = np.fft.rfft(a * np.hanning(len(a)))
    f = np.fft.rfftfreq(len(a), 1 / rate)
    band = (f >= 10) & (f <= 1000)
    v = np.zeros_like(spec)
    v[band] = spec[band] / (2j * np.pi * f[band])
    # Hann window power correction: mean(w^2) = 3/8.
    return math.sqrt(2 * np.sum(np.abs(v) ** 2) / (len(a) ** 2 * 0.375)) * 1000


def amplitude_at(x, rate, freq):
    x = np.asarray(x) - np.mean(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) / (len(x) * 0.25)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    i = int(np.argmin(np.abs(f - freq)))
    return float(spec[max(0, i - 2):i + 3].max())


def test_same_seed_same_machine_and_seeds_differ():
    a = Machine(7).acceleration(12.5, 256, 1600)
    b = Machine(7).acceleration(12.5, 256, 1600)
    c = Machine(8).acceleration(12.5, 256, 1600)
    assert a == b
    assert a[0] != c[0]
    assert Machine(7).temperature("bearing", 300) == Machine(7).temperature("bearing", 300)


def test_a_sample_instant_has_one_value_however_windows_are_cut():
    m = Machine(3, mode="bearing")
    whole = m.acceleration(10.0, 1024, 1600)
    first = m.acceleration(10.0, 512, 1600)
    second = m.acceleration(10.0 + 512 / 1600, 512, 1600)
    for axis in range(3):
        assert np.allclose(whole[axis], first[axis] + second[axis], atol=1e-9)


def test_gravity_on_z_and_small_static_tilt():
    xs, ys, zs = Machine(1).acceleration(0.0, 4096, 1600)
    assert np.mean(zs) == pytest.approx(1.0, abs=0.01)
    assert abs(np.mean(xs)) < 0.05 and abs(np.mean(ys)) < 0.05


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_normal_machine_is_in_iso_zone_a_or_b(seed):
    xs, ys, zs = Machine(seed).acceleration(50.0, 8192, 3200)
    for axis in (xs, ys, zs):
        v = velocity_rms_mm_s(axis, 3200)
        assert 0.3 < v < 2.8             # group 2 rigid: B/C boundary at 2.8 mm/s
        rms, cf, kurt = features(axis)
        assert 0.005 < rms < 0.08 and cf < 4.0 and kurt < 4.0


def test_running_speed_harmonics_are_there():
    m = Machine(5, rpm=1800.0)
    xs, _, _ = m.acceleration(0.0, 16384, 3200)
    f1 = 30.0
    peaks = [amplitude_at(xs, 3200, h * f1) for h in (1, 2, 3)]
    between = amplitude_at(xs, 3200, 1.5 * f1)
    assert all(p > 5 * between for p in peaks)


def test_imbalance_grows_the_1x_component():
    m = Machine(2, mode="normal")
    f1 = 1480.0 / 60
    before = m.acceleration(100.0, 8192, 3200)[0]
    m.set_mode("imbalance", t=110.0)
    soon = m.acceleration(115.0, 8192, 3200)[0]
    later = m.acceleration(110.0 + 900.0, 8192, 3200)[0]
    a0, a1, a2 = (amplitude_at(x, 3200, f1) for x in (before, soon, later))
    assert a0 < a1 < a2
    assert a2 > 3.5 * a0
    assert velocity_rms_mm_s(later, 3200) > 4.5       # into zone C/D
    # The 2x component is not what grows.
    assert amplitude_at(later, 3200, 2 * f1) < 1.5 * amplitude_at(before, 3200, 2 * f1)


def test_bearing_fault_raises_crest_factor_and_kurtosis_at_steady_rms():
    normal = Machine(4).acceleration(200.0, 8192, 3200)
    faulty = Machine(4, mode="bearing").acceleration(200.0, 8192, 3200)
    for n_axis, f_axis in zip(normal, faulty):
        rms_n, cf_n, k_n = features(n_axis)
        rms_f, cf_f, k_f = features(f_axis)
        assert 0.75 < rms_f / rms_n < 1.5
        assert cf_f > 1.5 * cf_n
        assert k_f > 3.0 and k_f > 1.3 * k_n
    # The impacts repeat at the outer-race frequency: the envelope spectrum peaks near 3.58x.
    ys = np.asarray(faulty[1]) - np.mean(faulty[1])
    env = ys ** 2
    spec = np.abs(np.fft.rfft(env - env.mean()))
    f = np.fft.rfftfreq(len(env), 1 / 3200)
    band = (f > 40) & (f < 200)
    peak = f[band][np.argmax(spec[band])]
    assert peak == pytest.approx(3.58 * 1480 / 60, rel=0.03)


def test_temperatures_are_plausible_and_ordered():
    m = Machine(11, ambient_c=22.0)
    for t in (0.0, 600.0, 3600.0, 4 * 3600.0):
        amb = m.temperature("ambient", t)
        brg = m.temperature("bearing", t)
        wdg = m.temperature("winding", t)
        chip = m.temperature("chip", t)
        assert 20.5 < amb < 23.5
        assert amb < brg < 70.0 and amb < wdg < 80.0 and amb < chip < 50.0
    # Warmed up for hours in normal mode: near the steady rise, well below alarm limits.
    assert m.temperature("bearing", 6 * 3600.0) < 60.0


def test_overheat_climbs_through_alarm_limits_over_tens_of_minutes():
    m = Machine(3)
    t0 = 1000.0
    m.set_mode("overheat", t=t0)
    crossing = {}
    for minute in range(0, 181):
        v = m.temperature("bearing", t0 + 60 * minute)
        for limit in (80, 90, 100):
            if v >= limit and limit not in crossing:
                crossing[limit] = minute
    assert set(crossing) == {80, 90, 100}
    assert 5 <= crossing[80] < crossing[90] < crossing[100] <= 90
    assert m.temperature("winding", t0 + 3600) > 110


def test_mode_switch_keeps_temperature_continuous_and_lags():
    m = Machine(6)
    t_sw = 1800.0
    before = {loc: m.temperature(loc, t_sw - 1e-6) for loc in ("bearing", "winding", "chip")}
    m.set_mode("overheat", t=t_sw)
    for loc, v in before.items():
        assert m.temperature(loc, t_sw) == pytest.approx(v, abs=0.5)   # noise only, no jump
    # First order: after 10 s it has barely moved, after 30 min it is far up.
    assert m.temperature("bearing", t_sw + 10) - before["bearing"] < 1.0
    assert m.temperature("bearing", t_sw + 1800) - before["bearing"] > 25.0
    hot = m.temperature("bearing", t_sw + 3600)
    m.set_mode("normal", t=t_sw + 3600)
    assert m.temperature("bearing", t_sw + 3600) == pytest.approx(hot, abs=0.3)
    assert m.temperature("bearing", t_sw + 3600 + 3 * 3600) < hot - 30   # cools back down


def test_set_mode_defaults_to_the_latest_time_seen_or_the_clock():
    m = Machine(1)
    m.temperature("bearing", 500.0)
    m.set_mode("imbalance")
    assert m.mode_changes == [(500.0, "imbalance")]
    now = [42.0]
    c = Machine(1, clock=lambda: now[0])
    c.set_mode("bearing")
    assert c.mode_changes == [(42.0, "bearing")] and c.mode == "bearing"
    with pytest.raises(ValueError):
        c.set_mode("normal", t=10.0)          # no going back in time


def test_bad_mode_and_location_are_rejected():
    with pytest.raises(ValueError):
        Machine(1, mode="wobbly")
    m = Machine(1)
    with pytest.raises(ValueError):
        m.set_mode("exploded")
    with pytest.raises(ValueError):
        m.temperature("gearbox", 0)


def test_a_window_is_cheap():
    m = Machine(9, mode="bearing")
    m.acceleration(0.0, 512, 1600)
    start = time.perf_counter()
    for i in range(50):
        m.acceleration(i * 0.5, 512, 1600)
    per_window = (time.perf_counter() - start) / 50
    assert per_window < 0.005            # about 1 ms on a normal machine; generous for busy CI
