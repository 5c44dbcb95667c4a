"""Validate config.json (see docs/contract.md) and fill in every default; merge a remote `set`.

The rules live in tables of (key, check, arg, default) rows, one table per
JSON object, so a new field is one row. A check returns the normalized value
or raises ConfigError; the first problem wins, in table order, so the error a
node reports does not depend on dict iteration order.

Config errors are printed and published (retained) in status, so they never show a secret: the
value of a password or key field is shown as <hidden>, and not kept in ConfigError.value.

A broker entry may be structurally valid yet unfit to log in with: credentials_problem() says why
(no user, no password, a placeholder, too short). validate() accepts such a config, so a node
with a bad password still samples and queues locally; node.link refuses that broker, and the host
tools refuse to deploy such a config. The placeholder check is a short list and a few shapes
(<...>, one character repeated, the user name), by hand: it has to run on the node.
"""
import binascii
import json
from micropython import const

from node import vibration
from node.supervisor import write_atomic

_MAX_SENSORS = const(8)
_SHOW_MAX = const(40)

TEMP_TYPES = ("ds18b20", "mcu_temp")
ACCEL_TYPES = ("adxl345", "mpu6050")
VIB_METRICS = ("rms", "pk", "cf", "kurt", "vel")
TEMP_METRICS = ("rate", "rise")  # besides the sensor's own name (degC)
WINDOWS = (64, 128, 256, 512, 1024, 2048)  # powers of two: the velocity FFT needs one

_REQ = "<required>"  # default marker: the key must be present


_SECRET_KEYS = ("password", "key")  # a field with one of these names is never shown
HIDDEN = "<hidden>"


def _secret(path):
    return path[path.rfind(".") + 1:] in _SECRET_KEYS


class ConfigError(ValueError):
    """One rejected field: str() is 'field: reason naming the value' (never a secret's value)."""

    def __init__(self, field, value, reason):
        super().__init__(field + ": " + reason)
        self.field = field
        self.value = None if _secret(field) else value


def _show(path, v):
    # Config errors are published (retained) in status: never echo a secret.
    if _secret(path):
        return HIDDEN
    if type(v) is str:
        s = repr(v)
    else:
        try:
            s = json.dumps(v)
        except Exception:
            s = repr(v)
    if len(s) > _SHOW_MAX:
        s = s[:_SHOW_MAX - 3] + "..."
    return s


def _bad(path, v, what):
    return ConfigError(path, v, _show(path, v) + " " + what)


# ---- checks: check(value, arg, path) -> normalized value ----

def _int(v, rng, path):
    # type() rather than isinstance(): CPython's bool is an int subclass.
    if type(v) is not int:
        raise _bad(path, v, "is not an integer")
    return _range(v, rng, path)


def _num(v, rng, path):
    # v - v == 0 rejects inf and nan (json.loads turns 1e400 into inf).
    if type(v) not in (int, float) or v - v != 0:
        raise _bad(path, v, "is not a number")
    return _range(v, rng, path)


def _num_or_null(v, rng, path):
    if v is None:
        return None
    if type(v) not in (int, float):
        raise _bad(path, v, "is not a number or null")
    return _num(v, rng, path)


def _range(v, rng, path):
    if rng is None:
        return v
    lo, hi = rng
    if hi is None:
        if not v >= lo:
            raise _bad(path, v, "is below " + str(lo))
    elif not lo <= v <= hi:
        raise _bad(path, v, "is out of range %s..%s" % (lo, hi))
    return v


def _bool(v, arg, path):
    if type(v) is not bool:
        raise _bad(path, v, "is not true or false")
    return v


def _str(v, rng, path):
    if type(v) is not str:
        raise _bad(path, v, "is not a string")
    if not rng[0] <= len(v) <= rng[1]:
        raise _bad(path, v, "is not %d..%d characters long" % rng)
    return v


def _str_or_null(v, rng, path):
    if v is None:
        return None
    if type(v) is not str:
        raise _bad(path, v, "is not a string or null")
    return _str(v, rng, path)


def _object_or_null(v, spec, path):
    if v is None:
        return None
    if type(v) is not dict:
        raise _bad(path, v, "is not an object or null")
    return _fields(v, spec, path)


