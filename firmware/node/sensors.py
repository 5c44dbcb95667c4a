"""The node's sensors, built from the validated config.

Each sensor object reads through its driver and reports into its SensorHealth: a failing sensor
becomes a diagnostic, never a crash. A sensor that was absent at boot is re-initialised on later
reads, so a probe plugged in while running is picked up.
"""

import array
import errno
import machine
from micropython import const

from node import vibration
from node.ds18b20 import ProbeBus, SensorError, rom_from_hex
from node.health import SensorHealth

_I2C_FREQ = const(400000)


class TempProbe:
    """One DS18B20 on a shared 1-Wire bus."""

    kind = "temp"

    def __init__(self, spec, bus):
        self.name = spec["name"]
        self.bus = bus
        self.rom = rom_from_hex(spec["rom"]) if spec["rom"] else None
        self.health = SensorHealth(self.name, "ds18b20")

    def read(self):
        try:
            if self.rom is None:
                roms = self.bus.scan()
                if len(roms) != 1:
                    raise SensorError("%d probes on the bus; give a rom" % len(roms) if roms else "not present")
                self.rom = roms[0]
            value = self.bus.read(self.rom)
        except Exception as exc:  # SensorError, OSError from the bus, or anything a driver raises
            _failed(self.health, exc)
            return None
        self.health.ok(value)
        return value


class ChipTemp:
    """The MCU's own sensor: esp32.mcu_temperature() (S2/S3/C3, °C) or raw_temperature() (ESP32, °F)."""

    kind = "temp"

    def __init__(self, spec):
        import esp32

        self.name = spec["name"]
        self.health = SensorHealth(self.name, "mcu_temp")
        self._celsius = getattr(esp32, "mcu_temperature", None)
        self._fahrenheit = getattr(esp32, "raw_temperature", None)

    def read(self):
        try:
            if self._celsius:
                value = float(self._celsius())
            else:
                value = round((self._fahrenheit() - 32) / 1.8, 1)
        except Exception as exc:
            _failed(self.health, exc)
            return None
        self.health.ok(value)
        return value


class Accelerometer:
    """ADXL345 or MPU6050: each window of samples analysed into `analysis` (a vibration.Analyzer)."""

    kind = "vib"

    def __init__(self, spec, i2c, rpm=None):
        self.spec = spec
        self.name = spec["name"]
        self.i2c = i2c
        self.window = spec["window"]
        self.buf = array.array("h", bytes(6 * self.window))
        lo, hi, self.limited = vibration.band(spec["odr_hz"], rpm)
        self.band = (lo, hi)
        self.analysis = vibration.Analyzer(self.window, spec["odr_hz"], lo, hi)
        self.overruns = 0
        self.driver = None
        self.health = SensorHealth(self.name, spec["type"])

    def _driver(self):
        if self.driver is None:
            spec = self.spec
            if spec["type"] == "adxl345":
                from node.adxl345 import ADXL345 as Driver
            else:
                from node.mpu6050 import MPU6050 as Driver
            self.driver = Driver(self.i2c, spec["addr"], spec["range_g"], spec["odr_hz"])
        return self.driver

    def read(self):
        """Analyses a fresh window into `analysis`; returns True on success."""
        try:
            driver = self._driver()
            self.overruns += driver.read_window(self.buf, self.window)
        except Exception as exc:
            self.driver = None  # re-initialise next time: the device may have been replugged
            _failed(self.health, exc)
            return False
        a = self.analysis
        a.run(self.buf, driver.scale_g)
        self.health.ok((a.rms[0], a.rms[1], a.rms[2]))
        return True


_ABSENT = ("not present", "no such probe")


def _failed(health, exc):
    """Record a failed read; a device that did not answer at all counts as not present."""
    if isinstance(exc, OSError) and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
        # errno's own numbers: ETIMEDOUT is 116 on the ESP32 (lwIP's), 110 on Linux
        why = {errno.ENODEV: "not present (ENODEV)", errno.ETIMEDOUT: "bus timeout (ETIMEDOUT)"}
        health.fail(why.get(code, "OSError %d" % code), False if code == errno.ENODEV else None)
    else:
        reason = str(exc) or exc.__class__.__name__
        health.fail(reason, False if reason in _ABSENT else None)


def _i2c(n, scl, sda):
    # The ESP32 has two hardware I2C controllers (FIFO bursts need their speed); more pin pairs
    # than that fall back to the bit-banged bus.
    if n < 2:
        return machine.I2C(n, scl=scl, sda=sda, freq=_I2C_FREQ)
    return machine.SoftI2C(scl=scl, sda=sda, freq=_I2C_FREQ)


def build(specs, rpm=None):
    """Sensor objects for the config's `sensors` list; buses shared between sensors on the same pins.

    rpm: the machine's running speed, which sets the low edge of the velocity band.
    """
    sensors, probe_buses, i2c_buses = [], {}, {}
    for spec in specs:
        kind = spec["type"]
        if kind == "ds18b20":
            pin = spec["pin"]
            if pin not in probe_buses:
                probe_buses[pin] = ProbeBus(pin)
            sensors.append(TempProbe(spec, probe_buses[pin]))
        elif kind == "mcu_temp":
            sensors.append(ChipTemp(spec))
        else:
            pins = (spec["scl"], spec["sda"])
            if pins not in i2c_buses:
                i2c_buses[pins] = _i2c(len(i2c_buses), machine.Pin(pins[0]), machine.Pin(pins[1]))
            sensors.append(Accelerometer(spec, i2c_buses[pins], rpm))
    return sensors, list(probe_buses.values())

