"""Cases for node.config; plain functions in the MicroPython subset (run on CPython and in the VM).

FILES are written to a directory by the runner, which sets DATA to its path before any case runs.
The directory is writable: the last-known-good cases make their own files there.
"""
import json
import os

from caselib import exists, fresh_path, read_text
from node import config

DATA = None  # set by the runner: a directory holding FILES

# A real (public) CA certificate, EC P-256, made with floorwatch.security.pki for these cases.
CA = """-----BEGIN CERTIFICATE-----
MIIBcDCCARWgAwIBAgIUPyYPcgEX+4Giz3S/gavDjy6qcukwCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIY2FzZXMgQ0EwIBcNMjYxMTI1MTMzMTQ1WhgPMjEyNjExMDIx
MzMxNDVaMBMxETAPBgNVBAMMCGNhc2VzIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEsRLcYWHpo8F7f3Ek8DjpdLxWlkCjidQ2EJFlR532cAP4P5oj+50eL4H6
ndQi8189UiPy70lgUZbFpAkKMHO4HaNFMEMwEgYDVR0TAQH/BAgwBgEB/wIBADAO
BgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFBfJ75UpgZ6W+GbnEuQK47An8KohMAoG
CCqGSM49BAMCA0kAMEYCIQDBkCNfJ2ECI/LvOErAi3FJC+A+P5kEKbV1rzRZ/iuy
DAIhAJBrv0iyLY7vTppMB2WFqDBSw8yo9UMGl7vg+RJ68d8d
-----END CERTIFICATE-----
"""
CA_DER_LEN = 372  # bytes of DER in CA

GOOD = (
    '{"device_id": "press-07", "site": "plant-a", "wifi": {"ssid": "factory", "password": "pw"},'
    ' "broker": {"host": "10.0.0.2"}, "sensors": [{"name": "chip", "type": "mcu_temp"}]}'
)
FILES = {
    "good.json": GOOD,
    "broken.json": '{"device_id": "press-07", ',
    "rejected.json": GOOD.replace('"press-07"', '"Press 07"'),
    "list.json": "[1, 2]",
}


def _limits(warn=None, alarm=None, deadband=0, **more):
    """A threshold with every field written out."""
    t = {"warn": warn, "alarm": alarm, "deadband": deadband, "on_delay_s": 0, "off_delay_s": 0,
         "latch": False, "realarm_s": 0, "relative": False, "early_s": None}
    t.update(more)
    return t


def _full():
    """The example of docs/contract.md, with every default written out."""
    return {
        "device_id": "press-07",
        "site": "plant-a",
        "wifi": {"ssid": "factory", "password": "secret"},
        "broker": {"host": "10.0.0.2", "port": 1883, "user": None, "password": None,
                   "tls": False, "ca": None, "keepalive_s": 30, "backup": None},
        "sensors": [
            {"name": "bearing", "type": "ds18b20", "pin": 4, "rom": "28ff641e8116037a"},
            {"name": "winding", "type": "ds18b20", "pin": 4, "rom": "28ff9a1d8116032c"},
            {"name": "chip", "type": "mcu_temp"},
            {"name": "motor", "type": "adxl345", "sda": 21, "scl": 22, "addr": 83,
             "range_g": 4, "odr_hz": 3200, "window": 1024},
        ],
        "intervals": {"temp_s": 10, "vib_s": 30, "diag_s": 60, "send_s": 300},
        "machine": {"group": 2, "foundation": "rigid", "rpm": 1480},
        "baseline": {"samples": 20},
        "trend": {"window_s": 600},
        "queue": {"flash_kb": 256, "drain_per_s": 20},
        "time": {"ntp_host": "pool.ntp.org"},
        "led": None,
        "thresholds": {
            "bearing": _limits(80, 90, 2, on_delay_s=60, early_s=900),
            "bearing.rate": _limits(1.0, None, 0.2),
            "motor.rms": _limits(0.5, 1.0, 0.05),
            "motor.kurt": _limits(1.5, 2.5, 0.2, relative=True, latch=True),
            "motor.vel": _limits(2.8, 4.5, 0.28),
        },
    }


def _minimal():
    return {"device_id": "n1", "site": "s1", "wifi": {"ssid": "w"}, "broker": {"host": "h"}}


def _walk(cfg, path):
    """(container, last key) for a dotted path; numeric parts index lists."""
    parts = path.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node[int(p)] if type(node) is list else node[p]
    last = parts[-1]
    return node, (int(last) if type(node) is list else last)


def _with(cfg, path, value):
    node, key = _walk(cfg, path)
    node[key] = value
    return cfg


def _without(cfg, path):
    node, key = _walk(cfg, path)
    del node[key]
    return cfg


def _err(raw):
    try:
        config.validate(raw)
    except config.ConfigError as e:
        return e
    raise AssertionError("accepted: " + repr(raw))


def _rejects(raw, field, words=None):
    e = _err(raw)
    assert e.field == field, "field %r, wanted %r (%s)" % (e.field, field, e)
    msg = str(e)
    assert msg.startswith(field + ": "), msg
    if words:
        assert words in msg, "%r not in %r" % (words, msg)
    return e


def test_contract_example_is_valid_and_kept():
    raw = _full()
    cfg = config.validate(raw)
    assert cfg == raw  # every field given: nothing to add or change
    assert cfg is not raw and cfg["sensors"] is not raw["sensors"]
    assert cfg["broker"] is not raw["broker"] and cfg["sensors"][0] is not raw["sensors"][0]


def test_validate_leaves_input_alone():
    raw = _minimal()
    config.validate(raw)
    assert raw == _minimal()


def test_defaults_filled():
    cfg = config.validate(_minimal())
    assert cfg["wifi"] == {"ssid": "w", "password": ""}
    assert cfg["broker"] == {"host": "h", "port": 1883, "user": None, "password": None,
                             "tls": False, "ca": None, "keepalive_s": 30, "backup": None}
    assert cfg["sensors"] == []
    assert cfg["intervals"] == {"temp_s": 10, "vib_s": 30, "diag_s": 60, "send_s": 300}
    assert cfg["thresholds"] == {}
    assert cfg["machine"] == {"group": 2, "foundation": "rigid", "rpm": None}
    assert cfg["baseline"] == {"samples": 20}
    assert cfg["trend"] == {"window_s": 600}
    assert cfg["queue"] == {"flash_kb": 256, "drain_per_s": 20}
    assert cfg["time"] == {"ntp_host": "pool.ntp.org"}
    assert cfg["led"] is None
    assert sorted(cfg) == ["baseline", "broker", "device_id", "intervals", "led", "machine", "queue", "sensors",
                           "site", "thresholds", "time", "trend", "wifi"]


def _tls(raw, path="broker"):
    """raw with tls on for the broker entry at path, and the CA that needs."""
    return _with(_with(raw, path + ".tls", True), path + ".ca", CA)


def test_tls_changes_default_port_only():
    cfg = config.validate(_tls(_minimal()))
    assert cfg["broker"]["port"] == 8883
    raw = _tls(_minimal())
    raw["broker"]["port"] = 1884
    assert config.validate(raw)["broker"]["port"] == 1884