def _ident(v, maxlen, path):
    """^[a-z0-9][a-z0-9_-]{0,maxlen-1}$ by hand: MicroPython's re has no {m,n}."""
    if type(v) is not str:
        raise _bad(path, v, "is not a string")
    ok = 0 < len(v) <= maxlen
    for i in range(len(v) if ok else 0):
        c = v[i]
        if not ("a" <= c <= "z" or "0" <= c <= "9" or (i and c in "_-")):
            ok = False
            break
    if not ok:
        raise _bad(path, v, "is not a valid name (1..%d of a-z 0-9 _ -, "
                   "starting with a letter or digit)" % maxlen)
    return v


def _oneof(v, choices, path):
    # The type test keeps true/4.0 from matching 1/4.
    if type(v) is not type(choices[0]) or v not in choices:
        raise _bad(path, v, "is not one of " + ", ".join([str(c) for c in choices]))
    return v


def _rom(v, arg, path):
    if v is None:
        return None
    if type(v) is not str or len(v) != 16:
        raise _bad(path, v, "is not 16 hex digits")
    v = v.lower()
    for c in v:
        if c not in "0123456789abcdef":
            raise _bad(path, v, "is not 16 hex digits")
    if v[:2] != "28":
        raise _bad(path, v, "does not start with the DS18B20 family code 28")
    return v


def _object(v, spec, path):
    return _fields(v, spec, path)


def _loose(v, spec, path):
    return _fields(v, spec, path, False)


def _any_object(v, arg, path):
    if type(v) is not dict:
        raise _bad(path, v, "is not an object")
    return v


def _join(path, key):
    return path + "." + key if path else key


def _fields(raw, spec, path, strict=True):
    """Check raw against spec rows; returns a new dict with defaults filled."""
    if type(raw) is not dict:
        raise _bad(path or "config", raw, "is not an object")
    out = {}
    for key, check, arg, default in spec:
        p = _join(path, key)
        if key in raw:
            out[key] = check(raw[key], arg, p)
        elif default is _REQ:
            raise ConfigError(p, None, "missing (required)")
        elif type(default) in (dict, list):
            # A container default still goes through its check to get its defaults.
            out[key] = check(type(default)(), arg, p)
        else:
            out[key] = default
    if strict:
        for key in sorted(raw):
            if key not in out:
                raise ConfigError(_join(path, key), raw[key], "unknown key")
    return out


# ---- tables ----

_PIN = (0, 48)

_WIFI = (
    ("ssid", _str, (1, 32), _REQ),
    ("password", _str, (0, 63), ""),
)

# ---- the CA certificate that signs the broker's: PEM text, decoded to DER on the node ----

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"
_CA_MAX = const(8192)  # PEM characters: room for a few CA certificates


def ca_der(pem):
    """The DER bytes of the first certificate in PEM text. ValueError when there is no complete,
    decodable certificate block; its text reads on from the value ("... is not PEM text ...").
    DER of one certificate is what MicroPython's ssl takes as cadata on every port (mbedtls parses
    PEM only where PEM support is compiled in, and rejects DER with anything after it)."""
    start = pem.find(_PEM_BEGIN)
    end = pem.find(_PEM_END, start) if start >= 0 else -1
    if end < 0:
        raise ValueError("is not PEM text holding a certificate (%s ... %s)" % (_PEM_BEGIN, _PEM_END))
    try:
        der = binascii.a2b_base64("".join(pem[start + len(_PEM_BEGIN):end].split()))
    except ValueError:  # binascii.Error on CPython, ValueError on MicroPython
        der = b""
    if len(der) < 2 or der[0] != 0x30:  # an X.509 certificate is an ASN.1 SEQUENCE
        raise ValueError("holds a PEM certificate that is not valid (not base64 of DER)")
    return der


def _ca(v, arg, path):
    if _str_or_null(v, (0, _CA_MAX), path) is None:
        return None
    try:
        ca_der(v)
    except ValueError as e:
        raise _bad(path, v, str(e))
    return v


_SERVER = (
    ("host", _str, (1, 253), _REQ),
    ("port", _int, (1, 65535), None),  # None: derived from tls below
    ("user", _str_or_null, (0, 65535), None),
    ("password", _str_or_null, (0, 65535), None),
    ("tls", _bool, None, False),
    ("ca", _ca, None, None),  # required when tls is true (see _server)
)

_KEEPALIVE = ("keepalive_s", _int, (5, 3600), 30)

# The backup broker is tried when the primary keeps failing; the keepalive is shared.
_BROKER = _SERVER + (_KEEPALIVE, ("backup", _object_or_null, _SERVER, None))

