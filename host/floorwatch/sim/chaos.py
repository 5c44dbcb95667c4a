"""`floorwatch sim --scenario chaos`: a seeded campaign of faults against a fleet, and its loss report.

Three parts:

- `plan()`, a pure function of (seed, boards, duration, classes): the list of fault events, in board
  seconds. Each board draws each fault class from its own random stream, so a board's faults do
  not change when the fleet grows; every requested class occurs at least once.
- `Campaign`, which plays a plan against a running Fleet in board time, keeps the ground truth of
  what every boot produced (the node's store: its boot and next seq), then heals every fault and
  lets the nodes drain their queues.
- `run()`, which wires a broker, the independent Ledger (floorwatch.ledger), the fleet and the
  campaign together and returns (and writes) the report.

The goal the report judges: no record silently lost. Records the node declared dropped (queue
full, lost in a reset) are counted, duplicates are allowed (named by device, boot, seq).
"""

import contextlib
import errno
import json
import math
import random
import sys
import threading
import time
import traceback
from collections import Counter, namedtuple

from ..broker import BrokerError, Mosquitto, parse_broker_url
from ..ledger import Ledger

DAY = 86400.0

# Fault class -> (scope, events per board (or per fleet) per simulated day, durations in board
# seconds: (shortest, longest), drawn log-uniform so that short and long ones both occur, or None
# for a one-shot fault).
FAULTS = {
    "wifi": ("board", 3.0, (2.0, 4 * 3600.0)),           # the access point disappears
    "unreachable": ("board", 1.0, (5.0, 1800.0)),         # the broker cannot be reached from this board
    "outage": ("fleet", 1.0, (5.0, 1800.0)),              # ... nor from any board
    "broker_restart": ("fleet", 2.0, None),               # a real mosquitto restart
    "sensor": ("board", 2.0, (5.0, 3600.0)),              # a sensor unplugged, then plugged back
    "i2c": ("board", 4.0, (1.0, 600.0)),                  # I2C errors on one device, then healed
    "power": ("board", 2.0, (1.0, 1800.0)),               # power lost at a random point; off for a while
    "brownout": ("board", 1.0, None),
    "watchdog": ("board", 1.0, None),                     # the firmware hangs: the watchdog bites
    "clock": ("board", 1.0, None),                        # the RTC wall clock jumps
    "flash_full": ("board", 1.0, (60.0, 4 * 3600.0)),
}
CLASSES = tuple(FAULTS)
# Actions that start (or are) a fault; each long fault's start is followed by its end action.
START = {"down", "unplug", "fail", "cut", "full", "restart", "brownout", "hang", "jump"}
_ACTIONS = {"wifi": ("down", "up"), "unreachable": ("down", "up"), "outage": ("down", "up"),
            "sensor": ("unplug", "replug"), "i2c": ("fail", "heal"), "power": ("cut", "on"),
            "flash_full": ("full", "clear"), "broker_restart": ("restart",), "brownout": ("brownout",),
            "watchdog": ("hang",), "clock": ("jump",)}
I2C_ERRORS = ("ENODEV", "ETIMEDOUT")
HANG_S = (90.0, 600.0)             # longer than the node's 60 s watchdog
JUMP_S = (1.0, 2 * DAY)            # clock jumps: a second to two days, either way
CUT_CHECKPOINTS = (1, 400)         # the power cut lands at one of the next n firmware operations
DRAIN_STEP_S = 10.0                # board seconds between looks at the books while the nodes drain


class Event(namedtuple("Event", "t board fault action arg")):
    """At board time t (s), do `action` of fault class `fault` to board index `board` (None: all).

    arg: wifi/unreachable/outage/flash_full: None; sensor: device pick (an int the runner maps onto
    the board's devices); i2c fail: (device pick, errno name, error count), heal: device pick;
    power cut: checkpoints until the cut; watchdog hang: seconds; clock jump: seconds (+/-). An
    i2c error count of None means until healed.
    """


