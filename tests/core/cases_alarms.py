"""Cases for node.alarms; MicroPython subset (run on CPython and in the VM)."""
from node import alarms
from node.alarms import ALARM, OK, WARNING, Alarms, Limit
from caselib import lcg_noise


def _run(lim, steps):
    """[(t_s, event)] for readings [(t_s, value)]; times in seconds, passed on as ms."""
    out = []
    for t, v in steps:
        e = lim.update(v, int(t * 1000))
        if e is not None:
            out.append((t, e))
    return out


def _feed(lim, values, t0=0, dt=1):
    """_run for readings dt seconds apart, with the value in place of the time."""
    out = []
    t = t0
    for v in values:
        e = lim.update(v, t * 1000)
        if e is not None:
            out.append((v, e))
        t += dt
    return out



def test_levels():
    assert (OK, WARNING, ALARM) == (0, 1, 2)
    assert alarms.LEVELS == ("ok", "warning", "alarm")


# --- limits and deadband ---------------------------------------------------------------------

def test_warning_then_alarm_then_back_through_the_deadbands():
    lim = Limit(80, 90, 2)
    got = _feed(lim, [70, 79.9, 80, 85, 90, 95, 89, 88, 87.9, 79, 78, 77.9, 60])
    assert got == [
        (80, ("raise", WARNING, OK, 80)),
        (90, ("raise", ALARM, WARNING, 90)),
        (87.9, ("clear", WARNING, ALARM, 90)),
        (77.9, ("clear", OK, WARNING, 80)),
    ], got
    assert lim.level == OK


def test_straight_to_alarm_and_straight_back_report_the_limits():
    lim = Limit(80, 90, 2)
    assert lim.update(120, 0) == ("raise", ALARM, OK, 90)  # the highest limit reached
    assert lim.update(10, 1000) == ("clear", OK, ALARM, 80)  # the lowest limit fallen back through
    only_alarm = Limit(None, 90, 2)
    assert only_alarm.update(95, 0) == ("raise", ALARM, OK, 90)
    assert only_alarm.update(10, 1000) == ("clear", OK, ALARM, 90)


def test_alarm_falls_to_warning_inside_the_warning_deadband():
    lim = Limit(80, 90, 2)
    lim.update(91, 0)
    assert lim.update(79, 1) == ("clear", WARNING, ALARM, 90)  # below warn, not below warn - deadband
    assert lim.level == WARNING
    assert lim.update(78, 2) is None
    assert lim.update(77.99, 3) == ("clear", OK, WARNING, 80)


def test_limit_is_inclusive_and_clear_is_strict():
    lim = Limit(80, 90, 2)
    assert lim.update(80, 0) == ("raise", WARNING, OK, 80)
    assert lim.update(78, 1) is None  # exactly limit - deadband keeps the level
    assert lim.update(90, 2) == ("raise", ALARM, WARNING, 90)
    assert lim.update(88, 3) is None
    lim0 = Limit(80, None, 0)
    assert lim0.update(80, 0) == ("raise", WARNING, OK, 80)
    assert lim0.update(80, 1) is None
    assert lim0.update(79.999, 2) == ("clear", OK, WARNING, 80)


def test_deadband_wider_than_the_gap():
    lim = Limit(80, 90, 15)
    assert lim.update(95, 0) == ("raise", ALARM, OK, 90)
    assert lim.update(76, 1) is None  # still >= 90 - 15
    assert lim.update(74, 2) == ("clear", WARNING, ALARM, 90)
    assert lim.update(65, 3) is None
    assert lim.update(64, 4) == ("clear", OK, WARNING, 80)


def test_negative_limits():
    lim = Limit(-20, -10, 1)
    assert lim.update(-15, 0) == ("raise", WARNING, OK, -20)
    assert lim.update(-20.5, 1) is None
    assert lim.update(-21.5, 2) == ("clear", OK, WARNING, -20)


def test_warn_above_alarm_is_refused():
    for args in ((95, 90, False), (85, 90, True)):
        try:
            Limit(args[0], args[1], low=args[2])
        except ValueError as e:
            assert "warn" in str(e) and "alarm" in str(e), str(e)
        else:
            raise AssertionError("accepted warn %s alarm %s low %s" % args)
    Limit(90, 90)  # equal is fine (warning and alarm together)
    Limit(95, 90, low=True)


