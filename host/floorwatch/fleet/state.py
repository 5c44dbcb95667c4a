"""What the fleet monitor knows about every device, and the alerts its changes raise.

Pure logic: the monitor feeds it each message that passed `floorwatch.contract.validate`
(`update`) and the clock (`tick`); no MQTT here, so it is tested with plain dicts. A paho thread
updates while a UI thread reads, so every public method holds one lock, and `devices()` hands out
copies.

Alerts fire on transitions only, judged against what this monitor has seen. A device never seen
before counts as healthy, online and without alarms: first sight of an online device says nothing,
first sight of a Last Will, a standing alarm or a degraded health is worth an alert. A retained
message delivered again (a reconnect of the monitor) changes nothing, so it alerts nothing.

Which messages move which field (docs/contract.md):
- the boot counter follows status and diag only: telemetry and alarm may come from an earlier boot
  (a queue drained after a reset). A Last Will from a boot before the one known is stale (an old
  connection's death reported late) and changes nothing but last_seen.
- any live message marks last_seen, and one after an outage brings the device back online; a
  retained one (the broker's stored status or alarm picture) does neither.
"""

import copy
import dataclasses
import threading

LEVELS = {"ok": 0, "warning": 1, "alarm": 2}


@dataclasses.dataclass
class DeviceState:
    device_id: str
    site: str
    state: str = "unknown"  # online | safe_mode | offline | unknown (heard from, no status yet)
    online: bool = True
    last_seen: float = None  # epoch s of the last message
    fw: str = None
    board: object = None  # status "hw", when the node sends it
    ip: str = None
    rssi: int = None
    heap_free: int = None
    health: str = None  # ok | degraded | fault
    alarms: dict = dataclasses.field(default_factory=dict)  # metric -> warning | alarm
    queued: int = None  # records waiting on the node: queue ram + flash
    dropped: int = None  # records this boot dropped because its queue was full
    boot: int = None
    reset: str = None

    def as_dict(self):
        return dataclasses.asdict(self)


def _alert(now, dev, kind, text, **detail):
    return {"time": now, "device": dev.device_id, "site": dev.site, "kind": kind,
            "text": f"{dev.device_id} {text}", "detail": detail}


