"""floorwatch.contract: the schemas match docs/contract.md, and validate() catches what it forbids.

The doc's JSON examples and its config table are read from docs/contract.md itself, so the page
and the schemas cannot drift apart without a test failing.
"""

import copy
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from floorwatch import firmware_import
from floorwatch.contract import KINDS, ContractError, records, schema, validate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "contract.md"
SCHEMA_DIR = ROOT / "host" / "floorwatch" / "contract" / "schemas"


# --- examples from the doc -----------------------------------------------------------------

def _sections():
    """{first word of a "## " heading: section text}."""
    parts = re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]
    return {p.split()[0]: p for p in parts}


def _json_values(text):
    """Every JSON value in text, one after another (a block may hold several messages)."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    while text[pos:].strip():
        pos += len(text[pos:]) - len(text[pos:].lstrip())
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)
    return out


def doc_examples():
    """(kind, message) for every JSON example in docs/contract.md."""
    sections = _sections()
    blocks = {word: re.findall(r"```json\n(.*?)```", text, re.S) for word, text in sections.items()}
    diag_text = blocks["diag"][0]
    out = []
    for word, found in blocks.items():
        for block in found:
            # The ack for the diag command shows its result as a placeholder for the diag example.
            block = re.sub(r"\{\s*…the diag payload…\s*\}", lambda m: diag_text, block)
            for msg in _json_values(block):
                kind = ("ack" if "ok" in msg else "cmd") if word == "cmd" else word
                out.append((kind, msg))
    return out


EXAMPLES = doc_examples()


def base(kind):
    """A deep copy of the doc's first example of this kind."""
    return copy.deepcopy(next(msg for k, msg in EXAMPLES if k == kind))


def test_the_doc_has_an_example_of_every_kind():
    assert sorted({k for k, _ in EXAMPLES}) == sorted(KINDS)
    assert len(EXAMPLES) == 23


@pytest.mark.parametrize("kind, message", EXAMPLES,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(EXAMPLES)])
def test_doc_example_is_valid(kind, message):
    assert validate(kind, json.dumps(message)) == message


# --- the config table in the doc ---------------------------------------------------------------

CONFIG = schema("config")


def _resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        node = CONFIG["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _children(node):
    """Property maps of a node: its own, and those of its if/then branches (sensor types)."""
    node = _resolve(node)
    maps = [(node.get("properties", {}), node.get("required", []))]
    for branch in node.get("allOf", []):
        if "then" in branch:
            maps.append((branch["then"].get("properties", {}), branch["then"].get("required", [])))
    return maps


def _field_schemas(field):
    """(schemas, required anywhere) for a doc field such as sensors[].pin or thresholds.<metric>."""
    nodes, required = [CONFIG], False
    for part in re.findall(r"\[\]|[^.\[\]]+", field):
        found, required = [], False
        for node in nodes:
            node = _resolve(node)
            if part == "[]":
                found.append(node["items"])
            elif part == "<metric>":
                found.append(node["additionalProperties"])
            else:
                for props, req in _children(node):
                    if isinstance(props.get(part), dict):
                        found.append(props[part])
                        required = required or part in req
        nodes = found
    return [_resolve(n) for n in nodes], required


def _table_rows():
    rows = []
    for line in _sections()["config"].splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        fields = []
        for f in re.findall(r"`([^`]+)`", cells[0]):
            # `.scl` after `sensors[].sda` means sensors[].scl
            fields.append(fields[-1].rsplit(".", 1)[0] + f if f.startswith(".") else f)
        rows.append((fields, cells[1], cells[2], cells[3]))
    return rows


TABLE = _table_rows()
TYPE_WORDS = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
              "list": "array", "object": "object", "null": "null"}


def _types_of(sch):
    if "type" in sch:
        return {sch["type"]} if isinstance(sch["type"], str) else set(sch["type"])
    names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    return {names[type(v)] for v in sch["enum"]}


def test_the_config_table_was_read():
    assert len(TABLE) >= 20
    assert ["device_id", "site"] in [fields for fields, *_ in TABLE]


@pytest.mark.parametrize("fields, type_cell, rule, default", TABLE,
                         ids=[",".join(r[0]) for r in TABLE])
def test_config_table_row_matches_the_schema(fields, type_cell, rule, default):
    for field in fields:
        found, required = _field_schemas(field)
        assert found, f"{field} is in the doc's table but not in config.json"
        wanted = {TYPE_WORDS[w] for w in re.findall(r"[a-z]+", type_cell) if w in TYPE_WORDS}
        for sch in found:
            assert _types_of(sch) == wanted, field
            # A rule starting with a range states it, whatever words follow.
            m = re.match(r"(\d+)–(\d+)( characters| entries)?", rule)
            if m:
                low, high = int(m.group(1)), int(m.group(2))
                keys = {" characters": ("minLength", "maxLength"),
                        " entries": ("minItems", "maxItems")}.get(m.group(3), ("minimum", "maximum"))
                assert (sch.get(keys[0], 0), sch[keys[1]]) == (low, high), field
            if rule.startswith("`^"):
                assert sch["pattern"] == rule.strip("`"), field
            if re.fullmatch(r"(`\w+`, )+`\w+`", rule):
                assert set(sch["enum"]) == set(re.findall(r"`(\w+)`", rule)), field
            if re.fullmatch(r"[\d, ]+ or \d+", rule):
                assert set(sch["enum"]) == {int(n) for n in re.findall(r"\d+", rule)}, field
            if rule == "≥ 0":
                assert sch["minimum"] == 0, field
        if default == "required":
            assert required, f"{field} should be required"
            continue
        literal = re.match(r"`([^`]*)`", default) or re.fullmatch(r"(\d+)( \(.*\))?", default)
        if literal:
            for sch in found:
                assert sch.get("default", "no default") == json.loads(literal.group(1)), field


def _type_branch(sensor_type):
    sensor = CONFIG["$defs"]["sensor"]
    (branch,) = [b["then"] for b in sensor["allOf"]
                 if b["if"]["properties"]["type"]["const"] == sensor_type]
    return {k: _resolve(v) for k, v in branch["properties"].items() if isinstance(v, dict)}


@pytest.mark.parametrize("field", ["addr", "odr_hz"])
def test_config_table_per_type_rules_match_the_schema(field):
    (rule,) = [rule for fields, _, rule, _ in TABLE if fields == [f"sensors[].{field}"]]
    parts = dict(part.strip().split(": ", 1) for part in rule.split(";"))
    assert set(parts) == {"adxl345", "mpu6050"}
    for sensor_type, text in parts.items():
        text = re.sub(r"\(.*?\)", "", text)  # drop the hex spelling of addresses
        m = re.fullmatch(r"(\d+) to (\d+), dividing (\d+)", text.strip())
        if m:
            low, high, whole = map(int, m.groups())
            wanted = {n for n in range(low, high + 1) if whole % n == 0}
        else:
            wanted = {int(n) for n in re.findall(r"\d+", text)}
        assert set(_type_branch(sensor_type)[field]["enum"]) == wanted, sensor_type