def test_failed_reads_change_nothing():
    lim = Limit(80, 90, 2, on_delay_ms=5000)
    lim.update(85, 0)
    for t in (1, 2, 3, 4):
        for v in (None, float("nan")):
            assert lim.update(v, t * 1000) is None
    assert lim.level == OK  # the on-delay runs on readings only; a gap is not a dip either
    assert lim.update(85, 5000) == ("raise", WARNING, OK, 80)
    for v in (None, float("nan")):
        assert lim.update(v, 99000) is None
        assert lim.level == WARNING
    assert lim.update(60, 100000) == ("clear", OK, WARNING, 80)
    fresh = Limit(80, 90, 2)
    assert fresh.update(None, 0) is None and fresh.level == OK


# --- noise ------------------------------------------------------------------------------------

def test_noisy_signal_below_a_limit_does_not_chatter():
    # 10 minutes at 1 Hz of 79 +- 2 around a warn limit of 80: a quarter of the readings reach it
    values = [79 + n for n in lcg_noise(600, 2.0)]
    reached = len([v for v in values if v >= 80])
    assert 100 < reached < 200, reached
    bare = _feed(Limit(80, 90), values)
    assert len(bare) > 200, len(bare)  # what a bare limit does: a raise or clear every few seconds
    # a deadband helps once it is comparable to the noise; the on-delay does the rest
    assert len(_feed(Limit(80, 90, 2.5), values)) < len(bare) // 2
    assert len(_feed(Limit(80, 90, 1.5, on_delay_ms=3000), values)) <= 10
    quiet = _feed(Limit(80, 90, 1.5, on_delay_ms=5000), values)
    assert quiet == [], quiet  # never 5 s in a row at the limit: no alarm at all


def test_noisy_signal_at_a_limit_raises_once():
    # 80 +- 1.5: at the limit half the time; deadband 2 and a 3 s on-delay give one raise
    noise = lcg_noise(600, 1.5, seed=7)
    lim = Limit(80, 90, 2, on_delay_ms=3000, off_delay_ms=10000)
    got = _feed(lim, [80 + n for n in noise])
    assert len(got) == 1 and got[0][1] == ("raise", WARNING, OK, 80), got
    assert len(_feed(Limit(80, 90), [80 + n for n in noise])) > 100
    # when the noise moves well below, exactly one clear follows, 10 s after it went
    tail = _feed(lim, [70 + n for n in noise[:60]], t0=600)
    assert tail == [(70 + noise[10], ("clear", OK, WARNING, 80))], tail


# --- delays -----------------------------------------------------------------------------------

def test_on_delay_suppresses_a_short_excursion():
    lim = Limit(80, 90, 2, on_delay_ms=10000)
    got = _run(lim, [(0, 70), (5, 85), (10, 86), (14, 85), (15, 75), (20, 85), (29, 85)])
    assert got == [] and lim.level == OK, got  # 9 s at most above the limit
    assert _run(lim, [(30, 85)]) == [(30, ("raise", WARNING, OK, 80))]  # 10 s since t=20


def test_on_delay_restarts_when_the_value_only_stays_within_the_deadband():
    lim = Limit(80, 90, 2, on_delay_ms=10000)
    # 79 is inside the deadband but the deadband only keeps an announced level
    got = _run(lim, [(0, 81), (6, 79), (8, 81), (17, 81), (18, 81)])
    assert got == [(18, ("raise", WARNING, OK, 80))], got


def test_on_delay_per_level():
    lim = Limit(80, 90, 2, on_delay_ms=10000)
    got = _run(lim, [(0, 85), (5, 95), (10, 95), (14, 95), (15, 95), (16, 85)])
    # warning has held since 0, alarm since 5
    assert got == [(10, ("raise", WARNING, OK, 80)), (15, ("raise", ALARM, WARNING, 90)),
                   (16, ("clear", WARNING, ALARM, 90))], got
    straight = Limit(80, 90, 2, on_delay_ms=10000)
    assert _run(straight, [(0, 95), (9, 95), (10, 95)]) == [(10, ("raise", ALARM, OK, 90))]


def test_alarm_too_short_for_its_delay_still_counts_as_warning():
    lim = Limit(80, 90, 0, on_delay_ms=10000)
    got = _run(lim, [(0, 95), (6, 85), (10, 85), (11, 70)])
    assert got == [(10, ("raise", WARNING, OK, 80)), (11, ("clear", OK, WARNING, 80))], got


