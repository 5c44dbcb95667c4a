"""The chaos campaign's parts: the fault plan (a pure function), the runner against fake boards and
a real one, and the stall guard on a real virtual clock."""

import errno
import json
import threading
from types import SimpleNamespace

import pytest

from floorwatch.ledger import Ledger
from floorwatch.sim import chaos
from floorwatch.sim.board import Board, PowerOff, VirtualClock
from floorwatch.sim.chaos import CLASSES, FAULTS, Campaign, Event, fault_counts, plan
from floorwatch.sim.chaos.timelines import StallGuard
from floorwatch.sim.devices.i2cbus import I2CBus, I2CDevice
from simlib import HandClock

DAY = 86400.0


def spans(events):
    """{(board, fault): [(start event, end event or None)]} in time order."""
    out = {}
    for event in events:
        key = (event.board, event.fault)
        if event.action in chaos.START:
            out.setdefault(key, []).append([event, None])
        else:
            assert out.get(key) and out[key][-1][1] is None, "an end with no open start: %r" % (event,)
            out[key][-1][1] = event
    return out


def test_a_plan_is_a_function_of_its_seed():
    assert plan(7, 10, DAY) == plan(7, 10, DAY)
    assert plan(7, 10, DAY) != plan(8, 10, DAY)
    assert all(isinstance(e, Event) for e in plan(7, 10, DAY))


def test_events_are_sorted_in_time_and_inside_the_run():
    events = plan(3, 20, DAY)
    times = [e.t for e in events]
    assert times == sorted(times)
    assert 0 < times[0] and times[-1] <= DAY


def test_every_class_occurs_in_a_day_of_a_small_fleet_and_in_a_short_run_too():
    assert set(fault_counts(plan(1, 10, DAY))) == set(CLASSES)
    short = plan(1, 1, 60.0)
    assert set(fault_counts(short)) == set(CLASSES)          # each forced in at least once
    assert all(e.t <= 60.0 for e in short)


def test_only_the_requested_classes_are_planned():
    events = plan(2, 10, DAY, classes=("wifi", "power"))
    assert set(fault_counts(events)) == {"wifi", "power"}
    with pytest.raises(ValueError, match="tornado"):
        plan(2, 10, DAY, classes=("wifi", "tornado"))
    with pytest.raises(ValueError):
        plan(2, 0, DAY)


def test_fleet_wide_faults_have_no_board_and_board_faults_name_one():
    events = plan(5, 8, DAY)
    for event in events:
        scope = FAULTS[event.fault][0]
        assert (event.board is None) == (scope == "fleet"), event
        assert event.board is None or 0 <= event.board < 8


def test_no_fault_overlaps_another_of_its_kind_on_one_board_and_durations_keep_their_bounds():
    duration = 2 * DAY
    for (board, fault), pairs in spans(plan(11, 30, duration)).items():
        bounds = FAULTS[fault][2]
        previous_end = -1.0
        for start, end in pairs:
            assert start.t > previous_end, (board, fault, start)  # the last one was over
            if bounds is None:
                assert end is None
                previous_end = start.t
                continue
            assert end is not None, "every long fault ends: %r" % (start,)
            lo, hi = bounds
            length = end.t - start.t
            assert length <= hi + 0.001, (start, end)
            assert length >= lo - 0.001 or end.t == duration, (start, end)   # only the run's end cuts one short
            previous_end = end.t


def test_wifi_outages_last_from_seconds_to_hours_a_few_times_a_day():
    pairs = [p for (b, f), ps in spans(plan(4, 100, DAY)).items() if f == "wifi" for p in ps]
    lengths = [end.t - start.t for start, end in pairs]
    assert 150 <= len(pairs) <= 400                       # about 3 per board per day
    assert min(lengths) < 10 and max(lengths) > 3600


def test_arguments_are_within_their_bounds():
    for event in plan(9, 50, DAY):
        if event.action == "cut":
            assert chaos.CUT_CHECKPOINTS[0] <= event.arg <= chaos.CUT_CHECKPOINTS[1]
        elif event.action == "hang":
            assert chaos.HANG_S[0] <= event.arg <= chaos.HANG_S[1]
        elif event.action == "jump":
            assert chaos.JUMP_S[0] - 0.1 <= abs(event.arg) <= chaos.JUMP_S[1] + 0.1
        elif event.action == "fail":
            pick, name, count = event.arg
            assert name in chaos.I2C_ERRORS and (count is None or 1 <= count <= 1000) and pick >= 0


