"""The node's main loop: sample on schedule, judge the readings, queue them, publish, answer commands.

One blocking loop, as on a bare ESP32: each pass services the link (commands, keepalive), takes the
readings that are due, hands them to the condition monitor (node.monitor), adds each record to the
store-and-forward queue (node.store) and publishes from the queue, oldest first, at a bounded rate.
A record leaves the queue only after its PUBACK; while the broker is unreachable the queue spills to
flash. Between passes the loop idles on the MQTT socket until something is due or a command arrives.

Supervision (node.supervisor): the hardware watchdog is fed only while every part of the loop checks
in on time; the reason for each planned or detected restart is recorded before it happens and shown
in the next status; three failed boots in a row (boots that never ran stable for _STABLE_MS) start
the node in safe mode: it connects and answers commands but does not sample, until it has run
_SAFE_HOLD_MS or the `resume` command restarts it normally. A config.json that cannot be used falls
back to the last known good one (node.config.load_or_last_good).

`node` (module global) is the running Node, for inspection at the REPL.
"""

import gc
import hashlib
import json
import machine
import os
import time
from binascii import hexlify
from micropython import const

from node import VERSION, commands, config, health, payload, sensors
from node.ds18b20 import ProbeBus
from node.link import Link
from node.monitor import Monitor
from node.ratelimit import TokenBucket
from node.store import Store
from node.supervisor import BootRecord, Watchdog, write_atomic

_IDLE_MAX_MS = const(5000)  # longest idle between passes: keepalive pings and reconnects run in passes
_BATCH_MAX = const(10)  # records per telemetry message; this many waiting go at once
_WDT_MS = const(60000)  # hardware watchdog: longer than the slowest pass (a reconnect: several 5 s timeouts)
_PART_LATE_MS = const(90000)  # a loop part that has not checked in for this long stops the feeding
_STABLE_MS = const(300000)  # a boot that ran this long counts as good
_SAFE_HOLD_MS = const(1800000)  # safe mode ends by itself after this long
_SYNC_RETRY_MS = const(300000)  # NTP: retry while unsynced, ...
_SYNC_EVERY_MS = const(21600000)  # ... and re-sync this often once synced
_RESETS = {1: "power_on", 2: "hard", 3: "wdt", 4: "deepsleep", 5: "soft"}
_BASELINE_FILE = "baseline.json"
_CLOCK_FILE = "clock.json"  # {boot: t0} of recent boots, so records drained after a reboot keep wall time
_CLOCK_BOOTS = const(8)
_COLS_FILE = "cols.json"  # {first boot: cols} for each sensor layout records in the queue may have
_APP_FILE = "app.json"  # the manifest `floorwatch deploy` writes last
# Commands: a burst of 8 (what the link's inbox holds, so one full delivery is served), then one a
# second. Far above what an operator or `fleet cmd` sends, low enough that a flood costs the loop at
# most about one ack publish a second, and cannot make the node publish as much as it receives.
_CMD_BURST = const(8)
_CMD_EVERY_MS = const(1000)

node = None


def _load_json(path):
    """The dict stored at path, or None (missing or unreadable file)."""
    try:
        with open(path) as f:
            stored = json.load(f)
        return stored if type(stored) is dict else None
    except (OSError, ValueError):
        return None


def _save_json(path, data):
    # Rare writes (a baseline completes, the clock is first synced), so flash wear does not matter
    # here; atomic, so a power cut mid-write leaves the old file rather than a torn one.
    try:
        write_atomic(path, json.dumps(data))
    except OSError as exc:
        print(path, "not saved:", repr(exc))


def _build_ids(config_path):
    """(app hash, config.json hash, MicroPython release, board) for the status: the first 12 hex
    digits of the app hash deploy wrote to app.json and of config.json's SHA-256 (None where there
    is none), and what MicroPython calls the board (os.uname().machine)."""
    app = (_load_json(_APP_FILE) or {}).get("app")
    try:
        with open(config_path, "rb") as f:
            cfg = hexlify(hashlib.sha256(f.read()).digest())[:12].decode()
    except OSError:
        cfg = None
    uname = os.uname()
    return (app[:12] if type(app) is str else None), cfg, uname.release, uname.machine


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


