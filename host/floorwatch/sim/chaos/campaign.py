"""The chaos campaign's runner: plays a fault plan against a running Fleet and keeps the ground truth.

`Campaign` waits for each event's board time (timelines.py), applies it through the board's and
the broker's fault helpers, and reads every boot's store (its boot and next seq) as the boot runs
and as it ends, so the ledger knows exactly what each boot produced. At the end it heals every
fault still in force, lets the nodes drain their queues, and turns the ledger's books into the
loss report. Overlapping faults of one kind on one board (a fleet outage over the board's own)
are reference counted, so the state changes only with the first start and the last end.
"""

import errno
import threading
import time
from collections import Counter

from .faults import START, fault_counts
from .timelines import StallGuard, timeline_for

DRAIN_STEP_S = 10.0                # board seconds between looks at the books while the nodes drain


def store_of(board):
    """The running node's store on this board, or None (not booted that far, or no node)."""
    app = board.runtime.modules.get("node.app")
    node = getattr(app, "node", None)  # no attribute yet while node.app is being imported
    return node.store if node is not None else None


def _devices(board, i2c_only=False):
    """[(bus key, address or rom)] of the sensors wired to the board, in a stable order."""
    found = [((scl, sda), addr) for (scl, sda), bus in sorted(board.i2c_buses.items())
             for addr in bus.addresses()]
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
        self.ledger.produced(board.device_id, store.boot, store.seq, running=running)

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
                    if store.boot in seen:  # (device, boot, seq) would not be unique
                        self.notes["%s: boot number %s used twice" % (device, store.boot)] += 1
                    seen.add(store.boot)
                self._count(board, store, running=not ended and board.running)
            self._held[device] = store
            if board.crashed and (device, board.boots) not in self._crash_seen:
                self._crash_seen.add((device, board.boots))
                lines = board.crashed.strip().splitlines()
                self.crashes.append({"device": device, "boot": store.boot if store is not None else None,
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
            self.guard = StallGuard(self.fleet, self.stall_wall_s).start()
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
        """{device: the store's stats(), or None while the board's node has no store}."""
        found = {}
        for board in self.fleet.boards:
            store = store_of(board)
            found[board.device_id] = store.stats() if store is not None else None
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
