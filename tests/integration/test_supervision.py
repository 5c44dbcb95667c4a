"""Supervision end to end: the real firmware on one simulated board, a real mosquitto, an observer.

What is checked is what a node promises in docs/resilience.md ("Supervision" and "Time"): the reason
a run ended reaches the next status, the hardware watchdog ends a hang, failed boots lead to safe
mode and out of it, a bad config.json falls back to the last good one, and wall time (`t0`) is
right, also for records taken before the clock was set and after the RTC jumps.

Every test runs on the virtual clock (Fleet(speed="max")) and holds it: the test joins the clock, so
board time moves only while the test waits on it (`Sim.advance`, `Sim.until`). Hours of board time
cost seconds of wall time, and every assertion about time is about board time or message contents,
never about the wall clock.
"""

import json
import time

import pytest

from floorwatch import contract
from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker

# One board, slow vibration: sampling costs little CPU, so long board-time stretches are cheap.
SLOW = {"temp_s": 10, "vib_s": 120, "diag_s": 60}
DEVICE = "sim-001"
STABLE_S = 300  # a boot that ran this long is good (app._STABLE_MS)
SAFE_HOLD_S = 1800  # safe mode ends by itself after this long (app._SAFE_HOLD_MS)
RESYNC_S = 6 * 3600  # NTP re-sync period once synced (app._SYNC_EVERY_MS)


class Recorder(Observer):
    """The contract-checking observer, also keeping every status and telemetry message, each
    telemetry message with the board time at which it arrived."""

    def __init__(self, host, port, site, vclock):
        super().__init__(host, port, site)
        self.vclock = vclock
        self.statuses = []  # status bodies, in arrival order (the Last Will's "offline" too)
        self.telemetry = []  # (board time at arrival, telemetry body), in arrival order

    def _on_status(self, view, body):
        super()._on_status(view, body)
        self.statuses.append(body)

    def _on_telemetry(self, view, body):
        super()._on_telemetry(view, body)
        self.telemetry.append((self.vclock.now(), body))

    def status_of(self, boot):
        """The first status the node published in `boot` (not the Last Will), or None."""
        return next((s for s in self.statuses if s["boot"] == boot and s["state"] != "offline"), None)

    def records(self, boot=None):
        """(boot, seq) of every record received, of one boot or all, in arrival order."""
        view = self.devices.get(DEVICE)
        return [r for r in (view.records if view else []) if boot is None or r[0] == boot]

    def messages(self, boot):
        return [body for _, body in self.telemetry if body["boot"] == boot]


class Sim:
    """One board on a virtual clock that the test holds: board time moves only in advance/until."""

    def __init__(self, broker, workdir, site):
        self.site = site
        self.fleet = Fleet(1, broker.host, broker.port, site=site, workdir=workdir, intervals=SLOW, speed="max")
        self.board = self.fleet.boards[0]
        self.clock = self.fleet.vclock.join()  # from now on, time waits for the test whenever it runs
        self.obs = Recorder(broker.host, broker.port, site, self.fleet.vclock).start()

    def now(self):
        return self.clock.now()

    def advance(self, seconds):
        """Let `seconds` of board time pass (the board runs meanwhile)."""
        self.clock.wait(seconds)

    def seen(self, predicate, wall_s):
        """predicate(observer), polled for up to `wall_s` of wall time while board time is held."""
        deadline = time.monotonic() + wall_s
        while True:
            result = self.obs.wait_for(predicate, 0)
            if result or time.monotonic() >= deadline:
                return result
            time.sleep(0.002)

    def until(self, predicate, within_s, step_s=1.0, settle_s=0.02):
        """Run board time in steps until predicate(observer) holds, at most `within_s` board seconds;
        returns the predicate's last value.

        Messages reach the observer in wall time, and a step of board time costs far less than
        that: after each step time is held up to `settle_s` of wall time for what is on its way, so
        that now() when the predicate turns true is within a step of when the board acted (0: no
        such care, for cheap long runs). What is in flight at the end is waited for as well.
        """
        end = self.now() + within_s
        while True:
            result = self.seen(predicate, settle_s)
            if result:
                return result
            if self.now() >= end:
                return self.seen(predicate, 2.0)
            self.advance(min(step_s, end - self.now()))

    def boot_status(self, boot, within_s=60):
        status = self.until(lambda o: o.status_of(boot), within_s)
        assert status, "no status from boot %d by board time %.0f s: %s" % (boot, self.now(), self.obs.statuses)
        return status

    def command(self, cmd, within_s=30, **args):
        """Send a command and return its ack. Time is held while the command travels: the board is
        idle on its MQTT socket and answers at once, with no board time passing."""
        cmd_id = self.obs.publish_command(self.site, DEVICE, cmd, **args)
        assert self.until(lambda o: cmd_id in o.acks, within_s, settle_s=0.5), "no ack for %s" % cmd
        return self.obs.acks[cmd_id]

    def power_on(self):
        self.board.power_on()

    def cut_power(self):
        self.board.power_off()
        assert not self.board.powered

    def log_lines(self, text):
        return [line for line in self.board.log if text in line]

    def close(self):
        self.clock.leave()
        self.fleet.close()
        self.obs.stop()


