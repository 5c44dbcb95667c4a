"""Topics and JSON payloads exactly as docs/contract.md defines them.

Builders return compact UTF-8 JSON bytes ready to publish, except record()
and diag(), which return dicts (a record is encoded once with encode() and
queued as bytes until a telemetry message is built; diag is also embedded in
an ack). Floats are rounded to
what the sensors resolve, to keep messages short; nan/inf become null since
JSON has no such numbers.
"""
import json
from micropython import const
from node.alarms import LEVELS
from node.health import overall

KINDS = ("status", "telemetry", "alarm", "diag", "cmd", "ack")
# Each command with the optional arguments it takes and the JSON type each must have
# (parse_command checks types only; the command itself checks values).
COMMANDS = {"ping": {}, "diag": {}, "ack-alarm": {"metric": str}, "rebaseline": {"sensor": str}, "reboot": {},
            "resume": {}, "set": {"intervals": dict, "thresholds": dict}, "identify": {"s": int}}
_TYPE_NAMES = {str: "a string", dict: "an object", int: "an integer"}
MAX_COMMAND = const(512)
MAX_ID = const(64)

_DEG_C = const(2)  # decimals for temperatures
_G = const(4)  # for rms / pk in g
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


def _r3(v, nd):
    return [_r(v[0], nd), _r(v[1], nd), _r(v[2], nd)]


def topic(site, device_id, kind):
    return "floorwatch/" + site + "/" + device_id + "/" + kind


def record(up, temps=None, vib=None, trends=None):
    """One telemetry record taken at up (ms since boot).

    temps: {name: degC or None for a failed read}.
    vib: {name: (rms, pk, cf, kurt, vel, zone, limited, rel)}: the first five [x, y, z] (copied, so
    the caller may reuse the lists), zone "A".."D", limited True when the velocity band stops short
    of 1000 Hz, rel None while the baseline is learned, else (vel, cf, kurt) as ratios to it.
    trends: {name: (rate degC/min, rise K, eta s)}, any of them None when not known.
    Names mapped to None are left out.
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
                d = {"rms": _r3(f[0], _G), "pk": _r3(f[1], _G), "cf": _r3(f[2], _RATIO),
                     "kurt": _r3(f[3], _RATIO), "vel": _r3(f[4], _MM_S), "zone": f[5]}
                if f[6]:
                    d["limited"] = True
                rel = f[7]
                if rel is not None:
                    d["rel"] = {"vel": _r(rel[0], _RATIO), "cf": _r(rel[1], _RATIO), "kurt": _r(rel[2], _RATIO)}
                v[name] = d
        if v:
            r["v"] = v
    if trends:
        dt = {}
        for name in trends:
            tr = trends[name]
            d = {}
            for key, value, nd in (("rate", tr[0], _RATE), ("rise", tr[1], _DEG_C), ("eta", tr[2], 0)):
                if value is not None and value - value == 0:
                    d[key] = round(value) if nd == 0 else round(value, nd)
            if d:
                dt[name] = d
        if dt:
            r["dt"] = dt
    return r


def telemetry(boot, seq, records, t0=None, dropped=None):
    """records[i] (a dict, or bytes from encode()) is record number seq + i of boot `boot`.

    t0: Unix time in ms at up = 0 of that boot, once the node knows it (a record's wall time is
    t0 + up). dropped: (boot, seq, n, why) declarations of records the receiver must not wait for.
    Queued records are bytes and are spliced in as they are, not decoded again.
    """
    if not records:
        raise ValueError("telemetry needs at least one record")
    head = {"boot": boot, "seq": seq, "n": len(records)}
    if t0 is not None:
        head["t0"] = t0
    if dropped:
        head["dropped"] = [{"boot": d[0], "seq": d[1], "n": d[2], "why": d[3]} for d in dropped]
    body = [r if type(r) is bytes else _dumps(r) for r in records]
    return _dumps(head)[:-1] + b',"r":[' + b",".join(body) + b"]}"


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
         wifi_reconnects, config_error=None, queue=None, synced=None, failed_boots=None):
    """The diag payload as a dict; health and problems come from health.overall.

    sensors: a list of health.SensorHealth (or a dict of them). queue: the store's stats()
    ({"ram", "flash", "dropped"}); synced: whether the node knows wall time; failed_boots: boots in a
    row that did not become stable, this one included.
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
    return d


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

    args holds the command's arguments (COMMANDS names them and their types; all optional).
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
    takes = COMMANDS[cmd]
    args = {}
    for k in sorted(d):
        if k == "id" or k == "cmd":
            continue
        if k not in takes:
            raise CommandError("%s takes no argument %s" % (cmd, repr(k)), cmd_id, cmd)
        if type(d[k]) is not takes[k]:  # type(): true is not an integer here
            raise CommandError("%s: %s must be %s" % (cmd, k, _TYPE_NAMES[takes[k]]), cmd_id, cmd)
        args[k] = d[k]
    return cmd_id, cmd, args
