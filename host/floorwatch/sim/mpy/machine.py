"""`machine` for one board: Pin, I2C/SoftI2C over the board's bus models, WDT, RTC, resets."""

import time as _host_time

from ..devices.adxl345 import ADXL345 as _ADXL345, REG_DATAX0 as _DATAX0
from . import new_module

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
DEFAULT_I2C_PINS = {0: (18, 19), 1: (25, 26)}  # id -> (scl, sda) on the ESP32 port


def module(board):
    class Pin:
        IN, OUT, OPEN_DRAIN = 1, 3, 7
        PULL_UP, PULL_DOWN = 2, 1
        IRQ_RISING, IRQ_FALLING = 1, 2

        def __init__(self, number, mode=-1, pull=-1, value=None):
            if not isinstance(number, int) or not 0 <= number <= 48:
                raise ValueError("invalid pin")
            self._number = number
            self._value = 0 if value is None else int(bool(value))
            board.pins[number] = self._value

        def value(self, v=None):
            if v is None:
                return board.pins.get(self._number, 0)
            board.pins[self._number] = int(bool(v))

        def on(self):
            self.value(1)

        def off(self):
            self.value(0)

        def init(self, mode=-1, pull=-1, value=None):
            if value is not None:
                self.value(value)

        def irq(self, handler=None, trigger=3):
            return None

        def __call__(self, v=None):
            return self.value(v)

        def __repr__(self):
            return "Pin(%d)" % self._number

    class SoftI2C:
        def __init__(self, scl, sda, *, freq=400000, timeout=50000):
            if not isinstance(scl, Pin) or not isinstance(sda, Pin):
                raise TypeError("scl and sda must be Pin objects")
            self._bus = board.i2c_bus(scl._number, sda._number)

        def _do(self, method, *args):
            board.checkpoint()
            return getattr(self._bus, method)(*args)

        def scan(self):
            return self._do("scan")

        def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
            # What a driver's FIFO drain calls once a sample (over 1,000 times a vibration window):
            # straight to the bus, without _do's name lookup. The ADXL345's 6-byte burst from
            # DATAX0 (one FIFO level) goes further, to the chip model, while the bus has no fault
            # armed: what I2CBus.readfrom_mem_into and ADXL345.read would do, inline (the same
            # bytes, the transaction counted, the register pointer left after DATAZ1), and the
            # checkpoint as for any call. Anything else, or any armed fault, takes the bus
            # (tests/sim/test_sim_fastpaths.py holds the two equal). A test that wraps a chip's
            # read() to watch or stall it must use a subclass (type(dev) is then not ADXL345): an
            # instance attribute is not looked for (reading dev.__dict__ would slow every access
            # to the model's attributes in CPython 3.11).
            board.checkpoint()
            bus = self._bus
            if memaddr == _DATAX0 and not bus._errors and not bus._faults and len(buf) == 6:
                dev = bus._devices.get(addr)
                if type(dev) is _ADXL345 and dev.present:
                    bus.transactions += 1
                    if dev.clock() != dev._seen:  # else _update would find nothing new
                        dev._update()
                    q = dev._q
                    if q:
                        dev._last = q.popleft()
                    dev._overrun = False
                    buf[:] = dev._last
                    bus._pointers[addr] = _DATAX0 + 6
                    return
            bus.readfrom_mem_into(addr, memaddr, buf)

        def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
            buf = bytearray(nbytes)
            self._do("readfrom_mem_into", addr, memaddr, buf)
            return bytes(buf)

        def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
            self._do("writeto_mem", addr, memaddr, bytes(buf))

        def readfrom_into(self, addr, buf, stop=True):
            self._do("readfrom_into", addr, buf)

        def readfrom(self, addr, nbytes, stop=True):
            buf = bytearray(nbytes)
            self._do("readfrom_into", addr, buf)
            return bytes(buf)

        def writeto(self, addr, buf, stop=True):
            self._do("writeto", addr, bytes(buf))
            return len(buf)

        def writevto(self, addr, vector, stop=True):
            self._do("writeto", addr, b"".join(bytes(b) for b in vector))

    class I2C(SoftI2C):
        def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
            if id not in DEFAULT_I2C_PINS:
                raise ValueError("I2C(%s) doesn't exist" % id)
            default_scl, default_sda = DEFAULT_I2C_PINS[id]
            super().__init__(scl or Pin(default_scl), sda or Pin(default_sda), freq=freq, timeout=timeout)

    class WDT:
        def __init__(self, id=0, timeout=5000):
            if timeout < 1000:
                raise ValueError("timeout must be at least 1000 ms")  # the ESP32 port's minimum
            board.wdt = (timeout / 1000, board.clock.now())

        def feed(self):
            board.checkpoint()
            board.wdt = (board.wdt[0], board.clock.now())

    class RTC:
        def datetime(self, value=None):
            if value is None:
                t = _host_time.gmtime(board.wall_time())
                return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0)
            board.set_wall_time(value)

        def memory(self, data=None):
            if data is None:
                return bytes(board.rtc_memory)
            if len(data) > 2048:
                raise ValueError("buffer too long")
            board.rtc_memory = bytes(data)

    def reset():
        board.reset(HARD_RESET)
        board.checkpoint()

    def soft_reset():
        board.reset(SOFT_RESET)
        board.checkpoint()

    def deepsleep(ms=0):
        board.reset(DEEPSLEEP_RESET)
        board.sleep(ms / 1000)
        board.checkpoint()

    def lightsleep(ms=0):
        board.sleep(ms / 1000)

    def freq(hz=None):
        return 160_000_000 if hz is None else None

    return new_module(
        "machine", __doc__, Pin=Pin, I2C=I2C, SoftI2C=SoftI2C, WDT=WDT, RTC=RTC,
        reset=reset, soft_reset=soft_reset, bootloader=lambda: board.bootloader(), deepsleep=deepsleep, lightsleep=lightsleep,
        idle=lambda: board.sleep(0.001), freq=freq, reset_cause=lambda: board.reset_cause,
        wake_reason=lambda: 0, unique_id=lambda: bytes(board.mac),
        disable_irq=lambda: 0, enable_irq=lambda state=0: None,
        PWRON_RESET=PWRON_RESET, HARD_RESET=HARD_RESET, WDT_RESET=WDT_RESET,
        DEEPSLEEP_RESET=DEEPSLEEP_RESET, SOFT_RESET=SOFT_RESET,
    )