@pytest.fixture
def sim(broker, tmp_path):
    made = []

    def make(site):
        made.append(Sim(broker, tmp_path, site))
        return made[-1]

    yield make
    for one in made:
        one.close()


def contiguous(records):
    """True when the distinct (boot, seq) of each boot run 0, 1, 2, ... with no gap."""
    expected = {}
    for boot, seq in sorted(set(records)):
        if seq != expected.get(boot, 0):
            return False
        expected[boot] = seq + 1
    return True


# --- the reason a run ended ---------------------------------------------------------------

def test_reboot_command_is_acknowledged_and_its_reason_shown_by_the_next_boot(sim):
    s = sim("sup-reboot")
    s.power_on()
    first = s.boot_status(1)
    assert first["state"] == "online" and first["reset"] == "power_on" and first["reason"] is None
    assert s.until(lambda o: len(o.records(1)) >= 3, 60)

    ack = s.command("reboot")
    assert ack["ok"] is True and ack["result"] == {"restarting": True}
    second = s.boot_status(2)
    assert second["state"] == "online"
    assert second["reason"] == "command: reboot" and second["reset"] == "hard"
    assert s.until(lambda o: len(o.records(2)) >= 3, 60)
    assert contiguous(s.obs.records()), s.obs.records()
    assert s.board.crashed is None and s.obs.violations == []


# --- the hardware watchdog ----------------------------------------------------------------

def test_a_hang_is_ended_by_the_hardware_watchdog_with_no_reason_recorded(sim):
    s = sim("sup-wdt")
    s.power_on()
    s.boot_status(1)
    assert s.until(lambda o: len(o.records(1)) >= 2, 60)

    hung_at = s.now()
    s.board.hang(120)  # the whole loop stops: nothing feeds the watchdog, nothing can write a reason
    s.advance(50)
    assert not s.seen(lambda o: o.status_of(2), 0.5)  # still hung
    second = s.boot_status(2, within_s=70)
    # The 60 s watchdog bites 60 s after the last feed, which was at most one idle pass (5 s) before
    # the hang; boot 2 is online a few seconds later. The 120 s hang would have ended much later.
    assert 55 <= s.now() - hung_at <= 80, s.now() - hung_at
    assert second["state"] == "online" and second["reset"] == "wdt"
    # BootRecord.begin() cleared boot 1's record, and the hung loop never reached ending(): the next
    # boot knows only what the chip tells it (reset "wdt").
    assert second["reason"] is None
    assert s.until(lambda o: len(o.records(2)) >= 2, 60)
    assert contiguous(s.obs.records()), s.obs.records()
    assert s.obs.violations == []


# --- failed boots and safe mode -----------------------------------------------------------