def test_off_delay_holds_through_a_dip():
    lim = Limit(80, 90, 2, off_delay_ms=10000)
    got = _run(lim, [(0, 85), (1, 70), (5, 70), (8, 85), (20, 70), (29, 70), (30, 70)])
    assert got == [(0, ("raise", WARNING, OK, 80)), (30, ("clear", OK, WARNING, 80))], got
    # a value back inside the deadband also ends the dip
    lim2 = Limit(80, 90, 2, off_delay_ms=10000)
    got2 = _run(lim2, [(0, 85), (1, 70), (9, 79), (15, 70), (24, 70), (25, 70)])
    assert got2 == [(0, ("raise", WARNING, OK, 80)), (25, ("clear", OK, WARNING, 80))], got2


def test_off_delay_steps_down_level_by_level():
    lim = Limit(80, 90, 2, off_delay_ms=10000)
    got = _run(lim, [(0, 95), (1, 85), (6, 70), (11, 70), (16, 70)])
    # below the alarm's deadband since 1, below the warning's since 6
    assert got == [(0, ("raise", ALARM, OK, 90)), (11, ("clear", WARNING, ALARM, 90)),
                   (16, ("clear", OK, WARNING, 80))], got
    lim2 = Limit(80, 90, 2, off_delay_ms=10000)
    got2 = _run(lim2, [(0, 95), (1, 70), (11, 70)])
    assert got2 == [(0, ("raise", ALARM, OK, 90)), (11, ("clear", OK, ALARM, 80))], got2


def test_escalation_during_an_off_delay_dip_is_no_new_raise():
    lim = Limit(80, 90, 2, on_delay_ms=5000, off_delay_ms=10000)
    got = _run(lim, [(0, 95), (5, 95), (6, 85), (10, 95), (12, 95), (40, 95)])
    assert got == [(5, ("raise", ALARM, OK, 90))], got


# --- latch, ack, realarm ----------------------------------------------------------------------

def test_latch_holds_until_ack_then_clears():
    lim = Limit(80, 90, 2, latch=True)
    assert lim.update(95, 0) == ("raise", ALARM, OK, 90)
    assert _feed(lim, [70, 60, 50], t0=1) == []
    assert lim.level == ALARM and not lim.acked
    assert lim.ack(10000) == ("ack", ALARM, ALARM, 90)
    assert lim.level == ALARM and lim.acked  # the clear comes with the next reading
    assert lim.update(50, 11000) == ("clear", OK, ALARM, 80)
    assert lim.ack(12000) is None  # nothing left to acknowledge


def test_latch_ack_while_active_keeps_it_until_the_condition_clears():
    lim = Limit(80, 90, 2, latch=True, off_delay_ms=5000)
    lim.update(95, 0)
    assert lim.ack(1000) == ("ack", ALARM, ALARM, 90)
    got = _run(lim, [(2, 95), (3, 85), (4, 95), (10, 70), (14, 70)])
    assert got == [] and lim.level == ALARM and lim.acked, got  # condition present or off-delayed
    assert lim.update(70, 15000) == ("clear", OK, ALARM, 80)  # acked: it follows the value again


def test_latch_after_escalation_needs_a_new_ack():
    lim = Limit(80, 90, 2, latch=True)
    lim.update(85, 0)
    lim.ack(1000)
    assert lim.update(95, 2000) == ("raise", ALARM, WARNING, 90) and not lim.acked
    assert lim.update(50, 3000) is None and lim.level == ALARM  # latched again
    lim.ack(4000)
    assert lim.update(85, 5000) == ("clear", WARNING, ALARM, 90)
    assert lim.acked  # going down keeps the ack
    assert lim.update(50, 6000) == ("clear", OK, WARNING, 80)


def test_unlatched_ack_only_marks_it_acknowledged():
    lim = Limit(80, 90, 2)
    assert lim.ack(0) is None  # nothing raised
    lim.update(85, 0)
    assert lim.ack(1000) == ("ack", WARNING, WARNING, 80)
    assert lim.ack(2000) is None  # once is enough
    assert lim.level == WARNING and lim.acked
    assert lim.update(60, 3000) == ("clear", OK, WARNING, 80)
    assert lim.update(85, 4000) == ("raise", WARNING, OK, 80) and not lim.acked


def test_realarm_after_the_interval_and_again():
    lim = Limit(80, 90, 2, realarm_ms=60000)
    got = _run(lim, [(0, 85), (30, 85), (59, 85), (60, 85), (100, 85), (119, 85), (125, 85),
                     (184, 85), (185, 85)])
    assert got == [(0, ("raise", WARNING, OK, 80)), (60, ("realarm", WARNING, WARNING, 80)),
                   (125, ("realarm", WARNING, WARNING, 80)),  # 60 s from the last announcement
                   (185, ("realarm", WARNING, WARNING, 80))], got


