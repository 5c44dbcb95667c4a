"""Topics and JSON payloads exactly as docs/contract.md defines them.

Builders return compact UTF-8 JSON bytes ready to publish, except record()
and diag(), which return dicts (a record is buffered until a telemetry
message is built; diag is also embedded in an ack). Floats are rounded to
what the sensors resolve, to keep messages short; nan/inf become null since
JSON has no such numbers.
"""
import json
from micropython import const
from node.alarms import LEVELS
from node.health import overall

KINDS = ("status", "telemetry", "alarm", "diag", "cmd", "ack")
COMMANDS = ("ping", "diag")
MAX_COMMAND = const(512)
MAX_ID = const(64)

_DEG_C = const(2)  # decimals for temperatures
_G = const(4)  # for rms / pk in g
_CF = const(2)  # for crest factors


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _r(v, nd):
    if v is None or v - v != 0:  # v - v is nan for nan and inf
        return None
    return round(v, nd)


def _r3(v, nd):
    return [_r(v[0], nd), _r(v[1], nd), _r(v[2], nd)]


def topic(site, device_id, kind):
    return "floorwatch/" + site + "/" + device_id + "/" + kind


def record(up, temps=None, vib=None):
    """One telemetry record taken at up (ms since boot).

    temps: {name: degC or None for a failed read}.
    vib: {name: (rms, pk, cf)}, each [x, y, z]; the lists are copied, so the
    caller may reuse them. Names mapped to None are left out.
    """
    r = {"up": up}
    if temps:
        t = {}
        for name in temps:
            t[name] = _r(temps[name], _DEG_C)
        r["t"] = t
    if vib:
        v = {}
        for name in vib:
            f = vib[name]
            if f is not None:
                v[name] = {"rms": _r3(f[0], _G), "pk": _r3(f[1], _G), "cf": _r3(f[2], _CF)}
        if v:
            r["v"] = v
    return r


def telemetry(boot, seq, records):
    """records[i] is record number seq + i of this boot."""
    if not records:
        raise ValueError("telemetry needs at least one record")
    return _dumps({"boot": boot, "seq": seq, "n": len(records), "r": records})


def status(state, fw, boot, reset=None, ip=None, health=None, config_error=None):
    """The retained status; 'offline' (the Last Will) carries state, fw, boot only."""
    d = {"state": state, "fw": fw, "boot": boot}
    if state != "offline":
        d["reset"] = reset
        d["ip"] = ip
        d["health"] = health
        d["config_error"] = config_error
    return _dumps(d)


def _decimals(metric):
    if metric.endswith(".rms") or metric.endswith(".pk"):
        return _G
    return _CF if metric.endswith(".cf") else _DEG_C


def alarm(metric, event, value, up, boot):
    """event is the (level, prev, limit) tuple from alarms.Limit.update."""
    level, prev, limit = event
    nd = _decimals(metric)
    return _dumps({"metric": metric, "event": "raise" if level > prev else "clear",
                   "level": LEVELS[level], "prev": LEVELS[prev],
                   "value": _r(value, nd), "limit": _r(limit, nd), "up": up, "boot": boot})


def diag(up, fw, boot, reset, sensors, heap_free, rssi, mqtt_reconnects,
         wifi_reconnects, config_error=None):
    """The diag payload as a dict; health and problems come from health.overall.

    sensors: a list of health.SensorHealth (or a dict of them).
    """
    if type(sensors) is dict:
        sensors = list(sensors.values())
    state, problems = overall(sensors, heap_free, config_error)
    per = {}
    for s in sensors:
        per[s.name] = s.as_dict()
    return {"up": up, "fw": fw, "boot": boot, "reset": reset, "health": state,
            "problems": problems, "heap_free": heap_free, "rssi": rssi,
            "mqtt_reconnects": mqtt_reconnects, "wifi_reconnects": wifi_reconnects,
            "config_error": config_error, "sensors": per}


def ack(cmd_id, cmd, ok, result=None, error=None):
    """The answer to a command: result when ok, error otherwise."""
    d = {"id": cmd_id, "cmd": cmd, "ok": bool(ok)}
    if ok:
        d["result"] = result
    else:
        d["error"] = error
    return _dumps(d)


class CommandError(ValueError):
    """A command that cannot be run; cmd_id / cmd are None when unreadable."""

    def __init__(self, message, cmd_id=None, cmd=None):
        super().__init__(message)
        self.cmd_id = cmd_id
        self.cmd = cmd


def parse_command(msg):
    """(cmd_id, cmd, args) from a cmd message (bytes or str), else CommandError.

    args holds any keys besides id and cmd.
    """
    if type(msg) is str:
        msg = msg.encode()
    if len(msg) > MAX_COMMAND:
        # Not parsed at all: bounds the memory a command can cost.
        raise CommandError("command is %d bytes, at most %d allowed" % (len(msg), MAX_COMMAND))
    try:
        d = json.loads(bytes(msg).decode())
    except Exception:  # ValueError, UnicodeError
        raise CommandError("not valid JSON")
    if type(d) is not dict:
        raise CommandError("not a JSON object")
    cmd_id = d.get("id")
    if type(cmd_id) is not str or not 0 < len(cmd_id) <= MAX_ID:
        raise CommandError("id must be a string of 1..%d characters" % MAX_ID)
    cmd = d.get("cmd")
    if cmd is None:
        raise CommandError("missing cmd", cmd_id)
    if type(cmd) is not str:
        raise CommandError("cmd is not a string", cmd_id)
    if cmd not in COMMANDS:
        raise CommandError("unknown command %s" % repr(cmd), cmd_id, cmd)
    args = {}
    for k in d:
        if k != "id" and k != "cmd":
            args[k] = d[k]
    return cmd_id, cmd, args
