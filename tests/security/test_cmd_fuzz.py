"""Fuzzing the node's command parser (hypothesis, CPython): more than 10,000 generated payloads.

Properties, for every payload:
- node.commands.parse_command raises nothing but CommandError, whatever the bytes;
- its verdict is the contract's: floorwatch.contract.validate("cmd", ...) accepts exactly what the
  node accepts (the contract cannot state the node's 512-byte limit, so that is added here);
- the error ack a rejection makes validates against ack.json, its error is one line, and the ack
  stays small whatever was sent (it echoes only a checked id, a known command name and at most a
  40-character quote);
- for `set`: config.update on a valid config either returns a config the contract accepts or
  raises ConfigError, leaving the raw config it was given exactly as it was.

Strategies: raw bytes; any JSON value; near-valid commands (known and unknown names, ids valid and
not, arguments of the right and wrong types, in and out of range, unknown keys, set patches, deep
nesting, unicode, oversize, textual corruption: duplicate keys, trailing commas, lone surrogates,
NaN).

derandomize=True: the same examples on every run, so CI is reproducible; database=None: nothing
written to .hypothesis. `python tests/security/test_cmd_fuzz.py --write-corpus` regenerates
tests/core/cmd_corpus.json from these strategies plus hand-picked cases (tests/core/cases_cmd_corpus.py
runs it in the MicroPython VM).
"""

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorwatch import contract, firmware_import

parser = firmware_import.load("node.commands")
payload = firmware_import.load("node.payload")
config = parser.config  # the same module table as the parser's
ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "core" / "cmd_corpus.json"

MAX_ERROR = 200  # characters in an error line
MAX_ACK = 64 + 12 + MAX_ERROR + 60  # id, cmd, error and the JSON around them

FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
CHECKED = {"payloads": 0, "accepted": 0, "tests": set()}


def node_verdict(msg):
    """(ok, CommandError or None): anything else parse_command raises fails the test."""
    try:
        parser.parse_command(msg)
        return True, None
    except parser.CommandError as exc:
        return False, exc


def contract_verdict(msg):
    try:
        contract.validate("cmd", msg)
    except contract.ContractError as exc:
        return False, str(exc)
    size = len(msg) if isinstance(msg, (bytes, bytearray)) else len(msg.encode())
    if size > parser.MAX_COMMAND:
        return False, "over the size limit"
    return True, None


def check(msg):
    """The properties every payload must have; returns the node's verdict."""
    CHECKED["payloads"] += 1
    ok, error = node_verdict(msg)
    agrees, why = contract_verdict(msg)
    assert ok == agrees, "node %s, contract %s (%s): %r" % (
        "accepts" if ok else "rejects: %s" % error, "accepts" if agrees else "rejects", why, msg[:300])
    if ok:
        CHECKED["accepted"] += 1
        return True
    text = str(error)
    assert text and "\n" not in text and "\r" not in text and len(text.splitlines()) == 1, text
    assert len(text) <= MAX_ERROR, text
    ack = payload.ack(error.cmd_id, error.cmd, False, error=text)
    assert len(ack) <= MAX_ACK, ack
    contract.validate("ack", ack)
    return False


# --- strategies ----------------------------------------------------------------------------------

ID_CHARS = "abcxyzABCXYZ0123456789_.:-"
ids_valid = st.one_of(st.text(ID_CHARS, min_size=1, max_size=64), st.text(ID_CHARS, min_size=64, max_size=64))
ids_any = st.one_of(
    ids_valid, st.just(""), st.text(ID_CHARS, min_size=65, max_size=80),
    st.text(min_size=1, max_size=10),  # any unicode, spaces, control characters
    st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))

KNOWN = sorted(parser.COMMANDS)
names_any = st.one_of(st.sampled_from(KNOWN), st.sampled_from(["PING", "frobnicate", "", "set ", "ack_alarm", "reset"]),
                      st.text(max_size=12), st.integers(), st.none())

sensor_names = st.one_of(st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,15}\Z"), st.sampled_from(["bearing", "motor", "winding"]))
SUFFIXES = list(config.VIB_METRICS + config.TEMP_METRICS) + ["early", "x", "", "RMS"]
metric_names = st.one_of(
    sensor_names, st.builds(lambda n, s: n + "." + s, sensor_names, st.sampled_from(SUFFIXES)),
    st.text(max_size=20), st.from_regex(r"\A[a-z0-9]{17,20}\Z"))



def _edges():
    """Every range limit in the node's tables, and just beyond it."""
    out = {0, 3600, 3601, -1}  # identify's s
    for row in config._INTERVALS + config._LIMIT:
        for limit in (row[2] if isinstance(row[2], tuple) else ()):
            if limit is not None:
                out.update((limit, limit - 1, limit + 1, limit - 0.001, limit + 0.001, float(limit)))
    return sorted(out)


