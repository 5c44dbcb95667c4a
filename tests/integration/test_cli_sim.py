"""`floorwatch sim` as a user runs it: a subprocess, a real broker, an independent observer."""

import subprocess
import sys
from pathlib import Path

import pytest

from floorwatch.observer import Observer
from floorwatch.sim.physics import Machine

FLOORWATCH = str(Path(sys.executable).with_name("floorwatch"))


def floorwatch(*args, timeout=60):
    return subprocess.run([FLOORWATCH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.broker
def test_five_boards_online_in_order_then_offline(broker):
    ids = ["sim-%03d" % i for i in range(1, 6)]
    with Observer(broker.host, broker.port, site="clitest") as obs:
        proc = subprocess.Popen([FLOORWATCH, "sim", "--boards", "5", "--broker", broker.url, "--duration", "14",
                                 "--site", "clitest", "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert obs.wait_for(lambda o: all(i in o.devices and o.devices[i].state == "online" for i in ids), 20)
            with Observer(broker.host, broker.port, site="clitest") as late:  # sees only what is retained
                assert late.wait_for(lambda o: all(i in o.devices and o.devices[i].state == "online" for i in ids), 5)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert obs.wait_for(lambda o: all(o.devices[i].state == "offline" for i in ids), 10)
        for view in obs.snapshot():
            seqs = [seq for boot, seq in view.records]
            assert len(seqs) >= 2 and seqs == list(range(len(seqs))), (view.device_id, view.records)
        assert obs.violations == []
    assert "5 of 5 boards published telemetry" in out


@pytest.mark.broker
def test_overheat_scenario_at_speed_raises_the_bearing_alarms_when_the_physics_says(broker):
    """Half an hour of simulated overheating in seconds; the alarms come at the right board times."""
    onset, seed = 60.0, 3
    truth = Machine.for_scenario(seed * 100003 + 1, "overheat", onset_s=onset)   # board sim-001's machine
    due = {}
    for limit, level in ((80, "warning"), (90, "alarm")):
        due[level] = next(t for t in range(0, 7200) if truth.temperature("bearing", t) >= limit)
    with Observer(broker.host, broker.port, site="clisc") as obs:
        result = floorwatch("sim", "--boards", "1", "--broker", broker.url, "--site", "clisc", "--seed", str(seed),
                            "--scenario", "overheat", "--onset", str(onset), "--speed", "500",
                            "--duration", str(due["alarm"] + 120), timeout=120)
        assert result.returncode == 0, result.stderr
        assert obs.wait_for(lambda o: o.devices.get("sim-001") and o.devices["sim-001"].state == "offline", 10)
        raised = {e["level"]: e["up"] / 1000 for e in obs.devices["sim-001"].alarm_events
                  if e.get("metric") == "bearing" and e.get("event") == "raise"}
        assert obs.violations == []
    # The node reads every 5 s of board time (DS18B20: 1/16 C steps): each raise comes within a
    # reading or two of the moment the machine crossed the limit.
    assert set(raised) == {"warning", "alarm"}, raised
    for level, t in due.items():
        assert abs(raised[level] - t) <= 10, (level, raised, due)
    assert "1 of 1 boards published telemetry" in result.stdout


@pytest.mark.parametrize("args, words", [
    (["sim", "--boards", "0"], "--boards"),
    (["sim", "--boards", "many"], "--boards"),
    (["sim", "--broker", "http://example"], "--broker"),
    (["sim", "--duration", "-3"], "--duration"),
    (["sim", "--site", "Not A Site"], "--site"),
    (["sim", "--scenario", "wobbly"], "--scenario"),
    (["sim", "--speed", "0.5"], "--speed"),
    (["sim", "--speed", "1001"], "--speed"),
    (["sim", "--speed", "fast"], "--speed"),
    (["sim", "--onset", "-1"], "--onset"),
    (["simulate"], "No such command"),
])
def test_bad_arguments_give_one_line_and_no_traceback(args, words):
    result = floorwatch(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("floorwatch: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_one_line():
    result = floorwatch("sim", "--broker", "mqtt://127.0.0.1:1", "--duration", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "floorwatch: error: cannot reach the broker at 127.0.0.1:1 ([Errno 111] Connection refused)"]
