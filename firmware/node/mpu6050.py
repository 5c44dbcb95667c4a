"""MPU-6050 accelerometer driver: FIFO-streamed vibration windows over I2C (gyro unused).

The chip samples at 1 kHz / (1 + SMPLRT_DIV) with its low-pass filter set below Nyquist, and
pushes accelerometer frames (6 bytes, big-endian) into its 1024-byte FIFO. The driver reads
FIFO_COUNT and drains whole frames in bursts into a preallocated buffer. On FIFO overflow the
oldest bytes are lost and frames lose alignment, so the FIFO is reset and the overrun counted.
"""

from micropython import const
import time
import errno

_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_ACCEL_CONFIG = const(0x1C)
_FIFO_EN = const(0x23)
_INT_STATUS = const(0x3A)
_USER_CTRL = const(0x6A)
_PWR_MGMT_1 = const(0x6B)
_FIFO_COUNTH = const(0x72)
_FIFO_R_W = const(0x74)
_WHO_AM_I = const(0x75)

_WHO_AM_I_VALUE = const(0x68)
_RESET = const(0x80)
_CLK_PLL_X = const(0x01)    # awake, clocked from the X gyro PLL (steadier than the internal RC)
_FIFO_ACCEL = const(0x08)
_USER_FIFO_EN = const(0x40)
_USER_FIFO_RESET = const(0x04)
_FIFO_OFLOW = const(0x10)
_FRAME = const(6)
_BURST = const(16)          # frames per I2C burst (96 bytes)

_RANGES = {2: 0, 4: 1, 8: 2, 16: 3}
# DLPF_CFG by the lowest sample rate it suits: accel bandwidth 184/94/44/21/10/5 Hz stays below
# Nyquist. A non-zero DLPF_CFG also sets the 1 kHz base rate.
_DLPF = ((500, 1), (200, 2), (100, 3), (50, 4), (20, 5), (0, 6))


class MPU6050:
    def __init__(self, i2c, addr=0x68, range_g=4, odr_hz=1000):
        if range_g not in _RANGES:
            raise ValueError("range_g must be 2, 4, 8 or 16")
        if odr_hz < 4 or odr_hz > 1000 or 1000 % odr_hz:
            raise ValueError("odr_hz must divide 1000")
        self.i2c = i2c
        self.addr = addr
        self.range_g = range_g
        self.odr_hz = odr_hz
        self.scale_g = 1 / (16384 >> _RANGES[range_g])
        self._b1 = bytearray(1)
        self._b2 = bytearray(2)
        self._burst = bytearray(_FRAME * _BURST)
        mv = memoryview(self._burst)
        # Views for every burst length, made once so the read loop allocates nothing.
        self._views = [mv[:_FRAME * k] for k in range(_BURST + 1)]
        ident = self._read(_WHO_AM_I)
        if ident != _WHO_AM_I_VALUE:
            raise ValueError("wrong device id 0x%02x" % ident)
        self._write(_PWR_MGMT_1, _RESET)
        time.sleep_ms(100)          # the register map asks for 100 ms after DEVICE_RESET
        self._write(_PWR_MGMT_1, _CLK_PLL_X)
        for rate, cfg in _DLPF:
            if odr_hz >= rate:
                self._write(_CONFIG, cfg)
                break
        self._write(_SMPLRT_DIV, 1000 // odr_hz - 1)
        self._write(_ACCEL_CONFIG, _RANGES[range_g] << 3)
        self._write(_FIFO_EN, _FIFO_ACCEL)
        self._reset_fifo()

    def _read(self, reg):
        self.i2c.readfrom_mem_into(self.addr, reg, self._b1)
        return self._b1[0]

    def _write(self, reg, val):
        self._b1[0] = val
        self.i2c.writeto_mem(self.addr, reg, self._b1)

    def _reset_fifo(self):
        # FIFO_RESET takes effect with FIFO_EN cleared; then re-enable and drop the overflow flag.
        self._write(_USER_CTRL, _USER_FIFO_RESET)
        self._write(_USER_CTRL, _USER_FIFO_EN)
        self._read(_INT_STATUS)

    def read_window(self, buf, n):
        """Fill buf[0:3n] with x, y, z counts of n consecutive samples; return overruns seen."""
        if len(buf) < 3 * n:
            raise ValueError("buffer too small")
        odr = self.odr_hz
        i2c = self.i2c
        addr = self.addr
        b = self._burst
        b2 = self._b2
        limit_ms = 2 * n * 1000 // odr + 200
        start = time.ticks_ms()
        overruns = 0
        got = 0
        self._reset_fifo()
        while got < n:
            i2c.readfrom_mem_into(addr, _FIFO_COUNTH, b2)
            count = ((b2[0] << 8) | b2[1]) // _FRAME
            want = n - got
            if want > _BURST:
                want = _BURST
            if count < want:
                if time.ticks_diff(time.ticks_ms(), start) > limit_ms:
                    raise OSError(errno.ETIMEDOUT)
                ms = (want - count) * 1000 // odr
                time.sleep_ms(ms if ms > 0 else 1)
                continue
            i2c.readfrom_mem_into(addr, _FIFO_R_W, self._views[want])
            # Checked after the burst, so an overflow at any moment up to now is caught: lost
            # bytes break frame alignment, so drop this burst and start the FIFO over.
            if self._read(_INT_STATUS) & _FIFO_OFLOW:
                overruns += 1
                self._reset_fifo()
                continue
            j = 3 * got
            k = 0
            for _ in range(3 * want):
                v = (b[k] << 8) | b[k + 1]
                buf[j] = v - 65536 if v & 0x8000 else v
                j += 1
                k += 2
            got += want
        return overruns
