"""The chaos campaign's parts: the fault plan (a pure function) and the runner, against fake boards."""

import errno
import json
from types import SimpleNamespace

import pytest

from floorwatch.ledger import Ledger
from floorwatch.sim import chaos
from floorwatch.sim.chaos import CLASSES, FAULTS, Campaign, Event, fault_counts, plan
from floorwatch.sim.devices.i2cbus import I2CBus, I2CDevice

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


class FaultyBus(I2CBus):
    """An I2C bus with the fault helper's per-device errors, recording them."""

    def __init__(self):
        super().__init__()
        self.failing = {}

    def fail(self, addr, code, count):
        self.failing[addr] = (code, count)

    def heal(self, addr):
        self.failing.pop(addr, None)


class FakeBoard:
    """What the campaign uses of a Board, recording the faults it is given."""

    def __init__(self, device_id, full=True):
        self.device_id = device_id
        self.calls = []
        self.running, self.crashed, self.boots, self.flash_full = True, None, 1, False
        self.on_boot_end = []
        self.runtime = SimpleNamespace(modules={})
        bus = FaultyBus()
        bus.attach(Sensor(0x53))
        self.i2c_buses = {(22, 21): bus}
        self.onewire_buses = {4: SimpleNamespace(devices=[SimpleNamespace(rom=b"\x28\x01")])}
        self.clock = SimpleNamespace(now=lambda: 0.0)
        for name in ("brownout", "hang", "jump_clock", "cut_power_after", "broker_unreachable"):
            if full or name != "hang":
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
    fleet = SimpleNamespace(boards=list(boards))
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
    run.apply(Event(3, 0, "i2c", "fail", (7, "ETIMEDOUT", 5)))
    assert bus.failing == {0x53: (errno.ETIMEDOUT, 5)}
    run.apply(Event(4, 0, "i2c", "heal", 7))
    assert bus.failing == {}


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


def test_faults_the_board_cannot_do_are_skipped_with_a_note():
    board = FakeBoard("b", full=False)
    run = campaign(board)
    run.apply(Event(1, 0, "watchdog", "hang", 90.0))
    run.apply(Event(2, None, "broker_restart", "restart", None))
    assert run.skipped == {"watchdog": 1, "broker_restart": 1} and not run.applied
    assert any("hang" in note for note in run.notes) and any("broker" in note for note in run.notes)


def test_a_broker_restart_restarts_the_broker():
    broker = SimpleNamespace(restarts=0)
    broker.restart = lambda: setattr(broker, "restarts", broker.restarts + 1)
    run = campaign(FakeBoard("b"), broker=broker)
    run.apply(Event(1, None, "broker_restart", "restart", None))
    assert broker.restarts == 1 and run.applied == {"broker_restart": 1}


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
    assert board.flash_full is False and board.i2c_buses[(22, 21)].failing == {}
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
