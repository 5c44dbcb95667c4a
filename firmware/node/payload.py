"""Topics and JSON payloads exactly as docs/contract.md defines them.

Builders return compact UTF-8 JSON bytes ready to publish, except record() (a
list) and diag() (a dict): a record is encoded once with encode() and queued as
bytes until a telemetry message is built; diag is also embedded in an ack. Floats are rounded to
what the sensors resolve, to keep messages short; nan/inf become null since
JSON has no such numbers.

parse_command() reads a command and checks all of it against the command table (_ARGUMENTS) before
anything runs; COMMANDS is that table's argument types, for host tools.
"""
import json
from micropython import const
from node import config
from node.alarms import LEVELS
from node.health import overall

KINDS = ("status", "telemetry", "alarm", "diag", "cmd", "ack")

_DEG_C = const(2)  # decimals for temperatures
_G = const(4)  # for rms / pk in g (alarms)
_MG = const(1)  # for rms / pk in mg (records: the same resolution)
_RATIO = const(2)  # for crest factors, kurtosis, ratios to the baseline
_MM_S = const(2)  # for velocities
_RATE = const(3)  # for degC per minute


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


encode = _dumps  # a record, once, as it will sit in the queue and in the telemetry message


def _r(v, nd):
    if v is None or v - v != 0:  # v - v is nan for nan and inf
        return None
    return round(v, nd)


def topic(site, device_id, kind):
    return "floorwatch/" + site + "/" + device_id + "/" + kind


def cols(sensors):
    """The boot's record layout: {"t": [temperature sensor names], "v": [vibration sensor names]},
    in config order. Records hold values by position; the names go once per telemetry message."""
    return {"t": [s.name for s in sensors if s.kind == "temp"], "v": [s.name for s in sensors if s.kind == "vib"]}


def _trim(values):
    """values without its trailing nulls (a missing entry reads as null): the contract's rule."""
    n = len(values)
    while n and values[n - 1] is None:
        n -= 1
    return values if n == len(values) else values[:n]


def _features(f):
    """(rms, pk, kurt, vel, zone, rel) as a feature set: rms, pk in mg, then kurt, vel, zone, rel."""
    out = []
    for values, scale, nd in ((f[0], 1000, _MG), (f[1], 1000, _MG), (f[2], 1, _RATIO), (f[3], 1, _MM_S)):
        for i in range(3):
            v = values[i]
            out.append(_r(v * scale, nd) if v is not None else None)
    out.append(f[4])
    rel = f[5]
    if rel is not None:
        for i in range(3):
            out.append(_r(rel[i], _RATIO))
    return _trim(out)


def _trend(tr):
    if tr is None:
        return None
    eta = tr[2]
    out = _trim([_r(tr[0], _RATE), _r(tr[1], _DEG_C), round(eta) if eta is not None and eta - eta == 0 else None])
    return out or None


def record(up, temps=None, vib=None, trends=None):
    """One telemetry record taken at up (ms since boot), positional as cols() lays it out.

    temps: [degC or None for a failed read], one per cols "t" name, or None when none was taken.
    vib: [None (not read) or (rms, pk, kurt, vel, zone, rel)], one per cols "v" name, or None: rms,
    pk, kurt, vel [x, y, z]; zone "A".."D"; rel None while the baseline is learned, else (vel, cf,
    kurt) as ratios to it. trends: [None or (rate degC/min, rise K, eta s)], one per "t" name.
    Trailing nulls are left out everywhere (docs/contract.md).
    """
    r = [up, None, None, None]
    if temps is not None:
        r[1] = _trim([_r(v, _DEG_C) for v in temps])
    if vib is not None:
        r[2] = _trim([_features(f) if f is not None else None for f in vib])
    if trends:
        r[3] = _trim([_trend(tr) for tr in trends])
        if not r[3]:
            r[3] = None
    return _trim(r)