numbers = st.one_of(
    st.integers(-10, 100000), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(_edges()), st.sampled_from([0.5, 7.0, -0.0, 1e300]))
scalars = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
wrongish = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=4), scalars, max_size=2))

interval_keys = st.one_of(st.sampled_from([row[0] for row in config._INTERVALS]), st.sampled_from(["temp", "wifi", ""]))
intervals = st.dictionaries(interval_keys, st.one_of(numbers, st.none(), wrongish), max_size=4)
limit_keys = st.one_of(st.sampled_from([row[0] for row in config._LIMIT]), st.sampled_from(["low", "Warn", "x"]))
limit_values = st.one_of(numbers, st.booleans(), st.none(), wrongish)
limits = st.one_of(st.none(), st.dictionaries(limit_keys, limit_values, max_size=4), wrongish)
thresholds = st.dictionaries(metric_names, limits, max_size=3)


def args_for(name):
    """Arguments a command might be sent with: its own, others', unknown ones; values right and wrong."""
    own = {
        "ack-alarm": {"metric": st.one_of(metric_names, wrongish)},
        "rebaseline": {"sensor": st.one_of(sensor_names, metric_names, wrongish)},
        "identify": {"s": st.one_of(st.integers(-5, 3605), numbers, wrongish)},
        "set": {"intervals": st.one_of(intervals, wrongish), "thresholds": st.one_of(thresholds, wrongish)},
    }.get(name, {})
    foreign = {"verbose": wrongish, "metric": metric_names, "s": numbers, "wifi": json_values, "intervals": intervals}
    keys = st.one_of(st.sampled_from(sorted(own)), st.sampled_from(sorted(foreign))) if own else st.sampled_from(sorted(foreign))
    return st.lists(keys, max_size=3, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({k: own.get(k, foreign.get(k)) for k in chosen}))


def good_args_for(name):
    """Arguments the command takes, with values it accepts."""
    own = {
        "ack-alarm": {"metric": st.builds(lambda n, s: n + s, sensor_names, st.sampled_from(
            [""] + ["." + s for s in config.VIB_METRICS + config.TEMP_METRICS + ("early",)]))},
        "rebaseline": {"sensor": sensor_names},
        "identify": {"s": st.one_of(st.integers(0, 3600), st.sampled_from([0, 3600]))},
        "set": {"intervals": st.dictionaries(st.sampled_from([row[0] for row in config._INTERVALS]),
                                             st.one_of(st.none(), st.integers(10, 3600), st.floats(10, 3600)), max_size=3),
                "thresholds": st.dictionaries(st.sampled_from(["bearing", "motor.rms", "b-2.rise"]), st.one_of(
                    st.none(), st.fixed_dictionaries({}, optional={"warn": numbers, "latch": st.booleans(),
                                                                   "deadband": st.integers(0, 5)})), max_size=2)},
    }.get(name, {})
    return st.fixed_dictionaries({}, optional=own)


@st.composite
def commands(draw):
    """A command as a dict: mostly plausible, often wrong in one place, a third of them valid."""
    if draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(KNOWN))
        body = dict(draw(good_args_for(name)), id=draw(ids_valid), cmd=name)
        if name == "set" and len(body) == 2:
            body["intervals"] = {}
        return body
    name = draw(st.one_of(st.sampled_from(KNOWN), st.sampled_from(KNOWN), names_any))
    body = {}
    if draw(st.integers(0, 19)):
        body["id"] = draw(st.one_of(ids_valid, ids_valid, ids_valid, ids_any))
    if draw(st.integers(0, 19)):
        body["cmd"] = name
    body.update(draw(args_for(name if isinstance(name, str) else "")))
    return body


def corrupt(text, how, where):
    """Textual damage json.dumps would never make."""
    if how == "dup" and '"cmd": ' in text:
        return text.replace('"cmd": ', '"cmd": "ping", "cmd": ', 1)
    if how == "trailing" and text.endswith("}"):
        return text[:-1] + ",}"
    if how == "surrogate":  # a lone UTF-16 surrogate: valid JSON, no valid unicode string
        return text.replace('"', '"\\ud800', 1 + where % 3)
    if how == "nan":
        return text.replace("0", "NaN", 1)
    if how == "cut":
        return text[:where % (len(text) + 1)]
    if how == "deep":
        return text[:-1] + ', "x": ' + "[" * (where % 40) + "]" * (where % 40) + "}"
    if how == "pad":
        return text[:-1] + ', "pad": "' + "p" * (where % 700) + '"}'
    return text