def _schema_leaves(node, prefix=""):
    node = _resolve(node)
    if node.get("type") == "array":
        yield from _schema_leaves(node["items"], prefix + "[]")
        return
    if isinstance(node.get("additionalProperties"), dict):
        yield prefix
        yield from _schema_leaves(node["additionalProperties"], prefix + ".<metric>")
        return
    maps = _children(node)
    if not any(props for props, _ in maps):
        yield prefix
    for props, _ in maps:
        for name, child in props.items():
            if isinstance(child, dict):
                yield from _schema_leaves(child, f"{prefix}.{name}" if prefix else name)


def test_every_config_field_is_in_the_doc_table():
    documented = {f for fields, *_ in TABLE for f in fields}
    missing = sorted(set(_schema_leaves(CONFIG)) - documented - {"thresholds"})
    assert not missing, f"config.json has fields the doc's table does not list: {missing}"


# --- the schemas as files ----------------------------------------------------------------------

def test_kinds_are_the_schema_files():
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_draft_2020_12(kind):
    sch = schema(kind)
    assert sch["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert sch["$id"].endswith(f"/{kind}.json")
    Draft202012Validator.check_schema(sch)


def test_schema_returns_a_copy():
    schema("config")["properties"].clear()
    with pytest.raises(ContractError):
        validate("config", {"device_id": "x"})


# --- validate(): inputs and errors -------------------------------------------------------------

def test_validate_accepts_bytes_str_and_objects_and_returns_the_message():
    msg = base("alarm")
    text = json.dumps(msg)
    assert validate("alarm", text.encode()) == msg
    assert validate("alarm", bytearray(text.encode())) == msg
    assert validate("alarm", text) == msg
    assert validate("alarm", msg) is msg


def test_contract_error_is_one_line_with_kind_path_and_reason():
    bad = base("config")
    bad["sensors"][3]["addr"] = 300
    with pytest.raises(ContractError) as info:
        validate("config", bad)
    e = info.value
    # The exact form the contract gives as its example.
    assert str(e) == "sensors[3].addr: 300 is not one of 83, 29"
    assert (e.kind, e.path, e.reason) == ("config", "sensors[3].addr", "300 is not one of 83, 29")
    assert isinstance(e, ValueError)


def test_unknown_kind_is_a_value_error():
    with pytest.raises(ValueError, match="unknown message kind 'telemetery'"):
        validate("telemetery", {})


@pytest.mark.parametrize("kind, raw, expected", [
    ("telemetry", b'{"boot": 1, \xff}', "telemetry: not UTF-8 (byte 0xff at offset 12)"),
    ("telemetry", '{"boot": 1,', "telemetry: not JSON: Expecting property name enclosed in "
                                 "double quotes at line 1 column 12"),
    ("telemetry", "[1, 2]", "telemetry: [1, 2] is not an object"),
    ("telemetry", '{"boot": NaN}', "telemetry: not valid JSON: NaN is not a JSON number"),
    ("config", '{"site": "a", "site": "b"}', 'config: not valid JSON: duplicate key "site"'),
    ("cmd", "", "cmd: not JSON: Expecting value at line 1 column 1"),
])
def test_unreadable_messages(kind, raw, expected):
    with pytest.raises(ContractError) as info:
        validate(kind, raw)
    assert str(info.value) == expected
    assert info.value.path == ""


def test_a_number_too_big_for_a_float_is_caught():
    with pytest.raises(ContractError) as info:
        validate("alarm", json.dumps(base("alarm")).replace("81.5", "1e400"))
    assert str(info.value) == "value: inf is not a JSON number"


def test_nan_in_a_parsed_message_is_caught():
    msg = base("telemetry")
    msg["r"][0][1][0] = float("nan")
    with pytest.raises(ContractError, match=r"^r\[0\]\[1\]\[0\]: nan is not a JSON number$"):
        validate("telemetry", msg)


# --- what each kind rejects ----------------------------------------------------------------------

DROP = object()


def edit(kind, changes, start=None):
    """The doc example of kind (or start) with changes applied: {"a.b[0].c": value or DROP}."""
    msg = copy.deepcopy(start) if start is not None else base(kind)
    for path, value in changes.items():
        parts = [int(p) if p.isdigit() else p for p in re.findall(r'"[^"]+"|[^.\[\]]+', path)]
        parts = [p.strip('"') if isinstance(p, str) else p for p in parts]
        target = msg
        for p in parts[:-1]:
            target = target[p]
        if value is DROP:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value
    return msg


# A feature set in positions (docs/contract.md): rms x,y,z and pk x,y,z in mg, kurt, vel, zone, rel.
FEATURES = [12.0, 11.0, 31.0, 41.0, 39.0, 101.0, 3.05, 2.98, 3.21, 0.81, 0.77, 1.12, "A", 1.04, 0.99, 1.02]


def telemetry_v2(r, t=("bearing", "winding"), v=("motor", "fan"), seq=0, **head):
    """A telemetry message holding records r, laid out by cols t and v."""
    return dict({"boot": 1, "seq": seq, "n": len(r), "cols": {"t": list(t), "v": list(v)}, "r": r}, **head)


OFFLINE = {"state": "offline", "fw": "0.1.0", "boot": 7}
HEALTHY = {"health": "ok", "problems": [], "sensors.winding.present": True,
           "sensors.winding.errors": 0, "sensors.winding.reads": 3, "sensors.winding.last_error": None}
PING_ACK = {"id": "c-17", "cmd": "ping", "ok": True, "result": {"up": 612000, "fw": "0.1.0", "boot": 7}}
NOT_READ = {"id": None, "cmd": None, "ok": False, "error": "not JSON"}
ROMS = [s["rom"] for s in base("config")["sensors"] if s["type"] == "ds18b20"]
MINIMAL_CONFIG = {"device_id": "n1", "site": "s", "wifi": {"ssid": "w"}, "broker": {"host": "b"}}
# A CA certificate in PEM (made with floorwatch.security.pki), as broker.ca holds it.
CA = ("-----BEGIN CERTIFICATE-----\n"
      "MIIBcDCCARWgAwIBAgIUPyYPcgEX+4Giz3S/gavDjy6qcukwCgYIKoZIzj0EAwIw\n"
      "EzERMA8GA1UEAwwIY2FzZXMgQ0EwIBcNMjYxMTI1MTMzMTQ1WhgPMjEyNjExMDIx\n"
      "MzMxNDVaMBMxETAPBgNVBAMMCGNhc2VzIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
      "AQcDQgAEsRLcYWHpo8F7f3Ek8DjpdLxWlkCjidQ2EJFlR532cAP4P5oj+50eL4H6\n"
      "ndQi8189UiPy70lgUZbFpAkKMHO4HaNFMEMwEgYDVR0TAQH/BAgwBgEB/wIBADAO\n"
      "BgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFBfJ75UpgZ6W+GbnEuQK47An8KohMAoG\n"
      "CCqGSM49BAMCA0kAMEYCIQDBkCNfJ2ECI/LvOErAi3FJC+A+P5kEKbV1rzRZ/iuy\n"
      "DAIhAJBrv0iyLY7vTppMB2WFqDBSw8yo9UMGl7vg+RJ68d8d\n"
      "-----END CERTIFICATE-----\n")

VALID = [
    ("export", edit("export", {"axis": "x", "quantity": "rms", "value": 0.012, "unit": "g", "sensor": "motor"})),
    ("export", edit("export", {"time": None, "value": None})),  # no wall time yet; a failed read
    ("status", OFFLINE),
    ("status", edit("status", {"config_error": "sensors[1].addr: 300 is not one of 83, 29",
                               "health": "fault"})),
    ("status", edit("status", {"ts": 1767225600, "rssi": -50})),  # payloads may grow new keys
    ("status", edit("status", {"state": "safe_mode", "safe": "3 failed boots, last: watchdog: sample",
                               "reason": "watchdog: sample", "broker": "backup",
                               "config_fallback": "config.json: not valid JSON"})),
    ("telemetry", edit("telemetry", {"r[0][1][1]": None})),
    ("telemetry", edit("telemetry", {"t0": 1767225600123, "dropped": [{"boot": 6, "seq": 40, "n": 16, "why": "reset"},
                                                                     {"boot": 7, "seq": 0, "n": 3, "why": "full"}]})),
    ("telemetry", telemetry_v2([[0, None, [FEATURES[:13]]]], t=[])),  # vibration only, no rel
    ("telemetry", telemetry_v2([[0, None, [[0] * 11 + [None, "A"]]]])),  # zeros, and a null
    ("telemetry", telemetry_v2([[5, []], [5, None, []], [5, [], None, []]])),  # failed reads; up may repeat
    ("telemetry", telemetry_v2([[5, [40.5]], [6, [None, 41.0], [None, FEATURES], [None, [0.1]]]])),
    ("telemetry", telemetry_v2([[5, [40.5], None, [[], [None, None, 0]]]])),  # trends, trailing nulls left out
    ("telemetry", telemetry_v2([[5, [-40.5, 1e3], [FEATURES[:12] + ["D", None, None, 9.99]]]])),
    ("telemetry", telemetry_v2([[5, []]], t=[], v=[])),  # a node without sensors
    ("alarm", {"event": "state", "up": 0, "boot": 1, "active": {}}),
    ("alarm", edit("alarm", {"event": "ack", "level": "warning", "prev": "warning", "value": None, "acked": True})),
    ("alarm", edit("alarm", {"event": "realarm", "level": "warning", "prev": "warning"})),
    ("alarm", edit("alarm", {"metric": "bearing.early", "value": 850, "limit": 900})),
    ("alarm", edit("alarm", {"event": "clear", "level": "ok", "prev": "warning", "value": 77.0})),
    ("alarm", edit("alarm", {"event": "clear", "level": "ok", "prev": "warning", "value": 80.0})),
    ("alarm", edit("alarm", {"metric": "motor.rms", "level": "alarm", "prev": "ok",
                             "value": 1.2, "limit": 1.0})),
    ("diag", edit("diag", HEALTHY)),
    ("diag", edit("diag", dict(HEALTHY, queue={"ram": 3, "flash": 120, "dropped": 0}, synced=False, failed_boots=1))),
    ("diag", edit("diag", {"config_error": "wifi.ssid: missing (required)", "health": "fault",
                           "problems": ["config error"], "sensors": {}})),
    ("cmd", {"id": "x" * 64, "cmd": "diag"}),
    ("ack", PING_ACK),
    ("ack", {"id": "c-30", "cmd": "reboot", "ok": True, "result": {"restarting": True}}),
    ("ack", NOT_READ),
    ("ack", {"id": "c-20", "cmd": None, "ok": False, "error": "no cmd"}),
    ("config", MINIMAL_CONFIG),
    ("config", edit("config", {"sensors[0].rom": ROMS[0].upper()})),  # hex digits, any case
    ("config", edit("config", {"sensors[0].rom": None, "sensors[1].rom": None, "sensors[1].pin": 5})),
    ("config", edit("config", {"sensors[0]": {"name": "m0", "type": "mpu6050", "sda": 21, "scl": 22},
                               "sensors[1]": {"name": "m1", "type": "mpu6050", "sda": 21, "scl": 22,
                                              "addr": 105}, "thresholds.bearing": DROP,
                               'thresholds."bearing.rate"': DROP})),
    ("config", edit("config", {"intervals": {"temp_s": 2.5, "vib_s": 1, "diag_s": 86400},
                               "broker.user": "node", "broker.password": "pw", "broker.tls": True, "broker.ca": CA,
                               "broker.port": 8883, "wifi.password": "",
                               "thresholds.bearing": {"alarm": 90}})),
    ("config", edit("config", {"broker.backup": {"host": "10.0.0.3", "port": 8883, "user": "node",
                                                 "password": "pw", "tls": True, "ca": CA},
                               "queue": {"flash_kb": 16, "drain_per_s": 200}, "time": {"ntp_host": None}})),
    ("config", edit("config", {"broker.backup": None, "queue": {"flash_kb": 1024, "drain_per_s": 2.5},
                               "time": {"ntp_host": "10.0.0.1"}})),
    ("config", dict(MINIMAL_CONFIG, broker={"host": "b", "backup": {"host": "c"}}, queue={}, time={})),
    ("config", edit("config", {"broker.ca": CA})),  # a CA without tls: kept for when tls is switched on
    ("config", edit("config", {"broker.ca": None, "broker.backup": {"host": "c", "ca": None}})),
    ("config", edit("config", {"broker.tls": True, "broker.ca": "# the site CA\n" + CA + CA})),  # a bundle
    ("config", edit("config", {"sensors": [
        {"name": "probe", "type": "ds18b20", "pin": 0},
        {"name": "imu", "type": "mpu6050", "sda": 1, "scl": 2, "addr": 105, "range_g": 16,
         "odr_hz": 250, "window": 64},
        {"name": "acc", "type": "adxl345", "sda": 1, "scl": 2, "odr_hz": 3200, "window": 2048}],
        "thresholds": {"probe": {"warn": 50, "alarm": 50}, "imu.cf": {"warn": 6},
                       "acc.pk": {"alarm": 2.0, "deadband": 0}, "acc.vel": {"warn": 3, "relative": True},
                       "probe.rise": {"warn": 15}}})),
]


@pytest.mark.parametrize("kind, message", VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)])
def test_valid(kind, message):
    assert validate(kind, message) == message