_QUEUE = (
    ("flash_kb", _int, (16, 1024), 256),  # flash ring for readings the broker has not acked
    ("drain_per_s", _num, (1, 200), 20),  # catch-up rate after an outage, records per second
)

# The board's status LED, blinked by the identify command; null: the board has none (or it is unknown).
LED_TYPES = ("gpio", "ws2812")
_LED = (
    ("pin", _int, _PIN, _REQ),
    ("type", _oneof, LED_TYPES, "gpio"),
)

_TIME = (("ntp_host", _str_or_null, (1, 253), "pool.ntp.org"),)  # null: never sync the clock

_INTERVALS = (
    ("temp_s", _num, (1, 3600), 10),
    ("vib_s", _num, (1, 3600), 30),
    ("diag_s", _num, (10, 86400), 60),
    # How long a record may wait to go out with others (0: at once). Batches cut bytes on the wire
    # (docs/contract.md); alarms never wait, and take the waiting records along.
    ("send_s", _num, (0, 3600), 300),
)

# 1 kHz / (1 + SMPLRT_DIV): the rates dividing 1000; the 8-bit divider stops at 4 Hz.
_MPU_ODRS = (4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000)

_SENSOR_HEAD = (
    ("name", _ident, 16, _REQ),
    ("type", _oneof, TEMP_TYPES + ACCEL_TYPES, _REQ),
)


def _accel(addrs, odrs, odr_default):
    return (
        ("sda", _int, _PIN, _REQ),
        ("scl", _int, _PIN, _REQ),
        ("addr", _oneof, addrs, addrs[0]),
        ("range_g", _oneof, (2, 4, 8, 16), 4),
        ("odr_hz", _oneof, odrs, odr_default),
        ("window", _oneof, WINDOWS, 1024),
    )


_SENSOR_BODY = {
    "ds18b20": (("pin", _int, _PIN, _REQ), ("rom", _rom, None, None)),
    "mcu_temp": (),
    # 3200 Hz covers the whole ISO 10816 band (10-1000 Hz); lower rates make it band-limited.
    "adxl345": _accel((83, 29), (100, 200, 400, 800, 1600, 3200), 3200),
    "mpu6050": _accel((104, 105), _MPU_ODRS, 1000),
}

_LIMIT = (
    ("warn", _num_or_null, None, None),
    ("alarm", _num_or_null, None, None),
    ("deadband", _num, (0, None), 0),
    ("on_delay_s", _num, (0, 86400), 0),
    ("off_delay_s", _num, (0, 86400), 0),
    ("latch", _bool, None, False),
    ("realarm_s", _num, (0, 604800), 0),  # 0: never
    ("relative", _bool, None, False),  # warn/alarm/deadband are multiples of the learned baseline
    ("early_s", _num_or_null, (1, 604800), None),  # temperatures: warn this long before the limit
)

_MACHINE = (
    ("group", _oneof, (1, 2), 2),  # ISO 10816-3: 1 large (> 300 kW), 2 medium (15-300 kW)
    ("foundation", _oneof, ("rigid", "flexible"), "rigid"),
    ("rpm", _num_or_null, (1, 100000), None),  # below 600 the velocity band starts at 2 Hz, not 10
)

_BASELINE = (("samples", _int, (1, 1000), 20),)

_TREND = (("window_s", _num, (30, 86400), 600),)


def _clash(a, b):
    """(field, why) if sensor b would drive the same device as sensor a, else None."""
    t = b["type"]
    if t == "ds18b20" and a["type"] == t and a["pin"] == b["pin"]:
        # rom null means "the only probe on this bus".
        if a["rom"] is None or b["rom"] is None or a["rom"] == b["rom"]:
            return "rom", "probes sharing a pin need distinct roms"
    elif t == "mcu_temp" and a["type"] == t:
        return "type", "there is one chip sensor"
    elif t in ACCEL_TYPES and a["type"] in ACCEL_TYPES:
        if (a["sda"], a["scl"], a["addr"]) == (b["sda"], b["scl"], b["addr"]):
            return "addr", "same I2C pins and address"
    return None