def test_sensor_defaults_per_type():
    raw = _minimal()
    raw["sensors"] = [
        {"name": "t", "type": "ds18b20", "pin": 4},
        {"name": "c", "type": "mcu_temp"},
        {"name": "a", "type": "adxl345", "sda": 21, "scl": 22},
        {"name": "m", "type": "mpu6050", "sda": 21, "scl": 22},
    ]
    s = config.validate(raw)["sensors"]
    assert s[0] == {"name": "t", "type": "ds18b20", "pin": 4, "rom": None}
    assert s[1] == {"name": "c", "type": "mcu_temp"}
    assert s[2] == {"name": "a", "type": "adxl345", "sda": 21, "scl": 22, "addr": 83,
                    "range_g": 4, "odr_hz": 3200, "window": 1024}
    assert s[3] == {"name": "m", "type": "mpu6050", "sda": 21, "scl": 22, "addr": 104,
                    "range_g": 4, "odr_hz": 1000, "window": 1024}


def test_limit_defaults():
    raw = _full()
    raw["thresholds"] = {"bearing": {"warn": 80}, "chip": {"alarm": 70}}
    t = config.validate(raw)["thresholds"]
    assert t["bearing"] == _limits(80)
    assert t["chip"] == _limits(None, 70)
    assert t["motor.vel"] == _limits(2.8, 4.5, 0.28)  # ISO 10816-3, group 2, rigid


def test_missing_required_fields():
    for path in ("device_id", "site", "wifi", "wifi.ssid", "broker", "broker.host",
                 "sensors.0.name", "sensors.0.type", "sensors.0.pin",
                 "sensors.3.sda", "sensors.3.scl"):
        field = path.replace(".0.", "[0].").replace(".3.", "[3].")
        _rejects(_without(_full(), path), field, "missing")


def test_wrong_types():
    cases = (
        ("device_id", 7, "device_id", "7 is not a string"),
        ("wifi", "factory", "wifi", "'factory' is not an object"),
        ("wifi.ssid", 5, "wifi.ssid", "5 is not a string"),
        ("wifi.password", 12345678, "wifi.password", "is not a string"),
        ("broker.host", None, "broker.host", "null is not a string"),
        ("broker.port", "abc", "broker.port", "'abc' is not an integer"),
        ("broker.port", 1883.0, "broker.port", "is not an integer"),
        ("broker.port", None, "broker.port", "null is not an integer"),
        ("broker.user", 5, "broker.user", "5 is not a string or null"),
        ("broker.tls", 1, "broker.tls", "1 is not true or false"),
        ("broker.tls", "yes", "broker.tls", "'yes' is not true or false"),
        ("broker.keepalive_s", "30", "broker.keepalive_s", "'30' is not an integer"),
        ("sensors", {}, "sensors", "{} is not a list"),
        ("sensors.1", "winding", "sensors[1]", "'winding' is not an object"),
        ("sensors.0.pin", "4", "sensors[0].pin", "'4' is not an integer"),
        ("sensors.0.rom", 123, "sensors[0].rom", "is not 16 hex digits"),
        ("sensors.3.window", 512.5, "sensors[3].window", "is not one of 64, 128, 256, 512, 1024, 2048"),
        ("sensors.3.window", 500, "sensors[3].window", "500 is not one of 64, 128"),
        ("machine.group", 3, "machine.group", "3 is not one of 1, 2"),
        ("machine.foundation", "soft", "machine.foundation", "'soft' is not one of rigid, flexible"),
        ("machine.rpm", "fast", "machine.rpm", "'fast' is not a number or null"),
        ("baseline.samples", 2.5, "baseline.samples", "2.5 is not an integer"),
        ("thresholds.bearing.latch", 1, "thresholds.bearing.latch", "1 is not true or false"),
        ("thresholds.bearing.relative", "no", "thresholds.bearing.relative", "is not true or false"),
        ("thresholds.bearing.on_delay_s", None, "thresholds.bearing.on_delay_s", "null is not a number"),
        ("intervals", [], "intervals", "[] is not an object"),
        ("intervals.temp_s", "10", "intervals.temp_s", "'10' is not a number"),
        ("thresholds", [], "thresholds", "[] is not an object"),
        ("thresholds.bearing", 80, "thresholds.bearing", "80 is not an object"),
        ("thresholds.bearing.warn", "80", "thresholds.bearing.warn", "'80' is not a number or null"),
        ("thresholds.bearing.deadband", None, "thresholds.bearing.deadband", "null is not a number"),
        ("broker.backup", "10.0.0.3", "broker.backup", "'10.0.0.3' is not an object or null"),
        ("broker.backup", [], "broker.backup", "[] is not an object or null"),
        ("queue", 256, "queue", "256 is not an object"),
        ("queue.flash_kb", "256", "queue.flash_kb", "'256' is not an integer"),
        ("queue.flash_kb", 256.0, "queue.flash_kb", "256.0 is not an integer"),
        ("queue.flash_kb", None, "queue.flash_kb", "null is not an integer"),
        ("queue.drain_per_s", "20", "queue.drain_per_s", "'20' is not a number"),
        ("queue.drain_per_s", None, "queue.drain_per_s", "null is not a number"),
        ("time", None, "time", "null is not an object"),
        ("time.ntp_host", 5, "time.ntp_host", "5 is not a string or null"),
        ("time.ntp_host", ["pool.ntp.org"], "time.ntp_host", "is not a string"),
    )
    for path, value, field, words in cases:
        _rejects(_with(_full(), path, value), field, words)
    e = _rejects(_with(_full(), "broker.port", "abc"), "broker.port")
    assert str(e) == "broker.port: 'abc' is not an integer"
    assert e.value == "abc"


def test_root_must_be_an_object():
    for raw in ([], "cfg", None, 3):
        e = _err(raw)
        assert str(e).startswith("config: "), str(e)


def test_bool_is_not_a_number():
    for path in ("broker.port", "broker.keepalive_s", "sensors.0.pin", "sensors.3.sda",
                 "sensors.3.addr", "sensors.3.range_g", "sensors.3.odr_hz", "sensors.3.window",
                 "intervals.temp_s", "intervals.diag_s", "thresholds.bearing.warn",
                 "thresholds.bearing.deadband", "queue.flash_kb", "queue.drain_per_s"):
        for value in (True, False):
            e = _err(_with(_full(), path, value))
            assert str(e).split(": ")[1].startswith("true" if value else "false"), str(e)
            assert e.value is value


def test_out_of_range():
    cases = (
        ("broker.port", 0, "1..65535"), ("broker.port", 65536, "1..65535"),
        ("broker.keepalive_s", 4, "5..3600"), ("broker.keepalive_s", 3601, "5..3600"),
        ("intervals.temp_s", 0, "1..3600"), ("intervals.temp_s", 3600.5, "1..3600"),
        ("intervals.vib_s", 0.5, "1..3600"), ("intervals.diag_s", 9, "10..86400"),
        ("intervals.diag_s", 86401, "10..86400"),
        ("sensors.0.pin", -1, "0..48"), ("sensors.0.pin", 49, "0..48"),
        ("sensors.3.sda", 49, "0..48"), ("sensors.3.scl", -1, "0..48"),
        ("thresholds.bearing.deadband", -0.5, "below 0"),
        ("machine.rpm", 0, "1..100000"), ("baseline.samples", 0, "1..1000"),
        ("trend.window_s", 29, "30..86400"), ("thresholds.bearing.on_delay_s", -1, "0..86400"),
        ("thresholds.bearing.off_delay_s", 86401, "0..86400"), ("thresholds.bearing.realarm_s", -5, "0..604800"),
        ("thresholds.bearing.early_s", 0, "1..604800"),
        ("queue.flash_kb", 15, "16..1024"), ("queue.flash_kb", 1025, "16..1024"),
        ("queue.flash_kb", 0, "16..1024"), ("queue.drain_per_s", 0.5, "1..200"),
        ("queue.drain_per_s", 200.5, "1..200"), ("queue.drain_per_s", -1, "1..200"),
    )
    for path, value, words in cases:
        field = path.replace(".0.", "[0].").replace(".3.", "[3].")
        e = _rejects(_with(_full(), path, value), field, words)
        assert e.value == value
    e = _err(_with(_full(), "intervals.temp_s", 0))
    assert str(e) == "intervals.temp_s: 0 is out of range 1..3600"


