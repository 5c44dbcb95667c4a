"""The hardware-in-the-loop suite: the same tests on a real board and on a virtual one.

    pytest tests/hil --board /dev/ttyUSB0 --hil-broker mqtt://192.168.1.20:1883 --hil-wifi SSID:PASS
    pytest tests/hil --board virtual          # what `make test` runs

See docs/hil.md for the wiring a real board needs. The fixtures come from floorwatch.hil.plugin.
Tests run in file order; the reset test comes last because it restarts the node.
"""

import json
import time

from floorwatch import contract, deploy
from floorwatch.build import build
from floorwatch.hil.plugin import wait_status


def test_deploy_boots_the_firmware_it_copied(hil_board, hil_node):
    built = build(hil_board.board_def["mpy_arch"])
    assert hil_node.deployed["version"] == built.version
    on_board = deploy.installed(hil_board.port)
    assert on_board["app"] == built.app
    assert on_board["version"] == built.version
    assert on_board["config_sha256"] == deploy.config_sha256(hil_node.config)


def test_status_online_with_the_deployed_version(hil_node, hil_observer):
    status = wait_status(hil_observer, hil_node.device_id, lambda s: s["state"] == "online", "online")
    assert status["fw"] == hil_node.deployed["version"]
    assert status["config_error"] is None
    assert status["boot"] >= 1


def test_telemetry_is_valid_against_the_schemas(hil_node, hil_observer):
    view = hil_observer.wait_for(lambda obs: (v := obs.devices.get(hil_node.device_id)) and len(v.records) >= 2 and v,
                                 timeout=60)
    assert view, "no telemetry from %s within 60 s" % hil_node.device_id
    assert [v for v in hil_observer.violations if hil_node.device_id in v[0]] == []
    assert view.temps, "telemetry carried no temperature"


def _command(observer, node, cmd):
    cmd_id = observer.publish_command(node.site, node.device_id, cmd)
    ack = observer.wait_for(lambda obs: obs.acks.get(cmd_id), timeout=30)
    assert ack, "no ack to %s from %s within 30 s" % (cmd, node.device_id)
    contract.validate("ack", json.dumps(ack))
    return ack


def test_ping_is_acknowledged(hil_node, hil_observer):
    ack = _command(hil_observer, hil_node, "ping")
    assert ack["ok"] is True
    assert ack["result"]["fw"] == hil_node.deployed["version"]


def test_diag_reports_every_configured_sensor_present(hil_node, hil_observer):
    ack = _command(hil_observer, hil_node, "diag")
    assert ack["ok"] is True
    reported = ack["result"]["sensors"]
    for sensor in hil_node.config["sensors"]:
        assert sensor["name"] in reported, "diag does not report %s" % sensor["name"]
        assert reported[sensor["name"]]["present"] is True, "%s: %r" % (sensor["name"], reported[sensor["name"]])
        assert reported[sensor["name"]]["type"] == sensor["type"]


def test_reset_reconnects_with_the_boot_counter_increased(hil_board, hil_node, hil_observer):
    before = wait_status(hil_observer, hil_node.device_id, lambda s: s["state"] == "online", "online")
    since = time.time()
    deploy.reset(hil_board.port)
    after = wait_status(hil_observer, hil_node.device_id,
                        lambda s: s["state"] == "online" and s["boot"] > before["boot"]
                        and hil_observer.devices[hil_node.device_id].status_at >= since,
                        "online again after the reset")
    assert after["boot"] == before["boot"] + 1
    assert after["reset"] in ("hard", "soft"), after["reset"]  # machine.reset(): ESP32 ports differ on which