INVALID = [
    # status
    ("status", edit("status", {"state": DROP}), "state: missing (required)"),
    ("status", edit("status", {"state": "sleeping"}), "state: 'sleeping' is not one of online, safe_mode, offline"),
    ("status", edit("status", {"ip": DROP}), "ip: missing (required)"),
    ("status", edit("status", {"state": "safe_mode"}), "safe: missing (required)"),
    ("status", edit("status", {"broker": "tertiary"}), "broker: 'tertiary' is not one of primary, backup"),
    ("status", edit("status", {"app": "5F0C9E21AB47"}), "app: '5F0C9E21AB47' is not 12 hex digits"),
    ("telemetry", edit("telemetry", {"dropped": [{"boot": 7, "seq": 0, "n": 0, "why": "full"}]}),
     "dropped[0].n: 0 is below 1"),
    ("telemetry", edit("telemetry", {"dropped": [{"boot": 7, "seq": 0, "n": 2, "why": "lost"}]}),
     "dropped[0].why: 'lost' is not one of full, reset"),
    ("status", edit("status", {"ip": "10.0.0.256"}), "ip: '10.0.0.256' is not an IPv4 address"),
    ("status", edit("status", {"reset": "brownout"}), "reset: 'brownout' is not one of power_on, hard, wdt, deepsleep, soft, unknown"),
    ("status", edit("status", {"boot": 0}), "boot: 0 is below 1"),
    ("status", edit("status", {"boot": "7"}), "boot: '7' is not an integer"),
    ("status", edit("status", {"boot": 7.0}), "boot: 7.0 is not an integer"),
    ("status", edit("status", {"boot": True}), "boot: true is not an integer"),
    ("status", edit("status", {"fw": ""}), "fw: '' is empty"),
    ("status", edit("status", {"config_error": "two\nlines", "health": "fault"}),
     "config_error: 'two\\nlines' is not one line of text"),
    ("status", edit("status", {"config_error": "bad"}),
     "health: 'ok' is not fault (a config error makes health fault)"),
    ("status", dict(OFFLINE, ip="10.0.0.23"),
     "ip: not allowed (the offline Last Will carries state, fw and boot only)"),
    # telemetry
    ("telemetry", edit("telemetry", {"n": 3}), "n: 3 but r holds 2 records"),
    ("telemetry", edit("telemetry", {"n": 0}), "n: 0 is below 1"),
    ("telemetry", edit("telemetry", {"r": []}), "r: has 0 entries, at least 1 needed"),
    ("telemetry", edit("telemetry", {"seq": -1}), "seq: -1 is below 0"),
    # cols
    ("telemetry", edit("telemetry", {"cols": DROP}), "cols: missing (required)"),
    ("telemetry", edit("telemetry", {"cols.v": DROP}), "cols.v: missing (required)"),
    ("telemetry", edit("telemetry", {"cols.p": []}), "cols.p: unknown key"),
    ("telemetry", edit("telemetry", {"cols.t[1]": "Winding"}), "cols.t[1]: 'Winding' is not a valid name (1..16 of "
     "a-z 0-9 _ -, starting with a letter or digit)"),
    ("telemetry", edit("telemetry", {"cols.t": "bearing"}), "cols.t: 'bearing' is not a list"),
    ("telemetry", edit("telemetry", {"cols.v[0]": "chip"}),
     "cols.v[0]: 'chip' is already named in cols.t[2]; sensor names are unique"),
    ("telemetry", edit("telemetry", {"cols.t[2]": "bearing"}),
     "cols.t[2]: 'bearing' is already named in cols.t[0]; sensor names are unique"),
    # a record
    ("telemetry", edit("telemetry", {"r[0]": {"up": 600120, "t": {"bearing": 41.25}}}),
     'r[0]: {"up": 600120, "t": {"bearing": 41.25}} is not a list'),  # a v1 record
    ("telemetry", edit("telemetry", {"r[0]": [600120]}), "r[0]: a record has temps, vib or both"),
    ("telemetry", edit("telemetry", {"r[0][1]": None}), "r[0]: a record has temps, vib or both"),  # trends alone
    ("telemetry", edit("telemetry", {"r[1]": [610120, None, None]}), "r[1]: a record has temps, vib or both"),
    ("telemetry", edit("telemetry", {"r[1]": [610120, [41.3], None, None, []]}), "r[1]: has 5 entries, at most 4 allowed"),
    ("telemetry", edit("telemetry", {"r[0][0]": -1}), "r[0][0]: -1 is below 0"),
    ("telemetry", edit("telemetry", {"r[0][0]": 600120.0}), "r[0][0]: 600120.0 is not an integer"),
    ("telemetry", edit("telemetry", {"r[0][0]": "600120"}), "r[0][0]: '600120' is not an integer"),
    ("telemetry", edit("telemetry", {"r[1][0]": 600119}),
     "r[1][0]: 600119 is earlier than the record before it (600120)"),
    # temps
    ("telemetry", edit("telemetry", {"r[0][1]": {"bearing": 41.25}}), 'r[0][1]: {"bearing": 41.25} is not a list or null'),
    ("telemetry", edit("telemetry", {"r[0][1][0]": "hot"}), "r[0][1][0]: 'hot' is not a number or null"),
    ("telemetry", edit("telemetry", {"r[0][1]": [41.25, 55.0, 38.0, 20.0]}),
     "r[0][1]: temps has 4 entries but cols.t names 3 temperature sensors"),
    # vib
    ("telemetry", edit("telemetry", {"r[1][2]": [None, None]}),
     "r[1][2]: vib has 2 entries but cols.v names 1 vibration sensor"),
    ("telemetry", edit("telemetry", {"r[1][2][0]": FEATURES[:12]}), "r[1][2][0]: has 12 entries, at least 13 needed"),
    ("telemetry", edit("telemetry", {"r[1][2][0]": FEATURES + [1.0]}), "r[1][2][0]: has 17 entries, at most 16 allowed"),
    ("telemetry", edit("telemetry", {"r[1][2][0]": {"rms": [0.012, 0.011, 0.031]}}),
     'r[1][2][0]: {"rms": [0.012, 0.011, 0.031]} is not a list or null'),
    ("telemetry", edit("telemetry", {"r[1][2][0][5]": -0.1}), "r[1][2][0][5]: -0.1 is below 0"),
    ("telemetry", edit("telemetry", {"r[1][2][0][0]": "12"}), "r[1][2][0][0]: '12' is not a number or null"),
    ("telemetry", edit("telemetry", {"r[1][2][0][12]": "E"}), "r[1][2][0][12]: 'E' is not one of A, B, C, D"),
    ("telemetry", edit("telemetry", {"r[1][2][0][12]": None}), "r[1][2][0][12]: null is not one of A, B, C, D"),
    ("telemetry", edit("telemetry", {"r[1][2][0][15]": -1}), "r[1][2][0][15]: -1 is below 0"),
    # trends
    ("telemetry", edit("telemetry", {"r[0][3]": [None, None, None, [0.1]]}),
     "r[0][3]: trends has 4 entries but cols.t names 3 temperature sensors"),
    ("telemetry", edit("telemetry", {"r[0][3][0]": {"rate": 0.021}}), 'r[0][3][0]: {"rate": 0.021} is not a list or null'),
    ("telemetry", edit("telemetry", {"r[0][3][0]": [0.021, 1.25, 36000, 1]}), "r[0][3][0]: has 4 entries, at most 3 allowed"),
    ("telemetry", edit("telemetry", {"r[0][3][0][2]": 36000.5}), "r[0][3][0][2]: 36000.5 is not an integer or null"),
    ("telemetry", edit("telemetry", {"r[0][3][0][2]": -1}), "r[0][3][0][2]: -1 is below 0"),
    ("telemetry", edit("telemetry", {"r[0][3][0][0]": "fast"}), "r[0][3][0][0]: 'fast' is not a number or null"),
    # alarm
    ("alarm", edit("alarm", {"event": "raised"}), "event: 'raised' is not one of raise, clear, realarm, ack, state"),
    ("alarm", edit("alarm", {"event": "ack", "prev": "ok"}),
     "prev: 'ok' differs from level 'warning', but a ack keeps the level"),
    ("alarm", edit("alarm", {"event": "realarm", "level": "ok", "prev": "ok"}),
     "level: 'ok' is not one of warning, alarm (only a standing alarm is announced again or acknowledged)"),
    ("alarm", edit("alarm", {"active": DROP}), "active: missing (required)"),
    ("alarm", edit("alarm", {"acked": DROP}), "acked: missing (required)"),
    ("alarm", edit("alarm", {"metric": "bearing.early", "value": 950, "limit": 900}),
     "value: 950 is on the safe side of limit 900, so it cannot raise"),
    ("alarm", edit("alarm", {"level": "ok", "prev": "warning"}),
     "level: 'ok' is not one of alarm (a raise from warning goes to alarm)"),
    ("alarm", edit("alarm", {"event": "clear", "level": "alarm", "prev": "warning", "value": 1}),
     "level: 'alarm' is not one of ok (a clear from warning goes to ok)"),
    ("alarm", edit("alarm", {"prev": "alarm"}),
     "prev: 'alarm' is not one of ok, warning (nothing is above alarm, so a raise cannot start there)"),
    ("alarm", edit("alarm", {"value": 79.9}), "value: 79.9 is on the safe side of limit 80.0, so it cannot raise"),
    ("alarm", edit("alarm", {"event": "clear", "level": "ok", "prev": "warning"}),
     "value: 81.5 is on the alarm side of limit 80.0, so it cannot clear"),
    ("alarm", edit("alarm", {"metric": "motor.peak"}), "metric: 'motor.peak' is not a metric name (a temperature sensor name or its .rate, .rise or .early, or <accelerometer>.rms, .pk, .cf, .kurt or .vel)"),
    ("alarm", edit("alarm", {"limit": DROP}), "limit: missing (required)"),
    ("alarm", edit("alarm", {"value": "x"}), "value: 'x' is not a number or null"),
    # diag
    ("diag", edit("diag", dict(HEALTHY, problems=["x"])),
     "problems: has 1 entries, at most 0 allowed (health ok lists no problems)"),
    ("diag", edit("diag", {"problems": []}),
     "problems: has 0 entries, at least 1 needed (a degraded or faulty node says why)"),
    ("diag", edit("diag", dict(HEALTHY, heap_free=16383)),
     "health: 'ok' is not one of degraded, fault (free heap below 16 KB makes health degraded)"),
    ("diag", edit("diag", {"health": "ok", "problems": []}),
     "health: 'ok' is not one of degraded, fault (a missing or stuck sensor makes health degraded)"),
    ("diag", edit("diag", dict(HEALTHY, **{"sensors.winding.stuck": True})),
     "health: 'ok' is not one of degraded, fault (a missing or stuck sensor makes health degraded)"),
    ("diag", edit("diag", {"config_error": "bad"}),
     "health: 'degraded' is not fault (a config error makes health fault)"),
    ("diag", edit("diag", {"rssi": DROP}), "rssi: missing (required)"),
    ("diag", edit("diag", {"rssi": 5}), "rssi: 5 is out of range -127..0"),
    ("diag", edit("diag", {"heap_free": -1}), "heap_free: -1 is below 0"),
    ("diag", edit("diag", {"sensors.winding.type": "ds18b21"}), "sensors.winding.type: 'ds18b21' is not one of ds18b20, mcu_temp, adxl345, mpu6050"),
    ("diag", edit("diag", {"sensors.winding.last_error": DROP}),
     "sensors.winding.last_error: missing (required)"),
    ("diag", edit("diag", {"problems": ["a\nb"]}), "problems[0]: 'a\\nb' is not one line of text"),
    # cmd
    ("cmd", {"id": "", "cmd": "ping"}, "id: '' is not 1..64 characters long"),
    ("cmd", {"id": "x" * 65, "cmd": "ping"}, "id: '" + "x" * 36 + "... is not 1..64 characters long"),
    ("cmd", {"id": 17, "cmd": "ping"}, "id: 17 is not a string"),
    ("cmd", {"id": "c-1"}, "cmd: missing (required)"),
    ("cmd", {"id": "c-1", "cmd": ""}, "cmd: '' is empty"),
    # ack
    ("ack", edit("ack", {"result": DROP}, PING_ACK), "result: missing (required)"),
    ("ack", edit("ack", {"error": "oops"}, PING_ACK), "error: not allowed when ok is true"),
    ("ack", edit("ack", {"error": DROP}, NOT_READ), "error: missing (required)"),
    ("ack", edit("ack", {"result": {}}, NOT_READ), "result: not allowed when ok is false"),
    ("ack", edit("ack", {"cmd": "frobnicate"}, PING_ACK),
     "cmd: 'frobnicate' is not one of ping, diag, ack-alarm, rebaseline, reboot, resume, set, identify (only known commands succeed)"),
    ("ack", edit("ack", {"id": None}, PING_ACK),
     "id: null is not a string (a command that succeeded was read, so its id is echoed)"),
    ("ack", edit("ack", {"result.boot": DROP}, PING_ACK), "result.boot: missing (required)"),
    ("ack", edit("ack", {"ok": "yes"}, PING_ACK), "ok: 'yes' is not true or false"),
    ("ack", {"id": "c-18", "cmd": "diag", "ok": True, "result": edit("diag", {"rssi": 5})},
     "result.rssi: 5 is out of range -127..0"),
    # export
    ("export", edit("export", {"device": DROP}), "device: missing (required)"),
    ("export", edit("export", {"seq": -1}), "seq: -1 is below 0"),
    ("export", edit("export", {"axis": "w"}), "axis: 'w' is not one of x, y, z, null"),
    # config
    ("config", edit("config", {"led": {"pin": 4, "type": "gpio"}}), "led.pin: 4 is already used by sensors[0].pin"),
    ("config", edit("config", {"inteval": {}}), "inteval: unknown key"),
    ("config", edit("config", {"broker.hots": "x"}), "broker.hots: unknown key"),
    ("config", edit("config", {"intervals.temp": 5}), "intervals.temp: unknown key"),
    ("config", edit("config", {"wifi": DROP}), "wifi: missing (required)"),
    ("config", edit("config", {"wifi.ssid": DROP}), "wifi.ssid: missing (required)"),
    ("config", edit("config", {"device_id": "Press-07"}), "device_id: 'Press-07' is not a valid name (1..32 of a-z 0-9 _ -, starting with a "
     "letter or digit)"),
    ("config", edit("config", {"site": "plant-a\n"}), "site: 'plant-a\\n' is not a valid name"),
    ("config", edit("config", {"site": "a" * 33}), "site: "),
    ("config", edit("config", {"wifi.ssid": "s" * 33}),
     "wifi.ssid: '" + "s" * 33 + "' is not 1..32 characters long"),
    ("config", edit("config", {"wifi.password": "p" * 64}),
     "wifi.password: <hidden> is not 0..63 characters long"),
    ("config", edit("config", {"broker.host": ""}), "broker.host: '' is not 1..253 characters long"),
    ("config", edit("config", {"broker.port": 0}), "broker.port: 0 is out of range 1..65535"),
    ("config", edit("config", {"broker.port": 65536}), "broker.port: 65536 is out of range 1..65535"),
    ("config", edit("config", {"broker.port": 1883.0}), "broker.port: 1883.0 is not an integer"),
    ("config", edit("config", {"broker.tls": "no"}), "broker.tls: 'no' is not true or false"),
    ("config", edit("config", {"broker.user": 5}), "broker.user: 5 is not a string or null"),
    ("config", edit("config", {"broker.keepalive_s": 4}), "broker.keepalive_s: 4 is out of range 5..3600"),
    ("config", edit("config", {"sensors": [{"name": f"t{i}", "type": "mcu_temp"} for i in range(9)]}),
     "sensors: has 9 entries, at most 8 allowed"),
    ("config", edit("config", {"sensors[1].name": "bearing"}),
     "sensors[1].name: 'bearing' is already used by sensors[0]"),
    ("config", edit("config", {"sensors[2].name": "a" * 17}), "sensors[2].name: "),
    ("config", edit("config", {"sensors[2].type": "ds18b21"}),
     "sensors[2].type: 'ds18b21' is not one of ds18b20, mcu_temp, adxl345, mpu6050"),
    ("config", edit("config", {"sensors[0].pin": DROP}), "sensors[0].pin: missing (required)"),
    ("config", edit("config", {"sensors[0].pin": 49}), "sensors[0].pin: 49 is out of range 0..48"),
    ("config", edit("config", {"sensors[0].rom": "10ff641e8116037a"}), "sensors[0].rom: "),
    ("config", edit("config", {"sensors[0].rom": "28ff641e8116037"}), "sensors[0].rom: "),
    ("config", edit("config", {"sensors[0].rom": None}),
     f"sensors[1].rom: '{ROMS[1]}' clashes with sensors[0]: probes sharing a pin need distinct roms"),
    ("config", edit("config", {"sensors[1].rom": ROMS[0].upper()}),
     f"sensors[1].rom: '{ROMS[0].upper()}' clashes with sensors[0]: probes sharing a pin need distinct roms"),
    ("config", edit("config", {"sensors[1]": {"name": "chip2", "type": "mcu_temp"}}),
     "sensors[2].type: 'mcu_temp' clashes with sensors[1]: there is one chip sensor"),
    ("config", edit("config", {"sensors[0]": {"name": "m0", "type": "mpu6050", "sda": 21, "scl": 22,
                                              "addr": 104},
                               "sensors[1]": {"name": "m1", "type": "mpu6050", "sda": 21, "scl": 22}}),
     "sensors[1].addr: 104 clashes with sensors[0]: same I2C pins and address"),
    ("config", edit("config", {"sensors[2].pin": 4}), "sensors[2].pin: unknown key"),
    ("config", edit("config", {"sensors[0].sda": 21}), "sensors[0].sda: unknown key"),
    ("config", edit("config", {"sensors[3].scl": DROP}), "sensors[3].scl: missing (required)"),
    ("config", edit("config", {"sensors[3].odr_hz": 1000}),
     "sensors[3].odr_hz: 1000 is not one of 100, 200, 400, 800, 1600, 3200"),
    ("config", edit("config", {"sensors[3].range_g": 3}), "sensors[3].range_g: 3 is not one of 2, 4, 8, 16"),
    ("config", edit("config", {"sensors[3].window": 4096}), "sensors[3].window: 4096 is not one of 64, 128, 256, 512, 1024, 2048"),
    ("config", edit("config", {"sensors[3].window": 1000}), "sensors[3].window: 1000 is not one of 64, 128"),
    ("config", edit("config", {"machine.group": 3}), "machine.group: 3 is not one of 1, 2"),
    ("config", edit("config", {"machine.foundation": "soft"}), "machine.foundation: 'soft' is not one of rigid, flexible"),
    ("config", edit("config", {"thresholds.bearing.latch": 1}), "thresholds.bearing.latch: 1 is not true or false"),
    ("config", edit("config", {"thresholds.bearing.on_delay_s": -1}), "thresholds.bearing.on_delay_s: -1 is out of range 0..86400"),
    ("config", edit("config", {'thresholds."motor.rms".early_s': 60}),
     "thresholds.motor.rms.early_s: 60 needs an absolute temperature limit"),
    ("config", edit("config", {'thresholds."winding.rate"': {"warn": 1}, "sensors[1].name": "other"}),
     "thresholds.winding.rate: 'winding.rate' is not a metric of a configured sensor"),
    ("config", edit("config", {"sensors[3].type": "mpu6050"}),
     "sensors[3].addr: 83 is not one of 104, 105"),
    ("config", edit("config", {"sensors[3].type": "mpu6050", "sensors[3].addr": 104}),
     "sensors[3].odr_hz: 3200 is not one of 4, 5, 8"),
    ("config", edit("config", {"sensors[3].type": "mpu6050", "sensors[3].addr": 104,
                               "sensors[3].odr_hz": 2}), "sensors[3].odr_hz: 2 is not one of 4, 5, 8"),
    ("config", edit("config", {"sensors[3].type": "mpu6050", "sensors[3].addr": 104,
                               "sensors[3].odr_hz": 300}), "sensors[3].odr_hz: 300 is not one of"),
    ("config", edit("config", {"intervals.temp_s": 0.5}), "intervals.temp_s: 0.5 is out of range 1..3600"),
    ("config", edit("config", {"intervals.vib_s": 3601}), "intervals.vib_s: 3601 is out of range 1..3600"),
    ("config", edit("config", {"intervals.diag_s": 5}), "intervals.diag_s: 5 is out of range 10..86400"),
    ("config", edit("config", {"thresholds.spindle": {"warn": 1}}),
     "thresholds.spindle: 'spindle' is not a metric of a configured sensor"),
    ("config", edit("config", {'thresholds."bearing.rms"': {"warn": 1}}),
     "thresholds.bearing.rms: 'bearing.rms' is not a metric of a configured sensor"),
    ("config", edit("config", {"thresholds.motor": {"warn": 1}}),
     "thresholds.motor: 'motor' is not a metric of a configured sensor"),
    ("config", edit("config", {'thresholds."motor.speed"': {"warn": 1}}),
     "thresholds.motor.speed: 'motor.speed' is not a metric name"),
    ("config", edit("config", {"thresholds.bearing.warn": 95}),
     "thresholds.bearing.warn: 95 is above alarm 90"),
    ("config", edit("config", {"thresholds.bearing": {"deadband": 1}}),
     "thresholds.bearing: needs warn or alarm (or both)"),
    ("config", edit("config", {"thresholds.bearing": {"warn": None, "alarm": None}}),
     "thresholds.bearing: needs warn or alarm (or both)"),
    ("config", edit("config", {"thresholds.bearing.deadband": -1}),
     "thresholds.bearing.deadband: -1 is below 0"),
    ("config", edit("config", {"thresholds.bearing.warning": 1}), "thresholds.bearing.warning: unknown key"),
    ("config", edit("config", {"broker.backup": "10.0.0.3"}), "broker.backup: '10.0.0.3' is not an object or null"),
    ("config", edit("config", {"broker.backup": {}}), "broker.backup.host: missing (required)"),
    ("config", edit("config", {"broker.backup": {"host": ""}}), "broker.backup.host: '' is not 1..253 characters long"),
    ("config", edit("config", {"broker.backup": {"host": "b", "port": 0}}),
     "broker.backup.port: 0 is out of range 1..65535"),
    ("config", edit("config", {"broker.backup": {"host": "b", "port": 1883.0}}),
     "broker.backup.port: 1883.0 is not an integer"),
    ("config", edit("config", {"broker.backup": {"host": "b", "tls": "yes"}}),
     "broker.backup.tls: 'yes' is not true or false"),
    ("config", edit("config", {"broker.backup": {"host": "b", "password": 5}}),
     "broker.backup.password: <hidden> is not a string or null"),
    ("config", edit("config", {"broker.password": ["s3cr3t-value"]}), "broker.password: <hidden> is not a string or null"),
    ("config", edit("config", {"broker.tls": True}), "broker.ca: missing"),
    ("config", edit("config", {"broker.tls": True, "broker.ca": None}), "broker.ca: null is not a string"),
    ("config", edit("config", {"broker.backup": {"host": "b", "tls": True}}), "broker.backup.ca: missing"),
    ("config", edit("config", {"broker.ca": 5}), "broker.ca: 5 is not a string or null"),
    ("config", edit("config", {"broker.ca": "MIIBcDCC"}),
     "broker.ca: 'MIIBcDCC' is not PEM text holding a certificate (-----BEGIN CERTIFICATE----- ... "
     "-----END CERTIFICATE-----)"),
    ("config", edit("config", {"broker.ca": CA.replace("-----END", "-----FIN")}),
     "broker.ca: '-----BEGIN CERTIFICATE-----\\nMIIBcDC... is not PEM text holding a certificate"),
    ("config", edit("config", {"broker.ca": CA + " " * 8192}),
     "broker.ca: '-----BEGIN CERTIFICATE-----\\nMIIBcDC... is not 0..8192 characters long"),
    ("config", edit("config", {"broker.backup": {"host": "b", "keepalive_s": 30}}),
     "broker.backup.keepalive_s: unknown key"),
    ("config", edit("config", {"queue": 256}), "queue: 256 is not an object"),
    ("config", edit("config", {"queue": {"flash_kb": 15}}), "queue.flash_kb: 15 is out of range 16..1024"),
    ("config", edit("config", {"queue": {"flash_kb": 1025}}), "queue.flash_kb: 1025 is out of range 16..1024"),
    ("config", edit("config", {"queue": {"flash_kb": 256.0}}), "queue.flash_kb: 256.0 is not an integer"),
    ("config", edit("config", {"queue": {"flash_kb": True}}), "queue.flash_kb: true is not an integer"),
    ("config", edit("config", {"queue": {"drain_per_s": 0.5}}), "queue.drain_per_s: 0.5 is out of range 1..200"),
    ("config", edit("config", {"queue": {"drain_per_s": "20"}}), "queue.drain_per_s: '20' is not a number"),
    ("config", edit("config", {"queue": {"ram_kb": 8}}), "queue.ram_kb: unknown key"),
    ("config", edit("config", {"time": {"ntp_host": ""}}), "time.ntp_host: '' is not 1..253 characters long"),
    ("config", edit("config", {"time": {"ntp_host": "n" * 254}}), "time.ntp_host: '" + "n" * 36 + "... is not 1..253"),
    ("config", edit("config", {"time": {"ntp_host": 5}}), "time.ntp_host: 5 is not a string or null"),
    ("config", edit("config", {"time": {"tz": "UTC"}}), "time.tz: unknown key"),
]


