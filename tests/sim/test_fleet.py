"""What a Fleet sets up before power-on: configs the node accepts, scenario machines, board clocks."""

import json

import pytest

from floorwatch import firmware_import
from floorwatch.sim.fleet import Fleet
from floorwatch.sim.physics import ONSET_S


@pytest.fixture(scope="module")
def node_config():
    return firmware_import.load("node.config")


def configs(fleet):
    return [json.loads((board.flash_dir / "config.json").read_text()) for board in fleet.boards]


def test_the_node_accepts_the_sim_config(tmp_path, node_config):
    fleet = Fleet(2, "127.0.0.1", 1883, workdir=tmp_path)
    for raw in configs(fleet):
        cfg = node_config.validate(raw)
        assert cfg["thresholds"]["bearing"]["alarm"] == 90
        assert cfg["thresholds"]["motor.kurt"]["warn"] == 2.0 and cfg["thresholds"]["motor.kurt"]["relative"]
        assert "motor.vel" in cfg["thresholds"]     # the node's own ISO 10816-3 defaults


def test_thresholds_add_and_replace_limits_on_every_board(tmp_path, node_config):
    near = {"motor.vel": {"warn": 0.9, "alarm": 4.5, "deadband": 0.05},
            "bearing": {"warn": 45, "alarm": 90, "early_s": 600}}
    fleet = Fleet(3, "127.0.0.1", 1883, workdir=tmp_path, thresholds=near)
    for raw in configs(fleet):
        assert raw["thresholds"]["motor.vel"] == near["motor.vel"]
        assert raw["thresholds"]["bearing"] == near["bearing"]
        assert raw["thresholds"]["winding"]["alarm"] == 120      # the others stay
        cfg = node_config.validate(raw)
        assert cfg["thresholds"]["motor.vel"]["warn"] == 0.9
        assert cfg["thresholds"]["bearing"]["early_s"] == 600


def test_scenario_onset_and_speed_reach_every_board(tmp_path):
    fleet = Fleet(2, "127.0.0.1", 1883, workdir=tmp_path, mode="bearing", speed=40, onset_s=120)
    assert [m.mode_changes for m in fleet.machines] == [[(120.0, "bearing")]] * 2
    assert all(board.clock.speed == 40 for board in fleet.boards)
    healthy = Fleet(1, "127.0.0.1", 1883, workdir=tmp_path / "h")
    assert healthy.machines[0].mode_changes == [] and healthy.boards[0].clock.speed == 1
    default = Fleet(1, "127.0.0.1", 1883, workdir=tmp_path / "d", mode="overheat")
    assert default.machines[0].mode_changes == [(ONSET_S, "overheat")]
    with pytest.raises(ValueError, match="unknown scenario"):
        Fleet(1, "127.0.0.1", 1883, workdir=tmp_path / "x", mode="wobbly")
