"""`floorwatch provision` of a tray of blank virtual boards: flashed, deployed, registered, online.

The boards are real virtual boards (the ROM loader for esptool, MicroPython for the REPL, the node
in the simulator) and the broker a real mosquitto; nothing is mocked.
"""

import json
import stat

import pytest
from click.testing import CliRunner

from floorwatch import esp_image, provision
from floorwatch.broker import Mosquitto
from floorwatch.observer import Observer
from floorwatch.security.access import AccessError, BrokerAccess
from floorwatch.security.brokerdir import BrokerDir
from floorwatch.vboard import VBoard

pytestmark = pytest.mark.broker


@pytest.fixture
def tray(tmp_path):
    boards = [VBoard.start("esp32-devkitc", state_dir=tmp_path / ("vb%d" % n), seed=n + 1) for n in range(4)]
    yield boards
    for board in boards:
        board.close()


FLEET_FILE = '''
[fleet]
site = "plant-t"
board = "esp32-devkitc"
id_prefix = "press"
firmware = "%s"

[wifi]
ssid = "floorwatch-sim"
password = "sim-password"

[broker]
%s

[config.intervals]
temp_s = 5
vib_s = 10
diag_s = 30
'''


def fleet_file(tmp_path, broker_table):
    image = tmp_path / "ESP32_GENERIC-v1.24.1.bin"
    image.write_bytes(esp_image.build_micropython_image("esp32", size=400_000))
    path = tmp_path / "plant.toml"
    path.write_text(FLEET_FILE % (image.name, broker_table))
    return path


@pytest.fixture
def fleet(tmp_path, fresh_broker):
    return fleet_file(tmp_path, 'host = "127.0.0.1"\nport = %d' % fresh_broker.port)


@pytest.fixture
def secured(tmp_path):
    """A broker directory with no device in it yet, and its mosquitto running (TLS, logins, ACL)."""
    directory = BrokerDir.init(tmp_path / "broker")
    with Mosquitto(secure=directory) as broker:
        yield directory, broker


def test_four_blank_boards_end_online_and_a_rerun_changes_nothing(tray, fleet, fresh_broker):
    spec = provision.load_fleet(fleet)
    urls = [board.url for board in tray]
    first = provision.provision(spec, urls)

    assert [r["result"] for r in first] == ["ok"] * 4, [r["error"] for r in first]
    assert all(r["steps"] == ["flash", "deploy"] for r in first)
    macs = {board.mac.hex(":") for board in tray}
    assert {r["mac"] for r in first} == macs
    ids = {r["device_id"] for r in first}
    assert ids == {"press-" + mac.replace(":", "")[-6:] for mac in macs}
    assert all(r["chip"] == "esp32" and r["micropython"] == "1.24.1" and r["app"] for r in first)

    inventory = [json.loads(line) for line in (fleet.parent / "inventory.jsonl").read_text().splitlines()]
    assert sorted(r["port"] for r in inventory) == sorted(urls)  # each written as its board finished
    secrets = fleet.parent / "fleet-secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    passwords = {entry["password"] for entry in json.loads(secrets.read_text()).values()}
    assert len(passwords) == 4  # every board its own credentials

    with Observer(fresh_broker.host, fresh_broker.port, site="plant-t") as observer:
        online = observer.wait_for(lambda o: sorted(d.device_id for d in o.devices.values()
                                                    if d.status and d.status["state"] == "online"), 10)
        assert set(online) == ids
    boots = [board.board.boots for board in tray]
    identities = json.loads(secrets.read_text())

    again = CliRunner().invoke(provision.command, ["--fleet", str(fleet), "--ports", ",".join(urls)])
    assert again.exit_code == 0, again.output
    rerun = [json.loads(line) for line in (fleet.parent / "inventory.jsonl").read_text().splitlines()][4:]
    assert sorted(r["port"] for r in rerun) == sorted(urls)
    assert [r["result"] for r in rerun] == ["unchanged"] * 4
    assert all(r["steps"] == [] for r in rerun)
    assert {r["device_id"] for r in rerun} == ids
    assert [board.board.boots for board in tray] == boots  # not one node restarted
    assert json.loads(secrets.read_text()) == identities  # same ids, same credentials


def test_a_board_that_fails_does_not_stop_the_others(tray, fleet):
    spec = provision.load_fleet(fleet)
    dead = "socket://127.0.0.1:9"  # nothing listens: the port cannot be opened
    records = provision.provision(spec, [tray[0].url, tray[1].url, dead])
    assert records[0]["result"] == "ok", records[0]["error"]
    assert records[1]["result"] == "ok", records[1]["error"]
    assert records[2]["result"] == "failed"
    assert "127.0.0.1:9" in records[2]["error"] and "\n" not in records[2]["error"]