@pytest.mark.parametrize("kind, message, expected", INVALID,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(INVALID)])
def test_invalid(kind, message, expected):
    with pytest.raises(ContractError) as info:
        validate(kind, message)
    text = str(info.value)
    if isinstance(expected, re.Pattern):
        assert expected.match(text), text
    else:
        assert text.startswith(expected), text
    assert "\n" not in text
    assert info.value.kind == kind


# --- records(): telemetry records in the host's view ------------------------------------------------

# The doc example's records as the host has always seen them (telemetry v1 carried exactly these).
HOST_VIEW = [
    {"up": 600120, "t": {"bearing": 41.25, "winding": 55.0, "chip": 38.0},
     "dt": {"bearing": {"rate": 0.021, "rise": 1.25, "eta": 36000}}},
    {"up": 610120, "t": {"bearing": 41.31, "winding": 55.1, "chip": 38.0},
     "v": {"motor": {"rms": [0.012, 0.011, 0.031], "pk": [0.041, 0.039, 0.101], "cf": [3.42, 3.55, 3.26],
                     "kurt": [3.05, 2.98, 3.21], "vel": [0.81, 0.77, 1.12], "zone": "A",
                     "rel": {"vel": 1.04, "cf": 0.99, "kurt": 1.02}}}},
]


