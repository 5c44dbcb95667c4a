"""Board definitions: boards/<name>.json at the repository root, checked on load.

A board file says which chip a devkit carries and the facts that follow from it (where the
MicroPython image goes in flash, which mpy-cross arch to build for, how the chip reads its own
temperature), the devkit's pins, and the sensors a simulated or freshly set-up node gets.
The chip facts are checked against CHIPS so a copy-pasted file cannot carry the wrong offset.

    board = load("esp32-devkitc")   # dict; board["image_offset"] is an int (0x1000)
"""

import json
from pathlib import Path

from floorwatch.contract import ContractError, explain, validate
from floorwatch.sim.devices.onewire import crc8

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"


def _gpios(*ranges):
    out = set()
    for first, last in ranges:
        out.update(range(first, last + 1))
    return out


# Per chip: the derived facts, which GPIOs exist, and which ones the module or the console
# already uses (a sensor wired there would break flashing, PSRAM, USB or the REPL).
CHIPS = {
    "esp32": {
        "image_offset": 0x1000, "mpy_arch": "xtensawin", "mcu_temperature": "raw_temperature",
        "gpios": _gpios((0, 19), (21, 23), (25, 27), (32, 39)),
        "taken": {**{p: "SPI flash" for p in range(6, 12)}, 1: "UART0 TX (REPL)",
                  3: "UART0 RX (REPL)", **{p: "input-only" for p in range(34, 40)}},
    },
    "esp32s3": {
        "image_offset": 0x0, "mpy_arch": "xtensawin", "mcu_temperature": "mcu_temperature",
        "gpios": _gpios((0, 21), (26, 48)),
        "taken": {**{p: "SPI flash / PSRAM" for p in range(26, 38)}, 19: "USB D-", 20: "USB D+",
                  43: "UART0 TX (REPL)", 44: "UART0 RX (REPL)"},
    },
    "esp32c3": {
        "image_offset": 0x0, "mpy_arch": "rv32imc", "mcu_temperature": "mcu_temperature",
        "gpios": _gpios((0, 21)),
        "taken": {**{p: "SPI flash" for p in range(12, 18)}, 18: "USB D-", 19: "USB D+",
                  20: "UART0 RX (REPL)", 21: "UART0 TX (REPL)"},
    },
}

_PIN = {"type": "integer", "minimum": 0, "maximum": 48}
BOARD_SCHEMA = {
    "type": "object",
    "required": ["name", "chip", "flash_size", "image_offset", "mpy_arch", "mcu_temperature",
                 "pins", "led_type", "default_sensors"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "chip": {"enum": sorted(CHIPS)},
        "flash_size": {"enum": ["2MB", "4MB", "8MB", "16MB", "32MB"]},
        "image_offset": {"type": "string", "pattern": "^0x[0-9a-f]+$", "x-is": "a hex offset such as 0x1000"},
        "mpy_arch": {"enum": ["xtensawin", "rv32imc"]},
        "mcu_temperature": {"enum": ["raw_temperature", "mcu_temperature"]},
        "pins": {
            "type": "object",
            "required": ["i2c_sda", "i2c_scl", "onewire", "led"],
            "additionalProperties": False,
            "properties": {"i2c_sda": _PIN, "i2c_scl": _PIN, "onewire": _PIN,
                           "led": {"type": ["integer", "null"], "minimum": 0, "maximum": 48}},
        },
        "led_type": {"enum": ["gpio", "ws2812", None]},
        "default_sensors": {"type": "array"},
        "notes": {"type": "string"},
    },
}


class BoardError(ValueError):
    """A missing or broken board file; str() is one line naming the file and the field."""


def names(directory=None):
    """Names of the defined boards (file names without .json), sorted."""
    return sorted(p.stem for p in Path(directory or BOARDS_DIR).glob("*.json"))


def load(name, directory=None):
    """The checked board definition as a dict, with ``id`` (the name) added and
    ``image_offset`` as an int."""
    directory = Path(directory or BOARDS_DIR)
    path = directory / f"{name}.json"
    label = f"boards/{name}.json"
    if not path.is_file():
        known = ", ".join(names(directory)) or "none"
        raise BoardError(f"unknown board {name!r} (no {label}); known boards: {known}")
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BoardError(f"{label}: not valid JSON: {e}") from None

    def fail(field, reason):
        raise BoardError(f"{label}: {field}: {reason}")

    problem = explain(BOARD_SCHEMA, board)
    if problem is not None:
        fail(problem[0] or "(top)", problem[1])
    facts = CHIPS[board["chip"]]
    offset = int(board["image_offset"], 16)
    if offset != facts["image_offset"]:
        fail("image_offset", f"{board['image_offset']} is wrong for {board['chip']} "
                             f"(MicroPython goes at {facts['image_offset']:#x})")
    for key in ("mpy_arch", "mcu_temperature"):
        if board[key] != facts[key]:
            fail(key, f"{board[key]!r} is wrong for {board['chip']} (expected {facts[key]!r})")

    pins = board["pins"]
    for role, pin in pins.items():
        if pin is None:
            continue
        if pin not in facts["gpios"]:
            fail(f"pins.{role}", f"{board['chip']} has no GPIO{pin}")
        if pin in facts["taken"]:
            fail(f"pins.{role}", f"GPIO{pin} is {facts['taken'][pin]} on {board['chip']}")
    used = [p for p in pins.values() if p is not None]
    if len(set(used)) != len(used):
        fail("pins", "two roles share one GPIO")
    if (pins["led"] is None) != (board["led_type"] is None):
        fail("led_type", "give a led_type exactly when pins.led is set")

    _check_sensors(board, fail)
    board["id"] = name
    board["image_offset"] = offset
    return board


def status_led(board):
    """The node config's `led` for this board (null when it has none), for `identify`."""
    pin = board["pins"]["led"]
    return None if pin is None else {"pin": pin, "type": board["led_type"]}


def _check_sensors(board, fail):
    # The contract's config rules apply as they would on a node with these sensors.
    stub = {"device_id": "board", "site": "check", "wifi": {"ssid": "x"}, "broker": {"host": "x"},
            "sensors": board["default_sensors"]}
    try:
        validate("config", stub)
    except ContractError as e:
        fail("default_" + e.path if e.path.startswith("sensors") else "default_sensors", e.reason)
    pins = board["pins"]
    for i, s in enumerate(board["default_sensors"]):
        where = f"default_sensors[{i}]"
        if s["type"] == "ds18b20":
            if s["pin"] != pins["onewire"]:
                fail(f"{where}.pin", f"{s['pin']} is not the board's onewire pin {pins['onewire']}")
            if s.get("rom") is not None and crc8(bytes.fromhex(s["rom"])) != 0:
                fail(f"{where}.rom", f"{s['rom']} fails the 1-Wire CRC (last byte)")
        elif s["type"] in ("adxl345", "mpu6050"):
            for key in ("sda", "scl"):
                if s[key] != pins[f"i2c_{key}"]:
                    fail(f"{where}.{key}", f"{s[key]} is not the board's i2c_{key} pin "
                                           f"{pins[f'i2c_{key}']}")
