"""Cases for node.alarms; MicroPython subset (run on CPython and in the VM)."""
from node import alarms
from node.alarms import ALARM, OK, WARNING, Alarms, Limit


def _feed(lim, values):
    """Events (with the value that caused them) for a sequence of readings."""
    out = []
    for v in values:
        e = lim.update(v)
        if e is not None:
            out.append((v, e))
    return out


def test_levels():
    assert (OK, WARNING, ALARM) == (0, 1, 2)
    assert alarms.LEVELS == ("ok", "warning", "alarm")


def test_warning_then_alarm_then_back_through_the_deadbands():
    lim = Limit(80, 90, 2)
    got = _feed(lim, [70, 79.9, 80, 85, 90, 95, 89, 88, 87.9, 79, 78, 77.9, 60])
    assert got == [
        (80, (WARNING, OK, 80)),
        (90, (ALARM, WARNING, 90)),
        (87.9, (WARNING, ALARM, 90)),
        (77.9, (OK, WARNING, 80)),
    ], got
    assert lim.level == OK


def test_straight_to_alarm_and_straight_back():
    lim = Limit(80, 90, 2)
    assert lim.update(120) == (ALARM, OK, 90)
    assert lim.update(10) == (OK, ALARM, 80)  # the lowest limit it fell back through


def test_alarm_falls_to_warning_inside_the_warning_deadband():
    lim = Limit(80, 90, 2)
    lim.update(91)
    assert lim.update(79) == (WARNING, ALARM, 90)  # below warn but not below warn - deadband
    assert lim.level == WARNING
    assert lim.update(78) is None
    assert lim.update(77.99) == (OK, WARNING, 80)


def test_limit_is_inclusive_and_clear_is_strict():
    lim = Limit(80, 90, 2)
    assert lim.update(80) == (WARNING, OK, 80)
    assert lim.update(78) is None  # exactly limit - deadband keeps the level
    assert lim.update(90) == (ALARM, WARNING, 90)
    assert lim.update(88) is None
    lim0 = Limit(80, None, 0)
    assert lim0.update(80) == (WARNING, OK, 80)
    assert lim0.update(80) is None
    assert lim0.update(79.999) == (OK, WARNING, 80)


def test_noisy_signal_near_a_limit_does_not_chatter():
    noise = [0.6, -0.9, 0.3, 1.2, -1.4, 0.8, -0.2, 1.5, -1.1, 0.1]
    values = [80 + noise[i % len(noise)] for i in range(200)]
    with_db = _feed(Limit(80, 90, 2), values)
    assert len(with_db) == 1 and with_db[0][1] == (WARNING, OK, 80), with_db
    without = _feed(Limit(80, 90, 0), values)
    assert len(without) > 50  # what the deadband prevents
    # and once the noise moves well below, exactly one clear follows
    tail = _feed_after(Limit(80, 90, 2), values, [75 + n for n in noise])
    assert len(tail) == 1 and tail[0][1] == (OK, WARNING, 80), tail
    assert abs(tail[0][0] - 75.6) < 1e-9


def _feed_after(lim, first, then):
    _feed(lim, first)
    return _feed(lim, then)


def test_failed_reads_change_nothing():
    lim = Limit(80, 90, 2)
    lim.update(85)
    for v in (None, float("nan")):
        assert lim.update(v) is None
        assert lim.level == WARNING
    assert lim.update(60) == (OK, WARNING, 80)
    fresh = Limit(80, 90, 2)
    assert fresh.update(None) is None and fresh.level == OK


def test_alarm_only():
    lim = Limit(None, 90, 5)
    assert _feed(lim, [50, 89, 90, 86, 85, 84.9]) == [(90, (ALARM, OK, 90)), (84.9, (OK, ALARM, 90))]


def test_warn_only():
    lim = Limit(0.5, None, 0.05)
    assert lim.update(1000) == (WARNING, OK, 0.5)
    assert lim.update(0.46) is None
    assert lim.update(0.44) == (OK, WARNING, 0.5)


def test_deadband_wider_than_the_gap():
    lim = Limit(80, 90, 15)
    assert lim.update(95) == (ALARM, OK, 90)
    assert lim.update(76) is None  # still >= 90 - 15
    assert lim.update(74) == (WARNING, ALARM, 90)
    assert lim.update(65) is None
    assert lim.update(64) == (OK, WARNING, 80)


def test_negative_limits():
    lim = Limit(-20, -10, 1)
    assert lim.update(-15) == (WARNING, OK, -20)
    assert lim.update(-20.5) is None
    assert lim.update(-21.5) == (OK, WARNING, -20)


def test_alarms_per_metric():
    al = Alarms({"bearing": {"warn": 80, "alarm": 90, "deadband": 2},
                 "motor.rms": {"warn": None, "alarm": 1.0, "deadband": 0.05},
                 "chip": {"warn": 70}})
    assert al.check("bearing", 81) == (WARNING, OK, 80)
    assert al.check("motor.rms", 1.2) == (ALARM, OK, 1.0)
    assert al.check("winding", 500) is None  # no limits for it
    assert al.level("winding") == OK
    assert al.check("chip", 70) == (WARNING, OK, 70)
    assert al.level("bearing") == WARNING and al.level("motor.rms") == ALARM
    assert al.active() == {"bearing": "warning", "motor.rms": "alarm", "chip": "warning"}
    assert al.check("motor.rms", 0.96) is None
    assert al.check("motor.rms", 0.9) == (OK, ALARM, 1.0)
    assert al.check("chip", 10) == (OK, WARNING, 70)  # deadband defaults to 0
    assert al.active() == {"bearing": "warning"}


def test_alarms_from_a_validated_config():
    from node import config
    raw = {"device_id": "n", "site": "s", "wifi": {"ssid": "w"}, "broker": {"host": "h"},
           "sensors": [{"name": "motor", "type": "adxl345", "sda": 1, "scl": 2}],
           "thresholds": {"motor.cf": {"warn": 6}}}
    al = Alarms(config.validate(raw)["thresholds"])
    assert al.check("motor.cf", 6.5) == (WARNING, OK, 6)
    assert al.active() == {"motor.cf": "warning"}


def test_empty():
    al = Alarms({})
    assert al.check("x", 1) is None and al.active() == {}
