"""Cases for node.payload against docs/contract.md; MicroPython subset (CPython and the VM)."""
import json

from node import payload
from node.health import SensorHealth


def _close(a, b, tol=1e-9):
    return abs(a - b) <= tol


def _load(b):
    assert type(b) is bytes, type(b)
    return json.loads(b.decode())


def test_topics():
    assert payload.topic("plant-a", "press-07", "telemetry") == "floorwatch/plant-a/press-07/telemetry"
    assert sorted(payload.KINDS) == ["ack", "alarm", "cmd", "diag", "status", "telemetry"]
    for kind in payload.KINDS:
        assert payload.topic("s", "d", kind).split("/") == ["floorwatch", "s", "d", kind]


class _Sensor:
    def __init__(self, name, kind):
        self.name, self.kind = name, kind


def test_cols_in_config_order():
    sensors = [_Sensor("bearing", "temp"), _Sensor("motor", "vib"), _Sensor("chip", "temp")]
    assert payload.cols(sensors) == {"t": ["bearing", "chip"], "v": ["motor"]}
    assert payload.cols([]) == {"t": [], "v": []}


def test_record_positions_units_and_rounding():
    rms, pk = [0.0123456, 0.011, 0.03149], [0.041, 0.0390004, 0.10149]
    kurt, vel = [3.014, 2.9951, 3.5], [1.234, 0.5, 2.8149]
    r = payload.record(610120, [41.3149, None, 38], [(rms, pk, kurt, vel, "B", None)])
    assert len(r) == 3 and r[0] == 610120
    t = r[1]
    assert len(t) == 3 and _close(t[0], 41.31) and t[1] is None and t[2] == 38
    f = r[2][0]
    assert len(f) == 13 and f[12] == "B"  # rel while learning: trailing nulls left out
    want = [12.3, 11.0, 31.5, 41.0, 39.0, 101.5, 3.01, 3.0, 3.5, 1.23, 0.5, 2.81]
    for i in range(12):
        assert _close(f[i], want[i], 1.01e-2), (i, f[i], want[i])


def test_record_has_only_what_was_read():
    assert payload.record(5) == [5]
    assert payload.record(5, [1.0]) == [5, [1.0]]
    feats = ([1, 1, 1], [2, 2, 2], [3, 3, 3], [1, 1, 1], "A", None)
    assert payload.record(5, None, [feats])[1] is None  # vibration only: temps null, kept in place
    assert payload.record(5, None, [None, feats])[2][0] is None  # first sensor not read
    assert payload.record(5, [20.5], [feats, None]) == [5, [20.5], [[1000, 1000, 1000, 2000, 2000, 2000, 3, 3, 3, 1, 1, 1, "A"]]]
    assert payload.record(5, [20.5], None, [None]) == [5, [20.5]]  # no trend known
    assert payload.record(5, [None]) == [5, []]  # taken, and failed


def test_not_finite_becomes_null():
    nan, inf = float("nan"), float("inf")
    r = payload.record(1, [nan, inf], [([nan, 0.5, -inf], [0.1, 0.1, 0.1], [inf, 1, 1], [1, 1, 1], "A", (nan, 1, 1))],
                       [(nan, inf, 5.0), None])
    doc = _load(payload.telemetry(1, 0, [r], {"t": ["a", "b"], "v": ["m"]}))  # must still be valid JSON
    rec = doc["r"][0]
    assert rec[1] == []  # both null: trailing nulls left out
    f = rec[2][0]
    assert f[0] is None and f[1] == 500 and f[2] is None and f[6] is None
    assert f[13] is None and f[14] == 1 and f[15] == 1
    assert rec[3] == [[None, None, 5]]  # unknown trend values are null


def test_record_baseline_and_trends():
    r = payload.record(7, [60.0, 40.0], [([1, 1, 1], [2, 2, 2], [3, 3, 3], [1.5, 1, 1], "B", (1.2345, 0.98, 1.5))],
                       [(0.12345, 3.456, 1234.6), (None, None, None)])
    f = r[2][0]
    assert f[12] == "B" and f[13:] == [1.23, 0.98, 1.5]
    assert r[3] == [[0.123, 3.46, 1235]]


def test_telemetry_shape():
    layout = {"t": ["bearing"], "v": ["motor"]}
    recs = [payload.record(600120, [41.25]),
            payload.record(610120, [41.31], [([0.012, 0.011, 0.031], [0.041, 0.039, 0.101],
                                              [3.0, 3.1, 2.9], [1.1, 0.9, 1.3], "A", None)])]
    b = payload.telemetry(7, 120, recs, layout)
    doc = _load(b)
    assert sorted(doc) == ["boot", "cols", "n", "r", "seq"]
    assert doc["boot"] == 7 and doc["seq"] == 120 and doc["n"] == 2 and len(doc["r"]) == 2
    assert doc["cols"] == layout
    assert doc["r"][0] == [600120, [41.25]]
    assert doc["r"][1][2][0][:3] == [12.0, 11.0, 31.0]
    assert b" " not in b  # compact separators
    one = _load(payload.telemetry(7, 0, recs[:1], payload.encode(layout)))  # layout as queued bytes
    assert one["n"] == 1 and one["seq"] == 0 and one["cols"] == layout


