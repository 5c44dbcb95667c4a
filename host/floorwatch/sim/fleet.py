"""A fleet of simulated boards: each one wired with sensor models, given a config, powered on.

A board's hardware comes from its board definition (`boards/*.json`): DS18B20 probes on the 1-Wire
pin, an accelerometer on the I2C pins, the chip's own sensor. The physical signals come from one
seeded `Machine` per board, so a run with the same seed is the same run.

`mode` is the scenario every board's machine plays: healthy until `onset_s` of board time (10
simulated minutes by default, time for the node to learn its baseline), then the fault (see
physics.py). `speed` runs every board's sleeps that many times faster (board.ScaledClock), or, as
"max", puts every board on one shared VirtualClock: board time jumps ahead whenever every board
waits, so the fleet runs as fast as the host computes (`fleet.vclock` lets a scenario driver join).
`thresholds` adds to or replaces limits in every board's config, e.g. to put a healthy machine near
a limit in a test: {"motor.vel": {"warn": 0.9, "alarm": 4.5}}.

Every board logs in as its device id with a password of its own: `passwords` ({device id:
password}) when given, so a broker dir can register them before the fleet exists, else new ones
(`fleet.passwords` has them either way). `ca` (the CA certificate, PEM text) makes the boards
connect over TLS, checking the broker's certificate against it and its host name.

`start(stagger_s)` spreads the power-ons over that many wall seconds. `indices` makes the Fleet
object hold only those boards (numbers in range(count)) of a fleet of `count`, each named and
seeded as in the whole fleet: sim/shard.py runs one fleet over several processes this way.
`keepalive_s` replaces the sim's MQTT keepalive (15 s; the node's default is 30).
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

from .. import boards
from ..security.passwd import new_password  # each board its own: no default to guess, here either
from .board import Board, ScaledClock, VirtualClock, WifiAccessPoint
from .devices.adxl345 import ADXL345
from .devices.mpu6050 import MPU6050
from .devices.onewire import DS18B20, make_rom
from .physics import ONSET_S, Machine

# Faster than the node's defaults, so a short run shows several readings.
SIM_INTERVALS = {"temp_s": 5, "vib_s": 10, "diag_s": 30}
# Bearing limits after common practice (alarm 90-95 C), with a 10-minute early warning; the
# winding's stay below 125 C, the top of a DS18B20's range.
SIM_THRESHOLDS = {
    "bearing": {"warn": 80, "alarm": 90, "deadband": 2, "early_s": 600},
    "winding": {"warn": 100, "alarm": 120, "deadband": 3},
}
# Kurtosis relative to the machine's own baseline (about 3 when healthy): a bearing defect's
# impacts drive it far up; the delays ride out single impulsive windows. Velocity gets the node's
# ISO 10816-3 defaults.
SIM_KURTOSIS = {"warn": 2.0, "alarm": 3.0, "deadband": 0.3, "relative": True, "on_delay_s": 30, "off_delay_s": 60}
# Where each temperature sensor sits on the machine; unnamed ones read the bearing housing.
LOCATIONS = ("bearing", "winding", "ambient", "chip")


def make_clocks(speed, count):
    """(shared VirtualClock or None, one clock per board) for a speed: a number >= 1, or "max"."""
    if speed == "max":
        vclock = VirtualClock()
        return vclock, [vclock.board_clock() for _ in range(count)]
    if isinstance(speed, str):
        try:
            speed = float(speed)
        except ValueError:
            raise ValueError('speed must be a number or "max", not %r' % speed) from None
    return None, [ScaledClock(speed) for _ in range(count)]


def device_id(index):
    return "sim-%03d" % (index + 1)


def raise_fd_limit():
    """Raise this process's soft limit on open files to its hard limit (idempotent): a board holds
    a TCP socket and an eventfd while it runs, so a few thousand boards pass the usual soft 1024.
    Processes started afterwards (mosquitto, the shard workers) inherit the raised limit."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. a hard limit above what the kernel allows (RLIM_INFINITY on macOS): keep the soft one