def test_range_edges_accepted():
    for path, value in (("broker.port", 1), ("broker.port", 65535), ("broker.keepalive_s", 5),
                        ("broker.keepalive_s", 3600), ("intervals.temp_s", 1),
                        ("intervals.temp_s", 2.5), ("intervals.vib_s", 3600),
                        ("intervals.diag_s", 10), ("intervals.diag_s", 86400),
                        ("sensors.0.pin", 0), ("sensors.0.pin", 48), ("sensors.3.window", 64),
                        ("sensors.3.window", 2048), ("thresholds.bearing.deadband", 0),
                        ("queue.flash_kb", 16), ("queue.flash_kb", 1024), ("queue.drain_per_s", 1),
                        ("queue.drain_per_s", 200), ("queue.drain_per_s", 2.5)):
        cfg = config.validate(_with(_full(), path, value))
        node, key = _walk(cfg, path)
        assert node[key] == value


def test_string_lengths():
    _rejects(_with(_full(), "wifi.ssid", ""), "wifi.ssid", "1..32")
    _rejects(_with(_full(), "wifi.ssid", "x" * 33), "wifi.ssid", "1..32")
    assert config.validate(_with(_full(), "wifi.ssid", "x" * 32))["wifi"]["ssid"] == "x" * 32
    _rejects(_with(_full(), "wifi.password", "p" * 64), "wifi.password", "0..63")
    assert config.validate(_with(_full(), "wifi.password", ""))["wifi"]["password"] == ""
    _rejects(_with(_full(), "broker.host", ""), "broker.host", "1..253")
    _rejects(_with(_full(), "broker.host", "h" * 254), "broker.host", "1..253")
    assert config.validate(_with(_full(), "broker.host", "h" * 253))
    _rejects(_with(_full(), "time.ntp_host", ""), "time.ntp_host", "'' is not 1..253 characters long")
    _rejects(_with(_full(), "time.ntp_host", "n" * 254), "time.ntp_host", "1..253")
    for host in ("n", "n" * 253, "10.0.0.1", None):
        assert config.validate(_with(_full(), "time.ntp_host", host))["time"]["ntp_host"] == host


def test_passwords_never_echoed():
    secret = "hunter2-" * 9  # 72 characters: too long
    for path in ("wifi.password", "broker.password"):
        e = _err(_with(_full(), path, secret if path[0] == "w" else 42424242))
        assert "hunter2" not in str(e) and "42424242" not in str(e), str(e)
        assert e.field == path


def test_one_of():
    e = _rejects(_with(_full(), "sensors.3.addr", 300), "sensors[3].addr")
    assert str(e) == "sensors[3].addr: 300 is not one of 83, 29"
    assert e.value == 300
    assert config.validate(_with(_full(), "sensors.3.addr", 29))["sensors"][3]["addr"] == 29
    _rejects(_with(_full(), "sensors.3.addr", 83.0), "sensors[3].addr", "not one of 83, 29")
    _rejects(_with(_full(), "sensors.3.range_g", 3), "sensors[3].range_g", "2, 4, 8, 16")
    _rejects(_with(_full(), "sensors.3.range_g", 4.0), "sensors[3].range_g", "2, 4, 8, 16")
    _rejects(_with(_full(), "sensors.3.odr_hz", 1000), "sensors[3].odr_hz",
             "not one of 100, 200, 400, 800, 1600, 3200")
    for odr in (100, 3200):
        assert config.validate(_with(_full(), "sensors.3.odr_hz", odr))["sensors"][3]["odr_hz"] == odr
    _rejects(_with(_full(), "sensors.2.type", "bmp280"), "sensors[2].type",
             "'bmp280' is not one of ds18b20, mcu_temp, adxl345, mpu6050")


def _mpu(**kw):
    raw = _minimal()
    s = {"name": "m", "type": "mpu6050", "sda": 21, "scl": 22}
    for k in kw:
        s[k] = kw[k]
    raw["sensors"] = [s]
    return raw


def test_mpu6050_rules():
    for addr in (104, 105):
        assert config.validate(_mpu(addr=addr))["sensors"][0]["addr"] == addr
    _rejects(_mpu(addr=83), "sensors[0].addr", "83 is not one of 104, 105")
    for odr in (1000, 500, 250, 200, 125, 100, 50, 40, 25, 20, 10, 8, 5, 4):
        assert config.validate(_mpu(odr_hz=odr))["sensors"][0]["odr_hz"] == odr
    allowed = "is not one of 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000"
    _rejects(_mpu(odr_hz=300), "sensors[0].odr_hz", "300 " + allowed)  # does not divide 1000
    _rejects(_mpu(odr_hz=1600), "sensors[0].odr_hz", allowed)
    _rejects(_mpu(odr_hz=2), "sensors[0].odr_hz", allowed)  # beyond the 8-bit divider
    _rejects(_mpu(odr_hz=1000.0), "sensors[0].odr_hz", allowed)
    _rejects(_mpu(range_g=16, window=2049), "sensors[0].window", "2049 is not one of 64, 128")


def test_names():
    good = ("a", "0", "press-07", "a_b-c", "x" * 32)
    bad = ("", "Press", "-a", "_a", "a b", "a/b", "a+", "a#", "x" * 33, "é")
    for v in good:
        assert config.validate(_with(_full(), "device_id", v))["device_id"] == v
        assert config.validate(_with(_full(), "site", v))["site"] == v
    for v in bad:
        _rejects(_with(_full(), "device_id", v), "device_id", "is not a valid name")
        _rejects(_with(_full(), "site", v), "site", "is not a valid name")
    assert config.validate(_with(_full(), "sensors.2.name", "c" * 16))["sensors"][2]["name"] == "c" * 16
    _rejects(_with(_full(), "sensors.2.name", "c" * 17), "sensors[2].name", "1..16")
    _rejects(_with(_full(), "sensors.2.name", "Chip"), "sensors[2].name", "not a valid name")
    _rejects(_with(_full(), "sensors.2.name", "motor.x"), "sensors[2].name", "not a valid name")


def test_unknown_keys():
    cases = (
        ("colour", "colour"), ("wifi.bssid", "wifi.bssid"), ("broker.qos", "broker.qos"),
        ("sensors.2.colour", "sensors[2].colour"), ("intervals.pub_s", "intervals.pub_s"),
        ("thresholds.bearing.hysteresis", "thresholds.bearing.hysteresis"),
        ("sensors.0.addr", "sensors[0].addr"),  # an accelerometer key on a ds18b20
        ("sensors.3.pin", "sensors[3].pin"),  # and a ds18b20 key on an accelerometer
        ("sensors.2.pin", "sensors[2].pin"),
        ("queue.ram_kb", "queue.ram_kb"), ("time.tz", "time.tz"),
    )
    for path, field in cases:
        e = _rejects(_with(_full(), path, 1), field)
        assert str(e) == field + ": unknown key", str(e)
    e = _err(_with(_with(_full(), "zeta", 1), "alpha", 2))
    assert e.field == "alpha"  # the first in sorted order, whatever the dict order


def test_first_problem_in_table_order():
    raw = _with(_with(_full(), "broker.port", 0), "device_id", "BAD")
    assert _err(raw).field == "device_id"
    raw = _with(_with(_full(), "sensors.3.window", 1), "sensors.1.pin", 99)
    assert _err(raw).field == "sensors[1].pin"


