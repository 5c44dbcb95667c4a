"""ADXL345 accelerometer driver: FIFO-streamed vibration windows over I2C.

The chip runs in FIFO stream mode (32 levels); each 6-byte burst from DATAX0 pops one level,
little-endian x, y, z. Scale: full resolution, 1/256 g per count at every range.
"""

from micropython import const

from node.fifo import FifoAccelerometer

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


class ADXL345(FifoAccelerometer):
    def __init__(self, i2c, addr=0x53, range_g=4, odr_hz=1600):
        if range_g not in _RANGES:
            raise ValueError("range_g must be 2, 4, 8 or 16")
        if odr_hz not in _RATES:
            raise ValueError("odr_hz must be 100..3200 in powers of two")
        super().__init__(i2c, addr, odr_hz, 1 / 256)
        self.range_g = range_g
        self._b6 = bytearray(6)
        # An absent chip raises OSError(ENODEV) here, from the I2C layer.
        if self._read(_DEVID) != _DEVID_VALUE:
            raise ValueError("wrong device id 0x%02x" % self._b1[0])
        self._write(_POWER_CTL, 0)     # standby while configuring
        self._write(_DATA_FORMAT, _FULL_RES | _RANGES[range_g])
        self._write(_BW_RATE, _RATES[odr_hz])
        self._write(_FIFO_CTL, _FIFO_STREAM | _WATERMARK)
        self._write(_POWER_CTL, _MEASURE)

    def _restart_fifo(self):
        # Bypass empties the FIFO; one data read clears a stale overrun flag.
        self._write(_FIFO_CTL, _FIFO_BYPASS)
        self._write(_FIFO_CTL, _FIFO_STREAM | _WATERMARK)
        self.i2c.readfrom_mem_into(self.addr, _DATAX0, self._b6)

    def _available(self):
        return self._read(_FIFO_STATUS) & 0x3F

    def _drain(self, buf, j, count):
        if self._read(_INT_SOURCE) & _OVERRUN:
            self.overruns += 1
        i2c = self.i2c
        addr = self.addr
        b = self._b6
        for _ in range(count):
            i2c.readfrom_mem_into(addr, _DATAX0, b)
            v = b[0] | (b[1] << 8)
            buf[j] = v - 65536 if v & 0x8000 else v
            v = b[2] | (b[3] << 8)
            buf[j + 1] = v - 65536 if v & 0x8000 else v
            v = b[4] | (b[5] << 8)
            buf[j + 2] = v - 65536 if v & 0x8000 else v
            j += 3
        return count