def telemetry(boot, seq, records, layout, t0=None, dropped=None):
    """records[i] (a list, or bytes from encode()) is record number seq + i of boot `boot`.

    layout: that boot's cols(), as a dict or as encoded bytes. t0: Unix time in ms at up = 0 of that
    boot, once the node knows it (a record's wall time is t0 + up). dropped: (boot, seq, n, why)
    declarations of records the receiver must not wait for. Queued records are bytes and are
    spliced in as they are, not decoded again.
    """
    if not records:
        raise ValueError("telemetry needs at least one record")
    head = {"boot": boot, "seq": seq, "n": len(records)}
    if t0 is not None:
        head["t0"] = t0
    if dropped:
        head["dropped"] = [{"boot": d[0], "seq": d[1], "n": d[2], "why": d[3]} for d in dropped]
    if type(layout) is not bytes:
        layout = _dumps(layout)
    body = [r if type(r) is bytes else _dumps(r) for r in records]
    return b"".join((_dumps(head)[:-1], b',"cols":', layout, b',"r":[', b",".join(body), b"]}"))


def status(state, fw, boot, reset=None, ip=None, health=None, config_error=None, vib=None, baseline=None,
           reason=None, safe=None, config_fallback=None, broker=None, build=None):
    """The retained status; 'offline' (the Last Will) carries state, fw, boot only.

    state: "online", "safe_mode" (connected, answering commands, not sampling; `safe` says why) or
    "offline". reason: why the previous run ended, as the node recorded it (None: nothing recorded,
    e.g. a power loss). config_fallback: why config.json was rejected while the last known good config
    runs. broker: "primary" or "backup".
    vib: {accelerometer name: (odr_hz, lo_hz, hi_hz, limited)}, what its velocity band covers.
    baseline: "learning" or "ready" (None when nothing is monitored).
    build: (app, cfg, mp, hw): the deployed app's hash and config.json's (12 hex digits each, None
    when unknown), the MicroPython release and board, so that a provisioning rerun sees from the
    broker alone that a node needs nothing, and the fleet monitor which board it is.
    """
    d = {"state": state, "fw": fw, "boot": boot}
    if state != "offline":
        d["reset"] = reset
        d["reason"] = reason
        d["ip"] = ip
        d["health"] = health
        d["config_error"] = config_error
        if vib:
            meta = {}
            for name in vib:
                odr, lo, hi, limited = vib[name]
                meta[name] = {"odr": odr, "band": [lo, hi], "limited": limited}
            d["vib"] = meta
        if baseline:
            d["baseline"] = baseline
        if safe:
            d["safe"] = safe
        if config_fallback:
            d["config_fallback"] = config_fallback
        if broker:
            d["broker"] = broker
        if build:
            d["app"], d["cfg"], d["mp"], d["hw"] = build
    return _dumps(d)


_DECIMALS = {"rms": _G, "pk": _G, "cf": _RATIO, "kurt": _RATIO, "vel": _MM_S, "rate": _RATE,
             "rise": _DEG_C, "early": 0}


def _decimals(metric):
    dot = metric.find(".")
    return _DEG_C if dot < 0 else _DECIMALS.get(metric[dot + 1:], _DEG_C)


def _active(state):
    """alarms.Alarms.state() as {metric: {"level", "acked"}}."""
    out = {}
    for metric in state:
        level, acked = state[metric]
        out[metric] = {"level": LEVELS[level], "acked": acked}
    return out


def alarm(metric, event, value, up, boot, state, acked=False):
    """An alarm event; event is the (kind, level, prev, limit) tuple from node.alarms.

    kind: raise, clear, realarm or ack. state is alarms.Alarms.state() after the event: every
    message carries the whole picture, so the retained one tells a late subscriber everything.
    """
    kind, level, prev, limit = event
    nd = _decimals(metric)
    return _dumps({"metric": metric, "event": kind, "level": LEVELS[level], "prev": LEVELS[prev],
                   "value": _r(value, nd), "limit": _r(limit, nd), "acked": acked, "up": up,
                   "boot": boot, "active": _active(state)})


def alarm_state(up, boot, state):
    """The alarm picture alone (event "state"), published after every connect."""
    return _dumps({"event": "state", "up": up, "boot": boot, "active": _active(state)})


