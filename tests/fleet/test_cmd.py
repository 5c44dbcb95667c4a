"""`floorwatch fleet cmd` against a real mosquitto and three simulated boards running the real firmware."""

import json
import time

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from floorwatch import contract
from floorwatch.broker import Mosquitto
from floorwatch.fleet import cmd
from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker

SITE = "plant-a"
SIMS = ["sim-001", "sim-002", "sim-003"]
# A device that has a status on the broker but nothing behind it: it never answers.
GHOST_STATUS = {"state": "online", "fw": "0.1.0", "boot": 3, "reset": "power_on", "reason": None,
                "ip": "10.0.0.99", "health": "ok", "config_error": None}


@pytest.fixture(scope="module")
def fleet_broker(tmp_path_factory):
    """A broker of this module's own, so '*' means exactly the devices these tests put there."""
    with Mosquitto() as broker:
        fleet = Fleet(3, broker.host, broker.port, site=SITE, speed=5,
                      workdir=tmp_path_factory.mktemp("cmd-fleet"))
        with Observer(broker.host, broker.port, site=SITE) as obs:
            fleet.start()
            try:
                assert obs.wait_for(lambda o: all(i in o.devices and o.devices[i].state == "online" for i in SIMS), 30)
                yield broker
            finally:
                fleet.close()


def retain(broker, topic, payload):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def ghost(fleet_broker):
    """ghost(site, device): a retained online status with no node behind it, removed after the test."""
    topics = []

    def make(site, device):
        topic = "floorwatch/%s/%s/status" % (site, device)
        retain(fleet_broker, topic, json.dumps(contract.validate("status", GHOST_STATUS)))
        topics.append(topic)

    yield make
    for topic in topics:  # an empty retained message deletes the retained status
        retain(fleet_broker, topic, b"")


@pytest.fixture
def run(fleet_broker):
    """run(*args): `floorwatch fleet cmd --broker <the module's broker> args...` -> click Result."""
    def invoke(*args):
        url = "mqtt://%s:%d" % (fleet_broker.host, fleet_broker.port)
        return CliRunner().invoke(cmd.command, ["--broker", url, *args])
    return invoke


@pytest.fixture
def spy(fleet_broker):
    """Every command published on the broker, as parsed JSON, in arrival order."""
    seen = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    client.connect(fleet_broker.host, fleet_broker.port)
    client.subscribe("floorwatch/+/+/cmd", qos=1)
    client.loop_start()
    time.sleep(0.2)  # the SUBACK
    yield seen
    client.disconnect()
    client.loop_stop()


def lines(result):
    return result.output.splitlines()


# --- against the fleet -----------------------------------------------------------------------------

def test_ping_one_device_by_id(fleet_broker):
    [entry] = cmd.send(fleet_broker.host, fleet_broker.port, "sim-002", "ping", timeout=10)
    assert (entry["device"], entry["site"], entry["state"], entry["outcome"]) == ("sim-002", SITE, "online", "ok")
    assert entry["ack"]["cmd"] == "ping" and entry["ack"]["result"]["boot"] >= 1


def test_ping_a_site_reaches_its_devices_only(run, ghost):
    ghost("plant-b", "elsewhere")
    for target in (SITE + "/", SITE + "/*"):
        result = run(target, "ping")
        assert result.exit_code == 0, result.output
        assert [line.split()[:2] for line in lines(result)] == [[SITE + "/" + d, "ok"] for d in SIMS]
        assert all('"boot":' in line for line in lines(result))


