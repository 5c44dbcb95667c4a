"""Topics and JSON payloads exactly as docs/contract.md defines them.

Builders return compact UTF-8 JSON bytes ready to publish, except record() (a
list) and diag() (a dict): a record is encoded once with encode() and queued as
bytes until a telemetry message is built; diag is also embedded in an ack. Floats are rounded to
what the sensors resolve, to keep messages short; nan/inf become null since
JSON has no such numbers. Commands are read by node.commands.
"""
import json
from micropython import const
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
