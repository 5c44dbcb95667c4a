"""`floorwatch fleet status` and `fleet watch` as a user runs them, against a real mosquitto fed by
hand-made node messages (the contract's examples)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from floorwatch.broker import Mosquitto
from floorwatch.fleet.command import group
from floorwatch.security.access import BrokerAccess
from floorwatch.security.brokerdir import BrokerDir

pytestmark = pytest.mark.broker

ONLINE = {"state": "online", "fw": "0.1.0", "boot": 7, "reset": "power_on", "reason": None, "ip": "10.0.0.23",
          "health": "ok", "config_error": None}
OFFLINE = {"state": "offline", "fw": "0.1.0", "boot": 7}


def publish(broker, topic, body, retain=True):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, json.dumps(body), qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_status_is_a_snapshot_of_the_retained_state(fresh_broker):
    publish(fresh_broker, "floorwatch/plant-a/press-1/status", ONLINE)
    publish(fresh_broker, "floorwatch/plant-a/press-2/status", OFFLINE)
    url = "mqtt://%s:%d" % (fresh_broker.host, fresh_broker.port)
    done = CliRunner().invoke(group, ["status", "--broker", url, "--json"])
    assert done.exit_code == 0, done.output
    devices = {d["device_id"]: d for d in json.loads(done.output)}
    assert devices["press-1"]["state"] == "online" and devices["press-1"]["ip"] == "10.0.0.23"
    assert devices["press-2"]["online"] is False
    table = CliRunner(env={"COLUMNS": "200"}).invoke(group, ["status", "--broker", url, "--filter", "state=offline"])
    assert table.exit_code == 0 and "press-2" in table.output and "press-1" not in table.output


def test_watch_hands_each_alert_to_the_hook(fresh_broker, tmp_path):
    received = tmp_path / "alerts.jsonl"
    hook = "%s -c \"import sys; open(%r, 'a').write(sys.stdin.read().strip() + '\\n')\"" % (sys.executable, str(received))
    watcher = subprocess.Popen([str(Path(sys.executable).with_name("floorwatch")), "fleet", "watch", "--no-dashboard",
                                "--broker", "mqtt://%s:%d" % (fresh_broker.host, fresh_broker.port),
                                "--db", str(tmp_path / "fleet.db"), "--on-alert", hook],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # connected and subscribed
        publish(fresh_broker, "floorwatch/plant-a/press-1/status", ONLINE)
        publish(fresh_broker, "floorwatch/plant-a/press-1/status", OFFLINE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (received.exists() and received.read_text().strip()):
            time.sleep(0.1)
    finally:
        watcher.terminate()
        out, err = watcher.communicate(10)
    alerts = [json.loads(line) for line in received.read_text().splitlines()]
    assert [(a["device"], a["kind"]) for a in alerts] == [("press-1", "offline")], (out, err)
    assert "press-1 offline" in out


def test_status_logs_in_to_a_secured_broker_and_a_wrong_password_is_one_line(tmp_path):
    directory = BrokerDir.init(tmp_path / "broker", devices=[("plant-a", "press-1", None)])
    with Mosquitto(secure=directory) as broker:
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        BrokerAccess("localhost", broker.tls_port, tls=True, ca=str(directory.ca_path), user="press-1",
                     password=directory.device_secrets()["press-1"]).connect(device)
        device.publish("floorwatch/plant-a/press-1/status", json.dumps(ONLINE), qos=1, retain=True).wait_for_publish(5)
        device.disconnect()
        device.loop_stop()
        url = "mqtts://monitor@localhost:%d" % broker.tls_port
        login = ["--ca", str(directory.ca_path), "--password-file", str(directory.role_password_path("monitor"))]
        done = CliRunner().invoke(group, ["status", "--broker", url, *login, "--json"])
        assert done.exit_code == 0, done.output
        assert [d["device_id"] for d in json.loads(done.output)] == ["press-1"]

        wrong = tmp_path / "wrong.password"
        wrong.write_text("not-the-password-at-all\n")
        result = subprocess.run([str(Path(sys.executable).with_name("floorwatch")), "fleet", "status", "--broker", url,
                                 "--ca", str(directory.ca_path), "--password-file", str(wrong)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert result.stderr.splitlines() == ["floorwatch: error: broker mqtts://localhost:%d refused user 'monitor': "
                                              "Not authorized (wrong user or password?)" % broker.tls_port]
        anonymous = CliRunner().invoke(group, ["status", "--broker", "mqtt://127.0.0.1:%d" % broker.port])
        assert anonymous.exit_code != 0 and "refused an anonymous client" in str(anonymous.exception)