@st.composite
def near_valid_messages(draw):
    body = draw(commands())
    text = json.dumps(body, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")])))
    if draw(st.integers(0, 3)) == 0:
        text = corrupt(text, draw(st.sampled_from(["dup", "trailing", "surrogate", "nan", "cut", "deep", "pad"])),
                       draw(st.integers(0, 10000)))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def set_patches(draw):
    """set arguments that mostly parse: the config.update property needs them."""
    changes = {}
    if draw(st.booleans()):
        changes["intervals"] = draw(st.dictionaries(
            st.sampled_from([row[0] for row in config._INTERVALS]),
            st.one_of(st.none(), st.integers(1, 3600), st.floats(1, 3600), st.integers(-5, 100000)), max_size=3))
    if draw(st.booleans()) or not changes:
        metric = st.sampled_from(["bearing", "bearing.rate", "bearing.rise", "motor.rms", "motor.vel", "motor.kurt",
                                  "winding", "pump", "motor"])
        field = st.sampled_from([row[0] for row in config._LIMIT])
        value = st.one_of(st.none(), st.booleans(), st.integers(-100, 1000), st.floats(-1e6, 1e6), st.integers(0, 700000))
        changes["thresholds"] = draw(st.dictionaries(metric, st.one_of(st.none(), st.dictionaries(field, value, max_size=4)),
                                                     max_size=3))
    return changes


# --- the properties ------------------------------------------------------------------------------

def _ran(name):
    CHECKED["tests"].add(name)


@settings(max_examples=3000, **FUZZ)
@given(st.binary(max_size=600))
def test_raw_bytes(msg):
    _ran("raw")
    check(msg)


@settings(max_examples=1500, **FUZZ)
@given(json_values)
def test_any_json_value(value):
    _ran("json")
    check(json.dumps(value).encode())


@settings(max_examples=4500, **FUZZ)
@given(near_valid_messages())
def test_near_valid_commands(msg):
    _ran("near")
    check(msg)


BASE_CONFIG = {
    "device_id": "sim-001", "site": "fuzz", "wifi": {"ssid": "w", "password": "wifi-password"},
    "broker": {"host": "127.0.0.1", "user": "sim-001", "password": "a-long-device-password"},
    "sensors": [{"name": "bearing", "type": "ds18b20", "pin": 4},
                {"name": "motor", "type": "adxl345", "sda": 21, "scl": 22}],
    "intervals": {"temp_s": 10},
    "thresholds": {"bearing": {"warn": 80, "alarm": 90, "deadband": 2}, "motor.rms": {"warn": 0.5}},
}


def test_the_base_config_is_valid():
    config.validate(BASE_CONFIG)
    contract.validate("config", BASE_CONFIG)


@settings(max_examples=1500, **FUZZ)
@given(set_patches())
def test_a_set_that_parses_leaves_a_valid_config_or_nothing_changed(changes):
    _ran("set")
    msg = json.dumps(dict({"id": "s", "cmd": "set"}, **changes)).encode()
    if not check(msg):
        return
    args = parser.parse_command(msg)[2]
    raw = copy.deepcopy(BASE_CONFIG)
    before = json.dumps(raw, sort_keys=True)
    try:
        new_raw, cfg = config.update(raw, args)
    except config.ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= MAX_ERROR, str(exc)
        contract.validate("ack", payload.ack("s", "set", False, error=str(exc)))
    else:
        contract.validate("config", new_raw)
        assert config.validate(new_raw) == cfg
    assert json.dumps(raw, sort_keys=True) == before  # the config it was given is untouched either way


def test_at_least_10000_payloads_were_checked():
    if CHECKED["tests"] != {"raw", "json", "near", "set"}:
        pytest.skip("only with every fuzz test of this file in the run")
    assert CHECKED["payloads"] >= 10000, CHECKED
    # The strategies reach both verdicts often: a fuzz that only ever rejects would prove little.
    assert CHECKED["accepted"] >= 1000, CHECKED


# --- the corpus for the MicroPython VM ---------------------------------------------------------------

HAND_PICKED = [
    b'{"id":"c-1","cmd":"ping"}', b'{"id":"c-1","cmd":"ping",}', b'{"id":"c-1" "cmd":"ping"}', b'{"id":"c-1","cmd":"ping"} x',
    b'{"id":"c-1","cmd":"ping","cmd":"ping"}', b'{"id":"a","cmd":"set","intervals":{"temp_s":05}}',
    b'{"id":"a","cmd":"set","intervals":{"temp_s":5.}}', b'{"id":"a","cmd":"set","intervals":{"temp_s":5 6}}',
    b'{"id":"a","cmd":"set","intervals":{]}', b'{"id":"a","cmd":"set","intervals":{"temp_s":NaN}}',
    b'{"id":"a","cmd":"set","intervals":{"temp_s":1e400}}', b'{"id":"a","cmd":"set","intervals":{"temp_s":-1e400}}',
    b'{"id":"a","cmd":"ping","x":"\\x41"}', b'{"id":"a","cmd":"ping","x":"\t"}', b'\xef\xbb\xbf{"id":"a","cmd":"ping"}',
    b'{"id":"a\\nb","cmd":"ping"}', b'{"id":"a\nb","cmd":"ping"}', b'{"id":"\\u00e9","cmd":"ping"}', b'{"id":"\xc3\xa9","cmd":"ping"}',
    b'{"id":"a","cmd":"\xff"}', b'{"id":"a","cmd":"ping","\\ud800":1}', b"[" * 250 + b"]" * 250, b"{}" * 200,
    b'{"id":"a","cmd":"set","thresholds":{"b":{"warn":[[1]]}}}', b'{"id":"a","cmd":"set","thresholds":{"b":{"warn":[1]}}}',
    b'{"id":"a","cmd":"identify","s":7.0}', b'{"id":"a","cmd":"identify","s":true}', b'{"id":"a","cmd":"identify","s":3600}',
    b'{"id":"a","cmd":"identify","s":1' + b"0" * 40 + b"}", b'{"id":"a","cmd":"set","thresholds":{"b":{"warn":-' + b"9" * 400 + b"}}}",
    b'{"id":"a","cmd":"set"}', b'{"id":"a","cmd":"set","intervals":{}}', b'{"id":"a","cmd":"set","thresholds":{"b":null}}',
    b'{"id":"a","cmd":"set","thresholds":{"b.early":{"warn":1}}}', b'{"id":"a","cmd":"ack-alarm","metric":"b.early"}',
    b'{"id":"a","cmd":"rebaseline","sensor":"a234567890123456"}', b'{"id":"a","cmd":"rebaseline","sensor":"a2345678901234567"}',
    b'{"id":"' + b"i" * 64 + b'","cmd":"ping"}', b'{"id":"' + b"i" * 65 + b'","cmd":"ping"}', b"", b" ", b"null", b"0", b'"x"',
]


def expected_prefix(error):
    """The part of an error line both Pythons word alike: quotes of values may differ between
    CPython and MicroPython (repr of unicode, float text), so stop at the first quote or value."""
    head = re.split("['\"{\\[]", error)[0]
    return head[:head.rindex(": ") + 2] if ": " in head else head


def corpus_entry(msg):
    ok, error = node_verdict(msg)
    if isinstance(msg, int):
        entry = {"size": msg}
    elif _is_text(msg):
        entry = {"text": msg.decode()}
    else:
        entry = {"hex": msg.hex()}
    entry["ok"] = ok
    if not ok:
        entry["error"] = expected_prefix(str(error))
    return entry


def _is_text(msg):
    """Printable ASCII: stored as text, read back alike by both Pythons' json (not so a surrogate pair)."""
    return all(32 <= byte < 127 for byte in msg)


def write_corpus():
    """The hand-picked cases, then up to three payloads for each error the strategies reach (by
    its prefix) and for each valid shape (command, arguments), up to 400 in all."""
    seen, entries = {}, []

    def add(msg, always=False):
        entry = corpus_entry(msg)
        if entry["ok"]:
            cmd_id, cmd, args = parser.parse_command(msg)
            key = (cmd, tuple(sorted(args)), tuple(sorted(k for v in args.values() for k in v)) if cmd == "set" else ())
        else:
            key = re.sub(r"[0-9]+", "N", entry["error"])  # one kind of error, wherever it was found
        if always or (seen.get(key, 0) < 3 and len(entries) < 400):
            seen[key] = seen.get(key, 0) + 1
            entries.append(entry)

    for msg in HAND_PICKED + [513, 70000]:
        add(msg, always=True)
    for strategy, n in ((near_valid_messages(), 6000), (set_patches().map(
            lambda c: json.dumps(dict({"id": "s-1", "cmd": "set"}, **c)).encode()), 1000),
                        (st.binary(max_size=80), 300), (json_values.map(lambda v: json.dumps(v).encode()), 300)):
        @settings(max_examples=n, **FUZZ)
        @given(strategy)
        def collect(msg):
            add(msg)
        collect()
    CORPUS.write_text("[\n" + ",\n".join(json.dumps(e, ensure_ascii=True) for e in entries) + "\n]\n")
    return len(entries)


if __name__ == "__main__" and "--write-corpus" in sys.argv:
    print(write_corpus(), "entries written to", CORPUS)
