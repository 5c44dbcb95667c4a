"""The node's main loop: sample on schedule, judge the readings, publish, answer commands.

One blocking loop, as on a bare ESP32: each pass services the link (commands, keepalive), takes the
readings that are due, hands them to the condition monitor (node.monitor: baselines, trends, alarm
state), publishes what is queued and sleeps until the next thing is due. Records wait in a small RAM
queue while the broker is unreachable and go out in order, with their original (boot, seq), once it
is back. Alarm messages are retained, so the last one always carries the current alarm picture.
"""

import gc
import json
import machine
import time
from micropython import const

from node import VERSION, config, health, payload, sensors
from node.ds18b20 import ProbeBus
from node.link import Link
from node.monitor import Monitor

_TICK_MS = const(200)  # longest sleep between passes: bounds command latency
_QUEUE_MAX = const(64)  # records kept while offline (a later issue spills them to flash)
_BATCH_MAX = const(8)  # records per telemetry message when catching up
_RESETS = {1: "power_on", 2: "hard", 3: "wdt", 4: "deepsleep", 5: "soft"}
_BASELINE_FILE = "baseline.json"


def _load_baseline():
    """The baselines learned before this boot, or None (first boot, or an unreadable file)."""
    try:
        with open(_BASELINE_FILE) as f:
            stored = json.load(f)
        return stored if type(stored) is dict else None
    except (OSError, ValueError):
        return None


def _save_baseline(data):
    # Rare (a baseline completes, or a rebaseline), so flash wear does not matter here.
    try:
        with open(_BASELINE_FILE, "w") as f:
            json.dump(data, f)
    except OSError as exc:
        print("baseline not saved:", repr(exc))


def _boot_counter():
    """One more than last time, kept in NVS (survives resets, power loss and reflashing the app)."""
    import esp32

    nvs = esp32.NVS("floorwatch")
    try:
        boot = nvs.get_i32("boot") + 1
    except OSError:
        boot = 1
    nvs.set_i32("boot", boot)
    nvs.commit()
    return boot


class Uptime:
    """Milliseconds since boot, counting on past the 2**30 ms (~12.4 days) where ticks_ms() wraps.

    Must be read at least every few days; the main loop reads it many times a minute.
    """

    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = self._last  # ticks_ms() starts near 0 at boot

    def __call__(self):
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._ms


