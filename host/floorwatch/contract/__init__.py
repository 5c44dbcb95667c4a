"""The floorwatch contract as code: one JSON Schema per message kind, and one validator.

docs/contract.md says in words what nodes and host tools send each other; schemas/*.json say
the same for machines (JSON Schema draft 2020-12). validate() also checks the few rules a
schema cannot state (n equals the number of records, unique sensor names, ...) and reports
the first problem as one line naming the field, e.g. ``sensors[1].addr: 300 is not one of
83, 29``, so a log line or a CLI error says exactly what to fix.

    from floorwatch.contract import validate, records, ContractError
    msg = validate("telemetry", payload_bytes)   # the parsed message, or ContractError
    for rec in records(msg): ...                 # telemetry records as dicts: {"up", "t", "v", "dt"}

Telemetry records travel as positional arrays laid out by the message's "cols" (bytes on the
wire); records() is the host's one decoder of them, into the dict view every host tool reads.

Stricter than plain JSON Schema on purpose, to match what MicroPython's json gives the node:
integers must be real integers (1.0 is not one), NaN/Infinity and duplicate keys are rejected,
and a pattern's ``$`` does not accept a trailing newline.
"""

import copy
import json
import math
import re
from functools import lru_cache
from importlib import resources

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource

KINDS = ("status", "telemetry", "alarm", "diag", "cmd", "ack", "config", "export")  # export: one row of `fleet export`

_TEMP_TYPES = ("ds18b20", "mcu_temp")
_ACCEL_TYPES = ("adxl345", "mpu6050")


class ContractError(ValueError):
    """A message that breaks the contract. str() is one line: ``<path>: <reason>``.

    ``path`` names the field (``r[0].t.bearing``, ``thresholds.motor.rms.warn``); it is ""
    when the whole message is at fault, and str() then starts with the kind instead.
    """

    def __init__(self, kind, path, reason):
        self.kind = kind
        self.path = path
        self.reason = re.sub(r"[\r\n]+", " ", str(reason))  # always one line
        super().__init__(f"{path or kind}: {self.reason}")


# --- the schemas -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _raw(kind):
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}; expected one of {', '.join(KINDS)}")
    text = resources.files(__name__).joinpath("schemas", f"{kind}.json").read_text("utf-8")
    return json.loads(text)


def schema(kind):
    """The JSON Schema (a fresh dict) for one of KINDS."""
    return copy.deepcopy(_raw(kind))


def _strict_integer(checker, instance):
    return isinstance(instance, int) and not isinstance(instance, bool)


def _anchored_pattern(validator, pattern, instance, schema):
    # Python's `$` also matches before a final "\n"; JSON Schema (ECMA-262) does not.
    if not validator.is_type(instance, "string"):
        return
    m = re.search(pattern, instance)
    if m is None or (pattern.endswith("$") and m.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _anchored_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


@lru_cache(maxsize=None)
def _fast_validator(kind):
    """The schema compiled by jsonschema-rs: about 50 times faster than jsonschema, which a fleet
    monitor checking thousands of messages a second needs. It decides only that a message fits;
    when it does not, jsonschema (with the rules above) finds and words the problem. Its regexes
    anchor `$` at the very end and it keeps booleans out of integers, as _Validator does, and the
    contract tests hold both to the same cases."""
    schemas = {k: _strict_integers(_raw(k)) for k in KINDS}
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in schemas.values()])
    return jsonschema_rs.validator_for(schemas[kind], registry=registry, keywords={"x-int": _NoFloat})


class _NoFloat:
    """jsonschema-rs keyword beside every "integer" type: JSON Schema counts 7.0 as an integer, the
    contract does not (as _strict_integer)."""

    def __init__(self, parent_schema, value, schema_path):
        pass

    def validate(self, instance):
        if type(instance) is float:
            raise ValueError("%r is not an integer" % instance)


