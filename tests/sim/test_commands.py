"""Commands end to end: the real firmware on a simulated board, a real mosquitto, the
contract-checking observer.

`set` changes intervals and thresholds, persists config.json (and its last good copy) and survives a
reboot; a rejected set changes nothing. `identify` blinks the status LED named by the config's `led`:
a GPIO LED is read from the board's pins, a WS2812 from what the fake neopixel last displayed.
Hostile commands (the corpus tests/core/cmd_corpus.json's rejected payloads, oversize ones) are each
answered ok false and change nothing; a flood is rate-limited as docs/contract.md says.

Board time runs on the virtual clock, held by the test (as in tests/integration/test_supervision.py):
it moves only while the test waits, and every assertion about time is about board time.
"""

import json
import time
from pathlib import Path

import pytest

from floorwatch import contract
from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker

SLOW = {"temp_s": 10, "vib_s": 120, "diag_s": 60}  # slow vibration: cheap board time
DEVICE = "sim-001"


class Recorder(Observer):
    """The observer, also keeping every status and the `up` of every record with its boot."""

    def __init__(self, host, port, site):
        super().__init__(host, port, site)
        self.statuses = []
        self.ack_list = []
        self.ups = []  # (boot, up) of every telemetry record, in arrival order

    def _on_status(self, view, body):
        super()._on_status(view, body)
        self.statuses.append(body)

    def _on_telemetry(self, view, body):
        super()._on_telemetry(view, body)
        self.ups.extend((body["boot"], r["up"]) for r in contract.records(body))

    def _on_ack(self, view, body):
        super()._on_ack(view, body)
        self.ack_list.append(body)  # every ack in arrival order, also those without an id

    def status_of(self, boot):
        return [s for s in self.statuses if s["boot"] == boot and s["state"] != "offline"]

    def spacing(self, boot, after_up=0):
        """The distinct gaps (s, rounded) between this boot's records taken after after_up (ms)."""
        ups = sorted({up for b, up in self.ups if b == boot and up > after_up})
        return {round((b - a) / 1000) for a, b in zip(ups, ups[1:])}


class Node:
    """One simulated board on a held virtual clock, its flash, and an observer."""

    def __init__(self, broker, workdir, site, board_name="esp32-devkitc", led=None):
        self.site = site
        self.fleet = Fleet(1, broker.host, broker.port, site=site, workdir=workdir, intervals=SLOW,
                           speed="max", board_name=board_name)
        self.board = self.fleet.boards[0]
        self.config_path = self.board.flash_dir / "config.json"
        cfg = json.loads(self.config_path.read_text())  # the fleet gives the board's LED; each test says its own
        cfg["led"] = led
        self.config_path.write_text(json.dumps(cfg, indent=1))
        self.clock = self.fleet.vclock.join()
        self.obs = Recorder(broker.host, broker.port, site).start()

    def flash(self, name):
        return (self.board.flash_dir / name).read_text()

    def until(self, predicate, within_s, step_s=1.0, settle_s=0.02):
        """Run board time in steps until predicate(observer) holds, at most within_s board seconds;
        after each step, time is held up to settle_s of wall time for messages on their way."""
        end = self.clock.now() + within_s
        while True:
            result = self.obs.wait_for(predicate, settle_s)
            if result or self.clock.now() >= end:
                return result or self.obs.wait_for(predicate, 2.0)
            self.clock.wait(min(step_s, end - self.clock.now()))

    def boot_status(self, boot, within_s=60):
        found = self.until(lambda o: o.status_of(boot), within_s)
        assert found, "no status from boot %d: %s" % (boot, self.obs.statuses)
        return found[0]

    def command(self, cmd, **args):
        cmd_id = self.obs.publish_command(self.site, DEVICE, cmd, **args)
        # Held time while the command travels: the idle board answers at once, no board time passes.
        assert self.until(lambda o: cmd_id in o.acks, 30, settle_s=0.5), "no ack for %s" % cmd
        return self.obs.acks[cmd_id]

    def close(self):
        self.clock.leave()
        self.fleet.close()
        self.obs.stop()


@pytest.fixture
def node(broker, tmp_path):
    made = []

    def make(site, **kw):
        made.append(Node(broker, tmp_path / site, site, **kw))
        return made[-1]

    yield make
    for one in made:
        one.close()


# --- set ---------------------------------------------------------------------------------------