def _sensors(v, arg, path):
    if type(v) is not list:
        raise _bad(path, v, "is not a list")
    if len(v) > _MAX_SENSORS:
        raise ConfigError(path, v, "has %d entries, at most %d allowed" % (len(v), _MAX_SENSORS))
    out = []
    for i in range(len(v)):
        p = "%s[%d]" % (path, i)
        head = _fields(v[i], _SENSOR_HEAD, p, False)
        s = _fields(v[i], _SENSOR_HEAD + _SENSOR_BODY[head["type"]], p)
        for j in range(i):
            if out[j]["name"] == s["name"]:
                raise ConfigError(p + ".name", s["name"], "%s is already used by %s[%d]"
                                  % (_show("", s["name"]), path, j))
            clash = _clash(out[j], s)
            if clash:
                key = clash[0]
                raise ConfigError(p + "." + key, s[key], "%s clashes with %s[%d]: %s"
                                  % (_show("", s[key]), path, j, clash[1]))
        out.append(s)
    return out


_TOP = (
    ("device_id", _ident, 32, _REQ),
    ("site", _ident, 32, _REQ),
    ("wifi", _object, _WIFI, _REQ),
    ("broker", _object, _BROKER, _REQ),
    ("sensors", _sensors, None, []),
    ("intervals", _object, _INTERVALS, {}),
    ("machine", _object, _MACHINE, {}),
    ("baseline", _object, _BASELINE, {}),
    ("trend", _object, _TREND, {}),
    ("queue", _object, _QUEUE, {}),
    ("time", _object, _TIME, {}),
    ("led", _object_or_null, _LED, None),
    ("thresholds", _any_object, None, {}),  # checked after sensors are known
)


def metric_names(sensors):
    """Every metric a threshold may name, for validated sensor entries."""
    names = []
    for s in sensors:
        if s["type"] in ACCEL_TYPES:
            for m in VIB_METRICS:
                names.append(s["name"] + "." + m)
        else:
            names.append(s["name"])
            for m in TEMP_METRICS:
                names.append(s["name"] + "." + m)
    return names


def _thresholds(raw, sensors):
    known = metric_names(sensors)
    out = {}
    for m in sorted(raw):
        p = "thresholds." + m
        if m not in known:
            raise ConfigError(p, m, "%s is not a metric of a configured sensor (a temperature sensor "
                              "name or its .rate or .rise, or <accelerometer>.rms, .pk, .cf, .kurt or .vel)"
                              % _show("", m))
        t = _fields(raw[m], _LIMIT, p)
        if t["warn"] is None and t["alarm"] is None:
            raise ConfigError(p, raw[m], "needs warn or alarm (or both)")
        if t["warn"] is not None and t["alarm"] is not None and t["warn"] > t["alarm"]:
            raise ConfigError(p + ".warn", t["warn"], "%s is above alarm %s" % (
                _show("", t["warn"]), _show("", t["alarm"])))
        if t["early_s"] is not None and ("." in m or t["relative"]):
            raise ConfigError(p + ".early_s", t["early_s"], "%s needs an absolute temperature limit "
                              "(a temperature sensor's own metric, not relative)" % _show("", t["early_s"]))
        out[m] = t
    return out


def _iso_velocity_limits(cfg):
    """ISO 10816-3 defaults for every accelerometer without a .vel threshold: warn on entering
    zone C, alarm on entering zone D, with a deadband of a tenth of the B/C boundary."""
    m = cfg["machine"]
    ab, bc, cd = vibration.zone_limits(m["group"], m["foundation"])
    for s in cfg["sensors"]:
        metric = s["name"] + ".vel"
        if s["type"] in ACCEL_TYPES and metric not in cfg["thresholds"]:
            t = _fields({"warn": bc, "alarm": cd, "deadband": round(bc / 10, 2)}, _LIMIT, metric)
            cfg["thresholds"][metric] = t


def _server(b, path):
    """The rules across one broker entry's fields: the port follows tls; tls needs the CA."""
    if b["port"] is None:
        b["port"] = 8883 if b["tls"] else 1883
    if b["tls"] and b["ca"] is None:
        raise ConfigError(path + ".ca", None, "missing: tls is true, so the node needs the CA certificate "
                          "(PEM) to check the broker's certificate")
    return b


# ---- can the node log in with a broker entry? ----

MIN_PASSWORD = const(12)
# Well-known defaults, compared with letters and digits only, lower case, trailing digits dropped.
_PLACEHOLDERS = ("password", "passwd", "pass", "changeme", "changeit", "admin", "administrator",
                 "secret", "public", "private", "mqtt", "mosquitto", "floorwatch", "default", "test",
                 "guest", "root", "user", "esp", "esp32", "device", "node", "sensor", "letmein",
                 "qwerty", "xxx", "todo", "fixme", "replaceme", "yourpassword", "yourpasswordhere",
                 "mypassword", "none", "null", "example")