def test_telemetry_needs_a_record():
    try:
        payload.telemetry(1, 0, [], {"t": [], "v": []})
    except ValueError:
        return
    raise AssertionError("empty telemetry accepted")


def test_status_online():
    doc = _load(payload.status("online", "0.1.0", 7, "power_on", "10.0.0.23", "ok", None))
    assert doc == {"state": "online", "fw": "0.1.0", "boot": 7, "reset": "power_on", "reason": None,
                   "ip": "10.0.0.23", "health": "ok", "config_error": None}
    doc = _load(payload.status("online", "0.1.0", 8, "wdt", None, "fault", "device_id: missing"))
    assert doc["config_error"] == "device_id: missing" and doc["ip"] is None


def test_status_vibration_band_and_baseline():
    doc = _load(payload.status("online", "0.1.0", 7, "power_on", "10.0.0.23", "ok", None,
                               {"motor": (1000, 10, 500, True)}, "learning"))
    assert doc["vib"] == {"motor": {"odr": 1000, "band": [10, 500], "limited": True}}
    assert doc["baseline"] == "learning"
    plain = _load(payload.status("online", "0.1.0", 7, "power_on", None, "ok", None))
    assert "vib" not in plain and "baseline" not in plain


def test_status_safe_mode_reason_fallback_and_broker():
    doc = _load(payload.status("safe_mode", "0.1.0", 9, "wdt", "10.0.0.23", "ok", None,
                               reason="watchdog: sample", safe="3 failed boots, last: watchdog: sample",
                               config_fallback="config.json: not valid JSON", broker="backup"))
    assert doc["state"] == "safe_mode" and doc["reason"] == "watchdog: sample"
    assert doc["safe"].startswith("3 failed boots") and doc["broker"] == "backup"
    assert doc["config_fallback"] == "config.json: not valid JSON"
    plain = _load(payload.status("online", "0.1.0", 7, "power_on", None, "ok", None))
    for key in ("safe", "config_fallback", "broker"):
        assert key not in plain


def test_telemetry_splices_queued_bytes_with_t0_and_dropped():
    layout = {"t": ["a"], "v": []}
    queued = [payload.encode(payload.record(1000, [20.5])), payload.encode(payload.record(2000, [20.75]))]
    doc = _load(payload.telemetry(3, 40, queued, layout, 1767225600123, [(2, 17, 4, "reset"), (3, 0, 2, "full")]))
    assert doc["boot"] == 3 and doc["seq"] == 40 and doc["n"] == 2 and doc["t0"] == 1767225600123
    assert doc["r"] == [[1000, [20.5]], [2000, [20.75]]]
    assert doc["dropped"] == [{"boot": 2, "seq": 17, "n": 4, "why": "reset"}, {"boot": 3, "seq": 0, "n": 2, "why": "full"}]
    bare = _load(payload.telemetry(3, 40, queued[:1], layout))
    assert "t0" not in bare and "dropped" not in bare


def test_diag_queue_sync_and_failed_boots():
    d = payload.diag(1, "0.1.0", 2, "hard", [], 50000, -70, 3, 4, None, {"ram": 2, "flash": 40, "dropped": 0}, True, 1)
    assert d["queue"] == {"ram": 2, "flash": 40, "dropped": 0} and d["synced"] is True and d["failed_boots"] == 1
    assert "queue" not in payload.diag(1, "0.1.0", 2, "hard", [], 50000, -70, 3, 4)


def test_diag_command_counters():
    cmds = {"ok": 3, "rejected": 1, "limited": 5, "dropped": 2}
    assert payload.diag(1, "0.1.0", 2, "hard", [], 50000, -70, 3, 4, cmds=cmds)["cmds"] == cmds
    assert "cmds" not in payload.diag(1, "0.1.0", 2, "hard", [], 50000, -70, 3, 4)


def test_status_build_ids():
    hw = "Generic ESP32 module with ESP32"
    doc = _load(payload.status("online", "0.1.0", 7, "power_on", None, "ok", None,
                               build=("5f0c9e21ab47", "c81d02e7f3a9", "1.24.1", hw)))
    assert (doc["app"], doc["cfg"], doc["mp"], doc["hw"]) == ("5f0c9e21ab47", "c81d02e7f3a9", "1.24.1", hw)
    unknown = _load(payload.status("online", "0.1.0", 7, "power_on", None, "ok", None, build=(None, None, "1.24.1", hw)))
    assert unknown["app"] is None and unknown["cfg"] is None
    assert "app" not in _load(payload.status("offline", "0.1.0", 7, build=("5f0c9e21ab47", None, "1.24.1", hw)))