def test_records_of_the_doc_example_are_the_host_view():
    msg = base("telemetry")
    assert records(msg) == HOST_VIEW
    assert records(json.dumps(msg)) == HOST_VIEW  # bytes or str: validated first
    assert records(json.dumps(msg).encode()) == HOST_VIEW


def test_records_of_an_invalid_message_raise_the_contract_error():
    with pytest.raises(ContractError, match=r"^cols: missing \(required\)$"):
        records(json.dumps(edit("telemetry", {"cols": DROP})))


def test_records_convert_mg_to_g_and_derive_the_crest_factor():
    (rec,) = records(telemetry_v2([[1, None, [[0.1, 1234.5, 20.0, 0.4, 4000.0, 20.0] + FEATURES[6:13]]]]))
    motor = rec["v"]["motor"]
    assert motor["rms"] == [0.0001, 1.2345, 0.02]  # 1 decimal of mg is 4 decimals of g
    assert motor["pk"] == [0.0004, 4.0, 0.02]
    assert motor["cf"] == [4.0, 3.24, 1.0]  # pk / rms, 2 decimals
    assert motor["kurt"] == [3.05, 2.98, 3.21] and motor["vel"] == [0.81, 0.77, 1.12] and motor["zone"] == "A"
    assert "rel" not in motor  # still learning the baseline
    assert set(rec) == {"up", "v"} and "limited" not in motor