def test_sensor_list_limits():
    raw = _minimal()
    raw["sensors"] = [{"name": "t%d" % i, "type": "ds18b20", "pin": i} for i in range(8)]
    assert len(config.validate(raw)["sensors"]) == 8
    raw["sensors"].append({"name": "t8", "type": "ds18b20", "pin": 8})
    e = _rejects(raw, "sensors", "9 entries")
    assert "at most 8" in str(e)


def test_duplicate_names():
    raw = _with(_full(), "sensors.2.name", "bearing")
    e = _rejects(raw, "sensors[2].name", "'bearing' is already used by sensors[0]")
    assert e.value == "bearing"


def _probes(*specs):
    raw = _minimal()
    raw["sensors"] = []
    for i in range(len(specs)):
        s = {"name": "s%d" % i}
        for k in specs[i]:
            s[k] = specs[i][k]
        raw["sensors"].append(s)
    return raw


def test_same_device_twice():
    ds = "ds18b20"
    a, b = "28ff641e8116037a", "28ff9a1d8116032c"
    ok = (
        _probes({"type": ds, "pin": 4, "rom": a}, {"type": ds, "pin": 4, "rom": b}),
        _probes({"type": ds, "pin": 4}, {"type": ds, "pin": 5}),
        _probes({"type": ds, "pin": 4, "rom": a}, {"type": ds, "pin": 5, "rom": a}),
        _probes({"type": "adxl345", "sda": 21, "scl": 22}, {"type": "adxl345", "sda": 21, "scl": 22, "addr": 29}),
        _probes({"type": "adxl345", "sda": 21, "scl": 22}, {"type": "mpu6050", "sda": 21, "scl": 22}),
        _probes({"type": "adxl345", "sda": 21, "scl": 22}, {"type": "adxl345", "sda": 25, "scl": 26}),
    )
    for raw in ok:
        assert len(config.validate(raw)["sensors"]) == 2
    bad = (
        (_probes({"type": ds, "pin": 4, "rom": a}, {"type": ds, "pin": 4, "rom": a.upper()}), "sensors[1].rom"),
        (_probes({"type": ds, "pin": 4}, {"type": ds, "pin": 4, "rom": b}), "sensors[1].rom"),
        (_probes({"type": ds, "pin": 4, "rom": a}, {"type": ds, "pin": 4}), "sensors[1].rom"),
        (_probes({"type": "mpu6050", "sda": 1, "scl": 2}, {"type": "mpu6050", "sda": 1, "scl": 2, "addr": 104}),
         "sensors[1].addr"),
        (_probes({"type": "mcu_temp"}, {"type": "mcu_temp"}), "sensors[1].type"),
    )
    for raw, field in bad:
        _rejects(raw, field, "clashes with sensors[0]")


def test_rom_rules():
    cfg = config.validate(_with(_full(), "sensors.0.rom", "28FF641E8116037A"))
    assert cfg["sensors"][0]["rom"] == "28ff641e8116037a"
    alone = _without(_full(), "sensors.1")  # null: the only probe on its pin
    assert config.validate(_with(alone, "sensors.0.rom", None))["sensors"][0]["rom"] is None
    for rom, words in (("28ff641e8116037", "16 hex digits"), ("28ff641e8116037a0", "16 hex digits"),
                       ("28ff641e8116037g", "16 hex digits"), ("10ff641e8116037a", "family code 28")):
        _rejects(_with(_full(), "sensors.0.rom", rom), "sensors[0].rom", words)


def test_threshold_metrics():
    for metric in ("bearing", "winding", "chip", "motor.rms", "motor.pk", "motor.cf"):
        raw = _full()
        raw["thresholds"] = {metric: {"alarm": 1}}
        assert metric in config.validate(raw)["thresholds"]
    for metric in ("motor", "bearing.rms", "motor.kurtosis", "pump", "pump.rms", "motor.rms.x", ""):
        raw = _full()
        raw["thresholds"][metric] = {"alarm": 1}
        e = _rejects(raw, "thresholds." + metric, "is not a metric of a configured sensor")
        assert e.value == metric
    raw = _minimal()
    raw["thresholds"] = {"bearing": {"warn": 1}}
    _rejects(raw, "thresholds.bearing", "not a metric")


def test_metric_names():
    cfg = config.validate(_full())
    assert config.metric_names(cfg["sensors"]) == [
        "bearing", "bearing.rate", "bearing.rise", "winding", "winding.rate", "winding.rise",
        "chip", "chip.rate", "chip.rise", "motor.rms", "motor.pk", "motor.cf", "motor.kurt", "motor.vel"]


def test_threshold_values():
    raw = _with(_full(), "thresholds.bearing.warn", 95)
    e = _rejects(raw, "thresholds.bearing.warn")
    assert str(e) == "thresholds.bearing.warn: 95 is above alarm 90"
    raw = _full()
    raw["thresholds"]["bearing"] = {"warn": 90, "alarm": 90}
    assert config.validate(raw)["thresholds"]["bearing"]["warn"] == 90
    for limits in ({}, {"warn": None}, {"warn": None, "alarm": None, "deadband": 1}):
        raw = _full()
        raw["thresholds"]["bearing"] = limits
        _rejects(raw, "thresholds.bearing", "needs warn or alarm")
    raw = _full()
    raw["thresholds"]["bearing"] = {"warn": -10.5, "alarm": None, "deadband": 0.5}
    assert config.validate(raw)["thresholds"]["bearing"]["warn"] == -10.5
    for bad in (float("inf"), float("nan"), -float("inf")):
        _rejects(_with(_full(), "thresholds.bearing.alarm", bad), "thresholds.bearing.alarm", "not a number")


def test_error_is_a_value_error_with_field_and_value():
    e = _err(_with(_full(), "sensors.1.pin", 300))
    assert isinstance(e, ValueError)
    assert e.field == "sensors[1].pin" and e.value == 300
    assert "\n" not in str(e)


def test_long_values_are_shortened_in_messages():
    e = _err(_with(_full(), "device_id", "Q" * 500))
    assert len(str(e)) < 200, str(e)
    assert e.value == "Q" * 500


def test_load_good_file():
    cfg, err = config.load(DATA + "/good.json")
    assert err is None
    assert cfg["device_id"] == "press-07" and cfg["broker"]["port"] == 1883
    assert cfg["sensors"] == [{"name": "chip", "type": "mcu_temp"}]


def test_load_problems_give_one_line():
    for name, words in (("missing.json", "cannot read"), ("broken.json", "not valid JSON"),
                        ("rejected.json", "device_id: 'Press 07' is not a valid name"),
                        ("list.json", "config: [1, 2] is not an object")):
        cfg, err = config.load(DATA + "/" + name)
        assert cfg is None
        assert type(err) is str and words in err, err
        assert "\n" not in err and "\r" not in err


def test_read_returns_raw_json():
    raw = config.read(DATA + "/rejected.json")
    assert raw["device_id"] == "Press 07"


def test_salvage():
    raw = _with(_full(), "thresholds.bearing.warn", 99)  # invalid, but the network part is fine
    got = config.salvage(raw)
    assert got == ("press-07", "plant-a", {"ssid": "factory", "password": "secret"},
                   {"host": "10.0.0.2", "port": 1883, "user": None, "password": None,
                    "tls": False, "ca": None, "keepalive_s": 30, "backup": None})
    got = config.salvage({"device_id": "n", "site": "s", "wifi": {"ssid": "w", "bssid": "x"},
                          "broker": {"host": "h", "tls": True, "ca": CA}, "sensors": "garbage"})
    assert got[2] == {"ssid": "w", "password": ""}
    assert got[3]["port"] == 8883