def test_set_persists_across_a_reboot_and_a_rejected_set_changes_nothing(node):
    n = node("cmd-set")
    n.board.power_on()
    first = n.boot_status(1)

    ack = n.command("set", intervals={"temp_s": 5}, thresholds={"bearing": {"warn": 75}})
    assert ack["ok"] is True, ack
    assert ack["result"] == {"changed": {"intervals.temp_s": 5, "thresholds.bearing.warn": 75},
                             "restarting": True}
    second = n.boot_status(2)
    assert second["reason"] == "command: set" and second["state"] == "online"
    assert second["cfg"] != first["cfg"]  # the status shows the new file's hash
    saved = json.loads(n.flash("config.json"))
    assert saved["intervals"] == {"temp_s": 5, "vib_s": 120, "diag_s": 60, "send_s": 0}
    assert saved["thresholds"]["bearing"] == {"warn": 75, "alarm": 90, "deadband": 2, "early_s": 600}
    assert saved["wifi"]["password"]  # everything else kept, secrets included
    assert n.flash("config.good.json") == n.flash("config.json")
    assert n.until(lambda o: len([1 for b, _ in o.ups if b == 2]) >= 4, 60)
    assert n.obs.spacing(2) == {5}

    # Intervals alone apply live: no restart, a new status with the new hash, the new rhythm.
    set_at = n.obs.ups[-1][1]
    live = n.command("set", intervals={"temp_s": 7})
    assert live["ok"] is True and live["result"] == {"changed": {"intervals.temp_s": 7}, "restarting": False}
    assert n.until(lambda o: len(o.status_of(2)) >= 2, 5)
    assert n.obs.status_of(2)[-1]["cfg"] not in (first["cfg"], second["cfg"])
    assert n.until(lambda o: len([1 for b, up in o.ups if b == 2 and up > set_at]) >= 4, 60)
    assert n.obs.spacing(2, after_up=set_at + 1) == {7}

    # Rejected: the validation's line, nothing written, no restart.
    before = n.flash("config.json")
    for args, error in (
        ({"thresholds": {"bearing": {"warn": 95}}}, "thresholds.bearing.warn: 95 is above alarm 90"),
        ({"intervals": {"temp_s": 0.5}}, "set: intervals.temp_s: 0.5 is out of range 1..3600"),
        ({"thresholds": {"pump": {"warn": 1}}}, "thresholds.pump: 'pump' is not a metric"),
        ({"wifi": {"ssid": "evil"}}, "set takes no argument 'wifi'"),
        ({"intervals": [5]}, "set: intervals: [5] is not an object"),
        ({}, "set: nothing to change"),
    ):
        refused = n.command("set", **args)
        assert refused["ok"] is False and refused["error"].startswith(error), (args, refused)
    assert n.flash("config.json") == before and n.flash("config.good.json") == before

    # A reboot runs on what was set.
    assert n.command("reboot")["ok"] is True
    third = n.boot_status(3)
    assert third["reason"] == "command: reboot" and third["cfg"] == n.obs.status_of(2)[-1]["cfg"]
    assert n.until(lambda o: len([1 for b, _ in o.ups if b == 3]) >= 4, 60)
    assert n.obs.spacing(3) == {7}
    assert n.command("set", thresholds={"bearing": {"warn": 75}})["result"] == {"changed": {}, "restarting": False}
    assert n.obs.status_of(4) == []
    assert n.obs.violations == [] and n.board.crashed is None


def test_set_can_remove_a_threshold(node):
    n = node("cmd-unset")
    n.board.power_on()
    n.boot_status(1)
    ack = n.command("set", thresholds={"winding": None})
    assert ack["ok"] is True and ack["result"] == {"changed": {"thresholds.winding": None}, "restarting": True}
    n.boot_status(2)
    assert "winding" not in json.loads(n.flash("config.json"))["thresholds"]
    refused = n.command("ack-alarm", metric="winding")  # the running node has no such limits any more
    assert refused["ok"] is False and "no alarm limits for 'winding'" in refused["error"]
    assert n.obs.violations == []


# --- identify ----------------------------------------------------------------------------------

def _watch(n, lit, seconds, step_s=0.05):
    """(board time, lit) at every change of lit() over `seconds` of board time."""
    changes = [(n.clock.now(), lit())]
    end = n.clock.now() + seconds
    while n.clock.now() < end:
        n.clock.wait(step_s)
        if lit() != changes[-1][1]:
            changes.append((n.clock.now(), lit()))
    return changes


@pytest.mark.parametrize("board_name, led, lit", [
    ("esp32-devkitc", {"pin": 2, "type": "gpio"}, lambda board: board.pins.get(2) == 1),
    ("esp32-s3-devkitc-1", {"pin": 48, "type": "ws2812"},
     lambda board: getattr(board, "neopixels", {}).get(48, [(0, 0, 0)])[0] != (0, 0, 0)),
], ids=["gpio", "ws2812"])
def test_identify_blinks_the_status_led_without_stopping_the_node(node, board_name, led, lit):
    n = node("cmd-id-" + led["type"], board_name=board_name, led=led)
    n.board.power_on()
    n.boot_status(1)
    assert not lit(n.board)

    ack = n.command("identify", s=4)
    assert ack["ok"] is True and ack["result"] == {"s": 4}
    started = n.clock.now()
    changes = _watch(n, lambda: lit(n.board), 6)
    on = [t for t, state in changes if state]
    # 2 Hz for 4 s: 8 flashes, a few late when a pass is busy; then off and staying off.
    assert 7 <= len(on) <= 8, changes
    assert changes[-1][1] is False and 3.5 <= changes[-1][0] - started <= 4.5, changes
    assert n.until(lambda o: len(o.ups) >= 2, 30)  # sampling went on meanwhile

    assert n.command("identify", s=60)["ok"] is True
    n.clock.wait(1)
    stop = n.command("identify", s=0)
    assert stop["ok"] is True and stop["result"] == {"s": 0}
    assert not lit(n.board) and len(_watch(n, lambda: lit(n.board), 2)) == 1
    for args, error in (({"s": 3601}, "identify: s: 3601 is out of range 0..3600"),
                        ({"s": "10"}, "identify: s: '10' is not an integer")):
        refused = n.command("identify", **args)
        assert refused["ok"] is False and refused["error"].startswith(error), refused
    assert n.obs.violations == [] and n.board.crashed is None