def test_realarm_unacks_and_an_ack_restarts_the_interval():
    lim = Limit(80, 90, 2, realarm_ms=60000)
    lim.update(85, 0)
    lim.ack(50000)
    assert lim.update(85, 60000) is None  # 60 s from the ack, not from the raise
    assert lim.update(85, 110000) == ("realarm", WARNING, WARNING, 80)
    assert not lim.acked
    assert lim.update(95, 120000) == ("raise", ALARM, WARNING, 90)  # a raise restarts it too
    assert lim.update(95, 179000) is None
    assert lim.update(95, 180000) == ("realarm", ALARM, ALARM, 90)
    assert lim.update(50, 181000) == ("clear", OK, ALARM, 80)
    assert lim.update(50, 500000) is None  # nothing to re-announce when ok


def test_realarm_reminds_of_a_latched_alarm_whose_condition_is_gone():
    lim = Limit(None, 90, 2, latch=True, realarm_ms=60000)
    lim.update(95, 0)
    assert lim.update(50, 60000) == ("realarm", ALARM, ALARM, 90)


# --- low and relative limits ------------------------------------------------------------------

def test_low_limits_are_mirrored():
    # seconds to a limit: warn below 600, alarm below 120, 30 s deadband
    lim = Limit(600, 120, 30, low=True)
    got = _feed(lim, [float("inf"), 900, 601, 600, 620, 630, 631, 600, 120, 149, 151, 700])
    assert got == [
        (600, ("raise", WARNING, OK, 600)),
        (631, ("clear", OK, WARNING, 600)),
        (600, ("raise", WARNING, OK, 600)),
        (120, ("raise", ALARM, WARNING, 120)),
        (151, ("clear", WARNING, ALARM, 120)),
        (700, ("clear", OK, WARNING, 600)),
    ], got
    assert lim.update(0, 100000) == ("raise", ALARM, OK, 120)
    assert lim.update(float("inf"), 101000) == ("clear", OK, ALARM, 600)  # "not rising" clears


def test_low_limit_with_delays():
    lim = Limit(600, None, 0, on_delay_ms=20000, off_delay_ms=20000, low=True)
    got = _run(lim, [(0, 500), (10, 400), (19, 300), (20, 200), (25, 1000), (44, 1000), (45, 1000)])
    assert got == [(20, ("raise", WARNING, OK, 600)), (45, ("clear", OK, WARNING, 600))], got


def test_relative_limits_wait_for_a_baseline():
    lim = Limit(2, 3, 0.5, relative=True)
    assert _feed(lim, [1, 100, 1000, 0]) == [] and lim.level == OK
    lim.set_baseline(0.5)  # warn 1.0, alarm 1.5, deadband 0.25
    got = _feed(lim, [0.9, 1.0, 1.49, 1.5, 1.25, 1.24, 0.75, 0.74])
    assert got == [(1.0, ("raise", WARNING, OK, 1.0)), (1.5, ("raise", ALARM, WARNING, 1.5)),
                   (1.24, ("clear", WARNING, ALARM, 1.5)), (0.74, ("clear", OK, WARNING, 1.0))], got


def test_relative_limits_follow_a_new_baseline():
    lim = Limit(2, None, 0, relative=True)
    lim.set_baseline(1.0)
    assert lim.update(2.5, 0) == ("raise", WARNING, OK, 2)
    lim.set_baseline(1.5)  # rebaselined: now 3
    assert lim.update(2.5, 1000) == ("clear", OK, WARNING, 3.0)
    lim.update(3.5, 2000)
    for base in (None, 0, -1.0, float("nan")):  # no usable baseline: the limit is disarmed
        lim.set_baseline(1.5)
        lim.update(3.5, 2000)
        lim.set_baseline(base)
        assert lim.update(3.5, 3000) == ("clear", OK, WARNING, 3.0)  # the last limit in force
        assert lim.update(1000, 4000) is None


def test_set_baseline_leaves_absolute_limits_alone():
    lim = Limit(80, 90, 2)
    lim.set_baseline(1000)
    lim.set_baseline(None)
    assert lim.update(85, 0) == ("raise", WARNING, OK, 80)


# --- Alarms: the per-metric table -------------------------------------------------------------