def _letters(s):
    """s in lower case with only its letters and digits: 'Change_Me!' -> 'changeme'."""
    return "".join([c for c in s.lower() if c.isalpha() or c.isdigit()])


def _placeholder(password, user):
    if (password[0] == "<" and password[-1] == ">") or "..." in password or "\u2026" in password:
        return True
    plain = _letters(password)
    name = _letters(user)
    if len(name) >= 3:
        plain = plain.replace(name, "")  # the user name itself, or it with a default or digits
    core = plain.rstrip("0123456789")
    return not core or core in _PLACEHOLDERS or core == core[0] * len(core)


def credentials_problem(server, field="broker"):
    """None when the node may log in with this broker entry (validated, or one of brokers()), else
    one line naming the field (`field`: "broker" or "broker.backup") and why not. Never shows the
    password."""
    user, password = server.get("user"), server.get("password")
    if not user:
        return field + ".user is not set: the node would connect anonymously; set it to the device id"
    if not password:
        return field + ".password is not set; provision this node with its own password"
    if _placeholder(password, user):
        return field + ".password is a placeholder; provision this node with its own password"
    if len(password) < MIN_PASSWORD:
        return "%s.password is shorter than %d characters; provision this node with its own password" % (
            field, MIN_PASSWORD)
    return None


def brokers(broker):
    """The validated broker section as the list Link wants: [primary] or [primary, backup],
    each {"host", "port", "user", "password", "tls", "ca", "keepalive_s"}."""
    out = []
    for b in (broker, broker.get("backup")):
        if b is not None:
            one = {"keepalive_s": broker["keepalive_s"]}
            for row in _SERVER:
                one[row[0]] = b[row[0]]
            out.append(one)
    return out


def _led_pin(cfg):
    """The LED's pin must not be one a sensor drives: blinking it would garble the bus."""
    led = cfg["led"]
    if led is None:
        return
    for i in range(len(cfg["sensors"])):
        s = cfg["sensors"][i]
        for key in ("pin", "sda", "scl"):
            if s.get(key) == led["pin"]:
                raise ConfigError("led.pin", led["pin"], "%d is already used by sensors[%d].%s"
                                  % (led["pin"], i, key))


def validate(raw):
    """Return a new, fully defaulted config dict, or raise ConfigError."""
    cfg = _fields(raw, _TOP, "")
    _server(cfg["broker"], "broker")
    if cfg["broker"]["backup"] is not None:
        _server(cfg["broker"]["backup"], "broker.backup")
    _led_pin(cfg)
    cfg["thresholds"] = _thresholds(cfg["thresholds"], cfg["sensors"])
    _iso_velocity_limits(cfg)
    return cfg


# ---- the set command: change intervals and thresholds remotely ----

SETTABLE = ("intervals", "thresholds")
GOOD = "config.good.json"  # the last config that loaded (see load_or_last_good)


def _patch(target, patch, depth):
    """JSON Merge Patch (RFC 7396): null removes a key (back to its default), an object merges
    key by key, anything else replaces. Cut at `depth` levels, so the recursion is bounded whatever
    a command holds (deeper objects replace whole; validation rejects them)."""
    if depth == 0 or type(patch) is not dict:
        return patch
    out = dict(target) if type(target) is dict else {}
    for key in patch:
        if patch[key] is None:
            out.pop(key, None)
        else:
            out[key] = _patch(out.get(key), patch[key], depth - 1)
    return out


def update(raw, changes):
    """(new raw config, its validated cfg) with `changes` ({"intervals": {...}, "thresholds":
    {...}}) merged into the raw config as JSON merge patches, two levels deep: an interval, a
    metric's limits field by field; {"<metric>": null} removes a threshold. Raises ConfigError
    (nothing is changed: raw is left alone) for a key that may not be set or an invalid result."""
    if not changes:
        raise ConfigError("set", None, "nothing to change: give intervals or thresholds")
    new = dict(raw)
    for key in sorted(changes):
        if key not in SETTABLE:
            raise ConfigError(key, changes[key], "cannot be set remotely (only intervals and thresholds)")
        if type(changes[key]) is not dict:
            raise _bad(key, changes[key], "is not an object")
        new[key] = _patch(raw.get(key), changes[key], 2)
    return new, validate(new)