def _log_uniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _args(fault, rng):
    """(start arg, end arg) for one event of `fault`."""
    if fault == "sensor":
        pick = rng.randrange(1 << 16)
        return pick, pick
    if fault == "i2c":
        pick = rng.randrange(1 << 16)
        count = None if rng.random() < 0.5 else rng.randint(1, 1000)  # None: until healed
        return (pick, rng.choice(I2C_ERRORS), count), pick
    if fault == "power":
        return rng.randint(*CUT_CHECKPOINTS), None
    if fault == "watchdog":
        return round(rng.uniform(*HANG_S), 1), None
    if fault == "clock":
        return round(rng.choice((-1, 1)) * _log_uniform(rng, *JUMP_S), 1), None
    return None, None


def _stream(rng, fault, target, duration, per_day):
    """One target's events of one class: a Poisson process whose faults never overlap."""
    _scope, _rate, span = FAULTS[fault]
    actions = _ACTIONS[fault]
    events, t = [], 0.0
    while True:
        t += rng.expovariate(per_day / DAY)
        if events:  # strictly after the last one ended, also once times are rounded to the ms
            t = max(t, events[-1].t + 0.001)
        if t >= duration:
            return events
        events.extend(_one(rng, fault, target, t, duration, span, actions))
        t = events[-1].t


def _one(rng, fault, target, t, duration, span, actions):
    start_arg, end_arg = _args(fault, rng)
    first = Event(round(t, 3), target, fault, actions[0], start_arg)
    if span is None:
        return [first]
    end = min(t + _log_uniform(rng, *span), duration)
    return [first, Event(round(max(end, first.t), 3), target, fault, actions[1], end_arg)]


def plan(seed, boards, duration, classes=CLASSES, intensity=1.0):
    """The campaign's events, sorted by time: a pure function of its arguments.

    intensity scales every rate (2: twice as many faults). A class that drew no event anywhere gets
    one, at a random time in the first 80 % of the run, so that every requested class is exercised.
    """
    unknown = sorted(set(classes) - set(FAULTS))
    if unknown:
        raise ValueError("unknown fault class %s; known: %s" % (", ".join(unknown), ", ".join(CLASSES)))
    if boards < 1 or not duration > 0:
        raise ValueError("a plan needs at least one board and a duration above 0")
    events = []
    for fault in CLASSES:  # fixed order: the result does not depend on how classes was spelled
        if fault not in classes:
            continue
        scope, per_day, span = FAULTS[fault]
        targets = [None] if scope == "fleet" else range(boards)
        drawn = []
        for target in targets:
            rng = random.Random("%d/%s/%s" % (seed, fault, target))
            drawn.extend(_stream(rng, fault, target, duration, per_day * intensity))
        if not drawn:
            rng = random.Random("%d/%s/forced" % (seed, fault))
            target = None if scope == "fleet" else rng.randrange(boards)
            drawn = _one(rng, fault, target, rng.uniform(0, 0.8 * duration), duration, span, _ACTIONS[fault])
        events.extend(drawn)
    return sorted(events, key=lambda e: (e.t, -1 if e.board is None else e.board, e.fault))  # stable


def fault_counts(events):
    """{class: number of faults} (start actions) in a list of events."""
    return dict(Counter(e.fault for e in events if e.action in START))


# --- timelines: how the campaign waits for board time ----------------------------------------

class ScaledTimeline:
    """Board time for ScaledClock fleets: `speed` times the wall seconds since start.

    Each board's own clock runs at about that speed while its node idles; a board that is powered
    off (or a host that is saturated) falls behind, so the campaign keeps its own nominal time
    rather than follow any one board. The report states how far the boards really got.
    """

    kind = "scaled"

    def __init__(self, speed):
        self.speed = float(speed)
        self._start = time.monotonic()
        self.step = min(0.05 * self.speed, 5.0)  # board seconds between the campaign's looks

    def now(self):
        return (time.monotonic() - self._start) * self.speed

    def sleep_until(self, t):
        left = t - self.now()
        if left > 0:
            time.sleep(left / self.speed)

    def close(self):
        pass


class VirtualTimeline:
    """Board time for Fleet(speed="max"): the fleet's one VirtualClock, which the campaign joins.

    A participant holds board time still while it is not waiting, so each fault lands at exactly
    its board time, and the campaign's own work (a broker restart, the books) costs no board time.
    """

    kind = "virtual"
    step = 5.0

    def __init__(self, vclock):
        self.vclock = vclock
        self._me = vclock.join()

    def now(self):
        return self.vclock.now()

    def sleep_until(self, t):
        self._me.sleep_until(t)

    def close(self):
        self._me.leave()