def _strict_integers(node):
    """A copy of a schema with "x-int" added wherever a type allows integers."""
    if isinstance(node, list):
        return [_strict_integers(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict_integers(value) for key, value in node.items()}
    kinds = node.get("type")
    if kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds):
        out["x-int"] = True
    return out


@lru_cache(maxsize=None)
def _validator(kind):
    registry = Registry().with_resources(
        (_raw(k)["$id"], Resource.from_contents(_raw(k))) for k in KINDS)
    return _Validator(_raw(kind), registry=registry)


# --- parsing ---------------------------------------------------------------------------------

class _ParseProblem(Exception):
    pass


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _ParseProblem(f"duplicate key {json.dumps(key)}")
        obj[key] = value
    return obj


def _no_constant(name):
    raise _ParseProblem(f"{name} is not a JSON number")


_HUGE_LITERAL = re.compile(r"[0-9][eE][+-]?[0-9]{3}|[0-9]{300}")


def _parse(kind, message):
    """(the parsed message, whether every number in it is known to be finite)."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        raw = bytes(message)
        try:
            message = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ContractError(kind, "", f"not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})")
    if not isinstance(message, str):
        return message, False
    try:
        obj = json.loads(message, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ContractError(kind, "", f"not JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except _ParseProblem as e:
        raise ContractError(kind, "", f"not valid JSON: {e}")
    # Only a literal with a 3-digit exponent or hundreds of digits can overflow to inf; a message
    # without one needs no walk for non-finite numbers (the walk costs more than the parse).
    return obj, _HUGE_LITERAL.search(message) is None


def _check_finite(kind, value, path):
    # An already-parsed message can hold NaN, which passes every minimum/maximum check.
    if isinstance(value, float) and not math.isfinite(value):
        raise ContractError(kind, _fmt_path(path), f"{value} is not a JSON number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(kind, v, path + [k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(kind, v, path + [i])


# --- one line per problem ----------------------------------------------------------------------

def _fmt_path(parts):
    # Keys are joined with "." even when they hold one (thresholds.motor.rms.warn), as the
    # node's config.py writes them, so both sides name a field the same way.
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


_SHOW_MAX = 40


def _show(value, path=()):
    """A value as the node's config.py shows it: strings in repr, the rest as JSON, cut short;
    a password never (config errors end up in the retained status)."""
    if path and str(path[-1]) in ("password", "key"):
        return "<hidden>"
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOW_MAX else text[:_SHOW_MAX - 3] + "..."


def _plain(value):
    return value if isinstance(value, str) else json.dumps(value)


_ARTICLE = {"integer": "an integer", "object": "an object", "array": "a list", "null": "null",
            "string": "a string", "number": "a number", "boolean": "true or false"}


def _reason(error, path):
    """The words for one failed keyword at path; x-rule in the schema adds the why."""
    kw, sch = error.validator, error.schema
    sch = sch if isinstance(sch, dict) else {}
    shown = _show(error.instance, path)
    rule = sch.get("x-rule")
    why = f" ({rule})" if rule else ""
    if kw == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        return f"{shown} is not {' or '.join(_ARTICLE.get(t, t) for t in wanted)}{why}"
    if kw == "enum":
        return f"{shown} is not one of {', '.join(_plain(v) for v in error.validator_value)}{why}"
    if kw == "const":
        return f"{shown} is not {_plain(error.validator_value)}{why}"
    if kw in ("minimum", "maximum"):
        if "minimum" in sch and "maximum" in sch:
            return f"{shown} is out of range {sch['minimum']}..{sch['maximum']}{why}"
        side = "below" if kw == "minimum" else "above"
        return f"{shown} is {side} {error.validator_value}{why}"
    if kw in ("minLength", "maxLength"):
        if "maxLength" in sch:
            return f"{shown} is not {sch.get('minLength', 0)}..{sch['maxLength']} characters long"
        return f"{shown} is empty" if sch["minLength"] == 1 else \
            f"{shown} is shorter than {sch['minLength']} characters"
    if kw == "maxItems":
        return f"has {len(error.instance)} entries, at most {error.validator_value} allowed{why}"
    if kw == "minItems":
        return f"has {len(error.instance)} entries, at least {error.validator_value} needed{why}"
    if kw == "minProperties":
        return f"is empty{why}"
    if kw == "pattern":
        if "x-is" in sch:
            return f"{shown} is not {sch['x-is']}"
        return f"{shown} does not match {error.validator_value}"
    if kw == "not" or kw is None:
        return rule or "not allowed here"
    if kw in ("anyOf", "oneOf"):
        if rule:
            return rule
        causes = list(error.context)
        if causes and all(c.validator == "required" for c in causes):
            return f"needs one of: {', '.join(n for c in causes for n in c.validator_value)}"
    return error.message


def _describe(error):
    """(path list, reason) for the most useful reading of a jsonschema error."""
    path = list(error.absolute_path)
    if error.validator in ("anyOf", "oneOf") and not (isinstance(error.schema, dict)
                                                       and error.schema.get("x-rule")):
        causes = list(error.context)
        if causes and not all(c.validator == "required" for c in causes):
            # The branch that got furthest (deepest path) is usually the one meant.
            best = max(causes, key=lambda c: (len(c.absolute_path), c.validator != "type"))
            return _describe(best)
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return path + [missing], "missing (required)"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = next(k for k in sorted(error.instance) if k not in known)
        return path + [extra], "unknown key"
    if "propertyNames" in error.absolute_schema_path:
        # The failing instance is the key itself; point the path at it.
        key_path = path + [error.instance]
        if error.validator == "enum":
            rule = error.schema.get("x-rule")
            return key_path, "not allowed" + (f" ({rule})" if rule else "")
        return key_path, _reason(error, key_path)
    return path, _reason(error, path)


# --- rules JSON Schema cannot state ----------------------------------------------------------------

_PARTS = {1: ("temps", "t", "temperature"), 2: ("vib", "v", "vibration"), 3: ("trends", "t", "temperature")}


def _check_telemetry(msg):
    records = msg["r"]
    if msg["n"] != len(records):
        yield ["n"], f"{msg['n']} but r holds {len(records)} records"
    cols = msg["cols"]
    seen = {}
    for key in ("t", "v"):
        for i, name in enumerate(cols[key]):
            if name in seen:
                yield ["cols", key, i], f"{_show(name)} is already named in cols.{seen[name]}; sensor names are unique"
            seen.setdefault(name, f"{key}[{i}]")
    for i, rec in enumerate(records):
        if i and rec[0] < records[i - 1][0]:
            yield ["r", i, 0], f"{rec[0]} is earlier than the record before it ({records[i - 1][0]})"
        for part in range(1, len(rec)):
            values = rec[part]
            what, key, kind = _PARTS[part]
            if values is not None and len(values) > len(cols[key]):
                sensors = len(cols[key])
                yield ["r", i, part], (f"{what} has {len(values)} entries but cols.{key} names {sensors} "
                                       f"{kind} sensor{'' if sensors == 1 else 's'}")


def _check_alarm(msg):
    event = msg["event"]
    if event in ("realarm", "ack") and msg["level"] != msg["prev"]:
        yield ["prev"], f"{_show(msg['prev'])} differs from level {_show(msg['level'])}, but a {event} keeps the level"
    value, limit = msg.get("value"), msg.get("limit")
    if event not in ("raise", "clear") or value is None or limit is None:
        return
    # <sensor>.early is a low limit (seconds left): the comparisons turn round.
    sign = -1 if msg["metric"].endswith(".early") else 1
    if event == "raise" and sign * value < sign * limit:
        yield ["value"], f"{_show(value)} is on the safe side of limit {_show(limit)}, so it cannot raise"
    # A clear needs value beyond limit - deadband; once both are rounded for the payload they may
    # meet, so only a value on the alarm side of the limit is certainly wrong.
    if event == "clear" and sign * value > sign * limit:
        yield ["value"], f"{_show(value)} is on the alarm side of limit {_show(limit)}, so it cannot clear"


_ADDR_DEFAULT = {"adxl345": 83, "mpu6050": 104}


def _clash(a, b):
    """(key, why) when sensor b would drive the same device as an earlier sensor a."""
    if b["type"] == "ds18b20" and a["type"] == "ds18b20" and a["pin"] == b["pin"]:
        rom_a, rom_b = a.get("rom"), b.get("rom")
        # rom null means "the only probe on this pin".
        if rom_a is None or rom_b is None or rom_a.lower() == rom_b.lower():
            return "rom", "probes sharing a pin need distinct roms"
    elif b["type"] == "mcu_temp" and a["type"] == "mcu_temp":
        return "type", "there is one chip sensor"
    elif b["type"] in _ACCEL_TYPES and a["type"] in _ACCEL_TYPES:
        bus_a = (a["sda"], a["scl"], a.get("addr", _ADDR_DEFAULT[a["type"]]))
        if bus_a == (b["sda"], b["scl"], b.get("addr", _ADDR_DEFAULT[b["type"]])):
            return "addr", "same I2C pins and address"
    return None


def _check_config(cfg):
    sensors = cfg.get("sensors", [])
    for i, s in enumerate(sensors):
        for j in range(i):
            if sensors[j]["name"] == s["name"]:
                yield ["sensors", i, "name"], f"{_show(s['name'])} is already used by sensors[{j}]"
            clash = _clash(sensors[j], s)
            if clash:
                key, why = clash
                shown = s.get(key, _ADDR_DEFAULT.get(s["type"]) if key == "addr" else None)
                yield ["sensors", i, key], f"{_show(shown)} clashes with sensors[{j}]: {why}"
    led = cfg.get("led")
    if led is not None:
        for i, s in enumerate(sensors):
            for key in ("pin", "sda", "scl"):
                if s.get(key) == led["pin"]:
                    yield ["led", "pin"], f"{led['pin']} is already used by sensors[{i}].{key}"
    metrics = set()
    for s in sensors:
        if s["type"] in _ACCEL_TYPES:
            # cf too: the node computes it and alarms on it, though records leave it to the host to derive.
            metrics.update(f"{s['name']}.{m}" for m in ("rms", "pk", "cf", "kurt", "vel"))
        else:
            metrics.update((s["name"], s["name"] + ".rate", s["name"] + ".rise"))
    for metric, limits in cfg.get("thresholds", {}).items():
        if metric not in metrics:
            yield ["thresholds", metric], (
                f"{_show(metric)} is not a metric of a configured sensor "
                "(a temperature sensor name or its .rate or .rise, or <accelerometer>.rms, .pk, .cf, .kurt or .vel)")
        warn, alarm = limits.get("warn"), limits.get("alarm")
        if warn is not None and alarm is not None and warn > alarm:
            yield ["thresholds", metric, "warn"], f"{_show(warn)} is above alarm {_show(alarm)}"
        early = limits.get("early_s")
        if early is not None and ("." in metric or limits.get("relative")):
            yield ["thresholds", metric, "early_s"], (
                f"{_show(early)} needs an absolute temperature limit (a temperature sensor's own metric, not relative)")


_SEMANTIC = {"telemetry": _check_telemetry, "alarm": _check_alarm, "config": _check_config}


def explain(json_schema, obj):
    """First problem of obj against any JSON Schema, as (path, reason), or None if it fits.

    Lets other host files (board definitions) give the same one-line errors as validate().
    """
    error = next(iter(_Validator(json_schema).iter_errors(obj)), None)
    if error is None:
        return None
    path, reason = _describe(error)
    return _fmt_path(path), reason


def validate(kind, message):
    """Check one message against the contract and return it parsed.

    message: bytes or str holding JSON, or an already-parsed object. Raises ContractError
    (one line naming the field) for the first problem found; ValueError for an unknown kind.
    """
    validator = _validator(kind)  # first: an unknown kind is a ValueError
    obj, finite = _parse(kind, message)
    if not finite:
        _check_finite(kind, obj, [])
    try:
        fits = _fast_validator(kind).is_valid(obj)
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): jsonschema-rs cannot take the string
        fits = False
    error = None if fits else next(iter(validator.iter_errors(obj)), None)
    if error is not None:
        path, reason = _describe(error)
        raise ContractError(kind, _fmt_path(path), reason)
    check = _SEMANTIC.get(kind)
    for path, reason in (check(obj) if check else ()):
        raise ContractError(kind, _fmt_path(path), reason)
    return obj


# --- telemetry records in the host's view ----------------------------------------------------------

_AXES = range(3)


def _g(mg):
    return None if mg is None else round(mg / 1000, 4)


def _features(f):
    """A feature set (positional, rms and pk in mg) as the host's dict (rms and pk in g, cf derived)."""
    f = list(f) + [None] * (16 - len(f))
    rms, pk = f[0:3], f[3:6]
    feats = {"rms": [_g(v) for v in rms], "pk": [_g(v) for v in pk],
             "cf": [round(pk[a] / rms[a], 2) if rms[a] and pk[a] is not None else None for a in _AXES],
             "kurt": f[6:9], "vel": f[9:12], "zone": f[12]}
    if f[13] is not None or f[14] is not None or f[15] is not None:
        feats["rel"] = {"vel": f[13], "cf": f[14], "kurt": f[15]}
    return feats