def test_salvage_keeps_a_good_backup_and_drops_a_bad_one():
    raw = _with(_full(), "thresholds.bearing.warn", 99)
    raw["broker"]["backup"] = {"host": "b2", "tls": True, "ca": CA, "qos": 1}  # unknown keys ignored here
    got = config.salvage(raw)[3]
    assert got["backup"] == {"host": "b2", "port": 8883, "user": None, "password": None, "tls": True, "ca": CA}
    assert config.brokers(got)[1]["keepalive_s"] == 30
    for bad in ({"port": 1}, {"host": ""}, "b2", {"host": "b2", "port": "x"}, {"host": "b2", "tls": True}):
        raw["broker"]["backup"] = bad
        got = config.salvage(raw)
        assert got is not None and got[3]["host"] == "10.0.0.2" and got[3]["backup"] is None, repr(bad)


def test_salvage_gives_up():
    for raw in (None, [], "x", {}, _without(_full(), "wifi"), _with(_full(), "broker.port", "x"),
                _with(_full(), "device_id", "BAD ID"), _without(_full(), "wifi.ssid"),
                _with(_full(), "broker.tls", True)):  # TLS without a CA: the node could not check the broker
        assert config.salvage(raw) is None, repr(raw)


def test_limit_management_fields():
    raw = _full()
    raw["thresholds"]["bearing"] = {"warn": 80, "alarm": 90, "on_delay_s": 60, "off_delay_s": 30,
                                    "latch": True, "realarm_s": 3600, "early_s": 900}
    raw["thresholds"]["motor.kurt"] = {"warn": 1.5, "alarm": 2.5, "relative": True}
    raw["thresholds"]["bearing.rate"] = {"warn": 0.5}
    t = config.validate(raw)["thresholds"]
    assert t["bearing"] == {"warn": 80, "alarm": 90, "deadband": 0, "on_delay_s": 60, "off_delay_s": 30,
                            "latch": True, "realarm_s": 3600, "relative": False, "early_s": 900}
    assert t["motor.kurt"]["relative"] is True and t["motor.kurt"]["early_s"] is None
    assert t["bearing.rate"]["on_delay_s"] == 0 and t["bearing.rate"]["latch"] is False


def test_early_warning_needs_an_absolute_temperature_limit():
    for metric, limits in (("bearing.rate", {"warn": 1, "early_s": 60}),
                           ("motor.vel", {"warn": 1, "early_s": 60}),
                           ("bearing", {"warn": 1.1, "relative": True, "early_s": 60})):
        raw = _full()
        raw["thresholds"][metric] = limits
        _rejects(raw, "thresholds." + metric + ".early_s", "needs an absolute temperature limit")


def test_iso_velocity_limits_by_default():
    raw = _full()
    del raw["thresholds"]["motor.vel"]
    cfg = config.validate(raw)
    assert cfg["thresholds"]["motor.vel"] == {
        "warn": 2.8, "alarm": 4.5, "deadband": 0.28, "on_delay_s": 0, "off_delay_s": 0, "latch": False,
        "realarm_s": 0, "relative": False, "early_s": None}
    for group, foundation, warn, alarm in ((1, "rigid", 4.5, 7.1), (1, "flexible", 7.1, 11.0),
                                           (2, "flexible", 4.5, 7.1)):
        raw = _with(_with(_full(), "machine.group", group), "machine.foundation", foundation)
        del raw["thresholds"]["motor.vel"]
        t = config.validate(raw)["thresholds"]["motor.vel"]
        assert (t["warn"], t["alarm"]) == (warn, alarm)
    raw = _full()
    raw["thresholds"]["motor.vel"] = {"alarm": 6}
    t = config.validate(raw)["thresholds"]["motor.vel"]
    assert t["warn"] is None and t["alarm"] == 6  # given limits win
    assert "x.vel" not in config.validate(_minimal())["thresholds"]


# ---- the backup broker, the queue and time sections ----

def _backup(**kw):
    raw = _full()
    b = {"host": "10.0.0.3"}
    for k in kw:
        b[k] = kw[k]
    raw["broker"]["backup"] = b
    return raw


def test_backup_broker_defaults():
    cfg = config.validate(_backup())
    assert cfg["broker"]["backup"] == {"host": "10.0.0.3", "port": 1883, "user": None, "password": None,
                                       "tls": False, "ca": None}
    assert cfg["broker"]["port"] == 1883 and cfg["broker"]["keepalive_s"] == 30
    # The port follows the backup's own tls, not the primary's.
    cfg = config.validate(_with(_without(_backup(tls=True, ca=CA), "broker.port"), "broker.tls", False))
    assert cfg["broker"]["backup"]["port"] == 8883 and cfg["broker"]["port"] == 1883
    cfg = config.validate(_tls(_without(_backup(), "broker.port")))
    assert cfg["broker"]["backup"]["port"] == 1883 and cfg["broker"]["port"] == 8883
    full = {"host": "b", "port": 1884, "user": "u", "password": "p", "tls": True, "ca": CA}
    raw = _backup(**full)
    cfg = config.validate(raw)
    assert cfg["broker"]["backup"] == full
    assert cfg["broker"]["backup"] is not raw["broker"]["backup"]
    assert config.validate(_with(_full(), "broker.backup", None))["broker"]["backup"] is None


def test_backup_broker_rules_are_the_brokers():
    _rejects(_backup(host=None), "broker.backup.host", "null is not a string")
    _rejects(_backup(user=5), "broker.backup.user", "5 is not a string or null")
    _rejects(_with(_full(), "broker.backup", {}), "broker.backup.host", "missing (required)")
    _rejects(_with(_full(), "broker.backup", {"port": 1883}), "broker.backup.host", "missing (required)")
    _rejects(_backup(host=""), "broker.backup.host", "1..253")
    _rejects(_backup(host="h" * 254), "broker.backup.host", "1..253")
    e = _rejects(_backup(port=0), "broker.backup.port")
    assert str(e) == "broker.backup.port: 0 is out of range 1..65535"
    _rejects(_backup(port=65536), "broker.backup.port", "1..65535")
    _rejects(_backup(port=1883.0), "broker.backup.port", "is not an integer")
    _rejects(_backup(port=True), "broker.backup.port", "true is not an integer")
    _rejects(_backup(user=5), "broker.backup.user", "5 is not a string")
    _rejects(_backup(tls=1), "broker.backup.tls", "1 is not true or false")
    e = _rejects(_backup(password=42424242), "broker.backup.password", "<hidden>")
    assert "42424242" not in str(e)
    # The keepalive is the primary's: naming it here is a typo like any other.
    e = _rejects(_backup(keepalive_s=30), "broker.backup.keepalive_s")
    assert str(e) == "broker.backup.keepalive_s: unknown key"
    e = _rejects(_backup(backup=None), "broker.backup.backup")
    assert str(e) == "broker.backup.backup: unknown key"
    # The first problem in table order: the primary's fields come first.
    assert _err(_with(_backup(port=0), "broker.keepalive_s", 1)).field == "broker.keepalive_s"


