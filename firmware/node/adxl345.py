"""ADXL345 accelerometer driver: FIFO-streamed vibration windows over I2C.

Per-sample polling over I2C cannot keep up with 1.6-3.2 kHz in MicroPython, so the chip runs in
FIFO stream mode and the driver drains whole FIFO levels in bursts, sleeping between polls for
about the time the FIFO needs to refill. Raw counts go into a caller-owned array('h'); nothing is
allocated per sample. Scale: full resolution, 1/256 g per count at every range.
"""

from micropython import const
import time
import errno

_DEVID = const(0x00)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_INT_SOURCE = const(0x30)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)
_FIFO_CTL = const(0x38)
_FIFO_STATUS = const(0x39)

_DEVID_VALUE = const(0xE5)
_MEASURE = const(0x08)
_FULL_RES = const(0x08)
_FIFO_BYPASS = const(0x00)
_FIFO_STREAM = const(0x80)
_WATERMARK = const(16)
_OVERRUN = const(0x01)
_BURST = const(16)          # samples wanted before draining the FIFO

_RANGES = {2: 0, 4: 1, 8: 2, 16: 3}
_RATES = {100: 0x0A, 200: 0x0B, 400: 0x0C, 800: 0x0D, 1600: 0x0E, 3200: 0x0F}


class ADXL345:
    def __init__(self, i2c, addr=0x53, range_g=4, odr_hz=1600):
        if range_g not in _RANGES:
            raise ValueError("range_g must be 2, 4, 8 or 16")
        if odr_hz not in _RATES:
            raise ValueError("odr_hz must be 100..3200 in powers of two")
        self.i2c = i2c
        self.addr = addr
        self.range_g = range_g
        self.odr_hz = odr_hz
        self.scale_g = 1 / 256
        self._b1 = bytearray(1)
        self._b6 = bytearray(6)
        # An absent chip raises OSError(ENODEV) here, from the I2C layer.
        if self._read(_DEVID) != _DEVID_VALUE:
            raise ValueError("wrong device id 0x%02x" % self._b1[0])
        self._write(_POWER_CTL, 0)     # standby while configuring
        self._write(_DATA_FORMAT, _FULL_RES | _RANGES[range_g])
        self._write(_BW_RATE, _RATES[odr_hz])
        self._write(_FIFO_CTL, _FIFO_STREAM | _WATERMARK)
        self._write(_POWER_CTL, _MEASURE)

    def _read(self, reg):
        self.i2c.readfrom_mem_into(self.addr, reg, self._b1)
        return self._b1[0]

    def _write(self, reg, val):
        self._b1[0] = val
        self.i2c.writeto_mem(self.addr, reg, self._b1)

    def _restart_fifo(self):
        # Bypass empties the FIFO; one data read clears a stale overrun flag.
        self._write(_FIFO_CTL, _FIFO_BYPASS)
        self._write(_FIFO_CTL, _FIFO_STREAM | _WATERMARK)
        self.i2c.readfrom_mem_into(self.addr, _DATAX0, self._b6)

    def read_window(self, buf, n):
        """Fill buf[0:3n] with x, y, z counts of n consecutive samples; return overruns seen."""
        if len(buf) < 3 * n:
            raise ValueError("buffer too small")
        odr = self.odr_hz
        i2c = self.i2c
        addr = self.addr
        b = self._b6
        limit_ms = 2 * n * 1000 // odr + 200
        start = time.ticks_ms()
        overruns = 0
        got = 0
        self._restart_fifo()
        while got < n:
            entries = self._read(_FIFO_STATUS) & 0x3F
            want = n - got
            if want > _BURST:
                want = _BURST
            if entries < want:
                if time.ticks_diff(time.ticks_ms(), start) > limit_ms:
                    raise OSError(errno.ETIMEDOUT)
                ms = (want - entries) * 1000 // odr
                time.sleep_ms(ms if ms > 0 else 1)
                continue
            if self._read(_INT_SOURCE) & _OVERRUN:
                overruns += 1
            if entries > n - got:
                entries = n - got
            j = 3 * got
            for _ in range(entries):
                # One 6-byte burst pops one FIFO level.
                i2c.readfrom_mem_into(addr, _DATAX0, b)
                v = b[0] | (b[1] << 8)
                buf[j] = v - 65536 if v & 0x8000 else v
                v = b[2] | (b[3] << 8)
                buf[j + 1] = v - 65536 if v & 0x8000 else v
                v = b[4] | (b[5] << 8)
                buf[j + 2] = v - 65536 if v & 0x8000 else v
                j += 3
            got += entries
        return overruns