class StallGuard:
    """Virtual clock only: find boards that hold board time still by never waiting, and reset them.

    Board time moves on only when every participant waits, so firmware that loops without a real
    sleep (a busy loop on ticks, a sleep_ms(0) spin) freezes the whole fleet, where a real board
    would merely burn CPU. After `wall_s` wall seconds without progress, each board still running
    is reset, and the stall is recorded with the firmware line it was spinning at: a finding, not a
    way to pass.
    """

    def __init__(self, campaign, wall_s=30.0):
        self.campaign, self.wall_s = campaign, wall_s
        self.stalls = []  # {"device", "board_s", "where"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chaos-stall-guard", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        vclock = self.campaign.fleet.vclock
        last, since = vclock.now(), time.monotonic()
        while not self._stop.wait(1.0):
            now = vclock.now()
            if now != last or not vclock.holding:
                last, since = now, time.monotonic()
                continue
            if time.monotonic() - since < self.wall_s:
                continue
            for board in self.campaign.fleet.boards:
                if getattr(board.clock, "_state", None) == "busy" and board.running:
                    self.stalls.append({"device": board.device_id, "board_s": round(now, 3),
                                        "where": _firmware_line(board)})
                    board.reset()
            since = time.monotonic()


def _firmware_line(board):
    """'node/app.py:391 _idle_ms': the innermost firmware frame the board's thread is in, or None."""
    thread = getattr(board, "_thread", None)
    frame = sys._current_frames().get(thread.ident) if thread is not None else None
    for entry in reversed(traceback.extract_stack(frame) if frame is not None else []):
        parts = entry.filename.replace("\\", "/").split("/firmware/")
        if len(parts) > 1:
            return "%s:%d %s" % (parts[-1], entry.lineno, entry.name)
    return None


def timeline_for(fleet, speed):
    """The VirtualClock the fleet's boards share (Fleet(speed="max")), else scaled time."""
    vclock = getattr(fleet, "vclock", None)
    if vclock is not None:
        return VirtualTimeline(vclock)
    return ScaledTimeline(speed)


# --- the runner ----------------------------------------------------------------------------------

def store_of(board):
    """The running node's store on this board, or None (not booted that far, or no node)."""
    runtime = getattr(board, "runtime", None)
    app = runtime.modules.get("node.app") if runtime is not None else None
    node = getattr(app, "node", None)
    return getattr(node, "store", None)


def _devices(board, i2c_only=False):
    """[(bus key, address or rom)] of the sensors wired to the board, in a stable order."""
    found = [((scl, sda), addr) for (scl, sda), bus in sorted(board.i2c_buses.items())
             for addr in sorted(bus._devices)]
    if not i2c_only:
        found += [(pin, dev.rom) for pin, bus in sorted(board.onewire_buses.items()) for dev in bus.devices]
    return found