class FleetState:
    def __init__(self, heartbeat_s=90):
        self.heartbeat_s = heartbeat_s
        self._devices = {}
        self._alive_state = {}  # device -> its last online/safe_mode status, restored after a silence
        self._lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------------
    def devices(self):
        """Copies of every DeviceState, sorted by (site, device_id)."""
        with self._lock:
            return [copy.deepcopy(d) for d in sorted(self._devices.values(),
                                                     key=lambda d: (d.site, d.device_id))]

    def summary(self):
        with self._lock:
            devs = list(self._devices.values())
            online = sum(d.online for d in devs)
            return {"total": len(devs), "online": online, "offline": len(devs) - online,
                    "alarming": sum(bool(d.alarms) for d in devs)}

    # --- writing ---------------------------------------------------------------------------------
    def update(self, site, device_id, kind, body, now, retained=False):
        """Take one validated message; returns the alerts it raises (a list, often empty).

        retained: the broker's stored copy (status, alarm picture), handed over on subscribing.
        It updates the picture but proves nothing about the device being alive now: it does not
        count as heard from, and never brings an offline device back.
        """
        with self._lock:
            dev = self._devices.get(device_id)
            alerts = []
            if dev is None:
                dev = self._devices[device_id] = DeviceState(device_id, site)
                dev.last_seen = now  # the heartbeat gives a device first seen now its full time
            elif dev.site != site:
                alerts.append(_alert(now, dev, "changed", f"site changed {dev.site} -> {site}",
                                     field="site", old=dev.site, new=site))
                dev.site = site
            was_offline = dev.state == "offline"
            if not retained:
                dev.last_seen = now
            handler = getattr(self, "_on_" + kind, None)
            if handler:
                alerts += handler(dev, body, now)
            if (was_offline and dev.state == "offline" and not retained
                    and not (kind == "status" and body["state"] == "offline")):
                # Heard from after an outage without a fresh status: it is evidently alive.
                dev.state, dev.online = self._alive_state.get(device_id, "unknown"), True
            if was_offline and dev.online:
                back = "back online" + ("" if dev.state == "online" else f" ({dev.state})")
                alerts.append(_alert(now, dev, "online", back, state=dev.state))
            return alerts

    def tick(self, now):
        """Heartbeat: a device silent longer than heartbeat_s goes offline, with one alert (None: no
        heartbeat, as for a snapshot of retained state)."""
        if self.heartbeat_s is None:
            return []
        alerts = []
        with self._lock:
            for dev in self._devices.values():
                silent = now - dev.last_seen
                if dev.state != "offline" and silent > self.heartbeat_s:
                    alerts.append(self._go_offline(dev, now, f"silent {silent:.0f} s", silent_s=round(silent, 1)))
        return alerts

    # --- one handler per message kind ----------------------------------------------------------
    def _go_offline(self, dev, now, why, **detail):
        dev.state, dev.online = "offline", False
        return _alert(now, dev, "offline", f"offline ({why})", **detail)

    def _on_status(self, dev, body, now):
        if body["state"] == "offline":
            if dev.boot is not None and body["boot"] < dev.boot:
                return []  # a Will from an earlier connection, reported late
            dev.fw, dev.boot = body["fw"], body["boot"]
            return [] if dev.state == "offline" else [self._go_offline(dev, now, "last will")]
        alerts = self._boot(dev, body, now)
        self._alive_state[dev.device_id] = body["state"]
        dev.state, dev.online = body["state"], True
        dev.fw, dev.reset = body["fw"], body.get("reset")
        if body.get("ip") and dev.ip and body["ip"] != dev.ip:
            alerts.append(_alert(now, dev, "changed", f"IP changed {dev.ip} -> {body['ip']}",
                                 field="ip", old=dev.ip, new=body["ip"]))
        dev.ip = body.get("ip") or dev.ip
        if "hw" in body:
            if dev.board is not None and body["hw"] != dev.board:
                alerts.append(_alert(now, dev, "changed", f"board changed {dev.board} -> {body['hw']}",
                                     field="board", old=dev.board, new=body["hw"]))
            dev.board = body["hw"]
        return alerts + self._health(dev, body, now)

    def _on_diag(self, dev, body, now):
        alerts = self._boot(dev, body, now)
        dev.fw, dev.reset = body.get("fw", dev.fw), body.get("reset", dev.reset)
        dev.rssi, dev.heap_free = body.get("rssi"), body.get("heap_free", dev.heap_free)
        queue = body.get("queue")
        if queue:
            dev.queued, dev.dropped = queue["ram"] + queue["flash"], queue["dropped"]
        return alerts + self._health(dev, body, now)

    def _on_alarm(self, dev, body, now):
        new = {metric: a["level"] for metric, a in body["active"].items()}
        old, dev.alarms = dev.alarms, new
        alerts = []
        for metric in sorted(set(old) | set(new)):
            before, after = old.get(metric, "ok"), new.get(metric, "ok")
            if before == after:
                continue
            kind = "alarm" if LEVELS[after] > LEVELS[before] else "alarm_clear"
            detail = {"metric": metric, "level": after, "prev": before}
            text = (f"{metric} {after}" if kind == "alarm" else
                    f"{metric} cleared (was {before})" if after == "ok" else f"{metric} down to {after} (was {before})")
            if body.get("metric") == metric and body["event"] in ("raise", "clear"):
                # The event part says why: the value and the limit it crossed.
                detail.update(value=body["value"], limit=body["limit"])
                if body["value"] is not None:
                    text += f" (value {body['value']}, limit {body['limit']})"
            alerts.append(_alert(now, dev, kind, text, **detail))
        return alerts

    def _boot(self, dev, body, now):
        boot, alerts = body.get("boot"), []
        if boot is None:
            return alerts
        if dev.boot is not None and boot < dev.boot:
            alerts.append(_alert(now, dev, "changed", f"boot counter went backwards {dev.boot} -> {boot}",
                                 field="boot", old=dev.boot, new=boot))
        dev.boot = boot
        return alerts

    def _health(self, dev, body, now):
        health = body.get("health")
        if health is None or health == dev.health:
            return []
        before, dev.health = dev.health or "ok", health
        if health == before:  # first sight of a healthy device
            return []
        problems = body.get("problems") or []
        why = f" ({'; '.join(problems)})" if problems and health != "ok" else ""
        return [_alert(now, dev, "health", f"health {health}{why}", health=health, prev=before,
                       problems=problems)]