def diag(up, fw, boot, reset, sensors, heap_free, rssi, mqtt_reconnects,
         wifi_reconnects, config_error=None, queue=None, synced=None, failed_boots=None, cmds=None):
    """The diag payload as a dict; health and problems come from health.overall.

    sensors: a list of health.SensorHealth (or a dict of them). queue: the store's stats()
    ({"ram", "flash", "dropped"}); synced: whether the node knows wall time; failed_boots: boots in a
    row that did not become stable, this one included; cmds: the command counters this boot
    ({"ok", "rejected", "limited", "dropped"}).
    """
    if type(sensors) is dict:
        sensors = list(sensors.values())
    state, problems = overall(sensors, heap_free, config_error)
    per = {}
    for s in sensors:
        per[s.name] = s.as_dict()
    d = {"up": up, "fw": fw, "boot": boot, "reset": reset, "health": state,
         "problems": problems, "heap_free": heap_free, "rssi": rssi,
         "mqtt_reconnects": mqtt_reconnects, "wifi_reconnects": wifi_reconnects,
         "config_error": config_error, "sensors": per}
    if queue is not None:
        d["queue"] = queue
    if synced is not None:
        d["synced"] = synced
    if failed_boots is not None:
        d["failed_boots"] = failed_boots
    if cmds is not None:
        d["cmds"] = cmds
    return d


def ack(cmd_id, cmd, ok, result=None, error=None):
    """The answer to a command: result when ok, error otherwise."""
    d = {"id": cmd_id, "cmd": cmd, "ok": bool(ok)}
    if ok:
        d["result"] = result
    else:
        d["error"] = error
    return _dumps(d)


# ---- commands: the one table of what a node accepts (docs/contract.md, "cmd and ack") ----
#
# A command is checked whole before anything runs: the bytes (size, nesting, strict JSON), the id,
# the name, then each argument's type AND value. Value checks are node.config's own checks and
# tables, so `set` accepts exactly the intervals and threshold fields config.json does, with the
# same ranges, and errors read alike. cmd.json says the same for the host; tests hold both to the
# same verdicts (tests/security/test_cmd_fuzz.py) and a corpus runs this code in the MicroPython VM.

MAX_COMMAND = const(512)  # bytes; the link discards a longer command unread
MAX_ID = const(64)
_MAX_DEPTH = const(4)  # a valid command nests 3 deep: the command, thresholds, one metric's limits
_ID_PUNCTUATION = "_.:-"
_SENSOR_LEN = config._SENSOR_HEAD[0][2]  # a sensor name's length limit, as config.json has it
# Metrics a threshold may name (config.py's list) and an alarm may carry (also <sensor>.early).
_THRESHOLD_SUFFIXES = config.VIB_METRICS + config.TEMP_METRICS
_ALARM_SUFFIXES = _THRESHOLD_SUFFIXES + ("early",)


class CommandError(ValueError):
    """A command that cannot be run; str() is one line. cmd_id is the command's id once it has been
    read and found valid, cmd its name once known to be a command; None otherwise, so an error ack
    echoes nothing the node has not checked."""

    def __init__(self, message, cmd_id=None, cmd=None):
        super().__init__(message)
        self.cmd_id = cmd_id
        self.cmd = cmd


def _metric(v, suffixes, path):
    """<sensor name> or <sensor name>.<suffix>, as config.json's thresholds name metrics."""
    if type(v) is not str:
        raise config._bad(path, v, "is not a string")
    dot = v.find(".")
    name, suffix = (v, None) if dot < 0 else (v[:dot], v[dot + 1:])
    try:
        config._ident(name, _SENSOR_LEN, path)
        ok = suffix is None or suffix in suffixes
    except config.ConfigError:
        ok = False
    if not ok:
        raise config._bad(path, v, "is not a metric name (a sensor name, or <sensor>.%s)" % "|".join(suffixes))
    return v


def _merge_patch(v, rows, path):
    """An object merging into the config object `rows` (node.config table rows) describes: each
    key one of the rows', each value null (back to the default) or what the row's check accepts."""
    if type(v) is not dict:
        raise config._bad(path, v, "is not an object")
    for key in sorted(v):
        row = None
        for r in rows:
            if r[0] == key:
                row = r
        if row is None:
            raise config.ConfigError(path, key, "unknown key %s (it takes %s)" % (
                config._show("", key), ", ".join([r[0] for r in rows])))
        if v[key] is not None:
            row[1](v[key], row[2], path + "." + key)
    return v


