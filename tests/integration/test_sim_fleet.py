"""The real firmware on simulated boards, publishing to a real mosquitto, seen by an observer."""

import json
import time

import pytest

from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker

FAST = {"temp_s": 1, "vib_s": 2, "diag_s": 10}


def contiguous(records):
    """True when the (boot, seq) pairs of each boot run 0, 1, 2, ... in order with no gap."""
    expected = {}
    for boot, seq in records:
        if seq != expected.get(boot, 0):
            return False
        expected[boot] = seq + 1
    return True


def heat_bearing(board, celsius):
    """Put the board's bearing probe under the test's control: returns {"c": its temperature}."""
    config = json.loads((board.flash_dir / "config.json").read_text())
    probe = next(s for s in config["sensors"] if s["name"] == "bearing")
    heat = {"c": celsius}
    board.onewire_bus(probe["pin"]).device(bytes.fromhex(probe["rom"])).temperature = lambda t: heat["c"]
    return heat


@pytest.fixture
def fleet_of(broker, tmp_path):
    made = []

    def make(count, site, **kwargs):
        fleet = Fleet(count, broker.host, broker.port, site=site, workdir=tmp_path, intervals=FAST, **kwargs)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


def test_boards_come_online_publish_in_order_and_go_offline(broker, fleet_of):
    fleet = fleet_of(3, "itest-a")
    ids = [b.device_id for b in fleet.boards]
    with Observer(broker.host, broker.port, site="itest-a") as obs:
        fleet.start()
        assert obs.wait_for(lambda o: all(i in o.devices and o.devices[i].state == "online" for i in ids), 20)
        assert obs.wait_for(lambda o: all(len(o.devices[i].records) >= 4 for i in ids), 30)
        fleet.stop()
        assert obs.wait_for(lambda o: all(o.devices[i].state == "offline" for i in ids), 20)
        for view in obs.snapshot():
            assert contiguous(view.records), view.records
            assert view.temps and view.vib, view.device_id
            assert view.health == "ok"
        assert obs.violations == []


def test_ping_and_diag_are_acknowledged_with_their_ids(broker, fleet_of):
    fleet = fleet_of(1, "itest-b")
    with Observer(broker.host, broker.port, site="itest-b") as obs:
        fleet.start()
        assert obs.wait_for(lambda o: "sim-001" in o.devices and o.devices["sim-001"].state == "online", 20)
        ping = obs.publish_command("itest-b", "sim-001", "ping")
        diag = obs.publish_command("itest-b", "sim-001", "diag")
        bogus = obs.publish_command("itest-b", "sim-001", "frobnicate")
        assert obs.wait_for(lambda o: {ping, diag, bogus} <= set(o.acks), 15)
        assert obs.acks[ping]["ok"] and obs.acks[ping]["result"]["boot"] >= 1
        assert obs.acks[diag]["ok"] and "bearing" in obs.acks[diag]["result"]["sensors"]
        assert not obs.acks[bogus]["ok"] and "frobnicate" in obs.acks[bogus]["error"]
        assert obs.violations == []


def test_unplugged_probe_becomes_a_diagnostic_and_recovers(broker, fleet_of):
    fleet = fleet_of(1, "itest-c")
    board = fleet.boards[0]
    pin, bus = next(iter(board.onewire_buses.items()))
    rom = bus.devices[0].rom
    with Observer(broker.host, broker.port, site="itest-c") as obs:
        fleet.start()
        assert obs.wait_for(lambda o: "sim-001" in o.devices and len(o.devices["sim-001"].records) >= 2, 20)
        board.unplug(pin, rom)
        seen = len(obs.devices["sim-001"].records)
        assert obs.wait_for(lambda o: len(o.devices["sim-001"].records) >= seen + 2, 20)
        cmd = obs.publish_command("itest-c", "sim-001", "diag")
        assert obs.wait_for(lambda o: cmd in o.acks, 15)
        diag = obs.acks[cmd]["result"]
        sick = [name for name, s in diag["sensors"].items() if not s["present"]]
        assert len(sick) == 1 and diag["health"] == "degraded", diag
        board.replug(pin, rom)
        seen = len(obs.devices["sim-001"].records)
        assert obs.wait_for(lambda o: len(o.devices["sim-001"].records) >= seen + 3, 20)
        cmd = obs.publish_command("itest-c", "sim-001", "diag")
        assert obs.wait_for(lambda o: cmd in o.acks, 15)
        assert obs.acks[cmd]["result"]["health"] == "ok", obs.acks[cmd]["result"]


def test_wifi_outage_loses_no_record(broker, fleet_of):
    fleet = fleet_of(1, "itest-d")
    board = fleet.boards[0]
    with Observer(broker.host, broker.port, site="itest-d") as obs:
        fleet.start()
        assert obs.wait_for(lambda o: "sim-001" in o.devices and len(o.devices["sim-001"].records) >= 2, 20)
        board.wifi_down()
        time.sleep(4)
        board.wifi_up()
        before = len(obs.devices["sim-001"].records)
        assert obs.wait_for(lambda o: len(o.devices["sim-001"].records) >= before + 4, 30)
        view = obs.devices["sim-001"]
        assert contiguous(sorted(set(view.records))), view.records
        assert view.state == "online"