def test_identify_without_a_configured_led_is_refused(node):
    n = node("cmd-id-none")
    n.board.power_on()
    n.boot_status(1)
    ack = n.command("identify")
    assert ack == {"id": ack["id"], "cmd": "identify", "ok": False, "error": "no status LED configured"}
    assert n.obs.violations == []


# --- hostile commands and floods -------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[1] / "core" / "cmd_corpus.json"
BURST = 8  # the node's command burst (firmware/node/app.py _CMD_BURST): tokens refill 1 a second


def hostile_commands():
    """(payload, expected error prefix) for every rejected payload of the corpus, and oversize ones."""
    out = []
    for entry in json.loads(CORPUS.read_text()):
        if not entry["ok"] and "size" not in entry:
            msg = bytes.fromhex(entry["hex"]) if "hex" in entry else entry["text"].encode()
            out.append((msg, entry["error"]))
    for size in (513, 4096):
        msg = json.dumps({"id": "big", "cmd": "ping", "pad": "x" * size}).encode()
        out.append((msg, "command is %d bytes, at most 512 allowed" % len(msg)))
    return out


def test_hostile_commands_are_answered_and_change_nothing_and_a_flood_is_rate_limited(node):
    n = node("cmd-fuzz")
    n.board.power_on()
    n.boot_status(1)
    config_before, good_before = n.flash("config.json"), n.flash("config.good.json")
    topic = "floorwatch/%s/%s/cmd" % (n.site, DEVICE)
    hostile = hostile_commands()
    assert len(hostile) >= 150

    # Paced within the limit (a burst, then time to refill): every one answered, in order, ok false.
    for start in range(0, len(hostile), BURST):
        batch = hostile[start:start + BURST]
        seen = len(n.obs.ack_list)
        for msg, _ in batch:
            n.obs.client.publish(topic, msg, qos=1)
        assert n.until(lambda o: len(o.ack_list) >= seen + len(batch), 30, settle_s=0.2), (start, n.obs.ack_list[seen:])
        for (msg, prefix), ack in zip(batch, n.obs.ack_list[seen:]):
            assert ack["ok"] is False and ack["error"].startswith(prefix), (msg, ack)
            assert len(json.dumps(ack)) <= 400, ack  # bounded, however long the command was
        n.clock.wait(BURST)
    assert len(n.obs.ack_list) == len(hostile)
    assert n.flash("config.json") == config_before and n.flash("config.good.json") == good_before

    # A flood: a burst runs, the first command over the limit is answered "rate limited", the rest
    # of the flood nothing; a second later a token is back.
    def pings(tag, count):
        ids = ["%s-%d" % (tag, i) for i in range(count)]
        for cmd_id in ids:
            n.obs.client.publish(topic, json.dumps({"id": cmd_id, "cmd": "ping"}), qos=1)
        return ids

    ran = pings("burst", BURST)
    assert n.until(lambda o: all(i in o.acks for i in ran), 5, settle_s=0.5)
    assert all(n.obs.acks[i]["ok"] for i in ran)
    over = pings("over", BURST)
    assert n.obs.wait_for(lambda o: over[0] in o.acks, 10)
    assert n.obs.acks[over[0]]["ok"] is False and n.obs.acks[over[0]]["error"].startswith("rate limited: ")
    silent = pings("silent", BURST)
    n.obs.wait_for(lambda o: False, 1.5)  # held board time: no token comes back meanwhile
    assert not [i for i in over[1:] + silent if i in n.obs.acks]
    n.clock.wait(1)
    after = pings("after", 1)
    assert n.until(lambda o: after[0] in o.acks, 5, settle_s=0.5) and n.obs.acks[after[0]]["ok"] is True

    # The node counted it all, is online and still sampling; config untouched, contract kept.
    n.clock.wait(1)
    diag = n.command("diag")
    assert diag["ok"] is True
    # ok: the burst and the one after (diag's own answer is counted once it is sent).
    assert diag["result"]["cmds"] == {"ok": BURST + 1, "rejected": len(hostile), "limited": 2 * BURST,
                                      "dropped": 0}, diag["result"]["cmds"]
    records = len(n.obs.ups)
    assert n.until(lambda o: len(o.ups) > records, 60)
    assert n.obs.status_of(1)[-1]["state"] == "online" and n.obs.status_of(2) == []
    assert n.flash("config.json") == config_before
    assert n.obs.violations == [] and n.board.crashed is None
