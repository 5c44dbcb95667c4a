"""`floorwatch provision` of a tray of blank virtual boards: flashed, deployed, registered, online.

The boards are real virtual boards (the ROM loader for esptool, MicroPython for the REPL, the node
in the simulator) and the broker a real mosquitto; nothing is mocked.
"""

import json
import stat

import pytest
from click.testing import CliRunner

from floorwatch import esp_image, provision
from floorwatch.observer import Observer
from floorwatch.vboard import VBoard

pytestmark = pytest.mark.broker


@pytest.fixture
def tray(tmp_path):
    boards = [VBoard.start("esp32-devkitc", state_dir=tmp_path / ("vb%d" % n), seed=n + 1) for n in range(4)]
    yield boards
    for board in boards:
        board.close()


@pytest.fixture
def fleet(tmp_path, fresh_broker):
    image = tmp_path / "ESP32_GENERIC-v1.24.1.bin"
    image.write_bytes(esp_image.build_micropython_image("esp32", size=400_000))
    path = tmp_path / "plant.toml"
    path.write_text('''
[fleet]
site = "plant-t"
board = "esp32-devkitc"
id_prefix = "press"
firmware = "%s"

[wifi]
ssid = "floorwatch-sim"
password = "sim-password"

[broker]
host = "127.0.0.1"
port = %d

[config.intervals]
temp_s = 5
vib_s = 10
diag_s = 30
''' % (image.name, fresh_broker.port))
    return path


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


@pytest.mark.parametrize("text, message", [
    ("[fleet]\nsite = 'x'\n", "the [wifi] table is missing"),
    ("[fleet]\nsite = 'x'\nid_prefix = 'p'\n[wifi]\nssid = 's'\n[broker]\nport = 1\n", "[broker] host: missing"),
    ("[fleet\n", "not valid TOML"),
    ("[fleet]\nsite = 'x'\nid_prefix = 'p'\nboard = 'nope'\n[wifi]\nssid = 's'\n[broker]\nhost = 'h'\n", "unknown board 'nope'"),
    ("[fleet]\nsite = 'Bad Site'\nid_prefix = 'p'\n[wifi]\nssid = 's'\n[broker]\nhost = 'h'\n", "site"),
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