def test_a_board_keeps_its_faults_when_the_fleet_grows():
    small = [e for e in plan(6, 5, DAY) if e.board is not None]
    large = [e for e in plan(6, 50, DAY) if e.board is not None and e.board < 5]
    assert small == large


def test_intensity_scales_the_number_of_faults():
    normal = sum(fault_counts(plan(3, 20, DAY)).values())
    double = sum(fault_counts(plan(3, 20, DAY, intensity=2.0)).values())
    assert 1.5 * normal < double < 2.6 * normal


# --- the runner, against fake boards ------------------------------------------------------------

class Sensor(I2CDevice):
    def read(self, reg, n):
        return bytes(n)

    def write(self, reg, data):
        pass


def read_error(bus, addr):
    """The errno of a one-byte read from `addr`, or None when it succeeds."""
    try:
        bus.readfrom_mem(addr, 0, 1)
    except OSError as exc:
        return exc.args[0]
    return None


class FakeBoard:
    """What the campaign uses of a Board, recording the faults it is given (its I2C bus is real)."""

    def __init__(self, device_id):
        self.device_id = device_id
        self.calls = []
        self.running, self.crashed, self.boots, self.flash_full = True, None, 1, False
        self.on_boot_end = []
        self.runtime = SimpleNamespace(modules={})
        bus = I2CBus()
        bus.attach(Sensor(0x53))
        self.i2c_buses = {(22, 21): bus}
        self.onewire_buses = {4: SimpleNamespace(devices=[SimpleNamespace(rom=b"\x28\x01")])}
        self.clock = SimpleNamespace(now=lambda: 0.0)
        for name in ("brownout", "hang", "jump_clock", "cut_power_after", "broker_unreachable"):
            setattr(self, name, lambda *args, name=name: self.calls.append((name,) + args))

    @property
    def powered(self):
        return self.running

    def i2c_bus(self, scl, sda):
        return self.i2c_buses[(scl, sda)]

    def wifi_down(self):
        self.calls.append(("wifi_down",))

    def wifi_up(self):
        self.calls.append(("wifi_up",))

    def unplug(self, bus, key):
        self.calls.append(("unplug", bus, key))

    def replug(self, bus, key):
        self.calls.append(("replug", bus, key))

    def power_off(self):
        self.calls.append(("power_off",))
        self.running = False

    def power_on(self):
        self.calls.append(("power_on",))
        self.running = True

    def reset(self):
        self.calls.append(("reset",))

    def boot(self, boot, seq=0):
        """A new boot whose node has a store at (boot, seq)."""
        store = SimpleNamespace(boot=boot, seq=seq, stats=lambda: {"ram": 0, "flash": 0, "dropped": 0})
        self.runtime = SimpleNamespace(modules={"node.app": SimpleNamespace(node=SimpleNamespace(store=store))})
        return store


def campaign(*boards, broker=None):
    fleet = SimpleNamespace(boards=list(boards), vclock=None)
    return Campaign(fleet, Ledger("127.0.0.1", 1, site="t"), [], 100.0, broker=broker)


def test_overlapping_outages_of_one_board_end_when_the_last_one_does():
    board = FakeBoard("b")
    run = campaign(board)
    run.apply(Event(1, None, "outage", "down", None))     # the whole fleet ...
    run.apply(Event(2, 0, "unreachable", "down", None))   # ... and this board on its own
    run.apply(Event(3, None, "outage", "up", None))
    assert board.calls == [("broker_unreachable", True)]
    run.apply(Event(4, 0, "unreachable", "up", None))
    assert board.calls == [("broker_unreachable", True), ("broker_unreachable", False)]
    assert run.applied == {"outage": 1, "unreachable": 1}


def test_sensor_and_i2c_faults_land_on_the_board_s_own_devices():
    board = FakeBoard("b")
    run = campaign(board)
    run.apply(Event(1, 0, "sensor", "unplug", 1))          # pick 1 of [i2c 0x53, probe 28 01]
    run.apply(Event(2, 0, "sensor", "replug", 1))
    assert board.calls == [("unplug", 4, b"\x28\x01"), ("replug", 4, b"\x28\x01")]
    bus = board.i2c_buses[(22, 21)]
    run.apply(Event(3, 0, "i2c", "fail", (7, "ETIMEDOUT", 5)))  # pick 7 of [0x53]
    assert read_error(bus, 0x53) == errno.ETIMEDOUT
    run.apply(Event(4, 0, "i2c", "heal", 7))
    assert read_error(bus, 0x53) is None