def _thresholds_patch(v, arg, path):
    if type(v) is not dict:
        raise config._bad(path, v, "is not an object")
    for metric in sorted(v):
        _metric(metric, _THRESHOLD_SUFFIXES, path)
        if v[metric] is not None:
            _merge_patch(v[metric], config._LIMIT, path + "." + metric)
    return v


# Each command's arguments, all optional: (name, check, arg), check(value, arg, path) as in
# node.config (returns the value or raises ConfigError).
_ARGUMENTS = {
    "ping": (),
    "diag": (),
    "ack-alarm": (("metric", _metric, _ALARM_SUFFIXES),),
    "rebaseline": (("sensor", config._ident, _SENSOR_LEN),),
    "reboot": (),
    "resume": (),
    "set": (("intervals", _merge_patch, config._INTERVALS), ("thresholds", _thresholds_patch, None)),
    "identify": (("s", config._int, (0, 3600)),),
}
_NEEDS_ARGUMENT = ("set",)  # a set without intervals or thresholds would change nothing
_JSON_TYPE = {_metric: str, config._ident: str, config._int: int, _merge_patch: dict, _thresholds_patch: dict}
# The same table as {command: {argument: the JSON type it takes}}, for host tools.
COMMANDS = {}
for _cmd in _ARGUMENTS:
    COMMANDS[_cmd] = {}
    for _row in _ARGUMENTS[_cmd]:
        COMMANDS[_cmd][_row[0]] = _JSON_TYPE[_row[1]]


def _valid_id(v):
    if type(v) is not str or not 0 < len(v) <= MAX_ID:
        return False
    for c in v:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in _ID_PUNCTUATION):
            return False
    return True


# Strict JSON, by hand: MicroPython's json.loads accepts documents that are not JSON ({"a":1 2},
# trailing commas, 01, {]}), so on its own it would run commands the host's contract rejects. One
# pass over the bytes, no allocation, no recursion; it also bounds nesting before json.loads runs
# and counts object members, so a duplicate key (which json.loads would silently merge) shows.

def _skip_ws(b, i):
    n = len(b)
    while i < n and b[i] in (32, 9, 10, 13):
        i += 1
    return i


def _digits(b, i):
    n = len(b)
    start = i
    while i < n and 48 <= b[i] <= 57:
        i += 1
    if i == start:
        raise ValueError(i)
    return i


def _number(b, i):
    n = len(b)
    if b[i] == 45:  # -
        i += 1
    if i < n and b[i] == 48:  # a leading 0 stands alone
        i += 1
    else:
        i = _digits(b, i)
    if i < n and b[i] == 46:  # .
        i = _digits(b, i + 1)
    if i < n and b[i] in (69, 101):  # E e
        i += 1
        if i < n and b[i] in (43, 45):
            i += 1
        i = _digits(b, i)
    return i


def _string(b, i):
    n = len(b)
    if i >= n or b[i] != 34:
        raise ValueError(i)
    i += 1
    while i < n:
        c = b[i]
        if c == 34:
            return i + 1
        if c < 32:
            raise ValueError(i)
        if c == 92:  # backslash
            e = b[i + 1] if i + 1 < n else 0
            if e == 117:  # \uXXXX
                for k in range(i + 2, i + 6):
                    h = b[k] if k < n else 0
                    if not (48 <= h <= 57 or 65 <= h <= 70 or 97 <= h <= 102):
                        raise ValueError(k)
                i += 6
            elif e in (34, 92, 47, 98, 102, 110, 114, 116):
                i += 2
            else:
                raise ValueError(i)
        else:
            i += 1
    raise ValueError(i)


def _key(b, i):
    i = _skip_ws(b, _string(b, _skip_ws(b, i)))
    if i >= len(b) or b[i] != 58:  # :
        raise ValueError(i)
    return i + 1