def board_config(index, site, host, port, board_def, seed, ap, intervals=None, thresholds=None, password=None,
                 ca=None):
    """The config.json the sim writes onto board `index`'s flash; `thresholds` override per metric.
    The board logs in to the broker as its device id, with `password` (a new one when None); with
    `ca` (PEM text) over TLS, the broker's certificate checked against it."""
    sensors = []
    for number, spec in enumerate(board_def["default_sensors"]):
        spec = dict(spec)
        if spec["type"] == "ds18b20":
            spec["rom"] = make_rom(seed * 16 + number).hex()
        sensors.append(spec)
    accel = [s["name"] for s in sensors if s["type"] in ("adxl345", "mpu6050")]
    limits = {k: dict(v) for k, v in SIM_THRESHOLDS.items() if any(s["name"] == k for s in sensors)}
    for name in accel:
        limits[name + ".rms"] = {"warn": 0.5, "alarm": 1.0, "deadband": 0.05}
        limits[name + ".kurt"] = dict(SIM_KURTOSIS)
    limits.update(thresholds or {})
    broker = {"host": host, "port": port, "user": device_id(index), "password": password or new_password(),
              "tls": ca is not None, "keepalive_s": 15}
    if ca is not None:
        broker["ca"] = ca
    return {
        "device_id": device_id(index),
        "site": site,
        "wifi": {"ssid": ap.ssid, "password": ap.password},
        "broker": broker,
        "sensors": sensors,
        # send_s 0 unless asked: simulated records go at once, so the live view and tests see them
        "intervals": {"send_s": 0, **(intervals or SIM_INTERVALS)},
        "led": boards.status_led(board_def),
        "thresholds": limits,
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
                 workdir=None, mode="normal", intervals=None, speed=1.0, thresholds=None, onset_s=ONSET_S,
                 passwords=None, ca=None, indices=None, keepalive_s=None):
        self.board_def = boards.load(board_name)
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="floorwatch-sim-")
        self.workdir = Path(workdir or self._tmp)
        self.boards = []
        self.machines = []
        self.passwords = dict(passwords or {})  # device id -> its broker password, for a broker that checks them
        indices = range(count) if indices is None else list(indices)
        if any(not 0 <= index < count for index in indices):
            raise ValueError("board indices must be in range(%d)" % count)
        self.count, self.indices = count, list(indices)
        self.vclock, clocks = make_clocks(speed, len(indices))
        for index, clock in zip(indices, clocks):
            board_seed = seed * 100003 + index + 1
            ap = WifiAccessPoint("floorwatch-sim", "sim-wifi-%d" % board_seed)
            machine = Machine.for_scenario(board_seed, mode, onset_s, clock=clock.now)
            board = Board(device_id(index), seed=board_seed, flash_dir=self.workdir / device_id(index),
                          chip=self.board_def["chip"], ap=ap, clock=clock)
            config = board_config(index, site, host, port, self.board_def, board_seed, ap, intervals, thresholds,
                                  self.passwords.get(device_id(index)), ca)
            if keepalive_s is not None:
                config["broker"]["keepalive_s"] = keepalive_s
            self.passwords[board.device_id] = config["broker"]["password"]
            (board.flash_dir / "config.json").write_text(json.dumps(config, indent=1))
            wire(board, config, machine)
            self.boards.append(board)
            self.machines.append(machine)

    def board_time(self):
        """Simulated seconds that every board has lived through (the slowest board's clock)."""
        return min(board.clock.now() for board in self.boards)

    def start(self, stagger_s=0.0):
        """Power every board on; with `stagger_s`, board number i of the fleet's `count` at
        i / count x stagger_s wall seconds from now (returning when the last is on), as a plant's
        nodes are not all powered in the same second: their readings then do not all fall due
        in the same second either, for ever after."""
        if stagger_s and self.vclock is not None:
            raise ValueError("stagger_s is wall time: not with a virtual clock (speed max)")
        raise_fd_limit()  # two descriptors a board (its TCP socket, its wake-up eventfd)
        t0 = time.monotonic()
        for board, index in zip(self.boards, self.indices):
            if stagger_s:
                delay = t0 + stagger_s * index / self.count - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            board.power_on()

    def stop(self, timeout=5.0):
        """Cut every board's power, then give their threads `timeout` seconds in all to end: one
        board at a time would cost a thread switch each, seconds for a big fleet on a busy host."""
        for board in self.boards:
            board.power_off(timeout=0)
        end = time.monotonic() + timeout
        for board in self.boards:
            if board.thread is not None:
                board.thread.join(max(0.0, end - time.monotonic()))

    def close(self):
        self.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