def test_brokers_list_for_the_link():
    cfg = config.validate(_full())
    assert config.brokers(cfg["broker"]) == [
        {"host": "10.0.0.2", "port": 1883, "user": None, "password": None, "tls": False, "ca": None,
         "keepalive_s": 30}]
    cfg = config.validate(_with(_backup(tls=True, ca=CA, user="u"), "broker.keepalive_s", 45))
    got = config.brokers(cfg["broker"])
    assert got[0] == {"host": "10.0.0.2", "port": 1883, "user": None, "password": None, "tls": False,
                      "ca": None, "keepalive_s": 45}
    assert got[1] == {"host": "10.0.0.3", "port": 8883, "user": "u", "password": None, "tls": True,
                      "ca": CA, "keepalive_s": 45}
    assert len(got) == 2 and "backup" not in got[0]


def test_queue_and_time_given():
    raw = _with(_with(_full(), "queue", {"flash_kb": 64}), "time", {"ntp_host": None})
    cfg = config.validate(raw)
    assert cfg["queue"] == {"flash_kb": 64, "drain_per_s": 20}
    assert cfg["time"] == {"ntp_host": None}  # null: never sync
    raw = _with(_full(), "queue", {"drain_per_s": 7.5})
    assert config.validate(raw)["queue"] == {"flash_kb": 256, "drain_per_s": 7.5}
    raw = _with(_full(), "time", {})
    assert config.validate(raw)["time"] == {"ntp_host": "pool.ntp.org"}
    for bad in (float("inf"), float("nan")):
        _rejects(_with(_full(), "queue.drain_per_s", bad), "queue.drain_per_s", "not a number")


# ---- the last known good config ----

def _fresh(name):
    return fresh_path(DATA, name)


def _put(p, data):
    with open(p, "wb" if type(data) is bytes else "w") as f:
        f.write(data)
    return p


class _CountingWrites:
    """Stands in for config.write_atomic, counting the writes it passes on."""

    def __init__(self):
        self.real = config.write_atomic
        self.paths = []

    def __call__(self, path, text):
        self.paths.append(path)
        self.real(path, text)

    def __enter__(self):
        config.write_atomic = self
        return self

    def __exit__(self, *exc):
        config.write_atomic = self.real


OTHER = GOOD.replace('"press-07"', '"press-08"')


def test_a_good_config_becomes_the_last_good_copy():
    path, good = _fresh("lg_cfg.json"), _fresh("lg_good.json")
    _put(path, GOOD)
    cfg, err, fallback = config.load_or_last_good(path, good)
    assert err is None and fallback is None
    assert cfg == config.load(path)[0] and cfg["device_id"] == "press-07"
    assert read_text(good) == GOOD  # byte for byte what was validated
    assert not exists(good + ".tmp")
    _put(path, OTHER)  # an edited, still valid config refreshes the copy
    cfg, err, fallback = config.load_or_last_good(path, good)
    assert (cfg["device_id"], err, fallback) == ("press-08", None, None)
    assert read_text(good) == OTHER and not exists(good + ".tmp")


def test_the_copy_is_not_rewritten_when_equal():
    path, good = _fresh("eq_cfg.json"), _fresh("eq_good.json")
    _put(path, GOOD)
    with _CountingWrites() as writes:
        config.load_or_last_good(path, good)
        assert writes.paths == [good]
        for _ in range(3):  # every later boot with the same file: no flash write
            cfg, err, fallback = config.load_or_last_good(path, good)
            assert cfg["device_id"] == "press-07" and err is None and fallback is None
        assert writes.paths == [good]
        _put(good, GOOD + " ")  # differs, if only by a space: rewritten
        config.load_or_last_good(path, good)
        assert writes.paths == [good, good]
    assert config.write_atomic is writes.real
    assert read_text(good) == GOOD


