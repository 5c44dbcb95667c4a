"""Cases for node.health; MicroPython subset (run on CPython and in the VM)."""
from node import health
from node.health import SensorHealth, overall


def _good(name="a", kind="ds18b20", value=20.0):
    s = SensorHealth(name, kind)
    s.ok(value)
    return s


def test_new_sensor():
    s = SensorHealth("winding", "ds18b20")
    assert (s.name, s.kind, s.present, s.reads, s.errors, s.stuck, s.last_error) == (
        "winding", "ds18b20", False, 0, 0, False, None)
    assert s.as_dict() == {"type": "ds18b20", "present": False, "reads": 0, "errors": 0,
                           "stuck": False, "last_error": None}
    assert s.problem() is None  # not read yet


def test_counters():
    s = SensorHealth("bearing", "ds18b20")
    s.ok(41.0)
    s.ok(41.5)
    s.fail("crc error")
    assert (s.reads, s.errors, s.present, s.last_error) == (2, 1, True, "crc error")
    assert s.problem() == "bearing: read failed (crc error)"
    s.ok(42.0)
    assert s.problem() is None and s.last_error == "crc error"  # kept for the diag
    s.fail("no such probe", False)
    assert s.present is False and s.problem() == "bearing: not present"
    s.ok(42.0)
    assert s.present is True


def test_stuck_after_n_equal_readings():
    s = SensorHealth("t", "ds18b20", stuck_after=5)
    for i in range(4):
        s.ok(21.5)
        assert not s.stuck
    s.ok(21.5)
    assert s.stuck and s.as_dict()["stuck"] is True
    assert s.problem() == "t: stuck (same value 5 times)"
    s.ok(21.5625)
    assert not s.stuck and s.problem() is None


def test_failures_do_not_reset_the_stuck_count():
    s = SensorHealth("t", "ds18b20", stuck_after=3)
    s.ok(1.0)
    s.fail("timeout")
    s.ok(1.0)
    assert not s.stuck
    s.ok(1.0)
    assert s.stuck


def test_stuck_defaults_per_kind():
    chip = SensorHealth("c", "mcu_temp")
    for i in range(500):
        chip.ok(38.0)
    assert not chip.stuck  # whole degrees: repeats are normal
    probe = SensorHealth("p", "ds18b20")
    for i in range(health.STUCK_AFTER["ds18b20"] - 1):
        probe.ok(40.0625)
    assert not probe.stuck
    probe.ok(40.0625)
    assert probe.stuck
    acc = SensorHealth("m", "adxl345")
    for i in range(3):
        acc.ok((0.0, 0.0, 0.0))  # a dead accelerometer: zero RMS on every axis
    assert acc.stuck
    other = SensorHealth("x", "mystery")
    assert other.stuck_after == 30


def test_reused_list_is_not_stuck():
    s = SensorHealth("m", "mpu6050", stuck_after=2)
    rms = [0.0, 0.0, 0.0]
    for i in range(5):
        rms[0] = 0.01 * (i + 1)
        s.ok(rms)  # the caller reuses one list: its contents change
    assert not s.stuck
    s.ok(rms)
    assert s.stuck


def test_all_good_is_ok():
    sensors = [_good("a"), _good("b", "mcu_temp"), _good("m", "adxl345", (0.1, 0.2, 0.3))]
    assert overall(sensors, 60000, None) == ("ok", [])
    assert overall({"a": sensors[0]}, 60000, None) == ("ok", [])


def test_no_sensors_configured_is_ok():
    assert overall([], 60000, None) == ("ok", [])


def test_not_yet_read_counts_neither_way():
    assert overall([SensorHealth("a", "ds18b20")], 60000, None) == ("ok", [])
    failed = SensorHealth("b", "ds18b20")
    failed.fail("no such probe")
    state, problems = overall([SensorHealth("a", "ds18b20"), failed], 60000, None)
    assert state == "degraded" and problems == ["b: not present"]


def test_config_error_is_a_fault():
    state, problems = overall([], 60000, "broker.port: 0 is out of range 1..65535")
    assert state == "fault"
    assert problems == ["config error: broker.port: 0 is out of range 1..65535"]


def test_no_sensor_delivering_is_a_fault():
    a = SensorHealth("a", "ds18b20")
    a.fail("no such probe")
    b = _good("b")
    b.fail("crc error")
    state, problems = overall([a, b], 60000, None)
    assert state == "fault"
    assert problems == ["no sensor delivering", "a: not present", "b: read failed (crc error)"]


def test_one_missing_sensor_degrades():
    w = SensorHealth("winding", "ds18b20")
    for i in range(12):
        w.fail("no such probe")
    state, problems = overall([_good("bearing"), w], 61234, None)
    assert state == "degraded" and problems == ["winding: not present"]
    assert w.as_dict() == {"type": "ds18b20", "present": False, "reads": 0, "errors": 12,
                           "stuck": False, "last_error": "no such probe"}


def test_stuck_sensor_degrades_but_still_delivers():
    s = SensorHealth("m", "adxl345")
    for i in range(3):
        s.ok((0.0, 0.0, 0.0))
    assert overall([s], 60000, None) == ("degraded", ["m: stuck (same value 3 times)"])


def test_low_heap_degrades():
    assert overall([_good()], 16383, None) == ("degraded", ["heap low: 16383 bytes free"])
    assert overall([_good()], 16384, None) == ("ok", [])
    assert overall([_good()], None, None) == ("ok", [])


def test_fault_lists_every_reason():
    state, problems = overall([], 1000, "bad")
    assert state == "fault" and problems == ["config error: bad", "heap low: 1000 bytes free"]
