"""The simulated machine: deterministic, physically plausible vibration and temperatures.

The scenario tests compute the ground truth on the host with numpy, from what the machine itself
produces (Machine.acceleration / temperature), the way a node would: 1024-sample windows at
3200 Hz (and 512 at 1600 Hz for the bearing), with the float64 reference of the node's features
(tests/vibration_reference.py): velocity RMS over 10-1000 Hz, kurtosis and crest factor, each the
largest of the three axes.
"""


import numpy as np
import pytest

from floorwatch.sim.physics import MODES, ONSET_S, Machine
from vibration_reference import reference

RATE, N = 3200, 1024
ISO_G2_RIGID = (1.4, 2.8, 4.5)  # ISO 10816-3 group 2, rigid foundation: A/B, B/C, C/D in mm/s
SEEDS = range(1, 7)
MIN, HOUR = 60.0, 3600.0


def window(machine, t, rate=RATE, n=N):
    """What a node reports for the window starting at t: largest-axis vel, rms, crest, kurtosis."""
    f = reference(np.column_stack(machine.acceleration(t, n, rate)), 1.0, rate, 10.0, 1000.0)
    return {"vel": float(f["vel"].max()), "rms": float(f["rms"].max()), "cf": float(f["cf"].max()),
            "kurt": float(f["kurt"].max()), "axis_rms": [float(v) for v in f["rms"]]}


def zone(v_mm_s, limits=ISO_G2_RIGID):
    return "ABCD"[sum(v_mm_s > limit for limit in limits)]


def amplitude_at(x, rate, freq):
    x = np.asarray(x) - np.mean(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) / (len(x) * 0.25)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    i = int(np.argmin(np.abs(f - freq)))
    return float(spec[max(0, i - 2):i + 3].max())


def test_zone_helper_matches_the_iso_table():
    assert [zone(v) for v in (0.5, 1.4, 1.41, 2.8, 2.81, 4.5, 4.51)] == list("AABBCCD")


# ---------------------------------------------------------------- determinism and shape

def test_same_seed_same_machine_and_seeds_differ():
    a = Machine(7).acceleration(12.5, 256, 1600)
    b = Machine(7).acceleration(12.5, 256, 1600)
    c = Machine(8).acceleration(12.5, 256, 1600)
    assert a == b
    assert a[0] != c[0]
    assert Machine(7).temperature("bearing", 300) == Machine(7).temperature("bearing", 300)
    s1 = Machine.for_scenario(7, "bearing").acceleration(ONSET_S + 900, 256, 1600)
    s2 = Machine.for_scenario(7, "bearing").acceleration(ONSET_S + 900, 256, 1600)
    assert s1 == s2


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


def test_running_speed_harmonics_are_there():
    m = Machine(5, rpm=1800.0)
    xs, _, _ = m.acceleration(0.0, 16384, 3200)
    f1 = 30.0
    peaks = [amplitude_at(xs, 3200, h * f1) for h in (1, 2, 3)]
    between = amplitude_at(xs, 3200, 1.5 * f1)
    assert all(p > 5 * between for p in peaks)


# ---------------------------------------------------------------- scenarios (ground truth)

def test_for_scenario_is_healthy_until_the_onset():
    for mode in MODES:
        m = Machine.for_scenario(4, mode, onset_s=900.0)
        assert m.mode_changes == ([] if mode == "normal" else [(900.0, mode)])
        healthy = Machine(4)
        assert m.acceleration(890.0, 256, 1600) == healthy.acceleration(890.0, 256, 1600)
        assert m.temperature("bearing", 899.0) == healthy.temperature("bearing", 899.0)
    with pytest.raises(ValueError, match="unknown scenario"):
        Machine.for_scenario(1, "wobbly")


@pytest.mark.parametrize("seed", SEEDS)
def test_normal_stays_in_zone_a_or_b_with_low_kurtosis(seed):
    m = Machine.for_scenario(seed, "normal")
    for t in np.arange(0.0, 6 * HOUR, 20 * MIN):
        w = window(m, t)
        assert zone(w["vel"]) in "AB" and 0.6 < w["vel"], (t, w)
        assert 0.005 < w["rms"] < 0.08 and w["cf"] < 4.5 and w["kurt"] < 4.0, (t, w)


