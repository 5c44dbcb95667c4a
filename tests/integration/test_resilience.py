"""Resilience end to end: one test per fault class, each a hand-written chaos campaign.

Each test runs the real firmware on one simulated board on the virtual clock (Fleet(speed="max"))
against a real mosquitto with persistence, and plays its faults as a list of chaos Events through
chaos.Campaign: the same code that keeps the ground truth (what each boot produced), heals, drains
and has the independent Ledger count every record as delivered, declared dropped or silently lost.
Every test asserts that nothing was lost silently, and then the evidence that the fault really bit
and that the node coped as docs/resilience.md promises.

Evidence comes from three places: the campaign's report (per-device books, status states and
reasons, boots); a contract-checking observer that keeps every status, diag and telemetry message
with the board time it arrived at; and "looks" — snapshots of the running node's store, link and
sensor health, taken by the campaign at exact board times (it holds the virtual clock while it
looks, so a look sees the board as it is at that instant).

No wall-clock timing is asserted: times are board seconds, counts are records.
"""

import time

import pytest

from floorwatch import contract
from floorwatch.broker import Mosquitto
from floorwatch.ledger import Ledger
from floorwatch.observer import Observer
from floorwatch.sim.chaos import CAMPAIGN_INTERVALS, CLASSES, Campaign, Event, plan
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker

DEVICE = "sim-001"
WDT_S = 60  # the node's hardware watchdog (app._WDT_MS)
RAM_KEPT = 22  # records the RAM tail keeps while flash cannot be written (2 x the store's batch of 11)
# A temperature record every 30 s (the campaign's), a diag a minute (evidence), rare vibration windows.
LIGHT = dict(CAMPAIGN_INTERVALS, diag_s=60)
# For the sensor classes: a vibration window a minute, so a 10-minute fault spans several.
SENSING = {"temp_s": 15, "vib_s": 60, "diag_s": 60}


# --- the harness ----------------------------------------------------------------------------

def look(t, name, board=0):
    """An event that snapshots board `board`'s node at board time t (see Probed), as looks[name]."""
    return Event(t, board, "look", "look", name)


def node_of(board):
    app = board.runtime.modules.get("node.app") if board.runtime is not None else None
    return getattr(app, "node", None)


def snapshot(board):
    node = node_of(board)
    seen = {"t": board.clock.now(), "boots": board.boots, "crashed": board.crashed, "powered": board.powered,
            "wall_ahead_s": board.wall_time() - (board.true_epoch + board.clock.now())}
    if node is not None:
        seen.update(boot=node.boot, reset=node.reset, seq=node.store.seq, queue=dict(node.store.stats()),
                    connected=node.link.connected, mqtt_reconnects=node.link.mqtt_reconnects,
                    sensors={s.name: s.health.as_dict() for s in node.sensors})
    return seen


