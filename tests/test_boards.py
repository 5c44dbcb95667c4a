"""floorwatch.boards: the board files load, agree with their chip, and broken ones are named."""

import json

import pytest

from floorwatch import boards
from floorwatch.boards import BoardError
from floorwatch.contract import validate

EXPECTED = {
    # name: (chip, image offset, mpy-cross arch, how the chip reads its own temperature)
    "esp32-devkitc": ("esp32", 0x1000, "xtensawin", "raw_temperature"),
    "esp32-s3-devkitc-1": ("esp32s3", 0x0, "xtensawin", "mcu_temperature"),
    "esp32-c3-devkitm-1": ("esp32c3", 0x0, "rv32imc", "mcu_temperature"),
}


def test_names_lists_the_board_files():
    assert boards.names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_board_loads_with_its_chip_facts(name):
    board = boards.load(name)
    assert board["id"] == name
    assert (board["chip"], board["image_offset"], board["mpy_arch"],
            board["mcu_temperature"]) == EXPECTED[name]
    assert board["flash_size"].endswith("MB")
    assert set(board["pins"]) == {"i2c_sda", "i2c_scl", "onewire", "led"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_sensors_are_a_valid_contract_sensor_list(name):
    board = boards.load(name)
    sensors = board["default_sensors"]
    config = {"device_id": "n1", "site": "s", "wifi": {"ssid": "w"}, "broker": {"host": "b"},
              "sensors": sensors}
    assert validate("config", config) == config
    by_type = {}
    for s in sensors:
        by_type.setdefault(s["type"], []).append(s)
    probes = by_type["ds18b20"]
    assert len(probes) == 2 and {p["pin"] for p in probes} == {board["pins"]["onewire"]}
    assert len({p["rom"] for p in probes}) == 2
    assert len(by_type["mcu_temp"]) == 1
    (acc,) = by_type["adxl345"]
    assert (acc["sda"], acc["scl"]) == (board["pins"]["i2c_sda"], board["pins"]["i2c_scl"])


@pytest.fixture
def board_dir(tmp_path):
    """esp32-devkitc as a dict to edit, and save(dict) writing it as x.json into a temp boards dir."""
    data = json.loads((boards.BOARDS_DIR / "esp32-devkitc.json").read_text())

    def save(d):
        (tmp_path / "x.json").write_text(json.dumps(d))
        return tmp_path

    return data, save


BROKEN = [
    ({"image_offset": "0x0"}, "image_offset: 0x0 is wrong for esp32 (MicroPython goes at 0x1000)"),
    ({"image_offset": "4096"}, "image_offset: '4096' is not a hex offset such as 0x1000"),
    ({"mpy_arch": "rv32imc"}, "mpy_arch: 'rv32imc' is wrong for esp32 (expected 'xtensawin')"),
    ({"mcu_temperature": "mcu_temperature"},
     "mcu_temperature: 'mcu_temperature' is wrong for esp32 (expected 'raw_temperature')"),
    ({"chip": "esp8266"}, "chip: 'esp8266' is not one of esp32, esp32c3, esp32s3"),
    ({"flash": "4MB"}, "flash: unknown key"),
    ({"pins.led": 6}, "pins.led: GPIO6 is SPI flash on esp32"),
    ({"pins.i2c_sda": 34}, "pins.i2c_sda: GPIO34 is input-only on esp32"),
    ({"pins.onewire": 20}, "pins.onewire: esp32 has no GPIO20"),
    ({"pins.onewire": 49}, "pins.onewire: 49 is out of range 0..48"),
    ({"pins.led": 4}, "pins: two roles share one GPIO"),
    ({"pins.led": None}, "led_type: give a led_type exactly when pins.led is set"),
    ({"default_sensors.3.addr": 300}, "default_sensors[3].addr: 300 is not one of 83, 29"),
    ({"default_sensors.1.name": "bearing"},
     "default_sensors[1].name: 'bearing' is already used by sensors[0]"),
    ({"default_sensors.0.rom": "28f05d9b05000056"},
     "default_sensors[0].rom: 28f05d9b05000056 fails the 1-Wire CRC (last byte)"),
    ({"default_sensors.0.pin": 5, "default_sensors.1.pin": 5},
     "default_sensors[0].pin: 5 is not the board's onewire pin 4"),
    ({"default_sensors.3.scl": 23}, "default_sensors[3].scl: 23 is not the board's i2c_scl pin 22"),
]


@pytest.mark.parametrize("changes, expected", BROKEN, ids=[e.split(":")[0] for _, e in BROKEN])
def test_broken_board_names_file_and_field(board_dir, changes, expected):
    data, save = board_dir
    for path, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target = data
        for p in parents:
            target = target[p]
        target[last] = value
    with pytest.raises(BoardError) as info:
        boards.load("x", directory=save(data))
    assert str(info.value) == f"boards/x.json: {expected}"


def test_missing_key_and_bad_json(board_dir, tmp_path):
    data, save = board_dir
    del data["chip"]
    with pytest.raises(BoardError, match=r"^boards/x\.json: chip: missing \(required\)$"):
        boards.load("x", directory=save(data))
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(BoardError, match=r"^boards/x\.json: not valid JSON: "):
        boards.load("x", directory=tmp_path)


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardError) as info:
        boards.load("esp32-wroom")
    assert str(info.value) == ("unknown board 'esp32-wroom' (no boards/esp32-wroom.json); known "
                               "boards: esp32-c3-devkitm-1, esp32-devkitc, esp32-s3-devkitc-1")