class Campaign:
    """Plays `events` against `fleet` (not yet started) and keeps the ground truth in `ledger`.

    broker: the Mosquitto to restart for "broker_restart" (None: those events are skipped).
    progress(campaign): called about once per wall second, e.g. to refresh a live display.
    """

    def __init__(self, fleet, ledger, events, duration, broker=None, speed=1.0, progress=None):
        self.fleet, self.ledger, self.events = fleet, ledger, list(events)
        self.duration = float(duration)
        self.broker = broker
        self.speed = speed
        self.progress = progress
        self.applied = Counter()   # class -> faults started
        self.skipped = Counter()   # class -> faults not applied
        self.notes = Counter()     # one line -> how often
        self.crashes = []          # {"device", "boot", "error"}: firmware that died to the REPL
        self.boots = {}            # device -> boot numbers seen
        self.drain = {}
        self.timeline = None
        self.guard = None          # StallGuard, on the virtual clock
        self.stall_wall_s = 15.0
        self.wall_s = None
        self._held = {}            # device -> the store last seen on that board
        self._crash_seen = set()
        self._lock = threading.Lock()
        self._active = Counter()   # (board index, fault, key) -> overlapping faults holding it
        self._sensors_out = {}     # (board index, pick) -> (bus key, device) unplugged
        self._i2c_failing = set()  # (board index, bus key, addr)
        self._last_progress = 0.0

    @property
    def now(self):
        return self.timeline.now() if self.timeline else 0.0

    # --- ground truth ------------------------------------------------------------------------
    def _count(self, board, store, running):
        boot, seq = getattr(store, "boot", None), getattr(store, "seq", None)
        if type(boot) is int and type(seq) is int:
            self.ledger.produced(board.device_id, boot, seq, running=running)

    def observe(self, board, ended=False):
        """Record what the board's current boot has produced; `ended`: that boot is over."""
        with self._lock:
            device = board.device_id
            store = store_of(board)
            held = self._held.get(device)
            if held is not None and held is not store:
                self._count(board, held, running=False)  # its boot is over: this count is final
            if store is not None:
                if store is not held:
                    seen = self.boots.setdefault(device, set())
                    if getattr(store, "boot", None) in seen:  # (device, boot, seq) would not be unique
                        self.notes["%s: boot number %s used twice" % (device, store.boot)] += 1
                    seen.add(getattr(store, "boot", None))
                self._count(board, store, running=not ended and board.running)
            self._held[device] = store
            if board.crashed and (device, board.boots) not in self._crash_seen:
                self._crash_seen.add((device, board.boots))
                lines = board.crashed.strip().splitlines()
                self.crashes.append({"device": device, "boot": getattr(store, "boot", None),
                                     "error": lines[-1] if lines else "?"})

    def observe_all(self):
        for board in self.fleet.boards:
            self.observe(board)

    # --- the run -------------------------------------------------------------------------------
    def run(self, drain_board_s=3600.0, drain_wall_s=600.0, patience_s=300.0):
        """Start the fleet, play the plan, heal, drain. Returns self (then call report())."""
        for board in self.fleet.boards:  # final counts: each boot's store, read as that boot ends
            board.on_boot_end.append(lambda b: self.observe(b, ended=True))
        started = time.monotonic()
        self.timeline = timeline_for(self.fleet, self.speed)  # first: a virtual clock waits for us
        if self.timeline.kind == "virtual":
            self.guard = StallGuard(self, self.stall_wall_s).start()
        self.fleet.start()
        try:
            for event in self.events:
                self.wait_until(event.t)
                self.apply(event)
            self.wait_until(self.duration)
            self.heal()
            self._drain(drain_board_s, drain_wall_s, patience_s)
        finally:
            if self.guard is not None:
                self.guard.stop()
            self.timeline.close()
            self.wall_s = time.monotonic() - started
        return self

    def wait_until(self, t):
        while True:
            self.observe_all()
            if self.progress and time.monotonic() - self._last_progress >= 1.0:
                self._last_progress = time.monotonic()
                self.progress(self)
            now = self.timeline.now()
            if now >= t:
                return
            self.timeline.sleep_until(min(t, now + self.timeline.step))

    # --- faults --------------------------------------------------------------------------------
    def apply(self, event):
        if event.fault == "broker_restart":
            return self._restart_broker()
        done = False
        for index in range(len(self.fleet.boards)) if event.board is None else [event.board]:
            try:
                done = self._apply_one(index, self.fleet.boards[index], event) or done
            except Exception as exc:  # a fault helper's bug must not end the campaign
                self.notes["%s %s failed: %r" % (event.fault, event.action, exc)] += 1
        if event.action in START:
            (self.applied if done else self.skipped)[event.fault] += 1

    def _restart_broker(self):
        if self.broker is None:
            self.skipped["broker_restart"] += 1
            self.notes["broker_restart: no broker of our own to restart"] += 1
            return
        self.broker.restart()
        self.applied["broker_restart"] += 1

    def _hold(self, index, fault, key, on):
        """Reference count for faults that may overlap (a fleet outage over a board's own):
        True when the state must change (first on, or last off)."""
        slot = (index, fault, key)
        if on:
            self._active[slot] += 1
            return self._active[slot] == 1
        if self._active[slot] == 0:
            return False
        self._active[slot] -= 1
        return self._active[slot] == 0

    def _skip(self, fault, why):
        self.notes["%s: %s" % (fault, why)] += 1
        return False

    def _apply_one(self, index, board, event):
        fault, action, arg = event.fault, event.action, event.arg
        if fault == "wifi":
            if self._hold(index, "wifi", None, action == "down"):
                board.wifi_down() if action == "down" else board.wifi_up()
            return True
        if fault in ("unreachable", "outage"):
            if self._hold(index, "unreachable", None, action == "down"):
                board.broker_unreachable(action == "down")
            return True
        if fault == "flash_full":
            if self._hold(index, "flash_full", None, action == "full"):
                board.flash_full = action == "full"
            return True
        if fault == "sensor":
            return self._sensor(index, board, action, arg)
        if fault == "i2c":
            return self._i2c(index, board, action, arg)
        if fault == "power":
            return self._power(board, action, arg)
        if not board.powered:
            return self._skip(fault, "board powered off at the time")
        if fault == "brownout":
            board.brownout()
        elif fault == "watchdog":
            if not hasattr(board, "hang"):  # a board model without it: no watchdog resets
                return self._skip(fault, "Board.hang missing, no watchdog resets")
            board.hang(arg)
        elif fault == "clock":
            board.jump_clock(arg)
        return True

    def _sensor(self, index, board, action, pick):
        if action == "unplug":
            devices = _devices(board)
            if not devices:
                return self._skip("sensor", "board has no sensors")
            bus, key = devices[pick % len(devices)]
            if self._hold(index, "sensor", (bus, key), True):
                board.unplug(bus, key)
            self._sensors_out[(index, pick)] = (bus, key)
            return True
        bus_key = self._sensors_out.pop((index, pick), None)
        if bus_key and self._hold(index, "sensor", bus_key, False):
            board.replug(*bus_key)
        return True

    def _i2c(self, index, board, action, arg):
        devices = _devices(board, i2c_only=True)
        if not devices:
            return self._skip("i2c", "board has no I2C device")
        pick = arg[0] if action == "fail" else arg
        bus_key, addr = devices[pick % len(devices)]
        bus = board.i2c_bus(*bus_key)
        if action == "fail":
            bus.fail(addr, getattr(errno, arg[1]), arg[2])
            self._i2c_failing.add((index, bus_key, addr))
            return True
        if (index, bus_key, addr) in self._i2c_failing:
            self._i2c_failing.discard((index, bus_key, addr))
            bus.heal(addr)
        return True

    def _power(self, board, action, checkpoints):
        if action == "cut":
            if not board.powered:
                return self._skip("power", "board already off")
            board.cut_power_after(checkpoints)
            return True
        if board.powered:  # the cut has not landed yet (an idle node passes few checkpoints)
            self.notes["power: cut had not landed by power-on time: forced"] += 1
        self._power_cycle(board)
        return True

    def _power_cycle(self, board):
        board.power_off()  # also waits for a cut board's thread to end: power_on() skips a live one
        self.observe(board, ended=True)
        board.power_on()

    # --- the end -----------------------------------------------------------------------------
    def heal(self):
        """End every fault still in force, so that what the nodes hold can reach the broker."""
        for index, bus_key in sorted({(i, k) for (i, _pick), k in self._sensors_out.items()}):
            self.fleet.boards[index].replug(*bus_key)
        for index, bus_key, addr in sorted(self._i2c_failing):
            self.fleet.boards[index].i2c_bus(*bus_key).heal(addr)
        self._sensors_out.clear()
        self._i2c_failing.clear()
        self._active.clear()
        for board in self.fleet.boards:
            board.wifi_up()
            board.broker_unreachable(False)
            board.flash_full = False
            if not board.powered or not board.running:
                self._power_cycle(board)
            elif board.crashed:
                board.reset()  # the firmware sits at the REPL (a crash, reported): boot it again

    def queues(self):
        """{device: the store's stats()} for every node that has one."""
        found = {}
        for board in self.fleet.boards:
            store = store_of(board)
            try:
                found[board.device_id] = dict(store.stats()) if store is not None else None
            except BaseException as exc:  # noqa: B036 (a board fault raised on the wrong thread)
                found[board.device_id] = {"error": repr(exc)}
        return found

    def _drain(self, board_s, wall_s, patience_s):
        """Wait until every produced record is delivered or declared, or nothing moves any more."""
        start_board, start_wall = self.timeline.now(), time.monotonic()
        last_pending, since = None, start_board
        ended = "timeout"
        while True:
            self.observe_all()
            totals = self.ledger.report(examples=0)["totals"]
            pending = totals["silently_lost"]
            now = self.timeline.now()
            if pending == 0:
                ended = "complete"
                break
            if pending != last_pending:
                last_pending, since = pending, now
            elif now - since >= patience_s and all(not (q or {}).get("ram") and not (q or {}).get("flash")
                                                   for q in self.queues().values()):
                ended = "no_progress"
                break
            if now - start_board >= board_s or time.monotonic() - start_wall >= wall_s:
                break
            self.wait_until(now + max(self.timeline.step, DRAIN_STEP_S))
        self.drain = {"ended": ended, "board_s": round(self.timeline.now() - start_board, 1),
                      "wall_s": round(time.monotonic() - start_wall, 1), "queues": self.queues()}

    def report(self, examples=10):
        """The campaign's loss report (a JSON-able dict); see docs/simulator.md.

        Produced counts stay as the drain last took them: what a node made after that is not judged.
        """
        books = self.ledger.report(examples=examples)
        totals = books["totals"]
        planned = fault_counts(self.events)
        faults = {name: {"planned": planned.get(name, 0), "applied": self.applied[name],
                         "skipped": self.skipped[name]} for name in sorted(planned)}
        devices = books["devices"]
        for device, row in devices.items():
            row["boots"] = len(self.boots.get(device, ()))
        board_times = [b.clock.now() for b in self.fleet.boards]
        return {
            "scenario": "chaos",
            "boards": len(self.fleet.boards),
            "duration_s": self.duration,
            "clock": {"kind": self.timeline.kind if self.timeline else None, "speed": self.speed,
                      "board_s_min": round(min(board_times), 1), "board_s_max": round(max(board_times), 1)},
            "wall_s": round(self.wall_s or 0.0, 1),
            "faults": faults,
            "notes": ["%s (x%d)" % (line, n) if n > 1 else line for line, n in sorted(self.notes.items())],
            "drain": self.drain,
            "totals": totals,
            "devices": devices,
            "silently_lost_examples": books["silently_lost_examples"],
            "unexpected_examples": books["unexpected_examples"],
            "crashes": self.crashes,
            "stalls": self.guard.stalls if self.guard else [],
            "ledger": {"messages": books["messages"], "malformed": books["malformed"],
                       "malformed_examples": books["malformed_examples"],
                       "sessions_lost": books["sessions_lost"]},
            "goal_met": totals["silently_lost"] == 0,
        }


