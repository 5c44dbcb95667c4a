"""Cases for node.monitor: readings in, metrics, baselines, trends and alarm events out.

MicroPython subset (run on CPython and in the VM). Time is integer ms since boot.
"""
from node import config
from node.monitor import Monitor

MIN = 60000


class Window:
    """Stands in for a vibration.Analyzer after run(): per-axis lists."""

    def __init__(self, vel, cf=3.0, kurt=3.0, rms=0.1):
        self.rms = [rms, rms / 2, rms / 3]
        self.pk = [rms * cf, rms, rms]
        self.cf = [cf, 2.0, 2.0]
        self.kurt = [kurt, 3.0, 2.9]
        self.vel = [vel * 0.5, vel, vel * 0.25]


def _cfg(thresholds=None, samples=3, window_s=600, group=2):
    raw = {"device_id": "n1", "site": "s1", "wifi": {"ssid": "w"}, "broker": {"host": "h"},
           "sensors": [{"name": "bearing", "type": "ds18b20", "pin": 4},
                       {"name": "motor", "type": "adxl345", "sda": 21, "scl": 22}],
           "machine": {"group": group}, "baseline": {"samples": samples}, "trend": {"window_s": window_s},
           "thresholds": thresholds or {}}
    return config.validate(raw)


def _kinds(mon):
    out = [(m, e[0], e[1]) for m, e, v in mon.events]
    mon.events = []
    return out


def test_iso_zone_and_default_velocity_alarm():
    mon = Monitor(_cfg())
    zone, rel = mon.vibration("motor", Window(1.0), 0)
    assert zone == "A" and rel is None and mon.events == []
    zone, _ = mon.vibration("motor", Window(2.0), 1000)
    assert zone == "B" and mon.events == []
    zone, _ = mon.vibration("motor", Window(3.0), 2000)  # group 2 rigid: B/C at 2.8 -> warn
    assert zone == "C"
    assert _kinds(mon) == [("motor.vel", "raise", 1)]
    zone, _ = mon.vibration("motor", Window(5.0), 3000)
    assert zone == "D" and _kinds(mon) == [("motor.vel", "raise", 2)]
    assert Monitor(_cfg(group=1)).vibration("motor", Window(5.0), 0)[0] == "C"


def test_vibration_baseline_and_relative_limits():
    mon = Monitor(_cfg({"motor.kurt": {"warn": 1.5, "relative": True}}, samples=3))
    for i in range(3):
        zone, rel = mon.vibration("motor", Window(1.0, kurt=4.0), i * 1000)
        assert rel is None or i == 2
    assert mon.baseline_changed
    assert rel is not None and abs(rel[0] - 1.0) < 1e-9 and abs(rel[2] - 1.0) < 1e-9
    assert mon.events == []
    _, rel = mon.vibration("motor", Window(1.0, kurt=6.5), 5000)  # 6.5 >= 1.5 x 4.0
    assert abs(rel[2] - 6.5 / 4.0) < 1e-9
    assert _kinds(mon) == [("motor.kurt", "raise", 1)]


def test_baseline_survives_a_restart():
    cfg = _cfg({"motor.cf": {"warn": 2.0, "relative": True}}, samples=2)
    mon = Monitor(cfg)
    mon.vibration("motor", Window(1.0, cf=3.0), 0)
    mon.vibration("motor", Window(1.0, cf=3.0), 1000)
    stored = mon.baseline.to_dict()
    again = Monitor(cfg, stored)
    _, rel = again.vibration("motor", Window(1.0, cf=6.0), 0)
    assert abs(rel[1] - 2.0) < 1e-9
    assert _kinds(again) == [("motor.cf", "raise", 1)]  # the relative limit works at once


def test_rebaseline():
    mon = Monitor(_cfg(samples=1))
    mon.vibration("motor", Window(1.0), 0)
    mon.temperature("bearing", 40.0, 0)
    mon.baseline_changed = False
    names = mon.rebaseline("motor")
    assert names == ["motor.cf", "motor.kurt", "motor.pk", "motor.rms", "motor.vel"]
    assert mon.baseline_changed
    assert mon.baseline.value("motor.vel") is None  # forgotten...
    _, rel = mon.vibration("motor", Window(2.0), 1000)
    assert mon.baseline.value("motor.vel") == 2.0 and rel[0] == 1.0  # ...and learned again
    assert mon.baseline.value("bearing") == 40.0  # other sensors keep theirs
    assert sorted(mon.rebaseline()) == ["bearing", "bearing.rate"] + names
    try:
        mon.rebaseline("pump")
    except ValueError as e:
        assert "pump" in str(e)
    else:
        raise AssertionError("unknown sensor accepted")


def test_temperature_rise_rate_and_limits():
    mon = Monitor(_cfg({"bearing": {"warn": 80, "alarm": 90, "deadband": 2},
                        "bearing.rise": {"warn": 10}}, samples=2))
    assert mon.temperature("bearing", 40.0, 0) == (None, None, None)
    rate, rise, eta = mon.temperature("bearing", 40.0, MIN)
    assert rise == 0.0 and eta is None
    t = 2 * MIN
    value = 40.0
    while value < 52:
        value += 1.0
        rate, rise, eta = mon.temperature("bearing", value, t)
        t += MIN
    assert abs(rate - 1.0) < 0.01  # 1 degC per minute
    assert abs(rise - 12.0) < 1e-6
    assert _kinds(mon) == [("bearing.rise", "raise", 1)]
    assert mon.temperature("bearing", None, t) == (None, None, None)  # a failed read: nothing


def test_early_warning_fires_before_the_limit():
    mon = Monitor(_cfg({"bearing": {"warn": 80, "alarm": 90, "deadband": 2, "early_s": 900}}))
    t = 0
    value = 50.0
    warned = crossed = None
    while crossed is None:
        _, _, eta = mon.temperature("bearing", value, t)
        for metric, event, _ in mon.events:
            if metric == "bearing.early" and event[0] == "raise" and warned is None:
                warned = t
            if metric == "bearing" and event[1] == 2:
                crossed = t
        mon.events = []
        t += 10000
        if t > 20 * MIN:
            value += 1 / 6  # 1 degC per minute after 20 flat minutes: 90 is reached at 60 min
    assert warned is not None
    assert (crossed - warned) >= 900 * 1000, (warned, crossed)
    assert (crossed - warned) <= 960 * 1000, (warned, crossed)  # and not needlessly early


def test_ack_and_unknown_metric():
    mon = Monitor(_cfg({"bearing": {"warn": 80, "latch": True}}))
    mon.temperature("bearing", 85.0, 0)
    assert _kinds(mon) == [("bearing", "raise", 1)]
    assert mon.ack(None, 1000) == ["bearing"]
    assert _kinds(mon) == [("bearing", "ack", 1)]
    assert mon.ack("bearing", 2000) == []  # nothing left to acknowledge
    try:
        mon.ack("pump", 0)
    except ValueError as e:
        assert "pump" in str(e)
    else:
        raise AssertionError("unknown metric accepted")