def test_a_tray_on_a_secured_broker_keeps_every_password_out_of_sight(tray, secured, tmp_path):
    """Provision registers each board in the broker directory; the nodes log in over TLS with their
    own passwords; no password shows in the inventory, the output or the broker's log."""
    directory, broker = secured
    path = fleet_file(tmp_path, 'host = "localhost"\nport = %d\ntls = true\nca = "broker/ca.crt"\ndir = "broker"'
                      % broker.tls_port)
    urls = [board.url for board in tray]
    first = CliRunner().invoke(provision.command, ["--fleet", str(path), "--ports", ",".join(urls)])
    assert first.exit_code == 0, first.output

    identities = json.loads((tmp_path / "fleet-secrets.json").read_text())
    ids = {entry["device_id"] for entry in identities.values()}
    assert len(ids) == 4 and directory.devices() == {device: "plant-t" for device in ids}
    monitor = BrokerAccess("localhost", broker.tls_port, tls=True, ca=str(directory.ca_path), user="monitor",
                           password=directory.role_password("monitor"))
    with Observer(monitor, site="plant-t") as observer:
        online = observer.wait_for(lambda o: {d.device_id for d in o.devices.values()
                                              if d.status and d.status["state"] == "online"}, 10)
        assert online == ids
    again = CliRunner().invoke(provision.command, ["--fleet", str(path), "--ports", ",".join(urls)])
    assert again.exit_code == 0, again.output
    records = [json.loads(line) for line in (tmp_path / "inventory.jsonl").read_text().splitlines()]
    assert [r["result"] for r in records] == ["ok"] * 4 + ["unchanged"] * 4

    public = {"inventory": (tmp_path / "inventory.jsonl").read_text(), "first run's output": first.output,
              "rerun's output": again.output, "broker log": broker.log_text(),
              "registry": (directory.path / "devices.json").read_text()}
    assert "press-" in public["broker log"]  # the nodes' logins are there, by user name
    for entry in identities.values():
        for name, text in public.items():
            assert entry["password"] not in text, "%s's password is in the %s" % (entry["device_id"], name)


def test_a_broker_that_cannot_be_used_is_one_line_before_any_board_is_touched(tmp_path, secured):
    directory, broker = secured
    unreachable = provision.load_fleet(fleet_file(tmp_path, 'host = "127.0.0.1"\nport = 1'))
    with pytest.raises(provision.ProvisionError) as error:
        provision.provision(unreachable, ["socket://127.0.0.1:9"])
    assert str(error.value) == "cannot reach the broker at 127.0.0.1:1 (Connection refused)"
    (tmp_path / "wrong.password").write_text("not-the-monitor-password\n")
    refused = provision.load_fleet(fleet_file(tmp_path, 'host = "localhost"\nport = %d\ntls = true\nca = "broker/ca.crt"\n'
                                              'user = "monitor"\npassword_file = "wrong.password"' % broker.tls_port))
    with pytest.raises(AccessError) as error:
        provision.provision(refused, ["socket://127.0.0.1:9"])
    assert str(error.value) == ("broker mqtts://localhost:%d refused user 'monitor': Not authorized "
                                "(wrong user or password?)" % broker.tls_port)
    assert not (tmp_path / "inventory.jsonl").exists()


def test_a_config_the_node_would_refuse_is_not_deployed(fleet):
    spec = provision.load_fleet(fleet)
    with pytest.raises(provision.ProvisionError) as error:
        provision._check_credentials(provision.node_config(spec, "press-000001", "short-pw"))
    assert str(error.value) == ("config of press-000001: broker.password is shorter than 12 characters; "
                                "provision this node with its own password")


BASE = "[fleet]\nsite = 'x'\nid_prefix = 'p'\n[wifi]\nssid = 's'\n[broker]\nhost = 'h'\n"


@pytest.mark.parametrize("text, message", [
    ("[fleet]\nsite = 'x'\n", "the [wifi] table is missing"),
    ("[fleet]\nsite = 'x'\nid_prefix = 'p'\n[wifi]\nssid = 's'\n[broker]\nport = 1\n", "[broker] host: missing"),
    ("[fleet\n", "not valid TOML"),
    ("[fleet]\nsite = 'x'\nid_prefix = 'p'\nboard = 'nope'\n[wifi]\nssid = 's'\n[broker]\nhost = 'h'\n", "unknown board 'nope'"),
    ("[fleet]\nsite = 'Bad Site'\nid_prefix = 'p'\n[wifi]\nssid = 's'\n[broker]\nhost = 'h'\n", "site"),
    (BASE + "tls = true\n", "[broker] tls = true needs ca = the CA certificate (PEM) file"),
    (BASE + "ca = 'ca.crt'\n", "[broker] ca is for TLS: add tls = true"),
    (BASE + "tls = true\nca = 'missing.crt'\n", "[broker] ca: cannot read"),
    (BASE + "tls = 'yes'\n", "[broker] tls: must be true or false"),
    (BASE + "password_file = 'p'\n", "[broker] password_file needs user"),
])
def test_a_bad_fleet_file_is_one_line_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(provision.ProvisionError) as error:
        provision.load_fleet(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_history_finds_a_board_by_its_usb_identity_when_its_tty_moves(tmp_path):
    inventory = provision.Inventory(tmp_path / "inventory.jsonl")
    inventory.append({"port": "/dev/ttyUSB0", "usb": "A1", "mac": "aa:00:00:00:00:01", "result": "ok"})
    inventory.append({"port": "/dev/ttyUSB1", "usb": "1-1.3", "mac": "aa:00:00:00:00:02", "result": "ok"})
    inventory.append({"port": "/dev/ttyUSB1", "usb": "1-1.3", "mac": "aa:00:00:00:00:09", "result": "failed"})
    listed = [  # after a replug: ttys renumbered; two cheap bridges share serial number 0001
        {"device": "/dev/ttyUSB3", "serial_number": "A1", "location": "1-1.1"},
        {"device": "/dev/ttyUSB4", "serial_number": "0001", "location": "1-1.3"},
        {"device": "/dev/ttyUSB5", "serial_number": "0001", "location": "1-1.4"},
    ]
    history = provision.History(inventory, listed)
    assert history.last("/dev/ttyUSB3")["mac"] == "aa:00:00:00:00:01"
    assert history.last("/dev/ttyUSB4")["mac"] == "aa:00:00:00:00:02"  # by location; the failed run is not known good
    assert history.last("/dev/ttyUSB5") is None
    assert history.usb_of("/dev/ttyUSB4") == "1-1.3"