def _sample_late_ms(every):
    # A sampling pass may legitimately wait a whole interval for its next reading.
    return max(every["temp_s"], every["vib_s"]) + _PART_LATE_MS


class Node:
    def __init__(self, cfg, config_error, net, record, fallback=None, build=None, config_path="config.json"):
        self.cfg = cfg
        self.config_path = config_path  # where `set` writes (config.GOOD holds the last good copy)
        self.led = None  # a StatusLed, made by the first identify
        self.cmd_counts = {"ok": 0, "rejected": 0, "limited": 0}  # this boot's commands, for diag
        self.limit_told = False  # a rate-limited command was answered since the last one that ran
        self.build = build  # (app, cfg, mp, hw), for the status
        self.config_error = config_error
        self.config_fallback = fallback
        self.record = record
        self.boot = _boot_counter()
        self.reset = _RESETS.get(machine.reset_cause(), "unknown")
        self.uptime = Uptime()
        self.cmd_tokens = TokenBucket(_CMD_BURST, _CMD_EVERY_MS, self.uptime())
        self.safe = None
        if record.safe_mode:
            self.safe = "%d failed boots in a row, last: %s" % (record.failed - 1, record.reason or self.reset)
        queue = cfg["queue"] if cfg else {"flash_kb": 256, "drain_per_s": 20}
        # The RAM tail holds a whole batch (10 records with a vibration set fit the 2 KB RTC mirror),
        # so a batch goes out from RAM and never passes through flash while the broker is there.
        self.store = Store(self.boot, flash_bytes=queue["flash_kb"] * 1024, ram_bytes=2000,
                           batch=_BATCH_MAX + 1, rtc=machine.RTC())
        self.drain_per_s = queue["drain_per_s"]
        self.credit = _BATCH_MAX  # records that may go out now (token bucket at drain_per_s)
        self.credit_at = 0
        self.events = []  # encoded alarm events waiting for the broker
        if cfg and not self.safe:
            self.sensors, self.probe_buses = sensors.build(cfg["sensors"], cfg["machine"]["rpm"])
            self.monitor = Monitor(cfg, _load_json(_BASELINE_FILE))
        else:
            self.sensors, self.probe_buses, self.monitor = [], [], None
        self.temp_sensors = [s for s in self.sensors if s.kind == "temp"]
        self.vib_sensors = [s for s in self.sensors if s.kind == "vib"]
        self.layouts = self._layouts()
        self.held_at = None  # uptime of the oldest record waiting for its batch (None: none waits)
        self.baseline_shown = None  # the baseline state in the last status published
        device_id, site, wifi, broker = net
        self.topics = {}
        for kind in payload.KINDS:
            self.topics[kind] = payload.topic(site, device_id, kind)
        will = payload.status("offline", VERSION, self.boot)
        self.link = Link(device_id, wifi, config.brokers(broker), self.topics["status"], will, self.topics["cmd"])
        self.ntp_host = cfg["time"]["ntp_host"] if cfg else "pool.ntp.org"
        self.clocks = _load_json(_CLOCK_FILE) or {}  # str(boot) -> t0 (ms)
        self.sync_due = 0
        intervals = cfg["intervals"] if cfg else {"temp_s": 10, "vib_s": 30, "diag_s": 60, "send_s": 0}
        self.every = {name: int(intervals[name] * 1000) for name in ("temp_s", "vib_s", "diag_s")}
        self.send_ms = int(intervals["send_s"] * 1000)
        now = time.ticks_ms()
        self.due = {"temp_s": now, "vib_s": now, "diag_s": time.ticks_add(now, self.every["diag_s"])}
        late = {"link": _PART_LATE_MS, "flush": _PART_LATE_MS, "sample": _sample_late_ms(self.every)}
        self.watchdog = Watchdog(late, self.uptime())
        self.dying = None  # the late part once feeding has stopped

    # --- sampling ----------------------------------------------------------------------------
    def _is_due(self, name, now):
        if time.ticks_diff(now, self.due[name]) < 0:
            return False
        self.due[name] = time.ticks_add(self.due[name], self.every[name])
        if time.ticks_diff(now, self.due[name]) >= 0:  # fell behind: skip, don't burst
            self.due[name] = time.ticks_add(now, self.every[name])
        return True

    def sample(self):
        if self.monitor is None:
            return
        now = time.ticks_ms()
        want_temp = self._is_due("temp_s", now)
        want_vib = self._is_due("vib_s", now)
        if not (want_temp or want_vib):
            return
        trends = []
        temps = self._read_temps(trends) if want_temp and self.temp_sensors else None
        vib = self._read_vibration() if want_vib and self.vib_sensors else None
        if temps or (vib and vib.count(None) < len(vib)):
            stats = self.store.stats()
            if self.held_at is None and not (stats["ram"] or stats["flash"]):
                self.held_at = self.uptime()
            self.store.add(payload.encode(payload.record(self.uptime(), temps, vib, trends)))
        self._take_events()

    def _take_events(self):
        """Alarm events from the monitor to the publish queue; a changed baseline to flash."""
        monitor = self.monitor
        if monitor is None:
            return
        if monitor.baseline_changed:
            monitor.baseline_changed = False
            _save_json(_BASELINE_FILE, monitor.baseline.to_dict())
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
        temps = []
        for sensor in self.temp_sensors:
            value = sensor.read()
            temps.append(value)
            trends.append(self.monitor.temperature(sensor.name, value, self.uptime()))
        return temps

    def _read_vibration(self):
        vib = []
        for sensor in self.vib_sensors:
            if sensor.read():
                a = sensor.analysis
                zone, rel = self.monitor.vibration(sensor.name, a, self.uptime())
                vib.append((a.rms, a.pk, a.kurt, a.vel, zone, rel))
            else:
                vib.append(None)
        return vib

    def _layouts(self):
        """{boot: cols} for this boot's record layout and every older one records in the queue may
        have (the names go in each telemetry message; a layout changes only with config.json). One
        flash write per boot that changed the layout; older entries go once no queued boot uses them."""
        known = {}
        stored = _load_json(_COLS_FILE) or {}
        for key in stored:
            known[int(key)] = stored[key]
        mine = payload.cols(self.sensors)
        boots = sorted(known)
        if not boots or known[boots[-1]] != mine:
            oldest = self.store.oldest_boot()
            cover = max([b for b in boots if oldest is not None and b <= oldest] or [oldest or self.boot])
            known = {b: known[b] for b in boots if b >= cover}
            known[self.boot] = mine
            _save_json(_COLS_FILE, {str(b): known[b] for b in known})
        return known

    def _layout(self, boot):
        """The layout records of `boot` were written with (the newest known at or before it)."""
        best = None
        for b in self.layouts:
            if b <= boot and (best is None or b > best):
                best = b
        return self.layouts[best if best is not None else min(self.layouts)]

    # --- wall time ---------------------------------------------------------------------------
    def _sync_clock(self):
        """NTP as soon as WiFi is up, before the broker: the ESP32's TLS checks certificate dates
        against this clock (an unset RTC reads 2000). Records keep their uptime and get wall time
        through t0 = wall - uptime."""
        if self.ntp_host is None or not self.link.wlan.isconnected() or self.uptime() < self.sync_due:
            return
        import ntptime

        ntptime.host = self.ntp_host
        try:
            ntptime.settime()
        except Exception as exc:  # OSError, or a bad packet: try again later
            print("ntp failed:", repr(exc))
            self.sync_due = self.uptime() + _SYNC_RETRY_MS
            return
        self.sync_due = self.uptime() + _SYNC_EVERY_MS
        t0 = time.time_ns() // 1000000 - self.uptime()
        key = str(self.boot)
        old = self.clocks.get(key)
        self.clocks[key] = t0
        if old is None or abs(old - t0) > 1000:  # a jump, or the first sync: remember it across a reboot
            for stale in sorted(self.clocks, key=int)[:-_CLOCK_BOOTS]:
                del self.clocks[stale]
            _save_json(_CLOCK_FILE, self.clocks)

    # --- reporting ---------------------------------------------------------------------------
    def diag(self):
        healths = [sensor.health for sensor in self.sensors]
        return payload.diag(
            up=self.uptime(), fw=VERSION, boot=self.boot, reset=self.reset, sensors=healths,
            heap_free=gc.mem_free(), rssi=self.link.rssi(), mqtt_reconnects=self.link.mqtt_reconnects,
            wifi_reconnects=self.link.wifi_reconnects, config_error=self.config_error,
            queue=self.store.stats(), synced=str(self.boot) in self.clocks, failed_boots=self.record.failed,
            cmds=self._cmd_stats(),
        )

    def _cmd_stats(self):
        stats = dict(self.cmd_counts)
        stats["dropped"] = self.link.dropped_commands  # the inbox was full: never read
        return stats

    def status(self):
        state, _ = health.overall([s.health for s in self.sensors], gc.mem_free(), self.config_error)
        vib = {}
        for s in self.sensors:
            if s.kind == "vib":
                vib[s.name] = (s.spec["odr_hz"], s.band[0], s.band[1], s.limited)
        self.baseline_shown = self._baseline_state()
        return payload.status("safe_mode" if self.safe else "online", VERSION, self.boot, self.reset,
                              self.link.ip(), state, self.config_error, vib, self.baseline_shown,
                              self.record.reason, self.safe, self.config_fallback,
                              "backup" if self.link.broker_index else "primary", self.build)

    def _baseline_state(self):
        if self.monitor is None or not self.sensors:
            return None
        return "learning" if self.monitor.baseline.learning() else "ready"

    def _on_connect(self):
        link = self.link
        link.publish(self.topics["status"], self.status(), True)
        if self.monitor is not None:
            state = self.monitor.alarms.state()
            link.publish(self.topics["alarm"], payload.alarm_state(self.uptime(), self.boot, state), True)
        self.due["diag_s"] = time.ticks_ms()

    def flush(self):
        link = self.link
        if not link.connected:
            return
        if self.baseline_shown is not None and self._baseline_state() != self.baseline_shown:
            link.publish(self.topics["status"], self.status(), True)
        urgent = bool(self.events)  # an alarm takes the records waiting for their batch along
        while self.events and link.publish(self.topics["alarm"], self.events[0], True):
            self.events.pop(0)
        if urgent or self._batch_due():
            self._drain()
        if time.ticks_diff(time.ticks_ms(), self.due["diag_s"]) >= 0:
            if link.publish(self.topics["diag"], payload.encode(self.diag())):
                self.due["diag_s"] = time.ticks_add(time.ticks_ms(), self.every["diag_s"])

    def _batch_due(self):
        """Records go out once the oldest live one has waited send_s, or a batch is full; a backlog
        left from an outage or an earlier boot (held_at None) goes at once, at drain_per_s."""
        stats = self.store.stats()
        waiting = stats["ram"] + stats["flash"]
        if not waiting:
            self.held_at = None
            return False
        return (self.held_at is None or waiting >= _BATCH_MAX
                or self.uptime() - self.held_at >= self.send_ms)

    def _drain(self):
        """Publish queued records, oldest first, at most drain_per_s a second (after an outage the
        backlog must not crowd out live traffic or flood the broker when a whole fleet comes back)."""
        store = self.store
        now = self.uptime()
        self.credit = min(_BATCH_MAX, self.credit + (now - self.credit_at) * self.drain_per_s / 1000)
        self.credit_at = now
        while self.credit >= 1:
            run = store.peek(min(_BATCH_MAX, int(self.credit)))
            if run is None:
                return
            boot, seq, records = run
            dropped = store.dropped()
            t0 = self.clocks.get(str(boot))
            msg = payload.telemetry(boot, seq, records, self._layout(boot), t0, dropped)
            if not self.link.publish(self.topics["telemetry"], msg):
                return
            store.done(len(records))
            if dropped:
                store.reported(len(dropped))
            self.credit -= len(records)
            self.held_at = None

    # --- commands ----------------------------------------------------------------------------
    def handle_commands(self):
        """Answer every command waiting, each after taking a token (see _CMD_BURST): one that finds
        none is not run; the first such after a command that ran is answered "rate limited", the
        rest of that flood only counted. A command that does not parse or fails changes nothing
        and is answered ok false with one line saying why."""
        inbox = self.link.inbox
        while inbox:
            msg = inbox.pop(0)  # bytes, or the size of a command too large to read
            if not self.cmd_tokens.take(self.uptime()):
                self._limited(msg)
                continue
            self.limit_told = False
            try:
                cmd_id, cmd, args = commands.parse_command(msg)
            except commands.CommandError as exc:
                self._answer(exc.cmd_id, exc.cmd, False, error=str(exc))
                continue
            try:
                result = self._run_command(cmd, args)
            except Exception as exc:  # e.g. a metric or sensor the node does not have; never fatal
                self._answer(cmd_id, cmd, False, error=str(exc) or repr(exc))
                continue
            self._answer(cmd_id, cmd, True, result=result)
            self._take_events()
            if cmd == "reboot":
                self.restart("command: reboot")
            elif cmd == "resume":
                self.record.leave_safe_mode()
                self.restart("command: resume")
            elif cmd == "set" and result["restarting"]:
                self.restart("command: set")

    def _answer(self, cmd_id, cmd, ok, result=None, error=None):
        self.cmd_counts["ok" if ok else "rejected"] += 1
        self.link.publish(self.topics["ack"], payload.ack(cmd_id, cmd, ok, result, error))

    def _limited(self, msg):
        self.cmd_counts["limited"] += 1
        if self.limit_told:
            return
        self.limit_told = True
        try:  # only for its id: it is not run
            cmd_id, cmd = commands.parse_command(msg)[:2]
        except commands.CommandError as exc:
            cmd_id, cmd = exc.cmd_id, exc.cmd
        self.link.publish(self.topics["ack"], payload.ack(cmd_id, cmd, False, error=(
            "rate limited: at most %d commands at once, then 1 every %d ms; not run, and further ones "
            "go unanswered until one runs" % (_CMD_BURST, _CMD_EVERY_MS))))

    def _run_command(self, cmd, args):
        if cmd == "ping":
            return {"up": self.uptime(), "fw": VERSION, "boot": self.boot}
        if cmd == "diag":
            result = self.diag()
            self.link.publish(self.topics["diag"], payload.encode(result))
            return result
        if cmd == "reboot":
            return {"restarting": True}
        if cmd == "resume":
            if not self.safe:
                raise ValueError("not in safe mode")
            return {"restarting": True}
        if cmd == "set":
            return self._set(args)
        if cmd == "identify":
            return self._identify(args.get("s", 10))
        if self.monitor is None:
            raise ValueError("not monitoring: " + (self.config_error or "safe mode"))
        if cmd == "ack-alarm":
            return {"acked": self.monitor.ack(args.get("metric"), self.uptime())}
        return {"metrics": self.monitor.rebaseline(args.get("sensor"))}  # "rebaseline"

    def _set(self, changes):
        """Merge changes into the config the node runs on, validate, persist, apply.

        Intervals apply live. Changed thresholds restart the node (the reply goes first): the monitor
        builds its alarm state machines from the config at boot, and a boot is the one path that is
        tested for every config. So does any set while config.json itself is not what runs (fallback
        to the last good copy, or no usable config): the file was just made good, so boot it.
        """
        source = config.GOOD if self.config_fallback else self.config_path
        try:
            raw = config.read(source)
        except (OSError, ValueError) as exc:
            raise ValueError("cannot read %s (%s)" % (source, exc))
        new_raw, cfg = config.update(raw, changes)  # ConfigError: its one line goes into the ack
        changed = config.changes(self.cfg, cfg)
        restarting = self.cfg is None or self.config_fallback is not None
        for path in changed:
            restarting = restarting or path.startswith("thresholds")
        if new_raw != raw or source != self.config_path:
            try:
                config.save(new_raw, self.config_path)
            except OSError as exc:
                raise ValueError("config not saved (%r)" % exc)
        if not restarting:
            self._apply_intervals(cfg["intervals"])
            self.cfg = cfg
            self.build = _build_ids(self.config_path)  # the status shows the new config's hash
            self.link.publish(self.topics["status"], self.status(), True)
        return {"changed": changed, "restarting": restarting}

    def _apply_intervals(self, intervals):
        now = time.ticks_ms()
        for name in ("temp_s", "vib_s", "diag_s"):
            ms = int(intervals[name] * 1000)
            if ms != self.every[name]:
                self.every[name] = ms
                self.due[name] = time.ticks_add(now, ms)  # the new rhythm starts now
        self.watchdog.deadline("sample", _sample_late_ms(self.every))

    def _identify(self, s):  # 0..3600: parse_command checked it
        led = self.cfg["led"] if self.cfg else None
        if led is None:
            raise ValueError("no status LED configured")
        if self.led is None:
            from node.led import StatusLed  # here: a node never identified spends no heap on it

            self.led = StatusLed(led["pin"], led["type"])
        self.led.blink(s * 1000)
        return {"s": s}

    # --- supervision -------------------------------------------------------------------------
    def restart(self, reason):
        """A planned restart: say why, save the queue's RAM tail, reset."""
        self.record.ending(reason)
        self.store.spill()
        self.link.drop()
        machine.reset()

    def _supervise(self, wdt):
        now = self.uptime()
        late = self.watchdog.late(now)
        if late is None:
            wdt.feed()
        elif self.dying is None:  # stop feeding: the hardware watchdog resets the node shortly
            self.dying = late
            self.record.ending("watchdog: " + late)
            self.store.spill()
        if self.safe:
            if now >= _SAFE_HOLD_MS:
                self.record.leave_safe_mode()
                self.restart("safe mode: held %d s" % (_SAFE_HOLD_MS // 1000))
        elif now >= _STABLE_MS:
            self.record.stable()

    # --- main loop ---------------------------------------------------------------------------
    def run(self):
        self.link.start()
        wdt = machine.WDT(timeout=_WDT_MS)
        while True:
            if self.link.service():
                self._on_connect()
            self.watchdog.checkin("link", self.uptime())
            self.handle_commands()
            try:
                self.sample()
                self.watchdog.checkin("sample", self.uptime())
            except Exception as exc:  # a bug in one pass must not stop the node; the watchdog
                print("sampling failed:", repr(exc))  # restarts it if sampling keeps failing
            self._sync_clock()
            self.flush()
            self.watchdog.checkin("flush", self.uptime())
            self._supervise(wdt)
            blink_ms = self.led.service() if self.led is not None else None
            self.link.wait(self._idle_ms(blink_ms))

    def _idle_ms(self, blink_ms=None):
        now = time.ticks_ms()
        wait = _IDLE_MAX_MS if blink_ms is None else min(_IDLE_MAX_MS, blink_ms)
        names = ("temp_s", "vib_s") if self.monitor is not None else ()
        if self.link.connected:  # diag waits for the link, like the backlog
            names += ("diag_s",)
        for name in names:
            wait = min(wait, max(0, time.ticks_diff(self.due[name], now)))
        if self.link.connected:
            stats = self.store.stats()
            if stats["ram"] or stats["flash"]:  # come back when the batch is due, then as credit allows
                if self._batch_due():
                    wait = min(wait, max(0, int((1 - self.credit) * 1000 / self.drain_per_s)))
                else:
                    wait = min(wait, max(0, self.held_at + self.send_ms - self.uptime()))
        return wait


def run(path="config.json"):
    record = BootRecord()
    record.begin()  # this boot counts as failed until it has run stable
    try:
        _run(record, path)
    except KeyboardInterrupt:  # stopped at the console, e.g. by a deploy: not a failed boot
        record.interrupted()
        raise


def _run(record, path):
    global node
    cfg, error, fallback = config.load_or_last_good(path)
    if cfg is not None:
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
    print("floorwatch", VERSION, "device", net[0])  # the line a deploy waits for on the console
    node = Node(cfg, error, net, record, fallback, _build_ids(path), path)
    try:
        node.run()
    except Exception as exc:  # a bug escaped the loop: say so and restart, as a crash on a device would
        record.ending("crash: " + repr(exc)[:100])
        machine.reset()