def test_one_shot_faults_and_a_power_cycle():
    board = FakeBoard("b")
    run = campaign(board)
    for event in (Event(1, 0, "brownout", "brownout", None), Event(2, 0, "watchdog", "hang", 90.0),
                  Event(3, 0, "clock", "jump", -3600.0), Event(4, 0, "power", "cut", 17)):
        run.apply(event)
    board.running = False                                  # the cut landed
    run.apply(Event(5, 0, "power", "on", None))
    assert board.calls == [("brownout",), ("hang", 90.0), ("jump_clock", -3600.0), ("cut_power_after", 17),
                           ("power_off",), ("power_on",)]  # power_off: the dying thread is waited for
    assert not any("forced" in note for note in run.notes)


def test_a_cut_that_has_not_landed_by_power_on_time_is_forced():
    board = FakeBoard("b")
    run = campaign(board)
    run.apply(Event(1, 0, "power", "cut", 400))
    run.apply(Event(9, 0, "power", "on", None))
    assert board.calls[-2:] == [("power_off",), ("power_on",)]
    assert any("forced" in note for note in run.notes)


def test_faults_that_cannot_land_are_skipped_with_a_note():
    off, bare = FakeBoard("off"), FakeBoard("bare")
    off.running = False                                    # a power cut landed
    bare.i2c_buses, bare.onewire_buses = {}, {}            # no sensor wired
    run = campaign(off, bare)
    run.apply(Event(1, 0, "watchdog", "hang", 90.0))
    run.apply(Event(2, 0, "power", "cut", 5))
    run.apply(Event(3, 1, "sensor", "unplug", 0))
    run.apply(Event(4, 1, "i2c", "fail", (0, "ENODEV", None)))
    run.apply(Event(5, None, "broker_restart", "restart", None))
    assert run.skipped == {"watchdog": 1, "power": 1, "sensor": 1, "i2c": 1, "broker_restart": 1}
    assert not run.applied and off.calls == [] and bare.calls == []
    assert sorted(run.notes) == ["broker_restart: no broker of our own to restart", "i2c: board has no I2C device",
                                 "power: board already off", "sensor: board has no sensors",
                                 "watchdog: board powered off at the time"]


def test_a_broker_restart_restarts_the_broker():
    broker = SimpleNamespace(restarts=0)
    broker.restart = lambda: setattr(broker, "restarts", broker.restarts + 1)
    run = campaign(FakeBoard("b"), broker=broker)
    run.apply(Event(1, None, "broker_restart", "restart", None))
    assert broker.restarts == 1 and run.applied == {"broker_restart": 1}


def test_every_board_fault_lands_on_a_real_board(tmp_path):
    board = Board("r", seed=1, flash_dir=tmp_path, clock=HandClock())  # never powered on: no firmware runs
    bus = board.i2c_bus(22, 21)
    sensor = bus.attach(Sensor(0x53))
    run = campaign(board)
    wall = board.wall_time()
    for event in (Event(1, 0, "wifi", "down", None), Event(1, 0, "unreachable", "down", None),
                  Event(1, 0, "flash_full", "full", None), Event(1, 0, "sensor", "unplug", 0),
                  Event(1, 0, "i2c", "fail", (0, "ETIMEDOUT", None)), Event(1, 0, "clock", "jump", -3600.0),
                  Event(1, 0, "brownout", "brownout", None), Event(1, 0, "watchdog", "hang", 90.0),
                  Event(1, 0, "power", "cut", 1)):
        run.apply(event)
    assert not run.notes and not run.skipped
    assert set(run.applied) == set(CLASSES) - {"outage", "broker_restart"}
    assert not board.ap.up and board.blackholed(("127.0.0.1", 1883)) and board.flash_full
    assert not sensor.present and read_error(bus, 0x53) == errno.ETIMEDOUT
    assert board.wall_time() == wall - 3600.0
    with pytest.raises(PowerOff):                          # the cut lands at the next operation
        board.checkpoint()
    assert not board.powered