# --- one campaign, start to finish ---------------------------------------------------------------

def run(boards, duration, seed=0, site="chaos", speed=20.0, broker_url=None, classes=CLASSES,
        report_path=None, intensity=1.0, progress=None, workdir=None, fleet_options=None,
        drain_wall_s=600.0):
    """Run a chaos campaign and return its report (also written to report_path as JSON).

    Without broker_url a private mosquitto with persistence is started (the campaign restarts it).
    With broker_url the broker is not ours to restart: "broker_restart" is left out of the plan and
    the report says so. speed: a number (ScaledClock) or "max" (the virtual clock).
    """
    from .fleet import Fleet  # late: the fleet pulls in the whole simulator

    classes = [c for c in CLASSES if c in set(classes)]
    notes = []
    with contextlib.ExitStack() as cleanup:
        broker = None
        if broker_url is None:
            broker = cleanup.enter_context(Mosquitto(persistent=True))
            host, port = broker.host, broker.port
        else:
            host, port = parse_broker_url(broker_url)
            if "broker_restart" in classes:
                classes.remove("broker_restart")
                notes.append("broker_restart left out: the broker at %s:%d is not ours to restart" % (host, port))
        ledger = Ledger(host, port, site=site)
        try:
            ledger.start()
        except (OSError, TimeoutError) as exc:
            raise BrokerError("cannot reach the broker at %s:%d (%s)" % (host, port, exc)) from None
        cleanup.callback(ledger.stop)
        fleet = Fleet(boards, host, port, site=site, seed=seed, speed=speed, workdir=workdir,
                      **(fleet_options or {}))
        cleanup.callback(fleet.close)
        events = plan(seed, boards, duration, classes, intensity)
        campaign = Campaign(fleet, ledger, events, duration, broker=broker, speed=speed, progress=progress)
        campaign.run(drain_wall_s=drain_wall_s)
        report = campaign.report()
        report.update(seed=seed, site=site, classes=classes, intensity=intensity)
        report["notes"] = notes + report["notes"]
        if broker is not None:
            # mosquitto drops QoS 1 messages for a client whose queue is full: the ledger's would be a
            # false loss, so say it happened.
            report["broker"] = {"restarts": campaign.applied["broker_restart"],
                                "dropped_warnings": broker.log_text().count("messages are being dropped")}
        if report_path:
            with open(report_path, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1, sort_keys=False)
                f.write("\n")
        return report