class Probed(Campaign):
    """A Campaign that also takes looks: Event(t, board, "look", "look", name) snapshots the node.

    A look is not a fault (its action is no start action): the report's fault counts ignore it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.looks = {}

    def apply(self, event):
        if event.fault == "look":
            self.looks[event.arg] = snapshot(self.fleet.boards[event.board])
            return
        super().apply(event)


class Recorder(Observer):
    """The contract-checking observer, keeping every status, diag and telemetry message with the
    board time it arrived at, and the first arrival of every record."""

    def __init__(self, host, port, site, vclock):
        super().__init__(host, port, site)
        self.vclock = vclock
        self.statuses, self.diags, self.telemetry = [], [], []  # (board time, body)
        self.arrived = {}  # (boot, seq) -> board time of its first arrival

    def _on_status(self, view, body):
        super()._on_status(view, body)
        self.statuses.append((self.vclock.now(), body))

    def _on_diag(self, view, body):
        super()._on_diag(view, body)
        self.diags.append((self.vclock.now(), body))

    def _on_telemetry(self, view, body):
        super()._on_telemetry(view, body)
        now = self.vclock.now()
        self.telemetry.append((now, body))
        for i in range(len(body["r"])):
            self.arrived.setdefault((body["boot"], body["seq"] + i), now)

    def online(self):
        """Bodies of the statuses the node published itself (not the Last Will)."""
        return [body for _, body in self.statuses if body["state"] != "offline"]

    def records(self):
        """{(boot, seq): record} of every record received."""
        found = {}
        for _, body in self.telemetry:
            for i, record in enumerate(contract.records(body)):
                found[(body["boot"], body["seq"] + i)] = record
        return found


class Outcome:
    def __init__(self, report, campaign, recorder, broker_log):
        self.report = report
        self.totals = report["totals"]
        self.row = report["devices"].get(DEVICE)
        self.looks = campaign.looks
        self.obs = recorder
        self.broker_log = broker_log

    def assert_nothing_silently_lost(self):
        totals = self.totals
        assert totals["produced"] > 0
        assert totals["silently_lost"] == 0, self.report["silently_lost_examples"]
        assert totals["unexpected"] == 0, self.report["unexpected_examples"]
        assert self.report["drain"]["ended"] == "complete", self.report["drain"]
        assert self.report["crashes"] == [] and self.report["stalls"] == [], self.report
        assert self.report["ledger"]["malformed"] == 0 and self.report["ledger"]["sessions_lost"] == 0
        assert self.obs.violations == [], self.obs.violations[:3]
        assert "messages are being dropped" not in self.broker_log  # the books would be wrong
        planned = {name: f["planned"] for name, f in self.report["faults"].items()}
        applied = {name: f["applied"] for name, f in self.report["faults"].items()}
        assert applied == planned, (self.report["faults"], self.report["notes"])


def play(tmp_path, site, events, duration, intervals=LIGHT, boards=1, seed=1, settle_wall_s=1.0):
    """Run the events as a campaign of `duration` board seconds (then heal and drain); an Outcome."""
    events = sorted(events, key=lambda e: e.t)  # stable: a look written after a fault at t sees it
    with Mosquitto(persistent=True) as broker:
        ledger = Ledger(broker.host, broker.port, site=site).start()
        fleet = Fleet(boards, broker.host, broker.port, site=site, seed=seed, speed="max",
                      intervals=intervals, workdir=tmp_path / "boards")
        recorder = Recorder(broker.host, broker.port, site, fleet.vclock).start()
        hold = None
        try:
            campaign = Probed(fleet, ledger, events, duration, broker=broker, speed="max")
            campaign.run(drain_wall_s=120.0)
            hold = fleet.vclock.join()  # board time stands still from here on
            report = campaign.report()
            time.sleep(settle_wall_s)  # what the observer has in flight (the ledger already counted it)
        finally:
            if hold is not None:
                hold.leave()
            fleet.close()
            recorder.stop()
            ledger.stop()
        log = broker.log_text()
    return Outcome(report, campaign, recorder, log)


# --- one test per fault class ------------------------------------------------------------------

def test_wifi_a_two_hour_outage_is_held_in_ram_and_flash_and_delivered_after_it(tmp_path):
    down, up = 600.0, 600.0 + 2 * 3600
    events = [Event(down, 0, "wifi", "down", None), look(down, "down"),
              look(down + 1800, "mid1"), look(down + 3600, "mid2"), look(down + 5400, "mid3"),
              look(up, "up"), Event(up, 0, "wifi", "up", None)]
    out = play(tmp_path, "res-wifi", events, up + 600)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    during = range(looks["down"]["seq"], looks["up"]["seq"])
    assert len(during) >= 2 * 3600 // LIGHT["temp_s"] - 2, len(during)  # ~240 records taken offline
    # The ring held all of them: nothing declared, every record delivered once the WiFi was back.
    assert row["dropped_counted"] == {"full": 0, "reset": 0} and row["delivered"] == row["produced"], row
    assert all(s["queue"]["dropped"] == 0 for s in looks.values())
    assert not any("dropped" in body for _, body in out.obs.telemetry)
    arrived = [out.obs.arrived.get((1, seq)) for seq in during]
    assert None not in arrived and min(arrived) >= up, (min(a for a in arrived if a), up)
    # The flash part of the queue was used while offline: the RAM tail holds at most 8 records.
    assert all(not looks[k]["connected"] for k in ("mid1", "mid2", "mid3", "up"))
    assert all(looks[k]["queue"]["flash"] > 0 for k in ("mid1", "mid2", "mid3", "up")), looks
    assert looks["up"]["queue"]["ram"] + looks["up"]["queue"]["flash"] >= len(during)
    # ... and the first diag after the outage reported that backlog.
    after = [body for t, body in out.obs.diags if t >= up]
    assert after and after[0]["queue"]["flash"] > 0, after[:1]
    assert row["boots"] == 1 and row["states"].get("online", 0) >= 2, row  # reconnected, no reset


def test_unreachable_a_half_open_connection_is_dropped_and_made_again(tmp_path):
    down, up = 600.0, 1200.0
    events = [Event(down, 0, "unreachable", "down", None), look(down, "down"), look(down + 120, "mid"),
              look(up, "up"), Event(up, 0, "unreachable", "up", None), look(up + 300, "after")]
    out = play(tmp_path, "res-unreach", events, up + 600)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    assert looks["down"]["connected"]
    # Within K/4 + T (15/4 + 5 s) the node gave up the connection whose packets vanish ...
    assert not looks["mid"]["connected"] and not looks["up"]["connected"], looks
    # ... and made a new one after: a second "online" status, a reconnect counted.
    assert looks["after"]["connected"] and looks["after"]["mqtt_reconnects"] >= 1, looks["after"]
    assert row["states"].get("online", 0) >= 2 and row["boots"] == 1, row
    assert row["dropped_counted"] == {"full": 0, "reset": 0} and row["delivered"] == row["produced"], row
    during = range(looks["down"]["seq"], looks["up"]["seq"])
    assert len(during) >= 18
    # Nothing sent into the black hole counted as sent: every record of the outage came after it.
    assert min(out.obs.arrived[(1, seq)] for seq in during) >= up


def test_broker_restart_loses_nothing_and_the_node_reconnects(tmp_path):
    events = [Event(600.0, None, "broker_restart", "restart", None), look(600.0, "first"),
              Event(1500.0, None, "broker_restart", "restart", None), look(1500.0, "second"),
              look(2100.0, "after")]
    out = play(tmp_path, "res-restart", events, 2400.0)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    assert out.report["faults"]["broker_restart"]["applied"] == 2
    # The node noticed each restart and connected again, saying "online" each time.
    assert looks["after"]["connected"] and looks["after"]["mqtt_reconnects"] >= 2, looks["after"]
    assert row["states"].get("online", 0) >= 3 and row["boots"] == 1, row
    assert row["dropped_counted"] == {"full": 0, "reset": 0} and row["delivered"] == row["produced"], row
    assert row["produced"] >= 2400 // LIGHT["temp_s"] - 2


def test_sensor_unplugged_for_ten_minutes_records_go_on_and_health_says_so(tmp_path):
    # pick 0: the accelerometer (I2C devices come first); pick 1: the first DS18B20 probe.
    events = [Event(600.0, 0, "sensor", "unplug", 0), look(900.0, "accel_out"),
              Event(1200.0, 0, "sensor", "replug", 0), look(1200.0, "accel_back"),
              Event(1500.0, 0, "sensor", "unplug", 1), look(1800.0, "probe_out"),
              Event(2100.0, 0, "sensor", "replug", 1), look(2100.0, "probe_back"), look(2700.0, "end")]
    out = play(tmp_path, "res-sensor", events, 2700.0, intervals=SENSING)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    assert row["delivered"] == row["produced"] and row["boots"] == 1, row
    # Meanwhile the node knew the accelerometer was missing ...
    assert looks["accel_out"]["sensors"]["motor"]["present"] is False, looks["accel_out"]["sensors"]
    missing = [name for name, h in looks["probe_out"]["sensors"].items() if h["present"] is False]
    assert len(missing) == 1 and missing[0] in ("bearing", "winding"), looks["probe_out"]["sensors"]
    probe = missing[0]
    # ... and said so in its diag; and back after each replug.
    def diag_at(t0, t1):
        return [body for t, body in out.obs.diags if t0 <= t < t1]
    out_diags = diag_at(700, 1200)
    assert out_diags and all(d["sensors"]["motor"]["present"] is False and d["health"] != "ok"
                             and "motor: not present" in " ".join(d["problems"]) for d in out_diags), out_diags[:1]
    probe_diags = diag_at(1600, 2100)
    assert probe_diags and all(d["sensors"][probe]["present"] is False and d["health"] != "ok"
                               for d in probe_diags), probe_diags[:1]
    last = diag_at(2400, 1e9)
    assert last and last[-1]["health"] == "ok" and all(s["present"] for s in last[-1]["sensors"].values()), last[-1:]
    # Records never stopped; they lacked the unplugged sensor only while it was out.
    records = out.obs.records()
    def taken(first_s, last_s):  # records of boot 1 by up (ms since boot; booted at board time 0)
        return [r for (b, _), r in sorted(records.items()) if b == 1 and first_s * 1000 <= r["up"] < last_s * 1000]
    accel_gap = taken(660, 1200)
    assert len(accel_gap) >= 30 and not any("motor" in r.get("v", {}) for r in accel_gap), accel_gap[:3]
    assert any("motor" in r.get("v", {}) for r in taken(1200, 1500)), "no vibration after the replug"
    probe_gap = taken(1560, 2100)
    assert len(probe_gap) >= 30 and all(r["t"].get(probe) is None for r in probe_gap if "t" in r), probe_gap[:3]
    assert all("t" in r for r in probe_gap) and any(r["t"].get("chip") is not None for r in probe_gap)
    assert all(r["t"].get(probe) is not None for r in taken(2200, 2700)), taken(2200, 2700)[:3]


def test_i2c_errors_on_the_accelerometer_are_counted_and_the_node_goes_on(tmp_path):
    # ENODEV until healed (the device stopped answering), then a burst of 5 bus timeouts.
    events = [Event(600.0, 0, "i2c", "fail", (0, "ENODEV", None)), look(890.0, "enodev"),
              Event(900.0, 0, "i2c", "heal", 0), look(1190.0, "healed"),
              Event(1200.0, 0, "i2c", "fail", (0, "ETIMEDOUT", 5)), look(1800.0, "timeouts"),
              Event(1800.0, 0, "i2c", "heal", 0), look(2400.0, "end")]
    out = play(tmp_path, "res-i2c", events, 2400.0, intervals=SENSING)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    assert row["delivered"] == row["produced"] and row["boots"] == 1, row  # no crash, no reset
    assert all(s["crashed"] is None for s in looks.values())
    # One failed read per vibration window: the five windows of the ENODEV minutes ...
    enodev = looks["enodev"]["sensors"]["motor"]
    assert 4 <= enodev["errors"] <= 5 and enodev["last_error"] == "not present (ENODEV)", enodev
    assert enodev["present"] is False
    healed = looks["healed"]["sensors"]["motor"]
    assert healed["present"] is True and healed["reads"] > enodev["reads"], healed
    assert healed["errors"] == enodev["errors"]
    # ... and the burst of five bus timeouts (each read gives up at its first failed transfer).
    timeouts = looks["timeouts"]["sensors"]["motor"]
    assert timeouts["errors"] == healed["errors"] + 5, timeouts
    assert timeouts["last_error"] == "bus timeout (ETIMEDOUT)" and timeouts["present"] is True, timeouts
    end = looks["end"]["sensors"]["motor"]
    assert end["reads"] > timeouts["reads"] and end["errors"] == timeouts["errors"], end
    # The diag messages counted the errors as they happened.
    errors = [body["sensors"]["motor"]["errors"] for _, body in out.obs.diags]
    assert errors == sorted(errors) and errors[-1] == end["errors"], errors
    assert any("ENODEV" in (body["sensors"]["motor"]["last_error"] or "") for _, body in out.obs.diags)
    assert any("ETIMEDOUT" in (body["sensors"]["motor"]["last_error"] or "") for _, body in out.obs.diags)
    # Temperature records went on throughout; vibration came back after each fault.
    records = [r for (b, _), r in sorted(out.obs.records().items()) if b == 1]
    assert all("t" in r for r in records if 660000 <= r["up"] < 900000)
    assert any("motor" in r.get("v", {}) for r in records if r["up"] >= 1900000)


CUTS = (1, 5, 25, 120, 400, 3)  # cut_power_after(n): the cut lands at the n-th firmware operation from now
OFF_S = 120  # how long the board stays off after each cut


def test_power_cuts_at_random_points_lose_nothing_silently(tmp_path):
    """Six power cuts, each at a different point of what the firmware is doing, the board off for
    two minutes each time; the last three during a WiFi outage, so the queue holds records (in RAM
    and on flash) when the power goes. Boots run 10 minutes: no safe mode."""
    events, cuts, t = [], [], 400.0
    for i, n in enumerate(CUTS):
        events += [Event(t, 0, "power", "cut", n), look(t + OFF_S - 1, "dead%d" % i),
                   Event(t + OFF_S, 0, "power", "on", None)]
        cuts.append(t)
        t += 720
    offline = cuts[3] - 450  # 15 records offline before the cut: more than the RAM tail's 10, so flash holds some
    events += [Event(offline, 0, "wifi", "down", None), Event(t, 0, "wifi", "up", None)]
    out = play(tmp_path, "res-power", events, t + 600)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    # Each cut landed by itself, within its two minutes (none had to be forced at power-on) ...
    assert not any("forced" in note for note in out.report["notes"]), out.report["notes"]
    dead = [looks["dead%d" % i] for i in range(len(CUTS))]
    assert [d["powered"] for d in dead] == [False] * len(CUTS)
    # ... and ended a boot: boot numbers went up by one each time (the dead node's store says which).
    assert [d["boot"] for d in dead] == list(range(1, len(CUTS) + 1)) and row["boots"] == len(CUTS) + 1, row
    statuses = out.obs.online()  # boots 5 and 6 ran entirely offline: no status from them
    assert [s["boot"] for s in statuses] == sorted(s["boot"] for s in statuses)
    assert {s["boot"] for s in statuses} == {1, 2, 3, 4, 7}
    # A power loss writes no reason: every status says reason null and reset "power_on".
    assert {s["reset"] for s in statuses} == {"power_on"} and {s["reason"] for s in statuses} == {None}
    assert set(row["reasons"]) == {"null"}, row
    # What the power took is declared "reset", never "full"; everything else was delivered, also
    # the records the offline boots had written to flash before they died.
    reset = row["dropped_counted"]["reset"]
    assert row["dropped_counted"]["full"] == 0 and row["delivered"] + reset == row["produced"], row
    for d in dead[3:]:
        assert d["queue"]["flash"] > 0, d
        assert all((d["boot"], seq) in out.obs.arrived for seq in range(d["seq"] - d["queue"]["ram"])), d
    # Only the unsaved RAM tails were lost: at most the last 10 records of a boot.
    missing = [(b, seq) for b, d in enumerate(dead, 1) for seq in range(d["seq"]) if (b, seq) not in out.obs.arrived]
    tails = {(d["boot"], seq) for d in dead for seq in range(d["seq"] - d["queue"]["ram"], d["seq"])}
    assert len(missing) == reset and set(missing) <= tails, (missing, tails)
    assert 0 < reset <= sum(d["queue"]["ram"] for d in dead) <= 10 * len(CUTS), dead


def test_brownout_loses_the_rtc_copy_and_declares_the_unsent_ram_tail(tmp_path):
    """The WiFi is down so the newest records sit in RAM (and its RTC copy) when the supply dips."""
    down, dip, up = 600.0, 600.0 + 5 * 30 + 10, 1200.0
    events = [Event(down, 0, "wifi", "down", None), look(down, "down"), look(dip, "before"),
              Event(dip, 0, "brownout", "brownout", None), Event(up, 0, "wifi", "up", None)]
    out = play(tmp_path, "res-brownout", events, 1800.0)
    out.assert_nothing_silently_lost()
    row, before = out.row, out.looks["before"]
    tail = before["queue"]["ram"]
    assert 1 <= tail < 8 and before["queue"]["flash"] == 0, before  # records at risk, none on flash
    # The brownout restarted the node as a power cycle (the RTC memory went too) ...
    second = [s for s in out.obs.online() if s["boot"] == 2]
    assert second and second[0]["reset"] == "power_on" and second[0]["reason"] is None, second
    assert row["boots"] == 2, row
    # ... so exactly the unsent RAM tail was lost, and declared so: "reset", nothing silent.
    assert row["dropped_counted"] == {"full": 0, "reset": tail}, (row, before)
    lost = [(1, seq) for seq in range(before["seq"] - tail, before["seq"])]
    assert not any(key in out.obs.arrived for key in lost)
    assert all((1, seq) in out.obs.arrived for seq in range(before["seq"] - tail))


def test_watchdog_reset_after_a_hang_restores_the_ram_tail_from_rtc_memory(tmp_path):
    down, hang, up = 600.0, 600.0 + 5 * 30 + 10, 1200.0
    events = [Event(down, 0, "wifi", "down", None), look(hang, "before"),
              Event(hang, 0, "watchdog", "hang", 2 * WDT_S), look(hang + WDT_S + 30, "after"),
              Event(up, 0, "wifi", "up", None)]
    out = play(tmp_path, "res-wdt", events, 1800.0)
    out.assert_nothing_silently_lost()
    row, before, after = out.row, out.looks["before"], out.looks["after"]
    assert 1 <= before["queue"]["ram"] < 8 and before["queue"]["flash"] == 0, before
    # The watchdog ended the hang well before its 120 s were up, and the chip said why.
    assert after["boot"] == 2 and after["reset"] == "wdt", after
    second = [s for s in out.obs.online() if s["boot"] == 2]
    assert second and second[0]["reset"] == "wdt", second
    # The new boot found the old one's RAM tail in RTC memory: it is queued again, nothing lost.
    assert after["queue"]["ram"] + after["queue"]["flash"] >= before["queue"]["ram"], after
    assert row["dropped_counted"] == {"full": 0, "reset": 0}, row
    assert row["delivered"] == row["produced"] and row["boots"] == 2, row
    assert all((1, seq) in out.obs.arrived for seq in range(before["seq"]))


def test_clock_jumps_of_a_day_either_way_leave_seq_contiguous(tmp_path):
    day = 86400.0
    events = [Event(600.0, 0, "clock", "jump", day), look(600.0, "ahead"),
              Event(1200.0, 0, "clock", "jump", -day), Event(1800.0, 0, "clock", "jump", -day),
              look(1800.0, "behind"), look(2400.0, "end")]
    out = play(tmp_path, "res-clock", events, 2400.0)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    assert abs(looks["ahead"]["wall_ahead_s"] - day) < 2 and abs(looks["behind"]["wall_ahead_s"] + day) < 2, looks
    assert row["delivered"] == row["produced"] and row["boots"] == 1, row
    assert row["dropped_counted"] == {"full": 0, "reset": 0}, row
    records = out.obs.records()
    assert {b for b, _ in records} == {1} and sorted(records) == [(1, seq) for seq in range(len(records))]
    assert len(records) >= row["produced"]
    ups = [records[(1, seq)]["up"] for seq in range(row["produced"])]
    steps = [b - a for a, b in zip(ups, ups[1:])]
    assert all(0 < s <= LIGHT["temp_s"] * 1000 + 2000 for s in steps), steps  # up never jumped
    t0s = {body["t0"] for _, body in out.obs.telemetry if "t0" in body}
    assert len(t0s) == 1, t0s  # wall time of the records unchanged by the jumps (no re-sync yet)


def test_flash_full_during_a_long_outage_drops_the_oldest_and_counts_them_exactly(tmp_path):
    full, down, up, clear = 590.0, 600.0, 600.0 + 3600, 600.0 + 4200
    events = [Event(full, 0, "flash_full", "full", None), Event(down, 0, "wifi", "down", None),
              look(down, "down"), look(down + 1800, "mid"), look(up, "up"), Event(up, 0, "wifi", "up", None),
              look(clear, "clear"), Event(clear, 0, "flash_full", "clear", None)]
    out = play(tmp_path, "res-flashfull", events, clear + 600)
    out.assert_nothing_silently_lost()
    row, looks = out.row, out.looks
    start, end = looks["down"], looks["up"]
    assert start["queue"] == {"ram": 0, "flash": 0, "dropped": 0}, start
    assert looks["mid"]["queue"]["flash"] == 0 and end["queue"]["flash"] == 0  # nothing could be written
    # RAM overflowed: it keeps the newest 16, the older ones were dropped as they came.
    assert looks["mid"]["queue"]["ram"] == RAM_KEPT and end["queue"]["ram"] == RAM_KEPT, (looks["mid"], end)
    taken = end["seq"] - start["seq"]
    assert taken >= 3600 // LIGHT["temp_s"] - 2
    assert end["queue"]["dropped"] == taken - RAM_KEPT, (end, taken)
    # A few more may go until the node has re-joined the WiFi; the node's own count, the ledger's
    # count of declared records never received, and the records missing all agree exactly.
    dropped = looks["clear"]["queue"]["dropped"]
    assert taken - RAM_KEPT <= dropped <= taken - RAM_KEPT + 8, (dropped, taken)
    assert row["dropped_counted"] == {"full": dropped, "reset": 0}, (row, dropped)
    assert row["delivered"] + dropped == row["produced"], row
    missing = {(1, seq) for seq in range(row["produced"])} - set(out.obs.arrived)
    assert missing == {(1, seq) for seq in range(start["seq"], start["seq"] + dropped)}  # the oldest ones
    declared = [d for _, body in out.obs.telemetry for d in body.get("dropped", ())]
    assert declared and {d["why"] for d in declared} == {"full"}, declared
    covered = {(d["boot"], seq) for d in declared for seq in range(d["seq"], d["seq"] + d["n"])}
    assert covered == missing, declared


def test_flash_full_then_a_power_cut_declares_what_it_lost(tmp_path):
    """Flash full and WiFi down, then the power goes: the RAM tail (16 records) and the "full"
    declarations of the older ones were only in RAM and RTC memory; the mark on flash could not be
    updated, so its reservation ends long before. The next boot declares boot 1 open-ended from
    the mark's floor, which covers them all."""
    full, down, cut, up, clear = 590.0, 600.0, 1800.0, 2400.0, 2700.0
    events = [Event(full, 0, "flash_full", "full", None), Event(down, 0, "wifi", "down", None),
              look(down, "down"), Event(cut, 0, "power", "cut", 1), look(cut + 59, "dead"),
              Event(cut + 60, 0, "power", "on", None), Event(up, 0, "wifi", "up", None),
              Event(clear, 0, "flash_full", "clear", None)]
    out = play(tmp_path, "res-fullcut", events, clear + 600)
    row, dead = out.row, out.looks["dead"]
    assert dead["boot"] == 1 and dead["queue"]["ram"] == RAM_KEPT and dead["queue"]["flash"] == 0, dead
    assert row["boots"] == 2 and row["produced"] > dead["seq"], row
    # Every record boot 1 took offline is lost (dropped "full", or the RAM tail the cut took) ...
    assert not any((1, seq) in out.obs.arrived for seq in range(out.looks["down"]["seq"], dead["seq"]))
    # ... and is declared.
    out.assert_nothing_silently_lost()


# --- all of them at once -------------------------------------------------------------------------

def test_a_six_hour_campaign_of_every_class_on_four_boards_loses_nothing_silently(tmp_path):
    events = plan(7, 4, 6 * 3600.0)
    out = play(tmp_path, "res-all", events, 6 * 3600.0, intervals=CAMPAIGN_INTERVALS, boards=4, seed=7)
    out.assert_nothing_silently_lost()
    faults = out.report["faults"]
    assert set(faults) == set(CLASSES) and all(faults[name]["applied"] >= 1 for name in CLASSES), faults
    assert out.totals["produced"] >= 4 * 6 * 3600 // CAMPAIGN_INTERVALS["temp_s"] // 2, out.totals
    # The resets bit: every power cut, brownout and watchdog hang started a new boot somewhere.
    restarts = sum(faults[name]["applied"] for name in ("power", "brownout", "watchdog"))
    assert sum(row["boots"] for row in out.report["devices"].values()) >= 4 + restarts, out.report["devices"]
