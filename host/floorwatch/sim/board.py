"""One simulated ESP32 board: its power, clock, flash, NVS, buses, WiFi surroundings and faults.

A Board runs the unmodified firmware in its own thread. Every boot gets a fresh `Runtime` (its own
module namespace), while flash, NVS and the attached sensors persist across resets, as on a real
board. The fake MicroPython modules reach the hardware only through this object, and call
`checkpoint()` from every blocking operation so that a power cut, a reset or a watchdog bite takes
effect promptly wherever the firmware is.

Everything the firmware can time — ticks, sleeps, the RTC, the watchdog, WiFi association, sensor
conversions and FIFOs — runs on the board's clock (`now()`, `wait(seconds, event)`): RealClock, or
ScaledClock(speed) to run the board's idle time faster than real time.
"""

import calendar
import errno
import json
import math
import os
import random
import threading
import time
import traceback
from pathlib import Path

from .devices.i2cbus import I2CBus
from .devices.onewire import OneWireBus
from .mpy.time import RTC_EPOCH_START
from .runtime import Runtime

# machine.reset_cause() values of the ESP32 port.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

CHIPS = ("esp32", "esp32s3", "esp32c3")


class PowerOff(BaseException):
    """Raised inside the board's thread when its power is cut (not catchable by `except Exception`)."""


class ResetBoard(BaseException):
    """Raised inside the board's thread to reboot it with the given reset cause."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


class ScaledClock:
    """Board time in seconds since start, where the board's sleeps pass `speed` times faster.

    While the firmware sleeps (`wait`), board time runs `speed` times faster than the wall clock: a
    10 s sleep at speed 100 takes 0.1 s. While the firmware runs — computing, draining a sensor
    FIFO, waiting on a socket — board time runs at wall-clock speed. So the host's CPU and network
    look as fast to the firmware as they are: an accelerometer FIFO drained at CPython speed does
    not overflow, the broker's replies do not seem to take `speed` times longer (no spurious socket
    timeouts), and a node that idles most of the time (as ours does) runs close to `speed` times
    faster than real time. A busy host lowers the speed achieved; a saturated one makes the firmware
    late (time spent waiting for the interpreter lock counts at wall speed), as it would at speed 1.
    Speed 1 is plain wall-clock time.

    One clock belongs to one board, and only the board's own thread sleeps on it.
    """

    def __init__(self, speed=1.0):
        speed = float(speed)
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a number above 0, not %r" % speed)
        self.speed = speed
        self._lock = threading.Lock()
        # (wall0, board0, rate, length): from wall0 on, board time runs at `rate` for `length` board
        # seconds, then at wall speed. Re-anchored as each wait starts and ends.
        self._anchor = (time.monotonic(), 0.0, 1.0, math.inf)

    def now(self):
        with self._lock:
            return self._board_at(time.monotonic())

    def _board_at(self, wall):
        wall0, board0, rate, length = self._anchor
        fast = rate * (wall - wall0)
        if fast <= length:
            return board0 + fast
        return board0 + length + (wall - wall0 - length / rate)

    def _anchor_now(self, rate, length):
        with self._lock:
            wall = time.monotonic()
            self._anchor = (wall, self._board_at(wall), rate, length)

    def wait(self, seconds, event):
        """Sleep up to `seconds` of board time; return early when `event` is set.

        Only the sleep itself is sped up: when the host wakes the thread late, the delay counts
        at wall speed, as it would on a busy board, not `speed` times over.
        """
        seconds = max(0.0, seconds)
        self._anchor_now(self.speed, seconds)
        try:
            event.wait(seconds / self.speed)
        finally:
            self._anchor_now(1.0, math.inf)


class RealClock(ScaledClock):
    """Board time at wall-clock speed."""

    def __init__(self):
        super().__init__(1.0)


class WifiAccessPoint:
    """The network the board's WLAN can see. Tests switch `up` to make outages."""

    def __init__(self, ssid, password, rssi=-58, connect_s=0.4):
        self.ssid = ssid
        self.password = password
        self.rssi = rssi
        self.connect_s = connect_s
        self.up = True