def records(msg):
    """The records of one telemetry message, oldest first, as dicts in the host's view.

    msg: a message validate("telemetry", ...) accepted (not checked again), or its bytes or str,
    which are validated first (ContractError). Record i of the list is number msg["seq"] + i.

    The node sends positional arrays laid out by msg["cols"], rms and pk in mg, no crest factor
    (docs/contract.md, telemetry). Each becomes
    ``{"up": ms, "t": {name: degC or None}, "v": {name: features}, "dt": {name: trend}}``:
    "t" names every temperature sensor when the record has temperatures (None: read failed or
    entry missing); "v" holds the accelerometers with a feature set, each ``{"rms": [g, g, g],
    "pk": [g, g, g], "cf": [pk/rms, ...], "kurt": [...], "vel": [mm/s, ...], "zone": "A".."D"}``
    plus "rel" ``{"vel", "cf", "kurt"}`` when any ratio to the baseline is known (cf is None on an
    axis whose rms is 0 or None or whose pk is None); "dt" holds the known trends, each with the
    keys known of "rate", "rise", "eta". A key is left out when its part is absent or empty.
    """
    if not isinstance(msg, dict):
        msg = validate("telemetry", msg)
    temp_names, vib_names = msg["cols"]["t"], msg["cols"]["v"]
    out = []
    for rec in msg["r"]:
        n = len(rec)
        r = {"up": rec[0]}
        temps = rec[1] if n > 1 else None
        if temps is not None and temp_names:
            r["t"] = {name: temps[i] if i < len(temps) else None for i, name in enumerate(temp_names)}
        vib = rec[2] if n > 2 else None
        if vib:
            v = {name: _features(vib[i]) for i, name in enumerate(vib_names[:len(vib)]) if vib[i] is not None}
            if v:
                r["v"] = v
        trends = rec[3] if n > 3 else None
        if trends:
            dt = {}
            for name, trend in zip(temp_names, trends):
                if trend:
                    known = {key: value for key, value in zip(("rate", "rise", "eta"), trend) if value is not None}
                    if known:
                        dt[name] = known
            if dt:
                r["dt"] = dt
        out.append(r)
    return out