def test_bad_config_is_reported_in_status_and_the_node_stays_reachable(broker, fleet_of):
    fleet = fleet_of(1, "itest-e")
    board = fleet.boards[0]
    path = board.flash_dir / "config.json"
    config = json.loads(path.read_text())
    config["sensors"][0]["pin"] = "four"
    path.write_text(json.dumps(config))
    with Observer(broker.host, broker.port, site="itest-e") as obs:
        fleet.start()
        assert obs.wait_for(lambda o: "sim-001" in o.devices and o.devices["sim-001"].status, 20)
        status = obs.devices["sim-001"].status
        assert status["state"] == "online"
        assert status["config_error"].startswith("sensors[0].pin:") and "four" in status["config_error"]
        assert status["health"] == "fault"
        ping = obs.publish_command("itest-e", "sim-001", "ping")
        assert obs.wait_for(lambda o: ping in o.acks, 15)
        assert obs.devices["sim-001"].records == []


def test_node_reconnects_after_a_broker_restart(fresh_broker, tmp_path):
    with Fleet(1, fresh_broker.host, fresh_broker.port, site="itest-f", workdir=tmp_path, intervals=FAST) as fleet:
        with Observer(fresh_broker.host, fresh_broker.port, site="itest-f") as obs:
            assert obs.wait_for(lambda o: "sim-001" in o.devices and len(o.devices["sim-001"].records) >= 2, 20)
        fresh_broker.restart()  # no persistence: the retained status is gone with the old broker
        with Observer(fresh_broker.host, fresh_broker.port, site="itest-f") as obs:
            assert obs.wait_for(lambda o: "sim-001" in o.devices and o.devices["sim-001"].state == "online", 30)
            assert obs.wait_for(lambda o: len(o.devices["sim-001"].records) >= 2, 20)
            cmd = obs.publish_command("itest-f", "sim-001", "diag")
            assert obs.wait_for(lambda o: cmd in o.acks, 15)
            assert obs.acks[cmd]["result"]["mqtt_reconnects"] >= 1
        assert fleet.boards[0].crashed is None


def test_limit_crossings_raise_and_clear_alarms_once_each(broker, fleet_of):
    fleet = fleet_of(1, "itest-g")
    heat = heat_bearing(fleet.boards[0], 60.0)
    with Observer(broker.host, broker.port, site="itest-g") as obs:
        fleet.start()  # limits: warn 80, alarm 90, deadband 2
        assert obs.wait_for(lambda o: "sim-001" in o.devices and o.devices["sim-001"].temps.get("bearing") == 60.0, 20)
        heat["c"] = 91.0
        assert obs.wait_for(lambda o: o.devices["sim-001"].alarms.get("bearing") == "alarm", 15)
        heat["c"] = 89.0  # inside the deadband: stays in alarm
        seen = len(obs.devices["sim-001"].records)
        assert obs.wait_for(lambda o: len(o.devices["sim-001"].records) >= seen + 3, 15)
        assert obs.devices["sim-001"].alarms.get("bearing") == "alarm"
        heat["c"] = 70.0
        assert obs.wait_for(lambda o: "bearing" not in o.devices["sim-001"].alarms, 15)
        events = [(e["event"], e["level"]) for e in obs.devices["sim-001"].alarm_events if e.get("metric") == "bearing"]
        assert events == [("raise", "alarm"), ("clear", "ok")]
        assert obs.violations == []


def test_latched_alarm_is_acknowledged_by_command_and_its_state_is_retained(broker, fleet_of):
    fleet = fleet_of(1, "itest-h", thresholds={"bearing": {"warn": 80, "alarm": 90, "deadband": 2, "latch": True}})
    heat = heat_bearing(fleet.boards[0], 95.0)
    with Observer(broker.host, broker.port, site="itest-h") as obs:
        fleet.start()
        assert obs.wait_for(lambda o: "sim-001" in o.devices and o.devices["sim-001"].alarms.get("bearing") == "alarm", 20)
        heat["c"] = 60.0  # the condition goes, but the alarm is latched
        seen = len(obs.devices["sim-001"].records)
        assert obs.wait_for(lambda o: len(o.devices["sim-001"].records) >= seen + 3, 15)
        assert obs.devices["sim-001"].alarms.get("bearing") == "alarm"
        unknown = obs.publish_command("itest-h", "sim-001", "ack-alarm", metric="pump")
        ack = obs.publish_command("itest-h", "sim-001", "ack-alarm", metric="bearing")
        assert obs.wait_for(lambda o: {unknown, ack} <= set(o.acks), 15)
        assert obs.acks[unknown]["ok"] is False and "pump" in obs.acks[unknown]["error"]
        assert obs.acks[ack]["result"] == {"acked": ["bearing"]}
        assert obs.wait_for(lambda o: "bearing" not in o.devices["sim-001"].alarms, 15)
        events = [e["event"] for e in obs.devices["sim-001"].alarm_events if e.get("metric") == "bearing"]
        assert events == ["raise", "ack", "clear"]
        rebase = obs.publish_command("itest-h", "sim-001", "rebaseline", sensor="motor")
        assert obs.wait_for(lambda o: rebase in o.acks, 15)
        assert obs.acks[rebase]["result"]["metrics"] == ["motor.cf", "motor.kurt", "motor.pk", "motor.rms", "motor.vel"]
        assert obs.violations == []
    with Observer(broker.host, broker.port, site="itest-h") as late:  # joins after it all happened
        assert late.wait_for(lambda o: "sim-001" in o.devices and o.devices["sim-001"].alarm_events, 10)
        retained = late.devices["sim-001"].alarm_events[-1]
        assert retained["active"] == {} and retained["metric"] == "bearing" and retained["event"] == "clear"
