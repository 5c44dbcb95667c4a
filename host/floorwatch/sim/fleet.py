"""A fleet of simulated boards: each one wired with sensor models, given a config, powered on.

A board's hardware comes from its board definition (`boards/*.json`): DS18B20 probes on the 1-Wire
pin, an accelerometer on the I2C pins, the chip's own sensor. The physical signals come from one
seeded `Machine` per board, so a run with the same seed is the same run.
"""

import json
import shutil
import tempfile
from pathlib import Path

from .. import boards
from .board import Board, WifiAccessPoint
from .devices.adxl345 import ADXL345
from .devices.mpu6050 import MPU6050
from .devices.onewire import DS18B20, make_rom
from .physics import Machine

# Faster than the node's defaults, so a short run shows several readings.
SIM_INTERVALS = {"temp_s": 5, "vib_s": 10, "diag_s": 30}
SIM_THRESHOLDS = {
    "bearing": {"warn": 80, "alarm": 90, "deadband": 2},
    "winding": {"warn": 120, "alarm": 140, "deadband": 3},
}
# Where each temperature sensor sits on the machine; unnamed ones read the bearing housing.
LOCATIONS = ("bearing", "winding", "ambient", "chip")


def device_id(index):
    return "sim-%03d" % (index + 1)


def board_config(index, site, host, port, board_def, seed, ap, intervals=None):
    """The config.json the sim writes onto board `index`'s flash."""
    sensors = []
    for number, spec in enumerate(board_def["default_sensors"]):
        spec = dict(spec)
        if spec["type"] == "ds18b20":
            spec["rom"] = make_rom(seed * 16 + number).hex()
        sensors.append(spec)
    accel = [s["name"] for s in sensors if s["type"] in ("adxl345", "mpu6050")]
    thresholds = {k: v for k, v in SIM_THRESHOLDS.items() if any(s["name"] == k for s in sensors)}
    for name in accel:
        thresholds[name + ".rms"] = {"warn": 0.5, "alarm": 1.0, "deadband": 0.05}
    return {
        "device_id": device_id(index),
        "site": site,
        "wifi": {"ssid": ap.ssid, "password": ap.password},
        "broker": {"host": host, "port": port, "user": None, "password": None, "tls": False, "keepalive_s": 15},
        "sensors": sensors,
        "intervals": dict(intervals or SIM_INTERVALS),
        "thresholds": thresholds,
    }


def wire(board, config, machine):
    """Attach device models matching the config's sensors to the board's buses."""
    now = board.clock.now
    for spec in config["sensors"]:
        kind = spec["type"]
        if kind == "ds18b20":
            location = spec["name"] if spec["name"] in LOCATIONS else "bearing"
            probe = DS18B20(bytes.fromhex(spec["rom"]), clock=now,
                            temperature=lambda t, loc=location: machine.temperature(loc, t))
            board.onewire_bus(spec["pin"]).attach(probe)
        elif kind in ("adxl345", "mpu6050"):
            model = ADXL345 if kind == "adxl345" else MPU6050
            addr = spec.get("addr", 0x53 if kind == "adxl345" else 0x68)
            board.i2c_bus(spec["scl"], spec["sda"]).attach(model(addr=addr, clock=now, signal=machine.acceleration))
    board.signals["chip"] = lambda t: machine.temperature("chip", t)


class Fleet:
    def __init__(self, count, host, port, site="sim", seed=0, board_name="esp32-devkitc",
                 workdir=None, mode="normal", intervals=None):
        self.board_def = boards.load(board_name)
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="floorwatch-sim-")
        self.workdir = Path(workdir or self._tmp)
        self.boards = []
        self.machines = []
        for index in range(count):
            board_seed = seed * 100003 + index + 1
            ap = WifiAccessPoint("floorwatch-sim", "sim-wifi-%d" % board_seed)
            board = Board(device_id(index), seed=board_seed, flash_dir=self.workdir / device_id(index),
                          chip=self.board_def["chip"], ap=ap)
            config = board_config(index, site, host, port, self.board_def, board_seed, ap, intervals)
            (board.flash_dir / "config.json").write_text(json.dumps(config, indent=1))
            machine = Machine(board_seed, mode=mode, clock=board.clock.now)
            wire(board, config, machine)
            self.boards.append(board)
            self.machines.append(machine)

    def start(self):
        for board in self.boards:
            board.power_on()

    def stop(self):
        for board in self.boards:
            board.power_off()

    def close(self):
        self.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