class Node:
    def __init__(self, cfg, config_error, net):
        self.cfg = cfg
        self.config_error = config_error
        self.boot = _boot_counter()
        self.reset = _RESETS.get(machine.reset_cause(), "unknown")
        self.uptime = Uptime()
        self.seq = 0
        self.queue = []  # encoded records waiting for the broker, oldest first: (seq, record)
        self.events = []  # encoded alarm events waiting for the broker
        if cfg:
            self.sensors, self.probe_buses = sensors.build(cfg["sensors"], cfg["machine"]["rpm"])
            self.monitor = Monitor(cfg, _load_baseline())
        else:
            self.sensors, self.probe_buses, self.monitor = [], [], None
        self.baseline_shown = None  # the baseline state in the last status published
        device_id, site, wifi, broker = net
        self.topics = {}
        for kind in payload.KINDS:
            self.topics[kind] = payload.topic(site, device_id, kind)
        will = payload.status("offline", VERSION, self.boot)
        self.link = Link(device_id, wifi, broker, self.topics["status"], will, self.topics["cmd"])
        intervals = cfg["intervals"] if cfg else {"temp_s": 10, "vib_s": 30, "diag_s": 60}
        self.every = {name: int(intervals[name] * 1000) for name in ("temp_s", "vib_s", "diag_s")}
        now = time.ticks_ms()
        self.due = {"temp_s": now, "vib_s": now, "diag_s": time.ticks_add(now, self.every["diag_s"])}

    # --- sampling ----------------------------------------------------------------------------
    def _is_due(self, name, now):
        if time.ticks_diff(now, self.due[name]) < 0:
            return False
        self.due[name] = time.ticks_add(self.due[name], self.every[name])
        if time.ticks_diff(now, self.due[name]) >= 0:  # fell behind: skip, don't burst
            self.due[name] = time.ticks_add(now, self.every[name])
        return True

    def sample(self):
        if self.cfg is None:
            return
        now = time.ticks_ms()
        want_temp = self._is_due("temp_s", now)
        want_vib = self._is_due("vib_s", now)
        if not (want_temp or want_vib):
            return
        trends = {}
        temps = self._read_temps(trends) if want_temp else None
        vib = self._read_vibration() if want_vib else None
        if temps or vib:
            self.queue.append((self.seq, payload.record(self.uptime(), temps, vib, trends)))
            self.seq += 1
            if len(self.queue) > _QUEUE_MAX:
                self.queue.pop(0)
        self._take_events()

    def _take_events(self):
        """Alarm events from the monitor to the publish queue; a changed baseline to flash."""
        monitor = self.monitor
        if monitor is None:
            return
        if monitor.baseline_changed:
            monitor.baseline_changed = False
            _save_baseline(monitor.baseline.to_dict())
        if not monitor.events:
            return
        state = monitor.alarms.state()
        up = self.uptime()
        for metric, event, value in monitor.events:
            acked = state[metric][1] if metric in state else event[0] == "ack"
            self.events.append(payload.alarm(metric, event, value, up, self.boot, state, acked))
        monitor.events = []

    def _read_temps(self, trends):
        for bus in self.probe_buses:
            try:
                bus.convert()
            except Exception:
                pass  # each probe on the bus records the failure when it is read
        if self.probe_buses:
            time.sleep_ms(ProbeBus.CONVERT_MS)
        temps = {}
        for sensor in self.sensors:
            if sensor.kind == "temp":
                value = sensor.read()
                temps[sensor.name] = value
                trends[sensor.name] = self.monitor.temperature(sensor.name, value, self.uptime())
        return temps

    def _read_vibration(self):
        vib = {}
        for sensor in self.sensors:
            if sensor.kind == "vib" and sensor.read():
                a = sensor.analysis
                zone, rel = self.monitor.vibration(sensor.name, a, self.uptime())
                vib[sensor.name] = (a.rms, a.pk, a.cf, a.kurt, a.vel, zone, sensor.limited, rel)
        return vib

    # --- reporting ---------------------------------------------------------------------------
    def diag(self):
        healths = [sensor.health for sensor in self.sensors]
        return payload.diag(
            up=self.uptime(), fw=VERSION, boot=self.boot, reset=self.reset, sensors=healths,
            heap_free=gc.mem_free(), rssi=self.link.rssi(), mqtt_reconnects=self.link.mqtt_reconnects,
            wifi_reconnects=self.link.wifi_reconnects, config_error=self.config_error,
        )

    def status(self):
        state, _ = health.overall([s.health for s in self.sensors], gc.mem_free(), self.config_error)
        vib = {}
        for s in self.sensors:
            if s.kind == "vib":
                vib[s.name] = (s.spec["odr_hz"], s.band[0], s.band[1], s.limited)
        self.baseline_shown = self._baseline_state()
        return payload.status("online", VERSION, self.boot, self.reset, self.link.ip(), state,
                              self.config_error, vib, self.baseline_shown)

    def _baseline_state(self):
        if self.monitor is None or not self.sensors:
            return None
        return "learning" if self.monitor.baseline.learning() else "ready"

    def flush(self):
        link = self.link
        if self.baseline_shown is not None and self._baseline_state() != self.baseline_shown:
            link.publish(self.topics["status"], self.status(), True)
        while self.events and link.publish(self.topics["alarm"], self.events[0], True):
            self.events.pop(0)
        while self.queue:
            batch = self.queue[:_BATCH_MAX]
            msg = payload.telemetry(self.boot, batch[0][0], [record for _, record in batch])
            if not link.publish(self.topics["telemetry"], msg):
                return
            del self.queue[: len(batch)]
        if time.ticks_diff(time.ticks_ms(), self.due["diag_s"]) >= 0:
            if link.publish(self.topics["diag"], json.dumps(self.diag())):
                self.due["diag_s"] = time.ticks_add(time.ticks_ms(), self.every["diag_s"])

    # --- commands ----------------------------------------------------------------------------
    def handle_commands(self):
        while self.link.inbox:
            msg = self.link.inbox.pop(0)
            try:
                cmd_id, cmd, args = payload.parse_command(msg)
            except payload.CommandError as exc:
                self.link.publish(self.topics["ack"], payload.ack(exc.cmd_id, exc.cmd, False, error=str(exc)))
                continue
            try:
                result = self._run_command(cmd, args)
            except Exception as exc:  # e.g. a metric or sensor the node does not have; never fatal
                self.link.publish(self.topics["ack"], payload.ack(cmd_id, cmd, False, error=str(exc) or repr(exc)))
                continue
            self.link.publish(self.topics["ack"], payload.ack(cmd_id, cmd, True, result=result))
            self._take_events()

    def _run_command(self, cmd, args):
        if cmd == "ping":
            return {"up": self.uptime(), "fw": VERSION, "boot": self.boot}
        if cmd == "diag":
            result = self.diag()
            self.link.publish(self.topics["diag"], json.dumps(result))
            return result
        if self.monitor is None:
            raise ValueError("not monitoring: " + self.config_error)
        if cmd == "ack-alarm":
            return {"acked": self.monitor.ack(args.get("metric"), self.uptime())}
        return {"metrics": self.monitor.rebaseline(args.get("sensor"))}  # "rebaseline"

    # --- main loop ---------------------------------------------------------------------------
    def run(self):
        self.link.start()
        while True:
            if self.link.service():
                self.link.publish(self.topics["status"], self.status(), True)
                if self.monitor is not None:
                    state = self.monitor.alarms.state()
                    self.link.publish(self.topics["alarm"], payload.alarm_state(self.uptime(), self.boot, state), True)
                self.due["diag_s"] = time.ticks_ms()
            self.handle_commands()
            try:
                self.sample()
            except Exception as exc:  # a bug in one pass must not stop the node
                print("sampling failed:", repr(exc))
            self.flush()
            time.sleep_ms(self._idle_ms())

    def _idle_ms(self):
        now = time.ticks_ms()
        wait = _TICK_MS
        for name in ("temp_s", "vib_s"):
            wait = min(wait, max(0, time.ticks_diff(self.due[name], now)))
        return wait


def run(path="config.json"):
    cfg, error = config.load(path)
    if error is None:
        net = (cfg["device_id"], cfg["site"], cfg["wifi"], cfg["broker"])
    else:
        print("config rejected:", error)
        try:
            net = config.salvage(config.read(path))
        except Exception:  # unreadable file or not JSON: nothing to salvage
            net = None
        if net is None:
            print("no usable WiFi/broker settings: staying at the REPL")
            return
    Node(cfg, error, net).run()