def test_alarms_per_metric():
    al = Alarms({"bearing": {"warn": 80, "alarm": 90, "deadband": 2},
                 "motor.rms": {"warn": None, "alarm": 1.0, "deadband": 0.05},
                 "chip": {"warn": 70}})
    assert al.check("bearing", 81, 0) == ("raise", WARNING, OK, 80)
    assert al.check("motor.rms", 1.2, 0) == ("raise", ALARM, OK, 1.0)
    assert al.check("winding", 500, 0) is None  # no limits for it
    assert al.level("winding") == OK
    assert al.check("chip", 70, 0) == ("raise", WARNING, OK, 70)
    assert al.level("bearing") == WARNING and al.level("motor.rms") == ALARM
    assert al.state() == {"bearing": (WARNING, False), "motor.rms": (ALARM, False),
                          "chip": (WARNING, False)}
    assert al.check("motor.rms", 0.96, 1000) is None
    assert al.check("motor.rms", 0.9, 2000) == ("clear", OK, ALARM, 1.0)
    assert al.check("chip", 10, 2000) == ("clear", OK, WARNING, 70)  # deadband defaults to 0
    assert al.state() == {"bearing": (WARNING, False)}


def test_alarms_ack_one_or_all():
    al = Alarms({"a": {"warn": 1}, "b": {"alarm": 1}, "c": {"warn": 1}})
    al.check("a", 2, 0)
    al.check("b", 2, 0)
    assert al.ack("c", 1000) == []  # ok: nothing to acknowledge
    assert al.ack("nosuch", 1000) == []
    assert al.ack("a", 1000) == [("a", ("ack", WARNING, WARNING, 1))]
    assert al.state() == {"a": (WARNING, True), "b": (ALARM, False)}
    assert al.ack(None, 2000) == [("b", ("ack", ALARM, ALARM, 1))]  # a was acked already
    assert al.state() == {"a": (WARNING, True), "b": (ALARM, True)}
    assert al.ack(None, 3000) == []


def test_alarms_delays_are_seconds_in_the_config():
    al = Alarms({"t": {"warn": 80, "alarm": 90, "deadband": 1, "on_delay_s": 1.5, "off_delay_s": 0.1,
                       "latch": True, "realarm_s": 600, "relative": False}})
    lim = al.limits["t"]
    assert (lim.on_delay, lim.off_delay, lim.realarm) == (1500, 100, 600000)
    assert al.check("t", 85, 0) is None
    assert al.check("t", 85, 1500) == ("raise", WARNING, OK, 80)
    assert al.check("t", 50, 2000) is None  # latched
    assert al.ack("t", 2000) == [("t", ("ack", WARNING, WARNING, 80))]
    assert al.check("t", 50, 2050) is None  # off-delay: 0.1 s
    assert al.check("t", 50, 2100) == ("clear", OK, WARNING, 80)


def test_alarms_low_and_relative_from_the_table():
    al = Alarms({"bearing.early": {"warn": 600, "low": True},
                 "motor.kurt": {"warn": 1.5, "alarm": 2.0, "deadband": 0.1, "relative": True}})
    assert al.check("bearing.early", 300, 0) == ("raise", WARNING, OK, 600)
    assert al.check("motor.kurt", 100, 0) is None
    al.set_baseline("motor.kurt", 3.0)
    al.set_baseline("nosuch", 3.0)  # ignored
    assert al.check("motor.kurt", 6.1, 1000) == ("raise", ALARM, OK, 6.0)
    assert al.check("motor.kurt", 5.8, 2000) is None  # 6.0 - 0.3 deadband
    assert al.check("motor.kurt", 5.6, 3000) == ("clear", WARNING, ALARM, 6.0)


def test_alarms_from_a_validated_config():
    from node import config
    raw = {"device_id": "n", "site": "s", "wifi": {"ssid": "w"}, "broker": {"host": "h"},
           "sensors": [{"name": "motor", "type": "adxl345", "sda": 1, "scl": 2}],
           "thresholds": {"motor.cf": {"warn": 6, "on_delay_s": 2}}}
    al = Alarms(config.validate(raw)["thresholds"])
    assert al.check("motor.cf", 6.5, 0) is None
    assert al.check("motor.cf", 6.5, 2000) == ("raise", WARNING, OK, 6)
    assert al.state() == {"motor.cf": (WARNING, False)}


def test_empty():
    al = Alarms({})
    assert al.check("x", 1, 0) is None and al.state() == {} and al.ack(None, 0) == []