def test_records_cf_is_none_where_rms_is_zero_or_null_or_pk_is_null():
    feats = [0, None, 5.0, 1.0, 2.0, None] + [None] * 6 + ["B"]
    (rec,) = records(telemetry_v2([[1, None, [None, feats]]]))
    fan = rec["v"]["fan"]
    assert fan["rms"] == [0.0, None, 0.005] and fan["pk"] == [0.001, 0.002, None]
    assert fan["cf"] == [None, None, None]
    assert fan["kurt"] == [None] * 3 and fan["vel"] == [None] * 3 and fan["zone"] == "B"
    assert list(rec["v"]) == ["fan"]  # motor's null: not taken


def test_records_read_missing_trailing_entries_as_null():
    msg = telemetry_v2([
        [1, [40.5]],                                # winding left out: null
        [2, []],                                    # every read failed
        [3, None, [FEATURES[:13]]],                 # vibration only; fan left out
        [4, [40.5, 41.0], None, [None, [0.5]]],     # bearing has no trend; winding only a rate
        [5, [40.5], [], [[], [None, None, 60]]],    # vib taken, none read; an empty trend
        [6, None, [None, FEATURES[:12] + ["C", None, 1.1]]],  # rel partly known
    ])
    assert records(msg) == [
        {"up": 1, "t": {"bearing": 40.5, "winding": None}},
        {"up": 2, "t": {"bearing": None, "winding": None}},
        {"up": 3, "v": {"motor": {"rms": [0.012, 0.011, 0.031], "pk": [0.041, 0.039, 0.101],
                                  "cf": [3.42, 3.55, 3.26], "kurt": [3.05, 2.98, 3.21],
                                  "vel": [0.81, 0.77, 1.12], "zone": "A"}}},
        {"up": 4, "t": {"bearing": 40.5, "winding": 41.0}, "dt": {"winding": {"rate": 0.5}}},
        {"up": 5, "t": {"bearing": 40.5, "winding": None}, "dt": {"winding": {"eta": 60}}},
        {"up": 6, "v": {"fan": {"rms": [0.012, 0.011, 0.031], "pk": [0.041, 0.039, 0.101],
                                "cf": [3.42, 3.55, 3.26], "kurt": [3.05, 2.98, 3.21],
                                "vel": [0.81, 0.77, 1.12], "zone": "C",
                                "rel": {"vel": None, "cf": 1.1, "kurt": None}}}},
    ]