class Board:
    def __init__(self, device_id, seed=0, flash_dir=None, chip="esp32", mac=None, ap=None,
                 clock=None, firmware_dir=None, echo_log=False, log_lines=200):
        if chip not in CHIPS:
            raise ValueError("chip %r is not one of %s" % (chip, ", ".join(CHIPS)))
        self.device_id = device_id
        self.seed = seed
        self.chip = chip
        self.clock = clock or RealClock()
        root = Path(flash_dir) if flash_dir else Path.cwd() / "sim-boards" / device_id
        self.root = root
        self.flash_dir = root / "flash"
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.nvs_path = root / "nvs.json"
        self.firmware_dir = firmware_dir
        self.mac = mac or bytes([0x24, 0x6F, 0x28, (seed >> 16) & 0xFF, (seed >> 8) & 0xFF, seed & 0xFF])
        self.ap = ap or WifiAccessPoint("floorwatch-sim", "sim-password")
        self.ip = "10.77.%d.%d" % ((seed >> 8) & 0xFF, 2 + seed % 250)
        self.rtc_memory = b""
        self.wall_offset = None  # RTC seconds minus board seconds, once the firmware sets the clock
        self.pins = {}
        self.wlan = self._fresh_wlan()
        self.wifi_connects = 0
        self.heap_used = 40000  # what gc reports as allocated; the firmware's heap is not modelled
        self.flash_full = False
        self.rng = random.Random(seed)
        self.i2c_buses = {}
        self.onewire_buses = {}
        self.signals = {}  # name -> callable the fake modules may consult (e.g. "chip" temperature)
        self.log = []
        self.log_lines = log_lines
        self.echo_log = echo_log
        self.boots = 0
        self.reset_cause = PWRON_RESET
        self.wdt = None  # (timeout_s, last_feed) once the firmware starts the watchdog
        self.sockets = set()
        self.orphan_sockets = []  # closed by the firmware while the link was down
        self._pending = None  # ResetBoard to raise at the next checkpoint
        self._power = threading.Event()
        self._off = threading.Event()
        self._thread = None
        self.runtime = Runtime(self, firmware_dir)
        self.crashed = None  # the traceback text when the firmware died to the REPL

    # --- hardware the fake modules use -------------------------------------------------------
    def i2c_bus(self, scl, sda):
        return self.i2c_buses.setdefault((scl, sda), I2CBus())

    def onewire_bus(self, pin):
        return self.onewire_buses.setdefault(pin, OneWireBus())

    def load_nvs(self):
        try:
            return json.loads(self.nvs_path.read_text())
        except (OSError, ValueError):
            return {}

    def save_nvs(self, data):
        tmp = self.nvs_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.nvs_path)

    def chip_temperature(self):
        source = self.signals.get("chip")
        return source(self.clock.now()) if source else 40.0

    def wall_time(self):
        offset = RTC_EPOCH_START if self.wall_offset is None else self.wall_offset
        return offset + self.clock.now()

    def set_wall_time(self, datetime_tuple):
        year, month, day, _weekday, hour, minute, second = datetime_tuple[:7]
        epoch = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        self.wall_offset = epoch - self.clock.now()

    def check_flash_write(self):
        if self.flash_full:
            raise OSError(errno.ENOSPC)

    @staticmethod
    def _fresh_wlan():
        return {"active": False, "target": None, "status": 1000, "since": 0.0, "config": {}}

    def print(self, *args, sep=" ", end="\n", file=None, flush=False):
        line = sep.join(str(a) for a in args) + ("" if end == "\n" else end)
        self.log.append(line)
        if len(self.log) > self.log_lines:
            del self.log[: len(self.log) - self.log_lines]
        if self.echo_log:
            print("[%s] %s" % (self.device_id, line), flush=True)

    # --- time and interruption ---------------------------------------------------------------
    def checkpoint(self):
        """Called by every fake-module operation: deliver power cuts, resets and watchdog bites."""
        if self._off.is_set():
            raise PowerOff()
        if self.wdt is not None:
            timeout, last = self.wdt
            if self.clock.now() - last > timeout:
                self._pending = ResetBoard(WDT_RESET)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending

    def sleep(self, seconds):
        """Board-time sleep that a power cut or reset interrupts."""
        end = self.clock.now() + seconds
        while True:
            self.checkpoint()
            left = end - self.clock.now()
            if left <= 0:
                return
            if self.wdt is not None:
                timeout, last = self.wdt
                left = min(left, max(0.0, last + timeout - self.clock.now()) + 0.001)
            # Wake at least every 0.25 s of wall time to deliver a reset (power cuts set _off). A
            # test's own clock may have no speed: its waits take no wall time anyway.
            self.clock.wait(min(left, 0.25 * getattr(self.clock, "speed", 1.0)), self._off)

    # --- power -------------------------------------------------------------------------------
    def power_on(self):
        if self._thread and self._thread.is_alive():
            return
        self._off.clear()
        self.reset_cause = PWRON_RESET
        self.rtc_memory = b""
        self.wall_offset = None
        self.wlan = self._fresh_wlan()
        self._thread = threading.Thread(target=self._run, name="board-" + self.device_id, daemon=True)
        self._thread.start()

    def power_off(self, timeout=5.0):
        """Cut the power: the firmware stops wherever it is and its TCP connections drop."""
        self._off.set()
        for sock in list(self.sockets):
            sock.abort()
        if self._thread:
            self._thread.join(timeout)

    def reset(self, cause=HARD_RESET):
        """Press the reset button (or let the firmware call machine.reset())."""
        self._pending = ResetBoard(cause)

    @property
    def running(self):
        return bool(self._thread and self._thread.is_alive())

    def _run(self):
        while not self._off.is_set():
            self.boots += 1
            self.wdt = None
            self.crashed = None
            self.runtime = Runtime(self, self.firmware_dir)
            try:
                self.runtime.run_main()
                self._idle_at_repl()
            except ResetBoard as reset:
                self._after_reset(reset.cause)
            except PowerOff:
                break
            except Exception:  # the firmware died: MicroPython prints it and sits at the REPL
                self.crashed = traceback.format_exc()
                self.print(self.crashed)
                try:
                    self._idle_at_repl()
                except ResetBoard as reset:
                    self._after_reset(reset.cause)
                except PowerOff:
                    break
            finally:
                for sock in list(self.sockets):
                    sock.abort()

    def _after_reset(self, cause):
        self.reset_cause = cause
        if cause != SOFT_RESET:  # a soft reset keeps the WiFi driver's state; the others do not
            self.wlan = self._fresh_wlan()
            self.pins = {}

    def _idle_at_repl(self):
        while True:
            self.sleep(3600)

    # --- faults for tests and scenarios ------------------------------------------------------
    def wifi_down(self):
        self.ap.up = False

    def wifi_up(self):
        self.ap.up = True
        while self.orphan_sockets:
            self.orphan_sockets.pop().close()

    def link_up(self):
        return self.ap.up and not self._off.is_set()

    def unplug(self, bus_key, addr_or_rom):
        """Unplug an I2C device (bus_key=(scl, sda), addr) or a 1-Wire probe (bus_key=pin, rom)."""
        self._device(bus_key, addr_or_rom).present = False

    def replug(self, bus_key, addr_or_rom):
        device = self._device(bus_key, addr_or_rom)
        device.present = True  # plugging in powers the device up from its reset state
        if hasattr(device, "power_on"):
            device.power_on()

    def _device(self, bus_key, key):
        if isinstance(bus_key, tuple):
            return self.i2c_buses[bus_key].device(key)
        return self.onewire_buses[bus_key].device(key)