def _scan(b):
    """The number of object members in b when b is one strict JSON value nested at most
    _MAX_DEPTH deep; ValueError(offset) where it is not JSON; CommandError when too deep."""
    n = len(b)
    depth = 0
    objects = 0  # bit k set: the container at depth k + 1 is an object
    members = 0
    want_value = True
    i = 0
    while True:
        i = _skip_ws(b, i)
        if want_value:
            c = b[i] if i < n else 0
            if c == 123 or c == 91:  # { [
                if depth == _MAX_DEPTH:
                    raise CommandError("nested deeper than %d levels" % _MAX_DEPTH)
                objects = (objects | (1 << depth)) if c == 123 else (objects & ~(1 << depth))
                depth += 1
                i = _skip_ws(b, i + 1)
                if i < n and b[i] == c + 2:  # } ] right away: empty
                    depth -= 1
                    i += 1
                    want_value = False
                elif c == 123:
                    i = _key(b, i)
                    members += 1
                continue
            if c == 34:
                i = _string(b, i)
            elif c == 45 or 48 <= c <= 57:
                i = _number(b, i)
            elif b[i:i + 4] == b"true" or b[i:i + 4] == b"null":
                i += 4
            elif b[i:i + 5] == b"false":
                i += 5
            else:
                raise ValueError(i)
            want_value = False
        elif depth == 0:
            if i != n:
                raise ValueError(i)
            return members
        else:
            c = b[i] if i < n else 0
            is_object = objects & (1 << (depth - 1))
            if c == 44:  # ,
                want_value = True
                i += 1
                if is_object:
                    i = _key(b, i)
                    members += 1
            elif c == (125 if is_object else 93):
                depth -= 1
                i += 1
            else:
                raise ValueError(i)


def _members(v):
    """Object members in a parsed value (at most _MAX_DEPTH deep: _scan saw to that)."""
    if type(v) is dict:
        n = len(v)
        for k in v:
            n += _members(v[k])
        return n
    if type(v) is list:
        n = 0
        for x in v:
            n += _members(x)
        return n
    return 0


def parse_command(msg):
    """(cmd_id, cmd, args) from a cmd message, else CommandError.

    msg: bytes or str; or an int, the size of a command too large for the link to read. args holds
    the arguments given (all optional; _ARGUMENTS names them and what each accepts).
    """
    if type(msg) is int:
        raise CommandError("command is %d bytes, at most %d allowed" % (msg, MAX_COMMAND))
    if type(msg) is str:
        msg = msg.encode()
    if len(msg) > MAX_COMMAND:  # not parsed at all: bounds what a command can cost
        raise CommandError("command is %d bytes, at most %d allowed" % (len(msg), MAX_COMMAND))
    msg = bytes(msg)
    try:
        members = _scan(msg)
        d = json.loads(msg.decode())
    except ValueError as e:  # also UnicodeError; CommandError (too deep) goes through
        if isinstance(e, CommandError):
            raise
        where = e.args[0] if e.args and type(e.args[0]) is int else None
        raise CommandError("not valid JSON" if where is None else "not valid JSON (at byte %d)" % where)
    if type(d) is not dict:
        raise CommandError("not a JSON object")
    if _members(d) != members:
        raise CommandError("not valid JSON (a duplicate key)")
    cmd_id = d.get("id")
    if not _valid_id(cmd_id):
        raise CommandError("id must be 1..%d characters of A-Z a-z 0-9 %s" % (MAX_ID, " ".join(_ID_PUNCTUATION)))
    cmd = d.get("cmd")
    if cmd is None:
        raise CommandError("missing cmd", cmd_id)
    if type(cmd) is not str:
        raise CommandError("cmd is not a string", cmd_id)
    if cmd not in _ARGUMENTS:
        raise CommandError("unknown command " + config._show("", cmd), cmd_id)
    rows = _ARGUMENTS[cmd]
    args = {}
    for key in sorted(d):
        if key == "id" or key == "cmd":
            continue
        row = None
        for r in rows:
            if r[0] == key:
                row = r
        if row is None:
            raise CommandError("%s takes no argument %s" % (cmd, config._show("", key)), cmd_id, cmd)
        try:
            args[key] = row[1](d[key], row[2], key)
        except config.ConfigError as e:
            raise CommandError(cmd + ": " + str(e), cmd_id, cmd)
    if cmd in _NEEDS_ARGUMENT and not args:
        raise CommandError("%s: nothing to change: give %s" % (cmd, " or ".join([r[0] for r in rows])), cmd_id, cmd)
    return cmd_id, cmd, args