# --- what the CLI shows ----------------------------------------------------------------------------

def progress_text(campaign):
    """One line for the live display while a campaign runs."""
    from .live import clock_text

    if campaign is None or campaign.timeline is None:
        return "chaos: starting the broker, the ledger and the fleet ..."
    done = sum(campaign.applied.values())
    phase = "draining" if campaign.now >= campaign.duration else "playing faults"
    return "chaos: %s — %s of %s simulated — %d faults so far — %d telemetry messages" % (
        phase, clock_text(min(campaign.now, campaign.duration)), clock_text(campaign.duration), done,
        campaign.ledger.messages)


def summary(report, report_path=None, rows=20):
    """Rich renderables summing up a report: the books per device (all of them for small fleets,
    else the ones with a problem), the faults played, the verdict."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from .live import clock_text

    speed = report["clock"]["speed"]
    title = "chaos — %d boards — %s simulated in %s wall (speed %s)" % (
        report["boards"], clock_text(report["duration_s"]), clock_text(report["wall_s"]), speed)
    grid = Table(title=title, box=box.SIMPLE_HEAD,
                 caption="records named by (device, boot, seq); duplicates (dupl.) are allowed")
    grid.add_column("device", no_wrap=True)
    for name in ("produced", "delivered", "dupl.", "dropped\nfull", "dropped\nreset", "silently\nlost",
                 "unexp."):
        grid.add_column(name, justify="right", min_width=max(len(line) for line in name.split("\n")))

    def add(name, row, style=None):
        lost = row["silently_lost"]
        grid.add_row(name, str(row["produced"]), str(row["delivered"]), str(row["duplicates"]),
                     str(row["dropped_counted"].get("full", 0)), str(row["dropped_counted"].get("reset", 0)),
                     "[%s]%d[/]" % ("red" if lost else "green", lost), str(row["unexpected"]), style=style)

    devices = report["devices"]
    shown = sorted(devices) if len(devices) <= rows else \
        [d for d in sorted(devices) if devices[d]["silently_lost"] or devices[d]["unexpected"]][:rows]
    for device in shown:
        add(device, devices[device])
    add("all %d" % len(devices), report["totals"], style="bold")
    out = [grid]
    faults = ", ".join("%s %d" % (name, f["applied"]) + (" (%d skipped)" % f["skipped"] if f["skipped"] else "")
                       for name, f in report["faults"].items())
    out.append("faults played: %s" % (faults or "none"))
    out.extend("note: %s" % escape(note) for note in report["notes"])
    if report["crashes"]:
        out.append("[yellow]%d firmware crashes, e.g. %s: %s[/]" % (
            len(report["crashes"]), report["crashes"][0]["device"], escape(report["crashes"][0]["error"])))
    if report["stalls"]:
        out.append("[red]%d stalls: boards that never waited held the virtual clock still and were reset, "
                   "e.g. %s at %s[/]" % (len(report["stalls"]), report["stalls"][0]["device"],
                                         escape(str(report["stalls"][0]["where"]))))
    drain = report["drain"]
    out.append("drain after healing: %s in %s simulated" % (drain.get("ended"), clock_text(drain.get("board_s", 0))))
    if report["goal_met"]:
        out.append("[green]goal met: no record silently lost[/]")
    else:
        runs = ", ".join("%(device)s boot %(boot)d seq %(seq)d+%(n)d" % r for r in report["silently_lost_examples"][:3])
        out.append("[red]goal not met: %d records silently lost (%s)[/]" % (report["totals"]["silently_lost"], runs))
    if report_path:
        out.append("report written to %s" % escape(str(report_path)))
    return out
