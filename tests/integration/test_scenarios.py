"""The node's judgements end to end: simulated machines with a known fault, the real firmware at
high simulated speed, a real mosquitto, and an independent observer that reads the alarms.

Times come from the node's own `up` (board time), so they do not depend on how fast the host is.
"""

import array
import json
import statistics

import pytest

from floorwatch import firmware_import
from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet
from floorwatch.sim.physics import Machine

pytestmark = pytest.mark.broker

SPEED = 500
ONSET_S = 60.0


@pytest.fixture
def run_scenario(broker, tmp_path):
    made = []

    def run(site, mode, count=1, thresholds=None, configure=None):
        fleet = Fleet(count, broker.host, broker.port, site=site, seed=2, workdir=tmp_path, mode=mode,
                      speed=SPEED, onset_s=ONSET_S, thresholds=thresholds)
        if configure:
            configure(fleet)
        made.append(fleet)
        obs = Observer(broker.host, broker.port, site=site).start()
        made.append(obs)
        fleet.start()
        return fleet, obs

    yield run
    for thing in reversed(made):
        (thing.close if isinstance(thing, Fleet) else thing.stop)()


def _events(obs, metric, device="sim-001"):
    view = obs.devices.get(device)
    return [e for e in view.alarm_events if e.get("metric") == metric] if view else []


def _raised(obs, metric, level, device="sim-001"):
    return [e for e in _events(obs, metric, device) if e["event"] == "raise" and e["level"] == level]


def test_overheating_is_warned_at_least_the_horizon_before_the_alarm_limit(run_scenario):
    fleet, obs = run_scenario("scen-heat", "overheat")  # bearing: alarm 90 C, early_s 600
    assert obs.wait_for(lambda o: _raised(o, "bearing", "alarm"), 90), _events(obs, "bearing")
    early = _raised(obs, "bearing.early", "warning")
    assert early, _events(obs, "bearing.early")
    alarm_up = _raised(obs, "bearing", "alarm")[0]["up"]
    lead_s = (alarm_up - early[0]["up"]) / 1000
    assert lead_s >= 600, lead_s
    assert early[0]["value"] <= 600 and early[0]["limit"] == 600
    assert obs.violations == []


def test_imbalance_grows_into_zone_c_and_raises_the_velocity_warning(run_scenario):
    fleet, obs = run_scenario("scen-imb", "imbalance")
    assert obs.wait_for(lambda o: _raised(o, "motor.vel", "warning"), 120), _events(obs, "motor.vel")
    warning = _raised(obs, "motor.vel", "warning")[0]
    assert warning["limit"] == 2.8 and warning["value"] >= 2.8  # ISO 10816-3 group 2 rigid: B/C
    assert obs.wait_for(lambda o: o.devices["sim-001"].vib["motor"]["zone"] == "C", 30)
    assert warning["up"] / 1000 > ONSET_S + 600  # it grew over simulated time, not at once
    assert not _raised(obs, "motor.vel", "alarm")  # the scenario never reaches zone D
    assert obs.violations == []


def test_bearing_fault_raises_kurtosis_while_rms_stays_steady(run_scenario):
    fleet, obs = run_scenario("scen-brg", "bearing")
    assert obs.wait_for(lambda o: o.devices.get("sim-001") and o.devices["sim-001"].status
                        and o.devices["sim-001"].status.get("baseline") == "ready", 60)
    rms_before = obs.devices["sim-001"].vib["motor"]["rms"]
    assert obs.wait_for(lambda o: _raised(o, "motor.kurt", "alarm"), 120), _events(obs, "motor.kurt")
    alarm = _raised(obs, "motor.kurt", "alarm")[0]
    assert alarm["value"] >= alarm["limit"] > 5  # 3 x a healthy baseline near 3
    feats = obs.devices["sim-001"].vib["motor"]
    assert feats["rel"]["kurt"] >= 2.0 and max(feats["cf"]) > 5
    for before, now in zip(rms_before, feats["rms"]):
        assert abs(now - before) <= 0.25 * before, (rms_before, feats["rms"])
    assert not _raised(obs, "motor.vel", "warning")  # a bearing defect, not an imbalance
    assert obs.violations == []


def _healthy_velocity(seed):
    """The median largest-axis velocity the node will see on this healthy machine (the firmware's
    own analysis of the machine model, as the ADXL345 model quantises it)."""
    vibration = firmware_import.load("node.vibration")
    machine = Machine.for_scenario(seed, "normal")
    analyzer = vibration.Analyzer(1024, 3200, 10, 1000)
    levels = []
    for t in range(60, 1260, 100):
        axes = machine.acceleration(t, 1024, 3200)
        buf = array.array("h", [max(-4096, min(4095, round(a[i] * 256))) for i in range(1024) for a in axes])
        analyzer.run(buf, 1 / 256)
        levels.append(max(analyzer.vel))
    return statistics.median(levels)


def test_a_healthy_machine_near_a_limit_does_not_chatter(run_scenario):
    """Two boards whose velocity limit sits at their own healthy level: with a deadband and delays
    the node raises and clears at most once per 10 minutes; without them it chatters."""
    minutes = 30

    def configure(fleet):
        for index, board in enumerate(fleet.boards):
            path = board.flash_dir / "config.json"
            config = json.loads(path.read_text())
            level = _healthy_velocity(fleet.machines[index].seed)
            limit = {"warn": round(level, 3), "alarm": 4.5}
            if index == 0:
                limit.update(deadband=round(0.15 * level, 3), on_delay_s=30, off_delay_s=30)
            config["thresholds"]["motor.vel"] = limit
            path.write_text(json.dumps(config))

    fleet, obs = run_scenario("scen-calm", "normal", count=2, configure=configure)
    assert obs.wait_for(lambda o: all(
        o.devices.get(d) and o.devices[d].records and o.devices[d].status
        and o.devices[d].status["state"] == "online" for d in ("sim-001", "sim-002")), 30)
    assert obs.wait_for(lambda o: fleet.board_time() >= minutes * 60, 120)
    steady = [e["event"] for e in _events(obs, "motor.vel", "sim-001") if e["event"] in ("raise", "clear")]
    bare = [e["event"] for e in _events(obs, "motor.vel", "sim-002") if e["event"] in ("raise", "clear")]
    assert steady.count("raise") <= minutes // 10 and steady.count("clear") <= minutes // 10, steady
    assert len(bare) > 2 * (minutes // 10), bare  # the same noise without deadband and delays
    assert obs.violations == []