def test_ground_truth_follows_each_boot_s_store_to_its_end():
    board = FakeBoard("b")
    run = campaign(board)
    run.observe(board)                                     # not booted that far: nothing produced
    store = board.boot(5, seq=3)
    run.observe(board)
    store.seq = 7                                          # more records, then the boot dies ...
    board.boot(6, seq=0)                                   # ... and the next one starts
    run.observe(board)
    books = run.ledger.report()
    assert books["devices"]["b"]["produced"] == 7
    assert run.ledger._produced == {"b": {5: 7, 6: 0}} and run.ledger._running == {"b": 6}
    assert run.boots == {"b": {5, 6}}


def test_a_boot_number_used_twice_is_noted():
    board = FakeBoard("b")
    run = campaign(board)
    board.boot(5)
    run.observe(board)
    board.boot(5)
    run.observe(board)
    assert any("boot number 5 used twice" in note for note in run.notes)


def test_heal_ends_every_fault_in_force_and_powers_boards_back_on():
    board = FakeBoard("b")
    run = campaign(board)
    run.apply(Event(1, 0, "sensor", "unplug", 0))
    run.apply(Event(2, 0, "flash_full", "full", None))
    run.apply(Event(3, 0, "i2c", "fail", (0, "ENODEV", 9)))
    board.running = False
    crashed = FakeBoard("c")
    crashed.crashed = "Traceback ...\nOSError: 5"
    run.fleet.boards.append(crashed)
    run.heal()
    assert board.calls[-5:] == [("replug", (22, 21), 0x53), ("wifi_up",), ("broker_unreachable", False),
                                ("power_off",), ("power_on",)]
    assert board.flash_full is False and read_error(board.i2c_buses[(22, 21)], 0x53) is None
    assert crashed.calls[-1] == ("reset",)                 # a firmware at the REPL is booted again


def test_the_report_holds_the_books_the_faults_and_the_verdict():
    board = FakeBoard("b")
    run = campaign(board)
    run.events = [Event(1, 0, "wifi", "down", None), Event(2, 0, "wifi", "up", None),
                  Event(3, 0, "watchdog", "hang", 90.0)]
    for event in run.events:
        run.apply(event)
    board.boot(2, seq=4)
    run.observe(board)
    run.ledger.record("floorwatch/t/b/telemetry", json.dumps({"boot": 2, "seq": 0, "n": 2, "r": [{}, {}]}))
    report = json.loads(json.dumps(run.report()))           # JSON all the way down
    assert report["faults"] == {"watchdog": {"planned": 1, "applied": 1, "skipped": 0},
                                "wifi": {"planned": 1, "applied": 1, "skipped": 0}}
    assert report["totals"]["produced"] == 4 and report["totals"]["silently_lost"] == 2
    assert report["devices"]["b"]["boots"] == 1
    assert report["silently_lost_examples"] == [{"device": "b", "boot": 2, "seq": 2, "n": 2}]
    assert report["goal_met"] is False and report["boards"] == 1 and report["duration_s"] == 100.0
    text = "\n".join(str(line) for line in chaos.summary(report, "r.json")[1:])
    assert "goal not met: 2 records silently lost (b boot 2 seq 2+2)" in text and "r.json" in text
    run.ledger.record("floorwatch/t/b/telemetry", json.dumps({"boot": 2, "seq": 2, "n": 2, "r": [{}, {}]}))
    assert chaos.summary(run.report())[-1] == "[green]goal met: no record silently lost[/]"


# --- the stall guard, on a real virtual clock -----------------------------------------------------

def test_the_stall_guard_resets_a_board_that_holds_virtual_time_still_and_says_where():
    vclock = VirtualClock()
    handle = vclock.board_clock()
    handle.join()                                          # takes part and never waits: time stands still
    reset = threading.Event()
    # A firmware busy loop: its frame's file is under firmware/, as the board's modules are.
    spin = compile("while not reset.is_set():\n    pass\n", "/fw/firmware/node/spin.py", "exec")
    thread = threading.Thread(target=exec, args=(spin, {"reset": reset}), daemon=True)
    thread.start()
    board = SimpleNamespace(device_id="b", clock=handle, running=True, thread=thread, reset=reset.set)
    guard = StallGuard(SimpleNamespace(vclock=vclock, boards=[board]), wall_s=0.0).start()
    try:
        assert reset.wait(30), "the guard never reset the board"
    finally:
        guard.stop()
        reset.set()
    assert guard.stalls == [{"device": "b", "board_s": 0.0, "where": "node/spin.py:1 <module>"}]