def test_three_failed_boots_give_safe_mode_which_resume_ends(sim):
    s = sim("sup-safe")
    for boot in (1, 2, 3):  # each one loses its power well within its first 5 minutes
        s.power_on()
        status = s.boot_status(boot)
        assert status["state"] == "online" and status["reset"] == "power_on" and status["reason"] is None
        s.advance(20)
        s.cut_power()

    s.power_on()
    safe = s.boot_status(4)
    assert safe["state"] == "safe_mode"
    assert safe["safe"] == "3 failed boots in a row, last: power_on"  # a power cut records no reason
    assert safe["reset"] == "power_on" and safe["reason"] is None
    ping = s.command("ping")
    assert ping["ok"] is True and ping["result"]["boot"] == 4
    diag = s.command("diag")["result"]
    assert diag["failed_boots"] == 4 and diag["sensors"] == {}
    refused = s.command("rebaseline", sensor="motor")
    assert refused["ok"] is False and "safe mode" in refused["error"]
    s.advance(120)  # a dozen records' worth, had the node been sampling
    assert s.obs.records(4) == []

    resume = s.command("resume")
    assert resume["ok"] is True and resume["result"] == {"restarting": True}
    back = s.boot_status(5)
    assert back["state"] == "online" and "safe" not in back
    assert back["reason"] == "command: resume" and back["reset"] == "hard"
    assert s.command("diag")["result"]["failed_boots"] == 1  # resume cleared the streak: this boot only
    assert s.until(lambda o: len(o.records(5)) >= 3, 60)
    again = s.command("resume")
    assert again["ok"] is False and "not in safe mode" in again["error"]
    assert s.obs.violations == []
    # Not sampling is not a sampling failure: the safe loop must not log one on every pass.
    assert s.log_lines("sampling failed") == [], s.log_lines("sampling failed")[:3]


def test_a_stable_boot_ends_the_failure_streak(sim):
    """Boots 1-2 fail, boot 3 runs past 5 minutes, boots 4-5 fail: boot 6 is online (five failures
    in six boots, but only two in a row). When boot 6 fails too, boot 7 is in safe mode."""
    s = sim("sup-stable")
    for boot in (1, 2):
        s.power_on()
        s.boot_status(boot)
        s.advance(20)
        s.cut_power()
    s.power_on()
    s.boot_status(3)
    assert s.command("diag")["result"]["failed_boots"] == 3
    s.advance(STABLE_S + 30)
    assert s.command("diag")["result"]["failed_boots"] == 0
    s.cut_power()
    for boot in (4, 5):
        s.power_on()
        s.boot_status(boot)
        s.advance(20)
        s.cut_power()

    s.power_on()
    sixth = s.boot_status(6)
    assert sixth["state"] == "online" and "safe" not in sixth
    # Boots 4, 5 and this one. "Stable" counts from each boot's own start (ticks restart at a
    # reset), not from board time 0, which lies far more than 5 minutes back by now.
    assert s.command("diag")["result"]["failed_boots"] == 3
    s.advance(20)
    s.cut_power()
    s.power_on()
    seventh = s.boot_status(7)
    assert seventh["state"] == "safe_mode" and seventh["safe"] == "3 failed boots in a row, last: power_on"
    assert s.obs.violations == []


def test_safe_mode_ends_by_itself_after_30_minutes_of_board_time(sim):
    s = sim("sup-hold")
    for boot in (1, 2, 3):  # a minute each: the safe boot starts well after board time 0
        s.power_on()
        s.boot_status(boot)
        s.advance(60)
        s.cut_power()
    safe_from = s.now()  # time is held: this is the safe boot's first instant
    s.power_on()
    assert s.boot_status(4)["state"] == "safe_mode"

    s.advance(safe_from + SAFE_HOLD_S - 10 - s.now())
    assert not s.seen(lambda o: o.status_of(5), 0.5), "safe mode ended after %.0f s" % (s.now() - safe_from)
    back = s.boot_status(5, within_s=60)
    held = s.now() - safe_from
    assert SAFE_HOLD_S <= held <= SAFE_HOLD_S + 25, held
    assert back["state"] == "online" and back["reason"] == "safe mode: held 1800 s" and back["reset"] == "hard"
    assert s.obs.records(4) == []  # half an hour in safe mode, not one reading
    assert s.command("diag")["result"]["failed_boots"] == 1  # the streak was cleared on the way out
    assert s.until(lambda o: len(o.records(5)) >= 3, 60)
    assert s.obs.violations == []


# --- config.json falls back to the last good one ------------------------------------------

