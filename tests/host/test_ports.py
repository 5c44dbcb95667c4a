"""floorwatch.ports: listing, filtering and resolving serial ports.

No USB board can be plugged in here, so pyserial's comports() is replaced by a fixed set of
ListPortInfo records such as Linux and macOS report them; everything after that is the real code.
"""

import json

import pytest
from click.testing import CliRunner
from serial.tools.list_ports_common import ListPortInfo

from floorwatch import ports


def info(device, vid=None, pid=None, serial=None, location=None, description="n/a"):
    port = ListPortInfo(device, skip_link_detection=True)
    port.vid, port.pid, port.serial_number, port.location = vid, pid, serial, location
    port.description = description
    return port


HERE = [
    info("/dev/ttyUSB1", 0x10C4, 0xEA60, "0001", "1-1.3:1.0", "CP2102 USB to UART Bridge"),
    info("/dev/ttyUSB0", 0x10C4, 0xEA60, "0001", "1-1.4:1.0", "CP2102 USB to UART Bridge"),
    info("/dev/ttyACM0", 0x303A, 0x1001, "F4:12:FA:00:11:22", "1-2:1.0", "USB JTAG/serial debug unit"),
    info("/dev/ttyS0"),  # a built-in UART: no VID/PID
    info("/dev/cu.Bluetooth-Incoming-Port", 0x0000, 0x0000, None, None, "Bluetooth-Incoming-Port"),
]
KNOWN = {"1-1.4": "AA-BB-CC-00-00-01", "F4:12:FA:00:11:22": "f4:12:fa:00:11:22"}


@pytest.fixture(autouse=True)
def here(mocker):
    return mocker.patch("serial.tools.list_ports.comports", return_value=list(HERE))


def test_lists_usb_boards_only_and_sorted():
    listed = ports.list_ports()
    assert [p["device"] for p in listed] == ["/dev/ttyACM0", "/dev/ttyUSB0", "/dev/ttyUSB1"]
    assert listed[1] == {"device": "/dev/ttyUSB0", "vid_pid": "10c4:ea60", "serial_number": "0001",
                         "location": "1-1.4", "description": "CP2102 USB to UART Bridge",
                         "mac": None}


def test_include_all_adds_uarts_and_bluetooth():
    devices = [p["device"] for p in ports.list_ports(include_all=True)]
    assert "/dev/ttyS0" in devices and "/dev/cu.Bluetooth-Incoming-Port" in devices
    assert len(devices) == len(HERE)


def test_known_macs_by_location_and_serial_number():
    by_device = {p["device"]: p["mac"] for p in ports.list_ports(known=KNOWN)}
    assert by_device == {"/dev/ttyUSB0": "aa:bb:cc:00:00:01", "/dev/ttyACM0": "f4:12:fa:00:11:22",
                         "/dev/ttyUSB1": None}


@pytest.mark.parametrize("spec, device", [
    ("/dev/ttyUSB0", "/dev/ttyUSB0"),
    ("ttyUSB1", "/dev/ttyUSB1"),
    ("/dev/ttyS0", "/dev/ttyS0"),  # named, so used although list_ports() skips it
    ("/dev/cu.Bluetooth-Incoming-Port", "/dev/cu.Bluetooth-Incoming-Port"),
    ("sn:F4:12:FA:00:11:22", "/dev/ttyACM0"),
    ("loc:1-1.3", "/dev/ttyUSB1"),
    ("loc:1-1.4:1.0", "/dev/ttyUSB0"),  # pyserial's full location works too
    ("mac:aa:bb:cc:00:00:01", "/dev/ttyUSB0"),
    ("mac:AABBCC000001", "/dev/ttyUSB0"),
    ("socket://127.0.0.1:4000", "socket://127.0.0.1:4000"),
    ("rfc2217://lab-pi:2217", "rfc2217://lab-pi:2217"),
])
def test_resolve(spec, device):
    assert ports.resolve(spec, known=KNOWN) == device


def test_resolve_url_does_not_look_at_ports(here):
    ports.resolve("socket://localhost:1")
    here.assert_not_called()


def test_resolve_existing_path_not_listed(tmp_path):
    pty = tmp_path / "pts7"  # what a pty or /dev/serial/by-id link looks like to us: it exists
    pty.touch()
    assert ports.resolve(str(pty)) == str(pty)


@pytest.mark.parametrize("spec, words", [
    ("/dev/ttyUSB9", ["'/dev/ttyUSB9'", "/dev/ttyUSB0 (10c4:ea60, sn 0001, loc 1-1.4)"]),
    ("sn:0001", ["'sn:0001' matches 2 ports", "/dev/ttyUSB0", "/dev/ttyUSB1", "loc:"]),
    ("sn:nope", ["no port matches 'sn:nope'", "/dev/ttyACM0"]),
    ("loc:9-9", ["no port matches 'loc:9-9'"]),
    ("mac:aa:bb:cc:00:00:99", ["no port matches 'mac:aa:bb:cc:00:00:99'"]),
    ("mac:zz", ["'zz' is not a MAC address"]),
    ("", ["no port given", "ports here:"]),
])
def test_resolve_errors_name_the_spec_and_what_is_there(spec, words):
    with pytest.raises(ports.PortError) as caught:
        ports.resolve(spec, known=KNOWN)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_mac_without_inventory_says_so():
    with pytest.raises(ports.PortError, match="no MACs on record"):
        ports.resolve("mac:aa:bb:cc:00:00:01")


def test_nothing_plugged_in(here):
    here.return_value = [info("/dev/ttyS0")]
    with pytest.raises(ports.PortError, match="no USB serial ports here"):
        ports.resolve("sn:0001")
    assert ports.list_ports() == []


def test_command_json_and_table():
    runner = CliRunner()
    result = runner.invoke(ports.command, ["--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [p["device"] for p in listed] == ["/dev/ttyACM0", "/dev/ttyUSB0", "/dev/ttyUSB1"]
    assert listed[1]["location"] == "1-1.4"

    result = runner.invoke(ports.command, ["--all"])
    assert result.exit_code == 0, result.output
    assert "ttyS0" in result.output and "CP2102" in result.output


def test_command_shows_the_macs_a_provisioning_inventory_recorded(tmp_path):
    inventory = tmp_path / "inventory.jsonl"
    inventory.write_text(json.dumps({"port": "/dev/ttyUSB0", "usb": "1-1.4", "mac": "aa:bb:cc:00:00:01"}) + "\n"
                         + json.dumps({"port": "/dev/ttyACM0", "usb": "F4:12:FA:00:11:22", "result": "failed"}) + "\n")
    result = CliRunner().invoke(ports.command, ["--json", "--inventory", str(inventory)])
    assert result.exit_code == 0, result.output
    assert {p["device"]: p["mac"] for p in json.loads(result.output)} == {
        "/dev/ttyACM0": None, "/dev/ttyUSB0": "aa:bb:cc:00:00:01", "/dev/ttyUSB1": None}
    inventory.write_text("not json\n")
    broken = CliRunner().invoke(ports.command, ["--inventory", str(inventory)])
    assert broken.exit_code != 0 and "line 1: not a JSON record" in str(broken.exception)
