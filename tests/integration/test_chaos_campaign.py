"""Chaos campaigns end to end: the real firmware under faults, a real mosquitto restarted, the ledger's books.

Short runs only (board minutes); the 100-board, 24-hour campaign is a bench run, not a test.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from floorwatch.sim import chaos

FLOORWATCH = str(Path(sys.executable).with_name("floorwatch"))


@pytest.mark.broker
def test_a_short_campaign_with_a_broker_restart_loses_no_record_silently(tmp_path):
    path = tmp_path / "report.json"
    report = chaos.run(5, 120, seed=3, site="chaos-a", speed=20, intensity=50, report_path=str(path),
                       workdir=tmp_path / "boards")
    totals = report["totals"]
    assert totals["produced"] > 0 and totals["delivered"] > 0
    assert totals["silently_lost"] == 0, report["silently_lost_examples"]
    assert totals["unexpected"] == 0, report["unexpected_examples"]
    assert report["goal_met"] is True
    assert report["faults"]["broker_restart"]["applied"] >= 1 and report["broker"]["restarts"] >= 1
    assert report["broker"]["dropped_warnings"] == 0 and report["ledger"]["sessions_lost"] == 0
    assert set(report["faults"]) == set(chaos.CLASSES)
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))


@pytest.mark.broker
def test_the_cli_runs_a_campaign_on_the_virtual_clock_and_writes_its_report(tmp_path):
    path = tmp_path / "report.json"
    result = subprocess.run([FLOORWATCH, "sim", "--scenario", "chaos", "--boards", "2", "--duration", "600",
                             "--speed", "max", "--seed", "5", "--site", "chaos-b", "--intensity", "20",
                             "--report", str(path)], capture_output=True, text=True, timeout=300)
    report = json.loads(path.read_text())
    assert result.returncode == (0 if report["goal_met"] else 1), result.stderr
    assert report["clock"]["kind"] == "virtual" and report["clock"]["speed"] == "max"
    assert report["boards"] == 2 and report["duration_s"] == 600
    assert report["totals"]["produced"] > 0
    assert report["totals"]["silently_lost"] == 0, report["silently_lost_examples"]
    assert "goal met: no record silently lost" in result.stdout


@pytest.mark.parametrize("args, words", [
    (["--scenario", "chaos"], "--duration"),
    (["--scenario", "chaos", "--duration", "60", "--faults", "wifi,tornado"], "--faults"),
    (["--scenario", "chaos", "--duration", "60", "--faults", ""], "--faults"),
    (["--scenario", "chaos", "--duration", "60", "--faults", "broker_restart", "--broker", "mqtt://127.0.0.1:1"],
     "--broker"),
    (["--scenario", "chaos", "--duration", "60", "--intensity", "0"], "--intensity"),
    (["--scenario", "chaos", "--duration", "60", "--speed", "maximum"], "--speed"),
    (["--scenario", "chaos", "--duration", "60", "--report", "/no/such/dir/r.json"], "--report"),
    (["--duration", "5", "--speed", "max"], "--speed max"),
    (["--duration", "5", "--report", "r.json"], "--report"),
])
def test_bad_chaos_arguments_give_one_line_and_no_traceback(args, words):
    result = subprocess.run([FLOORWATCH, "sim", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("floorwatch: error:"), result.stderr


def test_a_user_broker_that_cannot_be_reached_is_one_line():
    result = subprocess.run([FLOORWATCH, "sim", "--scenario", "chaos", "--duration", "60", "--broker",
                             "mqtt://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "floorwatch: error: cannot reach the broker at 127.0.0.1:1 ([Errno 111] Connection refused)"]