def test_records_leave_out_parts_a_node_without_such_sensors_cannot_fill():
    assert records(telemetry_v2([[7, []]], t=[], v=[])) == [{"up": 7}]
    assert records(telemetry_v2([[7, None, [FEATURES]]], t=[])) == [{"up": 7, "v": {"motor": HOST_VIEW[1]["v"]["motor"]}}]


@pytest.fixture(scope="module")
def node_payload():
    payload = firmware_import.load("node.payload")
    if "layout" not in payload.telemetry.__code__.co_varnames:
        pytest.skip("the firmware still builds telemetry v1")
    return payload


class _Sensor:
    def __init__(self, name, kind):
        self.name, self.kind = name, kind


def test_the_firmware_builds_telemetry_the_host_reads_back(node_payload):
    """node.payload's builder and contract.records agree: what the node measured is what the host reads."""
    p = node_payload
    layout = p.cols([_Sensor("bearing", "temp"), _Sensor("motor", "vib"), _Sensor("chip", "temp"),
                     _Sensor("fan", "vib")])
    assert layout == {"t": ["bearing", "chip"], "v": ["motor", "fan"]}
    motor = ([0.01234, 0.011, float("nan")], [0.04149, 0.039, 0.1], [3.05, 2.981, 3.2], [0.81, 0.77, 1.123], "B",
             (1.04, 0.99, 1.02))
    fan = ([0.0, 0.2, 0.3], [0.0, 0.5, 0.9], [3.0, 3.0, 3.0], [1.0, 2.0, 3.0], "A", None)
    queued = [p.encode(p.record(600120, temps=[41.254, None], trends=[(0.0214, 1.25, 36000.4), None])),
              p.record(610120, temps=[41.31, 38.0], vib=[motor, fan]),
              p.record(620120, vib=[None, fan])]
    raw = p.telemetry(7, 120, queued, p.encode(layout), t0=1767225000000)
    msg = validate("telemetry", raw)
    assert (msg["boot"], msg["seq"], msg["n"], msg["t0"], msg["cols"]) == (7, 120, 3, 1767225000000, layout)
    got = records(msg)
    assert got[0] == {"up": 600120, "t": {"bearing": 41.25, "chip": None},
                      "dt": {"bearing": {"rate": 0.021, "rise": 1.25, "eta": 36000}}}
    assert got[1]["t"] == {"bearing": 41.31, "chip": 38.0} and "dt" not in got[1]
    assert got[1]["v"]["motor"] == {"rms": [0.0123, 0.011, None], "pk": [0.0415, 0.039, 0.1], "cf": [3.37, 3.55, None],
                                    "kurt": [3.05, 2.98, 3.2], "vel": [0.81, 0.77, 1.12], "zone": "B",
                                    "rel": {"vel": 1.04, "cf": 0.99, "kurt": 1.02}}
    assert got[1]["v"]["fan"] == {"rms": [0.0, 0.2, 0.3], "pk": [0.0, 0.5, 0.9], "cf": [None, 2.5, 3.0],
                                  "kurt": [3.0, 3.0, 3.0], "vel": [1.0, 2.0, 3.0], "zone": "A"}
    assert got[2] == {"up": 620120, "v": {"fan": got[1]["v"]["fan"]}}