def test_a_bad_config_falls_back_to_the_last_good_one():
    path, good = _fresh("fb_cfg.json"), _fresh("fb_good.json")
    _put(good, OTHER)
    bad = (
        # MicroPython's json forgives a missing value or comma, so the corruption here is a bare word.
        ("corrupt JSON", GOOD.replace('"plant-a"', "plant-a"), path + ": not valid JSON"),
        ("truncated", GOOD[:len(GOOD) // 2], path + ": not valid JSON"),
        ("empty", "", path + ": not valid JSON"),
        ("binary", b"\xff\xfe\x00{", path + ": not valid JSON"),
        ("deep", "[" * 5000, path + ": "),
        ("deep value", '{"device_id": ' + "[" * 5000 + "]" * 5000 + "}", path + ": "),
        ("bad field", GOOD.replace('"press-07"', '"Press 07"'),
         path + ": device_id: 'Press 07' is not a valid name"),
        ("not an object", "[1, 2]", path + ": config: [1, 2] is not an object"),
        ("unknown key", GOOD.replace('"site"', '"colour": 1, "site"'), path + ": colour: unknown key"),
    )
    with _CountingWrites() as writes:
        for what, text, words in bad:
            _put(path, text)
            cfg, err, fallback = config.load_or_last_good(path, good)
            assert err is None, what
            assert cfg is not None and cfg["device_id"] == "press-08", what
            assert type(fallback) is str and fallback.startswith(words), (what, fallback)
            assert "\n" not in fallback and "\r" not in fallback, what
        _fresh("fb_cfg.json")  # the file is gone
        cfg, err, fallback = config.load_or_last_good(path, good)
        assert cfg["device_id"] == "press-08" and err is None
        assert fallback.startswith(path + ": cannot read the file"), fallback
        assert not fallback.startswith(path + ": " + path), fallback  # the file is named once
        assert writes.paths == []  # the good copy is never touched by a bad file
    assert read_text(good) == OTHER


def test_a_bad_field_names_the_file_and_the_field():
    path, good = _fresh("fbf_cfg.json"), _fresh("fbf_good.json")
    _put(good, GOOD)
    _put(path, GOOD.replace('"10.0.0.2"', '"10.0.0.2", "port": 0'))
    cfg, err, fallback = config.load_or_last_good(path, good)
    assert fallback == path + ": broker.port: 0 is out of range 1..65535"
    assert cfg == config.load(good)[0] and err is None


def test_neither_file_loads():
    path, good = _fresh("nl_cfg.json"), _fresh("nl_good.json")
    for cfg_text in (None, "{", GOOD.replace('"press-07"', '"Press 07"')):
        for good_text in (None, "{", "[1]", GOOD.replace('"factory"', '""')):
            _fresh("nl_cfg.json")
            _fresh("nl_good.json")
            if cfg_text is not None:
                _put(path, cfg_text)
            if good_text is not None:
                _put(good, good_text)
            got = config.load_or_last_good(path, good)
            assert got == (None, config.load(path)[1], None), (cfg_text, good_text, got)
            assert type(got[1]) is str and "\n" not in got[1]
            assert good_text is not None or not exists(good)  # nothing written


def test_a_failed_copy_is_not_fatal():
    path, good = _fresh("cf_cfg.json"), _fresh("cf_good.json")
    _put(path, OTHER)
    _put(good, GOOD)
    os.mkdir(good + ".tmp")  # the copy cannot be written
    try:
        cfg, err, fallback = config.load_or_last_good(path, good)
    finally:
        os.rmdir(good + ".tmp")
    assert (cfg["device_id"], err, fallback) == ("press-08", None, None)
    assert read_text(good) == GOOD  # the old copy is intact


def test_a_directory_in_place_of_a_file():
    path, good = _fresh("dir_cfg.json"), _fresh("dir_good.json")
    os.mkdir(path)
    try:
        cfg, err, fallback = config.load_or_last_good(path, good)
        assert cfg is None and fallback is None and err.startswith(path + ": "), err
        _put(good, GOOD)
        cfg, err, fallback = config.load_or_last_good(path, good)
        assert cfg["device_id"] == "press-07" and err is None and fallback.startswith(path + ": ")
    finally:
        os.rmdir(path)


# ---- the status LED ----

def test_led_is_optional_and_defaults_to_gpio():
    assert config.validate(_with(_minimal(), "led", None))["led"] is None
    assert config.validate(_with(_minimal(), "led", {"pin": 48}))["led"] == {"pin": 48, "type": "gpio"}
    assert config.validate(_with(_minimal(), "led", {"pin": 8, "type": "ws2812"}))["led"] == {
        "pin": 8, "type": "ws2812"}


def _lit():
    """The doc's example with a GPIO LED on pin 2, as the common ESP32 DevKit clones have."""
    return _with(_full(), "led", {"pin": 2, "type": "gpio"})


def test_led_rules():
    assert config.validate(_lit())["led"] == {"pin": 2, "type": "gpio"}
    _rejects(_with(_full(), "led", "gpio2"), "led", "'gpio2' is not an object or null")
    _rejects(_with(_full(), "led", {}), "led.pin", "missing (required)")
    _rejects(_with(_lit(), "led.pin", 49), "led.pin", "49 is out of range 0..48")
    _rejects(_with(_lit(), "led.pin", True), "led.pin", "is not an integer")
    _rejects(_with(_lit(), "led.type", "rgb"), "led.type", "'rgb' is not one of gpio, ws2812")
    _rejects(_with(_lit(), "led.colour", "blue"), "led.colour", "unknown key")


def test_led_pin_must_not_be_a_sensor_pin():
    e = _rejects(_with(_lit(), "led.pin", 4), "led.pin", "4 is already used by sensors[0].pin")
    assert e.value == 4
    _rejects(_with(_lit(), "led.pin", 22), "led.pin", "22 is already used by sensors[3].scl")
    _rejects(_with(_lit(), "led.pin", 21), "led.pin", "sensors[3].sda")


# ---- set: merging intervals and thresholds ----

def test_update_merges_one_interval_and_one_limit_field():
    raw = _full()
    new, cfg = config.update(raw, {"intervals": {"temp_s": 5}, "thresholds": {"bearing": {"warn": 75}}})
    assert new["intervals"] == {"temp_s": 5, "vib_s": 30, "diag_s": 60, "send_s": 300}
    assert new["thresholds"]["bearing"] == _limits(75, 90, 2, on_delay_s=60, early_s=900)
    assert new["thresholds"]["motor.rms"] == raw["thresholds"]["motor.rms"]  # others untouched
    assert cfg == config.validate(new) and cfg["intervals"]["temp_s"] == 5
    assert raw == _full()  # the input is left alone
    assert new["wifi"] == raw["wifi"] and new["sensors"] == raw["sensors"]


def test_update_works_on_a_sparse_file_and_fills_defaults_only_in_cfg():
    raw = _minimal()
    raw["sensors"] = [{"name": "chip", "type": "mcu_temp"}]
    new, cfg = config.update(raw, {"thresholds": {"chip": {"alarm": 70}}, "intervals": {"diag_s": 120}})
    # The file keeps only what was given: defaults stay defaults (they may change with the firmware).
    assert new["thresholds"] == {"chip": {"alarm": 70}} and new["intervals"] == {"diag_s": 120}
    assert cfg["thresholds"]["chip"] == _limits(None, 70)
    assert cfg["intervals"] == {"temp_s": 10, "vib_s": 30, "diag_s": 120, "send_s": 300}


def test_update_null_removes_back_to_the_default():
    raw = _full()
    new, cfg = config.update(raw, {"thresholds": {"bearing.rate": None, "motor.vel": None,
                                                  "bearing": {"early_s": None}},
                                   "intervals": {"vib_s": None}})
    assert "bearing.rate" not in new["thresholds"] and "bearing.rate" not in cfg["thresholds"]
    assert cfg["thresholds"]["motor.vel"] == _limits(2.8, 4.5, 0.28)  # back to the ISO default
    assert "early_s" not in new["thresholds"]["bearing"] and cfg["thresholds"]["bearing"]["early_s"] is None
    assert cfg["intervals"]["vib_s"] == 30
    # Removing what is not there is no error.
    assert config.update(raw, {"thresholds": {"chip": None}})[0]["thresholds"] == raw["thresholds"]


def test_update_rejects_an_invalid_result_with_the_validation_line():
    raw = _full()
    cases = (
        ({"thresholds": {"bearing": {"warn": 95}}}, "thresholds.bearing.warn", "95 is above alarm 90"),
        ({"intervals": {"temp_s": 0}}, "intervals.temp_s", "0 is out of range 1..3600"),
        ({"intervals": {"every_s": 5}}, "intervals.every_s", "unknown key"),
        ({"thresholds": {"pump": {"warn": 1}}}, "thresholds.pump", "'pump' is not a metric"),
        ({"thresholds": {"bearing": {"warn": None, "alarm": None}}}, "thresholds.bearing", "needs warn or alarm"),
        ({"thresholds": {"bearing": {"warn": {"x": 1}}}}, "thresholds.bearing.warn", "is not a number or null"),
        ({"thresholds": {"chip": 5}}, "thresholds.chip", "5 is not an object"),
    )
    for changes, field, words in cases:
        try:
            config.update(raw, changes)
        except config.ConfigError as e:
            assert e.field == field and words in str(e) and str(e).startswith(field + ": "), (changes, str(e))
            assert "\n" not in str(e)
            continue
        raise AssertionError("accepted: " + repr(changes))
    assert raw == _full()


def test_update_sets_only_intervals_and_thresholds():
    for changes, field, words in (
        ({"wifi": {"ssid": "x"}}, "wifi", "cannot be set remotely (only intervals and thresholds)"),
        ({"intervals": {"temp_s": 5}, "broker": {}}, "broker", "cannot be set remotely"),
        ({"intervals": 5}, "intervals", "5 is not an object"),
        ({}, "set", "nothing to change"),
    ):
        try:
            config.update(_full(), changes)
        except config.ConfigError as e:
            assert e.field == field and words in str(e), (changes, str(e))
            continue
        raise AssertionError("accepted: " + repr(changes))


def test_update_depth_is_bounded():
    deep = {"warn": 1}
    for _ in range(40):
        deep = {"x": deep}
    try:
        config.update(_full(), {"thresholds": {"bearing": {"warn": deep}}})
    except config.ConfigError as e:
        assert e.field == "thresholds.bearing.warn", str(e)
        return
    raise AssertionError("accepted a nested warn")


def test_changes_lists_what_differs():
    old = config.validate(_full())
    new = config.update(_full(), {"intervals": {"temp_s": 5, "vib_s": 30},
                                  "thresholds": {"bearing": {"warn": 75}, "bearing.rate": None,
                                                 "chip": {"alarm": 70}}})[1]
    assert config.changes(old, new) == {
        "intervals.temp_s": 5,
        "thresholds.bearing.warn": 75,
        "thresholds.bearing.rate": None,
        "thresholds.chip": _limits(None, 70),
    }
    assert config.changes(old, old) == {}
    everything = config.changes(None, old)
    assert everything["intervals.diag_s"] == 60 and everything["thresholds.motor.vel"] == old["thresholds"]["motor.vel"]


def test_save_writes_the_file_and_the_last_good_copy_alike():
    import json

    path, good = _fresh("set_cfg.json"), _fresh("set_good.json")
    _put(path, GOOD)
    new = config.update(config.read(path), {"intervals": {"temp_s": 5}})[0]
    with _CountingWrites() as writes:
        config.save(new, path, good)
    assert writes.paths == [path, good]
    assert json.loads(read_text(path)) == new and read_text(good) == read_text(path)
    assert not exists(path + ".tmp") and not exists(good + ".tmp")
    with _CountingWrites() as writes:  # the next boot finds the copy equal and writes nothing
        cfg, err, fallback = config.load_or_last_good(path, good)
    assert writes.paths == [] and cfg["intervals"]["temp_s"] == 5 and (err, fallback) == (None, None)


def test_save_that_cannot_write_leaves_both_files():
    path, good = _fresh("sf_cfg.json"), _fresh("sf_good.json")
    _put(path, GOOD)
    _put(good, GOOD)
    os.mkdir(path + ".tmp")
    try:
        config.save(config.update(config.read(path), {"intervals": {"temp_s": 5}})[0], path, good)
    except OSError:
        pass
    else:
        raise AssertionError("saved over a blocked path")
    finally:
        os.rmdir(path + ".tmp")
    assert read_text(path) == GOOD and read_text(good) == GOOD


# ---- TLS: the CA certificate ----

def test_tls_needs_the_ca():
    e = _rejects(_with(_minimal(), "broker.tls", True), "broker.ca", "tls is true")
    assert "CA certificate" in str(e)
    _rejects(_with(_backup(tls=True), "broker.tls", False), "broker.backup.ca", "tls is true")
    cfg = config.validate(_tls(_minimal()))
    assert cfg["broker"]["ca"] == CA and cfg["broker"]["tls"] is True
    # A CA without tls is allowed (kept for when tls is switched on) and changes nothing else.
    assert config.validate(_with(_minimal(), "broker.ca", CA))["broker"]["port"] == 1883


def test_ca_must_hold_a_pem_certificate():
    for bad in ("", "hello", CA.replace("-----END CERTIFICATE-----", ""),
                "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):  # decodes, but is no DER
        e = _rejects(_with(_tls(_minimal()), "broker.ca", bad), "broker.ca")
        assert "is not PEM text holding a" in str(e) or "PEM certificate that is not valid" in str(e), str(e)
    _rejects(_with(_tls(_minimal()), "broker.ca", 5), "broker.ca", "5 is not a string or null")
    e = _rejects(_with(_tls(_minimal()), "broker.ca", CA + " " * 8192), "broker.ca", "is not 0..8192 characters long")
    assert len(str(e)) < 120  # the value is shown cut short
    two = CA + CA.replace("cases", "other")  # a bundle: allowed, the first one is used
    assert config.validate(_with(_tls(_minimal()), "broker.ca", "junk before\n" + two))["broker"]["ca"].endswith(two)


def test_ca_der_is_the_first_certificate_decoded():
    der = config.ca_der(CA)
    assert type(der) is bytes and len(der) == CA_DER_LEN and der[0] == 0x30
    assert config.ca_der("# our CA\r\n" + CA.replace("\n", "\r\n") + CA) == der  # CRLF, text around, a second cert
    for bad in ("", CA[:200], "-----END CERTIFICATE-----" + CA[:-27]):
        try:
            config.ca_der(bad)
        except ValueError as e:
            assert "\n" not in str(e) and "PEM" in str(e), str(e)
        else:
            raise AssertionError("decoded " + repr(bad))


# ---- credentials ----

USER = "press-07"
GOOD_PASSWORD = "q7Vd-2mXr_Lp9aZt4Wc8Ne"  # what provision makes: token_urlsafe


def _creds(user=USER, password=GOOD_PASSWORD):
    return {"host": "h", "port": 1883, "user": user, "password": password, "tls": False, "ca": None}


def test_good_credentials_pass():
    for password in (GOOD_PASSWORD, "correct horse battery", "Xk3#pL9!vQ2@", "a1b2c3d4e5f6g7h8"):
        assert config.credentials_problem(_creds(password=password)) is None, password
    assert config.credentials_problem(dict(_creds(), keepalive_s=30)) is None  # an entry of brokers()


def test_a_missing_user_means_anonymous():
    for user in (None, ""):
        why = config.credentials_problem(_creds(user=user))
        assert why.startswith("broker.user is not set") and "anonymous" in why, why
    assert config.credentials_problem({"host": "h"}).startswith("broker.user is not set")


def test_a_missing_password():
    for password in (None, ""):
        why = config.credentials_problem(_creds(password=password))
        assert why.startswith("broker.password is not set"), why
        assert "provision this node with its own password" in why


def test_placeholders_are_refused():
    for password in ("password", "Password123456", "changeme", "CHANGE_ME", "change-me-please"[:9],
                     "admin", "secret", "public", "mqtt", "floorwatch", "floorwatch-2024!", "default",
                     "test", "guest", "<password>", "<your broker password here>", "...", "xxx",
                     "xxxxxxxxxxxxxxxx", "XXXX-XXXX-XXXX", "000000000000", "aaaaaaaaaaaaaaaa",
                     "press-07", "PRESS-07", "press-07-password", "press07_123456789", "!!!!!!!!!!!!!",
                     "your_password_here", "........", "s3cret...", "<>"):
        why = config.credentials_problem(_creds(password=password))
        assert why == "broker.password is a placeholder; provision this node with its own password", (
            password, why)


def test_a_short_password():
    why = config.credentials_problem(_creds(password="Xk3#pL9!vQ2"))  # 11 characters
    assert why == "broker.password is shorter than 12 characters; provision this node with its own password"
    assert config.credentials_problem(_creds(password="Xk3#pL9!vQ2@")) is None  # 12
    assert config.MIN_PASSWORD == 12


def test_the_field_is_named_and_the_password_never():
    for password in ("hunter2", "changeme", "Zq-secret-9"):
        why = config.credentials_problem(_creds(password=password), "broker.backup")
        assert why.startswith("broker.backup.password "), why
        assert password not in why and "\n" not in why, why


def test_validate_still_accepts_what_the_link_refuses():
    # A node with a bad password keeps sampling and buffering: only the link refuses the broker.
    raw = _with(_with(_full(), "broker.user", USER), "broker.password", "changeme")
    cfg = config.validate(raw)
    assert config.credentials_problem(config.brokers(cfg["broker"])[0]) is not None


# ---- secrets never in errors ----

def test_secret_values_never_in_errors():
    secret = "Tr0ub4dor&3-very-secret-value"
    for path, value in (("wifi.password", secret * 3), ("broker.password", 12345678901),
                        ("broker.password", [secret]), ("broker.password", {"p": secret})):
        e = _err(_with(_full(), path, value))
        assert e.field == path and "<hidden>" in str(e), str(e)
        assert secret not in str(e) and "12345678901" not in str(e) and "Tr0ub" not in str(e), str(e)
        assert e.value is None  # nothing to leak from the exception either
    e = _err(_backup(password=[secret]))
    assert e.field == "broker.backup.password" and secret not in str(e) and e.value is None


def test_a_rejected_file_never_shows_its_password():
    secret = "Tr0ub4dor&3-very-secret-value"
    path = _fresh("secret_cfg.json")
    good = _fresh("secret_good.json")
    raw = _with(_full(), "broker.password", [secret])
    _put(path, json.dumps(raw))
    cfg, err = config.load(path)
    assert cfg is None and secret not in err and "<hidden>" in err, err
    _put(good, json.dumps(_full()))
    cfg, err, fallback = config.load_or_last_good(path, good)
    assert cfg is not None and err is None and secret not in fallback and "<hidden>" in fallback, fallback
    # salvage() keeps the password to log in with, but only ever returns it, never prints it.
    got = config.salvage(_with(_with(_full(), "broker.password", secret), "thresholds.bearing.warn", 99))
    assert got[3]["password"] == secret