def test_ping_the_fleet_as_json_with_one_id_per_device(run):
    result = run("*", "ping", "--json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert [(e["site"], e["device"], e["outcome"]) for e in entries] == [(SITE, d, "ok") for d in SIMS]
    assert len({e["ack"]["id"] for e in entries}) == 3


def test_a_device_that_never_answers_times_out_and_fails_the_run(run, ghost, fleet_broker):
    ghost("plant-b", "ghost")
    started = time.monotonic()
    result = run("*", "ping", "--timeout", "1.5")
    assert time.monotonic() - started < 6
    assert result.exit_code == 1
    assert [line.split()[:2] for line in lines(result)[:4]] == (
        [[SITE + "/" + d, "ok"] for d in SIMS] + [["plant-b/ghost", "timeout"]])
    assert lines(result)[3] == "plant-b/ghost  timeout  no ack within 1.5 s"
    assert lines(result)[-1] == "Error: 1 of 4 devices failed: 0 errors, 1 timed out"
    [entry] = cmd.send(fleet_broker.host, fleet_broker.port, "ghost", "ping", timeout=0.5)
    assert entry["ack"] is None and entry["outcome"] == "timeout"


def test_an_ack_that_breaks_the_contract_is_an_error(run, ghost, fleet_broker):
    ghost("plant-b", "odd")
    node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # a node that answers ping with an empty result
    node.on_message = lambda c, u, m: c.publish("floorwatch/plant-b/odd/ack", json.dumps(
        {"id": json.loads(m.payload)["id"], "cmd": "ping", "ok": True, "result": {}}), qos=1)
    node.connect(fleet_broker.host, fleet_broker.port)
    node.subscribe("floorwatch/plant-b/odd/cmd", qos=1)
    node.loop_start()
    try:
        time.sleep(0.2)  # the SUBACK
        result = run("odd", "ping")
    finally:
        node.disconnect()
        node.loop_stop()
    assert result.exit_code == 1
    assert lines(result)[0] == "plant-b/odd  error    ack breaks the contract: result.up: missing (required)"


def test_an_error_ack_fails_the_run(run):
    result = run("sim-001", "resume")  # the node is not in safe mode: it says so
    assert result.exit_code == 1
    assert lines(result)[0].split()[:2] == [SITE + "/sim-001", "error"]
    assert "not in safe mode" in lines(result)[0]
    assert lines(result)[-1] == "Error: 1 of 1 device failed: 1 error, 0 timed out"


def test_key_value_arguments_reach_the_node(run):
    result = run("sim-003", "ack-alarm", "metric=bearing")
    assert result.exit_code == 0, result.output
    assert lines(result) == [SITE + '/sim-003  ok       {"acked":[]}']
    result = run("sim-003", "set", "intervals.temp_s=3", "--json")  # nested, and a number
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["ack"]["result"] == {"changed": {"intervals.temp_s": 3}, "restarting": False}


def test_a_target_that_matches_nothing_is_one_line(run):
    for target, words in (("sim-404", "no device matches 'sim-404' (3 with a status"),
                          ("plant-z/", "no device matches 'plant-z/'"),
                          ("Plant/x", "bad target 'Plant/x': expected DEVICE, SITE/DEVICE, SITE/, SITE/* or *")):
        result = run(target, "ping")
        assert result.exit_code == 1
        assert len(lines(result)) == 1 and lines(result)[0].startswith("Error: " + words), result.output


def test_a_device_id_on_two_sites_must_be_named_with_its_site(run, ghost):
    ghost("plant-b", "sim-001")
    result = run("sim-001", "ping")
    assert result.exit_code == 1
    assert lines(result) == ["Error: device 'sim-001' is on sites plant-a, plant-b: name one, as SITE/sim-001"]
    result = run(SITE + "/sim-001", "ping")
    assert result.exit_code == 0 and lines(result)[0].startswith(SITE + "/sim-001  ok ")


def test_invalid_commands_are_rejected_before_anything_is_sent(run, spy):
    for args, error in (
            (("frobnicate",), "unknown command 'frobnicate'; the node knows "),
            (("",), "unknown command ''; the node knows "),
            (("identify", "s=99999"), "identify: s: 99999 is out of range 0..3600"),
            (("set", "intervals.temp_s=0"), "set: intervals.temp_s: 0 is out of range 1..3600"),
            (("ping", "verbose=true"), "ping takes no argument 'verbose'; it takes none"),
            (("ack-alarm", "sensor=motor"), "ack-alarm takes no argument 'sensor'; it takes metric"),
            (("ping", "id=x"), "argument 'id' is not allowed: the command sets it"),
            (("identify", "s=abc"), 'identify: s must be an integer, not "abc"'),
            (("identify", "s=true"), "identify: s must be an integer, not true"),
            (("set", "intervals=5"), "set: intervals must be an object, not 5"),
            (("ack-alarm", "metric=5"),
             """ack-alarm: metric must be a string, not 5 (quote it for text: metric='"5"')"""),
            (("ack-alarm", "metric=" + "m" * 600), "the command is 671 bytes; a node reads at most 512")):
        result = run("*", *args)
        assert result.exit_code == 1, args
        assert len(lines(result)) == 1 and lines(result)[0].startswith("Error: " + error), result.output
    ok = run("sim-001", "ping")
    assert ok.exit_code == 0
    time.sleep(0.2)  # the spy had the ping before the node could answer it; be generous with the rest
    assert [c["cmd"] for c in spy] == ["ping"]


# --- without a broker --------------------------------------------------------------------------------

def test_a_bad_command_fails_before_the_broker_is_asked():
    with pytest.raises(cmd.CommandError, match="unknown command 'frobnicate'"):
        cmd.send("127.0.0.1", 1, "*", "frobnicate")  # port 1: nothing listens, and nothing is tried


def test_an_unreachable_broker_is_one_line():
    result = CliRunner().invoke(cmd.command, ["--broker", "mqtt://127.0.0.1:1", "*", "ping"])
    assert result.exit_code == 1
    assert lines(result) == ["Error: cannot reach the broker at 127.0.0.1:1: Connection refused"]


@pytest.mark.parametrize("pairs, args", [
    ([], {}),
    (["metric=bearing"], {"metric": "bearing"}),
    (["s=10"], {"s": 10}),
    (["intervals.temp_s=5", "thresholds.bearing.warn=75", "thresholds.bearing.alarm=92.5"],
     {"intervals": {"temp_s": 5}, "thresholds": {"bearing": {"warn": 75, "alarm": 92.5}}}),
    (["a=true", "b=false", "c=null", 'd="5"', "e=[1, 2]", "f=NaN", "g=", "h=x=y"],
     {"a": True, "b": False, "c": None, "d": "5", "e": [1, 2], "f": "NaN", "g": "", "h": "x=y"}),
])
def test_key_value_pairs_become_nested_json(pairs, args):
    assert cmd.parse_args(pairs) == args


@pytest.mark.parametrize("pairs, error", [
    (["metric"], "bad argument 'metric': expected KEY=VALUE"),
    (["=5"], "bad argument '=5'"),
    (["a..b=1"], "bad argument 'a..b=1'"),
    (["a=1", "a=2"], "argument a is given twice"),
    (["a.b=1", "a.b=2"], "argument a.b is given twice"),
    (["a=1", "a.b=2"], "argument a is given both a value and keys under it"),
    (["a.b=1", "a=2"], "argument a is given twice"),
])
def test_bad_key_value_pairs_are_one_line_errors(pairs, error):
    with pytest.raises(cmd.CommandError, match="^" + error.replace(".", r"\.")):
        cmd.parse_args(pairs)