@pytest.mark.parametrize("seed", SEEDS)
def test_imbalance_grows_from_zone_a_to_c_over_hours_and_never_reaches_d(seed):
    m = Machine.for_scenario(seed, "imbalance")
    times = np.arange(0.0, ONSET_S + 8 * HOUR, 5 * MIN)
    vel = np.array([window(m, t)["vel"] for t in times])
    before = vel[times <= ONSET_S]
    assert all(zone(v) == "A" for v in before) and 0.7 < before.mean() < 1.2
    final = vel[-1]
    assert zone(final) == "C" and 3.3 < final < 4.2
    assert vel.max() < ISO_G2_RIGID[2]                     # never zone D
    # It grows steadily (half-hour means; single windows scatter by a few per cent) ...
    halves = vel[times >= ONSET_S][:96].reshape(-1, 6).mean(axis=1)
    assert np.all(np.diff(halves) > -0.05), halves
    # ... mostly over the first two to three hours after the onset.
    at = {h: vel[np.argmin(np.abs(times - (ONSET_S + h * HOUR)))] for h in (0.5, 1, 2, 3)}
    assert zone(at[0.5]) in "AB" and at[1] < ISO_G2_RIGID[1] + 0.3
    assert zone(at[2]) == "C" and at[3] > 0.9 * final


def test_imbalance_is_the_1x_component():
    m = Machine.for_scenario(2, "imbalance")
    f1 = 1480.0 / 60
    before = m.acceleration(ONSET_S - 10, 8192, 3200)[0]
    soon = m.acceleration(ONSET_S + 15 * MIN, 8192, 3200)[0]
    later = m.acceleration(ONSET_S + 4 * HOUR, 8192, 3200)[0]
    a0, a1, a2 = (amplitude_at(x, 3200, f1) for x in (before, soon, later))
    assert a0 < a1 < a2 and a2 > 3.5 * a0
    assert amplitude_at(later, 3200, 2 * f1) < 1.1 * amplitude_at(before, 3200, 2 * f1)


@pytest.mark.parametrize("rate, n", [(3200, 1024), (1600, 512)])
@pytest.mark.parametrize("seed", SEEDS)
def test_bearing_raises_kurtosis_and_crest_factor_at_steady_rms(seed, rate, n):
    m = Machine.for_scenario(seed, "bearing")
    healthy = [window(m, ONSET_S - 300 + 10 * k, rate, n) for k in range(20)]
    faulty = [window(m, ONSET_S + HOUR + 10 * k, rate, n) for k in range(40)]
    assert max(w["kurt"] for w in healthy) < 4.0 and max(w["cf"] for w in healthy) < 4.5
    kurt = np.array([w["kurt"] for w in faulty])
    crest = np.array([w["cf"] for w in faulty])
    assert np.median(kurt) > 8 and np.mean(kurt > 5) >= 0.9, kurt
    assert np.median(crest) > 5.5 and np.mean(crest > 4.5) >= 0.9, crest
    rms0 = np.median([w["rms"] for w in healthy])
    ratio = np.array([w["rms"] for w in faulty]) / rms0
    assert np.all(np.abs(ratio - 1) < 0.25) and abs(np.median(ratio) - 1) < 0.05, ratio
    for axis in range(3):   # every axis, not just the largest, keeps its RMS
        a0 = np.median([w["axis_rms"][axis] for w in healthy])
        a1 = np.median([w["axis_rms"][axis] for w in faulty])
        assert a1 / a0 == pytest.approx(1.0, abs=0.1)


def test_bearing_impacts_repeat_at_the_outer_race_frequency():
    faulty = Machine(4, mode="bearing").acceleration(200.0, 8192, 3200)
    ys = np.asarray(faulty[1]) - np.mean(faulty[1])
    env = ys ** 2
    spec = np.abs(np.fft.rfft(env - env.mean()))
    f = np.fft.rfftfreq(len(env), 1 / 3200)
    band = (f > 40) & (f < 200)
    peak = f[band][np.argmax(spec[band])]
    assert peak == pytest.approx(3.58 * 1480 / 60, rel=0.03)


@pytest.mark.parametrize("seed", SEEDS)
def test_overheat_crosses_the_alarm_limit_smoothly_within_half_an_hour(seed):
    m = Machine.for_scenario(seed, "overheat")
    times = np.arange(0.0, ONSET_S + 3 * HOUR, 5.0)           # the sim's 5 s temperature interval
    temps = np.array([m.temperature("bearing", t) for t in times])
    assert temps[times <= ONSET_S].max() < 60
    minutes = {}
    for limit in (80, 90):
        first = int(np.argmax(temps >= limit))
        assert temps[first] >= limit
        minutes[limit] = (times[first] - ONSET_S) / MIN
        # One crossing: once through, it never comes back below the limit (no bouncing on it).
        assert temps[first:].min() > limit - 0.5
    assert 12 <= minutes[80] < minutes[90] <= 35, minutes
    assert np.abs(np.diff(temps)).max() < 0.6                # smooth: no step above 0.6 K in 5 s
    assert 105 < temps[-1] < 120                             # first order: settles above the limit
    # The winding warms too, but stays below where a DS18B20 stops (125 C).
    assert max(m.temperature("winding", t) for t in times[::60]) < 122


# ---------------------------------------------------------------- temperatures and modes

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