def test_a_corrupt_or_rejected_config_falls_back_to_the_last_good_one(sim):
    s = sim("sup-cfg")
    flash = s.board.flash_dir
    good_text = (flash / "config.json").read_text()
    s.power_on()
    first = s.boot_status(1)
    assert "config_fallback" not in first and first["config_error"] is None
    assert (flash / "config.good.json").read_text() == good_text  # the last good copy

    (flash / "config.json").write_text('{"device_id": "sim-001", "wif')  # torn by a bad edit
    s.board.reset()
    second = s.boot_status(2)
    assert second["state"] == "online" and second["config_error"] is None and second["health"] == "ok"
    assert second["config_fallback"].startswith("config.json: not valid JSON"), second
    assert second["reset"] == "hard" and second["reason"] is None  # the reset button records nothing
    assert s.until(lambda o: len(o.records(2)) >= 3, 60)  # still sampling, on the good config

    rejected = json.loads(good_text)
    rejected["intervals"]["temp_s"] = 0
    (flash / "config.json").write_text(json.dumps(rejected))
    s.board.reset()
    third = s.boot_status(3)
    assert third["config_fallback"] == "config.json: intervals.temp_s: 0 is out of range 1..3600", third
    assert third["config_error"] is None
    assert s.until(lambda o: len(o.records(3)) >= 3, 60)
    assert (flash / "config.good.json").read_text() == good_text  # neither bad file replaced it

    (flash / "config.json").write_text(good_text)
    s.board.reset()
    assert "config_fallback" not in s.boot_status(4)
    assert contiguous(s.obs.records()), s.obs.records()
    assert s.obs.violations == []


def test_without_a_good_copy_a_rejected_config_still_connects_and_reports_it(sim):
    s = sim("sup-nogood")
    flash = s.board.flash_dir
    rejected = json.loads((flash / "config.json").read_text())
    rejected["intervals"]["temp_s"] = 0
    (flash / "config.json").write_text(json.dumps(rejected))
    s.power_on()
    status = s.boot_status(1)
    assert status["state"] == "online" and "config_fallback" not in status
    assert status["config_error"] == "intervals.temp_s: 0 is out of range 1..3600"
    assert status["health"] == "fault"
    assert s.command("ping")["ok"] is True
    s.advance(60)
    assert s.obs.records() == []  # nothing is sampled on a config that was not accepted
    assert not (flash / "config.good.json").exists()
    assert s.obs.violations == []
    assert s.log_lines("sampling failed") == [], s.log_lines("sampling failed")[:3]


def test_without_a_good_copy_an_unreadable_config_leaves_the_node_at_the_repl(sim):
    """Not JSON at all: no WiFi or broker settings can be salvaged, so there is nothing to connect
    with; the node says why on its console and stays at the REPL (docs/resilience.md: it connects
    "with whatever WiFi and broker settings it can salvage" — here, none)."""
    s = sim("sup-garbage")
    (s.board.flash_dir / "config.json").write_text("\x00\xff garbage")
    s.power_on()
    s.advance(120)
    assert s.seen(lambda o: o.statuses, 1.0) == []
    log = "\n".join(s.board.log)
    assert "config rejected: config.json: not valid JSON" in log
    assert "no usable WiFi/broker settings" in log
    assert s.board.crashed is None and s.board.running


# --- wall time: NTP and t0 ----------------------------------------------------------------

def wall_s(t0, record):
    return (t0 + record["up"]) / 1000


def by_seq(messages):
    """{seq: record} of telemetry messages of one boot."""
    records = {}
    for body in messages:
        for i, record in enumerate(contract.records(body)):
            records[body["seq"] + i] = record
    return records


def assert_on_schedule(t0, records, true_boot_s, first, last):
    """Records `first`..`last` have wall times on the temperature schedule: record k was taken
    10 k s after the boot, plus the reading's own second or so (conversion, vibration window);
    NTP's whole seconds may put the clock up to 1 s early."""
    for seq in range(first, last + 1):
        late = wall_s(t0, records[seq]) - (true_boot_s + 10 * seq)
        assert -1.0 <= late <= 2.0, (seq, records[seq], late)