# --- the node's config.py agrees with the schema ----------------------------------------------------

@pytest.fixture(scope="module")
def node_config():
    return firmware_import.load("node.config")


# The node words these four differently (same field): a ROM's two rules as one or two sentences,
# a ROM shown lower-cased, and any unknown metric as "not a metric of a configured sensor".
WORDED_DIFFERENTLY = {"sensors[0].rom: ", "thresholds.motor.speed: 'motor.speed' is not a metric name",
                      # The node says why a CA is needed: "missing: tls is true, so the node needs ..."
                      "broker.ca: missing", "broker.backup.ca: missing", "broker.ca: null is not a string",
                      f"sensors[1].rom: '{ROMS[0].upper()}' clashes with sensors[0]: probes sharing a pin need distinct roms"}


@pytest.mark.parametrize("message", [m for k, m in VALID if k == "config"])
def test_the_node_accepts_every_valid_config(node_config, message):
    cfg = node_config.validate(message)
    assert cfg["device_id"] == message["device_id"]


@pytest.mark.parametrize("message, expected", [(m, e) for k, m, e in INVALID if k == "config"],
                         ids=[e.split(":")[0] for k, _, e in INVALID if k == "config"])
def test_the_node_rejects_every_invalid_config_alike(node_config, message, expected):
    with pytest.raises(ContractError) as host:
        validate("config", message)
    with pytest.raises(node_config.ConfigError) as node:
        node_config.validate(message)
    assert node.value.field == host.value.path
    if expected not in WORDED_DIFFERENTLY:
        assert str(node.value) == str(host.value)


def test_every_kind_has_valid_and_invalid_cases():
    assert {k for k, _ in VALID} == set(KINDS)
    assert {k for k, _, _ in INVALID} == set(KINDS)