def test_status_offline_will():
    assert _load(payload.status("offline", "0.1.0", 7)) == {"state": "offline", "fw": "0.1.0", "boot": 7}
    # even if more is passed, the Will carries only these three
    assert sorted(_load(payload.status("offline", "0.1.0", 7, "hard", "1.2.3.4", "ok"))) == [
        "boot", "fw", "state"]


def test_alarm_raise_and_clear():
    doc = _load(payload.alarm("bearing", ("raise", 1, 0, 80.0), 81.5, 612000, 7, {"bearing": (1, False)}))
    assert doc == {"metric": "bearing", "event": "raise", "level": "warning", "prev": "ok",
                   "value": 81.5, "limit": 80.0, "acked": False, "up": 612000, "boot": 7,
                   "active": {"bearing": {"level": "warning", "acked": False}}}
    doc = _load(payload.alarm("bearing", ("clear", 0, 1, 80.0), 77.123, 613000, 7, {}))
    assert (doc["event"], doc["level"], doc["prev"], doc["limit"]) == ("clear", "ok", "warning", 80.0)
    assert _close(doc["value"], 77.12) and doc["active"] == {}


def test_alarm_ack_realarm_and_state():
    state = {"bearing": (2, True), "motor.vel": (1, False)}
    doc = _load(payload.alarm("bearing", ("ack", 2, 2, 90.0), None, 5, 7, state, True))
    assert (doc["event"], doc["level"], doc["prev"], doc["acked"], doc["value"]) == ("ack", "alarm", "alarm", True, None)
    assert doc["active"] == {"bearing": {"level": "alarm", "acked": True},
                             "motor.vel": {"level": "warning", "acked": False}}
    doc = _load(payload.alarm("motor.vel", ("realarm", 1, 1, 2.8), 3.0, 6, 7, state))
    assert doc["event"] == "realarm" and doc["level"] == doc["prev"] == "warning"
    assert _load(payload.alarm_state(8, 7, {})) == {"event": "state", "up": 8, "boot": 7, "active": {}}


def test_alarm_decimals_follow_the_metric():
    for metric, value, want, tol in (("motor.rms", 1.23456, 1.2346, 1.01e-4), ("motor.cf", 6.789, 6.79, 1.01e-2),
                                     ("motor.vel", 4.5678, 4.57, 1.01e-2), ("motor.kurt", 5.555, 5.55, 1.01e-2),
                                     ("bearing.rate", 0.12345, 0.123, 1.01e-3), ("bearing", 81.234, 81.23, 1.01e-2),
                                     ("bearing.early", 899.6, 900, 0)):
        doc = _load(payload.alarm(metric, ("raise", 1, 0, 0.5), value, 1, 2, {}))
        assert _close(doc["value"], want, tol), (metric, doc["value"])


def test_diag_shape():
    b = SensorHealth("bearing", "ds18b20")
    b.ok(41.0)
    w = SensorHealth("winding", "ds18b20")
    for i in range(12):
        w.fail("no such probe")
    d = payload.diag(612000, "0.1.0", 7, "power_on", [b, w], 61234, -61, 0, 1, None)
    assert sorted(d) == ["boot", "config_error", "fw", "health", "heap_free", "mqtt_reconnects",
                         "problems", "reset", "rssi", "sensors", "up", "wifi_reconnects"]
    assert (d["up"], d["fw"], d["boot"], d["reset"], d["heap_free"], d["rssi"]) == (
        612000, "0.1.0", 7, "power_on", 61234, -61)
    assert (d["mqtt_reconnects"], d["wifi_reconnects"], d["config_error"]) == (0, 1, None)
    assert d["health"] == "degraded" and d["problems"] == ["winding: not present"]
    assert d["sensors"]["winding"] == {"type": "ds18b20", "present": False, "reads": 0, "errors": 12,
                                       "stuck": False, "last_error": "no such probe"}
    assert d["sensors"]["bearing"]["reads"] == 1
    assert json.loads(json.dumps(d)) == d
    assert payload.diag(1, "0.1.0", 7, "soft", {"bearing": b}, 50000, None, 0, 0)["health"] == "ok"


def test_diag_with_config_error():
    d = payload.diag(1, "0.1.0", 2, "hard", [], 50000, -70, 3, 4, "sensors[1].addr: 300 is not one of 83, 29")
    assert d["health"] == "fault" and d["sensors"] == {}
    assert d["config_error"] == "sensors[1].addr: 300 is not one of 83, 29"


def test_ack():
    doc = _load(payload.ack("c-17", "ping", True, {"up": 612000, "fw": "0.1.0", "boot": 7}))
    assert doc == {"id": "c-17", "cmd": "ping", "ok": True, "result": {"up": 612000, "fw": "0.1.0", "boot": 7}}
    doc = _load(payload.ack("c-19", "frobnicate", False, error="unknown command 'frobnicate'"))
    assert doc == {"id": "c-19", "cmd": "frobnicate", "ok": False, "error": "unknown command 'frobnicate'"}
    doc = _load(payload.ack(None, None, False, error="not valid JSON"))
    assert doc == {"id": None, "cmd": None, "ok": False, "error": "not valid JSON"}