def test_t0_is_the_wall_time_of_the_boot_and_survives_a_clock_jump(sim):
    s = sim("sup-t0")
    true_epoch = s.board.true_epoch
    s.advance(100)  # the board is off: its boot is at board time 100 s, not 0
    boot_at = s.now()
    s.power_on()
    assert s.until(lambda o: len(o.records(1)) >= 6, 120)

    t0s = {body["t0"] for body in s.obs.messages(1)}  # KeyError: a message without t0 (it syncs
    assert len(t0s) == 1, t0s  # before its first publish)
    t0 = t0s.pop()
    # t0 is the Unix time (ms) at up = 0, the boot; NTP gives whole seconds, so up to 1 s early.
    assert -1.0 <= t0 / 1000 - (true_epoch + boot_at) <= 0.01, (t0, true_epoch + boot_at)
    assert_on_schedule(t0, by_seq(s.obs.messages(1)), true_epoch + boot_at, 0, 5)
    for arrived, body in s.obs.telemetry:  # and no record claims a time after it arrived
        assert all(wall_s(t0, r) <= true_epoch + arrived + 0.01 for r in contract.records(body)), (arrived, body)

    s.board.jump_clock(86400)  # the RTC jumps a day ahead; ticks (and so up) do not
    seen = len(s.obs.records(1))
    assert s.until(lambda o: len(o.records(1)) >= seen + 30, 600, settle_s=0)
    assert abs(s.board.wall_time() - (true_epoch + s.now()) - 86400) < 2  # the RTC is still a day off
    assert {body["t0"] for body in s.obs.messages(1)} == {t0}  # t0 changes at a sync only
    records = by_seq(s.obs.messages(1))
    assert_on_schedule(t0, records, true_epoch + boot_at, 0, max(records))
    assert contiguous(s.obs.records()), s.obs.records()

    # The 6-hourly re-sync puts the RTC right again; the ticks never jumped, so t0 stays put.
    s.advance(boot_at + RESYNC_S + 60 - s.now())
    assert abs(s.board.wall_time() - (true_epoch + s.now())) < 1.01
    assert s.until(lambda o: max(by_seq(o.messages(1))) * 10 > RESYNC_S + 60, 60, settle_s=0)
    records = by_seq(s.obs.messages(1))
    assert all(abs(body["t0"] - t0) <= 1000 for body in s.obs.messages(1))
    assert_on_schedule(t0, records, true_epoch + boot_at, 0, max(records))
    assert contiguous(s.obs.records()), "seq gap around the jump or the re-sync"
    assert s.obs.violations == []


def test_records_taken_before_the_first_sync_get_wall_time_once_it_is_known(sim):
    s = sim("sup-ntp")
    board = s.board
    true_epoch = board.true_epoch
    board.wifi_down()  # no link and no NTP at boot: records queue up, with no wall time known
    board.ntp_reachable = False
    s.advance(50)
    boot_at = s.now()
    s.power_on()
    s.advance(60)
    assert s.seen(lambda o: o.statuses or o.telemetry, 0.5) == []
    board.wifi_up()
    board.ntp_reachable = True
    assert s.until(lambda o: len(o.records(1)) >= 12, 400, settle_s=0)

    assert contiguous(s.obs.records()), s.obs.records()
    t0s = {body["t0"] for body in s.obs.messages(1)}  # KeyError: a message went out without t0
    assert len(t0s) == 1, t0s
    t0 = t0s.pop()
    assert -1.0 <= t0 / 1000 - (true_epoch + boot_at) <= 0.01, (t0, true_epoch + boot_at)
    # The first 7 (0..60 s) were taken offline, before any sync: they got wall time all the same.
    assert_on_schedule(t0, by_seq(s.obs.messages(1)), true_epoch + boot_at, 0, 11)
    assert s.obs.violations == []


def test_without_ntp_records_go_out_without_t0_and_the_sync_is_retried_every_5_minutes(sim):
    s = sim("sup-nontp")
    board = s.board
    board.ntp_reachable = False
    s.power_on()
    assert s.until(lambda o: len(o.records(1)) >= 3, 60)
    assert all("t0" not in body for body in s.obs.messages(1))
    board.ntp_reachable = True
    assert s.until(lambda o: any("t0" in body for body in o.messages(1)), 400, settle_s=0)
    messages = s.obs.messages(1)
    first = next(i for i, body in enumerate(messages) if "t0" in body)
    assert all("t0" in body for body in messages[first:])
    # The first try failed when the node first connected (up ~6 s); the next comes 5 minutes
    # later, and the record of that pass or the next one is the first to carry t0.
    up = contract.records(messages[first])[0]["up"]
    assert 300000 <= up <= 320000, up
    assert contract.records(messages[first - 1])[-1]["up"] < up
    t0 = messages[first]["t0"]
    assert -1.0 <= t0 / 1000 - board.true_epoch <= 0.01, t0  # powered on at board time 0
    assert contiguous(s.obs.records()), s.obs.records()
    assert s.obs.violations == []