def _diff(path, old, new, out):
    if type(old) is dict and type(new) is dict:
        for key in sorted(set(old) | set(new)):
            _diff(path + "." + key, old.get(key), new.get(key), out)
    elif old != new:
        out[path] = new


def changes(old, new):
    """{dotted path: new value} for what differs in the settable sections of two validated configs
    (None for old: everything); a removed threshold maps to None, a new one to all its limits."""
    out = {}
    for key in SETTABLE:
        _diff(key, old[key] if old else {}, new[key], out)
    return out


def save(raw, path="config.json", good=GOOD):
    """Write a validated raw config to path, then the same text as the last good copy (so the next
    boot finds them equal and writes nothing). Both atomic; OSError when path cannot be written
    (path is then unchanged); a failed copy leaves the old copy, as load_or_last_good does."""
    text = json.dumps(raw)
    write_atomic(path, text)
    try:
        write_atomic(good, text)
    except OSError as e:
        print("last good config not saved:", repr(e))


def read(path="config.json"):
    """The raw JSON of the config file (raises OSError / ValueError)."""
    with open(path) as f:
        return json.load(f)


def _line(s):
    return s.replace("\n", " ").replace("\r", " ")


class _FileError(ConfigError):
    """The file itself is unusable (unreadable, not JSON); str() names the file."""


def _load(path):
    """(cfg, the file's text) for a good file; raises ConfigError (a _FileError when the file
    is not even JSON). Never anything else, whatever the file holds."""
    try:
        with open(path) as f:
            text = f.read()
        raw = json.loads(text)
    except OSError as e:
        raise _FileError(path, None, "cannot read the file (%s)" % e)
    except ValueError as e:  # also UnicodeError
        raise _FileError(path, None, "not valid JSON (%s)" % e)
    except (MemoryError, RuntimeError) as e:  # huge, or nested too deep (RecursionError)
        raise _FileError(path, None, "too large or too deeply nested to read (%r)" % e)
    try:
        return validate(raw), text
    except (MemoryError, RuntimeError) as e:  # a value too deep even to show in the error
        raise _FileError(path, None, "too large or too deeply nested to read (%r)" % e)


def load(path="config.json"):
    """(cfg, None) for a good file, else (None, one line saying why not)."""
    try:
        return _load(path)[0], None
    except ConfigError as e:
        return None, _line(str(e))


def _text(path):
    try:
        with open(path) as f:
            return f.read()
    except Exception:  # unreadable copy: it gets rewritten
        return None


def load_or_last_good(path="config.json", good=GOOD):
    """Load path, falling back to the last config that loaded (a copy kept in `good`).

    Returns (cfg, error, fallback):
    - path is good: (cfg, None, None); its text is copied to `good` (atomically, and only when
      it differs, to spare the flash) so a later bad edit cannot take the node off the air;
    - path is rejected or unreadable but `good` loads: (the good cfg, None, "<path>: <why>"):
      the node runs on its last good config and says why it is not running on path;
    - neither loads: (None, error as load(path) gives it, None).
    Never raises for a bad or missing file; a failed copy just leaves the old copy in place.
    """
    try:
        cfg, text = _load(path)
    except ConfigError as e:
        try:
            cfg = _load(good)[0]
        except ConfigError:
            return None, _line(str(e)), None
        why = str(e) if isinstance(e, _FileError) else path + ": " + str(e)
        return cfg, None, _line(why)
    if _text(good) != text:
        try:
            write_atomic(good, text)
        except OSError as e:
            print("last good config not saved:", repr(e))
    return cfg, None, None


_SALVAGE = _TOP[:2] + (("wifi", _loose, _WIFI, _REQ), ("broker", _loose, _SERVER + (_KEEPALIVE,), _REQ))


def salvage(raw):
    """Best effort (device_id, site, wifi, broker) from a rejected config.

    Lets a node with a bad config still connect and report the problem.
    Unknown keys are ignored here; None when any of the four is unusable.
    A backup broker is kept when it is valid and dropped (None) when not.
    """
    if type(raw) is not dict:
        return None
    try:
        got = _fields(raw, _SALVAGE, "", False)
        broker = _server(got["broker"], "broker")
    except ConfigError:
        return None
    try:
        backup = raw["broker"].get("backup")
        broker["backup"] = None if backup is None else _server(
            _fields(backup, _SERVER, "broker.backup", False), "broker.backup")
    except ConfigError:
        broker["backup"] = None
    return (got["device_id"], got["site"], got["wifi"], broker)
